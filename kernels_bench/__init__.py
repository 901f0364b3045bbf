"""capdrift_fast throughput benchmarks (never imported by the package). See kernels_bench/README.md."""

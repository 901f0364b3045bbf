"""Beyond one GPU: deterministic request shards for array jobs (:mod:`.shard`), the merge of shard run
folders into one run (:mod:`.merge`), and data-parallel engine replicas on one node (:mod:`.data_parallel`).

Nothing here schedules work dynamically: a shard's requests are fixed by the config alone, so array jobs
(Kubernetes indexed Jobs, Slurm arrays) need no coordinator, and each shard folder resumes on its own.
Jobs that must span nodes as one job use Ray Data's vLLM integration instead (docs/runbook_cloud_gpu.md).
"""

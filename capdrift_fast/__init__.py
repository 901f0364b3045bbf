"""capdrift_fast: what a LoRA adapter really changed, across tasks, in one batched vLLM pass.

The flow, as modules: ``config`` -> ``adapters`` (preflight) -> ``tasks`` (prompts) -> ``plan`` (requests)
-> ``engine`` (one vLLM pass) -> ``io`` (Arrow shards, run folder and resume) -> ``parity`` (transformers+peft
guard) -> ``scoring`` (Polars) -> ``drift`` (matrix) -> ``display``.
"""

__version__ = "0.1.0"

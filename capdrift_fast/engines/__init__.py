"""Engines that turn planned requests into generation records.

- :mod:`capdrift_fast.engines.vllm_engine`: ONE vLLM engine with multi-LoRA serving (the main path);
- :mod:`capdrift_fast.engines.hf_reference`: transformers+peft greedy decoding, the parity oracle.

Both read prompts through :func:`capdrift_fast.engines.prompts.encode_prompts` so they see the same
token ids, and both yield dicts with the fields of :data:`capdrift_fast.records.GENERATION_SCHEMA`.
"""

"""Engines that turn planned requests into generation records.

- :mod:`capdrift_fast.engine.vllm_engine`: ONE vLLM engine with multi-LoRA serving (the main path);
- :mod:`capdrift_fast.engine.hf_reference`: transformers+peft greedy decoding, the parity oracle.

Both read prompts through :func:`capdrift_fast.engine.prompts.encode_prompts` so they see the same
token ids, and both yield dicts with the fields of :data:`capdrift_fast.io.schema.GENERATION_SCHEMA`.
"""

"""Run-folder I/O: the one Arrow schema of generations, the streaming shard writer, atomic writes, file hashes."""

from capdrift_fast.io.atomic import atomic_write_bytes, atomic_write_text
from capdrift_fast.io.hashing import hash_folder, sha256_file
from capdrift_fast.io.schema import GENERATION_SCHEMA
from capdrift_fast.io.shards import ShardWriter, read_generations, read_shard

__all__ = ["GENERATION_SCHEMA", "ShardWriter", "read_generations", "read_shard", "atomic_write_bytes",
           "atomic_write_text", "hash_folder", "sha256_file"]

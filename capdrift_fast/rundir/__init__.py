"""Run-folder I/O: the one Arrow schema of generations, the streaming shard writer, atomic writes, file hashes."""

from capdrift_fast.rundir.atomic import atomic_write_bytes, atomic_write_text
from capdrift_fast.rundir.hashing import hash_folder, sha256_file
from capdrift_fast.records import GENERATION_SCHEMA
from capdrift_fast.rundir.shards import ShardWriter, read_generations, read_shard

__all__ = ["GENERATION_SCHEMA", "ShardWriter", "read_generations", "read_shard", "atomic_write_bytes",
           "atomic_write_text", "hash_folder", "sha256_file"]

"""Non-finite values in a safetensors file, streamed (no torch, no full load).

An adapter with a NaN or Inf weight passes every shape check, yet vLLM serves it with empty responses
and, on the CPU path, it changed responses of *other* adapters batched with it. The preflight therefore
reads every tensor of every adapter. The file is memory-mapped and each tensor scanned in chunks of at
most :data:`CHUNK_BYTES` by its bit pattern (an IEEE value is NaN or Inf exactly when all its exponent
bits are set), so bf16 needs no numpy support and memory stays flat whatever the file size.

Cost (measured, see ``tests/rundir/test_tensor_scan.py`` and the note of issue #16): the scan runs at
memory-bandwidth speed from the page cache; a cold file is bounded by the disk's read speed.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path

import numpy as np

CHUNK_BYTES = 64 << 20
"""Bytes scanned at a time (bounds the temporary arrays)."""

# safetensors dtype -> (unsigned view dtype, exponent mask); integer and bool tensors cannot be non-finite
_FLOAT_BITS = {
    "F64": (np.uint64, np.uint64(0x7FF0000000000000)),
    "F32": (np.uint32, np.uint32(0x7F800000)),
    "F16": (np.uint16, np.uint16(0x7C00)),
    "BF16": (np.uint16, np.uint16(0x7F80)),
    "F8_E5M2": (np.uint8, np.uint8(0x7C)),
}


def read_header(path: str | Path) -> tuple[dict, int]:
    """The safetensors header (tensor name -> ``dtype``, ``shape``, ``data_offsets``) and the offset where
    the data starts.

    Raises:
        ValueError: the file is too short or its header is not valid safetensors JSON.
    """
    with open(path, "rb") as fh:
        raw = fh.read(8)
        if len(raw) != 8:
            raise ValueError("file too short for a safetensors header")
        (n,) = struct.unpack("<Q", raw)
        if n > 100 << 20:
            raise ValueError(f"header length {n} is implausible")
        header = json.loads(fh.read(n))
    if not isinstance(header, dict):
        raise ValueError("header is not a JSON object")
    header.pop("__metadata__", None)
    return header, 8 + n


def nonfinite_tensors(path: str | Path) -> list[tuple[str, int]]:
    """``(tensor name, number of NaN/Inf values)`` for every tensor of the safetensors file ``path`` that
    holds any, in file order. F8_E4M3 has no Inf and one NaN pattern per sign (``0x7F``/``0xFF``).

    Raises:
        ValueError: a malformed header, or data offsets beyond the end of the file.
    """
    header, start = read_header(path)
    size = Path(path).stat().st_size
    found: list[tuple[str, int]] = []
    if size <= start:
        return found
    data = np.memmap(path, dtype=np.uint8, mode="r")
    try:
        for name, info in sorted(header.items(), key=lambda kv: kv[1]["data_offsets"][0]):
            dtype = info.get("dtype")
            begin, end = (start + int(o) for o in info["data_offsets"])
            if end > size or begin > end:
                raise ValueError(f"tensor {name!r} lies beyond the end of the file (truncated?)")
            if dtype == "F8_E4M3":
                bad = int(np.count_nonzero((data[begin:end] & 0x7F) == 0x7F))
            elif dtype in _FLOAT_BITS:
                view, mask = _FLOAT_BITS[dtype]
                width = np.dtype(view).itemsize
                step = CHUNK_BYTES - CHUNK_BYTES % width
                bad = 0
                for lo in range(begin, end, step):
                    chunk = data[lo:min(end, lo + step)].view(view)
                    bad += int(np.count_nonzero((chunk & mask) == mask))
            else:
                continue
            if bad:
                found.append((name, bad))
    finally:
        del data
    return found

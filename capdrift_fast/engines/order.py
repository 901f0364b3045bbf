"""The order in which a backend hands requests to its engine (``engine.request_order``)."""

from __future__ import annotations

import polars as pl

REQUEST_ORDERS = ("grouped", "interleaved")


def order_requests(requests: pl.DataFrame, order: str) -> pl.DataFrame:
    """``requests`` (plan rows) in the order they are handed to the engine.

    ``grouped``: by ``lora_id`` (base first, then adapter 1's requests, adapter 2's, ...), plan order
    kept within an adapter. ``interleaved``: round-robin over adapters: the first request of every
    adapter (in ``lora_id`` order), then the second of every adapter, ... Same rows, same columns.

    Raises:
        ValueError: ``order`` is not one of :data:`REQUEST_ORDERS`.
    """
    if order not in REQUEST_ORDERS:
        raise ValueError(f"request order must be one of {REQUEST_ORDERS}, got {order!r}")
    if requests.height == 0:
        return requests
    cols = requests.columns
    ranked = requests.with_row_index("_pos").with_columns(_k=pl.int_range(pl.len()).over("lora_id"))
    keys = ["lora_id", "_pos"] if order == "grouped" else ["_k", "lora_id", "_pos"]
    return ranked.sort(keys, maintain_order=True).select(cols)

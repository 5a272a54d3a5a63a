"""Persistence for evoagent: one DuckDB file per campaign, read through Parquet snapshots.

``open_store(path)`` gives the writable store (one process at a time);
``open_store(path, read_only=True)`` gives a reader on a locked-down connection:
the file itself when no writer holds it, else the Parquet snapshot that never
waits for, nor blocks, the writer.
"""
from __future__ import annotations

from pathlib import Path

import importlib
from typing import TYPE_CHECKING, Any

# Loaded on first use: ``import stores.base`` (the interface) needs neither DuckDB nor Parquet.
_HOME = {"Candidate": "base", "ItemResult": "base", "Simulation": "base", "Store": "base", "StoreError": "base",
         "StoreReader": "base", "WorkItem": "base", "TrajectoryBatch": "batch", "DuckDBStore": "duckdb_store",
         "FileStore": "readonly", "ReadOnlyStore": "readonly", "SCHEMA_VERSION": "schema", "VIEWS": "schema",
         "SnapshotStore": "snapshot", "open_reader": "snapshot"}

if TYPE_CHECKING:
    from stores.base import Store, StoreReader


def __getattr__(name: str) -> Any:
    module = _HOME.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{module}"), name)


def open_store(path: str | Path, *, read_only: bool = False) -> Store | StoreReader:
    """Open (creating if needed) the store at ``path``; ``:memory:`` for a scratch store."""
    if read_only:
        from stores.snapshot import open_reader

        return open_reader(path)
    from stores.duckdb_store import DuckDBStore

    return DuckDBStore(path)


__all__ = [
    "Candidate", "DuckDBStore", "FileStore", "ItemResult", "ReadOnlyStore", "SCHEMA_VERSION", "Simulation", "SnapshotStore", "Store",
    "StoreError", "StoreReader", "TrajectoryBatch", "VIEWS", "WorkItem", "open_reader", "open_store",
]

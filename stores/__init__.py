"""Persistence for evoagent: one DuckDB file per campaign, read through Parquet snapshots.

``open_store(path)`` gives the writable store (one process at a time);
``open_store(path, read_only=True)`` gives a reader on a locked-down connection:
the file itself when no writer holds it, else the Parquet snapshot that never
waits for, nor blocks, the writer.

Names load on first use (``from stores import open_reader`` imports the reader's
modules only, not the writer's): a reading command starts with DuckDB and Arrow alone.
"""
from __future__ import annotations

import importlib
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from stores.base import Candidate, ItemResult, Simulation, Store, StoreError, StoreReader, WorkItem
    from stores.batch import TrajectoryBatch
    from stores.duckdb_store import DuckDBStore
    from stores.readonly import FileStore, ReadOnlyStore
    from stores.schema import SCHEMA_VERSION, VIEWS
    from stores.snapshot import SnapshotStore, open_reader

_WHERE = {
    **dict.fromkeys(("Candidate", "ItemResult", "Simulation", "Store", "StoreError", "StoreReader", "WorkItem"),
                    "stores.base"),
    "TrajectoryBatch": "stores.batch",
    "DuckDBStore": "stores.duckdb_store",
    "FileStore": "stores.readonly", "ReadOnlyStore": "stores.readonly",
    "SCHEMA_VERSION": "stores.schema", "VIEWS": "stores.schema",
    "SnapshotStore": "stores.snapshot", "open_reader": "stores.snapshot",
}


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module 'stores' has no attribute {name!r}")
    value = getattr(importlib.import_module(_WHERE[name]), name)
    globals()[name] = value
    return value


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

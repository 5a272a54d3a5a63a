"""Persistence for evoagent: one DuckDB file per campaign, read through Parquet snapshots.

``open_store(path)`` gives the writable store (one process at a time);
``open_store(path, read_only=True)`` gives a reader on a locked-down connection:
the file itself when no writer holds it, else the Parquet snapshot that never
waits for, nor blocks, the writer.
"""
from __future__ import annotations

from pathlib import Path

from stores.base import Candidate, ItemResult, Simulation, Store, StoreError, StoreReader, WorkItem
from stores.batch import TrajectoryBatch
from stores.duckdb_store import DuckDBStore
from stores.readonly import FileStore, ReadOnlyStore
from stores.schema import SCHEMA_VERSION, VIEWS
from stores.snapshot import SnapshotStore, open_reader


def open_store(path: str | Path, *, read_only: bool = False) -> Store | StoreReader:
    """Open (creating if needed) the store at ``path``; ``:memory:`` for a scratch store."""
    if read_only:
        return open_reader(path)
    return DuckDBStore(path)


__all__ = [
    "Candidate", "DuckDBStore", "FileStore", "ItemResult", "ReadOnlyStore", "SCHEMA_VERSION", "Simulation", "SnapshotStore", "Store",
    "StoreError", "StoreReader", "TrajectoryBatch", "VIEWS", "WorkItem", "open_reader", "open_store",
]

"""Reading recorded files every environment imports: bounded, checked whole, one line on a bad one.

Files are untrusted: each is read with a bound on its decompressed size
(``read_bounded``), JSON with a bound on its containers and refusing duplicate
keys, NaN and lone surrogates (``read_json``), and one import command reads at
most ``ImportBudget``'s totals across its files.
"""
from __future__ import annotations

import gzip
import json
import re
import zlib
from pathlib import Path
from typing import Any

from evoagent.errors import UserError

#: Most bytes read from one task or recording file, after decompression, and most JSON arrays and
#: objects in it (``[``/``{`` counted, in strings too): parsed, a file takes a few times its size
#: in memory, an empty container ~60 bytes. InterCode's largest recordings are ~4 MB.
MAX_JSON_BYTES = 64 * 2**20
MAX_JSON_CONTAINERS = 2_000_000
#: Most bytes (after decompression) one import command reads across all its files: the bundled
#: recordings are 6.9 MB of InterCode JSON and 3.6 MB of Game of 24 logs.
MAX_IMPORT_BYTES = 128 * 2**20
_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")


class _Bad(ValueError):
    """A malformed part of a file."""


class ImportBudget:
    """What one import command may read across all its files: bytes, and what else an importer
    counts (answers, proposals, action lines). Each file takes its share as it is read; past a
    total the import stops with one line and nothing is written (the CLI writes after reading)."""

    def __init__(self, **limits: int) -> None:
        self.limits = {"bytes": MAX_IMPORT_BYTES, **limits}
        self.used = dict.fromkeys(self.limits, 0)

    def left(self, what: str) -> int:
        return self.limits[what] - self.used[what]

    def take(self, what: str, n: int, path: str | Path) -> None:
        self.used[what] += n
        if self.used[what] > self.limits[what]:
            raise UserError(f"{path}: one import reads at most {self.limits[what]:,} {what} across its files "
                            f"(this file brings it past that); import fewer files per command")


def read_bounded(path: Path, limit: int, what: str) -> bytes:
    """The file's bytes, gunzipped if gzip, refusing more than ``limit`` bytes (a small
    .gz may inflate to gigabytes)."""
    if not path.is_file():
        raise UserError(f"{path}: {'not a regular file' if path.exists() else 'no such file'}")
    try:
        with open(path, "rb") as fh:
            gz = fh.read(2) == b"\x1f\x8b"
            fh.seek(0)
            data = (gzip.GzipFile(fileobj=fh) if gz else fh).read(limit + 1)
    except (OSError, EOFError, zlib.error) as err:
        raise UserError(f"{path}: cannot read {what} ({type(err).__name__}: {err})") from None
    if len(data) > limit:
        raise UserError(f"{path}: {what} larger than {limit // 2**20} MiB{' once decompressed' if gz else ''} "
                        f"(the most evoagent reads)")
    return data



def _no_constants(name: str) -> float:
    raise _Bad(f"{name} is not a number JSON allows")


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out = dict(pairs)
    if len(out) != len(pairs):
        seen: set[str] = set()
        for k, _ in pairs:
            if k in seen:
                raise _Bad(f"key {k!r} appears twice")
            seen.add(k)
    return out


def read_json(path: Path, budget: ImportBudget | None = None) -> Any:
    """Parsed JSON (or JSON.gz) within ``MAX_JSON_BYTES`` and ``MAX_JSON_CONTAINERS`` (and the
    import's ``budget``); duplicate keys, NaN and Infinity are refused (Python's json would keep
    the last key and accept NaN).

    The one rule for lone surrogates in recorded files, every importer's: a ``\\ud800``-``\\udfff``
    escape that is not half of a pair is not text, so the file is refused with one line (never
    stored as U+FFFD behind the user's back). Text an agent produces at run time is different:
    ``trajectory.storable`` replaces them, since a campaign must not stop over one character."""
    raw = read_bounded(path, MAX_JSON_BYTES, "JSON")
    if budget is not None:
        budget.take("bytes", len(raw), path)
    if raw.count(b"[") + raw.count(b"{") > MAX_JSON_CONTAINERS:
        raise UserError(f"{path}: more than {MAX_JSON_CONTAINERS:,} JSON arrays and objects (the most evoagent reads)")
    try:
        data = json.loads(raw.decode("utf-8"), parse_constant=_no_constants, object_pairs_hook=_unique_keys)
        if _SURROGATE_ESCAPE.search(raw):  # only then can a lone one have been decoded
            json.dumps(data, ensure_ascii=False).encode("utf-8")
        return data
    except UnicodeEncodeError:
        raise UserError(f"{path}: holds a lone surrogate (a \\ud800-\\udfff escape without its pair), which "
                        "is not text; recorded files must be valid Unicode") from None
    except UnicodeDecodeError as err:
        raise UserError(f"{path}: not a JSON file (not UTF-8 text at byte {err.start})") from None
    except RecursionError:
        raise UserError(f"{path}: not a JSON file (nested too deeply)") from None
    except _Bad as err:
        raise UserError(f"{path}: not a JSON file ({err})") from None
    except ValueError as err:  # JSONDecodeError, too many digits
        raise UserError(f"{path}: not a JSON file ({type(err).__name__}: {str(err).splitlines()[0][:80]})") from None


__all__ = ["MAX_IMPORT_BYTES", "MAX_JSON_BYTES", "MAX_JSON_CONTAINERS", "ImportBudget", "read_bounded", "read_json"]

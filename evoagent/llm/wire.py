"""The canonical form of a request: what makes two requests the same one (for fakes and caches)."""
from __future__ import annotations

import hashlib
import json
from typing import Any


def canonical_json(obj: Any) -> str:
    """Deterministic JSON text: sorted keys, no whitespace, UTF-8 kept."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def request_key(params: dict) -> str:
    """sha256 of the canonical JSON of message-creation params (``stream`` excluded)."""
    body = {k: v for k, v in params.items() if k != "stream"}
    return hashlib.sha256(canonical_json(body).encode()).hexdigest()


__all__ = ["canonical_json", "request_key"]

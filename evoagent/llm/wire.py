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


def first_user_text(body: dict[str, Any]) -> str:
    """The text of a request's first message (a fake model reads its prompt from it)."""
    content = body["messages"][0]["content"]
    if isinstance(content, str):
        return content
    return "\n".join(b.get("text", "") for b in content if b.get("type") == "text")


def tool_use_reply(name: str, args: dict[str, Any], thought: str = "") -> dict[str, Any]:
    """A model's answer calling tool ``name`` with ``args``, after the text ``thought`` if any (fake models)."""
    blocks: list[dict[str, Any]] = [{"type": "text", "text": thought}] if thought else []
    blocks.append({"type": "tool_use", "id": "toolu_fake", "name": name, "input": args})
    return {"content": blocks, "stop_reason": "tool_use"}


__all__ = ["canonical_json", "first_user_text", "request_key", "tool_use_reply"]

"""The fake server's view of a Messages request: its key, its prompt pieces, its SSE events.

Facts from the Messages API reference: prompt-cache order is tools, then
system, then messages; a ``cache_control`` breakpoint caches the prefix up to
and including its block; streaming sends message_start, content_block_start /
delta / stop per block, message_delta and message_stop.
"""
from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

from evoagent.llm.wire import canonical_json, request_key  # noqa: F401 - request_key re-exported


def _strip_cc(block: Any) -> Any:
    return {k: v for k, v in block.items() if k != "cache_control"} if isinstance(block, dict) else block


def prompt_pieces(body: dict) -> tuple[list[str], list[int]]:
    """Serialise the prompt into pieces in cache order (tools -> system -> messages).

    Returns the pieces (``cache_control`` stripped, so moving a breakpoint keeps prefixes
    comparable) and the indices of pieces carrying a cache breakpoint.
    """
    pieces: list[str] = []
    marks: list[int] = []

    def add(tag: str, block: Any) -> None:
        if isinstance(block, dict) and block.get("cache_control"):
            marks.append(len(pieces))
        pieces.append(tag + canonical_json(_strip_cc(block)))

    for tool in body.get("tools") or []:
        add("T", tool)
    system = body.get("system")
    if isinstance(system, str):
        add("S", system)
    elif isinstance(system, list):
        for block in system:
            add("S", block)
    for msg in body.get("messages") or []:
        content = msg.get("content")
        role = str(msg.get("role", "user"))[:1]
        for block in content if isinstance(content, list) else [content]:
            add("M" + role, block)
    if body.get("cache_control") and pieces and (not marks or marks[-1] != len(pieces) - 1):
        marks.append(len(pieces) - 1)  # top-level (automatic) caching: breakpoint on the last block
    return pieces, marks


def sse_events(msg: dict) -> Iterator[dict]:
    """The streaming events (``type`` doubles as the SSE event name) that rebuild ``msg``."""
    yield {"type": "message_start", "message": {**msg, "content": [], "stop_reason": None, "stop_sequence": None,
                                                "usage": {**msg["usage"], "output_tokens": 1}}}
    for i, block in enumerate(msg["content"]):
        kind, step, deltas = block.get("type"), 16, []
        if kind == "text":
            start, text = {**block, "text": ""}, block.get("text", "")
            deltas = [{"type": "text_delta", "text": text[j:j + step]} for j in range(0, len(text), step)]
        elif kind in ("tool_use", "server_tool_use"):
            start, js = {**block, "input": {}}, json.dumps(block.get("input") or {})
            deltas = [{"type": "input_json_delta", "partial_json": js[j:j + step]} for j in range(0, len(js), step)]
        else:  # other block types arrive whole
            start = block
        yield {"type": "content_block_start", "index": i, "content_block": start}
        for delta in deltas:
            yield {"type": "content_block_delta", "index": i, "delta": delta}
        yield {"type": "content_block_stop", "index": i}
    yield {"type": "message_delta", "delta": {"stop_reason": msg["stop_reason"], "stop_sequence": msg["stop_sequence"]},
           "usage": {"output_tokens": msg["usage"]["output_tokens"]}}
    yield {"type": "message_stop"}

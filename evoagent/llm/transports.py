"""Transports: how a request in the Messages format reaches a provider.

``AnthropicTransport`` uses the official SDK (its own retries off: the client
retries, so every attempt is counted and logged). ``OpenAITransport`` speaks
the OpenAI chat-completions format of local servers (vLLM, SGLang, llama.cpp)
and converts to and from the Messages format, so the rest of evoagent sees
one shape. API keys are read from the environment by the SDK or here, and
never put into requests, records or logs.
"""
from __future__ import annotations

import inspect
import json
import math
import os
import urllib.error
import urllib.request
from typing import Any

import httpx2

from evoagent.llm.errors import LLMError, TransientError

TRANSIENT = {408, 409, 429, 500, 502, 503, 504, 529}


def retry_after_s(headers: Any) -> float | None:
    """The wait a server asks for (``retry-after-ms`` or ``retry-after`` in seconds); None if
    absent or not a finite number (an untrusted header must not ask for an endless sleep)."""
    for name, scale in (("retry-after-ms", 1e-3), ("retry-after", 1.0)):
        value = headers.get(name) if headers is not None else None
        if value:
            try:
                wait = float(value) * scale
            except ValueError:
                continue
            if math.isfinite(wait):
                return max(wait, 0.0)
    return None


def normalize_usage(usage: dict[str, Any] | None) -> dict[str, int]:
    u = usage or {}
    return {
        "input_tokens": int(u.get("input_tokens") or 0),
        "output_tokens": int(u.get("output_tokens") or 0),
        "cache_write_tokens": int(u.get("cache_creation_input_tokens") or 0),
        "cache_read_tokens": int(u.get("cache_read_input_tokens") or 0),
    }


def message_to_answer(message: dict[str, Any]) -> dict[str, Any]:
    """A Messages API ``Message`` as the plain answer dict evoagent stores."""
    return {"content": message.get("content", []), "stop_reason": message.get("stop_reason"),
            "usage": normalize_usage(message.get("usage")), "id": message.get("id")}


class AnthropicTransport:
    """Claude through the official SDK; base URL from the argument or ``ANTHROPIC_BASE_URL``."""

    def __init__(self, base_url: str | None = None, timeout_s: float = 60.0, *, max_connections: int = 1024):
        import anthropic  # the SDK takes seconds to import: only when a campaign talks to Claude

        # The SDK's default pool keeps only 100 idle keep-alive connections: with more callers in
        # flight, every round closes and reopens the surplus. Keep one per concurrent caller.
        limits = httpx2.Limits(max_connections=max_connections, max_keepalive_connections=max_connections)
        kwargs: dict[str, Any] = {"max_retries": 0, "timeout": timeout_s,
                                  "http_client": anthropic.DefaultHttpxClient(limits=limits, timeout=timeout_s)}
        if base_url:
            kwargs["base_url"] = base_url
        if not os.environ.get("ANTHROPIC_API_KEY") and not os.environ.get("ANTHROPIC_AUTH_TOKEN"):
            raise LLMError("policy.kind = anthropic needs ANTHROPIC_API_KEY in the environment")
        self.sdk = anthropic.Anthropic(**kwargs)
        self._known = set(inspect.signature(self.sdk.messages.create).parameters)

    def close(self) -> None:
        """Close the SDK client and its connections."""
        self.sdk.close()

    def send(self, request: dict[str, Any]) -> dict[str, Any]:
        # Parameters this SDK version has no argument for (e.g. sampling settings) travel as extra body.
        known = {k: v for k, v in request.items() if k in self._known}
        extra = {k: v for k, v in request.items() if k not in self._known}
        import anthropic  # loaded by __init__ already

        try:
            # The raw JSON the API sent: cheaper than building and dumping the SDK's models, and
            # exactly what the provider said (the SDK still turns error statuses into exceptions).
            raw = self.sdk.messages.with_raw_response.create(**known, **({"extra_body": extra} if extra else {}))
            message = json.loads(raw.http_response.content)
        except anthropic.APIStatusError as exc:
            if exc.status_code in TRANSIENT:
                raise TransientError(f"{exc.status_code} {type(exc).__name__}", retry_after_s(exc.response.headers)) from None
            raise LLMError(f"{exc.status_code} {type(exc).__name__}: {str(exc)[:200]}") from None
        except (anthropic.APITimeoutError, anthropic.APIConnectionError) as exc:
            raise TransientError(type(exc).__name__) from None
        return message_to_answer(message)


def _to_openai(request: dict[str, Any]) -> dict[str, Any]:
    system = request.get("system") or ""
    if isinstance(system, list):
        system = "\n".join(b.get("text", "") for b in system)
    msgs: list[dict[str, Any]] = [{"role": "system", "content": system}] if system else []
    for m in request.get("messages", []):
        blocks = m["content"] if isinstance(m["content"], list) else [{"type": "text", "text": m["content"]}]
        texts = [b["text"] for b in blocks if b.get("type") == "text"]
        calls = [b for b in blocks if b.get("type") == "tool_use"]
        results = [b for b in blocks if b.get("type") == "tool_result"]
        for r in results:
            content = r.get("content")
            msgs.append({"role": "tool", "tool_call_id": r["tool_use_id"],
                         "content": content if isinstance(content, str) else json.dumps(content)})
        if m["role"] == "assistant":
            out: dict[str, Any] = {"role": "assistant", "content": "\n".join(texts) or None}
            if calls:
                out["tool_calls"] = [{"id": c["id"], "type": "function", "function": {
                    "name": c["name"], "arguments": json.dumps(c["input"])}} for c in calls]
            msgs.append(out)
        elif texts:
            msgs.append({"role": "user", "content": "\n".join(texts)})
    body: dict[str, Any] = {"model": request["model"], "messages": msgs,
                            "max_tokens": request.get("max_tokens", 512)}
    if "temperature" in request:
        body["temperature"] = request["temperature"]
    if request.get("tools"):
        body["tools"] = [{"type": "function", "function": {
            "name": t["name"], "description": t.get("description", ""), "parameters": t["input_schema"]}}
            for t in request["tools"]]
    return body


class OpenAITransport:
    """Any OpenAI-compatible chat-completions server, e.g. ``http://127.0.0.1:8000/v1``."""

    def __init__(self, base_url: str, timeout_s: float = 60.0):
        if not base_url:
            raise LLMError("policy.kind = openai needs policy.base_url (e.g. http://127.0.0.1:8000/v1)")
        self.url = base_url.rstrip("/") + "/chat/completions"
        self.timeout_s = timeout_s

    def close(self) -> None:
        """Nothing held open: one connection per request."""

    def send(self, request: dict[str, Any]) -> dict[str, Any]:
        headers = {"Content-Type": "application/json"}
        if os.environ.get("OPENAI_API_KEY"):
            headers["Authorization"] = f"Bearer {os.environ['OPENAI_API_KEY']}"
        req = urllib.request.Request(self.url, data=json.dumps(_to_openai(request)).encode(),
                                     headers=headers, method="POST")
        try:
            with urllib.request.urlopen(req, timeout=self.timeout_s) as resp:
                data = json.loads(resp.read())
        except urllib.error.HTTPError as exc:
            if exc.code in TRANSIENT:
                raise TransientError(str(exc.code), retry_after_s(exc.headers)) from None
            raise LLMError(f"{exc.code}: {exc.read()[:200]!r}") from None
        except (urllib.error.URLError, TimeoutError, ConnectionError) as exc:
            raise TransientError(type(exc).__name__) from None
        msg = data["choices"][0]["message"]
        content: list[dict[str, Any]] = []
        if msg.get("content"):
            content.append({"type": "text", "text": msg["content"]})
        for call in msg.get("tool_calls") or []:
            try:
                args = json.loads(call["function"].get("arguments") or "{}")
            except json.JSONDecodeError:
                args = {"_unparsed": call["function"].get("arguments")}
            content.append({"type": "tool_use", "id": call.get("id", ""), "name": call["function"]["name"],
                            "input": args})
        usage = data.get("usage") or {}
        return {"content": content, "stop_reason": data["choices"][0].get("finish_reason"),
                "usage": {"input_tokens": int(usage.get("prompt_tokens", 0)),
                          "output_tokens": int(usage.get("completion_tokens", 0)),
                          "cache_write_tokens": 0, "cache_read_tokens": 0}}

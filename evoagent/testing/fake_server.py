"""A loopback HTTP server speaking enough of the Anthropic Messages API for the real SDK.

Point ``anthropic.Anthropic(base_url=server.url, api_key="test", max_retries=0)`` at it.
Endpoints: ``POST /v1/messages`` (plain and SSE streaming), ``POST /v1/messages/count_tokens``,
``POST /v1/messages/batches``, ``GET /v1/messages/batches/{id}`` and ``.../results`` (JSONL).
Faults (429/529/500...), latency, token usage and prompt caching are simulated deterministically.
Run standalone: ``python -m evoagent.testing.fake_server --port 8765 --latency 0.2 --faults 429=0.1``.
"""
from __future__ import annotations

import argparse
import collections
import hashlib
import itertools
import json
import random
import re
import socket
import sys
import threading
import time
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable

from evoagent.testing.fake_wire import prompt_pieces, canonical_json, request_key, sse_events

Responder = Callable[[dict], dict]

ERROR_TYPES = {400: "invalid_request_error", 401: "authentication_error", 403: "permission_error",
               404: "not_found_error", 413: "request_too_large", 429: "rate_limit_error", 529: "overloaded_error"}
CACHE_LOOKBACK = 20  # block boundaries searched backwards from each breakpoint, like the real API
_BATCH_RE = re.compile(r"^/v1/messages/batches/([A-Za-z0-9_\-]+)(/results)?$")


def default_responder(body: dict) -> dict:
    """Reply with a deterministic text block ``ok <first 8 hex chars of the request key>``."""
    return {"content": [{"type": "text", "text": f"ok {request_key(body)[:8]}"}], "stop_reason": "end_turn"}


def _rfc3339(t: float) -> str:
    return datetime.fromtimestamp(t, timezone.utc).isoformat().replace("+00:00", "Z")


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
    server: "_Server"

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - silence access log
        pass

    def setup(self) -> None:
        super().setup()
        self.server.owner._track(self.connection, True)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self.server.owner._track(self.connection, False)

    def do_GET(self) -> None:
        self.server.owner._dispatch(self, self.command)

    do_POST = do_DELETE = do_GET


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 1024
    allow_reuse_address = True
    owner: "FakeAnthropic"

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Clients hanging up (or ``stop()`` cutting keep-alive sockets) are not errors."""
        if not isinstance(sys.exc_info()[1], OSError):
            super().handle_error(request, client_address)


class FakeAnthropic:
    """Fake Anthropic API on loopback; use as a context manager or call ``start()``/``stop()``."""

    def __init__(self, responder: Responder | None = None, *, latency_s: float = 0.0,
                 faults: dict[int, float] | None = None, retry_after_s: float = 0.05, seed: int = 0,
                 batch_latency_s: float = 0.3, host: str = "127.0.0.1", port: int = 0) -> None:
        self.responder: Responder = responder or default_responder
        self.latency_s = latency_s
        self.faults = dict(sorted((faults or {}).items()))
        if sum(self.faults.values()) > 1.0 + 1e-9:
            raise ValueError(f"fault probabilities sum above 1: {self.faults}")
        self.retry_after_s = retry_after_s
        self.batch_latency_s = batch_latency_s
        self.host, self.port = host, port
        self.url = ""
        self._rng = random.Random(seed)
        self._lock = threading.Lock()
        self._ids = itertools.count(1)
        self._received: collections.Counter[str] = collections.Counter()
        self._delivered: collections.Counter[str] = collections.Counter()
        self._requests: collections.Counter[str] = collections.Counter()
        self._faults: collections.Counter[int] = collections.Counter()
        self._batches_created = 0
        self._cache: set[str] = set()
        self._batches: dict[str, dict] = {}
        self._conns: set[socket.socket] = set()
        self._httpd: _Server | None = None
        self._thread: threading.Thread | None = None

    # ---- lifecycle -------------------------------------------------------------------------
    def start(self) -> "FakeAnthropic":
        """Bind and serve in a daemon thread; sets ``url``."""
        if self._httpd is not None:
            return self
        httpd = _Server((self.host, self.port), _Handler)
        httpd.owner = self
        self._httpd = httpd
        self.port = httpd.server_address[1]
        self.url = f"http://{self.host}:{self.port}"
        self._thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.1},
                                        name=f"fake-anthropic-{self.port}", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and drop open keep-alive connections."""
        httpd, self._httpd = self._httpd, None
        if httpd is None:
            return
        httpd.shutdown()
        httpd.server_close()
        with self._lock:
            conns = list(self._conns)
        for conn in conns:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> "FakeAnthropic":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _track(self, conn: socket.socket, add: bool) -> None:
        with self._lock:
            (self._conns.add if add else self._conns.discard)(conn)

    # ---- observability ---------------------------------------------------------------------
    def received(self) -> collections.Counter[str]:
        """Times each distinct request key arrived (faulted attempts included)."""
        with self._lock:
            return collections.Counter(self._received)

    def delivered(self) -> collections.Counter[str]:
        """Times each distinct request key got a successful answer (batch items: at creation)."""
        with self._lock:
            return collections.Counter(self._delivered)

    @property
    def stats(self) -> dict[str, Any]:
        """Snapshot: ``requests`` by endpoint, ``faults`` by status, ``batches_created``."""
        with self._lock:
            return {"requests": dict(self._requests), "faults": dict(self._faults),
                    "batches_created": self._batches_created}

    # ---- simulation ------------------------------------------------------------------------
    def usage(self, body: dict) -> dict[str, int]:
        """Input-side usage for a request, updating the prompt cache."""
        pieces, marks = prompt_pieces(body)
        cum = [0]
        hashes: list[str] = []
        h = hashlib.sha256()
        for piece in pieces:
            h.update(piece.encode())
            h.update(b"\x1e")
            hashes.append(h.hexdigest())
            cum.append(cum[-1] + len(piece))
        total = cum[-1] // 4
        if not marks:
            return {"input_tokens": max(1, total), "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0}
        last = marks[-1]
        with self._lock:
            hit = -1
            for m in marks:
                for i in range(m, max(-1, m - CACHE_LOOKBACK - 1), -1):
                    if i > hit and hashes[i] in self._cache:
                        hit = i
                        break
            self._cache.update(hashes[m] for m in marks)
        read = cum[hit + 1] // 4 if hit >= 0 else 0
        cached = cum[last + 1] // 4
        return {"input_tokens": max(1, total - cached), "cache_creation_input_tokens": cached - read,
                "cache_read_input_tokens": read}

    def _draw_fault(self) -> int | None:
        """One seeded draw per request; statuses take consecutive slices of [0, 1)."""
        if not self.faults:
            return None
        with self._lock:
            r = self._rng.random()
        for status, acc in zip(self.faults, itertools.accumulate(self.faults.values())):
            if r < acc:
                return status
        return None

    def _next_id(self, prefix: str) -> str:
        with self._lock:
            n = next(self._ids)
        return f"{prefix}_fake{self.port:05d}{n:012d}"

    def _message(self, body: dict) -> dict:
        """Run the responder and build a full Message object."""
        reply = self.responder(body)
        content = list(reply.get("content") or [])
        out = reply.get("output_tokens", max(1, len(canonical_json(content)) // 4))
        return {"id": self._next_id("msg"), "type": "message", "role": "assistant",
                "model": body.get("model", "fake-model"), "content": content,
                "stop_reason": reply.get("stop_reason", "end_turn"),
                "stop_sequence": reply.get("stop_sequence"),
                "usage": {**self.usage(body), "output_tokens": int(out)}}

    # ---- HTTP plumbing -------------------------------------------------------------------
    def _send(self, h: _Handler, status: int, payload: Any, *, ctype: str = "application/json",
              headers: dict[str, str] | None = None) -> None:
        data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        h.send_response(status)
        h.send_header("Content-Type", ctype)
        h.send_header("Content-Length", str(len(data)))
        h.send_header("request-id", self._next_id("req"))
        for k, v in (headers or {}).items():
            h.send_header(k, v)
        h.end_headers()
        h.wfile.write(data)

    def _error(self, h: _Handler, status: int, message: str) -> None:
        etype = ERROR_TYPES.get(status, "api_error")
        headers = {}
        if status == 429:
            headers = {"retry-after": f"{self.retry_after_s:g}",
                       "retry-after-ms": f"{self.retry_after_s * 1000:g}"}
        body = {"type": "error", "error": {"type": etype, "message": message}}
        self._send(h, status, body, headers=headers)

    def _dispatch(self, h: _Handler, method: str) -> None:
        length = int(h.headers.get("Content-Length") or 0)
        raw = h.rfile.read(length) if length else b""
        path = h.path.split("?", 1)[0].rstrip("/")
        m = _BATCH_RE.match(path)
        endpoint = f"{method} " + (re.sub(r"batches/[^/]+", "batches/{id}", path) if m else path)
        try:
            body = json.loads(raw) if raw else {}
        except ValueError:
            body = None
        with self._lock:
            self._requests[endpoint] += 1
        keys: list[str] = []
        if method == "POST" and path == "/v1/messages" and isinstance(body, dict):
            keys = [request_key(body)]
        elif method == "POST" and path == "/v1/messages/batches" and isinstance(body, dict):
            keys = [request_key(item.get("params") or {}) for item in body.get("requests") or []]
        with self._lock:
            self._received.update(keys)
        status = self._draw_fault()
        if status is not None:
            with self._lock:
                self._faults[status] += 1
            self._error(h, status, f"injected fault {status}")
            return
        if body is None or not isinstance(body, dict):
            self._error(h, 400, "request body is not valid JSON")
            return
        try:
            if method == "POST" and path in ("/v1/messages", "/v1/messages/count_tokens",
                                             "/v1/messages/batches") and self.latency_s > 0:
                time.sleep(self.latency_s)
            if method == "POST" and path == "/v1/messages":
                self._create(h, body)
            elif method == "POST" and path == "/v1/messages/count_tokens":
                pieces, _ = prompt_pieces(body)
                self._send(h, 200, {"input_tokens": max(1, sum(len(p) for p in pieces) // 4)})
            elif method == "POST" and path == "/v1/messages/batches":
                self._create_batch(h, body)
            elif method == "GET" and m:
                self._get_batch(h, m.group(1), bool(m.group(2)))
            else:
                self._error(h, 404, f"no route for {method} {path}")
        except (BrokenPipeError, ConnectionResetError):
            raise
        except Exception as exc:  # responder bugs surface as api_error 500
            self._error(h, 500, f"fake server error: {type(exc).__name__}: {exc}")

    # ---- endpoints -----------------------------------------------------------------------
    def _create(self, h: _Handler, body: dict) -> None:
        if not body.get("messages"):
            self._error(h, 400, "messages: field required")
            return
        msg = self._message(body)
        with self._lock:
            self._delivered[request_key(body)] += 1
        if body.get("stream"):
            self._stream(h, msg)
        else:
            self._send(h, 200, msg)

    def _stream(self, h: _Handler, msg: dict) -> None:
        """Write the message as SSE events using chunked transfer encoding."""
        h.send_response(200)
        for k, v in (("Content-Type", "text/event-stream; charset=utf-8"), ("Cache-Control", "no-cache"),
                     ("Transfer-Encoding", "chunked"), ("request-id", self._next_id("req"))):
            h.send_header(k, v)
        h.end_headers()
        for ev in sse_events(msg):
            chunk = f"event: {ev['type']}\ndata: {json.dumps(ev)}\n\n".encode()
            h.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
        h.wfile.write(b"0\r\n\r\n")

    def _create_batch(self, h: _Handler, body: dict) -> None:
        requests = body.get("requests")
        if not isinstance(requests, list) or not requests:
            self._error(h, 400, "requests: must be a non-empty list")
            return
        results = []
        for item in requests:
            params = item.get("params") or {}
            message = self._message(params)
            results.append({"custom_id": item.get("custom_id"),
                            "result": {"type": "succeeded", "message": message}})
        keys = [request_key(item.get("params") or {}) for item in requests]
        with self._lock:
            self._delivered.update(keys)
            self._batches_created += 1
        now = time.time()
        batch_id = self._next_id("msgbatch")
        batch = {"id": batch_id, "created": now, "ends": now + self.batch_latency_s, "results": results}
        with self._lock:
            self._batches[batch_id] = batch
        self._send(h, 200, self._batch_json(batch))

    def _batch_json(self, batch: dict) -> dict:
        n = len(batch["results"])
        ended = time.time() >= batch["ends"]
        return {"id": batch["id"], "type": "message_batch",
                "processing_status": "ended" if ended else "in_progress",
                "request_counts": {"processing": 0 if ended else n, "succeeded": n if ended else 0,
                                   "errored": 0, "canceled": 0, "expired": 0},
                "created_at": _rfc3339(batch["created"]), "expires_at": _rfc3339(batch["created"] + 86400),
                "ended_at": _rfc3339(batch["ends"]) if ended else None, "archived_at": None,
                "cancel_initiated_at": None,
                "results_url": f"{self.url}/v1/messages/batches/{batch['id']}/results" if ended else None}

    def _get_batch(self, h: _Handler, batch_id: str, results: bool) -> None:
        with self._lock:
            batch = self._batches.get(batch_id)
        if batch is None:
            self._error(h, 404, f"message batch {batch_id!r} not found")
        elif not results:
            self._send(h, 200, self._batch_json(batch))
        elif time.time() < batch["ends"]:
            self._error(h, 400, f"message batch {batch_id!r} is still processing")
        else:
            lines = "".join(json.dumps(r) + "\n" for r in batch["results"])
            self._send(h, 200, lines.encode(), ctype="application/binary")


def _parse_faults(text: str) -> dict[int, float]:
    """Parse ``429=0.1,529=0.05`` into ``{429: 0.1, 529: 0.05}``."""
    out: dict[int, float] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        code, _, prob = part.partition("=")
        out[int(code)] = float(prob)
    return out


def main(argv: list[str] | None = None) -> None:
    """CLI entry point: serve until killed."""
    ap = argparse.ArgumentParser(description="Fake Anthropic API server on loopback.")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=8765)
    ap.add_argument("--latency", type=float, default=0.0, help="seconds slept per messages request")
    ap.add_argument("--faults", default="", help="e.g. 429=0.1,529=0.05,500=0.02")
    ap.add_argument("--retry-after", type=float, default=0.05)
    ap.add_argument("--batch-latency", type=float, default=0.3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--responder", default="echo",
                    help="echo, or an environment with a fake agent (its part's fake_agent): answer as "
                    "that environment's LLM agent would, from its recorded runs")
    ap.add_argument("--malformed", type=float, default=0.0, help="share of answers without a tool call")
    args = ap.parse_args(argv)
    responder = None
    if args.responder != "echo":
        from evoagent import registry

        env = registry.get("environment", args.responder) if args.responder in registry.names("environment") else None
        if env is None or env.fake_agent is None:
            have = [n for n in registry.names("environment") if registry.get("environment", n).fake_agent]
            ap.error(f"--responder: {args.responder!r} is neither echo nor an environment with a fake agent "
                     f"(have {', '.join(['echo', *have])})")
        responder = env.fake_agent(malformed=args.malformed, seed=args.seed)
    server = FakeAnthropic(responder, latency_s=args.latency, faults=_parse_faults(args.faults),
                           retry_after_s=args.retry_after, seed=args.seed,
                           batch_latency_s=args.batch_latency, host=args.host, port=args.port).start()
    print(server.url, flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()


if __name__ == "__main__":
    main()

"""``evoagent rm serve``: a reward model behind HTTP, with dynamic batching.

It speaks the API shapes clients of reward models already use, so that the
``http`` reward kind, vLLM's clients and OpenRLHF's trainer can all call it:

- ``GET /health``: 200 once the model is loaded;
- ``GET /v1/models``: the served model (its directory's name), as vLLM lists it, plus ``digest``: the
  content digest of the model's files (``evoagent.rm.model.content_digest``), which every answer also
  carries in the ``X-Model-Digest`` header, so a client can tell which weights made a score;
- ``POST /pooling``: vLLM's pooling API, ``{"model"?, "input": str | [str]}`` ->
  ``{"id","object":"list","created","model","data":[{"index","object":"pooling","data":[score]}],"usage"}``;
- ``POST /classify``: vLLM's classification API, same request ->
  ``data: [{"index","label","probs":[1 - score, score],"num_classes":2}]`` (label ``LABEL_1`` when
  score >= 0.5, else ``LABEL_0``);
- ``POST /get_reward``: OpenRLHF's remote reward model, ``{"query": [str]}`` -> ``{"rewards": [score]}``.

A score is the model's probability that the rendered prefix leads to success
(``ProcessRewardModel.score_texts``). Rules that keep the server alive and its
memory bounded: a body over ``max_body_bytes`` is refused (413); more than
``max_inputs`` texts in one request, a missing or empty input, a text that is
not a string, invalid JSON (400) and a model name other than the served one
(404) get a one-line reason; a body whose content type is not JSON -> 415; a
text longer than ``max_chars`` characters keeps its last ``max_chars`` (the end
of a prefix is the step being scored, as in ``evoagent.rm.text.prefix_text``);
more than ``max_queued`` texts waiting -> 503; a model error fails only the
requests it came from (500). ``usage.prompt_tokens`` counts
whitespace-separated words: the server does not tokenize.

Hostile or broken clients cannot hold the server (defaults in :class:`Limits`):
a connection that has not sent a whole request head within ``idle_timeout_s``
(after connecting or after its last answer) is closed; a body must arrive
whole within ``body_timeout_s`` of its head (else 408, connection closed).
Memory is bounded by bytes actually received, not by connections: all bodies
being received hold at most ``max_buffered_bytes`` (then 503), so clients that
open a body and send nothing take no share of it. At most ``max_reading``
bodies are received at once; when that many are open, the one that has waited
longest for a byte is cut (408) to make room, so idle clients can never keep
others out. Bodies are parsed one at a time, and fields are checked by type
before any value is converted or quoted.
"""
from __future__ import annotations

import json
import socket
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from evoagent.errors import UserError

if TYPE_CHECKING:  # aiohttp, asyncio and the batcher load when a server is built: `evoagent` starts without them
    from aiohttp import web

__all__ = ["DIGEST_HEADER", "Limits", "build_app", "serve", "serve_model_dir"]


class ScoresTexts(Protocol):
    """What the server needs of a model (``evoagent.rm.model.ProcessRewardModel`` has it)."""

    name: str
    digest: str  # the content digest of the weights (empty: not known)

    def score_texts(self, texts: list[str]) -> list[float]: ...


@dataclass(frozen=True)
class Limits:
    """Batching and the bounds on what one request may ask for."""

    max_batch: int = 64  # texts per model call
    max_wait_ms: float = 2.0  # how long the first queued text waits for others
    max_chars: int = 4000  # longer texts keep their last max_chars characters
    max_body_bytes: int = 4 * 1024 * 1024
    max_inputs: int = 1024  # texts per request
    max_queued: int = 8192  # texts waiting before new requests get 503
    max_reading: int = 256  # bodies received at once; when full, the longest-waiting one is cut (408)
    max_buffered_bytes: int = 64 * 1024 * 1024  # bytes of all bodies being received, in all (then 503)
    idle_timeout_s: float = 15.0  # a connection's time to send a request head (after connect or an answer)
    body_timeout_s: float = 30.0  # a request's time to send its whole body after its head (then 408)

    def check(self) -> None:
        """A bad limit is a user mistake, named in one line."""
        for f in fields(self):
            value = getattr(self, f.name)
            low = 0 if f.name == "max_wait_ms" else 0.01 if f.name.endswith("_s") else 1
            if not low <= value <= 10**9:
                raise UserError(f"--{f.name.replace('_', '-')} must be within {low:g}..1000000000, got {value}")
        if self.max_inputs > self.max_queued:
            raise UserError(f"max_inputs ({self.max_inputs}) must not exceed max_queued ({self.max_queued})")
        if self.max_body_bytes > self.max_buffered_bytes:  # else a body within its limit could never be read
            raise UserError(f"--max-body-bytes ({self.max_body_bytes}) must not exceed max_buffered_bytes "
                            f"({self.max_buffered_bytes})")


class _Refused(Exception):
    """A request the server will not run: an HTTP status and a one-line reason."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


_ERROR_TYPES = {400: "BadRequestError", 404: "NotFoundError", 405: "MethodNotAllowed", 408: "RequestTimeout",
                413: "RequestTooLarge", 415: "UnsupportedMediaType", 500: "InternalServerError",
                503: "ServiceUnavailable"}
DIGEST_HEADER = "X-Model-Digest"


def _json(payload: Any, status: int = 200) -> web.Response:
    from aiohttp import web

    return web.Response(text=json.dumps(payload, allow_nan=False), status=status, content_type="application/json")


def _error(status: int, message: str) -> web.Response:
    line = " ".join(message.split())[:300]
    return _json({"error": {"message": line, "type": _ERROR_TYPES.get(status, "Error"), "code": status}}, status)


def _texts(body: dict[str, Any], key: str, limits: Limits) -> list[str]:
    if key not in body:
        hint = " (chat 'messages' are not supported: send the rendered text)" if "messages" in body else ""
        raise _Refused(400, f"missing {key!r}: a string or a list of strings{hint}")
    value = body[key]
    texts = [value] if isinstance(value, str) else value
    if not isinstance(texts, list) or not all(isinstance(t, str) for t in texts):
        raise _Refused(400, f"{key!r} must be a string or a list of strings")
    if not texts:
        raise _Refused(400, f"{key!r} is empty")
    if len(texts) > limits.max_inputs:
        raise _Refused(400, f"too many inputs: {len(texts)} (at most {limits.max_inputs} per request)")
    return [t[-limits.max_chars:] if len(t) > limits.max_chars else t for t in texts]


class _Routes:
    """The handlers of one served model (aiohttp is imported only when a server is built)."""

    def __init__(self, model: ScoresTexts, limits: Limits, parallel: int):
        self.model, self.limits, self.parallel = model, limits, parallel
        from evoagent.rm.batching import DynamicBatcher

        self.started = int(time.time())
        # Bodies being received now: id -> [when a byte last came, its request] (one event loop: no lock).
        self.bodies: dict[int, list[Any]] = {}
        self.buffered = 0  # bytes of those bodies held in memory
        self.batcher = DynamicBatcher(model.score_texts, max_batch=limits.max_batch, max_wait_ms=limits.max_wait_ms,
                                      max_queued=limits.max_queued, parallel=parallel)

    async def one_line_errors(self, request: web.Request,
                              handler: Callable[[web.Request], Awaitable[web.StreamResponse]]) -> web.StreamResponse:
        """Every failure is a JSON error with one line; nothing a request does stops the server."""
        from aiohttp import web

        from evoagent.rm.batching import ModelFailure, Overloaded

        cut = False  # a refused body may be unread: the answer is sent, then the connection closed
        try:
            response = await handler(request)
        except _Refused as exc:
            response = _error(exc.status, str(exc))
            cut = exc.status in (408, 413, 415, 503) and request.method == "POST"
        except web.HTTPRequestEntityTooLarge:
            response = _error(413, f"the body is over the server's limit of {self.limits.max_body_bytes} bytes")
        except web.HTTPException as exc:
            if exc.status < 400:
                raise
            response = _error(exc.status, exc.reason)
        except Overloaded as exc:
            response = _error(503, str(exc))
        except ModelFailure as exc:
            response = _error(500, f"the model failed on this request: {exc}")
        except Exception as exc:  # noqa: BLE001 - a bug must cost one request, not the server
            response = _error(500, f"{type(exc).__name__}: {exc}")
        if self.digest:
            response.headers[DIGEST_HEADER] = self.digest  # which weights made this answer
        if cut:
            response.force_close()
            await response.prepare(request)
            await response.write_eof()
            if request.transport is not None:
                request.transport.close()  # not after aiohttp's lingering read of the rest of the body
        return response

    @property
    def digest(self) -> str:
        """The served weights' content digest, asked of the model at each answer (empty: unknown)."""
        return str(getattr(self.model, "digest", "") or "")

    def _make_room(self) -> None:
        """At ``max_reading`` bodies: cut the one that has waited longest for a byte (idle clients
        cannot keep others out); its handler answers 408 as its read fails."""
        if len(self.bodies) < self.limits.max_reading:
            return
        _, stalled = self.bodies.pop(min(self.bodies, key=lambda k: self.bodies[k][0]))
        if stalled.transport is not None:
            stalled.transport.close()

    async def _read(self, request: web.Request) -> bytes:
        """The whole body within ``body_timeout_s``, counted against ``max_buffered_bytes`` as it arrives."""
        import asyncio

        limits, loop = self.limits, asyncio.get_running_loop()
        if request.content_length is not None and request.content_length > limits.max_body_bytes:
            raise _Refused(413, f"the body ({request.content_length} bytes) is over the server's limit of "
                                f"{limits.max_body_bytes} bytes")
        self._make_room()
        deadline, raw = loop.time() + limits.body_timeout_s, bytearray()
        key = id(request)
        self.bodies[key] = [loop.time(), request]
        try:
            while True:
                try:
                    async with asyncio.timeout(deadline - loop.time()):
                        chunk = await request.content.readany()
                except TimeoutError:
                    raise _Refused(408, f"the body did not arrive whole within {limits.body_timeout_s:g} s") from None
                except (ConnectionError, OSError, web.HTTPException):
                    raise
                except Exception:  # noqa: BLE001 - the connection was cut (e.g. to make room)
                    raise _Refused(408, "the body stopped arriving; the connection was closed") from None
                if key not in self.bodies:
                    raise _Refused(408, "the body waited longest while the server was full; the connection was closed")
                if not chunk:
                    return bytes(raw)
                if len(raw) + len(chunk) > limits.max_body_bytes:
                    raise _Refused(413, f"the body is over the server's limit of {limits.max_body_bytes} bytes")
                if self.buffered + len(chunk) > limits.max_buffered_bytes:
                    raise _Refused(503, f"{self.buffered} bytes of request bodies are being received (at most "
                                        f"{limits.max_buffered_bytes}); retry")
                raw += chunk
                self.buffered += len(chunk)
                self.bodies[key][0] = loop.time()
        finally:
            self.bodies.pop(key, None)
            self.buffered -= len(raw)

    async def _body(self, request: web.Request) -> dict[str, Any]:
        kind = request.content_type
        if kind != "application/json" and not kind.endswith("+json"):
            raise _Refused(415, f"the content type must be application/json, not {kind[:60]!r}")
        raw = await self._read(request)
        try:  # synchronous: one body is parsed at a time
            body = json.loads(raw)
        except (ValueError, RecursionError) as exc:
            raise _Refused(400, f"invalid JSON: {str(exc)[:100]}") from None
        if not isinstance(body, dict):
            raise _Refused(400, "the body must be a JSON object")
        model = body.get("model")
        if model is not None and not isinstance(model, str):  # checked by type: never converted whole
            raise _Refused(400, f"'model' must be a string, not a JSON {type(model).__name__}")
        if model is not None and model != self.model.name:
            raise _Refused(404, f"the model {model[:100]!r} does not exist; this server serves {self.model.name!r}")
        return body

    async def _scores(self, request: web.Request, key: str) -> tuple[list[str], list[float]]:
        texts = _texts(await self._body(request), key, self.limits)
        return texts, await self.batcher.score(texts)

    def _envelope(self, kind: str, data: list[dict[str, Any]], texts: list[str]) -> dict[str, Any]:
        words = sum(len(t.split()) for t in texts)
        return {"id": f"{kind}-{uuid.uuid4().hex}", "object": "list", "created": int(time.time()),
                "model": self.model.name, "data": data,
                "usage": {"prompt_tokens": words, "total_tokens": words, "completion_tokens": 0,
                          "prompt_tokens_details": None}}

    async def pooling(self, request: web.Request) -> web.Response:
        texts, values = await self._scores(request, "input")
        data = [{"index": i, "object": "pooling", "data": [v]} for i, v in enumerate(values)]
        return _json(self._envelope("pool", data, texts))

    async def classify(self, request: web.Request) -> web.Response:
        texts, values = await self._scores(request, "input")
        data = [{"index": i, "label": "LABEL_1" if v >= 0.5 else "LABEL_0", "probs": [1.0 - v, v],
                 "num_classes": 2} for i, v in enumerate(values)]
        return _json(self._envelope("classify", data, texts))

    async def get_reward(self, request: web.Request) -> web.Response:
        _, values = await self._scores(request, "query")
        return _json({"rewards": values})

    async def models(self, request: web.Request) -> web.Response:
        return _json({"object": "list", "data": [{
            "id": self.model.name, "object": "model", "created": self.started, "owned_by": "evoagent",
            "root": self.model.name, "parent": None, "max_model_len": self.limits.max_chars,
            "digest": self.digest or None}]})

    async def health(self, request: web.Request) -> web.Response:
        return _json({"status": "ok"})


def build_app(model: ScoresTexts, limits: Limits = Limits(), parallel: int = 1) -> web.Application:
    """The aiohttp application serving ``model``; the batcher starts and stops with it.
    ``parallel``: batches in flight at once (the number of replicas behind ``model``)."""
    return _build(model, limits, parallel)[0]


def _build(model: ScoresTexts, limits: Limits, parallel: int) -> tuple[web.Application, _Routes]:
    from aiohttp import web

    routes = _Routes(model, limits, parallel)

    @web.middleware
    async def one_line_errors(request: web.Request, handler: Any) -> web.StreamResponse:
        return await routes.one_line_errors(request, handler)

    app = web.Application(client_max_size=limits.max_body_bytes, middlewares=[one_line_errors])

    async def start(app: web.Application) -> None:
        await routes.batcher.start()

    async def stop(app: web.Application) -> None:
        await routes.batcher.close()

    app.on_startup.append(start)
    app.on_cleanup.append(stop)
    app.router.add_get("/health", routes.health)
    app.router.add_get("/v1/models", routes.models)
    for path, handler in (("/pooling", routes.pooling), ("/classify", routes.classify)):
        app.router.add_post(path, handler)
        app.router.add_post("/v1" + path, handler)  # vLLM serves both spellings
    app.router.add_post("/get_reward", routes.get_reward)
    return app, routes


def _listen(host: str, port: int) -> socket.socket:
    try:
        family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][0]
        return socket.create_server((host, port), family=family, backlog=1024)
    except (OSError, OverflowError) as exc:
        raise UserError(f"cannot listen on {host}:{port}: {exc}") from None


def _url(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def serve(model: ScoresTexts, *, host: str = "127.0.0.1", port: int = 8000, limits: Limits = Limits(),
          parallel: int = 1, announce: Callable[[str], None] = print) -> None:
    """Serve until Ctrl-C/SIGTERM; ``announce`` gets one line with the URL once it listens."""
    limits.check()
    sock = _listen(host, port)
    line = (f"serving {model.name} at {_url(sock)} (POST /pooling /classify /get_reward; "
            f"batches of up to {limits.max_batch} texts or {limits.max_wait_ms:g} ms)")
    from aiohttp import web

    web.run_app(build_app(model, limits, parallel), sock=sock, print=lambda _: announce(line), access_log=None,
                shutdown_timeout=5, keepalive_timeout=limits.idle_timeout_s)


def serve_model_dir(model_dir: str | Path, *, host: str, port: int, workers: int = 0,
                    announce: Callable[[str], None] = print, **limits: Any) -> None:
    """``evoagent rm serve``: load the model at ``model_dir`` (``workers`` > 0: that many copies in
    worker processes) and serve it until Ctrl-C/SIGTERM. ``limits`` are ``Limits`` fields (a
    ``max_chars`` of None: the model's own); a missing model or a bad limit is a ``UserError``."""
    from evoagent.rm.model import load_model

    model: Any = load_model(Path(model_dir))
    if limits.get("max_chars") is None:
        limits["max_chars"] = int(getattr(model, "max_chars", 4000))
    checked = Limits(**limits)
    checked.check()
    if workers:
        from evoagent.rm.hosting import ProcessReplicas

        model = ProcessReplicas(model_dir, workers, model.name, model.digest)
    try:
        serve(model, host=host, port=port, limits=checked, parallel=max(1, workers), announce=announce)
    finally:
        if workers:
            model.close()

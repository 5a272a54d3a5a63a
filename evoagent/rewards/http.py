"""``http``: a reward model served over HTTP (``evoagent rm serve``, vLLM, OpenRLHF).

Each query is rendered with :func:`evoagent.rm.text.prefix_text` (the task,
then each action with the environment's answer; a terminal query with its
submit, as the ``prm`` kind renders it) and sent in batches of up to
``rewards.http.max_batch`` texts. A query that lacks its observations (e.g. a
prefix no episode has executed yet) is executed first, and those environment
steps are counted. What is called and how its answer is read
(``rewards.http.api``):

- ``classify`` (vLLM ``POST /classify``): ``data[i].probs[label_index]``, the
  positive class's probability;
- ``pooling`` (vLLM ``POST /pooling``): ``data[i].data`` is either a list of
  numbers (one pooled vector: its last number) or a list of rows (one per
  token or step tag, e.g. a PRM's ``[p(bad), p(good)]`` at each step tag: the
  last row's ``label_index`` entry, or its only number);
- ``get_reward`` (OpenRLHF's remote reward model): ``{"query": [texts]}`` ->
  ``{"rewards": [numbers]}``.

Faults: connection errors, timeouts (``timeout_s`` per request), 408, 429 and
5xx are retried with exponential backoff (``retry_base_s`` x 2^attempt, with
jitter, or the server's ``Retry-After``) up to ``max_attempts`` tries; then, and
on any other refusal or a malformed answer (vLLM's ``data[].index`` must be
exactly 0..n-1), :class:`RewardServerError` stops the
campaign cleanly: the runner treats it like a spent budget, so the item stays
pending and ``evoagent resume`` runs it once the server is back. Answers over
``MAX_RESPONSE_BYTES`` are refused. Values never derive from gold
(``uses_gold=False``); the reward source names the server (url, api, model,
label index) and the model it serves: the ``digest`` of its weights that
``GET /v1/models`` reports (``evoagent rm serve`` does; a server that reports
none, e.g. vLLM, is named by the ``root`` it lists, ``unreported:<root>``), so
cached scores of one model are never taken for another's. The digest is read
when the client starts and again after every reconnect, and every answer's
``X-Model-Digest`` header (rm serve sends one) is compared with it: a server
whose model changed mid-run stops the campaign (resumable once the campaign's
model is served again). Since the source is stored with every score, a URL with
credentials (``user:token@``) is refused.
"""
from __future__ import annotations

import json
import math
import random
import socket
import threading
import time
from collections.abc import Sequence
from typing import Any
from urllib.parse import urlsplit

import httpx2

from evoagent.errors import UserError
from evoagent.llm.errors import BudgetExceeded
from evoagent.llm.transports import retry_after_s
from evoagent.registry import Key, Part
from evoagent.rewards.base import Query, RewardModel, Score, source_name
from evoagent.rewards.identity import shown
from evoagent.rm.server import DIGEST_HEADER
from evoagent.rm.text import render_queries
from evoagent.rollout import Context

__all__ = ["HttpReward", "RewardServerError", "check_http", "read_values"]

APIS = {"classify": "/classify", "pooling": "/pooling", "get_reward": "/get_reward"}
MAX_RESPONSE_BYTES = 8 * 1024 * 1024
MAX_MODELS_BYTES = 1024 * 1024  # a model list larger than this is not one
MAX_RETRY_WAIT_S = 60.0
_DIGEST_CHARS = frozenset("0123456789abcdefABCDEF")
_RETRIED = {408, 429}


class RewardServerError(BudgetExceeded):
    """The reward server failed for good: like a spent budget, it stops the campaign after the
    items in flight (the asking item stays pending for ``evoagent resume``), with one line."""


class _Transient(Exception):
    """A fault worth another try; ``wait`` is the server's Retry-After, if it gave one."""

    def __init__(self, message: str, wait: float | None = None):
        super().__init__(message)
        self.wait = wait


def _number(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"{where} is not a finite number")
    return float(value)


def _listed(body: Any, model: str) -> str:
    """The served model's identity from a ``/v1/models`` answer: its digest, else ``unreported:<root>``."""
    data = body.get("data") if isinstance(body, dict) else None
    if not isinstance(data, list) or not data or not all(isinstance(d, dict) for d in data):
        raise ValueError("/v1/models lists no model")
    entry = next((d for d in data if d.get("id") == model), None) if model else data[0]
    if entry is None:
        raise ValueError(f"/v1/models does not list the model {model[:100]!r}")
    digest = entry.get("digest")
    if isinstance(digest, str) and 8 <= len(digest) <= 64 and set(digest) <= _DIGEST_CHARS:
        return digest.lower()
    root = entry.get("root") or entry.get("id")
    root = root if isinstance(root, str) else ""
    return "unreported:" + "".join(c if c.isalnum() or c in "._/-:@+" else "?" for c in root[:200])


def served_digest(client: httpx2.Client, url: str, model: str) -> str:
    """What ``url`` serves now (:func:`_listed`); ``unreported`` for a server without ``/v1/models``
    (OpenRLHF's). ValueError for an answer that is not a model list; httpx2 errors as they come."""
    body = bytearray()
    with client.stream("GET", url.rstrip("/") + "/v1/models") as response:
        if response.status_code == 404:
            return "unreported"
        if response.status_code != 200:
            raise ValueError(f"GET /v1/models answered HTTP {response.status_code}")
        for chunk in response.iter_bytes():
            body += chunk
            if len(body) > MAX_MODELS_BYTES:
                raise ValueError(f"GET /v1/models answered more than {MAX_MODELS_BYTES >> 20} MiB")
    try:
        return _listed(json.loads(body), model)
    except RecursionError:
        raise ValueError("/v1/models is not a model list") from None


def read_values(api: str, body: Any, n: int, label_index: int = 1) -> list[float]:
    """The ``n`` scores in a server's answer to ``n`` texts (see the module docstring); ValueError if malformed."""
    if not isinstance(body, dict):
        raise ValueError("the answer is not a JSON object")
    if api == "get_reward":
        rewards = body.get("rewards")
        if not isinstance(rewards, list) or len(rewards) != n:
            raise ValueError(f"'rewards' is not a list of {n} numbers")
        return [_number(v, f"rewards[{i}]") for i, v in enumerate(rewards)]
    data = body.get("data")
    if not isinstance(data, list) or len(data) != n or not all(isinstance(d, dict) for d in data):
        raise ValueError(f"'data' is not a list of {n} objects")
    indices = [d.get("index") for d in data]
    if any(isinstance(i, bool) or not isinstance(i, int) for i in indices) or sorted(indices) != list(range(n)):
        raise ValueError(f"the 'index' of the {n} answers is not exactly 0..{n - 1}")
    ordered = sorted(data, key=lambda d: d["index"])
    out = []
    for i, item in enumerate(ordered):
        values = item.get("probs" if api == "classify" else "data")
        if not isinstance(values, list) or not values:
            raise ValueError(f"data[{i}] has no {'probs' if api == 'classify' else 'data'} list")
        if api == "pooling":
            row = values[-1]
            if not isinstance(row, list):
                out.append(_number(row, f"data[{i}].data[-1]"))
                continue
            if len(row) == 1:
                out.append(_number(row[0], f"data[{i}].data[-1][0]"))
                continue
            values = row
        if label_index >= len(values):
            raise ValueError(f"data[{i}] has {len(values)} classes; rewards.http.label_index is {label_index}")
        out.append(_number(values[label_index], f"data[{i}] class {label_index}"))
    return out


class HttpReward(RewardModel):
    """Scores prefixes with a remote reward model; see the module docstring."""

    name = "http"
    uses_gold = False

    def __init__(self, ctx: Context, *, url: str, api: str = "classify", model: str = "", label_index: int = 1,
                 timeout_s: float = 30.0, max_attempts: int = 5, retry_base_s: float = 0.5, max_batch: int = 64,
                 max_chars: int = 4000):
        self.ctx, self.url, self.api, self.model = ctx, url.rstrip("/"), api, model
        self.label_index, self.timeout_s, self.max_attempts = label_index, timeout_s, max_attempts
        self.retry_base_s, self.max_batch, self.max_chars = retry_base_s, max_batch, max_chars
        self._client = httpx2.Client(timeout=httpx2.Timeout(timeout_s))
        self._rng = random.Random()  # backoff jitter only; never touches a score
        self._lock = threading.Lock()
        self.requests = 0  # HTTP requests sent, retries included (tests and benchmarks read it)
        self.digest = self._served()  # the model every score of this client is made by

    def _served(self) -> str:
        try:
            return served_digest(self._client, self.url, self.model)
        except (httpx2.HTTPError, ValueError) as exc:
            raise UserError(f"key 'rewards.http.url': cannot tell which model {self.url} serves "
                            f"({shown(str(exc), 200)}); start the server, then go on with evoagent resume") from None

    def _changed(self, now: str) -> RewardServerError:
        return RewardServerError(
            f"rewards.http: the model served at {self.url} changed mid-run (digest {self.digest} -> {shown(now, 80)}); "
            "nothing was scored with it; serve the model the campaign started with and run evoagent resume, "
            "or start a new campaign for the new model")

    @property
    def source(self) -> str:
        return _source(self.api, self.digest, self.label_index, self.max_chars, self.model, self.url)

    def score(self, queries: Sequence[Query]) -> list[Score]:
        texts, steps = render_queries(self.ctx, queries, self.max_chars, "http")
        values: list[float] = []
        for at in range(0, len(texts), self.max_batch):
            values += self._post(texts[at:at + self.max_batch])
        return [Score(v, s) for v, s in zip(values, steps)]

    # -- one batch, with retries -----------------------------------------------
    def _payload(self, texts: list[str]) -> dict[str, Any]:
        if self.api == "get_reward":
            return {"query": texts}
        return {"model": self.model, "input": texts} if self.model else {"input": texts}

    def _post(self, texts: list[str]) -> list[float]:
        endpoint = self.url + APIS[self.api]
        last = ""
        for attempt in range(self.max_attempts):
            try:
                if attempt:  # a reconnect: the server may have been restarted with other weights
                    now = self._served_again()
                    if now is not None and now != self.digest:
                        raise self._changed(now)
                return self._once(endpoint, texts)
            except _Transient as exc:
                last = str(exc)
                if attempt + 1 < self.max_attempts:
                    backoff = self.retry_base_s * 2 ** attempt * self._rng.uniform(0.5, 1.0)
                    time.sleep(min(MAX_RETRY_WAIT_S, exc.wait if exc.wait is not None else backoff))
        raise RewardServerError(f"rewards.http: {endpoint} failed {self.max_attempts} times (last: {last}); "
                                "start the server, then go on with evoagent resume")

    def _once(self, endpoint: str, texts: list[str]) -> list[float]:
        with self._lock:
            self.requests += 1
        deadline = time.monotonic() + self.timeout_s
        try:
            with self._client.stream("POST", endpoint, json=self._payload(texts)) as response:
                body = bytearray()
                for chunk in response.iter_bytes():
                    body += chunk
                    if len(body) > MAX_RESPONSE_BYTES:
                        raise RewardServerError(f"rewards.http: {endpoint} answered more than "
                                                f"{MAX_RESPONSE_BYTES >> 20} MiB for {len(texts)} texts; refused")
                    if time.monotonic() > deadline:
                        raise _Transient(f"no complete answer within {self.timeout_s:g} s")
                status, retry_after = response.status_code, retry_after_s(response.headers)
                served = response.headers.get(DIGEST_HEADER)
        except httpx2.TimeoutException:
            raise _Transient(f"no answer within {self.timeout_s:g} s") from None
        except httpx2.HTTPError as exc:  # connection refused or reset, a broken answer
            raise _Transient(f"{type(exc).__name__}: {exc}") from None
        if status >= 500 or status in _RETRIED:
            raise _Transient(f"HTTP {status}{_reason(body)}", retry_after)
        if status != 200:
            raise RewardServerError(f"rewards.http: {endpoint} refused the request: HTTP {status}{_reason(body)}")
        if served is not None and served.lower() != self.digest:
            raise self._changed(served)
        try:
            return read_values(self.api, json.loads(body), len(texts), self.label_index)
        except (ValueError, RecursionError) as exc:  # no score is made up: the campaign stops, resumable
            raise RewardServerError(f"rewards.http: reward model {self.source} cannot score: {endpoint} gave an "
                                    f"answer that is not {self.api}'s ({shown(str(exc), 200)}), e.g. "
                                    f"{shown(bytes(body[:120]).decode('utf-8', 'replace'), 120)}") from None

    def _served_again(self) -> str | None:
        """The served model after a reconnect; None while the server still cannot say (a transient fault)."""
        try:
            return served_digest(self._client, self.url, self.model)
        except (httpx2.HTTPError, ValueError):
            return None

    def close(self) -> None:
        self._client.close()


def _source(api: str, digest: str, label_index: int, max_chars: int, model: str, url: str) -> str:
    return source_name("http", {"api": api, "digest": digest, "label_index": label_index, "max_chars": max_chars,
                                "model": model, "url": url.rstrip("/")})


def _identity(campaign: Any) -> str:
    """The source of the campaign's http model as the server serves it now (its digest, asked)."""
    p = "rewards.http."
    url, model = campaign.get(p + "url"), campaign.get(p + "model")
    try:
        with httpx2.Client(timeout=httpx2.Timeout(min(10.0, campaign.get(p + "timeout_s")))) as client:
            digest = served_digest(client, url, model)
    except (httpx2.HTTPError, ValueError) as exc:
        raise UserError(f"key 'rewards.http.url': cannot tell which model {url} serves ({shown(str(exc), 200)}); "
                        "start the server the campaign scored with") from None
    return _source(campaign.get(p + "api"), digest, campaign.get(p + "label_index"), campaign.get(p + "max_chars"),
                   model, url)


def _reason(body: bytes | bytearray) -> str:
    """The server's one-line reason, from vLLM/our JSON errors or plain text (short)."""
    try:
        doc = json.loads(body)
        err = doc.get("error", doc) if isinstance(doc, dict) else {}
        message = err.get("message") if isinstance(err, dict) else err
        text = str(message if message is not None else body[:200].decode("utf-8", "replace"))
    except (ValueError, RecursionError):
        text = bytes(body[:200]).decode("utf-8", "replace")
    text = shown(" ".join(text.split()), 200)  # a server's body is untrusted: escaped, one line
    return f": {text}" if text else ""


def _is_url(value: str) -> bool:
    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018 - raises ValueError on a port out of range
    except ValueError:
        return False
    return parts.scheme in ("http", "https") and bool(parts.hostname) and len(value) <= 2000 \
        and not parts.query and not parts.fragment and parts.username is None and parts.password is None


def check_http(campaign: Any) -> None:
    """Before any file is written (the registry's preflight): something listens at
    ``rewards.http.url``, so a wrong port or a server not started yet is one line, not a
    campaign that stops at its first score."""
    url = campaign.get("rewards.http.url")
    parts = urlsplit(url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    wait = min(5.0, campaign.get("rewards.http.timeout_s"))
    try:
        socket.create_connection((parts.hostname, port), timeout=wait).close()
    except OSError as exc:
        raise UserError(f"key 'rewards.http.url': nothing answers at {url} ({exc.strerror or exc}); start the "
                        "server (e.g. evoagent rm serve DIR --port 8000) or fix the URL") from None


def _make(ctx: Context, params: dict[str, Any], seed: int) -> HttpReward:
    return HttpReward(ctx, **params)


PART = Part("reward", "http", _make, {
    "url": Key(str, "http://127.0.0.1:8000", _is_url,
             "the server's root URL, http:// or https://, with no query and no user:token@ (the URL is "
             "stored with every score: put credentials in a proxy, not the URL)"),
    "api": Key(str, "classify", lambda x: x in APIS, '"classify", "pooling" (vLLM) or "get_reward" (OpenRLHF)'),
    "model": Key(str, "", lambda x: len(x) <= 500, "the served model's name (empty: the server's only one)"),
    "label_index": Key(int, 1, lambda x: 0 <= x <= 100_000, "within 0..100000 (the positive class)"),
    "timeout_s": Key((int, float), 30.0, lambda x: 0 < x <= 3600, "> 0 and <= 3600"),
    "max_attempts": Key(int, 5, lambda x: 1 <= x <= 100, "within 1..100"),
    "retry_base_s": Key((int, float), 0.5, lambda x: 0 <= x <= 60, "within 0..60"),
    "max_batch": Key(int, 64, lambda x: 1 <= x <= 10_000, "within 1..10000 (texts per request)"),
    "max_chars": Key(int, 4000, lambda x: 64 <= x <= 1_000_000, "within 64..1000000 (characters per text)"),
}, uses_gold=False, preflight=check_http, identity=_identity, doc="a reward model served over HTTP (evoagent rm serve, vLLM, OpenRLHF)")

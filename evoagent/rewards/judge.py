"""``judge``: an LLM asked, step by step, whether an agent is on its way to a correct answer.

For each (task, prefix) query the model (Claude, through the official SDK)
sees the task and the steps so far, rendered by
:func:`evoagent.rm.text.prefix_text` (the text every learned or remote model
reads: actions and observations, never rewards or gold), and calls the tool
``score_step`` with a score in [0, 1]: for a prefix the agent goes on from,
does its last step move toward a correct answer; for a prefix it submitted
after, is the answer correct. Nothing of the judge reads gold, so a campaign
with ``search.reward = fitness.reward = "judge"`` searches without it.

Every call goes through the campaign's machinery for LLM calls: the call
ledger in the store (content-addressed, committed before use: a re-run or
resume pays nothing twice), the campaign's ``budget.usd`` / ``budget.tokens``
(shared with an LLM policy's calls), retries and rate limits, and with
``policy.batch = true`` Message Batches (the calls of one scoring batch go
out together). The system prompt and the task (question, database, tables)
carry ``cache_control``: every query on a task reads them from the prompt
cache. An answer without a usable score (no ``score_step`` call, or a score
that is not a number in [0, 1]) is scored ``rewards.judge.fallback`` (0.5,
"cannot tell") and counted in :attr:`Judge.malformed`, as long as such
answers are rare: when more than ``rewards.judge.max_unusable`` (50%) of the
answers of a scoring batch (batches of fewer than ``MIN_ANSWERS`` answers are
judged together with the next ones, or as soon as their unusable answers are
more than that share of ``MIN_ANSWERS``) are unusable, :class:`JudgeCannotScore`
stops the campaign resumably with one line naming the judge and an example
answer, and nothing of that batch is scored. The unusable answers stay in the
ledger; after such a stop (counted in the store's meta ``judge_unusable_stops``)
``evoagent resume`` asks each unusable answer once more (a new nonce), so a
judge that was fixed (another server, ``ANTHROPIC_BASE_URL``) goes on.
"""
from __future__ import annotations

import json
import logging
import math
import os
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from typing import Any

from evoagent.errors import UserError
from evoagent.llm.errors import BudgetExceeded
from evoagent.llm.pricing import MODELS
from evoagent.prompts import JUDGE
from evoagent.llm import KEYS as LLM_KEYS
from evoagent.registry import Key, Part
from evoagent.rewards.base import Query, RewardModel, Score, source_name
from evoagent.rewards.identity import shown
from evoagent.rm.text import observed, prefix_text
from evoagent.rollout import Context

__all__ = ["Judge", "JudgeCannotScore", "check_judge", "read_score"]

EPHEMERAL = {"type": "ephemeral"}
STEPS_CHARS = 8000  # prefix_text's limit for the judged steps (each field has its own limit too)
TOOL = JUDGE.tools[0]["name"]
# The LLM transport keys the judge owns with the LLM policies (``evoagent.llm.KEYS``).
TRANSPORT_KEYS = ("policy.base_url", "policy.batch", "policy.batch_idle_s", "policy.batch_poll_s",
                  "policy.max_in_flight", "policy.timeout_s", "policy.max_attempts", "policy.retry_base_s",
                  "policy.tokens_per_minute")
MIN_ANSWERS = 20  # the fewest answers whose unusable share is judged (smaller batches add up)
STOPS = "judge_unusable_stops"  # store meta: how often the campaign stopped for unusable answers
log = logging.getLogger(__name__)


def read_score(content: Sequence[dict[str, Any]]) -> float | None:
    """The score of the first ``score_step`` call in an answer; None unless it is a number in [0, 1]."""
    for block in content or []:
        if block.get("type") == "tool_use" and block.get("name") == TOOL:
            value = (block.get("input") or {}).get("score")
            if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) \
                    and 0.0 <= value <= 1.0:
                return float(value)
            return None
    return None


class JudgeCannotScore(BudgetExceeded):
    """Too many answers without a usable score: like a spent budget, the campaign stops after the items
    in flight (the asking item stays pending for ``evoagent resume``), with one line."""


def _source(model: str, max_tokens: int, samples: int, fallback: float) -> str:
    return source_name("judge", {"model": model, "max_tokens": max_tokens, "samples": samples,
                                 "fallback": fallback, "prompt": JUDGE.hash[:8]})


def _identity(campaign: Any) -> str:
    """The judge's source: its model's name and the digest of the prompt it is asked with."""
    p = "rewards.judge."
    return _source(campaign.get(p + "model"), campaign.get(p + "max_tokens"), campaign.get(p + "samples"),
                   campaign.get(p + "fallback"))


class Judge(RewardModel):
    """Scores prefixes by asking an LLM; see the module docstring."""

    name = "judge"
    uses_gold = False

    def __init__(self, ctx: Context, client: Any, *, model: str, max_tokens: int, samples: int,
                 fallback: float, max_unusable: float = 0.5, threads: int = 32,
                 closers: Sequence[Callable[[], None]] = (), store: Any = None):
        self.ctx, self.client = ctx, client
        self.model, self.max_tokens, self.samples, self.fallback = model, max_tokens, samples, fallback
        self.max_unusable, self.store = max_unusable, store
        # after k stops for unusable answers, an unusable answer in the ledger is asked again, up to k times
        self.reasks = int(store.get_meta(STOPS) or 0) if store is not None else 0
        self._window = [0, 0]  # answers and unusable ones not yet judged (batches under MIN_ANSWERS)
        self.malformed = 0  # answers scored with the fallback (this process)
        self.answers = 0  # answers read (this process, ledger hits included)
        self._lock = threading.Lock()
        self.threads = threads
        self._pool = ThreadPoolExecutor(threads, thread_name_prefix="judge")
        self._closers = list(closers)

    @property
    def source(self) -> str:
        return _source(self.model, self.max_tokens, self.samples, self.fallback)

    def request(self, query: Query, observations: Sequence[str | None]) -> dict[str, Any]:
        """The Messages request for one query: system and task cached, then the steps."""
        task = replace(self.ctx.tasks[query.task_id], gold="")
        header = prefix_text(task, (), ())
        full = prefix_text(task, query.actions, observations, max_chars=STEPS_CHARS)
        steps = full[len(header) + 1:] if full.startswith(header + "\n") else full
        ask = JUDGE.user.format(steps=steps, n=len(query.actions), submitted="yes" if query.terminal else "no")
        return {
            "model": self.model, "max_tokens": self.max_tokens,
            # one sample: the model's most likely judgement; several: independent draws, averaged
            "temperature": 0.0 if self.samples == 1 else 1.0,
            "system": [{"type": "text", "text": JUDGE.system, "cache_control": EPHEMERAL}],
            "tools": [dict(t) for t in JUDGE.tools],
            "tool_choice": {"type": "tool", "name": TOOL},
            "messages": [{"role": "user", "content": [
                {"type": "text", "text": header, "cache_control": EPHEMERAL},
                {"type": "text", "text": ask}]}],
        }

    def _ask(self, request: dict[str, Any], nonce: str) -> tuple[float | None, Any]:
        """The score of one answer (None: unusable) and the answer's content. An unusable answer read
        from the ledger (an earlier run's) is asked again under the next nonce of its chain."""
        from evoagent.llm.ledger import call_context

        for again in range(self.reasks + 1):
            with call_context(operator="judge"):
                reply = self.client.complete(request, template=JUDGE.name, template_hash=JUDGE.hash,
                                             nonce=nonce + ":again" * again)
            value = read_score(reply.content)
            if value is not None or not reply.cached:
                break
        with self._lock:
            self.answers += 1
        return value, reply.content

    def _check_usable(self, answers: list[tuple[float | None, Any]]) -> None:
        """Stop (resumably) when more than ``max_unusable`` of the answers have no usable score."""
        unusable = [content for value, content in answers if value is None]
        with self._lock:
            self._window[0] += len(answers)
            self._window[1] += len(unusable)
            n, bad = self._window
            # judged once the window holds MIN_ANSWERS, or earlier when it would fail whatever came next
            if n < MIN_ANSWERS and bad <= self.max_unusable * MIN_ANSWERS:
                return
            self._window = [0, 0]
        if bad > self.max_unusable * n:
            if self.store is not None:
                with self._lock:
                    self.store.put_meta(STOPS, str(int(self.store.get_meta(STOPS) or 0) + 1))
            example = shown(json.dumps(unusable[0], ensure_ascii=False) if unusable else "(an earlier batch's)", 160)
            raise JudgeCannotScore(
                f"reward model {self.source} cannot score: {bad} of {n} answers had no usable score (more than "
                f"rewards.judge.max_unusable = {self.max_unusable:g}), e.g. {example}; nothing was scored with "
                "them; fix the judge's model or server, then evoagent resume (it asks those again)")

    def score(self, queries: Sequence[Query]) -> list[Score]:
        seen = list(self._pool.map(lambda q: observed(self.ctx, q, "judge"), queries))
        jobs = [(self.request(q, obs), f"{q.prefix_id}:{q.step_idx}:{j}")
                for q, (obs, _) in zip(queries, seen) for j in range(self.samples)]
        # All calls of the batch at once: with Message Batches they go out as one batch.
        if self.client.batcher is not None:
            self.client.batcher.expect(min(len(jobs), self.threads))
        answers = list(self._pool.map(lambda job: self._ask(*job), jobs))
        self._check_usable(answers)
        values = [self.fallback if value is None else value for value, _ in answers]
        with self._lock:
            self.malformed += sum(value is None for value, _ in answers)
        return [Score(sum(values[i * self.samples:(i + 1) * self.samples]) / self.samples, steps)
                for i, (_, steps) in enumerate(seen)]

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
        if self.malformed:
            log.warning("judge: %d of %d answers had no usable score and were scored %g",
                        self.malformed, self.answers, self.fallback)
        for close in self._closers:
            close()
        self._closers.clear()


def check_judge(settings: Any) -> None:
    """Before any work: the SDK will find a key (one line otherwise; the model was checked with the keys)."""
    if not (os.environ.get("ANTHROPIC_API_KEY") or os.environ.get("ANTHROPIC_AUTH_TOKEN")):
        raise UserError("reward model judge needs ANTHROPIC_API_KEY in the environment "
                        "(and ANTHROPIC_BASE_URL, or policy.base_url with policy.kind = anthropic, for another server)")


def _make(ctx: Context, params: dict[str, Any], seed: int, store: Any = None) -> Judge:
    """A judge over its own SDK client and ledger on ``store``, sharing the campaign's budget."""
    from evoagent.llm import batch_mode
    from evoagent.llm.batching import BatchCollector
    from evoagent.llm.client import Budget, ClientSettings, LLMClient
    from evoagent.llm.errors import LLMError
    from evoagent.llm.ledger import Ledger, spent
    from evoagent.llm.transports import AnthropicTransport

    if store is None:
        raise UserError("reward model judge needs a store for its call ledger")
    s = params  # its own keys, the transport keys among them (shared_keys), and the engine's
    threads = max(1, min(64, int(s.get("policy.max_in_flight", 32))))
    base_url = s.get("policy.base_url", "") if s.get("policy.kind") == "anthropic" else ""
    try:
        transport = AnthropicTransport(base_url or None, s.get("policy.timeout_s", 60.0), max_connections=threads + 8)
    except LLMError as exc:
        raise UserError(f"reward model judge: {exc}") from None
    if ctx.budget is None:  # an offline policy: the judge's calls are the campaign's only spend
        ctx.budget = Budget(s.get("budget.usd", 0.0), s.get("budget.tokens", 0), *spent(store))
    ledger = Ledger(store)
    model, attempts, retry = params["model"], s.get("policy.max_attempts", 6), s.get("policy.retry_base_s", 0.5)
    batcher = None
    if batch_mode(s.get("policy.batch")):
        batcher = BatchCollector(transport.sdk, ledger, model, idle_s=s.get("policy.batch_idle_s", 0.25),
                                 poll_s=s.get("policy.batch_poll_s", 5.0), max_attempts=attempts, retry_base_s=retry)
    settings = ClientSettings(model, max_attempts=attempts, retry_base_s=retry, max_in_flight=threads,
                              tokens_per_minute=s.get("policy.tokens_per_minute", 0))
    client = LLMClient(transport, ledger, settings, ctx.budget, batcher, seed=seed)
    return Judge(ctx, client, model=model, max_tokens=params["max_tokens"], samples=params["samples"],
                 fallback=params["fallback"], max_unusable=params["max_unusable"], threads=threads,
                 closers=[transport.close, ledger.close], store=store)


PART = Part("reward", "judge", _make, {
    "model": Key(str, "claude-haiku-4-5", lambda x: x in MODELS and x != "local",
               f"a Claude model with a price ({', '.join(m for m in MODELS if m != 'local')})"),
    "max_tokens": Key(int, 256, lambda x: 16 <= x <= 8192, "within 16..8192"),
    "samples": Key(int, 1, lambda x: 1 <= x <= 16, "within 1..16 (answers averaged per query)"),
    "fallback": Key((int, float), 0.5, lambda x: 0.0 <= x <= 1.0, "within 0..1 (the score of an answer without one)"),
    "max_unusable": Key((int, float), 0.5, lambda x: 0.0 <= x < 1.0,
                        "within 0..1, below 1 (the share of a batch's answers without a usable score that stops "
                        "the campaign)"),
}, uses_gold=False, preflight=check_judge, identity=_identity, doc="an LLM asked whether the last step moves toward a correct answer",
    # The Anthropic transport's keys: declared by the judge too (the same keys, defaults and checks
    # as the LLM policies'), so a campaign with the judge holds them whatever its policy, and the
    # judge reads them from its own Settings. ``policy.base_url`` only with policy.kind = anthropic.
    shared_keys={k: v for k, v in LLM_KEYS.items() if k in TRANSPORT_KEYS})

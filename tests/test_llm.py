"""LLM policies end to end: the real anthropic SDK against the loopback fake server."""
from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from evoagent import campaign, launch
from evoagent.envs.intercode_sql.fake_agent import intercode_responder
from evoagent.testing.fake_server import FakeAnthropic
from evoagent.llm.pricing import BATCH_DISCOUNT, price_of
from stores import SnapshotStore
from tests.conftest import SMALL

FAST = ['policy.kind="anthropic"', "policy.retry_base_s=0.01", "policy.batch_poll_s=0.05",
        "policy.batch_idle_s=0.1", "concurrency=12", "budget.generations=2"]
SECRET = "sk-ant-test-SECRET-0123456789"


@pytest.fixture(scope="module")
def responder():
    return intercode_responder()


@pytest.fixture
def llm_env(monkeypatch: pytest.MonkeyPatch):
    def point(url: str) -> None:
        monkeypatch.setenv("ANTHROPIC_BASE_URL", url)
        monkeypatch.setenv("ANTHROPIC_API_KEY", SECRET)
    return point


def run(tmp_path: Path, name: str, *overrides: str):
    cfg = tmp_path / "c.toml"
    cfg.write_text(SMALL)
    out = launch.start(campaign.load(cfg, [*FAST, *overrides]), str(tmp_path / f"{name}.duckdb"))
    reader = SnapshotStore(tmp_path / f"{name}.duckdb")
    return out, reader


def population(reader: SnapshotStore) -> list[dict]:
    return reader.query("SELECT generation, task_id, traj_id, rank FROM population ORDER BY ALL").to_pylist()


@pytest.mark.slow  # three LLM campaigns, two under faults (~15 s); `pytest -m slow`
def test_faults_do_not_change_the_result(tmp_path: Path, responder, llm_env) -> None:
    with FakeAnthropic(responder) as clean:
        llm_env(clean.url)
        out, a = run(tmp_path, "clean", "policy.batch=false")
    assert out.status == "completed"
    with FakeAnthropic(responder, faults={429: 0.10, 529: 0.05, 500: 0.02}, seed=3) as faulty:
        llm_env(faulty.url)
        # 17% of requests fault: 10 attempts make a call fail for good with p = 0.17**10
        out, b = run(tmp_path, "faulty", "policy.batch=false", "policy.max_attempts=10")
        stats = faulty.stats
    assert out.status == "completed"
    assert sum(stats["faults"].values()) > 10  # faults really happened, and were retried
    assert population(a) == population(b) and population(a)
    assert b.scalar("SELECT max(attempts) FROM llm_calls") > 1
    assert b.scalar("SELECT count(*) FROM work_items WHERE status = 'failed'") == 0
    # The same through worker processes (what policy.processes = "auto" picks past 64 in flight).
    with FakeAnthropic(responder, faults={429: 0.10, 529: 0.05, 500: 0.02}, seed=4) as faulty:
        llm_env(faulty.url)
        out, c = run(tmp_path, "workers", "policy.batch=false", "policy.max_attempts=10", "policy.processes=2")
        assert sum(faulty.stats["faults"].values()) > 10
    assert out.status == "completed" and population(c) == population(a)


@pytest.mark.slow  # two campaigns, one waiting out each of its Message Batches (~40 s); `pytest -m slow`
def test_batch_mode_same_result_at_half_price(tmp_path: Path, responder, llm_env) -> None:
    with FakeAnthropic(responder) as srv:
        llm_env(srv.url)
        _, plain = run(tmp_path, "plain", "policy.batch=false")
        _, batched = run(tmp_path, "batched", "policy.batch=true")
        assert srv.stats["batches_created"] >= 3
    assert population(plain) == population(batched)
    assert batched.scalar("SELECT count(*) FROM llm_calls WHERE batch_id IS NULL") == 0
    assert_priced(batched, discount=BATCH_DISCOUNT)
    assert_priced(plain, discount=1.0)


def assert_priced(r: SnapshotStore, discount: float) -> None:
    """Every call costs its four kinds of tokens at the model's rates, times the discount."""
    p = price_of("claude-haiku-4-5")
    rows = r.query("SELECT input_tokens, output_tokens, cache_write_tokens, cache_read_tokens, cost_usd "
                   "FROM llm_calls").to_pylist()
    assert rows
    for x in rows:
        usd = (x["input_tokens"] * p.input + x["output_tokens"] * p.output + x["cache_write_tokens"] * p.cache_write
               + x["cache_read_tokens"] * p.cache_read) / 1e6
        assert x["cost_usd"] == pytest.approx(usd * discount)


def test_ledger_prices_every_token_kind(tmp_path: Path, responder, llm_env) -> None:
    with FakeAnthropic(responder) as srv:
        llm_env(srv.url)
        _, r = run(tmp_path, "priced", "policy.batch=false")
    assert r.scalar("SELECT sum(cache_read_tokens) FROM llm_calls") > 0
    assert r.scalar("SELECT sum(cache_write_tokens) FROM llm_calls") > 0
    assert_priced(r, discount=1.0)
    per_op = r.frame("SELECT operator, sum(cost_usd) AS usd FROM llm_costs GROUP BY operator")
    assert set(per_op["operator"].to_list()) >= {"sample", "revise"}
    per_gen = r.frame("SELECT generation, sum(cost_usd) AS usd FROM llm_costs GROUP BY generation ORDER BY 1")
    assert per_gen["generation"].to_list() == [0, 1, 2]
    assert r.scalar("SELECT sum(cost_usd) FROM llm_calls") == pytest.approx(
        r.scalar("SELECT sum(cost_usd) FROM operator_costs"))


@pytest.mark.slow  # a campaign waiting out its Message Batches (~30 s); `pytest -m slow`
def test_api_key_is_never_stored_or_exported(tmp_path: Path, responder, llm_env) -> None:
    with FakeAnthropic(responder) as srv:
        llm_env(srv.url)
        _, r = run(tmp_path, "secret", "policy.batch=true", "budget.generations=1")
    r.export("llm_calls", str(tmp_path / "export"))
    r.close()
    for f in tmp_path.rglob("*"):
        if f.is_file():
            assert SECRET.encode() not in f.read_bytes(), f


@pytest.mark.slow  # long: CI's slow step runs it (the default run stays under 3 minutes)
def test_malformed_answers_are_retried(tmp_path: Path, llm_env) -> None:
    # 20% of answers lack the tool call; with 8 attempts a call fails for good with p = 0.2**8
    with FakeAnthropic(intercode_responder(malformed=0.2, seed=1)) as srv:
        llm_env(srv.url)
        out, r = run(tmp_path, "malformed", "policy.batch=false", "budget.generations=1", "policy.max_attempts=8")
    assert out.status == "completed"
    assert "malformed" in (r.scalar("SELECT string_agg(errors, ' ') FROM llm_calls WHERE attempts > 1") or "")
    assert r.scalar("SELECT count(*) FROM work_items WHERE status = 'failed'") == 0


def test_a_model_that_never_calls_a_tool_fails_items_not_the_campaign(tmp_path: Path, llm_env) -> None:
    silent = lambda body: {"content": [{"type": "text", "text": "no"}], "stop_reason": "end_turn"}  # noqa: E731
    with FakeAnthropic(silent) as srv:
        llm_env(srv.url)
        out, r = run(tmp_path, "silent", "policy.batch=false", "policy.max_attempts=2", "budget.generations=1")
    assert out.status == "completed"
    errors = r.query("SELECT DISTINCT error FROM work_items WHERE status = 'failed'").column(0).to_pylist()
    assert errors and all("malformed answer" in e for e in errors)
    assert r.scalar("SELECT count(*) FROM llm_calls WHERE status = 'failed'") > 0


@pytest.mark.slow  # long: CI's slow step runs it (the default run stays under 3 minutes)
def test_budget_stops_cleanly_and_resume_finishes(tmp_path: Path, responder, llm_env) -> None:
    with FakeAnthropic(responder) as srv:
        llm_env(srv.url)
        out, r = run(tmp_path, "budget", "policy.batch=false", "budget.usd=0.05")
        assert out.status == "stopped: budget.usd"
        spent = r.scalar("SELECT sum(cost_usd) FROM llm_calls")
        assert 0 < spent <= 0.05
        assert r.scalar("SELECT count(*) FROM work_items WHERE status = 'failed'") == 0
        r.close()
        out = launch.resume(str(tmp_path / "budget.duckdb"), ["budget.usd=0"])
        assert out.status == "completed"
        assert_paid_once(srv, SnapshotStore(tmp_path / "budget.duckdb"))


def assert_paid_once(srv: FakeAnthropic, r: SnapshotStore) -> None:
    """The server delivered each distinct call exactly once: as many times as the ledger
    holds distinct calls with that request body (items may send equal prompts, each its own sample)."""
    from collections import Counter

    from evoagent.testing.fake_server import request_key

    bodies = r.query("SELECT any_value(request) FROM raw.llm_calls WHERE status = 'ok' GROUP BY call_key")
    assert srv.delivered() == Counter(request_key(json.loads(b)) for b in bodies.column(0).to_pylist())


class _OpenAIHandler(BaseHTTPRequestHandler):
    def log_message(self, *args: object) -> None:
        pass

    def do_POST(self) -> None:  # noqa: N802 - http.server naming
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        assert self.path == "/v1/chat/completions" and body["tools"][0]["type"] == "function"
        done = any(m["role"] == "tool" for m in body["messages"])
        call = {"name": "submit", "arguments": "{}"} if done else {
            "name": "execute_sql", "arguments": json.dumps({"query": "SELECT count(*) FROM singer"})}
        reply = {"choices": [{"finish_reason": "tool_calls", "message": {
            "role": "assistant", "content": None,
            "tool_calls": [{"id": "call_1", "type": "function", "function": call}]}}],
            "usage": {"prompt_tokens": 100, "completion_tokens": 10}}
        data = json.dumps(reply).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


def test_openai_compatible_server(tmp_path: Path) -> None:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _OpenAIHandler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/v1"
        out, r = run(tmp_path, "openai", 'policy.kind="openai"', f'policy.base_url="{url}"',
                     'policy.model="local"', 'tasks.ids=["sql/42"]', "budget.generations=0")
    finally:
        server.shutdown()
    assert out.status == "completed"
    assert r.query("SELECT DISTINCT action FROM steps").column(0).to_pylist() == ["SELECT count(*) FROM singer"]
    assert r.scalar("SELECT sum(cost_usd) FROM llm_calls") == 0.0

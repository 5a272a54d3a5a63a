"""The ``judge`` reward model: the real anthropic SDK against the loopback fake server."""
from __future__ import annotations

import json
import re
import zlib
from collections import Counter
from pathlib import Path

import pytest

from evoagent import campaign, launch, registry
from evoagent.errors import UserError
from evoagent.launch import build_context, select_tasks
from evoagent.rewards.base import Query
from evoagent.rewards.judge import read_score
from evoagent.testing.fake_server import FakeAnthropic, request_key
from stores import DuckDBStore, SnapshotStore

TOML = """
name = "judged"
seed = 5
mu = 2
lambda = 2
concurrency = 4
[env]
kind = "intercode_sql"
[tasks]
ids = ["sql/0", "sql/42"]
[policy]
kind = "replay"
retry_base_s = 0.01
batch_idle_s = 0.05
batch_poll_s = 0.05
[search]
reward = "judge"
[fitness]
reward = "judge"
aggregate = "mean"
[rewards.judge]
max_unusable = 0.5  # one action in seven gets no score (judge_responder): a batch may hold 4 of 11
[budget]
generations = 1
"""
JUDGE = "judge(fallback=0.5,max_tokens=256,model=claude-haiku-4-5,prompt="


def _last_action(body: dict) -> str:
    text = body["messages"][0]["content"][1]["text"]
    return re.findall(r"^step \d+ action: (.*)$", text, re.MULTILINE)[-1]


def judge_responder(body: dict) -> dict:
    """A stand-in judge: a score from the last action's text; one action in seven gets no tool call."""
    if body.get("tool_choice", {}).get("name") != "score_step":
        return {"content": [{"type": "text", "text": "not a judge request"}], "stop_reason": "end_turn"}
    action = _last_action(body)
    h = zlib.crc32(action.encode())
    if h % 7 == 0:
        return {"content": [{"type": "text", "text": "It looks fine to me."}], "stop_reason": "end_turn"}
    submitted = "final answer after step" in body["messages"][0]["content"][1]["text"] and \
        re.search(r": yes\.", body["messages"][0]["content"][1]["text"]) is not None
    score = 1.0 if submitted and "count" in action.lower() else (h % 5) / 4
    return {"content": [{"type": "tool_use", "id": "toolu_j", "name": "score_step",
                         "input": {"reason": "by the text", "score": score}}], "stop_reason": "tool_use"}


@pytest.fixture
def point(monkeypatch: pytest.MonkeyPatch):
    def at(url: str) -> None:
        monkeypatch.setenv("ANTHROPIC_BASE_URL", url)
        monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-test-judge")
    return at


def _start(tmp_path: Path, name: str, *overrides: str):
    cfg = tmp_path / "judge.toml"
    cfg.write_text(TOML)
    return launch.start(campaign.load(cfg, list(overrides)), str(tmp_path / f"{name}.duckdb"))


def _judge_rows(r: SnapshotStore) -> list[dict]:
    return r.query("SELECT traj_id, step_idx, value, reward_source FROM rewards "
                   f"WHERE reward_source LIKE '{JUDGE}%' AND step_idx IS NOT NULL").to_pylist()


def _assert_paid_once(srv: FakeAnthropic, r: SnapshotStore) -> None:
    """The server answered each distinct call once (equal bodies with other nonces are other calls)."""
    stored = r.query("SELECT any_value(request) FROM raw.llm_calls WHERE status = 'ok' GROUP BY call_key")
    assert srv.delivered() == Counter(request_key(json.loads(b)) for b in stored.column(0).to_pylist())


def test_read_score_is_strict() -> None:
    def answer(score: object) -> list[dict]:
        return [{"type": "tool_use", "name": "score_step", "input": {"score": score}}]
    assert read_score(answer(0.25)) == 0.25 and read_score(answer(1)) == 1.0
    for bad in (True, "0.5", 1.5, -0.1, float("nan"), None):
        assert read_score(answer(bad)) is None, bad
    assert read_score([{"type": "text", "text": "score: 0.9"}]) is None


@pytest.mark.slow  # long: CI's slow step runs it (the default run stays under 3 minutes)
def test_judged_campaign_stops_at_budget_and_resumes_scoring_each_key_once(tmp_path: Path, point) -> None:
    with FakeAnthropic(judge_responder) as srv:
        point(srv.url)
        # an offline policy: the judge's calls are the only spend, and the budget stops them cleanly
        out = _start(tmp_path, "a", "budget.usd=0.004")
        assert out.status == "stopped: budget.usd"
        r = SnapshotStore(tmp_path / "a.duckdb")
        assert 0 < r.scalar("SELECT sum(cost_usd) FROM llm_calls") <= 0.004
        assert r.scalar("SELECT count(*) FROM work_items WHERE status = 'failed'") == 0
        r.close()
        out = launch.resume(str(tmp_path / "a.duckdb"), ["budget.usd=0"])
        assert out.status == "completed"
        first = sum(srv.delivered().values())
        r = SnapshotStore(tmp_path / "a.duckdb")
        rows = _judge_rows(r)
        keys = Counter((x["traj_id"], x["step_idx"]) for x in rows)
        assert rows and max(keys.values()) == 1  # every score written once
        calls = r.query("SELECT * FROM llm_calls").to_pylist()
        assert {c["template"] for c in calls} == {"reward/judge/v1"} and {c["operator"] for c in calls} == {"judge"}
        assert len(calls) == first == len(keys)  # one call per key (samples = 1), none repeated
        # the system prompt and the task come from the prompt cache after a task's first query
        assert sum(c["cache_read_tokens"] for c in calls) > 0
        # answers without a score got the fallback
        values = Counter(x["value"] for x in rows)
        assert values[0.5] >= 1 and len(values) >= 3
        # fitness: every member has a judge score (the mean of its step scores)
        members = r.query(f"SELECT p.traj_id, w.value FROM population p JOIN rewards w USING (traj_id) "
                          f"WHERE w.reward_source LIKE '{JUDGE}%:mean'").to_pylist()
        assert members and all(0 <= m["value"] <= 1 for m in members)
        assert max(srv.delivered().values()) == 1  # nothing asked twice across the stop
        r.close()


@pytest.mark.slow  # a judged campaign and its resume for one more generation (~10 s loaded); `pytest -m slow`
def test_resume_for_more_generations_asks_only_new_prefixes(tmp_path: Path, point) -> None:
    with FakeAnthropic(judge_responder) as srv:
        point(srv.url)
        assert _start(tmp_path, "a").status == "completed"
        first = sum(srv.delivered().values())
        r = SnapshotStore(tmp_path / "a.duckdb")
        rows = _judge_rows(r)
        r.close()
        out = launch.resume(str(tmp_path / "a.duckdb"), ["budget.generations=2"])
        assert out.status == "completed"
        r = SnapshotStore(tmp_path / "a.duckdb")
        rows2 = _judge_rows(r)
        assert max(Counter((x["traj_id"], x["step_idx"]) for x in rows2).values()) == 1
        assert sum(srv.delivered().values()) - first == len(rows2) - len(rows) > 0
        assert max(srv.delivered().values()) == 1
        _assert_paid_once(srv, r)
        r.close()


def test_no_key_is_one_line_before_any_work(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    monkeypatch.delenv("ANTHROPIC_AUTH_TOKEN", raising=False)
    with pytest.raises(UserError, match="^reward model judge needs ANTHROPIC_API_KEY") as err:
        _start(tmp_path, "nokey")
    assert "\n" not in str(err.value)
    assert not (tmp_path / "nokey.duckdb").exists()
    with pytest.raises(UserError, match="rewards.judge.model"):
        _start(tmp_path, "nomodel", "rewards.judge.model=gpt-4")


def _judge_for(tmp_path: Path, *overrides: str):
    """A judge built as a campaign builds it (replay policy), over a fresh store."""
    cfg = tmp_path / "judge.toml"
    cfg.write_text(TOML)
    c = campaign.load(cfg, list(overrides))
    tasks = select_tasks(c)
    store = DuckDBStore(str(tmp_path / "unit.duckdb"))
    store.add_tasks(tasks)
    ctx = build_context(c, tasks, store)
    part = registry.get("reward", "judge")
    params = c.settings_for(part)  # its own keys (the transport keys among them), as make_scorer gives them
    return part.fn(ctx, params, c.get("seed"), store=store), store, ctx


def test_a_scoring_batch_is_one_message_batch_and_the_prompt_shows_no_gold(tmp_path: Path, point) -> None:
    with FakeAnthropic(judge_responder, batch_latency_s=0.05) as srv:
        point(srv.url)
        # A quiet period far shorter than a thread's start: the idle rule alone would split the
        # scoring batch; the judge announces its 6 calls, so they go out together all the same.
        judge, store, ctx = _judge_for(tmp_path, "policy.batch=true", "rewards.judge.samples=2",
                                       "policy.batch_idle_s=0.0001")
        try:
            queries = [Query("sql/0", ("SELECT count(*) FROM singer",), observations=("[(6,)]",)),
                       Query("sql/0", ("SHOW TABLES", "SELECT name FROM singer"), terminal=True,
                             observations=("[('singer',)]", "[('Joe',)]")),
                       Query("sql/42", ("SELECT 1",))]  # no observations: executed to get them
            scores = judge.score(queries)
            req = judge.request(queries[0], queries[0].observations)
        finally:
            judge.close()
        assert srv.stats["batches_created"] == 1
        calls = store.query("SELECT batch_id, cost_usd FROM llm_calls").to_pylist()
        assert len(calls) == 6 and all(c["batch_id"] for c in calls)  # 3 queries x 2 samples
        assert scores[2].env_steps == 1 and scores[0].env_steps == 0
        got = [read_score(judge_responder(judge.request(q, q.observations or ("",)))["content"]) for q in queries]
        assert [s.value for s in scores] == [0.5 if v is None else v for v in got]
        assert judge.malformed == 2 * got.count(None) and judge.answers == 6
        # the prompt: system and task cached, then the steps; no gold anywhere
        task = ctx.tasks["sql/0"]
        assert task.gold and task.gold not in json.dumps(req)
        assert req["system"][0]["cache_control"] and req["messages"][0]["content"][0]["cache_control"]
        assert req["messages"][0]["content"][0]["text"].startswith(f"question: {task.question}")
        assert "step 1 action: SELECT count(*) FROM singer" in req["messages"][0]["content"][1]["text"]
        store.close()
        ctx.close()


@pytest.mark.slow  # an LLM policy judged by an LLM (~10 s loaded); `pytest -m slow`
def test_llm_policy_and_judge_share_the_ledger_and_budget(tmp_path: Path, point) -> None:
    from evoagent.envs.intercode_sql.fake_agent import intercode_responder

    agent = intercode_responder()

    def both(body: dict) -> dict:
        return judge_responder(body) if body.get("tool_choice", {}).get("name") == "score_step" else agent(body)

    with FakeAnthropic(both) as srv:
        point(srv.url)
        out = _start(tmp_path, "llm", 'policy.kind="anthropic"', "budget.usd=0.01")
        assert out.status == "stopped: budget.usd"
        out = launch.resume(str(tmp_path / "llm.duckdb"), ["budget.usd=0"])
        assert out.status == "completed"
        r = SnapshotStore(tmp_path / "llm.duckdb")
        counts = r.query("SELECT template, count(*) AS n FROM llm_calls GROUP BY ALL").to_pylist()
        by = {x["template"]: x["n"] for x in counts}
        assert by.get("reward/judge/v1", 0) > 0 and by.get("agent/intercode_sql/v1", 0) > 0
        _assert_paid_once(srv, r)  # neither the policy nor the judge paid twice
        r.close()


def _no_score(body: dict) -> dict:
    """A judge that never scores: it chats instead, with a terminal escape in its text."""
    return {"content": [{"type": "text", "text": "It looks fine \x1b[2J to me."}], "stop_reason": "end_turn"}


@pytest.mark.slow  # long: CI's slow step runs it (the default run stays under 3 minutes)
def test_a_judge_that_cannot_score_stops_the_campaign_resumably(tmp_path: Path, point) -> None:
    """Issue 19 item 9: every answer unusable used to give every score the fallback 0.5 and exit 0."""
    with FakeAnthropic(_no_score) as srv:
        point(srv.url)
        out = _start(tmp_path, "u")
        first = set(srv.delivered())
    assert out.status.startswith("stopped: reward model judge(") and "cannot score: " in out.status
    assert "answers had no usable score (more than rewards.judge.max_unusable = 0.5)" in out.status
    assert "It looks fine \\u001b[2J to me." in out.status and "\x1b" not in out.status and "\n" not in out.status
    r = SnapshotStore(tmp_path / "u.duckdb")
    # at most the tolerated unusable answers (half of MIN_ANSWERS = 20, before the window is judged) were
    # scored with the fallback; the campaign stopped at the first window that went over (the old judge: all)
    assert len(_judge_rows(r)) <= 10
    assert r.scalar("SELECT count(*) FROM work_items WHERE status = 'failed'") == 0
    assert r.scalar("SELECT count(*) FROM work_items WHERE status = 'pending'") > 0
    scored = len(_judge_rows(r))
    r.close()
    with FakeAnthropic(judge_responder) as srv:  # the judge fixed: resume asks the unusable answers again
        point(srv.url)
        assert launch.resume(str(tmp_path / "u.duckdb")).status == "completed"
        # the stopped batch's prefixes were not scored: their unusable answers in the ledger are asked again
        assert first & set(srv.delivered())
    r = SnapshotStore(tmp_path / "u.duckdb")
    assert len(_judge_rows(r)) > scored
    r.close()

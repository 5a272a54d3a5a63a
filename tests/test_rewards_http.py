"""The `http` reward kind against real loopback servers: recorded vLLM and OpenRLHF bodies, a fault
server (503s, stalls), and campaigns whose reward model is `evoagent rm serve` on loopback."""
from __future__ import annotations

import asyncio
import json
import re
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from evoagent import campaign, launch, registry
from evoagent.errors import UserError
from evoagent.llm.errors import BudgetExceeded
from evoagent.rewards import Query
from evoagent.rewards.http import HttpReward, RewardServerError, read_values
from evoagent.rm.hosting import AppThread, BackgroundServer
from evoagent.rm.model import ProcessRewardModel, load_model
from evoagent.rm.text import prefix_text, submitted
from evoagent.rollout import Context, execute
from stores import DuckDBStore
from tests.conftest import SMALL
from tests.test_rm_server import VLLM


@pytest.fixture(scope="module")
def small_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("http") / "small.toml"
    path.write_text(SMALL)
    return path


@pytest.fixture(scope="module")
def ctx(small_file: Path) -> Iterator[Context]:
    c = campaign.load(small_file)
    context = launch.build_context(c, launch.select_tasks(c))
    yield context
    context.close()


@pytest.fixture(scope="module")
def model(prm_dir: Path) -> ProcessRewardModel:
    return load_model(prm_dir)


ACTIONS = {"sql/0": ("SELECT count(*) FROM singer",),
           "sql/7": ("SHOW TABLES", "SELECT name FROM singer WHERE age > 30"),
           "sql/42": ("SELECT * FROM nowhere",)}


_OBSERVED: dict[str, tuple[str | None, ...]] = {}  # each prefix executed once per session


def _queries(ctx: Context, observed: bool = True) -> list[Query]:
    out = []
    for task_id, actions in ACTIONS.items():
        if task_id not in _OBSERVED:
            steps = execute(ctx, ctx.tasks[task_id], actions, "test").trajectory.steps
            _OBSERVED[task_id] = tuple(s.observation for s in steps)
        out.append(Query(task_id, actions, observations=_OBSERVED[task_id] if observed else ()))
    return out


class Replay:
    """A loopback server answering every POST with one recorded body; keeps the requests it got."""

    def __init__(self, body: dict[str, Any], models: dict[str, Any] | None = None):
        self.body, self.requests = body, []
        self.app = web.Application()
        self.app.router.add_post("/{api}", self.answer)
        if models is not None:  # vLLM lists its models (OpenRLHF's server does not: 404)
            async def listed(request: web.Request) -> web.Response:
                return web.json_response(models)

            self.app.router.add_get("/v1/models", listed)

    async def answer(self, request: web.Request) -> web.Response:
        self.requests.append((request.path, await request.json()))
        return web.json_response(self.body)


@pytest.mark.parametrize("api, body, expected", [
    ("classify", "classify.json", [0.8766, 0.0988, 0.5625]),
    ("pooling", "pooling_prm.json", [0.7949, 0.0469, 0.6680]),  # the last step tag's p(good)
    ("pooling", "pooling_reward.json", [2.375, 0.75, -0.625]),  # the last token's value
    ("get_reward", "openrlhf_get_reward.json", [0.8125, -0.4375, 1.5]),
])
def test_reads_recorded_vllm_and_openrlhf_answers(ctx: Context, api: str, body: str, expected: list[float]) -> None:
    vllm = api != "get_reward"
    replay = Replay(json.loads((VLLM / body).read_text()), json.loads((VLLM / "models.json").read_text()) if vllm
                    else None)
    queries = _queries(ctx)
    with AppThread(replay.app) as srv:
        reward = HttpReward(ctx, url=srv.url + "/", api=api, model="evoagent-prm-cls" if vllm else "")
        try:
            scores = reward.score(queries)
        finally:
            reward.close()
    assert [s.value for s in scores] == pytest.approx(expected)
    assert [s.env_steps for s in scores] == [0, 0, 0]  # observed prefixes are not executed again
    texts = [prefix_text(ctx.tasks[q.task_id], q.actions, q.observations) for q in queries]
    path, sent = replay.requests[0]
    assert path == "/" + api
    assert sent == ({"query": texts} if api == "get_reward" else {"model": "evoagent-prm-cls", "input": texts})
    # the model is named by what the server reports: vLLM lists no digest, so its root; OpenRLHF nothing
    digest = "unreported:/models/evoagent-prm-cls" if vllm else "unreported"
    assert reward.source == (f"http(api={api},digest={digest},label_index=1,max_chars=4000,model={reward.model},"
                             f"url={srv.url})")


def test_a_prefix_without_observations_is_executed_and_its_steps_counted(ctx: Context) -> None:
    replay = Replay(json.loads((VLLM / "openrlhf_get_reward.json").read_text()))
    with AppThread(replay.app) as srv:
        reward = HttpReward(ctx, url=srv.url, api="get_reward")
        scores = reward.score(_queries(ctx, observed=False))
        reward.close()
    assert [s.env_steps for s in scores] == [1, 2, 1]
    assert replay.requests[0][1]["query"] == [prefix_text(ctx.tasks[q.task_id], q.actions, q.observations)
                                              for q in _queries(ctx)]  # the same texts as when observed


def test_a_terminal_query_is_read_with_its_submit(ctx: Context) -> None:
    replay = Replay(json.loads((VLLM / "openrlhf_get_reward.json").read_text()))
    q = _queries(ctx)[1]
    final = Query(q.task_id, q.actions, terminal=True, observations=q.observations)
    with AppThread(replay.app) as srv:
        reward = HttpReward(ctx, url=srv.url, api="get_reward")
        reward.score([q, final, q])
        reward.close()
    sent = replay.requests[0][1]["query"]
    assert sent[0] == sent[2] != sent[1]
    assert sent[1] == prefix_text(ctx.tasks[q.task_id], *submitted(q.actions, q.observations))


def test_malformed_answers_are_refused() -> None:
    classify = json.loads((VLLM / "classify.json").read_text())
    assert read_values("classify", classify, 3, label_index=0) == pytest.approx([0.1234, 0.9012, 0.4375])
    shuffled = {**classify, "data": classify["data"][::-1]}
    assert read_values("classify", shuffled, 3) == pytest.approx([0.8766, 0.0988, 0.5625])  # by index
    bad = [
        ("classify", classify, 2, 1, "list of 2 objects"),
        ("classify", classify, 3, 2, "2 classes"),
        ("get_reward", {"rewards": [1.0, float("nan")]}, 2, 1, "rewards[1] is not a finite number"),
        ("get_reward", {"rewards": [True]}, 1, 1, "not a finite number"),
        ("get_reward", [1.0], 1, 1, "not a JSON object"),
        ("pooling", {"data": [{"index": 0, "data": []}]}, 1, 1, "no data list"),
        ("pooling", {"data": [{"index": 0, "data": [["x", "y"]]}]}, 1, 1, "not a finite number"),
        ("classify", {"data": [{**d, "index": 2} for d in classify["data"]]}, 3, 1, "not exactly 0..2"),
        ("classify", {"data": [{**d, "index": i + 1} for i, d in enumerate(classify["data"])]}, 3, 1, "0..2"),
        ("classify", {"data": [{k: v for k, v in d.items() if k != "index"} for d in classify["data"]]}, 3, 1, "0..2"),
        ("classify", {"data": [{**d, "index": i == 1} for i, d in enumerate(classify["data"][:2])]}, 2, 1, "0..1"),
    ]
    for api, body, n, label, reason in bad:
        with pytest.raises(ValueError, match=re.escape(reason)):
            read_values(api, body, n, label)


class Faulty:
    """A loopback reward server that follows a script per request: ``503``, ``stall`` (answers
    only once ``release`` is set: the client times out first), ``400``, ``huge``; past the script,
    the model's scores in /classify's shape. It may also stay ``down`` (503 to everything)."""

    def __init__(self, model: ProcessRewardModel, script: Sequence[str] = ()):
        self.model, self.script = model, list(script)
        self.down, self.seen = False, 0
        self.release = threading.Event()
        self.app = web.Application()
        self.app.router.add_post("/classify", self.answer)

    async def answer(self, request: web.Request) -> web.Response:
        self.seen += 1
        body = await request.json()
        step = "503" if self.down else self.script.pop(0) if self.script else "ok"
        if step == "503":
            return web.json_response({"error": {"message": "overloaded", "code": 503}}, status=503)
        if step == "400":
            return web.json_response({"error": {"message": "bad input\nsecond line", "code": 400}}, status=400)
        if step == "osc":  # a body that would set the clipboard and clear a terminal
            return web.json_response({"error": {"message": "no \x1b]52;c;aGk=\x07 \x1b[2J way", "code": 400}},
                                     status=400)
        if step == "words":  # an answer without numbers: no score can be read from it
            return web.json_response({"data": [{"index": 0, "probs": ["\x1b[31mhigh", "low"]}]})
        if step == "huge":
            return web.Response(body=b"[" + b"0," * (5 << 20) + b"0]", content_type="application/json")
        if step == "stall":
            for _ in range(1000):  # at most 10 s
                if self.release.is_set():
                    break
                await asyncio.sleep(0.01)
        probs = [[1 - p, p] for p in self.model.score_texts(body["input"])]
        return web.json_response({"object": "list", "data": [{"index": i, "probs": p, "num_classes": 2}
                                                             for i, p in enumerate(probs)]})


def test_503s_and_stalls_are_retried_until_an_answer(ctx: Context, model: ProcessRewardModel) -> None:
    server = Faulty(model, ["503", "stall", "503"])
    queries = _queries(ctx)
    with AppThread(server.app) as srv:
        reward = HttpReward(ctx, url=srv.url, timeout_s=0.5, max_attempts=4, retry_base_s=0.01)
        values = [s.value for s in reward.score(queries)]
        reward.close()
        server.release.set()
    assert server.seen == reward.requests == 4
    texts = [prefix_text(ctx.tasks[q.task_id], q.actions, q.observations) for q in queries]
    assert values == pytest.approx(model.score_texts(texts))


@pytest.mark.parametrize("script, timeout, reason", [
    (["503"] * 3, 1, "failed 3 times (last: HTTP 503: overloaded)"),
    (["stall"], 0.3, "failed 1 times (last: no answer within 0.3 s)"),
    (["400"], 1, "refused the request: HTTP 400: bad input second line"),
    (["huge"], 60, "more than 8 MiB"),
    (["osc"], 1, "HTTP 400: no \\x1b]52;c;aGk=\\x07 \\x1b[2J way"),  # escaped, never raw (issue 19 item 3)
    (["words"], 1, "cannot score: "),
])
def test_a_server_that_does_not_recover_stops_with_one_line(ctx: Context, model: ProcessRewardModel,
                                                            script: list[str], timeout: float, reason: str) -> None:
    server = Faulty(model, script)
    with AppThread(server.app) as srv:
        reward = HttpReward(ctx, url=srv.url, timeout_s=timeout, max_attempts=len(script), retry_base_s=0.01)
        with pytest.raises(RewardServerError) as err:
            reward.score(_queries(ctx)[:1])
        reward.close()
        server.release.set()
    assert isinstance(err.value, BudgetExceeded)  # the runner's clean stop: the item stays pending
    assert reason in str(err.value) and "\n" not in str(err.value) and "\x1b" not in str(err.value)
    if script == ["words"]:  # names the model and shows the answer (escaped)
        assert "reward model http(api=classify,digest=unreported," in str(err.value)
        assert "not a finite number" in str(err.value) and '\\u001b[31mhigh' in str(err.value)
    assert reward.requests == server.seen == len(script)
    # nobody listens: the client cannot tell which model it would score with, so it does not start
    with pytest.raises(UserError, match=r"cannot tell which model http://127.0.0.1:9 serves \(.*refused"):
        HttpReward(ctx, url="http://127.0.0.1:9", max_attempts=2, retry_base_s=0.01)


def test_campaign_keys_are_checked(small_file: Path) -> None:
    part = registry.get("reward", "http")
    assert part.uses_gold is False
    for bad, reason in [("rewards.http.url=ftp://x", "http:// or https://"),
                        ("rewards.http.api=embed", "get_reward"),
                        ("rewards.http.max_attempts=0", "within 1..100"),
                        ("rewards.http.url=http://h:99999", "http:// or https://"),
                        ("rewards.http.url=https://user:s3cret@h", "no user:token@"),
                        ("rewards.http.url=https://s3cret@h", "no user:token@"),
                        ("rewards.http.timeout_s=0", "> 0")]:
        with pytest.raises(UserError, match=reason):
            campaign.load(small_file, ["search.reward=http", bad])


def test_a_campaign_whose_server_is_not_there_stops_before_any_file(small_file: Path, tmp_path: Path) -> None:
    c = campaign.load(small_file, ["search.reward=http", "rewards.http.url=http://127.0.0.1:9"])
    with pytest.raises(UserError, match=r"key 'rewards.http.url': nothing answers at http://127.0.0.1:9 \("):
        launch.start(c, str(tmp_path / "s.duckdb"))
    assert list(tmp_path.iterdir()) == []


def _rewards_by_step(store: Path, source_prefix: str) -> dict[tuple[str, int], float]:
    with DuckDBStore(store) as s:
        rows = s.query("SELECT traj_id, step_idx, value FROM rewards WHERE reward_source LIKE ? "
                       "AND step_idx IS NOT NULL", [source_prefix + "%"]).to_pylist()
    return {(r["traj_id"], r["step_idx"]): r["value"] for r in rows}


def _expected(store: Path, model: ProcessRewardModel, ctx: Context) -> dict[tuple[str, int], float]:
    """The in-process score of every step prefix of every stored trajectory, keyed like the rewards table."""
    from evoagent.rewards.signal import queries

    with DuckDBStore(store) as s:
        trajs = s.load_trajectories([r["traj_id"] for r in s.query("SELECT traj_id FROM trajectories").to_pylist()])
    qs = [q for t in trajs.values() for q in queries(t)]
    texts = [prefix_text(ctx.tasks[q.task_id], *(submitted(q.actions, q.observations) if q.terminal
                                                  else (q.actions, q.observations))) for q in qs]
    return {q.key: v for q, v in zip(qs, model.score_texts(texts))}


def _population(store: Path) -> list[tuple]:
    with DuckDBStore(store) as s:
        return [tuple(r.values()) for r in s.query(
            "SELECT generation, task_id, traj_id, rank FROM population ORDER BY ALL").to_pylist()]


HTTP = ["search.reward=http", "fitness.reward=http", "fitness.aggregate=mean", "budget.generations=1",
        "rewards.http.retry_base_s=0.01"]


@pytest.mark.slow  # three small campaigns (~30 s on a loaded 2-core machine)
def test_campaigns_scored_by_our_server_match_in_process_scores_and_survive_an_outage(
        tmp_path: Path, small_file: Path, ctx: Context, model: ProcessRewardModel, prm_dir: Path) -> None:
    served = tmp_path / "served.duckdb"
    with BackgroundServer(model) as srv:
        out = launch.start(campaign.load(small_file, HTTP + [f"rewards.http.url={srv.url}"]), str(served))
        assert out.status == "completed"
        assert srv.stats.forward_passes < srv.stats.requests or srv.stats.largest_forward > 1
    got = _rewards_by_step(served, "http(")
    expected = _expected(served, model, ctx)
    assert len(got) > 20 and set(got) <= set(expected)
    assert [got[k] for k in sorted(got)] == pytest.approx([expected[k] for k in sorted(got)])

    # The same campaign while the server is down: a clean stop, nothing half-done; resumed once it is back.
    faulty = Faulty(model)
    faulty.down = True
    flaky = tmp_path / "flaky.duckdb"
    with AppThread(faulty.app) as srv:
        sets = HTTP + [f"rewards.http.url={srv.url}", "rewards.http.max_attempts=2"]
        out = launch.start(campaign.load(small_file, sets), str(flaky))
        assert out.status.startswith("stopped: rewards.http: ") and "failed 2 times" in out.status
        with DuckDBStore(flaky) as s:
            assert s.scalar("SELECT count(*) FROM rewards WHERE reward_source LIKE 'http(%'") == 0
            assert s.scalar("SELECT count(*) FROM work_items WHERE status = 'pending'") > 0
            assert s.scalar("SELECT count(*) FROM work_items WHERE status = 'failed'") == 0
        faulty.down = False
        assert launch.resume(str(flaky)).status == "completed"
    with DuckDBStore(flaky) as s:
        assert s.scalar("SELECT count(*) - count(DISTINCT (generation, item_id)) FROM raw.work_results") == 0
        assert s.scalar("SELECT count(*) FROM work_items WHERE status <> 'done'") == 0
        assert s.scalar("SELECT count(*) - count(DISTINCT (reward_source, traj_id, step_idx)) FROM rewards") == 0
    assert _population(flaky) == _population(served)  # the outage changed nothing but the time it took

    if "prm" in registry.parts("reward"):  # the in-process kind of the same model gives the same campaign
        local = tmp_path / "local.duckdb"
        prm = [s.replace("=http", "=prm") for s in HTTP[:3]] + ["budget.generations=1", f"rewards.prm.path={prm_dir}",
                                                                "rewards.prm.allow_seen_tasks=true"]  # trained on them
        assert launch.start(campaign.load(small_file, prm), str(local)).status == "completed"
        assert _population(local) == _population(served)

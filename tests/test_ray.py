"""The Ray executor (``executor.kind = "ray"``): same campaign as threads, a killed actor, a killed driver.

Each test runs against a real local Ray instance on loopback (2 CPUs, no dashboard, usage
stats off): one per module for the in-process tests, and the killed driver starts its own,
as ``evoagent`` does. Kills happen at journal-observed points (after group commits),
never after a measured delay. Those are slow (Ray takes 10-20 s to start here); the
checks of the ``executor.*`` keys run in the default step.
"""
from __future__ import annotations

import contextlib
import importlib.util
import logging
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from evoagent import campaign, launch
from evoagent.errors import UserError
from stores import DuckDBStore, SnapshotStore
from tests.conftest import ROOT, cli, cli_env

# Ray is imported inside the tests that start it: the default step does not pay for its import.
pytestmark = pytest.mark.skipif(importlib.util.find_spec("ray") is None,
                                reason="the Ray executor is an extra: pip install -e '.[ray]'")

FACTS = {  # what must not depend on the executor
    "population": "SELECT generation, task_id, traj_id, rank FROM population",
    # A trajectory found by two items of one generation is recorded as the one committed first's
    # (the other's is a rediscovery): that depends on timing with threads too, so not compared here;
    # which item produced which trajectory is (work_items).
    "trajectories": "SELECT traj_id, task_id, outcome_reward, n_steps FROM trajectories",
    "steps": "SELECT traj_id, idx, action, observation, reward, process_reward FROM steps",
    "rewards": "SELECT reward_source, traj_id, step_idx, value FROM rewards",
    "work_items": "SELECT generation, item_id, operator, task_id, parents, seed, status, traj_id FROM work_items",
}


def test_campaign_checks_the_executor_keys_before_any_work(campaign_file: Path) -> None:
    """Validation refuses these before any store exists (the CLI prints the line, exit 2)."""
    for bad, words in ((["executor.kind=dask"], "--set: key 'executor.kind': unknown executor 'dask' \\(have thread, ray"),
                       (["executor.address=tcp://head:6379"], "'executor.address': must be"),
                       (["executor.num_gpus=-1"], "'executor.num_gpus'"),
                       (["executor.kind=ray", "policy.kind=openai", "policy.base_url=http://127.0.0.1:1/v1"],
                        "'executor.kind': \"ray\" runs offline policies only")):
        with pytest.raises(UserError, match=words) as err:
            campaign.load(campaign_file, bad)
        assert "\n" not in str(err.value)


def test_resume_may_move_a_campaign_between_executors(tmp_path: Path, campaign_file: Path) -> None:
    c = campaign.load(campaign_file)
    assert c.get("executor.kind") == "thread"
    with DuckDBStore(tmp_path / "c.duckdb") as s:
        s.put_meta("campaign", c.to_json())
        moved = launch.stored_campaign(s, ["executor.kind=ray", "executor.address=ray://head:10001"])
        with pytest.raises(UserError, match="on resume only"):
            launch.stored_campaign(s, ["seed=4"])
    assert (moved.get("executor.kind"), moved.get("executor.address")) == ("ray", "ray://head:10001")


@pytest.fixture(scope="module")
def ray_session() -> Iterator[None]:
    """A local Ray instance for this module's in-process tests; the executor joins it and leaves it running."""
    import ray

    tmp = tempfile.mkdtemp(prefix="evoray-test-")  # short: Ray's socket paths must fit in 107 bytes
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("RAY_USAGE_STATS_ENABLED", "0")
        ray.init(address="local", num_cpus=2, include_dashboard=False, _temp_dir=tmp,
                 _node_ip_address="127.0.0.1", log_to_driver=False, logging_level=logging.ERROR)
        try:
            yield
        finally:
            ray.shutdown()
            shutil.rmtree(tmp, ignore_errors=True)


def facts(path: Path) -> dict[str, list]:
    s = SnapshotStore(path)
    try:
        return {name: sorted(map(str, s.query(sql).to_pylist())) for name, sql in FACTS.items()}
    finally:
        s.close()


def double_commits(path: Path) -> int:
    """Work items or plans journaled twice, and scores written twice for one key."""
    with DuckDBStore(path) as s:
        return sum(int(s.scalar(q)) for q in (
            "SELECT count(*) FROM (SELECT generation, item_id FROM raw.work_results GROUP BY ALL HAVING count(*) > 1)",
            "SELECT count(*) FROM (SELECT generation, item_id FROM raw.work_plan GROUP BY ALL HAVING count(*) > 1)",
            "SELECT count(*) - count(DISTINCT (reward_source, traj_id, step_idx)) FROM rewards"))


def thread_reference(campaign_file: Path, store: Path, overrides: list[str]) -> dict[str, list]:
    out = launch.start(campaign.load(campaign_file, overrides), str(store))
    assert out.status == "completed"
    return facts(store)


@pytest.mark.slow  # Ray takes 10-20 s to start here: `pytest -m slow`
@pytest.mark.parametrize("overrides", [
    ["budget.generations=2"],
    # mc: every score is asked for by an actor and computed (once) by the driver's Scorer
    ["budget.generations=1", "search.reward=mc", "fitness.reward=mc", "rewards.mc.k=2"],
], ids=["oracle", "mc"])
def test_ray_gives_the_thread_executors_campaign(tmp_path: Path, campaign_file: Path, ray_session: None,
                                                  overrides: list[str]) -> None:
    want = thread_reference(campaign_file, tmp_path / "threads.duckdb", overrides)
    c = campaign.load(campaign_file, [*overrides, "executor.kind=ray", "executor.actors=2"])
    out = launch.start(c, str(tmp_path / "ray.duckdb"))
    assert out.status == "completed"
    got = facts(tmp_path / "ray.duckdb")
    assert got["population"] and got["rewards"]
    for name in FACTS:
        assert got[name] == want[name], name
    assert double_commits(tmp_path / "ray.duckdb") == 0


@pytest.mark.slow
def test_reward_model_failure_on_the_driver_stops_the_campaign_as_with_threads(
        tmp_path: Path, campaign_file: Path, ray_session: None) -> None:
    """The driver's Scorer raises BudgetExceeded (a reward server that answers only 503): items stay
    pending, a clean stop."""
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    class Unavailable(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802: no /v1/models (as OpenRLHF's server): its model is "unreported"
            self.send_response(404)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def do_POST(self) -> None:  # noqa: N802 (http.server's name)
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            self.send_response(503)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Unavailable)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    overrides = ["budget.generations=1", "search.reward=http",
                 f"rewards.http.url=http://127.0.0.1:{server.server_address[1]}",
                 "rewards.http.max_attempts=1", "rewards.http.retry_base_s=0"]
    outcomes = {}
    try:
        for name, extra in (("threads", []), ("ray", ["executor.kind=ray", "executor.actors=2"])):
            out = launch.start(campaign.load(campaign_file, overrides + extra), str(tmp_path / f"{name}.duckdb"))
            outcomes[name] = out.status, facts(tmp_path / f"{name}.duckdb")["work_items"]
    finally:
        server.shutdown()
    assert outcomes["ray"][0].startswith("stopped: rewards.http:"), outcomes["ray"][0]
    assert outcomes["ray"] == outcomes["threads"]


@pytest.mark.slow
def test_killed_actor_mid_item_is_retried_and_the_campaign_is_unchanged(
        tmp_path: Path, campaign_file: Path, ray_session: None) -> None:
    import ray

    from evoagent.executors import RAY
    from evoagent.executors.ray import start
    from evoagent.loop import Runner, run_item
    from evoagent.rewards import build_signals

    overrides = ["budget.generations=2"]
    want = thread_reference(campaign_file, tmp_path / "threads.duckdb", overrides)
    c = campaign.load(campaign_file, [*overrides, "executor.kind=ray", "executor.actors=2"])
    ctx = launch.build_context(c, launch.select_tasks(c))
    killed: list[int] = []
    two_commits = threading.Event()

    def on_progress(event: dict) -> None:
        if event["event"] == "items" and event["done"] >= 2:
            two_commits.set()

    def killer() -> None:
        """From the 2nd group commit on, SIGKILL an actor holding an item in flight, until one was resent."""
        two_commits.wait()
        while not pool.retried and len(killed) < 5 and not finished.is_set():
            busy = pool.busy_actors()
            if busy:
                pid = pool.worker_pid(busy[0])
                if busy[0] in pool.busy_actors():
                    os.kill(pid, signal.SIGKILL)
                    killed.append(pid)
                    pool.worker_pid(busy[0])  # wait for its restart before looking again
            time.sleep(0.001)

    finished = threading.Event()
    with DuckDBStore(tmp_path / "ray.duckdb") as store:
        store.put_meta("campaign", c.to_json())
        store.add_tasks(list(ctx.tasks.values()))
        ctx.search, ctx.fitness = build_signals(c, ctx, store)
        pool = start(c.settings_for(RAY), ctx, lambda stage: None, run_item, c.to_json())
        ctx.closers.insert(0, pool.close)
        thread = threading.Thread(target=killer)
        thread.start()
        try:
            out = Runner(c, store, ctx, executor=pool.executor, on_progress=on_progress).run()
            finished.set()
            two_commits.set()
            thread.join()
            pids = [pool.worker_pid(i) for i in range(len(pool.actors))]
        finally:
            finished.set()
            two_commits.set()
            ctx.close()
    assert out.status == "completed"
    assert killed and pool.retried >= 1, (killed, pool.retried)
    assert not set(killed) & set(pids)  # Ray restarted the killed actor: a new process
    assert facts(tmp_path / "ray.duckdb") == want
    assert double_commits(tmp_path / "ray.duckdb") == 0
    with pytest.raises(ray.exceptions.RayActorError):  # closing killed our actors, not the session
        ray.get(pool.actors[0].pid.remote(), timeout=60)
    assert ray.is_initialized()


DRIVER = """
import sys
from evoagent import campaign, launch
c = campaign.load(sys.argv[1], sys.argv[3:])
def show(event):
    if event["event"] == "items":
        print("committed", event["generation"], event["done"], flush=True)
launch.start(c, sys.argv[2], on_progress=show)
"""


@pytest.mark.slow
def test_killed_driver_then_evoagent_resume_gives_the_same_campaign(tmp_path: Path, campaign_file: Path) -> None:
    overrides = ["budget.generations=2", "executor.kind=ray"]
    want = thread_reference(campaign_file, tmp_path / "threads.duckdb", overrides[:1])
    store = tmp_path / "ray.duckdb"
    ray_tmp = tempfile.mkdtemp(prefix="evoray-t")  # the killed driver's Ray files land here
    env = {**cli_env(), "RAY_USAGE_STATS_ENABLED": "0", "TMPDIR": ray_tmp}
    proc = subprocess.Popen([sys.executable, "-c", DRIVER, str(campaign_file), str(store), *overrides],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env, cwd=ROOT,
                            start_new_session=True)
    try:
        try:
            assert proc.stdout is not None
            for line in proc.stdout:  # kill at the first group commit of generation 1: mid-campaign
                if line.split()[1] == "1":
                    break
            os.kill(proc.pid, signal.SIGKILL)
        finally:
            proc.kill()
            proc.wait()
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)  # anything Ray's own fate-sharing did not end
        with DuckDBStore(store) as s:  # the journal stops inside the campaign, with items of generation 1
            assert s.last_committed_generation() in (0, 1)
            assert 0 < int(s.scalar("SELECT count(*) FROM work_items WHERE generation = 1 AND status <> 'pending'"))
        # a fresh Ray session: what evoagent resume starts (executor.* may also change on resume)
        done = subprocess.run(cli("resume", str(store), "--set", "executor.actors=1"), env=env, cwd=ROOT,
                              capture_output=True, check=False, text=True, timeout=300)
    finally:
        shutil.rmtree(ray_tmp, ignore_errors=True)
    assert done.returncode == 0, done.stderr[-2000:]
    assert facts(store) == want
    assert double_commits(store) == 0


class _GoneMailbox:
    """The mailbox of a Ray session that is going away: every call raises (the service suppresses it)."""

    def __getattr__(self, name: str) -> _GoneMailbox:
        return self

    def remote(self, *args: object) -> None:
        raise ConnectionError("the Ray session is gone")


def test_scoring_service_close_waits_for_the_answers_being_computed() -> None:
    """ctx.close() closes the service, then the runner closes the store: no scoring thread may write after."""
    from evoagent.executors.ray import _ScoringService
    from evoagent.rewards.base import Query

    finished: list[int] = []
    started = threading.Event()

    class SlowScorer:  # a scorer still computing (then writing) when the campaign closes
        def score(self, queries: list[Query]) -> list[float]:
            started.set()
            service._stop.wait()  # close() has begun
            time.sleep(0.3)
            finished.append(len(queries))
            return [0.5] * len(queries)

    service = _ScoringService(_GoneMailbox(), {"slow": SlowScorer()}, threads=1)
    service._pool.submit(service._answer, 1, "slow", [Query("t", ("a",))])
    assert started.wait(10)
    service.close()
    assert finished == [1]  # the old close(wait=False) returned while it was still running


@pytest.mark.slow
def test_prm_placed_on_ray_scores_as_in_process_and_campaigns_share_its_actor(
        tmp_path: Path, ray_session: None) -> None:
    """rewards.prm.placement = "ray": the same rewards rows and population as the model loaded in the
    campaign's process, with threads or Ray actors running the items; two campaigns in sequence send
    their batches to one actor (by name: one per model content), which loaded the model once."""
    import ray
    from click.testing import CliRunner

    from evoagent.cli import main
    from evoagent.rm.ray_models import NAMESPACE, RemoteModel, actor_name
    from evoagent.rm import load_model
    from tests.test_rm import CAMPAIGN

    c_file = tmp_path / "c.toml"
    c_file.write_text(CAMPAIGN)  # the small SQL campaign test_rm trains its CPU model on
    assert launch.start(campaign.load(c_file), str(tmp_path / "train.duckdb")).status == "completed"
    out = CliRunner().invoke(main, ["rm", "train", str(tmp_path / "train.duckdb"), "--labels", "outcome",
                                    "--holdout-dbs", "flight_2,pets_1", "--out", str(tmp_path / "prm")])
    assert out.exit_code == 0, out.output
    digest = load_model(tmp_path / "prm").digest
    sets = ["search.reward=prm", "fitness.reward=prm", f"rewards.prm.path={tmp_path / 'prm'}",
            'tasks.ids=["sql/42", "sql/44"]', "budget.generations=1"]
    want = thread_reference(c_file, tmp_path / "local.duckdb", sets)
    assert want["rewards"] and want["population"]
    with pytest.raises(ValueError):  # no actor before a campaign asks for one
        ray.get_actor(actor_name(digest), namespace=NAMESPACE)
    runs = []
    try:
        for name, extra in (("thread", []), ("ray", ["executor.kind=ray", "executor.actors=1"])):  # 2 CPUs here
            store = tmp_path / f"{name}.duckdb"
            c = campaign.load(c_file, [*sets, "rewards.prm.placement=ray", *extra])
            assert launch.start(c, str(store)).status == "completed"
            got = facts(store)
            assert (got["rewards"], got["population"]) == (want["rewards"], want["population"]), name
            assert double_commits(store) == 0
            actor = ray.get_actor(actor_name(digest), namespace=NAMESPACE)  # outlives the campaign
            runs.append((actor._actor_id.hex(), ray.get(actor.info.remote())))
        (first, seen), (second, now) = runs
        assert first == second and seen["pid"] == now["pid"]  # the same actor, never restarted
        assert 0 < seen["batches"] < now["batches"] and seen["digest"] == now["digest"] == digest
        # a third handle, as another driver's campaign gets it: the same actor, not a new one
        joined = RemoteModel(str(tmp_path / "prm"), address="local", num_cpus=1, num_gpus=0)
        assert joined.actor._actor_id.hex() == first and not joined._owns_session
        assert joined.score_texts(["question: q"]) == load_model(tmp_path / "prm").score_texts(["question: q"])
        joined.close()
        assert ray.is_initialized()  # a joined session is left running
    finally:
        with contextlib.suppress(ValueError):
            ray.kill(ray.get_actor(actor_name(digest), namespace=NAMESPACE))


@pytest.mark.slow
def test_actors_the_cluster_cannot_hold_are_one_line_not_a_wait(
        tmp_path: Path, campaign_file: Path, ray_session: None) -> None:
    """Ray keeps an actor it has no CPUs for pending; the campaign would wait for it forever."""
    c = campaign.load(campaign_file, ["executor.kind=ray", "executor.actors=3", "budget.generations=0"])
    with pytest.raises(UserError, match=r"key 'executor.actors': 3 actor\(s\) x executor.num_cpus = 1 need 3 CPUs; "
                                        r"the Ray cluster has 2") as err:
        launch.start(c, str(tmp_path / "too_many.duckdb"))
    assert "\n" not in str(err.value)

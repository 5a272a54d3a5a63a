"""Shared fixtures: a small campaign on real InterCode-SQL tasks with the replay policy.

Also ``--cpu-durations N``: the N tests that used the most CPU time. The 2 cores tests run
on are often shared, which stretches wall times (``--durations``) but not CPU times.
"""
from __future__ import annotations

import resource
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SMALL = """
name = "test"
seed = 3
mu = 3
lambda = 4
concurrency = 2
[env]
kind = "intercode_sql"
[tasks]
ids = ["sql/0", "sql/7", "sql/42", "sql/100", "sql/333", "sql/512"]
[policy]
kind = "replay"
explore = 0.2
[budget]
generations = 3
"""


@pytest.fixture
def campaign_file(tmp_path: Path) -> Path:
    path = tmp_path / "small.toml"
    path.write_text(SMALL)
    return path


sys.path.insert(0, str(ROOT / "experiments"))
from crash_soak import cli, cli_env  # noqa: E402,F401 - one definition, shared with the soak script


_CPU = pytest.StashKey[dict]()  # test id -> CPU seconds
_START = pytest.StashKey[float]()


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--cpu-durations", type=int, default=0, metavar="N",
                     help="show the N tests that used the most CPU: this process's, and that of the "
                          "subprocesses the test waited for (a process reaped later counts there)")


def _cpu_seconds() -> float:
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo) -> Iterator[None]:
    """The CPU a test used rides on its teardown report, so that it reaches the controlling
    process under pytest-xdist as well as in a plain run."""
    if call.when == "setup":
        item.stash[_START] = _cpu_seconds()
    outcome = yield
    if call.when == "teardown" and _START in item.stash:
        outcome.get_result().user_properties.append(("cpu_s", _cpu_seconds() - item.stash[_START]))


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    for key, value in report.user_properties:
        if key == "cpu_s" and _CONFIG:
            _CONFIG[0].stash.setdefault(_CPU, {})[report.nodeid] = value


_CONFIG: list[pytest.Config] = []


def pytest_configure(config: pytest.Config) -> None:
    _CONFIG[:] = [config]


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter, config: pytest.Config) -> None:
    n = config.getoption("cpu_durations")
    times = config.stash.get(_CPU, {})
    if not n or not times:
        return
    terminalreporter.write_sep("=", f"most CPU: {n} of {len(times)} tests, {sum(times.values()):.1f} s in all")
    for nodeid, secs in sorted(times.items(), key=lambda kv: -kv[1])[:n]:
        terminalreporter.write_line(f"{secs:7.2f}s cpu {nodeid}")


def train_tiny_prm(folder: Path, n_runs: int = 40) -> Path:
    """A real model directory: the CPU backbone fitted on prefixes of GPT-4's recorded InterCode runs
    (label: the run solved its task), small (2^12 features) so that it trains in about a second."""
    from evoagent.envs.intercode_sql.data import bundled_runs, load_recorded, load_tasks
    from evoagent.rm.features import HashedLogistic
    from evoagent.rm.model import ProcessRewardModel
    from evoagent.rm.text import prefix_text

    tasks = {t.task_id: t for t in load_tasks()}
    texts, labels = [], []
    runs = load_recorded(bundled_runs()["gpt-4"], list(tasks.values()))[:n_runs]
    for run in runs:
        for i in range(run.n_steps):
            obs = [s.observation for s in run.steps[: i + 1]]
            texts.append(prefix_text(tasks[run.task_id], run.actions[: i + 1], obs))
            labels.append(1.0 if run.outcome_reward == 1.0 else 0.0)
    from evoagent.rm.leakage import classes

    backbone = HashedLogistic.train(texts, labels, [1.0] * len(texts), bits=12)
    trained = sorted({r.task_id for r in runs})
    ProcessRewardModel(backbone, {"max_chars": 4000, "labels": "outcome", "training": {
        "tasks": trained, "gold_classes": sorted(set(classes(tasks[i] for i in trained).values()))}}).save(folder)
    return folder


@pytest.fixture(scope="session")
def prm_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One tiny trained model directory per test session (tests/test_rm_server.py, test_rewards_http.py)."""
    return train_tiny_prm(tmp_path_factory.mktemp("rm") / "tiny-prm")

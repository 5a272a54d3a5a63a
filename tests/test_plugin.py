"""The out-of-tree plug-in ``examples/plugin`` (wordmath) works through its entry points only.

The default run makes the package importable the way an installed wheel is: its
folder on the path and a ``.dist-info`` whose ``entry_points.txt`` is written
from the package's own ``pyproject.toml`` (so a wrong declaration there fails
here): ``evoagent run`` on its campaign file. Marked slow (CI's slow step; ``.ci/run``
also runs ``examples/plugin/tests`` directly): its contract suites, whose strategy
contract resumes a stopped campaign, and the real ``pip`` install with a run SIGKILLed
a few commits in, whose ``evoagent resume`` gives the uninterrupted run's population.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from conftest import cli, cli_env
from crash_soak import KillPoint, _population, _watch_wal, kill_at, startup_commits

ROOT = Path(__file__).resolve().parent.parent
PLUGIN = ROOT / "examples" / "plugin"
FAST = ["tasks.operations=[2]", "budget.generations=2"]


def _dist_info(site: Path) -> Path:
    """``site`` with the plug-in's package and a dist-info built from its pyproject.toml (no pip)."""
    meta = tomllib.loads((PLUGIN / "pyproject.toml").read_text())["project"]
    shutil.copytree(PLUGIN / "wordmath", site / "wordmath")
    info = site / f"{meta['name'].replace('-', '_')}-{meta['version']}.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {meta['name']}\nVersion: {meta['version']}\n")
    declared = meta["entry-points"]["evoagent.parts"]
    (info / "entry_points.txt").write_text("[evoagent.parts]\n" + "".join(f"{k} = {v}\n" for k, v in declared.items()))
    return site


def _on_path(site: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Subprocesses (``crash_soak.cli_env``) find the plug-in as an installed package."""
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")]))


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _dist_info(tmp_path_factory.mktemp("site"))


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cli(*args), capture_output=True, text=True, env=cli_env(), cwd=ROOT, timeout=300)


def run_kill_resume(work: Path) -> None:
    """``evoagent run`` completes; a run SIGKILLed a few commits in, then resumed, ends with its population."""
    campaign = str(PLUGIN / "wordmath.toml")
    sets = [a for s in FAST for a in ("--set", s)]
    ref, crashed = work / "ref.duckdb", work / "crashed.duckdb"
    proc = subprocess.Popen(cli("run", campaign, "--store", str(ref), *sets), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, env=cli_env(), cwd=ROOT)
    total = _watch_wal(proc, ref, None)  # WAL changes of the whole uninterrupted run
    assert proc.wait() == 0
    want = _population(ref)
    assert want and all(r[1].startswith("wordmath/") for r in want)
    startup = max(2, startup_commits(ref))
    # Half the run's WAL changes: well past the new store's creation, whose one large transaction a
    # poll may see as several changes (a kill there leaves a store without its campaign, which
    # `run` then starts again, not `resume`); still before the end.
    proc = subprocess.Popen(cli("run", campaign, "--store", str(crashed), *sets), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, env=cli_env(), cwd=ROOT)
    assert kill_at(proc, crashed, KillPoint(max(startup + 2, total // 2), startup=False)), "the run ended before the kill"
    out = _run("resume", str(crashed))
    assert out.returncode == 0, out.stderr
    assert _population(crashed) == want


def test_evoagent_runs_the_plugin(site: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The command line finds the plug-in's parts by their entry points alone (the kill and resume
    of this run: the slow test below)."""
    _on_path(site, monkeypatch)
    store = tmp_path / "w.duckdb"
    out = _run("run", str(PLUGIN / "wordmath.toml"), "--store", str(store), *[a for s in FAST for a in ("--set", s)])
    assert out.returncode == 0, out.stderr
    population = _population(store)
    assert population and all(r[1].startswith("wordmath/") for r in population)


@pytest.mark.slow  # long: CI's slow step runs it (the default run stays under 3 minutes)
def test_the_plugin_passes_its_contract_suites(site: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _on_path(site, monkeypatch)
    out = subprocess.run([sys.executable, "-m", "pytest", "-q", "-n", "0", "-p", "no:cacheprovider", str(PLUGIN / "tests")],
                         capture_output=True, text=True, env=cli_env(), cwd=ROOT, timeout=600)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-2000:]


def test_the_parts_list_names_the_plugin_package(site: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _on_path(site, monkeypatch)
    out = _run("parts")
    assert out.returncode == 0, out.stderr
    rows = [line for line in out.stdout.splitlines() if "wordmath" in line]
    assert rows and all("evoagent-wordmath" in line for line in rows), out.stdout


@pytest.mark.slow
def test_pip_installs_the_plugin_and_it_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The real install (pip builds the wheel from examples/plugin), then the same run and kill/resume."""
    src = tmp_path / "src"
    shutil.copytree(PLUGIN, src, ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__"))
    site = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation",
                    "--target", str(site), str(src)], check=True, capture_output=True, timeout=600)
    assert list(site.glob("evoagent_wordmath-*.dist-info/entry_points.txt"))
    _on_path(site, monkeypatch)
    run_kill_resume(tmp_path)

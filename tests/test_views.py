"""`evoagent show` and `evoagent lineage`: transcripts and ancestry trees in the terminal, cycle-safe."""
from __future__ import annotations

from pathlib import Path

import duckdb
import pytest
from click.testing import CliRunner

from evoagent.cli import main
from evoagent.report.ancestry import Edge, walk
from evoagent.trajectory import Step, Task, Trajectory
from stores import DuckDBStore, TrajectoryBatch

TASKS = [Task("hand/1", "intercode_sql", "How many singers?", meta={"db": "concert", "hardness": "easy"}),
         Task("hand/2", "intercode_sql", "Oldest singer?", meta={"db": "concert", "hardness": "hard"})]


def traj(task: str, actions: list[str], reward: float, gen: int | None = None, op: str | None = None,
         parents: tuple[str, ...] = (), observations: list[str] | None = None) -> Trajectory:
    steps = tuple(Step(idx=i, action=a, observation=(observations or [f"rows of {a}"] * len(actions))[i],
                       reward=reward if i == len(actions) - 1 else 0.0, thought=f"try {i}", valid=i != 0)
                  for i, a in enumerate(actions))
    return Trajectory(task_id=task, steps=steps, outcome_reward=reward, source="hand", generation=gen,
                      operator=op, parents=parents)


def family() -> dict[str, Trajectory]:
    """a0 -> (a1, b1) by revise -> a2 by recombine -> a3 by refine: a DAG with a diamond."""
    t: dict[str, Trajectory] = {}
    t["a0"] = traj("hand/1", ["SHOW TABLES", "SELECT 1"], 0.0, 0, "sample")
    t["a1"] = traj("hand/1", ["SHOW TABLES", "SELECT count(*) FROM singer"], 0.5, 1, "revise", (t["a0"].traj_id,))
    t["b1"] = traj("hand/1", ["DESCRIBE singer", "SELECT 2"], 0.25, 1, "revise", (t["a0"].traj_id,))
    t["a2"] = traj("hand/1", ["DESCRIBE singer", "SELECT count(*) FROM singer", "submit"], 1.0, 2, "recombine",
                   (t["a1"].traj_id, t["b1"].traj_id))
    t["a3"] = traj("hand/1", ["SELECT count(*) FROM singer", "submit"], 1.0, 3, "refine", (t["a2"].traj_id,))
    t["c0"] = traj("hand/2", ["SELECT max(age) FROM singer"], 0.0, 0, "sample",
                   observations=["x" * 5000 + "\x1b[2J</script><b>bold</b>"])
    return t


def build_store(path: Path, trajs: list[Trajectory]) -> Path:
    with DuckDBStore(path) as store:
        store.add_tasks(TASKS)
        store.write(TrajectoryBatch.from_trajectories(trajs, campaign="hand"))
    return path


@pytest.fixture(scope="module")
def hand(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str]]:
    t = family()
    path = build_store(tmp_path_factory.mktemp("hand") / "hand.duckdb", list(t.values()))
    return path, {k: v.traj_id for k, v in t.items()}


def cli_ok(*args: str) -> str:
    out = CliRunner().invoke(main, [str(a) for a in args])
    assert out.exit_code == 0, out.output
    return out.output


def test_show_prints_every_step_with_parents_and_rewards(hand: tuple[Path, dict[str, str]]) -> None:
    path, ids = hand
    text = cli_ok("show", path, ids["a2"])
    for action in family()["a2"].actions:
        assert f"action       {action}" in text
        assert f"observation  rows of {action}" in text
    assert text.count("\nstep ") == 3 and "step 0  env reward 0.00  process reward –  error" in text
    assert f"recombine <- {ids['a1']}" in text and f"recombine <- {ids['b1']}" in text
    assert "rewards     env 1.00" in text and "reward 1.00 (solved)" in text
    assert f"children    1: {ids['a3']} (refine)" in text
    assert "question    How many singers?" in text


def test_show_cuts_long_text_unless_full_and_escapes_control_characters(hand: tuple[Path, dict[str, str]]) -> None:
    path, ids = hand
    short = cli_ok("show", path, ids["c0"])
    assert "more characters; --full shows all]" in short and "x" * 5000 not in short
    full = cli_ok("show", path, ids["c0"], "--full")
    assert "x" * 5000 + "\\x1b[2J</script><b>bold</b>" in full  # printed as it is, escape made visible
    assert "\x1b" not in full and "\x1b" not in short


@pytest.mark.parametrize("given, words", [
    ("zz-not-hex", "is not a trajectory id"),
    ("f" * 32, "no trajectory"),
    ("", "is not a trajectory id"),
])
def test_bad_ids_are_one_line_errors(hand: tuple[Path, dict[str, str]], given: str, words: str) -> None:
    path, _ = hand
    for cmd in ("show", "lineage"):
        out = CliRunner().invoke(main, [cmd, str(path), given])
        assert out.exit_code == 2, out.output
        lines = out.output.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error:") and words in lines[0]


def test_a_unique_prefix_names_a_trajectory_and_a_shared_one_is_refused(tmp_path: Path) -> None:
    trajs = [traj("hand/1", [f"SELECT {i}"], 0.0) for i in range(20)]
    path = build_store(tmp_path / "many.duckdb", trajs)
    ids = sorted(t.traj_id for t in trajs)
    firsts = [i[0] for i in ids]
    shared = next(c for c in firsts if firsts.count(c) > 1)  # 20 ids, 16 hex digits: one repeats
    out = CliRunner().invoke(main, ["show", str(path), shared])
    assert out.exit_code == 2 and "matches several trajectories" in out.output
    unique = next(i for i in ids if sum(j.startswith(i[:6]) for j in ids) == 1)
    assert cli_ok("show", path, unique[:6].upper()).startswith(f"trajectory  {unique}\n")


def test_lineage_prints_the_dag_once_per_trajectory(hand: tuple[Path, dict[str, str]]) -> None:
    path, ids = hand
    text = cli_ok("lineage", path, ids["a3"]).splitlines()
    assert text[0].startswith(ids["a3"]) and "reward 1.00" in text[0]
    assert text[1] == f"└── refine <- {ids['a2']}  hand/1  reward 1.00  gen 2  recombine  3 steps"
    assert sum(f"<- {ids['a0']}  " in ln for ln in text) == 1  # reached twice (a diamond), walked once
    assert sum(f"<- {ids['a0']} (shown above)" in ln for ln in text) == 1
    assert text[-1] == "(5 trajectories, 5 edges, 3 generations back)"


def test_lineage_depth_bound_says_where_it_cut(hand: tuple[Path, dict[str, str]]) -> None:
    path, ids = hand
    text = cli_ok("lineage", path, ids["a3"], "--depth", "1").splitlines()
    assert len(text) == 3 and text[1].endswith("[more ancestors: raise --depth]")
    assert text[-1] == "(2 trajectories, 1 edges, 1 generations back; cut at --depth 1)"


def test_views_end_on_lineage_with_cycles_and_self_edges(tmp_path: Path) -> None:
    """Stores written before lineage became a DAG hold cycles and self-edges: the walk still ends."""
    t = family()
    path = build_store(tmp_path / "old.duckdb", list(t.values()))
    con = duckdb.connect(str(path))
    a0, a3 = t["a0"].traj_id, t["a3"].traj_id
    con.execute("INSERT INTO raw.lineage (child_id, parent_id, operator, generation, item_id, parent_idx) VALUES "
                "(?, ?, 'revise', 4, 0, 0), (?, ?, 'refine', 4, 1, 0)", [a0, a3, a3, a3])
    con.close()
    DuckDBStore(path).close()  # republish the snapshot with the new rows
    text = cli_ok("lineage", path, a3, "--depth", "200").splitlines()
    assert text[-1] == "(5 trajectories, 6 edges, 3 generations back)"
    assert sum(f"<- {a3} (shown above)" in ln for ln in text) == 1  # the cycle closes on a reference
    assert len(text) == 8
    shown = cli_ok("show", path, a0)
    assert f"revise <- {a3}" in shown


def test_walk_visits_each_trajectory_once_whatever_the_graph() -> None:
    graph = {"a": ["b", "a"], "b": ["c", "a"], "c": ["a", "b", "d"], "d": []}

    def parents_of(ids: list[str]) -> list[Edge]:
        return [Edge(c, p, "op", None) for c in ids for p in graph[c]]

    got = walk(parents_of, ["a"])
    assert got.depth == {"a": 0, "b": 1, "c": 2, "d": 3} and not got.cut
    assert all(e.child != e.parent for e in got.edges)
    assert len(got.edges) == len({(e.child, e.parent) for e in got.edges}) == 6
    bounded = walk(parents_of, ["a"], max_depth=1)
    assert bounded.depth == {"a": 0, "b": 1} and bounded.cut == {"b"}

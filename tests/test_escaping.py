"""Everything evoagent prints goes through one escaping rule: no raw terminal control from data,
task files, recorded runs or remote bodies reaches a terminal (checked through a real pseudo-terminal),
while CSV/JSON into a pipe stay byte-exact."""
from __future__ import annotations

import errno
import gzip
import json
import os
import pty
import select
import subprocess
import sys
import time
from pathlib import Path

import pytest

from evoagent.escaping import SafeStream, visible
from stores import DuckDBStore

# OSC 0 title, OSC 52 clipboard write, OSC 8 link, CSI 2J, BEL, 8-bit CSI (U+009B), DEL, CR
HOSTILE = "\x1b]0;PWNED\x07|\x1b]52;c;aGk=\x07|\x1b]8;;http://x\x1b\\L\x1b]8;;\x1b\\|\x1b[2J|\x9b31m|\x7f|a\rb"
HOSTILE_SQL = ("SELECT chr(27) || ']0;PWNED' || chr(7) || '|' || chr(27) || ']52;c;aGk=' || chr(7) "
               "|| '|' || chr(27) || '[2J|' || chr(155) || '31m|' || chr(127) || '|a' || chr(13) || 'b' AS v")
RAW_BYTES = (b"\x1b", b"\x07", "\x9b".encode(), b"\x7f", b"\r")
EVOAGENT = [sys.executable, "-c", "from evoagent.cli import main; main()"]


def run_in_pty(args: list[str], timeout: float = 60.0, cwd: Path | None = None) -> tuple[int, bytes]:
    """Run a command with stdin, stdout and stderr on a fresh pseudo-terminal; its exit code and output.

    The terminal is set to pass bytes through unchanged (no CR added to LF), so any control in the
    output was written by the program."""
    master, slave = pty.openpty()
    import termios
    attrs = termios.tcgetattr(slave)
    attrs[1] &= ~termios.OPOST  # no output processing: the bytes read are the bytes written
    termios.tcsetattr(slave, termios.TCSANOW, attrs)
    env = {**os.environ, "COLUMNS": "200", "TERM": "xterm-256color"}
    proc = subprocess.Popen(args, stdin=slave, stdout=slave, stderr=slave, cwd=cwd, env=env, close_fds=True)
    os.close(slave)
    out = bytearray()
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 0.2)
            if ready:
                try:
                    chunk = os.read(master, 65536)
                except OSError as exc:  # EIO: the program closed its end
                    if exc.errno != errno.EIO:
                        raise
                    break
                if not chunk:
                    break
                out += chunk
            elif proc.poll() is not None:
                break
        return proc.wait(timeout=max(1.0, deadline - time.monotonic())), bytes(out)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        os.close(master)


def assert_no_raw_controls(out: bytes) -> None:
    """Only rich's own styling may put ESC on the terminal; nothing from the data does."""
    text = out.replace(b"\r\n", b"\n")
    stripped = _strip_own_sgr(text)
    for raw in RAW_BYTES:
        assert raw not in stripped, (raw, out[:2000])


def _strip_own_sgr(text: bytes) -> bytes:
    import re
    return re.sub(rb"\x1b\[[0-9;]*m", b"", text)  # style codes are checked to carry no data below


DRIVER = """
import sys
from evoagent.cli import main
if __name__ == "__main__":  # evoagent sql's fork server imports this file again, as __mp_main__
    for i, args in enumerate(ARGS):
        try:
            main.main(args, prog_name="evoagent")
            code = 0
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 1
        sys.stdout.flush(); sys.stderr.flush()
        sys.stdout.write(f"\\n@@@ {i} {code}\\n"); sys.stdout.flush()
"""


def run_cli_in_pty(commands: list[list[str]], cwd: Path) -> list[tuple[int, bytes]]:
    """Several evoagent commands in one process on one pseudo-terminal (one start-up, not one each)."""
    script = cwd / "driver.py"
    script.write_text(f"ARGS = {commands!r}\n" + DRIVER)
    code, out = run_in_pty([sys.executable, str(script)], timeout=240, cwd=cwd)
    assert code == 0, out[-3000:]
    parts, results = out.replace(b"\r\n", b"\n").split(b"\n@@@ "), []
    for i, part in enumerate(parts[1:]):
        head, _, _ = part.partition(b"\n")
        n, c = head.split()
        assert int(n) == i
        results.append((int(c), parts[i].partition(b"\n")[2] if i else parts[0]))
    assert len(results) == len(commands), out[-3000:]
    return results


def _hostile_store(path: Path) -> str:
    """A store whose task, trajectory, campaign and reward source all carry terminal controls."""
    from evoagent.trajectory import Step, Task, Trajectory
    from stores import TrajectoryBatch

    task = Task(task_id="sql/" + HOSTILE, env="intercode_sql", question=HOSTILE)
    traj = Trajectory(task_id=task.task_id, steps=(Step(idx=0, action=HOSTILE, observation=HOSTILE, reward=0.0,
                                                        thought=HOSTILE),), outcome_reward=0.0, source=HOSTILE)
    with DuckDBStore(str(path)) as s:
        s.add_tasks([task])
        s.write(TrajectoryBatch.from_trajectories([traj], campaign=HOSTILE, reward_source=HOSTILE))
    return traj.traj_id


@pytest.fixture(scope="module")
def printed(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[int, bytes]]:
    """What each command printed on a terminal, by name."""
    from evoagent.envs.game24.data import bundled_logs
    from evoagent.envs.intercode_sql import data as icdata

    tmp = tmp_path_factory.mktemp("esc")
    store = str(tmp / "h.duckdb")
    tid = _hostile_store(Path(store))
    with gzip.open(icdata.bundled_runs()["gpt-4"], "rt") as fh:
        runs = json.load(fh)
    recorded = tmp / "\x1b]0;PWNED\x07\x9b2J.json"
    recorded.write_text(json.dumps({k: runs[k] for k in list(runs)[:2]}))
    log = sorted(bundled_logs().values())[0]
    named = tmp / ("\x1b[2J\x07" + log.name)
    named.write_bytes(log.read_bytes())
    commands = {
        "sql table": ["sql", store, HOSTILE_SQL],
        "sql csv": ["sql", store, HOSTILE_SQL, "--format", "csv"],
        "sql json": ["sql", store, HOSTILE_SQL, "--format", "json"],
        "sql trajectories": ["sql", store, "SELECT * FROM trajectories"],
        "sql error": ["sql", store, f'SELECT * FROM "{HOSTILE}"'],
        "status missing": ["status", f"/nonexistent/{HOSTILE}.duckdb"],
        "usage": ["sql", "--bogus" + HOSTILE],
        "show": ["show", store, tid],
        "lineage": ["lineage", store, tid],
        "status": ["status", store],
        "import intercode": ["import", "intercode", str(recorded), "--store", str(tmp / "i.duckdb")],
        "import game24": ["import", "game24", str(named), "--store", str(tmp / "g.duckdb")],
    }
    return dict(zip(commands, run_cli_in_pty(list(commands.values()), tmp)))


def test_visible_shows_every_control_but_newline_and_tab() -> None:
    assert visible(HOSTILE) == ("\\x1b]0;PWNED\\x07|\\x1b]52;c;aGk=\\x07|\\x1b]8;;http://x\\x1b\\L\\x1b]8;;\\x1b\\"
                                "|\\x1b[2J|\\x9b31m|\\x7f|a\\x0db")
    assert visible("a\tb\nc") == "a\tb\nc"
    assert all(visible(chr(c)) == f"\\x{c:02x}" for c in [*range(0, 9), *range(11, 32), *range(127, 160)])
    # bidirectional controls (a right-to-left override shows "gnp.exe" where "exe.png" is written)
    bidi = [0x061C, 0x200E, 0x200F, *range(0x202A, 0x202F), *range(0x2066, 0x206A)]
    assert all(visible(chr(c)) == f"\\u{c:04x}" for c in bidi)
    assert visible("name\u202egnp.exe") == "name\\u202egnp.exe" and visible("naïve 中文") == "naïve 中文"


def test_safe_stream_escapes_and_has_no_buffer_to_bypass() -> None:
    import io
    sink = io.StringIO()
    s = SafeStream(sink)
    s.write(HOSTILE)
    assert sink.getvalue() == visible(HOSTILE)
    assert not hasattr(s, "buffer")
    with pytest.raises(TypeError):
        s.write(b"\x1b")  # type: ignore[arg-type]


@pytest.mark.parametrize("name", ["sql table", "sql csv", "sql json", "sql trajectories", "show", "lineage", "status",
                                  "import intercode", "import game24"])
def test_commands_on_a_terminal_escape_what_they_print(printed: dict, name: str) -> None:
    code, out = printed[name]
    assert code == 0, out
    assert_no_raw_controls(out)
    assert b"\\x9b" in out or name in ("import game24", "status"), out  # the data is shown, escaped


@pytest.mark.parametrize("name", ["sql error", "status missing", "usage"])
def test_errors_and_usage_lines_are_escaped(printed: dict, name: str) -> None:
    code, out = printed[name]
    assert code == 2 and out.startswith(b"error: ") and out.count(b"\n") == 1, out
    assert_no_raw_controls(out)


@pytest.mark.parametrize("fmt", ["csv", "json"])
def test_sql_into_a_pipe_stays_byte_exact(tmp_path: Path, fmt: str) -> None:
    from click.testing import CliRunner

    from evoagent.cli import main

    store = tmp_path / "s.duckdb"
    DuckDBStore(str(store)).close()
    got = CliRunner().invoke(main, ["sql", str(store), HOSTILE_SQL, "--format", fmt])
    assert got.exit_code == 0, got.output
    value = "\x1b]0;PWNED\x07|\x1b]52;c;aGk=\x07|\x1b[2J|\x9b31m|\x7f|a\rb"
    if fmt == "json":
        assert json.loads(got.stdout) == {"v": value}
    else:
        assert got.stdout == f'"v"\n"{value}"\n'


def test_progress_notes_and_stopped_lines_are_escaped(tmp_path: Path) -> None:
    """The campaign's own printers (live bar, notes, the closing summary and `stopped:` line)
    under the CLI's streams: a gold query's error naming hostile tables, a server's error body."""
    script = tmp_path / "p.py"
    script.write_text(f"""
import types
from evoagent.escaping import install
install()
from evoagent.progress import progress_printer
from evoagent.render import print_outcome
H = {HOSTILE!r}
with progress_printer() as show:
    show({{"event": "stage", "stage": "checking " + H, "done": 1, "total": 2}})
    show({{"event": "note", "text": "gold query fails: Table " + H + " does not exist"}})
print_outcome(types.SimpleNamespace(logbook=[], status="stopped: reward server said: " + H), "s.duckdb")
import click
click.echo("stopped: " + H, err=True)
""")
    code, out = run_in_pty([sys.executable, str(script)])
    assert code == 0, out
    text = out.replace(b"\r\n", b"\n")
    # the live bar moves the cursor with its own CSI sequences; none of the data's got through
    for seq in (b"\x1b]", b"\x07", "\x9b".encode(), b"\x1b[2J", b"\x7f"):
        assert seq not in text, (seq, out)
    assert text.count(b"\\x1b]0;PWNED") >= 4  # shown, not dropped (rich itself drops a BEL)

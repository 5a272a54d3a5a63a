"""The process inside the code sandbox: forks one child per program, with limits, and reports on it.

This file runs inside bubblewrap under ``python -I -S`` (standard library
only, no site-packages, no environment): it is never imported by the
campaign. It starts as root of its mount/PID/network namespaces, makes its
fresh ``/tmp`` (a size-limited tmpfs) its own, drops to the unprivileged uid
it was given (no capabilities, no new privileges, not dumpable), imports the
modules programs commonly use, and then serves requests from the framed
connection on fd 3, one at a time:

request ``{"program", "tests", "limits"}`` -> reply ``{"status", "tests",
"output", "error", "maxrss_kb", "wall_s"}``.

Each program runs in a child forked from this warm process (milliseconds,
not an interpreter start-up), in its own session, in an empty ``/tmp/run``,
with stdin from /dev/null, stdout and stderr into one file capped by
``RLIMIT_FSIZE``, and rlimits on CPU time, address space, processes (the
uid is this worker's own, so the count is only this sandbox's), open files
and core dumps. The child reports each test as one JSON line on a pipe;
what it reports is bounded here (``MAX_REPORT``), then everything left in
the namespace that this uid owns is killed (``kill(-1)``: strays that left
the child's session included) before the next request.
"""
from __future__ import annotations

import ast
import json
import os
import resource
import select
import shutil
import signal
import sys
import time
import traceback

RUN_DIR = "/tmp/run"
OUTPUT_FILE = "/tmp/output"
MAX_REPORT = 1 << 20  # bytes of test reports read from a child
MAX_MESSAGE = 400  # characters of one test's failure message
PREIMPORT = ("collections", "itertools", "functools", "heapq", "bisect", "math", "re", "string",
             "typing", "random", "statistics", "fractions", "decimal", "datetime", "hashlib",
             "copy", "operator", "json", "ast", "traceback", "cmath", "array", "dataclasses")


def _clip(text: str, limit: int = MAX_MESSAGE) -> str:
    return text if len(text) <= limit else text[:limit] + "..."


def _last_line(err: BaseException) -> str:
    lines = traceback.format_exception_only(type(err), err)
    return _clip(lines[-1].strip() if lines else type(err).__name__)


def _actual_of(test: str, namespace: dict) -> str:
    """For ``assert <expr> == <expected>``: what ``<expr>`` evaluated to (the agent's usual feedback)."""
    try:
        node = ast.parse(test)
        stmt = node.body[0] if len(node.body) == 1 else None
        if isinstance(stmt, ast.Assert) and isinstance(stmt.test, ast.Compare):
            value = eval(compile(ast.Expression(stmt.test.left), "<test>", "eval"), namespace)
            return " # output: " + _clip(repr(value), 200)
    except BaseException:  # noqa: BLE001 - the program's own failure, reported as is
        pass
    return ""


def _run_child(request: dict, report_fd: int) -> None:
    """In the forked child: run the program, then each test, one report line per test."""

    def report(obj: dict) -> None:
        os.write(report_fd, (json.dumps(obj) + "\n").encode())

    namespace: dict = {"__name__": "__main__", "__builtins__": __builtins__}
    try:
        code = compile(request["program"], "<program>", "exec")
    except (SyntaxError, ValueError) as err:
        report({"phase": "syntax", "error": _last_line(err)})
        return
    try:
        exec(code, namespace)  # noqa: S102 - this process is the sandbox
    except MemoryError:
        report({"phase": "memory", "error": "MemoryError"})
        return
    except BaseException as err:  # noqa: BLE001 - SystemExit included: the program's outcome
        report({"phase": "error", "error": _last_line(err)})
        return
    report({"phase": "tests"})
    for index, test in enumerate(request["tests"]):
        try:
            exec(compile(test, f"<test {index}>", "exec"), namespace)  # noqa: S102
            report({"test": index, "ok": True})
        except AssertionError as err:
            detail = _clip(str(err)) if str(err) else ""
            report({"test": index, "ok": False, "kind": "assert",
                    "message": "AssertionError" + (f": {detail}" if detail else "") + _actual_of(test, namespace)})
        except MemoryError:
            report({"test": index, "ok": False, "kind": "memory", "message": "MemoryError"})
        except BaseException as err:  # noqa: BLE001
            report({"test": index, "ok": False, "kind": "error", "message": _last_line(err)})


def _limit_child(limits: dict) -> None:
    cpu = max(1, int(limits["cpu_s"] + 0.999))
    for name, value in ((resource.RLIMIT_CPU, (cpu, cpu + 1)),
                        (resource.RLIMIT_AS, (limits["memory_bytes"],) * 2),
                        (resource.RLIMIT_NPROC, (limits["processes"],) * 2),
                        (resource.RLIMIT_NOFILE, (limits["open_files"],) * 2),
                        (resource.RLIMIT_FSIZE, (limits["file_bytes"],) * 2),
                        (resource.RLIMIT_CORE, (0, 0))):
        resource.setrlimit(name, value)


def _fresh_dir() -> None:
    """Empty /tmp (what the last program left there included) and make a new run directory."""
    os.chmod("/tmp", 0o700)  # the last program may have changed it

    stack = ["/tmp"]
    while stack:  # directories the program made unreadable become readable again
        top = stack.pop()
        for name in os.listdir(top):
            path = os.path.join(top, name)
            if os.path.isdir(path) and not os.path.islink(path):
                os.chmod(path, 0o700)
                stack.append(path)
    for name in os.listdir("/tmp"):
        path = os.path.join("/tmp", name)
        if os.path.isdir(path) and not os.path.islink(path):
            shutil.rmtree(path)
        else:
            os.unlink(path)
    os.mkdir(RUN_DIR, 0o700)


def _read_reports(fd: int, pid: int, wall_s: float) -> tuple[bytes, int | None, object, bool]:
    """Bytes the child reported, its wait status (None: killed for time) and rusage, and if it overflowed."""
    data, status, usage, overflow = bytearray(), None, None, False
    deadline = time.monotonic() + wall_s
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            break
        ready, _, _ = select.select([fd], [], [], min(remaining, 0.05))
        if ready:
            chunk = os.read(fd, 65536)
            if chunk:
                data += chunk
                if len(data) > MAX_REPORT:
                    overflow = True
                    break
                continue
        done, wait_status, rusage = os.wait4(pid, os.WNOHANG)
        if done:
            status, usage = wait_status, rusage
            break
    if status is not None:  # drain what was written before it exited (strays may hold the pipe open)
        while len(data) <= MAX_REPORT and select.select([fd], [], [], 0)[0]:
            chunk = os.read(fd, 65536)
            if not chunk:
                break
            data += chunk
    return bytes(data[:MAX_REPORT]), status, usage, overflow


def _kill_all() -> None:
    """Kill every process of this uid in this PID namespace but this one, and wait until they are gone."""
    me = str(os.getpid())
    for _ in range(200):
        try:
            os.kill(-1, signal.SIGKILL)
        except ProcessLookupError:
            pass
        while True:
            try:
                if os.waitpid(-1, os.WNOHANG)[0] == 0:
                    break
            except ChildProcessError:
                break
        uid = os.getuid()
        left = [p for p in os.listdir("/proc") if p.isdigit() and p != me and _owned(p, uid)]
        if not left:
            return
        time.sleep(0.005)


def _owned(pid: str, uid: int) -> bool:
    """Whether a live (not zombie) process of ``uid`` has this pid."""
    try:
        with open(f"/proc/{pid}/status") as handle:
            fields = dict(line.split(":", 1) for line in handle if ":" in line)
    except OSError:
        return False
    return fields.get("Uid", "").split()[:1] == [str(uid)] and not fields.get("State", "").strip().startswith("Z")


def run_one(request: dict) -> dict:
    """Fork a child for one program, wait for it within its wall time, and describe what happened."""
    limits = request["limits"]
    _fresh_dir()
    out_fd = os.open(OUTPUT_FILE, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o600)
    read_fd, write_fd = os.pipe()
    started = time.monotonic()
    pid = os.fork()
    if pid == 0:  # the child: never returns
        try:
            os.setsid()
            os.close(read_fd)
            devnull = os.open("/dev/null", os.O_RDONLY)
            os.dup2(devnull, 0)
            os.dup2(out_fd, 1)
            os.dup2(out_fd, 2)
            os.closerange(3, write_fd)
            os.closerange(write_fd + 1, 1 << 16)
            os.chdir(RUN_DIR)
            sys.stdout = open(1, "w", closefd=False)
            sys.stderr = open(2, "w", closefd=False)
            sys.stdin = open(0, "r", closefd=False)
            signal.signal(signal.SIGPIPE, signal.SIG_DFL)
            signal.signal(signal.SIGXFSZ, signal.SIG_DFL)  # Python ignores it: past the output cap, stop
            _limit_child(limits)
            _run_child(request, write_fd)
            sys.stdout.flush()
        except BaseException:  # noqa: BLE001
            pass
        os._exit(0)
    os.close(write_fd)
    try:
        data, status, usage, overflow = _read_reports(read_fd, pid, limits["wall_s"])
    finally:
        os.close(read_fd)
        _kill_all()
    wall_s = time.monotonic() - started
    cpu_s = usage.ru_utime + usage.ru_stime if usage is not None else 0.0
    reply = _describe(data, status, overflow, request, limits, cpu_s)
    reply["wall_s"] = round(wall_s, 4)
    reply["maxrss_kb"] = int(usage.ru_maxrss) if usage is not None else None
    try:  # from the descriptor: the program may have deleted or replaced the file
        reply["output"] = os.pread(out_fd, 4 * limits["output_chars"], 0).decode("utf-8", "replace")[
            :limits["output_chars"]]
    finally:
        os.close(out_fd)
    return reply


def _describe(data: bytes, status: int | None, overflow: bool, request: dict, limits: dict,
              cpu_s: float) -> dict:
    lines = []
    for raw in data.split(b"\n"):
        try:
            item = json.loads(raw)
        except ValueError:
            continue
        if isinstance(item, dict):
            lines.append(item)
    phase = next((x for x in lines if "phase" in x), None)
    tests = {}
    for item in lines:
        if isinstance(item.get("test"), int) and 0 <= item["test"] < len(request["tests"]):
            tests.setdefault(item["test"], {"ok": item.get("ok") is True,
                                            "kind": str(item.get("kind", ""))[:20],
                                            "message": _clip(str(item.get("message", "")))})
    status_word, error = "ok", ""
    if status is None:
        status_word, error = ("output", "too much reported") if overflow else (
            "timeout", f"wall time limit of {limits['wall_s']:g} s")
    elif os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL and cpu_s >= limits["cpu_s"]:
        status_word, error = "timeout", f"CPU time limit of {limits['cpu_s']:g} s"
    elif os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        status_word, error = {signal.SIGXCPU: ("timeout", f"CPU time limit of {limits['cpu_s']:g} s"),
                              signal.SIGXFSZ: ("output", f"output limit of {limits['file_bytes']} bytes"),
                              }.get(sig, ("crashed", f"killed by signal {signal.Signals(sig).name}"
                                          if sig in signal.valid_signals() else f"killed by signal {sig}"))
    elif phase is None:
        status_word, error = "crashed", "the program ended without a report"
    if phase is not None and phase.get("phase") in ("syntax", "error", "memory") and status_word == "ok":
        status_word, error = phase["phase"], _clip(str(phase.get("error", "")))
    result_tests = []
    for index in range(len(request["tests"])):
        if index in tests:
            result_tests.append(tests[index])
        else:
            kind = status_word if status_word != "ok" else "missing"
            result_tests.append({"ok": False, "kind": kind, "message": error or "no result"})
    return {"status": status_word, "error": error, "tests": result_tests}


def _serve(fd: int, uid: int) -> None:
    from multiprocessing.connection import Connection

    os.chown("/tmp", uid, uid)
    os.setgroups([])
    os.setgid(uid)
    os.setuid(uid)
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(38, 1, 0, 0, 0)  # PR_SET_NO_NEW_PRIVS
    libc.prctl(4, 0, 0, 0, 0)  # PR_SET_DUMPABLE 0: a child of the same uid cannot ptrace this process
    for name in PREIMPORT:
        __import__(name)
    conn = Connection(fd)
    conn.send_bytes(json.dumps({"ready": True, "uid": os.getuid()}).encode())
    while True:
        try:
            request = json.loads(conn.recv_bytes())
        except EOFError:
            return
        try:
            reply = run_one(request)
        except Exception as err:  # noqa: BLE001 - answer, then exit: the pool starts a fresh worker
            reply = {"status": "crashed", "error": "sandbox error: " + _last_line(err), "tests": [
                {"ok": False, "kind": "crashed", "message": "sandbox error"} for _ in request.get("tests", ())]}
            conn.send_bytes(json.dumps(reply).encode())
            return
        conn.send_bytes(json.dumps(reply).encode())


if __name__ == "__main__":
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _serve(int(sys.argv[1]), int(sys.argv[2]))

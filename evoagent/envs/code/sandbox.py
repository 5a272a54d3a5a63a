"""The code sandbox: agent-written Python runs in bubblewrap, one forked child per program.

Why bubblewrap, and how: ``bwrap`` (Debian's ``bubblewrap``) builds the
namespaces without a daemon. Each worker is one ``bwrap`` process with new
mount, PID, network, IPC and UTS namespaces (``--unshare-net``: only a
loopback device of its own, so nothing listening on the host's 127.0.0.1 can
be reached), a file system of read-only binds of ``/usr`` and the
interpreter's prefix only (no ``/etc``, ``/home``, ``/root``, ``/work``,
no project, no store), a fresh size-limited tmpfs on ``/tmp`` and a cleared
environment (no HOME, no API keys). Run by root, bwrap keeps only
CAP_SETUID/SETGID/CHOWN for the worker's first moments: the worker
(:mod:`evoagent.envs.code.forkserver`) gives ``/tmp`` to a uid of its own
and drops to it. A uid per worker is what makes ``RLIMIT_NPROC`` a real
limit on processes and threads (the kernel counts per uid and exempts uid
0). The worker then forks one child per program with limits on CPU time,
wall time, address space, processes, open files, file size (the output
file's cap) and core dumps, and kills everything of its uid after each.

The pool keeps up to ``POOL_SIZE`` warm workers per campaign process,
shared by all threads. A worker that dies (a program may kill its parent,
which it shares a uid with) is replaced; that program's result is
``crashed``. Programs run under ``python -I -S``: the standard library only.
A worker exits when its socket closes, so it never outlives the campaign
(bwrap's ``--die-with-parent`` is not used: it fires when the *thread* that
started the worker ends, and any thread may start one).

Limitation: a program and the tests run against it share one process, so a
program written to forge its own test report can; the sandbox protects the
host, not the score, from such a program.
"""
from __future__ import annotations

import atexit
import json
import os
import shutil
import sys
import threading
from dataclasses import asdict, dataclass, field
from pathlib import Path

from evoagent.spawn import SocketWorker, spawn_process

FORKSERVER = Path(__file__).with_name("forkserver.py")
INSIDE_SCRIPT = "/sandbox/forkserver.py"
POOL_SIZE = max(1, min(4, os.cpu_count() or 1))
START_TIMEOUT_S = 30.0
GRACE_S = 5.0
TMPFS_BYTES = 64 << 20
MAX_PROGRAM_CHARS = 100_000  # longer programs are refused before they reach a worker
MAX_TESTS = 200
UID_BASE = 1_000_000


class SandboxError(RuntimeError):
    """The sandbox itself cannot run (no bwrap, no namespaces): the environment is broken, not the program."""


@dataclass(frozen=True)
class Limits:
    """What one program may use. Wall time bounds sleeps and hangs; CPU time bounds busy loops."""

    wall_s: float = 5.0
    cpu_s: float = 4.0
    memory_bytes: int = 1 << 30
    processes: int = 8  # processes and threads of the program (its worker's uid) at once
    open_files: int = 64
    file_bytes: int = 1 << 20  # any one file, stdout/stderr included
    output_chars: int = 4000  # of stdout/stderr kept in the result


@dataclass(frozen=True)
class Result:
    """What happened to one program: ``status`` is ok, syntax, error, memory, timeout, output or crashed.

    ``tests`` has one entry per test: ``{"ok", "kind", "message"}``.
    """

    status: str
    error: str = ""
    tests: tuple[dict, ...] = ()
    output: str = ""
    maxrss_kb: int | None = None
    wall_s: float = 0.0
    extra: dict = field(default_factory=dict)

    @property
    def passed(self) -> int:
        return sum(1 for t in self.tests if t.get("ok"))

    @property
    def all_passed(self) -> bool:
        return self.status == "ok" and bool(self.tests) and self.passed == len(self.tests)


def refused(program: object, tests: list[str], why: str) -> Result:
    """The result of a program that never reached a worker (not text, too long)."""
    return Result("refused", why, tuple({"ok": False, "kind": "refused", "message": why} for _ in tests))


def _bwrap_command(uid: int, fd: int) -> list[str]:
    bwrap = shutil.which("bwrap")
    if bwrap is None:
        raise SandboxError("the code sandbox needs bubblewrap (Debian: apt-get install bubblewrap)")
    if os.geteuid() != 0:
        raise SandboxError("the code sandbox runs bubblewrap as root (it gives each worker a uid of its own so "
                           "that process limits hold); run evoagent as root in its container")
    python = os.path.realpath(sys._base_executable if hasattr(sys, "_base_executable") else sys.executable)
    prefix = os.path.realpath(sys.base_prefix)
    command = [bwrap, "--unshare-ipc", "--unshare-pid", "--unshare-net", "--unshare-uts", "--unshare-cgroup-try",
               "--cap-add", "CAP_SETUID", "--cap-add", "CAP_SETGID", "--cap-add", "CAP_CHOWN",
               "--ro-bind", "/usr", "/usr"]
    for name in ("lib", "lib64", "bin"):
        target = os.path.realpath(f"/{name}")
        if target.startswith("/usr/"):
            command += ["--symlink", target.lstrip("/"), f"/{name}"]
        elif os.path.isdir(target):
            command += ["--ro-bind", target, f"/{name}"]
    if not prefix.startswith("/usr/") and prefix != "/usr":
        command += ["--ro-bind", prefix, prefix]
        parent = os.path.dirname(prefix)
        while parent not in ("/", ""):  # bwrap copies the modes of the originals (/root is 0700)
            command += ["--chmod", "0755", parent]
            parent = os.path.dirname(parent)
    command += ["--ro-bind", str(FORKSERVER), INSIDE_SCRIPT, "--proc", "/proc", "--dev", "/dev",
                "--size", str(TMPFS_BYTES), "--tmpfs", "/tmp", "--chdir", "/tmp", "--clearenv",
                "--setenv", "PATH", "/usr/bin:/bin", "--setenv", "LANG", "C.UTF-8",
                "--new-session",  # no --die-with-parent: it fires when the starting *thread* ends
                python, "-I", "-S", "-B", INSIDE_SCRIPT, str(fd), str(uid)]
    return command


class _Worker(SocketWorker):
    """One bwrap process running the fork server, and the parent's end of its socket."""

    kill_group = True  # bwrap and the fork server's children

    def __init__(self, slot: int) -> None:
        uid = UID_BASE + os.getpid() * 16 + slot
        self.proc, self.conn = spawn_process(lambda fd: _bwrap_command(uid, fd), quiet_stderr=True,
                                             env={"PATH": "/usr/bin:/bin"})
        try:
            first = json.loads(self.conn.recv_bytes()) if self.conn.poll(START_TIMEOUT_S) else {}
        except (EOFError, OSError, ValueError):
            first = {}
        if not first.get("ready"):
            self.kill()
            raise SandboxError("the code sandbox's worker did not start (bwrap could not create its namespaces?)")

    def call(self, request: bytes, deadline_s: float) -> dict | None:
        """The worker's reply, or None when it died or missed its deadline (then it is killed)."""
        try:
            self.conn.send_bytes(request)
            if not self.conn.poll(deadline_s):
                self.kill()
                return None
            reply = json.loads(self.conn.recv_bytes(maxlength=16 << 20))
            return reply if isinstance(reply, dict) else None
        except (EOFError, OSError, ValueError):
            self.kill()
            return None
        except BaseException:
            self.kill()
            raise


class Sandbox:
    """Up to ``size`` warm workers, lent out one program at a time; thread-safe."""

    def __init__(self, size: int = POOL_SIZE) -> None:
        self.size = size
        self._idle: list[_Worker] = []
        self._slots = list(range(size))
        self._cv = threading.Condition()
        self.started = 0  # workers started so far (tests and diagnostics)

    def run(self, program: object, tests: list[str], limits: Limits = Limits()) -> Result:
        """Run ``program`` then each of ``tests`` (Python statements) in one fresh child; never raises for the program."""
        if not isinstance(program, str):
            return refused(program, tests, "the program is not text")
        if len(program) > MAX_PROGRAM_CHARS:
            return refused(program, tests, f"the program is longer than {MAX_PROGRAM_CHARS} characters")
        if "\x00" in program:
            return refused(program, tests, "the program contains a NUL character")
        tests = list(tests)[:MAX_TESTS]
        request = json.dumps({"program": program, "tests": tests, "limits": asdict(limits)}).encode()
        worker, slot = self._take()
        try:
            reply = worker.call(request, limits.wall_s + GRACE_S)
        finally:
            self._give(worker, slot)
        if reply is None:
            why = "the sandbox process died while running this program"
            return Result("crashed", why, tuple({"ok": False, "kind": "crashed", "message": why} for _ in tests))
        return Result(str(reply.get("status", "crashed")), str(reply.get("error", "")),
                      tuple(reply.get("tests", ())), str(reply.get("output", "")),
                      reply.get("maxrss_kb"), float(reply.get("wall_s", 0.0)))

    def _take(self) -> tuple[_Worker, int]:
        with self._cv:
            while not self._idle and not self._slots:
                self._cv.wait()
            if self._idle:
                worker = self._idle.pop()
                return worker, worker.slot
            slot = self._slots.pop()
        try:
            worker = _Worker(slot)
        except BaseException:
            with self._cv:
                self._slots.append(slot)
                self._cv.notify()
            raise
        worker.slot = slot
        self.started += 1
        return worker, slot

    def _give(self, worker: _Worker, slot: int) -> None:
        with self._cv:
            if worker.alive:
                self._idle.append(worker)
            else:
                worker.kill()
                self._slots.append(slot)
            self._cv.notify()

    def close(self) -> None:
        with self._cv:
            idle, self._idle = self._idle, []
            for worker in idle:
                self._slots.append(worker.slot)
        for worker in idle:
            worker.kill()


_shared: Sandbox | None = None
_shared_lock = threading.Lock()


def shared_sandbox() -> Sandbox:
    """The process's one pool (started lazily, closed at exit)."""
    global _shared
    with _shared_lock:
        if _shared is None:
            _shared = Sandbox()
            atexit.register(_shared.close)
        return _shared


__all__ = ["Limits", "Result", "Sandbox", "SandboxError", "shared_sandbox"]

"""``evoagent sql`` in a bounded worker process: memory-capped, time-limited, stopped by Ctrl-C at once.

A query typed at the command line can ask for anything: ``SELECT * FROM
range(100000000)`` as a table, ``repeat('x', 10^7)`` over many rows, a count
over ``range(10^12)``. So the query runs in a worker process whose data segment is capped with ``RLIMIT_DATA`` at
:data:`DATA_LIMIT_BYTES` and whose DuckDB ``memory_limit`` is
:data:`DUCKDB_MEMORY_LIMIT`: past them the query fails with one line instead of
taking the machine. The worker streams its output in frames over a pipe;
this process (which never loads DuckDB) writes them out, stops the worker at
``--timeout`` and kills it on Ctrl-C, so nothing waits for DuckDB to notice an
interrupt. Table output is fetched in chunks and stops at a row and character
budget (:mod:`evoagent.render`); CSV and JSON stream whole, in bounded memory.

From the CLI the worker is a fork of the command's own small process (one
thread, no DuckDB loaded: nothing to copy mid-use), which then loads DuckDB.
Elsewhere (tests, programs with threads) a multiprocessing fork server that has
imported the reader once forks the workers: a query costs one fork, not one
interpreter start, and no lock held by another thread is copied.

Frames (worker to parent): ``o`` + output text, ``n`` + a note line, ``e`` + a
one-line error, ``d`` done. Light module: the parent side imports no DuckDB.
"""
from __future__ import annotations

import io
import json
import os
import resource
import select
import shutil
import signal
import struct
import sys
import time
from typing import TYPE_CHECKING, Any, Union

from evoagent.errors import UserError

if TYPE_CHECKING:
    from multiprocessing.connection import Connection

    from stores.readonly import ReadOnlyStore

DATA_LIMIT_BYTES = 3 << 29  # 1.5 GiB: the worker's heap and anonymous mappings, DuckDB's included
DUCKDB_MEMORY_LIMIT = "1GB"  # DuckDB's own limit inside that (hash tables, sorts, aggregates)
DEFAULT_TIMEOUT_S = 60.0
FRAME_CHARS = 1 << 16  # output text per frame
# What a worker loads before its request comes (a fork server: once, Arrow too for snapshots' parts).
_PRELOAD = ("evoagent.render", "stores.snapshot")
_SERVER_PRELOAD = ("evoagent.sql_reader", *_PRELOAD, "evoagent.llm.ledger", "pyarrow.dataset")


class Interrupted(Exception):
    """Ctrl-C stopped the query (its worker is already gone)."""


class _OutputClosed(Exception):
    """Whoever reads our stdout has closed it."""


def _out(write: Any, *args: Any) -> None:
    try:
        write(*args)
    except BrokenPipeError:
        raise _OutputClosed() from None


def run_sql(store_path: str, query: str, fmt: str, out: str | None, timeout_s: float) -> None:
    """Run one read-only query in a bounded worker and write what it prints to stdout (or ``out``).

    Raises UserError (one line) for a bad query, an exhausted memory cap or the timeout, and
    :class:`Interrupted` on Ctrl-C; the worker is ended in every case before this returns."""
    from evoagent.escaping import raw

    tty = sys.stdout.isatty()
    _ask({"command": "sql", "store": store_path, "query": query, "fmt": fmt, "out": out,
          "width": shutil.get_terminal_size().columns if tty else 160},
         sys.stdout if tty else raw(sys.stdout), timeout_s)  # CSV/JSON into a pipe stay byte-exact


def run_status(store_path: str) -> None:
    """``evoagent status`` from the same worker: it loads DuckDB while the CLI parses (see :func:`prefork`)."""
    tty = sys.stdout.isatty()
    _ask({"command": "status", "store": store_path,
          "width": shutil.get_terminal_size().columns if tty else 160}, sys.stdout, 0)


def _ask(request: dict[str, Any], sink: Any, timeout_s: float) -> None:
    """Send one request to a worker and copy its frames to ``sink`` (notes to stderr) until done."""
    deadline = time.monotonic() + timeout_s if timeout_s > 0 else None
    proc = conn = None
    if signal.getsignal(signal.SIGINT) is _interrupted_early:  # from here Ctrl-C is KeyboardInterrupt
        signal.signal(signal.SIGINT, signal.default_int_handler)  # (a worker never sent a request ends at EOF)
    try:
        proc, conn = _start()
        conn.send_bytes(json.dumps(request).encode())
        while True:
            wait = None if deadline is None else max(0.0, deadline - time.monotonic())
            if not conn.poll(wait):
                raise UserError(f"query stopped at --timeout {timeout_s:g} s (give --timeout N for longer, "
                                "--timeout 0 for no limit)")
            frame = conn.recv_bytes()
            tag, body = frame[:1], frame[1:].decode("utf-8", "backslashreplace")
            if tag == b"o":
                _out(sink.write, body)
            elif tag == b"n":
                _out(sink.flush)
                print(f"note: {body}", file=sys.stderr, flush=True)
            elif tag == b"e":
                raise UserError(body)
            elif tag == b"d":
                _out(sink.flush)
                return
    except _OutputClosed:  # the reader of our output left (e.g. `| head`): stop quietly, as it asked
        _end(proc, conn)
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())  # so that the exit's flush of stdout fails no more
        os.close(devnull)
    except (EOFError, ConnectionError):
        _end(proc, conn)
        code = proc.exitcode if proc is not None else None
        raise UserError(f"the query's worker process ended without an answer (exit status {code}); "
                        f"its memory is capped at {DATA_LIMIT_BYTES / 2**30:.1f} GiB") from None
    except KeyboardInterrupt:
        _end(proc, conn)
        raise Interrupted() from None
    finally:
        _end(proc, conn)


_PREFORKED: list[tuple[Any, Channel]] = []  # the worker :func:`prefork` started, until a command takes it
PREFORK_COMMANDS = ("sql", "status")


def prefork(argv: list[str]) -> None:
    """Start the worker for ``evoagent sql|status`` before the CLI imports click and parses.

    The worker (a fork of this still tiny process) loads DuckDB and the store's reader while
    the parent loads click and checks the arguments: on two cores the command then costs
    about one DuckDB start, not a DuckDB start plus the CLI's. A worker no command takes
    (a usage mistake, ``--help``) reads end-of-file when this process exits, and exits too."""
    if len(argv) < 2 or argv[1] not in PREFORK_COMMANDS or _PREFORKED:
        return
    if any(a in ("--help", "-h") for a in argv[2:]) or not _may_fork():
        return
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})  # a Ctrl-C meanwhile waits for the handler
    try:
        _PREFORKED.append(_fork())
        signal.signal(signal.SIGINT, _interrupted_early)
    finally:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})


def _interrupted_early(signum: int, frame: Any) -> None:
    """Ctrl-C before the command has reached its worker (click still loading): end the worker, exit 130."""
    while _PREFORKED:
        _end(*_PREFORKED.pop())
    os.write(2, b"interrupted\n")
    os._exit(130)


def _may_fork() -> bool:
    """One thread and no DuckDB loaded: nothing a fork could copy mid-use."""
    threading = sys.modules.get("threading")
    return (threading is None or threading.active_count() == 1) and "duckdb" not in sys.modules


def _start() -> tuple[Any, Channel]:
    """A worker process running :func:`_serve`, and the parent's end of its pipe.

    From the CLI (one thread, no DuckDB loaded) the worker is a plain fork of this small
    process: one interpreter start, not two. Anywhere else (a program with threads or DuckDB
    already loaded, e.g. the tests) forking could copy a lock held by another thread, so a
    fork server that has imported the reader once forks the workers."""
    if _PREFORKED:
        return _PREFORKED.pop()
    if _may_fork():
        return _fork()
    import multiprocessing

    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(list(_SERVER_PRELOAD))
    parent, child = ctx.Pipe()
    proc = ctx.Process(target=_serve, args=(child,), name="evoagent-sql", daemon=True)
    try:
        proc.start()
    finally:
        child.close()
    return proc, parent


class _Forked:
    """The worker forked by :func:`_fork`: what :func:`_end` needs of a ``multiprocessing.Process``."""

    def __init__(self, pid: int) -> None:
        self.pid, self.exitcode = pid, None

    def _reap(self, flags: int) -> None:
        if self.exitcode is None:
            pid, status = os.waitpid(self.pid, flags)
            if pid:
                self.exitcode = os.waitstatus_to_exitcode(status)

    def kill(self) -> None:
        self._reap(os.WNOHANG)
        if self.exitcode is None:
            os.kill(self.pid, signal.SIGKILL)

    def join(self) -> None:
        self._reap(0)


class _Channel:
    """Length-prefixed frames over two pipes: the part of ``multiprocessing``'s ``Connection``
    the reader uses (send_bytes, recv_bytes, poll, close), without importing multiprocessing,
    which costs the CLI's parent process more than everything else it loads."""

    _HEADER = struct.Struct("!Q")

    def __init__(self, read_fd: int, write_fd: int) -> None:
        self.read_fd, self.write_fd, self.closed = read_fd, write_fd, False

    def send_bytes(self, data: bytes) -> None:
        view = memoryview(self._HEADER.pack(len(data)) + data)
        while view:
            view = view[os.write(self.write_fd, view):]

    def _read(self, n: int) -> bytes:
        parts = []
        while n:
            chunk = os.read(self.read_fd, min(n, 1 << 20))
            if not chunk:
                raise EOFError
            parts.append(chunk)
            n -= len(chunk)
        return b"".join(parts)

    def recv_bytes(self) -> bytes:
        return self._read(self._HEADER.unpack(self._read(self._HEADER.size))[0])

    def poll(self, timeout: float | None) -> bool:
        return bool(select.select([self.read_fd], [], [], timeout)[0])

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            os.close(self.read_fd)
            os.close(self.write_fd)


Channel = Union["Connection", _Channel]


def _fork() -> tuple[_Forked, _Channel]:
    to_child, to_parent = os.pipe(), os.pipe()
    pid = os.fork()
    if pid == 0:  # the worker: never returns into the CLI's code
        code = 1
        try:
            signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent ends it on Ctrl-C
            os.setpgid(0, 0)  # nor does the terminal's Ctrl-C reach it
            signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})  # (blocked by prefork)
            os.close(to_child[1])
            os.close(to_parent[0])
            null = os.open(os.devnull, os.O_RDWR)  # answers travel as frames: the terminal's stdin/stdout
            os.dup2(null, 0)  # are the parent's alone (a pipe into `| cat` closes when the parent exits)
            os.dup2(null, 1)
            for module in _PRELOAD:  # while the parent still parses its arguments
                __import__(module)
            _serve(_Channel(to_child[0], to_parent[1]))
            code = 0
        finally:
            os._exit(code)
    os.close(to_child[0])
    os.close(to_parent[1])
    return _Forked(pid), _Channel(to_parent[0], to_child[1])


def _end(proc: Any, conn: Channel | None) -> None:
    if conn is not None and not conn.closed:
        conn.close()
    if proc is not None:
        if proc.exitcode is None:
            proc.kill()
        proc.join()


# -- the worker process ----------------------------------------------------------
class _Frames(io.TextIOBase):
    """Output text, sent to the parent in frames of about FRAME_CHARS."""

    def __init__(self, conn: Channel) -> None:
        self.conn, self.parts, self.size = conn, [], 0

    def write(self, text: str) -> int:
        self.parts.append(text)
        self.size += len(text)
        if self.size >= FRAME_CHARS:
            self.flush()
        return len(text)

    def flush(self) -> None:
        if self.parts:
            self.conn.send_bytes(b"o" + "".join(self.parts).encode("utf-8", "backslashreplace"))
            self.parts, self.size = [], 0

    def isatty(self) -> bool:
        return False


def _serve(conn: Channel) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle: it kills this process
    try:
        req = json.loads(conn.recv_bytes())
    except (EOFError, OSError):
        return
    _limit_memory()  # the one place either kind of worker takes its cap: before it reads the store
    try:
        try:
            notes = _query(req, _Frames(conn))
        except (EOFError, ConnectionError):
            return  # the parent has gone (timeout, Ctrl-C): nothing to tell
        except UserError as exc:
            conn.send_bytes(b"e" + _one_line(str(exc)).encode("utf-8", "backslashreplace"))
            return
        except MemoryError:
            conn.send_bytes(b"e" + _out_of_memory().encode())
            return
        except OSError as exc:  # DuckDB's errors met while fetching Arrow batches; an --out file not writable
            where = f": {exc.filename}" if exc.filename else ""
            conn.send_bytes(b"e" + _one_line(f"query failed: {(exc.strerror or str(exc)).splitlines()[0]}{where}")
                            .encode("utf-8", "backslashreplace"))
            return
        for note in notes:
            conn.send_bytes(b"n" + note.encode("utf-8", "backslashreplace"))
        conn.send_bytes(b"d")
    except (EOFError, OSError):
        return  # the parent has gone: nothing to tell


def _limit_memory() -> None:
    hard = resource.getrlimit(resource.RLIMIT_DATA)[1]
    soft = DATA_LIMIT_BYTES if hard == resource.RLIM_INFINITY else min(DATA_LIMIT_BYTES, hard)
    resource.setrlimit(resource.RLIMIT_DATA, (soft, hard))


def open_capped(store_path: str) -> ReadOnlyStore:
    """The store's freshest reader under DuckDB's :data:`DUCKDB_MEMORY_LIMIT`: ``sql`` and ``status`` alike."""
    from stores import open_reader

    return open_reader(store_path, memory_limit=DUCKDB_MEMORY_LIMIT)


def _query(req: dict, sink: _Frames) -> list[str]:
    from evoagent.render import print_status, write_result
    from stores.readonly import refuse_store_paths

    status = req["command"] == "status"
    if not status and req["out"]:
        refuse_store_paths(req["store"], req["out"])
    store = open_capped(req["store"])
    try:
        if status:
            print_status(store, sink, width=req["width"])
            notes: list[str] = []
        else:
            notes = write_result(store.relation(req["query"]), req["fmt"], req["out"], stream=sink,
                                 width=req["width"])
    finally:
        store.close()
    sink.flush()
    return notes


def _one_line(text: str) -> str:
    line = " ".join(text.split())
    if "Out of Memory" in line or "memory_limit" in line or "failed to allocate" in line:
        line += f" (evoagent sql's worker is capped at {DATA_LIMIT_BYTES / 2**30:.1f} GiB, DuckDB at " \
                f"{DUCKDB_MEMORY_LIMIT}: narrow the query, or stream it with --format csv --out FILE)"
    return line


def _out_of_memory() -> str:
    return (f"the query's result did not fit in evoagent sql's memory cap ({DATA_LIMIT_BYTES / 2**30:.1f} GiB): "
            "narrow the query, or stream it with --format csv --out FILE")


"""Start a helper process of ours that talks over a socket pair, and end it.

Every kind of worker (LLM senders, SQL sandboxes, code sandboxes) is started
the same way: a command given the child's end of a socket pair as a file
descriptor, in its own process group (Ctrl-C is the campaign's to handle),
so that the worker exits when the parent's end closes and never outlives the
campaign. :class:`SocketWorker` is what the sandboxes' workers share: whether
one still answers, and ending it for good.
"""
from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Callable, Mapping
from multiprocessing.connection import Connection


def spawn_process(argv: Callable[[int], list[str]], *, quiet_stderr: bool = False,
                  env: Mapping[str, str] | None = None) -> tuple[subprocess.Popen, Connection]:
    """Start ``argv(fd)`` with the child's end of a socket pair as ``fd``; the process and the parent's connection."""
    parent, child = socket.socketpair()
    try:
        proc = subprocess.Popen(
            argv(child.fileno()), pass_fds=(child.fileno(),), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL if quiet_stderr else None, env=env, process_group=0)
    except BaseException:
        parent.close()
        raise
    finally:
        child.close()
    return proc, Connection(parent.detach())


def spawn_worker(module: str, *, quiet_stderr: bool = False) -> tuple[subprocess.Popen, Connection]:
    """Start ``python -m module FD``; returns the process and the parent's framed connection."""
    return spawn_process(lambda fd: [sys.executable, "-m", module, str(fd)], quiet_stderr=quiet_stderr)


class SocketWorker:
    """A started worker (``proc``) and the parent's end of its socket (``conn``).

    ``kill_group``: ending it kills its whole process group, for a worker that starts processes of
    its own (the code sandbox's bwrap and the programs under it).
    """

    proc: subprocess.Popen
    conn: Connection
    kill_group = False

    @property
    def alive(self) -> bool:
        return not self.conn.closed and self.proc.poll() is None

    def kill(self) -> None:
        """End the process now and reap it."""
        if not self.conn.closed:
            self.conn.close()
        if self.proc.poll() is None:
            try:
                if self.kill_group:
                    os.killpg(self.proc.pid, 9)
                else:
                    self.proc.kill()
            except OSError:
                pass
        self.proc.wait()

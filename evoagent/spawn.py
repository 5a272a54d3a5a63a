"""Start a helper process of ours that talks over a socket pair.

Both kinds of worker (LLM senders, SQL sandboxes) are started the same way:
``python -m MODULE FD`` with the child's end of a socket pair, in its own
process group (Ctrl-C is the campaign's to handle), so that the worker exits
when the parent's end closes and never outlives the campaign.
"""
from __future__ import annotations

import socket
import subprocess
import sys
from multiprocessing.connection import Connection


def spawn_worker(module: str, *, quiet_stderr: bool = False) -> tuple[subprocess.Popen, Connection]:
    """Start ``python -m module FD``; returns the process and the parent's framed connection."""
    parent, child = socket.socketpair()
    try:
        proc = subprocess.Popen(
            [sys.executable, "-m", module, str(child.fileno())],
            pass_fds=(child.fileno(),), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL if quiet_stderr else None, process_group=0)
    except BaseException:
        parent.close()
        raise
    finally:
        child.close()
    return proc, Connection(parent.detach())

"""Joining or starting the Ray session that the Ray executor and reward models on Ray share.

Whichever needs Ray first starts a ``local`` session (and ends it), the other joins it.
"""
from __future__ import annotations

import logging
import os
import shutil
import tempfile
from collections.abc import Callable

from evoagent.errors import UserError


def connect(address: str, note: Callable[[str], None]) -> tuple[bool, str | None]:
    """Join (or start) a Ray session; returns (whether this call started it, its temp folder).

    The executor and the reward models placed on Ray (:mod:`evoagent.rm.ray_models`)
    both call this: whichever comes first starts a ``local`` session (and ends it with
    :func:`disconnect`), the other joins it."""
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    import ray

    if ray.is_initialized():
        return False, None
    quiet = {"log_to_driver": False, "logging_level": logging.ERROR}
    tmp = None
    try:
        if address == "local":
            note("starting a local Ray instance")
            tmp = tempfile.mkdtemp(prefix="evoray-")  # short: Ray's socket paths must fit in 107 bytes
            ray.init(address="local", num_cpus=os.cpu_count() or 1, _temp_dir=tmp,
                     _node_ip_address="127.0.0.1", include_dashboard=False, **quiet)
        else:
            note(f"connecting to Ray at {address}")
            ray.init(address=address, **quiet)
    except Exception as exc:  # ConnectionError, RuntimeError, ValueError, gRPC errors of ray://
        if tmp:
            shutil.rmtree(tmp, ignore_errors=True)
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UserError(f"key 'executor.address': cannot start or reach Ray at {address!r}: {first}") from None
    return True, tmp


def disconnect(tmp: str | None) -> None:
    """End a session that :func:`connect` started (and remove its temp folder)."""
    import ray

    ray.shutdown()
    if tmp:
        shutil.rmtree(tmp, ignore_errors=True)


__all__ = ["connect", "disconnect"]

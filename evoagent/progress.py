"""What a running campaign shows on stderr, fed by ``launch``/``Runner`` progress events.

Events (dicts): ``stage`` (a start-up step, optionally with ``done``/``total``),
``note`` (a warning), ``items`` (a group commit inside a generation, with the
running count of children, solved ones and their reward sum) and
``generation`` (a generation was committed, with its Logbook statistics).

On a terminal: a live bar for the current start-up step or generation (``gen
2 of 0..5``, items, children solved, mean reward, time left) and a line per
committed generation. Without one (nohup, CI logs): plain lines, one per
committed generation, one per start-up step that lasts (a counted step at once,
any other once it has run ``SLOW_S`` seconds, so a quick validation error stays
one line), and one every ``QUIET_S`` seconds while work goes on.
"""
from __future__ import annotations

import contextlib
import sys
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any, TextIO

from rich.console import Console

from evoagent.escaping import safe_console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

Printer = Callable[[dict[str, Any]], None]
QUIET_S = 30.0  # longest silence of the plain-text log while work goes on
SLOW_S = 2.0  # a start-up step without counts gets its line once it has lasted this long


def generation_line(info: dict[str, Any]) -> str:
    """One line per committed generation: where it stands and what it reached (``seconds``: since start)."""
    s = info["stats"]
    line = (f"generation {info['generation']} of 0..{info['last_generation']} committed: {s['nevals']:,} children, "
            f"success {100 * s['success_rate']:.1f}% (best per task)")
    if s.get("of_bound") is not None:
        line += f", {100 * s['of_bound']:.1f}% of the bound"
    line += (f", members solved {100 * s.get('members_solved', 0):.1f}%, mean reward {s['avg']:.3f}, "
             f"{s['env_steps']:,} env steps, {info['seconds']:.1f}s elapsed")
    if s.get("tasks_below_mu"):
        line += f"; {s['tasks_below_mu']} tasks below mu"
    if s.get("partial"):  # a round a budget cut short, closed with what finished (resume re-opens it)
        line += f"; cut short by {s['stopped']}: closed with {s['items_finished']:,} of {s['items_planned']:,} items"
    return line


def items_summary(info: dict[str, Any]) -> str:
    """The running figures of the generation in progress (children so far, not the population)."""
    n = info["children"]
    if not n:
        return ""
    return f"children solved {100 * info['solved'] / n:.1f}%, mean reward {info['reward_sum'] / n:.3f}"


def _stage_line(info: dict[str, Any], seconds: float) -> str:
    counts = f" ({info['done']:,}/{info['total']:,})" if "total" in info else ""
    return f"[{seconds:6.1f}s] {info['stage']}{counts}"


@contextlib.contextmanager
def progress_printer(stream: TextIO | None = None) -> Iterator[Printer]:
    """The printer for ``on_progress``: live bar on a terminal, plain lines otherwise."""
    stream = stream or sys.stderr
    with _live(safe_console(stream)) if stream.isatty() else _plain(stream) as printer:
        yield printer


@contextlib.contextmanager
def _plain(stream: TextIO) -> Iterator[Printer]:
    t0 = time.monotonic()
    said: dict[str, float] = {}  # stage or generation -> when a line was last written for it
    lock = threading.Lock()
    slow: list[threading.Timer] = []  # the line of the current uncounted step, if it lasts

    def say(text: str) -> None:
        with lock:
            stream.write(text + "\n")
            stream.flush()

    def show(info: dict[str, Any]) -> None:
        now = time.monotonic()
        event = info.get("event")
        while slow:
            slow.pop().cancel()
        if event == "stage":
            key = info["stage"]
            if "total" not in info:
                timer = threading.Timer(SLOW_S, say, [_stage_line(info, now - t0) + " ..."])
                timer.daemon = True
                slow.append(timer)
                timer.start()
                return
            first, finished = key not in said, info["done"] == info["total"]
            if first or finished or now - said[key] >= QUIET_S:
                said[key] = now
                say(_stage_line(info, now - t0))
        elif event == "note":
            say(f"note: {info['text']}")
        elif event == "items":
            key = f"generation {info['generation']}"
            said.setdefault(key, now)  # the first line comes after QUIET_S, not at once
            if now - said[key] >= QUIET_S:
                said[key] = now
                running = items_summary(info)
                say(f"{key} of 0..{info['last_generation']}: {info['done']:,}/{info['total']:,} items"
                    + (f", {running}" if running else ""))
        elif event == "generation":
            say(generation_line({**info, "seconds": now - t0}))

    try:
        yield show
    finally:
        while slow:
            slow.pop().cancel()


@contextlib.contextmanager
def _live(console: Console) -> Iterator[Printer]:
    progress = Progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[info]}"),
        TimeElapsedColumn(), TimeRemainingColumn(), transient=True, console=console,
    )
    t0 = time.monotonic()
    current: dict[str, Any] = {}  # what the bar shows: its key and rich task id

    def bar(key: str, description: str, total: int | None) -> Any:
        if current.get("key") != key:
            if "id" in current:
                progress.remove_task(current["id"])
            current.update(key=key, id=progress.add_task(escape(description), total=total, info=""))
        return current["id"]

    def show(info: dict[str, Any]) -> None:
        event = info.get("event")
        if event == "stage":
            bar(info["stage"], info["stage"], info.get("total"))
            if "total" in info:
                progress.update(current["id"], completed=info["done"], total=info["total"])
        elif event == "note":
            progress.console.print(escape(f"note: {info['text']}"), highlight=False)
        elif event == "items":
            g = info["generation"]
            task = bar(f"generation {g}", f"gen {g} of 0..{info['last_generation']}", info["total"])
            progress.update(task, completed=info["done"], total=info["total"], info=escape(items_summary(info)))
        elif event == "generation":
            line = generation_line({**info, "seconds": time.monotonic() - t0})
            progress.console.print(escape(line), highlight=False)

    with progress:
        yield show

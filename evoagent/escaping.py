"""The one escaping rule for everything evoagent prints.

Text from a store, a task file, a recorded run or a remote server may hold
terminal controls (OSC 52 clipboard writes, OSC 8 links, CSI 2J, BEL, 8-bit
CSI U+009B) or bidirectional overrides that make a terminal show text in
another order than it is (U+202E). :func:`visible` shows every C0 control but
newline and tab, DEL and every C1 control as ``\\xNN``, and the bidirectional
embedding, override, isolate and mark characters as ``\\uNNNN``, so none
reaches a terminal raw.

It is enforced where output is written, not at each call site: the CLI wraps
``sys.stdout`` and ``sys.stderr`` in :class:`SafeStream` before parsing its
arguments (``click.echo``, warnings, tracebacks all go through it), and every
rich console is made by :func:`safe_console`, which applies the same rule to
the text of what rich renders while keeping rich's own controls (the live
progress bar). Data that must stay byte-exact (``evoagent sql --format
csv|json`` into a pipe or a file) is written to :func:`raw` on purpose, and
only when the stream is not a terminal. Light module: no heavy imports, it
loads on every command.
"""
from __future__ import annotations

import io
import re
import sys
from typing import Any, TextIO

_CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]")


def _escaped(m: re.Match[str]) -> str:
    code = ord(m.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def visible(text: Any) -> str:
    """``text`` with every control character but newline and tab shown as ``\\xNN`` (bidirectional
    controls as ``\\uNNNN``)."""
    return _CONTROL.sub(_escaped, str(text))


class SafeStream(io.TextIOBase):
    """A text stream that writes everything through :func:`visible` to the stream it wraps.

    It has no ``buffer``: click then writes text to it instead of reaching past it."""

    def __init__(self, stream: TextIO) -> None:
        self.raw_stream = stream

    def write(self, text: str) -> int:
        if not isinstance(text, str):
            raise TypeError(f"write() argument must be str, not {type(text).__name__}")
        self.raw_stream.write(visible(text))
        return len(text)

    def flush(self) -> None:
        self.raw_stream.flush()

    def isatty(self) -> bool:
        return self.raw_stream.isatty()

    def fileno(self) -> int:
        return self.raw_stream.fileno()

    def writable(self) -> bool:
        return True

    @property
    def encoding(self) -> str:  # type: ignore[override]
        return getattr(self.raw_stream, "encoding", None) or "utf-8"

    @property
    def errors(self) -> str | None:  # type: ignore[override]
        return getattr(self.raw_stream, "errors", None)


def install() -> None:
    """Route ``sys.stdout`` and ``sys.stderr`` through :class:`SafeStream` (once); characters the
    terminal's encoding lacks (e.g. a lone surrogate) come out as backslash escapes."""
    for name in ("stdout", "stderr"):
        stream = getattr(sys, name)
        if stream is None or isinstance(stream, SafeStream):
            continue
        if hasattr(stream, "reconfigure"):
            stream.reconfigure(errors="backslashreplace")
        setattr(sys, name, SafeStream(stream))


def raw(stream: TextIO) -> TextIO:
    """The stream a :class:`SafeStream` wraps: only for data that must stay byte-exact, never a terminal."""
    return stream.raw_stream if isinstance(stream, SafeStream) else stream


def safe_console(file: TextIO | None = None, **kwargs: Any) -> Any:
    """A rich console on ``file`` (default stdout) whose rendered text goes through :func:`visible`;
    rich's own styles and cursor controls are kept. No highlighting of values."""
    from rich.console import Console
    from rich.segment import Segment

    class _Console(Console):
        def _render_buffer(self, buffer: Any) -> str:
            return super()._render_buffer(s if s.control else Segment(visible(s.text), s.style, s.control)
                                          for s in buffer)

    kwargs.setdefault("highlight", False)
    return _Console(file=raw(file if file is not None else sys.stdout), **kwargs)

"""The log ring: the newest formatted log lines of this process, kept in memory for ``/debug/log``.

:class:`LogRing` holds at most ``capacity`` lines of at most ``max_line`` characters each, so its
size is bounded whatever is logged. A line is stored whole under one lock (text, level number and
time together), so a reader never sees half of one. The time is an argument of :meth:`append`
(a record's ``created``), never read from a clock here.

:class:`RingHandler` is the ``logging.Handler`` that formats records into a ring.
:func:`default_ring` is the process-wide ring and :func:`install_ring_handler` attaches a
handler feeding it to a logger, once.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from dataclasses import dataclass
from typing import Final

from skywire.debug.errors import DebugParamError

__all__ = [
    "DEFAULT_CAPACITY",
    "DEFAULT_FORMAT",
    "DEFAULT_MAX_LINE",
    "LogLine",
    "LogRing",
    "RingHandler",
    "default_ring",
    "install_ring_handler",
]

DEFAULT_CAPACITY: Final = 10_000
DEFAULT_MAX_LINE: Final = 4096
DEFAULT_FORMAT: Final = "%(asctime)s %(levelname)-5s %(name)s: %(message)s"
"""The format of the command-line tools' stderr log, so both read alike."""

MIN_MAX_LINE: Final = 64
"""The shortest ``max_line`` allowed: room for the cut marker and some text."""


def cut_marker(removed: int) -> str:
    """What replaces the end of a line that was too long."""
    return f" …[{removed} chars cut]"


@dataclass(frozen=True, slots=True)
class LogLine:
    """One stored line: its text (already cut to ``max_line``), level number and Unix time."""

    text: str
    level: int
    time: float


class LogRing:
    """A bounded, thread-safe ring of the newest log lines.

    ``capacity`` lines are kept; the oldest goes when a new one comes. A line longer than
    ``max_line`` characters is cut to at most ``max_line``, ending with ``…[N chars cut]``.
    """

    def __init__(self, capacity: int = DEFAULT_CAPACITY, max_line: int = DEFAULT_MAX_LINE) -> None:
        if capacity < 1:
            raise DebugParamError(f"ring capacity must be at least 1, not {capacity}")
        if max_line < MIN_MAX_LINE:
            raise DebugParamError(f"max_line must be at least {MIN_MAX_LINE}, not {max_line}")
        self.capacity: Final = capacity
        self.max_line: Final = max_line
        # plain tuples: LogLine objects are made only for readers, so a write stays cheap
        self._lines: deque[tuple[str, int, float]] = deque(maxlen=capacity)
        self._lock = threading.Lock()
        self._written = 0

    def __len__(self) -> int:
        with self._lock:
            return len(self._lines)

    @property
    def written(self) -> int:
        """Lines appended since the ring was made (kept or already dropped)."""
        with self._lock:
            return self._written

    def append(self, text: str, level: int, time: float) -> None:
        """Keep ``text`` (logged at ``level`` at Unix ``time``), dropping the oldest if full."""
        if len(text) > self.max_line:
            # the marker's length depends on the count it shows: sized for the longest count,
            # the result is at most max_line
            removed = len(text) - self.max_line + len(cut_marker(len(text)))
            text = text[: len(text) - removed] + cut_marker(removed)
        with self._lock:
            self._lines.append((text, level, time))
            self._written += 1

    def entries(self, n: int | None = None, level: int | None = None) -> list[LogLine]:
        """The newest ``n`` stored lines at or above ``level`` (all when None), oldest first."""
        return [LogLine(*line) for line in self._select(n, level)]

    def lines(self, n: int | None = None, level: int | None = None) -> list[str]:
        """The text of :meth:`entries`: the newest ``n`` lines at or above ``level``, oldest
        first."""
        return [line[0] for line in self._select(n, level)]

    def _select(self, n: int | None, level: int | None) -> list[tuple[str, int, float]]:
        if n is not None and n < 0:
            raise DebugParamError(f"the number of lines must not be negative, not {n}")
        with self._lock:
            kept = list(self._lines)
        if level is not None:
            kept = [line for line in kept if line[1] >= level]
        if n is not None:
            kept = kept[len(kept) - n :] if n else []
        return kept

    def clear(self) -> None:
        """Forget every stored line (the ``written`` count stays)."""
        with self._lock:
            self._lines.clear()


class RingHandler(logging.Handler):
    """A ``logging.Handler`` that formats each record with ``fmt`` and keeps it in ``ring``.

    The record's own level number and ``created`` time go with the line, so that ``/debug/log``
    filters by level. Safe from any thread: the ring has its own lock.
    """

    def __init__(
        self, ring: LogRing, fmt: str = DEFAULT_FORMAT, level: int = logging.NOTSET
    ) -> None:
        super().__init__(level)
        self.ring: Final = ring
        self.setFormatter(logging.Formatter(fmt))

    def emit(self, record: logging.LogRecord) -> None:
        try:
            text = self.format(record)
        except Exception:
            self.handleError(record)
            return
        self.ring.append(text, record.levelno, record.created)


_default_ring = LogRing()
_install_lock = threading.Lock()


def default_ring() -> LogRing:
    """The process-wide ring (``DEFAULT_CAPACITY`` lines of ``DEFAULT_MAX_LINE`` at most)."""
    return _default_ring


def install_ring_handler(
    logger: logging.Logger | None = None,
    level: int = logging.DEBUG,
    *,
    ring: LogRing | None = None,
    fmt: str = DEFAULT_FORMAT,
) -> RingHandler:
    """Attach a :class:`RingHandler` feeding ``ring`` (default: :func:`default_ring`) to
    ``logger`` (default: the root logger), once; a second call returns the same handler, its
    level set to ``level``.

    The handler sees what the logger lets through: the logger's own level is left alone, so
    installing this never changes what other handlers print.
    """
    target = logger if logger is not None else logging.getLogger()
    feeding = ring if ring is not None else _default_ring
    with _install_lock:
        for handler in target.handlers:
            if isinstance(handler, RingHandler) and handler.ring is feeding:
                handler.setLevel(level)
                return handler
        handler = RingHandler(feeding, fmt, level)
        target.addHandler(handler)
        return handler

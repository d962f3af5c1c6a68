"""What the dashboard's terminal and the hypervisor say over the terminal websocket: pure, no
I/O (the websocket itself is :mod:`.terminal_aio`'s).

``GET /api/visors/{pk}/pty?csrf=<token>&rows=<R>&cols=<C>`` upgrades to a websocket; ``rows``
and ``cols`` are the page's terminal in character cells, so the shell starts at that size.

* **page → hypervisor**: a *binary* frame is keystrokes, the bytes a terminal would send
  (Enter ``\\r``, Backspace ``\\x7f``, an arrow ``ESC [ A``…), written to the pty as they are; a
  *text* frame is a control message, JSON: ``{"type": "resize", "rows": R, "cols": C}``.
* **hypervisor → page**: one *text* frame ``{"type": "started", "rows": R, "cols": C}`` once
  the shell runs (until then the page says it is connecting), then *binary* frames, the
  shell's output as the pty wrote it. The end is the close frame: 1000 ``shell ended`` when
  the shell exits, 1011 with the reason when the visor's dmsgpty could not be reached or
  refused it, 1001 when the hypervisor stops, 1003 for a control message it does not
  understand.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from enum import IntEnum

from skywire.dmsg.pty.protocol import WinSize
from skywire.visor.hypervisor.errors import TerminalError

__all__ = [
    "DEFAULT_SIZE",
    "MAX_COLS",
    "MAX_REASON",
    "MAX_ROWS",
    "CloseCode",
    "Resize",
    "close_reason",
    "parse_control",
    "size_of",
    "started",
]

MAX_ROWS = 500
MAX_COLS = 1000
DEFAULT_SIZE = WinSize(24, 80)
MAX_REASON = 123
"""The longest close reason a websocket close frame carries, in bytes (RFC 6455 5.5)."""


class CloseCode(IntEnum):
    """The close codes the hypervisor ends a terminal with (RFC 6455 7.4.1)."""

    NORMAL = 1000
    GOING_AWAY = 1001
    UNSUPPORTED = 1003
    ERROR = 1011


@dataclass(frozen=True, slots=True)
class Resize:
    """The page's terminal is now ``size`` (rows × columns of character cells)."""

    size: WinSize


def _cells(value: object, name: str, top: int) -> int:
    if isinstance(value, str):
        value = value.strip()
        if not value.isdigit():
            raise TerminalError(f"{name} must be a whole number, not {value!r}")
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= top:
        raise TerminalError(f"{name} must be a whole number from 1 to {top}, not {value!r}")
    return value


def size_of(rows: object, cols: object) -> WinSize:
    """The size named by the request's ``rows`` and ``cols`` (both absent: 24 × 80)."""
    if rows is None and cols is None:
        return DEFAULT_SIZE
    return WinSize(_cells(rows, "rows", MAX_ROWS), _cells(cols, "cols", MAX_COLS))


def parse_control(text: str) -> Resize:
    """A text frame from the page; :class:`TerminalError` unless it is a resize."""
    try:
        doc = json.loads(text)
    except ValueError as exc:
        raise TerminalError(f"a control message is JSON ({exc})") from exc
    if not isinstance(doc, dict) or doc.get("type") != "resize":
        raise TerminalError('the only control message is {"type": "resize", "rows", "cols"}')
    return Resize(size_of(doc.get("rows"), doc.get("cols")))


def close_reason(text: str) -> bytes:
    """``text`` as a close frame's reason: UTF-8, cut to :data:`MAX_REASON` bytes on a
    character boundary."""
    data = text.encode()
    if len(data) <= MAX_REASON:
        return data
    return data[: MAX_REASON - 3].decode(errors="ignore").encode() + b"..."


def started(size: WinSize) -> str:
    """The text frame that tells the page its shell runs, at ``size``."""
    return json.dumps({"type": "started", "rows": size.rows, "cols": size.cols})

"""What goes over a skychat route, sans-I/O: a message out as bytes, bytes in as messages.

Upstream (skycoin/skywire, the mirror's HEAD 0e7420a, 2024-03) has **no framing**:

* ``cmd/apps/skychat/commands/skychat.go`` ``messageHandler``: the sender writes the message text
  raw, ``conn.Write([]byte(data["message"]))``, one write per message, nothing before or after.
* same file, ``handleConn``: the receiver reads into a fresh 32 KiB buffer and takes *one read*
  as *one message*, ``string(buf[:n])``; a JSON ``{"sender": <pk hex>, "message": <text>}`` goes
  to the web page (Go's ``json.Marshal`` turns invalid UTF-8 into U+FFFD).
* Why a read is a message there: one write of up to 4070 bytes is one Noise frame
  (``vendor/github.com/skycoin/dmsg/pkg/noise/read_writer.go``: ``maxFrameSize = 4096``,
  payload ``4096 - 2 - 24``; ``Read`` returns at most one frame's plaintext), and without Noise one
  write is one Data packet (``pkg/router/route_group.go`` ``write`` → ``routing.MakeDataPacket``;
  ``read`` hands out one packet's payload). A longer message reaches a Go reader as several.
* The upstream page (``cmd/apps/skychat/commands/static/index.html``) sends from a one-line
  ``<input type="text">`` and never sends an empty message; a zero-byte Go write sends nothing.

Ours keeps those bytes and adds one: a message goes out as its UTF-8 text **plus ``\\n``**, in one
write of at most 4070 bytes (so :data:`MAX_MESSAGE_BYTES` is 4069 and a message is one line).
A Go peer reads it in one read, as upstream does, and its page shows the text with a trailing
newline, which HTML collapses into nothing. The newline is needed because our route groups are
byte streams: reads do not keep write boundaries, so two messages that arrive before the reader
runs come out of one read.

:class:`MessageDecoder` reads both: every ``\\n`` ends a message (empty lines are skipped), and
what is left at the end of a read that did not fill the reader's buffer is a message too
(upstream's "a read is a message", for Go peers, who send no newline). Limits of that rule: two
Go messages that arrive together are shown as one; a Go message with a newline in it (the Go page
cannot type one) becomes several; a run of more than :data:`MAX_INCOMING` bytes without a newline
is cut into pieces of at most that size (upstream's 32 KiB read buffer), on a UTF-8 boundary.
"""

from __future__ import annotations

from typing import Final

from skywire.apps.skychat.errors import MessageError, MessageTooLongError
from skywire.wire.noise_frames import MAX_PLAINTEXT

__all__ = [
    "MAX_INCOMING",
    "MAX_MESSAGE_BYTES",
    "READ_SIZE",
    "TERMINATOR",
    "MessageDecoder",
    "check_message",
    "encode_message",
]

TERMINATOR: Final = b"\n"
MAX_MESSAGE_BYTES: Final = MAX_PLAINTEXT - len(TERMINATOR)
"""The longest message, in bytes of UTF-8: with its newline, one Noise frame (4070 bytes)."""
MAX_INCOMING: Final = 32 * 1024
"""The longest message taken in one piece (upstream ``handleConn`` reads 32 KiB at a time)."""
READ_SIZE: Final = 64 * 1024
"""What the shell asks of one read; a read this full may have stopped inside a message."""


def check_message(text: str) -> bytes:
    """The UTF-8 of a message that can be sent, or :class:`MessageError` saying why not
    (:class:`MessageTooLongError` past :data:`MAX_MESSAGE_BYTES`)."""
    if not text:
        raise MessageError("message is empty")
    if "\n" in text:
        raise MessageError("message must be one line (no newline)")
    try:
        raw = text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise MessageError(f"message is not valid text: {exc.reason}") from None
    if len(raw) > MAX_MESSAGE_BYTES:
        raise MessageTooLongError(len(raw), MAX_MESSAGE_BYTES)
    return raw


def encode_message(text: str) -> bytes:
    """The bytes of one message on the route: its UTF-8 and ``\\n``, written in one write."""
    return check_message(text) + TERMINATOR


def _decode(raw: bytes) -> str:
    return raw.decode("utf-8", "replace")


def _utf8_cut(buf: bytearray, limit: int) -> int:
    """Where to cut ``buf`` (longer than ``limit``) so that no character is split."""
    cut = limit
    # step back over continuation bytes (10xxxxxx), at most three of them
    while cut > limit - 3 and cut > 0 and buf[cut] & 0xC0 == 0x80:
        cut -= 1
    return cut if cut > 0 else limit


class MessageDecoder:
    """Bytes read from one route → messages (see the module docstring).

    ``receive_data(data, end_of_read=...)`` takes what one read returned; ``end_of_read`` is
    false when the read filled the shell's buffer (more of the same message may follow).
    ``end_of_stream()`` gives what is left once the route has ended. Never raises: any bytes
    are some text.
    """

    def __init__(self, max_message: int = MAX_INCOMING) -> None:
        if max_message < 4:
            raise ValueError("max_message must be at least 4 bytes (one UTF-8 character)")
        self.max_message = max_message
        self._buf = bytearray()

    @property
    def pending(self) -> int:
        """Bytes held, waiting for the rest of their message."""
        return len(self._buf)

    def receive_data(self, data: bytes, *, end_of_read: bool = True) -> list[str]:
        buf = self._buf
        buf += data
        out: list[str] = []
        start = 0
        while (end := buf.find(TERMINATOR, start)) >= 0:
            out.extend(self._pieces(buf[start:end]))
            start = end + 1
        del buf[:start]
        if end_of_read:
            out.extend(self._pieces(buf))
            buf.clear()
        else:
            while len(buf) > self.max_message:
                cut = _utf8_cut(buf, self.max_message)
                out.append(_decode(bytes(buf[:cut])))
                del buf[:cut]
        return out

    def end_of_stream(self) -> list[str]:
        out = self._pieces(self._buf)
        self._buf.clear()
        return out

    def _pieces(self, line: bytes | bytearray) -> list[str]:
        """One line as messages: none if empty, several if longer than ``max_message``."""
        rest = bytearray(line)
        out: list[str] = []
        while len(rest) > self.max_message:
            cut = _utf8_cut(rest, self.max_message)
            out.append(_decode(bytes(rest[:cut])))
            del rest[:cut]
        if rest:
            out.append(_decode(bytes(rest)))
        return out

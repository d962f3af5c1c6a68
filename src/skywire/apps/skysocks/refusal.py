"""The client's own SOCKS5 answer when it has no route to its server, sans-I/O.

The skysocks client only pipes bytes; the SOCKS5 conversation is the server's. When no route
comes within the wait, though, a browser should hear *why* instead of a bare close, so the
client plays the server just far enough to refuse: it answers the greeting (no authentication
if offered, else username/password), takes any login without checking it (it cannot: the
credentials are the server's), and answers the request with ``reply`` (general failure, 0x01;
an unknown address type gets 0x08, as the server would answer). Upstream's client has no such
answer: when its route breaks it closes the listener and the app exits
(``internal/skysocks/client.go`` ``sessionKeepAliveLoop`` / ``close``).

Bytes go in with :meth:`Socks5Refusal.receive_data`, which returns the events they complete;
bytes to send come out of :meth:`Socks5Refusal.data_to_send`. Bad bytes raise
:class:`~skywire.proxy.errors.Socks5Error` and leave the core as it was (the shell closes).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from skywire.proxy.errors import ReplyCode, Socks5Error
from skywire.proxy.socks5 import (
    AUTH_NO_ACCEPTABLE,
    AUTH_NONE,
    AUTH_USERPASS,
    AddressType,
    AuthReceived,
    GreetingReceived,
    encode_reply,
)

__all__ = ["RefusalEvent", "RefusalState", "RequestRefused", "Socks5Refusal"]

VERSION = 5
LOGIN_VERSION = 1


class RefusalState(enum.Enum):
    GREETING = "greeting"
    AUTH = "auth"
    REQUEST = "request"
    DONE = "done"  # the last answer is queued; the shell writes it and closes


@dataclass(frozen=True, slots=True)
class RequestRefused:
    command: int
    reply: ReplyCode


RefusalEvent = GreetingReceived | AuthReceived | RequestRefused


class Socks5Refusal:
    """One SOCKS5 conversation, answered with a failure (see the module docstring)."""

    def __init__(self, reply: ReplyCode = ReplyCode.GENERAL_FAILURE) -> None:
        if reply is ReplyCode.SUCCEEDED:
            raise ValueError("a refusal cannot succeed")
        self.reply = reply
        self.state = RefusalState.GREETING
        self._buf = b""
        self._out = bytearray()

    @property
    def done(self) -> bool:
        return self.state is RefusalState.DONE

    def data_to_send(self) -> bytes:
        out, self._out = bytes(self._out), bytearray()
        return out

    def receive_data(self, data: bytes) -> list[RefusalEvent]:
        """Feed bytes from the local client; returns the events they complete."""
        buf = self._buf + bytes(data)
        state = self.state
        events: list[RefusalEvent] = []
        out = bytearray()
        while state is not RefusalState.DONE:
            if state is RefusalState.GREETING:
                greeting = _greeting(buf)
                if greeting is None:
                    break
                methods, used = greeting
                chosen = _choose(methods)
                out += bytes([VERSION, chosen])
                events.append(GreetingReceived(methods, chosen))
                buf = buf[used:]
                if chosen == AUTH_NO_ACCEPTABLE:
                    state = RefusalState.DONE
                else:
                    state = RefusalState.AUTH if chosen == AUTH_USERPASS else RefusalState.REQUEST
            elif state is RefusalState.AUTH:
                login = _login(buf)
                if login is None:
                    break
                user, used = login
                out += bytes([LOGIN_VERSION, 0])
                events.append(AuthReceived(user, True))
                buf = buf[used:]
                state = RefusalState.REQUEST
            else:
                request = _request(buf)
                if request is None:
                    break
                command, atyp_known, used = request
                code = self.reply if atyp_known else ReplyCode.ADDRESS_TYPE_NOT_SUPPORTED
                out += encode_reply(code)
                events.append(RequestRefused(command, code))
                buf = buf[used:]
                state = RefusalState.DONE
        self._buf = b"" if state is RefusalState.DONE else buf
        self.state = state
        self._out += out
        return events


def _choose(methods: tuple[int, ...]) -> int:
    if AUTH_NONE in methods:
        return AUTH_NONE
    return AUTH_USERPASS if AUTH_USERPASS in methods else AUTH_NO_ACCEPTABLE


def _greeting(buf: bytes) -> tuple[tuple[int, ...], int] | None:
    if len(buf) < 2:
        return None
    if buf[0] != VERSION:
        raise Socks5Error(f"not SOCKS5: version byte {buf[0]}")
    n = buf[1]
    if n == 0:
        raise Socks5Error("greeting offers no authentication method")
    if len(buf) < 2 + n:
        return None
    return tuple(buf[2 : 2 + n]), 2 + n


def _login(buf: bytes) -> tuple[str, int] | None:
    if len(buf) < 2:
        return None
    if buf[0] != LOGIN_VERSION:
        raise Socks5Error(f"username/password version {buf[0]} (want 1)")
    ulen = buf[1]
    if len(buf) < 3 + ulen:
        return None
    end = 3 + ulen + buf[2 + ulen]
    if len(buf) < end:
        return None
    return buf[2 : 2 + ulen].decode("utf-8", "replace"), end


def _request(buf: bytes) -> tuple[int, bool, int] | None:
    """``(command, address type known, bytes used)`` once the whole request is in."""
    if len(buf) < 4:
        return None
    if buf[0] != VERSION:
        raise Socks5Error(f"request version byte {buf[0]} (want 5)")
    command, atyp = buf[1], buf[3]
    if atyp == AddressType.IPV4:
        end = 4 + 4 + 2
    elif atyp == AddressType.IPV6:
        end = 4 + 16 + 2
    elif atyp == AddressType.DOMAIN:
        if len(buf) < 5:
            return None
        end = 5 + buf[4] + 2
    else:
        return command, False, 4  # nothing after an unknown type can be parsed
    if len(buf) < end:
        return None
    return command, True, end

"""The dashboard's terminal: a websocket on the page, a shell on the visor (upstream's
``/pty/{pk}``), over the messages of :mod:`.terminal`.

**Which shell.** A managed visor's is reached as ``skywire cli dmsgpty start`` reaches it: the
hypervisor's own dmsg client dials the visor's dmsgpty host (dmsg port 22) and speaks
dmsgpty's RPC (:class:`~skywire.dmsg.pty.PtyClient`). The visor's host serves only the keys on
its whitelist; a visor adds the keys in its ``hypervisors`` to it at start, as upstream's does,
so its hypervisor is let in and nobody new. The hypervisor's own visor is not dialed: its shell
runs in this process on a :class:`~skywire.dmsg.pty.LocalPty` made as its dmsgpty host makes
one (same shell, environment and kill grace).

**Who may.** The route is under ``/api``, so the dashboard's gate already wants the session
cookie (401). A websocket cannot carry the ``X-CSRF-Token`` header and the browser does not
stop a cross-site one, so the handler also wants a fresh CSRF token in the ``csrf`` query
parameter and an ``Origin`` that is the page's own (403), all before the upgrade.

**How long.** The shell starts with the page's size; keystrokes and output are copied both
ways by two tasks of one task group, and the first to end ends the other: the shell exiting
closes the websocket (1000), the websocket closing stops the shell (its host hangs it up and
reaps it). When the dashboard stops, every open terminal is closed (1001) from its
``on_shutdown``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from aiohttp import WSMsgType, web

from skywire.cipher import PubKey
from skywire.dmsg.errors import DmsgError
from skywire.dmsg.pty import (
    DEFAULT_PORT,
    PtyBackend,
    PtyClient,
    PtyEOFError,
    PtyError,
    PtyNotRunningError,
    PtyRejectedError,
    WinSize,
)
from skywire.visor.hypervisor.api_visors import visor_pk
from skywire.visor.hypervisor.errors import BadRequestError, HypervisorError, TerminalError
from skywire.visor.hypervisor.link import VisorLink
from skywire.visor.hypervisor.terminal import (
    CloseCode,
    close_reason,
    parse_control,
    size_of,
    started,
)
from skywire.wire.errors import WireError
from skywire.wire.stream import ByteStream
from skywire.wire.tasks import Leave, leaving

__all__ = ["ClosablePty", "PtyOpener", "Terminals", "add_terminal_route"]

log = logging.getLogger(__name__)

READ_SIZE = 32 * 1024
OPEN_TIMEOUT = 20.0
OPEN_ERRORS = (PtyError, DmsgError, WireError, OSError, TimeoutError, HypervisorError)


class ClosablePty(PtyBackend, Protocol):
    """A pty the terminal drives and then closes (:class:`~skywire.dmsg.pty.LocalPty`,
    :class:`~skywire.dmsg.pty.PtyClient`)."""

    async def close(self) -> None: ...


class Dial(Protocol):
    async def __call__(self, pk: PubKey, port: int) -> ByteStream: ...


class Directory(Protocol):
    def get(self, pk: PubKey) -> VisorLink: ...


class PtyOpener:
    """A new pty on a visor: ``own`` for the hypervisor's own visor, a dmsg dial to
    ``pk:port`` for any other."""

    def __init__(
        self,
        own_pk: PubKey,
        dial: Dial,
        own: Callable[[], ClosablePty],
        *,
        port: int = DEFAULT_PORT,
        timeout: float = OPEN_TIMEOUT,
    ) -> None:
        self.own_pk = own_pk
        self._dial = dial
        self._own = own
        self.port = port
        self.timeout = timeout

    async def open(self, pk: PubKey) -> ClosablePty:
        if pk == self.own_pk:
            return self._own()
        try:
            async with asyncio.timeout(self.timeout):
                stream = await self._dial(pk, self.port)
                return await PtyClient.connect(stream)
        except PtyRejectedError as exc:
            raise PtyRejectedError(
                f"visor {pk.hex()[:8]}… refused the shell: is this hypervisor in its hypervisors?"
            ) from exc


@dataclass
class _End:
    """How a terminal ended: the first side to end says it."""

    code: CloseCode = CloseCode.NORMAL
    reason: str = ""

    def once(self, code: CloseCode, reason: str) -> None:
        if not self.reason:
            self.code, self.reason = code, reason


async def _output(ws: web.WebSocketResponse, pty: ClosablePty, end: _End) -> None:
    try:
        while True:
            data = await pty.read(READ_SIZE)
            await ws.send_bytes(data)
    except (PtyEOFError, PtyNotRunningError):
        end.once(CloseCode.NORMAL, "shell ended")
    except PtyError as exc:
        end.once(CloseCode.ERROR, f"the shell's pty failed: {exc}")
    except ConnectionError:
        end.once(CloseCode.NORMAL, "the page went away")
    raise Leave


async def _input(ws: web.WebSocketResponse, pty: ClosablePty, end: _End) -> None:
    try:
        async for msg in ws:
            if msg.type is WSMsgType.BINARY:
                await pty.write(msg.data)
            elif msg.type is WSMsgType.TEXT:
                await pty.set_size(parse_control(msg.data).size)
    except TerminalError as exc:
        end.once(CloseCode.UNSUPPORTED, str(exc))
    except (PtyEOFError, PtyNotRunningError):
        end.once(CloseCode.NORMAL, "shell ended")
    except PtyError as exc:
        end.once(CloseCode.ERROR, f"the shell's pty failed: {exc}")
    end.once(CloseCode.NORMAL, "closed by the page")
    raise Leave


async def bridge(ws: web.WebSocketResponse, pty: ClosablePty) -> _End:
    """Copy keystrokes to ``pty`` and its output to ``ws`` until either ends."""
    end = _End()
    async with leaving() as tg:
        tg.create_task(_output(ws, pty, end), name="terminal output")
        tg.create_task(_input(ws, pty, end), name="terminal input")
    return end


class Terminals:
    """The dashboard's open terminals. ``await handle(request, pk, size)`` serves one websocket
    (upgraded here) until it ends; :meth:`shutdown` closes every one still open."""

    def __init__(self, opener: PtyOpener) -> None:
        self.opener = opener
        self._open: set[web.WebSocketResponse] = set()
        self.opened = 0

    @property
    def live(self) -> int:
        return len(self._open)

    async def handle(self, request: web.Request, pk: PubKey, size: WinSize) -> web.StreamResponse:
        ws = web.WebSocketResponse(max_msg_size=1 << 20)
        if not ws.can_prepare(request).ok:
            raise BadRequestError("this route is a websocket (Upgrade: websocket)")
        await ws.prepare(request)
        self._open.add(ws)
        self.opened += 1
        try:
            end = await self._serve(ws, pk, size)
        finally:
            self._open.discard(ws)
        await ws.close(code=end.code, message=close_reason(end.reason))
        log.info("hypervisor: terminal on %s closed (%s)", pk, end.reason)
        return ws

    async def _serve(self, ws: web.WebSocketResponse, pk: PubKey, size: WinSize) -> _End:
        try:
            pty = await self.opener.open(pk)
        except OPEN_ERRORS as exc:
            log.info("hypervisor: no terminal on %s: %r", pk, exc)
            return _End(CloseCode.ERROR, str(exc) or type(exc).__name__)
        try:
            await pty.start("", (), size)  # no command: the host's shell
            await ws.send_str(started(size))
            log.info("hypervisor: terminal on %s opened (%dx%d)", pk, size.cols, size.rows)
            return await bridge(ws, pty)
        except PtyError as exc:
            return _End(CloseCode.ERROR, f"the shell did not start: {exc}")
        except ConnectionError:
            return _End(CloseCode.NORMAL, "the page went away")
        finally:
            await pty.close()

    async def shutdown(self, _: web.Application | None = None) -> None:
        for ws in list(self._open):
            with contextlib.suppress(ConnectionError):
                await ws.close(
                    code=CloseCode.GOING_AWAY, message=close_reason("the hypervisor is stopping")
                )


def add_terminal_route(
    app: web.Application,
    terminals: Terminals,
    directory: Directory,
    check: Callable[[web.Request], None],
) -> None:
    """``GET /api/visors/{pk}/pty``: ``check`` (the CSRF token and origin, raising 403) runs
    before anything else; a visor that is not connected is 404, a bad size 400."""

    async def terminal(request: web.Request) -> web.StreamResponse:
        pk = visor_pk(request)
        check(request)
        directory.get(pk)
        size = size_of(request.query.get("rows"), request.query.get("cols"))
        return await terminals.handle(request, pk, size)

    app.router.add_get("/api/visors/{pk}/pty", terminal)
    app.on_shutdown.append(terminals.shutdown)

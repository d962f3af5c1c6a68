"""The dashboard's terminal (``GET /api/visors/{pk}/pty``) through a real websocket client, on
three visors over real dmsg: visor 0 is the hypervisor, visors 1 and 2 name it.

Refused before the upgrade without the session (401), without the CSRF token in the URL, with
another session's token, or from another origin or none (403); nothing starts then. With all
three: a shell on a managed visor (reached over dmsg by its dmsgpty host, which lets its
hypervisor in) and on the hypervisor's own visor runs what is typed, takes a resize, and ends
when the websocket closes: its process is gone. A shell that exits closes the websocket; a
visor whose host does not let the hypervisor in closes it with the reason. The page's message
rules are checked without a socket.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import time
from pathlib import Path

import aiohttp
import pytest

from skywire.cipher import SecKey
from skywire.dmsg.pty import WinSize
from skywire.visor.config import VisorConfig
from skywire.visor.hypervisor.errors import TerminalError
from skywire.visor.hypervisor.terminal import (
    DEFAULT_SIZE,
    MAX_REASON,
    Resize,
    close_reason,
    parse_control,
    size_of,
)
from skywire.visor.visor import Visor
from tests.conftest import no_leaked_tasks
from tests.integration.test_hypervisor import (
    PASSWORD,
    browserless,
    csrf,
    hypervisor_net,
    linked,
    log_in,
)

pytestmark = pytest.mark.timeout(120)

WAIT = 20.0
BINARY, TEXT = aiohttp.WSMsgType.BINARY, aiohttp.WSMsgType.TEXT


def preset(i: int, cfg: VisorConfig) -> None:
    if i == 0:
        cfg.hypervisor.password = PASSWORD


def pty_url(base: str, pk: str, **query: str) -> str:
    q = "&".join(f"{k}={v}" for k, v in query.items())
    return f"{base}/api/visors/{pk}/pty" + (f"?{q}" if q else "")


async def token(http: aiohttp.ClientSession, url: str) -> str:
    return (await csrf(http, url))["X-CSRF-Token"]


async def refused(
    http: aiohttp.ClientSession, url: str, origin: str | None = None
) -> tuple[int, str]:
    """The status (and error) of a websocket handshake that must fail."""
    with pytest.raises(aiohttp.WSServerHandshakeError) as caught:
        async with http.ws_connect(url, origin=origin):
            pass
    status = caught.value.status
    async with http.get(url, headers={"Origin": origin} if origin else {}) as resp:
        assert resp.status == status
        return status, (await resp.json())["error"]


async def read_until(ws: aiohttp.ClientWebSocketResponse, pattern: str) -> re.Match[str]:
    seen = ""
    async with asyncio.timeout(WAIT):
        while (found := re.search(pattern, seen)) is None:
            msg = await ws.receive()
            if msg.type is aiohttp.WSMsgType.TEXT:  # the shell started
                continue
            assert msg.type is aiohttp.WSMsgType.BINARY, (msg, seen)
            seen += msg.data.decode(errors="replace")
    return found


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


async def gone(pid: int) -> None:
    """Until process ``pid`` has ended and been reaped (a bounded poll of another process)."""
    deadline = time.monotonic() + WAIT
    while alive(pid):
        assert time.monotonic() < deadline, f"shell {pid} still runs"
        await asyncio.sleep(0.02)


def test_the_page_messages() -> None:
    assert size_of(None, None) == DEFAULT_SIZE
    assert size_of("33", "101") == WinSize(33, 101)
    for rows, cols in (("0", "80"), ("24", "x"), ("24", None), ("-1", "80"), ("24", "1001")):
        with pytest.raises(TerminalError):
            size_of(rows, cols)
    assert parse_control('{"type": "resize", "rows": 40, "cols": 120}') == Resize(WinSize(40, 120))
    for bad in ("nope", "[]", '{"type": "other"}', '{"type": "resize", "rows": true, "cols": 2}'):
        with pytest.raises(TerminalError):
            parse_control(bad)
    assert close_reason("shell ended") == b"shell ended"
    long = close_reason("é" * 100)
    assert len(long) <= MAX_REASON and long.endswith(b"...") and long[:-3].decode() == "é" * 60


async def test_the_terminal_is_refused_without_session_token_or_origin(tmp_path: Path) -> None:
    async with (
        no_leaked_tasks(),
        hypervisor_net(tmp_path, configure=preset) as sky,
        browserless() as http,
    ):
        hv, v1, _ = sky.visors
        assert hv.hypervisor is not None and v1.pty_host is not None
        url, v1_hex = hv.hypervisor.url, v1.pk.hex()
        await linked(hv, {v.pk.hex() for v in sky.visors})

        # no session: 401, with or without a token
        assert (await refused(http, pty_url(url, v1_hex), url))[0] == 401
        bare = await token(http, url)
        assert (await refused(http, pty_url(url, v1_hex, csrf=bare), url))[0] == 401

        assert await log_in(http, url) == 200
        good = await token(http, url)
        # no token, a forged one, one issued before the login (to no session): 403
        status, error = await refused(http, pty_url(url, v1_hex), url)
        assert status == 403 and "csrf query parameter" in error
        for wrong in ("x.y", bare):
            status, error = await refused(http, pty_url(url, v1_hex, csrf=wrong), url)
            assert status == 403 and "invalid CSRF token" in error
        # another session's token
        async with browserless() as other:
            assert await log_in(other, url) == 200
            foreign = await token(other, url)
        status, error = await refused(http, pty_url(url, v1_hex, csrf=foreign), url)
        assert status == 403 and "invalid CSRF token" in error
        # the right token from another origin, or with no origin at all
        status, error = await refused(http, pty_url(url, v1_hex, csrf=good), "http://evil.example")
        assert status == 403 and "cross-origin" in error
        status, error = await refused(http, pty_url(url, v1_hex, csrf=good))
        assert status == 403 and "without an Origin" in error
        # all three, but a visor that is not connected, or a size out of range
        nobody = SecKey.generate().pubkey().hex()
        assert (await refused(http, pty_url(url, nobody, csrf=good), url))[0] == 404
        status, error = await refused(http, pty_url(url, v1_hex, csrf=good, rows="0"), url)
        assert status == 400 and "rows" in error
        # nothing was opened, no shell started
        assert hv.hypervisor.terminals.opened == 0 and v1.pty_host.shells_started == 0


async def test_a_shell_on_a_managed_visor_and_on_the_hypervisor(tmp_path: Path) -> None:
    async with (
        no_leaked_tasks(),
        hypervisor_net(tmp_path, configure=preset) as sky,
        browserless() as http,
    ):
        hv, v1, v2 = sky.visors
        assert hv.hypervisor is not None
        assert v1.pty_host is not None and v2.pty_host is not None
        url = hv.hypervisor.url
        await linked(hv, {v.pk.hex() for v in sky.visors})
        assert await log_in(http, url) == 200

        async def session(visor: Visor) -> None:
            query = {"csrf": await token(http, url), "rows": "24", "cols": "80"}
            async with http.ws_connect(pty_url(url, visor.pk.hex(), **query), origin=url) as ws:
                first = await ws.receive(timeout=WAIT)
                assert first.type is aiohttp.WSMsgType.TEXT, first
                assert json.loads(first.data) == {"type": "started", "rows": 24, "cols": 80}
                await ws.send_bytes(b"echo pid-$$\r")
                pid = int((await read_until(ws, r"pid-(\d+)")).group(1))
                assert alive(pid)
                await ws.send_bytes(b"stty size\r")
                await read_until(ws, r"\b24 80\b")
                await ws.send_bytes(b"echo web-$((6*7))\r")
                await read_until(ws, "web-42")
                await ws.send_str(json.dumps({"type": "resize", "rows": 33, "cols": 101}))
                await ws.send_bytes(b"stty size\r")
                await read_until(ws, r"\b33 101\b")
            # the websocket closed: the shell is hung up and reaped
            await gone(pid)

        # a managed visor's shell, through its dmsgpty host (which lets its hypervisor in)
        await session(v1)
        assert v1.pty_host.shells_started == 1
        # the hypervisor's own visor: a shell in its own process
        await session(hv)
        assert hv.hypervisor.terminals.opened == 2

        # a shell that exits closes the websocket, with the reason
        query = {"csrf": await token(http, url)}
        async with http.ws_connect(pty_url(url, v2.pk.hex(), **query), origin=url) as ws:
            await ws.send_bytes(b"exit\r")
            async with asyncio.timeout(WAIT):
                while (msg := await ws.receive()).type in (BINARY, TEXT):
                    pass
            assert msg.type is aiohttp.WSMsgType.CLOSE, msg
            assert (msg.data, msg.extra) == (1000, "shell ended")

        # a visor whose dmsgpty host does not let the hypervisor in: closed with the reason
        v2.pty_host.whitelist.remove(hv.pk)
        query = {"csrf": await token(http, url)}
        async with http.ws_connect(pty_url(url, v2.pk.hex(), **query), origin=url) as ws:
            msg = await ws.receive(timeout=WAIT)
            assert msg.type is aiohttp.WSMsgType.CLOSE and msg.data == 1011, msg
            assert "refused the shell" in msg.extra
        assert v2.pty_host.shells_started == 1 and v2.pty_host.rejected >= 1

        # a terminal left open when the hypervisor stops is closed by it (going away)
        query = {"csrf": await token(http, url)}
        async with http.ws_connect(pty_url(url, v1.pk.hex(), **query), origin=url) as ws:
            await ws.send_bytes(b"echo pid-$$\r")
            pid = int((await read_until(ws, r"pid-(\d+)")).group(1))
            await hv.hypervisor.close()
            async with asyncio.timeout(WAIT):
                while (msg := await ws.receive()).type in (BINARY, TEXT):
                    pass
            assert msg.type is aiohttp.WSMsgType.CLOSE and msg.data == 1001, msg
        await gone(pid)

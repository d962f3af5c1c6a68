"""``/debug/*`` over real dmsg: a whitelisted key reads the log, tasks, heap and a CPU profile
of the serving process; any other key, or a plain TCP caller, gets 403; bad parameters, 400."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import secrets
import tracemalloc
from collections.abc import AsyncIterator
from dataclasses import dataclass

import aiohttp
import pytest
from aiohttp import web

from skywire.debug import (
    LogRing,
    RingHandler,
    default_ring,
    install_ring_handler,
    mount_debug,
    whitelist_gate,
)
from skywire.dmsg.client import Client
from skywire.dmsg.http import HTTPServer, fetch
from skywire.testnet.dmsgnet import LocalDmsgNetwork
from tests.conftest import no_leaked_tasks
from tests.unit.test_debug_profile import parse_folded

pytestmark = pytest.mark.timeout(60)

ROUTES = ["/debug/", "/debug/log", "/debug/tasks", "/debug/profile?seconds=1", "/debug/memory"]


@dataclass
class DebugNet:
    net: LocalDmsgNetwork
    host: Client  # serves the app with /debug mounted on dmsg port 80
    friend: Client  # on the whitelist
    stranger: Client  # not on it
    ring: LogRing
    logger: logging.Logger
    tcp_url: str  # the same app on plain TCP

    async def get(self, path: str, client: Client | None = None) -> tuple[int, str, dict[str, str]]:
        caller = client if client is not None else self.friend
        resp = await fetch(caller.dial, f"dmsg://{self.host.pk.hex()}:80{path}")
        return resp.status_code, resp.text, dict(resp.headers)


@contextlib.asynccontextmanager
async def debug_net(*, process_ring: bool = False) -> AsyncIterator[DebugNet]:
    """A dmsg network where ``host`` serves an app with ``/debug`` mounted (whitelist: only
    ``friend``) on dmsg port 80 and on TCP. The test logger feeds a ring of its own; with
    ``process_ring``, ``mount_debug`` is given no ring and uses the process-wide one, fed from
    the root logger (whose ring handler is taken off again at the end)."""
    root = logging.getLogger()
    root_before = list(root.handlers)
    async with LocalDmsgNetwork(servers=1) as net:
        host, friend, stranger = await net.client(), await net.client(), await net.client()
        logger = logging.getLogger(f"skywire.test.debug.{secrets.token_hex(4)}")
        logger.setLevel(logging.DEBUG)
        ring = default_ring() if process_ring else LogRing(capacity=1000)
        handler = None if process_ring else install_ring_handler(logger, ring=ring)
        app = web.Application()
        mount_debug(app, allowed=whitelist_gate([friend.pk]), ring=None if process_ring else ring)
        runner = web.AppRunner(app)
        await runner.setup()
        try:
            site = web.TCPSite(runner, "127.0.0.1", 0)
            await site.start()
            tcp_host, tcp_port = runner.addresses[0][:2]
            async with HTTPServer(runner, await host.listen(80)):
                yield DebugNet(
                    net, host, friend, stranger, ring, logger, f"http://{tcp_host}:{tcp_port}"
                )
        finally:
            if handler is not None:
                logger.removeHandler(handler)
            for added in set(root.handlers) - set(root_before):
                root.removeHandler(added)
            await runner.cleanup()


async def parked_for_the_debug_dump(gate: asyncio.Event) -> None:
    await gate.wait()


def allocate_for_the_debug_heap() -> list[bytes]:
    return [os.urandom(512) for _ in range(4000)]


async def test_a_whitelisted_key_reads_the_log() -> None:
    async with debug_net() as d:
        token = secrets.token_hex(8)
        d.logger.info("an info line before the marker")
        d.logger.warning("debug-marker %s", token)
        status, text, headers = await d.get("/debug/log")
        assert status == 200, text
        assert headers["content-type"].startswith("text/plain")
        assert f"WARNING {d.logger.name}: debug-marker {token}" in text
        assert "an info line before the marker" in text
        # the newest line only
        status, text, _ = await d.get("/debug/log?lines=1")
        assert text.splitlines() == [d.ring.lines(1)[0]]
        assert text.endswith(f"debug-marker {token}\n")
        # warnings and up: the info line is filtered out
        status, text, _ = await d.get("/debug/log?level=WARNING&lines=500")
        assert f"debug-marker {token}" in text and "an info line" not in text
        status, text, _ = await d.get("/debug/log?level=error")
        assert status == 200 and token not in text


async def test_the_default_ring_is_fed_from_the_root_logger() -> None:
    def ring_handlers() -> list[logging.Handler]:
        return [h for h in logging.getLogger().handlers if isinstance(h, RingHandler)]

    before = ring_handlers()  # an earlier test's visor may have installed the process's one
    async with debug_net(process_ring=True) as d:  # mount_debug without a ring
        assert d.ring is default_ring()
        assert any(
            isinstance(h, RingHandler) and h.ring is default_ring()
            for h in logging.getLogger().handlers
        )
        token = secrets.token_hex(8)
        logging.getLogger("skywire.test.debug.root").error("root-marker %s", token)
        status, text, _ = await d.get("/debug/log?lines=20")
        assert status == 200 and f"root-marker {token}" in text
    assert ring_handlers() == before


async def test_a_whitelisted_key_sees_a_running_task() -> None:
    async with debug_net() as d:
        gate = asyncio.Event()
        name = f"debug-probe-{secrets.token_hex(4)}"
        task = asyncio.create_task(parked_for_the_debug_dump(gate), name=name)
        try:
            status, text, _ = await d.get("/debug/tasks")
            assert status == 200, text
            assert f"task {name!r} pending, age " in text
            assert "parked_for_the_debug_dump (" in text and "await gate.wait()" in text
            # the dmsghttp server's own tasks are there too
            assert "dmsghttp-accept" in text
            status, text, headers = await d.get("/debug/tasks?format=json&depth=3")
            assert status == 200 and headers["content-type"].startswith("application/json")
            doc = json.loads(text)
            (entry,) = [t for t in doc["tasks"] if t["name"] == name]
            assert entry["state"] == "pending"
            assert entry["stack"][0]["function"] == "parked_for_the_debug_dump"
            assert len(entry["stack"]) <= 3
            assert doc["task_clock"] is True  # installed when the app started
            # created after the app started, so its age is from its creation
            assert entry["age_exact"] is True
        finally:
            gate.set()
            await task


async def test_a_whitelisted_key_traces_the_heap() -> None:
    depth = tracemalloc.get_traceback_limit() if tracemalloc.is_tracing() else 0
    tracemalloc.stop()  # the route starts it itself; tracing already on is put back below
    async with no_leaked_tasks(), debug_net() as d:
        try:
            status, text, _ = await d.get("/debug/memory")
            assert status == 200 and "not tracing" in text
            status, text, _ = await d.get("/debug/memory?start=1")
            assert status == 200 and text.startswith("tracemalloc started"), text
            held = allocate_for_the_debug_heap()
            status, text, _ = await d.get("/debug/memory?top=50")
            assert status == 200 and text.startswith("tracemalloc: tracing 1 frame"), text
            line = allocate_for_the_debug_heap.__code__.co_firstlineno + 1
            assert f"test_debug_http.py:{line}: " in text, text
            status, text, _ = await d.get("/debug/memory?stop=1&top=5")
            assert status == 200 and text.startswith("tracemalloc stopped; the last view:")
            assert not tracemalloc.is_tracing()
            del held
        finally:
            tracemalloc.stop()
            if depth:
                tracemalloc.start(depth)


async def test_another_key_is_forbidden_everywhere() -> None:
    async with debug_net() as d:
        for path in [*ROUTES, "/debug/log?lines=0"]:  # the gate comes before the parameters
            status, text, _ = await d.get(path, d.stranger)
            assert status == 403, (path, text)
            assert text == f"forbidden: {d.stranger.pk.hex()} is not on the survey whitelist\n"


async def test_a_plain_tcp_caller_is_forbidden() -> None:
    async with debug_net() as d, aiohttp.ClientSession() as http:
        for path in ROUTES:
            async with http.get(d.tcp_url + path) as resp:
                text = await resp.text()
            assert resp.status == 403, (path, text)
            assert text == "forbidden: a caller without a dmsg key is not on the survey whitelist\n"


BAD = [
    ("/debug/log?lines=0", "lines must be from 1 to"),
    ("/debug/log?lines=ten", "lines must be a whole number, not 'ten'"),
    ("/debug/log?level=loud", "unknown level 'loud'"),
    ("/debug/log?colour=red", "unknown parameter 'colour': /debug/log takes level, lines"),
    ("/debug/tasks?format=xml", "format must be text or json, not 'xml'"),
    ("/debug/tasks?depth=0", "depth must be from 1 to 200, not 0"),
    ("/debug/profile?seconds=0", "seconds must be more than 0 and at most 60"),
    ("/debug/profile?seconds=61", "seconds must be more than 0 and at most 60"),
    ("/debug/profile?seconds=nan", "seconds must be more than 0 and at most 60"),
    ("/debug/profile?seconds=soon", "seconds must be a number of seconds, not 'soon'"),
    ("/debug/profile?seconds=1&hz=0", "hz must be from 1 to 1000, not 0"),
    ("/debug/memory?start=1&stop=1", "start and stop together"),
    ("/debug/memory?start=maybe", "start must be 1 or 0, not 'maybe'"),
    ("/debug/memory?frames=5", "frames goes with start=1"),
    ("/debug/memory?top=0", "top must be from 1 to 1000, not 0"),
    ("/debug/?x=1", "unknown parameter 'x': /debug/ takes no parameters"),
]


async def test_bad_parameters_get_400_with_the_reason() -> None:
    async with debug_net() as d:
        for path, reason in BAD:
            status, text, _ = await d.get(path)
            assert status == 400, (path, status, text)
            assert reason in text, (path, text)
        assert not tracemalloc.is_tracing()


async def test_profile_of_a_relayed_transfer_names_the_noise_and_yamux_code() -> None:
    async with no_leaked_tasks(), debug_net() as d:
        a, b = d.stranger, await d.net.client()  # a relay transfer a -> server -> b
        listener = await b.listen(9)
        dialed = asyncio.ensure_future(a.dial(b.pk, 9))
        accepted = await listener.accept()
        stream = await dialed
        done = asyncio.Event()
        block = os.urandom(64 * 1024)
        moved = 0

        async def send() -> None:
            while not done.is_set():
                await stream.write(block)

        async def receive() -> None:
            nonlocal moved
            while not done.is_set():
                moved += len(await accepted.read(65536))

        transfer = [asyncio.create_task(send()), asyncio.create_task(receive())]
        try:
            status, folded, headers = await d.get("/debug/profile?seconds=1")
        finally:
            done.set()
            for t in transfer:
                t.cancel()
            await asyncio.gather(*transfer, return_exceptions=True)
            await stream.close()
            await accepted.close()
            await listener.close()
        assert status == 200, folded
        assert headers["content-disposition"] == "attachment; filename=profile.folded"
        assert moved > 0  # data flowed through the relay while the profile was taken
        stacks = parse_folded(folded)
        samples: dict[str, int] = {}  # "function (file" -> samples with it on the stack
        for frames, n in stacks:
            for name in {frame.rsplit(":", 1)[0] for frame in frames}:
                samples[name] = samples.get(name, 0) + n
        # the hot code of a relayed stream: Noise sealing and opening, under yamux sessions
        assert "TransportCipher.seal_frames (skywire/wire/noise_frames.py" in samples, folded
        assert "FrameOpener._open (skywire/wire/noise_frames.py" in samples, folded
        assert any(name.endswith("(skywire/wire/yamux_aio.py") for name in samples), folded

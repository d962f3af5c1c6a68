"""Every deployment service on dmsg port 80 with ``/debug/*`` for the survey whitelist (upstream
skywire PR 3043), over a real local dmsg network: TPD, AR, RF, setup node and dmsg discovery,
each built as its command builds it; and ``skywire svc tpd`` without a key, as a process."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import secrets
import signal
import sys
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass

import aiohttp
import pytest

from skywire.cipher import PubKey, SecKey
from skywire.cli.dmsg_disc import discovery_serving
from skywire.cli.svc_dmsgport import optional_dmsg_port, serve_app
from skywire.cli.svc_rsn import setup_node_on_dmsg
from skywire.dmsg.client import Client
from skywire.dmsg.http import fetch
from skywire.services.appserver import AppServer
from skywire.services.ar.api import ARServer
from skywire.services.ar.store.memory import MemoryStore as ARMemoryStore
from skywire.services.dmsgdisc.api import API_PREFIX
from skywire.services.dmsgport import DmsgPort, DmsgPortConfig
from skywire.services.rf.api import RouteFinder
from skywire.services.rf.api import make_app as rf_app
from skywire.services.rf.source import HttpTransportSource
from skywire.services.tpd.api import make_app as tpd_app
from skywire.services.tpd.store.memory import MemoryStore as TPDMemoryStore
from skywire.testnet.dmsgnet import LocalDmsgNetwork
from tests.conftest import no_leaked_tasks

pytestmark = pytest.mark.timeout(90)
SKYWIRE = [sys.executable, "-m", "skywire.cli"]


@dataclass
class Callers:
    net: LocalDmsgNetwork
    friend: Client  # on the survey whitelist
    stranger: Client  # not on it

    def config(self, *, whitelist: frozenset[PubKey] | None = None) -> DmsgPortConfig:
        """A service key on this network, the friend alone on its whitelist by default."""
        keys = frozenset({self.friend.pk}) if whitelist is None else whitelist
        return DmsgPortConfig(
            SecKey.generate(), self.net.disc_url, keys, backoff=self.net.client_backoff
        )


@contextlib.contextmanager
def root_handlers_restored() -> Iterator[None]:
    """``mount_debug`` feeds the process ring from the root logger: take that handler off again
    so that other tests see the root logger as they left it."""
    root = logging.getLogger()
    before = list(root.handlers)
    try:
        yield
    finally:
        for added in set(root.handlers) - set(before):
            root.removeHandler(added)


@contextlib.asynccontextmanager
async def callers() -> AsyncIterator[Callers]:
    with root_handlers_restored():
        async with no_leaked_tasks(), LocalDmsgNetwork(servers=1) as net:
            yield Callers(net, await net.client(), await net.client())


async def get(client: Client, pk: PubKey, path: str) -> tuple[int, str]:
    resp = await fetch(client.dial, f"dmsg://{pk.hex()}:80{path}")
    return resp.status_code, resp.text


async def parked(gate: asyncio.Event) -> None:
    await gate.wait()


async def check_debug(c: Callers, pk: PubKey) -> None:
    """The friend reads a running task and a fresh log line from ``/debug``; the stranger is
    refused both."""
    gate = asyncio.Event()
    name = f"dmsgport-probe-{secrets.token_hex(4)}"
    task = asyncio.create_task(parked(gate), name=name)
    try:
        status, text = await get(c.friend, pk, "/debug/tasks")
        assert status == 200, text
        assert f"task {name!r} pending" in text
    finally:
        gate.set()
        await task
    token = secrets.token_hex(8)
    logging.getLogger("skywire.test.dmsgport").warning("dmsgport-marker %s", token)
    status, text = await get(c.friend, pk, "/debug/log")
    assert status == 200, text
    assert f"WARNING skywire.test.dmsgport: dmsgport-marker {token}" in text
    for path in ("/debug/tasks", "/debug/log", "/debug/"):
        status, text = await get(c.stranger, pk, path)
        assert status == 403, (path, text)
        assert c.stranger.pk.hex() in text


async def check_health(c: Callers, pk: PubKey) -> None:
    """``/health`` is public: both callers read it over dmsg."""
    for caller in (c.friend, c.stranger):
        status, text = await get(caller, pk, "/health")
        assert status == 200, text
        assert "build_info" in json.loads(text)


async def tcp_status(url: str) -> int:
    async with aiohttp.ClientSession() as http, http.get(url) as resp:
        return resp.status


async def test_tpd_serves_its_api_and_debug_on_dmsg_port_80() -> None:
    async with callers() as c:
        config = c.config()
        store = TPDMemoryStore()
        async with store, serve_app(tpd_app(store), "127.0.0.1", 0, config) as (server, port):
            assert port is not None and port.pk == config.pk
            await port.ready()
            await check_health(c, port.pk)
            status, text = await get(c.friend, port.pk, "/all-transports")
            assert status == 200 and json.loads(text) == []
            await check_debug(c, port.pk)
            # the same app on TCP: /debug is there, but a TCP caller has no dmsg key
            assert await tcp_status(f"{server.url}/debug/tasks") == 403
            assert await tcp_status(f"{server.url}/health") == 200
        # everything the port started is gone: the key is free for a client again
        assert config.pk not in Client._active


async def test_ar_serves_its_api_and_debug_on_dmsg_port_80() -> None:
    async with callers() as c:
        config = c.config()
        store = ARMemoryStore()
        server = ARServer(
            store, "127.0.0.1", 0, 0, test_mode=True, survey_whitelist=config.survey_whitelist
        )
        async with store, server, optional_dmsg_port(config, server.runner) as port:
            assert port is not None
            await port.ready()
            await check_health(c, port.pk)
            status, text = await get(c.friend, port.pk, "/transports")
            assert status == 200, text
            await check_debug(c, port.pk)
            assert await tcp_status(f"{server.url}/debug/log") == 403


async def test_rf_serves_its_api_and_debug_on_dmsg_port_80() -> None:
    async with callers() as c:
        config = c.config()
        store = TPDMemoryStore()
        async with store, AppServer(app=tpd_app(store)) as tpd:
            source = HttpTransportSource(tpd.url)
            finder = RouteFinder(source, refresh_interval=60.0)
            try:
                async with serve_app(rf_app(finder), "127.0.0.1", 0, config) as (_, port):
                    assert port is not None
                    await port.ready()
                    await check_health(c, port.pk)
                    await check_debug(c, port.pk)
            finally:
                await source.close()


async def test_setup_node_serves_stats_and_debug_on_dmsg_port_80() -> None:
    async with callers() as c:
        config = c.config()
        async with setup_node_on_dmsg(config, request_timeout=5.0) as (node, port):
            assert node.pk == config.pk
            await check_health(c, port.pk)
            status, text = await get(c.friend, port.pk, "/stats")
            assert status == 200 and isinstance(json.loads(text), dict)
            await check_debug(c, port.pk)


async def test_dmsg_discovery_serves_its_api_and_debug_on_dmsg_port_80() -> None:
    async with callers() as c:
        sk = SecKey.generate()
        assert c.net.store is not None  # the network's store: the servers' entries are in it
        serving = discovery_serving(
            c.net.store,
            "127.0.0.1",
            0,
            sk=sk,
            survey_whitelist={c.friend.pk},
            backoff=c.net.client_backoff,
            test_mode=True,
        )
        async with serving as (_, port):
            assert port is not None and port.pk == sk.pubkey()
            assert port.config.min_sessions == 0  # a session with every server
            await port.ready()
            await check_health(c, port.pk)
            status, text = await get(c.stranger, port.pk, f"{API_PREFIX}/entry/{c.friend.pk.hex()}")
            assert status == 200, text
            assert json.loads(text)["static"] == c.friend.pk.hex()
            await check_debug(c, port.pk)


async def test_an_empty_whitelist_refuses_everybody() -> None:
    async with callers() as c:
        store = TPDMemoryStore()
        app = tpd_app(store)
        config = c.config(whitelist=frozenset())
        async with store, serve_app(app, "127.0.0.1", 0, config) as (_, port):
            assert port is not None
            await port.ready()
            for caller in (c.friend, c.stranger):
                status, _ = await get(caller, port.pk, "/debug/tasks")
                assert status == 403
            await check_health(c, port.pk)


async def test_the_setup_node_shape_client_first_app_later() -> None:
    """Without an app the port runs only the client; ``serve`` adds the app once."""
    async with callers() as c:
        config = c.config()
        store = TPDMemoryStore()
        async with store, DmsgPort(config) as port:
            assert not port.serving
            await port.ready()
            await port.serve(tpd_app(store))
            assert port.serving
            with pytest.raises(RuntimeError, match="already serving"):
                await port.serve(tpd_app(store))
            await check_health(c, port.pk)
            status, _ = await get(c.friend, port.pk, "/debug/tasks")
            assert status == 404  # no with_debug: no routes
        await port.close()  # twice is harmless


# -- the command --------------------------------------------------------------------------------


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "SKYWIRE_SK"}
    return {**env, "PYTHONUNBUFFERED": "1", "COLUMNS": "200"}


async def test_svc_tpd_without_a_key_says_the_dmsg_port_is_off() -> None:
    proc = await asyncio.create_subprocess_exec(
        *SKYWIRE,
        "svc",
        "tpd",
        "--addr",
        "127.0.0.1:0",
        "--store",
        "memory",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=_env(),
    )
    try:
        assert proc.stdout is not None
        line = (await asyncio.wait_for(proc.stdout.readline(), 30)).decode()
        assert "transport discovery listening on 127.0.0.1:" in line, line
        port = int(line.split("127.0.0.1:")[1].split()[0])
        off = (await asyncio.wait_for(proc.stdout.readline(), 30)).decode()
        assert off.startswith("dmsg port off (no --sk)") and "/debug is not served" in off, off
        assert await tcp_status(f"http://127.0.0.1:{port}/health") == 200
        assert await tcp_status(f"http://127.0.0.1:{port}/debug/tasks") == 404
        proc.send_signal(signal.SIGINT)
        rc = await asyncio.wait_for(proc.wait(), 30)
        assert rc == 0
        assert "shutting down" in (await proc.stdout.read()).decode()
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--sk", "not-hex"], "--sk"),
        (["--survey-whitelist", "zz"], "--survey-whitelist"),
        (["--sk", SecKey.generate().hex(), "--dmsg-disc", ""], "dmsg discovery URL"),
    ],
)
async def test_svc_tpd_refuses_bad_dmsg_options(args: list[str], message: str) -> None:
    proc = await asyncio.create_subprocess_exec(
        *SKYWIRE,
        "svc",
        "tpd",
        "--addr",
        "127.0.0.1:0",
        "--store",
        "memory",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=_env(),
    )
    out, err = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 2, (out, err)
    assert message in err.decode()

"""A relay server on two worker processes (``skywire dmsg server start --workers 2``): 32
clients' sessions are spread over both workers by the kernel, and a stream between any two of
them (same worker or not) carries bytes both ways; stopping the parent stops every worker."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import sys
from pathlib import Path

import aiohttp
import pytest

from skywire.cipher import SecKey
from skywire.dmsg.disc_errors import DiscError
from skywire.dmsg.server import ServerConfig
from skywire.testnet.dmsgnet import LocalDmsgNetwork
from tests.integration.test_launcher import children_of_me

pytestmark = pytest.mark.timeout(120)

CLIENTS = 32


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def health(port: int) -> dict[str, object]:
    async with aiohttp.ClientSession() as http, http.get(f"http://127.0.0.1:{port}/health") as r:
        doc = await r.json(content_type=None)
        assert isinstance(doc, dict)
        return doc


async def test_two_workers_relay_streams_across_each_other(tmp_path: Path) -> None:
    port, health_port = free_port(), free_port()
    async with LocalDmsgNetwork(servers=0) as net:
        sk = SecKey.generate()
        cfg = ServerConfig(
            public_key=sk.pubkey(),
            secret_key=sk,
            discovery=net.disc_url,
            public_address=f"127.0.0.1:{port}",
            local_address=f"127.0.0.1:{port}",
            health_endpoint_address=f"127.0.0.1:{health_port}",
        )
        path = tmp_path / "server.json"
        path.write_text(cfg.to_json())
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "skywire.cli", "dmsg", "server", "start", str(path),
            "--workers", "2", "--limit-ip", "0", "--log-level", "warning",
            stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        try:
            # up once worker 0 advertises the server in discovery
            disc = net.disc_client()
            async with asyncio.timeout(60):
                while True:
                    with contextlib.suppress(DiscError):
                        if await disc.available_servers():
                            break
                    await asyncio.sleep(0.1)  # another process starting
            clients = [await net.client() for _ in range(CLIENTS)]
            on_first = int(str((await health(health_port))["sessions"]))
            # the kernel spread the sessions over both workers
            assert 0 < on_first < CLIENTS, on_first

            listeners = [await c.listen(7000) for c in clients]

            async def echo(i: int) -> None:
                stream = await listeners[i].accept()
                while data := await stream.read(65536):
                    await stream.write(data)
                await stream.close()

            async def talk(i: int) -> bytes:
                peer = clients[(i + 1) % CLIENTS]
                stream = await clients[i].dial(peer.pk, 7000)
                payload = os.urandom(1000 + i) * 64
                await stream.write(payload)
                got = await stream.readexactly(len(payload))
                await stream.close()
                return got if got == payload else b""

            async with asyncio.TaskGroup() as tg:
                for i in range(CLIENTS):
                    tg.create_task(echo(i))
                results = await asyncio.gather(*(talk(i) for i in range(CLIENTS)))
            assert all(results)
            doc = await health(health_port)
            assert json.dumps(doc)  # still answering after the traffic
            for c in clients:
                await c.close()
        finally:
            if proc.returncode is None:
                proc.send_signal(signal.SIGTERM)
            await proc.wait()
    assert proc.returncode == 0
    assert children_of_me() == []

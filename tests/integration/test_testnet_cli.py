"""The main job and the dmsg command-line tools, as a user runs them."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import sqlite3
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from aiohttp import web

from skywire.dmsg.http import HTTPServer, add_static
from skywire.dmsg.server import ServerConfig
from skywire.testnet.dmsgnet import LocalDmsgNetwork
from skywire.testnet.run import run_local_network
from tests.integration.test_launcher import children_of_me

pytestmark = pytest.mark.timeout(120)
SKYWIRE = [sys.executable, "-m", "skywire.cli"]


def alive(pids: list[int]) -> list[int]:
    return [pid for pid in pids if Path(f"/proc/{pid}").exists()]


async def test_main_job_fetches_through_the_local_network(tmp_path: Path) -> None:
    lines: list[str] = []
    stop = asyncio.Event()

    def say(line: str) -> None:
        lines.append(line)
        if line == "press Ctrl-C to stop":
            stop.set()  # as Ctrl-C would, once the network says it is up

    report = await run_local_network(tmp_path, size=3 << 20, disc_port=0, stop=stop, say=say)
    # every part was its own process, and none is left
    parts = [line.split()[0] for line in lines if " up, pid " in line]
    assert sorted(parts) == sorted(
        ["disc", "relay-0", "relay-1", "tpd", "ar", "sd", "ut", "rf", "sn", "site"]
        + [f"visor-{i}" for i in range(5)]  # visor 4 joins last, autoconnecting
    )
    assert children_of_me() == []
    pids = [int(line.split()[-1]) for line in lines if " up, pid " in line]
    pids += [int(line.rstrip(")").split()[-1]) for line in lines if line.startswith("app ")]
    assert len(pids) == 15 + 4 and alive(pids) == []  # the parts, and the visors' apps
    assert (tmp_path / "logs" / "visor-0.log").stat().st_size > 0
    assert report.sha256_ok and report.file_bytes == 3 << 20
    assert report.route_ok
    assert report.names_ok  # the demo site through the proxies, by all five kinds of names
    assert report.apps_ok  # skysocks across 2 hops, and a skychat message between two pages
    assert report.autoconnect_ok  # visor 4 made its own transports to the 3 public visors
    assert any(line.startswith("skysocks ") and " ok " in line for line in lines)
    kinds = ["bare", "vhost", "pinned server", "vhost + pinned server", "source-routed skynet"]
    for kind in kinds:
        assert any(line.split() == [*kind.split(), "ok"] for line in lines), kind
    assert (tmp_path / "dmsg-discovery.db").exists()
    assert (tmp_path / "transport-discovery.db").exists()
    with contextlib.closing(sqlite3.connect(tmp_path / "uptime-tracker.db")) as db:
        assert db.execute("SELECT COUNT(*) FROM ut_visors").fetchone() == (5,)  # heartbeats
    assert any(line.startswith("through the route") for line in lines)
    assert any(line.startswith("fetched") for line in lines)
    assert sum(line.startswith("dmsg server") for line in lines) == 2


def test_server_config_gen_round_trips(tmp_path: Path) -> None:
    out = tmp_path / "dmsg-config.json"
    subprocess.run([*SKYWIRE, "dmsg", "server", "config", "gen", "-o", str(out)], check=True)
    doc = json.loads(out.read_text())
    assert set(doc) >= {"public_key", "secret_key", "discovery", "public_address", "max_sessions"}
    cfg = ServerConfig.load(out)
    assert cfg.secret_key.pubkey() == cfg.public_key
    bad = tmp_path / "bad.json"
    bad.write_text('{"secret_key": "00"}')
    proc = subprocess.run([*SKYWIRE, "dmsg", "server", "start", str(bad)], capture_output=True)
    assert proc.returncode == 2 and b"invalid dmsg server configuration" in proc.stderr


class _NetworkThread:
    """A local dmsg network with a file server, run by its own event loop in a thread."""

    def __init__(self, www: Path) -> None:
        self.www = www
        self.ready = threading.Event()
        self.loop = asyncio.new_event_loop()
        self.stop: asyncio.Event | None = None
        self.disc_url = ""
        self.host_pk = ""
        self.thread = threading.Thread(target=self.loop.run_until_complete, args=(self._main(),))

    async def _main(self) -> None:
        self.stop = asyncio.Event()
        async with LocalDmsgNetwork(servers=1) as net:
            host = await net.client()
            app = web.Application()
            add_static(app.router, "/", self.www)
            async with HTTPServer(app, await host.listen(80)):
                self.disc_url, self.host_pk = net.disc_url, host.pk.hex()
                self.ready.set()
                await self.stop.wait()

    def __enter__(self) -> _NetworkThread:
        self.thread.start()
        assert self.ready.wait(30)
        return self

    def __exit__(self, *exc: object) -> None:
        assert self.stop is not None
        self.loop.call_soon_threadsafe(self.stop.set)
        self.thread.join(30)
        self.loop.close()


@pytest.fixture
def network(tmp_path: Path) -> Iterator[_NetworkThread]:
    www = tmp_path / "www"
    www.mkdir()
    (www / "hello.txt").write_bytes(b"hello over dmsg\n")
    (www / "big.bin").write_bytes(bytes(range(256)) * 8192)
    with _NetworkThread(www) as net:
        yield net


def test_curl_fetches_and_reports_http_errors(network: _NetworkThread, tmp_path: Path) -> None:
    base = f"dmsg://{network.host_pk}:80"
    proc = subprocess.run(
        [*SKYWIRE, "dmsg", "curl", "-q", "--disc", network.disc_url, f"{base}/hello.txt"],
        capture_output=True,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == b"hello over dmsg\n"
    out = tmp_path / "big.bin"
    proc = subprocess.run(
        [*SKYWIRE, "dmsg", "curl", "--disc", network.disc_url, "-o", str(out), f"{base}/big.bin"],
        capture_output=True,
    )
    assert proc.returncode == 0, proc.stderr
    want = hashlib.sha256(bytes(range(256)) * 8192).hexdigest()
    assert hashlib.sha256(out.read_bytes()).hexdigest() == want
    assert b"200 OK" in proc.stderr
    proc = subprocess.run(
        [*SKYWIRE, "dmsg", "curl", "-q", "--disc", network.disc_url, f"{base}/missing"],
        capture_output=True,
    )
    assert proc.returncode == 22
    proc = subprocess.run(
        [*SKYWIRE, "dmsg", "curl", "-q", "--disc", network.disc_url, "dmsg://nothex:80/"],
        capture_output=True,
    )
    assert proc.returncode == 2


async def test_runs_of_one_state_folder_keep_their_keys_and_refuse_a_second_copy(
    tmp_path: Path,
) -> None:
    from skywire.visor.statelock import PortInUseError, StateLock, StateLockedError

    def visors(lines: list[str]) -> list[str]:
        return [line.split()[2] for line in lines if line.startswith("visor ")]

    first: list[str] = []
    await run_local_network(tmp_path, size=1 << 20, disc_port=0, once=True, say=first.append)
    second: list[str] = []
    await run_local_network(tmp_path, size=1 << 20, disc_port=0, once=True, say=second.append)
    assert len(visors(first)) == 4 and visors(first) == visors(second)
    assert all(" control 127.0.0.1:" in line for line in first if line.startswith("visor "))
    setup = [line for line in first if line.startswith("route setup node")]
    assert setup == [line for line in second if line.startswith("route setup node")]

    # a second copy while one runs: refused before it writes anything
    other = tmp_path / "other"
    with StateLock(other, "testnet.lock"), pytest.raises(StateLockedError):
        await run_local_network(other, size=1 << 20, disc_port=0, once=True, say=first.append)
    assert not (other / "www").exists()
    # and one whose ports are taken, likewise
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(PortInUseError, match=f"port 127.0.0.1:{port} is in use"):
            await run_local_network(other, size=1 << 20, disc_port=port, once=True)
    assert not (other / "www").exists()

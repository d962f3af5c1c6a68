"""Visors of a LocalSkywire send signed heartbeats to its uptime tracker (a short interval set
in their config), ``skywire cli ut`` finds the visor's key and tracker through its control API,
and a visor whose tracker is away starts all the same and logs the outage once."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import sys

import pytest

from skywire.services.ut import UTClient
from skywire.testnet.dmsgnet import LocalDmsgNetwork
from skywire.testnet.parts import free_port
from skywire.testnet.skynet import LocalSkywire
from skywire.visor.config import UptimeTrackerConfig, VisorConfig
from tests.conftest import no_leaked_tasks

pytestmark = pytest.mark.timeout(120)


def every_50ms(_: int, cfg: VisorConfig) -> None:
    cfg.uptime_tracker = UptimeTrackerConfig.model_validate(
        {"addr": cfg.uptime_tracker.addr, "interval": "50ms"}
    )


async def cli_ut(*args: str) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "skywire.cli", "cli", "ut", *args,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "COLUMNS": "80"},
    )  # fmt: skip
    out, err = await proc.communicate()
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def test_a_visor_reports_its_uptime_and_the_cli_reads_it() -> None:
    async with (
        no_leaked_tasks(),
        LocalDmsgNetwork(servers=1) as dnet,
        LocalSkywire(dnet, visors=2, configure=every_50ms) as sky,
    ):
        assert sky.ut is not None
        a, b = sky.visors
        assert a.uptime is not None and b.uptime is not None
        assert a.uptime.interval == 0.05
        await asyncio.wait_for(a.uptime.wait_sent(4), 20)
        await asyncio.wait_for(b.uptime.wait_sent(1), 20)
        async with UTClient(sky.ut.url) as client:
            listed = await client.uptimes()
            mine = await client.uptime(a.pk)
        assert sorted(e["pk"] for e in listed) == sorted([a.pk.hex(), b.pk.hex()])
        assert all(e["on"] and e["version"] == a.cfg.version for e in listed)
        assert mine["up"] > 0  # three gaps of about 50 ms at least
        assert a.info()["uptime_tracker"] == sky.ut.url

        assert a.rpc is not None
        code, out, err = await cli_ut("--rpc", f"127.0.0.1:{a.rpc.port}", "--json")
        assert code == 0, err
        found = json.loads(out)
        assert found["pk"] == a.pk.hex() and found["on"] is True and found["up"] > 0
        code, out, err = await cli_ut("--rpc", f"127.0.0.1:{a.rpc.port}")
        assert code == 0, err
        assert f"visor {a.pk.hex()}" in out and f"tracker {sky.ut.url}" in out
        assert max(len(line) for line in out.splitlines()) <= 80

        before = {t for t in asyncio.all_tasks() if t.get_name() == "uptime heartbeats"}
        await a.close()  # the heartbeats end with the visor (b's go on)
        after = {t for t in asyncio.all_tasks() if t.get_name() == "uptime heartbeats"}
        assert len(before) == 4 and len(after) == 2  # a tree's root and its one child, each


async def test_a_visor_without_its_tracker_starts_and_logs_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="skywire.visor.uptime")
    async with LocalDmsgNetwork(servers=1) as dnet, LocalSkywire(dnet, visors=0) as sky:
        gone = f"http://127.0.0.1:{free_port()}"  # nobody listens there

        def away(i: int, cfg: VisorConfig) -> None:
            every_50ms(i, cfg)
            cfg.uptime_tracker.addr = gone

        sky.configure = away
        visor = await sky.add_visor()
        assert visor.uptime is not None
        await asyncio.wait_for(visor.uptime.wait_failed(3), 20)
        assert visor.uptime.sent == 0 and visor.uptime.reachable is False
        warnings = [r for r in caplog.records if "heartbeat failed" in r.getMessage()]
        assert len(warnings) == 1
        code, _, err = await cli_ut("--rpc", f"127.0.0.1:{visor.rpc.port if visor.rpc else 0}")
        assert code == 1 and gone in err

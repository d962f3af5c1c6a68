"""The visor's log server on dmsg port 80: ``/health`` for anyone, ``/node-info`` and
``/visor.log`` for hypervisors, the dmsgpty whitelist and the survey whitelist, ``/debug/*`` for
the survey whitelist only; the log file is the one the visor writes, also after a rotation."""

from __future__ import annotations

import asyncio
import logging
import sys
import uuid
from pathlib import Path

import pytest

from skywire.cipher import SecKey
from skywire.dmsg.http import fetch
from skywire.testnet.dmsgnet import LocalDmsgNetwork
from skywire.visor.visor import Visor
from tests.integration.test_visor import _cfg

pytestmark = pytest.mark.timeout(60)


async def test_log_server_serves_whitelisted_keys_and_refuses_others(tmp_path: Path) -> None:
    async with LocalDmsgNetwork(servers=1) as net:
        hypervisor, surveyor, pty, stranger = [await net.client() for _ in range(4)]
        cfg = _cfg(net.disc_url)
        cfg.local_path = str(tmp_path / "local")
        cfg.hypervisors = [hypervisor.pk]
        cfg.survey_whitelist = [surveyor.pk]
        cfg.dmsgpty.whitelist = [pty.pk]
        async with Visor(cfg, log_file=True) as v:
            await v.ready()
            base = f"dmsg://{v.pk.hex()}:80"
            mark = f"log-server-mark-{uuid.uuid4()}"
            logging.getLogger("skywire.visor.test").warning("%s before", mark)

            health = await fetch(stranger.dial, f"{base}/health")
            assert health.status_code == 200 and "started_at" in health.json()

            for reader in (hypervisor, surveyor, pty):
                info = await fetch(reader.dial, f"{base}/node-info")
                assert info.status_code == 200 and info.json()["pk"] == v.pk.hex()
                got = await fetch(reader.dial, f"{base}/visor.log")
                assert got.status_code == 200 and f"{mark} before" in got.text
            for path in ("/node-info", "/visor.log", "/debug/log", "/debug/tasks"):
                refused = await fetch(stranger.dial, f"{base}{path}")
                assert refused.status_code == 403, path
                assert str(stranger.pk) in refused.text

            # /debug/* is for the survey whitelist only
            assert (await fetch(hypervisor.dial, f"{base}/debug/log")).status_code == 403
            ring = await fetch(surveyor.dial, f"{base}/debug/log?lines=500")
            assert ring.status_code == 200 and f"{mark} before" in ring.text

            # a rotation: the current file has what was written since, ?rotated=1 has both
            assert v.log_file is not None
            v.log_file.rotate()
            logging.getLogger("skywire.visor.test").warning("%s after", mark)
            now = (await fetch(surveyor.dial, f"{base}/visor.log")).text
            assert f"{mark} after" in now and f"{mark} before" not in now
            both = (await fetch(surveyor.dial, f"{base}/visor.log?rotated=1")).text
            assert both.index(f"{mark} before") < both.index(f"{mark} after")
            assert (tmp_path / "local" / "log" / "skywire.log.1").is_file()
        # the visor's handler is gone with it: nothing more is written
        size = (tmp_path / "local" / "log" / "skywire.log").stat().st_size
        logging.getLogger("skywire.visor.test").warning("after the visor closed")
        assert (tmp_path / "local" / "log" / "skywire.log").stat().st_size == size


async def test_a_visor_without_a_log_file_says_so() -> None:
    async with LocalDmsgNetwork(servers=1) as net:
        surveyor = await net.client()
        cfg = _cfg(net.disc_url)
        cfg.survey_whitelist = [surveyor.pk]
        async with Visor(cfg) as v:
            await v.ready()
            got = await fetch(surveyor.dial, f"dmsg://{v.pk.hex()}:80/visor.log")
            assert got.status_code == 404 and "no log file" in got.text


async def _cli(*args: str) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "skywire.cli",
        "cli",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await proc.communicate()
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def test_cli_log_and_debug_tasks_use_the_callers_key() -> None:
    async with LocalDmsgNetwork(servers=1) as net:
        surveyor, stranger = SecKey.generate(), SecKey.generate()
        cfg = _cfg(net.disc_url)
        cfg.survey_whitelist = [surveyor.pubkey()]
        async with Visor(cfg) as v:
            await v.ready()
            mark = f"cli-log-mark-{uuid.uuid4()}"
            logging.getLogger("skywire.visor.test").warning(mark)
            parked = asyncio.Event()
            waiter = asyncio.create_task(parked.wait(), name=f"parked-{mark}")
            try:
                common = ["--disc", net.disc_url, "--timeout", "20"]
                code, out, _ = await _cli("log", v.pk.hex(), "--sk", surveyor.hex(), *common)
                assert code == 0 and mark in out
                code, out, _ = await _cli(
                    "debug", "tasks", v.pk.hex(), "--sk", surveyor.hex(), *common
                )
                assert code == 0 and f"parked-{mark}" in out
                code, out, err = await _cli("log", v.pk.hex(), "--sk", stranger.hex(), *common)
                assert code == 3 and "refused" in err and str(stranger.pubkey()) in err
                assert mark not in out
            finally:
                parked.set()
                await waiter

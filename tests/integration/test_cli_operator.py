"""The operator commands through the real ``skywire`` command, on real visors: ``visor ver``,
``ports``, ``ping``, ``halt``, ``tp disc``, ``route trace``, and ``-h`` / ``--version`` /
completion at the root."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path

import pytest

from skywire import __version__
from skywire.cipher import SecKey
from skywire.testnet.dmsgnet import LocalDmsgNetwork
from skywire.testnet.skynet import LocalSkywire

pytestmark = pytest.mark.timeout(120)


async def skywire(*args: str, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "skywire.cli",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, **(env or {})},
    )
    out, err = await proc.communicate()
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def cli_json(*args: str) -> object:
    code, out, err = await skywire("cli", *args, "--json")
    assert code == 0, err
    return json.loads(out)


async def test_operator_commands_on_a_row_of_visors() -> None:
    async with LocalDmsgNetwork(servers=1) as dnet, LocalSkywire(dnet, visors=3) as sky:
        a, b, c = sky.visors
        await sky.chain("stcpr")
        assert a.rpc is not None
        rpc = ["--rpc", f"127.0.0.1:{a.rpc.port}"]

        assert await cli_json("visor", "ver", *rpc) == {"visor": __version__, "cli": __version__}
        code, out, _ = await skywire("cli", "visor", "ver", "-o", "json", *rpc)  # upstream's form
        assert code == 0 and json.loads(out) == {"visor": __version__, "cli": __version__}

        ports = await cli_json("visor", "ports", *rpc)
        assert isinstance(ports, list)
        seen = {(p["kind"], p["what"]) for p in ports}
        assert ("tcp", "control API") in seen
        assert ("dmsg", "dmsgctrl") in seen and ("skynet", "route echo") in seen
        assert ("tcp", "stcpr transports") in seen
        assert any(p["what"] == "control API" and int(p["port"]) == a.rpc.port for p in ports)

        pong = await cli_json("visor", "ping", c.pk.hex(), "-c", "2", *rpc)
        assert isinstance(pong, dict) and pong["pk"] == c.pk.hex() and len(pong["rtt_ms"]) == 2

        # transport discovery, asked by the visor's own key (default) and by one ID
        listed = await cli_json("visor", "tp", "disc", *rpc)
        assert isinstance(listed, list) and len(listed) == 1
        assert sorted(listed[0]["edges"]) == sorted([a.pk.hex(), b.pk.hex()])
        one = await cli_json("visor", "tp", "disc", "--id", listed[0]["id"], *rpc)
        assert isinstance(one, list) and len(one) == 1
        assert {k: v for k, v in one[0].items() if k != "latency_ms"} == {
            k: v for k, v in listed[0].items() if k != "latency_ms"
        }  # the latency is measured again meanwhile
        code, table, _ = await skywire("cli", "visor", "tp", "disc", *rpc)
        assert code == 0 and a.pk.hex()[:8] + "…" in table and listed[0]["id"][:8] in table
        # tables fit 80 columns with short keys; --full shows them whole
        for args in (["visor", "tp", "ls"], ["route", "ls"], ["visor", "tp", "disc"]):
            code, table, _ = await skywire("cli", *args, *rpc, env={"COLUMNS": "80"})
            assert code == 0 and all(len(line) <= 80 for line in table.splitlines()), table
        code, table, _ = await skywire("cli", "visor", "tp", "ls", "--full", *rpc,
                                       env={"COLUMNS": "200"})  # fmt: skip
        assert code == 0 and b.pk.hex() in table

        trace = await cli_json("route", "trace", c.pk.hex(), *rpc)
        assert isinstance(trace, list)
        assert [h["pk"] for h in trace] == [b.pk.hex(), c.pk.hex()]
        assert all(isinstance(h["rtt_ms"], float) and h["error"] is None for h in trace)

        # a rule by hand: added, listed, removed
        tp_id = listed[0]["id"]
        code, out, err = await skywire(
            "cli", "route", "add-rule", "intfwd", "4242", "77", tp_id, "--keep-alive", "60", *rpc
        )
        assert code == 0 and "rule 4242 saved" in out, err
        rules = await cli_json("rule", "ls", *rpc)
        assert isinstance(rules, list)
        mine = [r for r in rules if r["key"] == 4242]
        assert len(mine) == 1 and mine[0]["intermediary_forward_fields"]["next_rid"] == 77
        code, out, err = await skywire(
            "cli", "route", "add-rule", "app", "4243", a.pk.hex(), "5", c.pk.hex(), "6", *rpc
        )
        assert code == 0, err
        code, out, _ = await skywire("cli", "route", "rm-rule", "4242", *rpc)
        assert code == 0 and "removed" in out
        code, _, err = await skywire("cli", "route", "rm-rule", "4242", *rpc)
        assert code == 1 and "no rule with route ID 4242" in err
        rules = await cli_json("rule", "ls", *rpc)
        assert isinstance(rules, list)
        assert [r["key"] for r in rules if r["key"] in (4242, 4243)] == [4243]

        code, out, _ = await skywire("cli", "visor", "halt", *rpc)
        assert code == 0 and "stopping" in out
        assert a.halted.is_set()
        # an in-process visor has no file to reload from
        code, _, err = await skywire("cli", "visor", "reload", *rpc)
        assert code == 1 and "not started from a configuration file" in err


async def test_halt_stops_a_visor_process(tmp_path: Path) -> None:
    async with LocalDmsgNetwork(servers=1) as dnet, LocalSkywire(dnet, visors=0) as sky:
        cfg = sky.config()
        cfg.local_path = str(tmp_path / "visor")
        cfg.launcher.apps = []
        port = 0
        with __import__("socket").socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        cfg.cli_addr = f"127.0.0.1:{port}"
        path = tmp_path / "visor.json"
        cfg.save(path)
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "skywire.cli", "visor", "-c", str(path), "--log-level", "warning",
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        try:
            rpc = ["--rpc", f"127.0.0.1:{port}"]
            async with asyncio.timeout(60):
                while (await skywire("cli", "visor", "ver", *rpc))[0] != 0:  # noqa: ASYNC110
                    await asyncio.sleep(0.2)  # the visor process is starting
            # reload: the same process starts the visor again from the (edited) file
            first = await cli_json("visor", "info", *rpc)
            cfg.survey_whitelist = [SecKey.generate().pubkey()]
            cfg.save(path)
            code, _, err = await skywire("cli", "visor", "reload", *rpc)
            assert code == 0, err
            async with asyncio.timeout(60):
                while True:
                    code, out, _ = await skywire("cli", "visor", "info", "--json", *rpc)
                    if code == 0 and json.loads(out)["uptime_s"] < first["uptime_s"]:  # type: ignore[index]
                        break
                    await asyncio.sleep(0.2)  # the visor is restarting
            assert proc.returncode is None
            code, _, err = await skywire("cli", "visor", "halt", *rpc)
            assert code == 0, err
            async with asyncio.timeout(30):
                await proc.wait()
            assert proc.returncode == 0
            assert proc.stderr is not None
            assert b"halted over the control API" in await proc.stderr.read()
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()


async def test_root_help_version_and_completion() -> None:
    code, out, _ = await skywire("--version")
    assert code == 0 and out.strip() == f"skywire {__version__}"
    code, out, _ = await skywire("cli", "route", "trace", "-h")
    assert code == 0 and "per-hop" not in out and "round trip to each hop" in out
    env = {"_SKYWIRE_COMPLETE": "complete_bash", "COMP_WORDS": "skywire cli visor p",
           "COMP_CWORD": "3"}  # fmt: skip
    code, out, _ = await skywire(env=env)
    assert code == 0 and set(out.split()) == {"pk", "ports", "ping"}


async def test_config_update_changes_the_file_in_place(tmp_path: Path) -> None:
    path = tmp_path / "visor.json"
    code, _, err = await skywire("cli", "config", "gen", "-o", str(path))
    assert code == 0, err
    from skywire.visor.config import VisorConfig

    before = VisorConfig.load(path)
    hyper = SecKey.generate().pubkey().hex()
    code, out, err = await skywire(
        "cli", "config", "update", "-c", str(path), "--testnet", "--add-hypervisor", hyper,
        "--log-level", "debug", "--no-autoconnect", "--sd", "http://127.0.0.1:9094",
    )  # fmt: skip
    assert code == 0, err
    after = VisorConfig.load(path)
    assert after.sk == before.sk and after.pk == before.pk
    assert after.dmsg.discovery == "http://127.0.0.1:9090"
    assert [pk.hex() for pk in after.hypervisors] == [hyper]
    assert after.log_level == "debug" and after.transport.public_autoconnect is False
    assert after.launcher.service_discovery == "http://127.0.0.1:9094"
    assert "log_level: 'info' -> 'debug'" in out and "hypervisors" in out
    code, out, _ = await skywire("cli", "config", "update", "-c", str(path))
    assert code == 0 and "nothing to change" in out
    code, _, err = await skywire("cli", "config", "update", "-c", str(path), "--log-level", "x")
    assert code == 2 and "unknown level" in err


async def test_cli_vpn_lists_servers_and_points_the_client_app_at_one(tmp_path: Path) -> None:
    """The commands only, on a real visor and service discovery: the vpn-client app here is a
    stand-in script (a real one would route this machine's traffic through a TUN)."""
    from skywire.services.sd import SDClient
    from skywire.services.sd.entry import ServiceEntry, ServiceType, SWAddr
    from skywire.visor.config import AppConfig, VisorConfig

    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    script = bin_dir / "fake-vpn.py"
    script.write_text(
        f"#!{sys.executable}\nimport os, sys, time\nprint('ARGS', *sys.argv[1:], flush=True)\n"
        "print('ENV', os.environ['ADDR_DMSG_DISC'], os.environ['DMSG_SRV_COUNT'],"
        " os.environ.get('ADDR_DMSG_SRV_0'), os.environ['TP_REMOTE_IPS_LEN'],"
        " os.environ.get('ADDR_TP_REMOTE_0'), flush=True)\n"
        "time.sleep(3600)\n"
    )
    script.chmod(0o755)

    def configure(i: int, cfg: VisorConfig) -> None:
        cfg.local_path = str(tmp_path / f"visor-{i}")
        cfg.launcher.bin_path = str(bin_dir)
        if i == 0:
            cfg.launcher.apps = [AppConfig(name="vpn-client", binary="fake-vpn.py", port=43)]

    async with (
        LocalDmsgNetwork(servers=1) as dnet,
        LocalSkywire(dnet, visors=2, configure=configure, apps=True) as sky,
    ):
        a, _ = sky.visors
        await sky.chain("stcpr")  # a transport whose peer must stay off the TUN
        assert a.rpc is not None and sky.sd is not None and a.launcher is not None
        server = SecKey.generate()
        async with SDClient(sky.sd.url, server) as sd:
            await sd.register(ServiceEntry(SWAddr(server.pubkey(), 44), ServiceType.VPN, "v1"))
        listed = await cli_json("vpn", "list", "--sd", sky.sd.url)
        assert isinstance(listed, list) and listed[0]["address"] == f"{server.pubkey().hex()}:44"
        rpc = ["--rpc", f"127.0.0.1:{a.rpc.port}"]
        code, out, _ = await skywire("cli", "vpn", "status", *rpc)
        assert code == 0 and "vpn-client: stopped" in out
        code, out, err = await skywire(
            "cli", "vpn", "start", server.pubkey().hex(), "--passcode", "s3", "--killswitch", *rpc
        )
        assert code == 0, err
        launcher = a.launcher
        want = f"ARGS app vpn-client --srv {server.pubkey().hex()} --passcode s3 --killswitch"
        await launcher.wait_until(
            lambda: any(line.endswith(want) for line in launcher.logs("vpn-client")), 30
        )
        # the visor tells the client where discovery and its dmsg servers are (kept off the TUN)
        env = next(line for line in launcher.logs("vpn-client") if " ENV " in line)
        assert env.endswith(f"ENV {dnet.disc_url} 1 127.0.0.1 1 127.0.0.1"), env
        code, out, _ = await skywire("cli", "vpn", "status", *rpc)
        assert code == 0 and "vpn-client: running" in out
        code, out, _ = await skywire("cli", "vpn", "stop", *rpc)
        assert code == 0 and "stopped" in out

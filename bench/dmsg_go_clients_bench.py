"""Our relay beside the upstream one with the upstream client tools at both ends, one run.

``bench/dmsg_bench.py`` puts the same Python clients through each relay; here the clients are
upstream's own: ``dmsghttp`` serves a file of ``--mb`` MiB and ``dmsgget`` fetches it to a file,
each its own process, through our relay (our discovery and relay in one child process) and
through the upstream ``dmsg-server`` (on our discovery), alternating for ``--rounds`` rounds.
Prints, for each relay, the GET's MB/s (the ``dmsgget`` process from start to exit, the file
checked whole) and the relay's capacity (bytes relayed per relay CPU-second), medians with
their range, and the ratios.

Needs ``GO_DMSG_SERVER=<upstream dmsg-server>`` and ``GO_DMSG_TOOLS=<dir>`` holding upstream
``dmsghttp`` and ``dmsgget`` (skycoin/dmsg ``cmd/``, built locally); without them it says so
and exits.

Usage: ``python bench/dmsg_go_clients_bench.py [--mb 200] [--rounds 3]``.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from dmsg_bench import cpu_seconds, network_process, start_go
from skywire.cipher import SecKey
from skywire.dmsg.server import ServerConfig

MiB = 1 << 20


def _wait_listed(disc: str, path: str, what: str, listed: Any, timeout: float = 20.0) -> None:
    """Until ``listed(answer)`` holds for discovery's JSON at ``path`` (another process's
    first post), polling every 0.1 s."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"{disc}/dmsg-discovery/{path}", timeout=5) as r:
                if listed(json.load(r)):
                    return
        except OSError:
            pass
        time.sleep(0.1)  # another process: its first post
    raise TimeoutError(f"{what} not listed in {disc} after {timeout:g} s")


def _one(relay: str, server: str, tools: str, www: str, mb: int) -> tuple[float, float]:
    """One GET through ``relay`` (``ours`` or ``go``): (MB/s, relay MB per CPU-second)."""
    ctx = mp.get_context("spawn")
    parent, child = ctx.Pipe()
    net = ctx.Process(target=network_process, args=(child, 1 if relay == "ours" else 0))
    net.start()
    go = None
    try:
        disc = json.loads(parent.recv())["disc"]
        relay_pid = net.pid
        if relay == "go":
            with socket.socket() as s:
                s.bind(("127.0.0.1", 0))
                port = s.getsockname()[1]
            cfg = ServerConfig.generate(
                discovery=disc,
                public_address=f"127.0.0.1:{port}",
                local_address=f"127.0.0.1:{port}",
                health_endpoint_address="127.0.0.1:0",
                log_level="error",
            )
            go = start_go(server, cfg, os.path.join(www, "relay.json"))
            relay_pid = go.pid
            _wait_listed(disc, "available_servers", "a relay", bool)
        assert relay_pid is not None
        sk = SecKey.generate()
        pk = sk.pubkey().hex()
        quiet = subprocess.DEVNULL
        host = subprocess.Popen(
            [os.path.join(tools, "dmsghttp"), "-D", disc, "-d", www, "-p", "80", "-s", sk.hex()],
            stdout=quiet,
            stderr=quiet,
        )
        try:
            _wait_listed(
                disc, f"entry/{pk}", pk, lambda e: e.get("client", {}).get("delegated_servers")
            )
            out = os.path.join(www, "out.bin")
            if os.path.exists(out):
                os.remove(out)
            cpu0 = cpu_seconds(relay_pid)
            start = time.perf_counter()
            subprocess.run(
                [os.path.join(tools, "dmsgget"), "-d", disc, "-l", "error", "-o", out,
                 f"dmsg://{pk}:80/blob.bin"],
                check=True, stdout=quiet, stderr=quiet, timeout=600,
            )  # fmt: skip
            elapsed = time.perf_counter() - start
            cpu = cpu_seconds(relay_pid) - cpu0
            if os.path.getsize(out) != mb * MiB:
                raise SystemExit(f"dmsgget wrote {os.path.getsize(out)} bytes, not {mb * MiB}")
            return mb * MiB / elapsed / 1e6, mb * MiB / max(cpu, 1e-9) / 1e6
        finally:
            host.terminate()
            host.wait(10)
    finally:
        if go is not None:
            go.terminate()
            go.wait(10)
        parent.send("stop")
        net.join(60)


def main(mb: int, rounds: int) -> None:
    server, tools = os.environ.get("GO_DMSG_SERVER"), os.environ.get("GO_DMSG_TOOLS")
    if not server or not tools:
        print("set GO_DMSG_SERVER=<upstream dmsg-server> and GO_DMSG_TOOLS=<dir of dmsghttp,"
              " dmsgget> to run this bench")  # fmt: skip
        return
    figures: dict[str, list[tuple[float, float]]] = {"ours": [], "go": []}
    with tempfile.TemporaryDirectory() as www:
        with open(os.path.join(www, "blob.bin"), "wb") as f:
            f.write(os.urandom(mb * MiB))
        for i in range(rounds):
            print(f"round {i + 1}/{rounds}", file=sys.stderr)
            for relay in ("ours", "go"):
                figures[relay].append(_one(relay, server, tools, www, mb))
    mid: dict[str, tuple[float, float]] = {}
    for relay, runs in figures.items():
        gets, caps = [r[0] for r in runs], [r[1] for r in runs]
        mid[relay] = statistics.median(gets), statistics.median(caps)
        print(
            f"dmsg_relay_get_upstream_clients_{relay}: {mid[relay][0]:.1f} MB/s (range"
            f" {min(gets):.1f}–{max(gets):.1f}; {mb} MiB, dmsghttp → {relay} relay → dmsgget)"
        )
        print(
            f"dmsg_relay_capacity_upstream_clients_{relay}: {mid[relay][1]:.0f} MB/s per core"
            f" (range {min(caps):.0f}–{max(caps):.0f})"
        )
    print(f"dmsg_relay_get_upstream_clients_ratio_ours_vs_go: {mid['ours'][0] / mid['go'][0]:.2f}")
    ratio = mid["ours"][1] / mid["go"][1]
    print(f"dmsg_relay_capacity_upstream_clients_ratio_ours_vs_go: {ratio:.2f}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--mb", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=3)
    ns = parser.parse_args()
    main(ns.mb, ns.rounds)

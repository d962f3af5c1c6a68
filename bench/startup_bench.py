"""Start-up of ``skywire`` commands as whole processes, beside the bare interpreter, one run.

Each round runs, one after the other: ``python -c pass`` (the interpreter alone), ``skywire
--help``, ``skywire version``, ``skywire dmsg --help`` and ``skywire dmsg curl -q`` of a 1 KiB
file served over dmsg by a local network in this process (discovery, one relay server, a file
server; the curl process makes its own session and stream). Wall time from spawn to exit; the
rounds alternate the commands so that machine noise falls on all of them alike. Prints
``name: value unit`` lines (p50 and min over ``--rounds``).

Usage: ``python bench/startup_bench.py [--rounds 15]``.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path

from aiohttp import web

from skywire.dmsg.http import HTTPServer, add_static
from skywire.testnet.dmsgnet import LocalDmsgNetwork

PY = sys.executable
SKYWIRE = [PY, "-m", "skywire.cli"]


async def _run(argv: list[str]) -> float:
    t0 = time.perf_counter()
    proc = await asyncio.create_subprocess_exec(
        *argv, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE
    )
    _, err = await proc.communicate()
    dt = time.perf_counter() - t0
    if proc.returncode != 0:
        raise RuntimeError(f"{argv} exited {proc.returncode}: {err.decode()[-400:]}")
    return dt


async def main(rounds: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        www = Path(tmp)
        (www / "small.bin").write_bytes(bytes(range(256)) * 4)
        async with LocalDmsgNetwork(servers=1) as net:
            host = await net.client()
            app = web.Application()
            add_static(app.router, "/", www)
            async with HTTPServer(app, await host.listen(80)):
                url = f"dmsg://{host.pk}:80/small.bin"
                cases = {
                    "python -c pass": [PY, "-c", "pass"],
                    "skywire --help": [*SKYWIRE, "--help"],
                    "skywire version": [*SKYWIRE, "version"],
                    "skywire dmsg --help": [*SKYWIRE, "dmsg", "--help"],
                    "skywire dmsg curl (1 KiB GET)": [
                        *SKYWIRE, "dmsg", "curl", "-q", "--disc", net.disc_url, url,
                    ],
                }  # fmt: skip
                times: dict[str, list[float]] = {name: [] for name in cases}
                for _ in range(2):  # warm the file cache
                    for argv in cases.values():
                        await _run(argv)
                for _ in range(rounds):
                    for name, argv in cases.items():
                        times[name].append(await _run(argv))
    for name, values in times.items():
        p50 = statistics.median(values) * 1e3
        print(f"startup {name} p50: {p50:.0f} ms (min {min(values) * 1e3:.0f} ms)")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=15)
    asyncio.run(main(parser.parse_args().rounds))

"""Start-up of ``skywire`` commands as whole processes, beside the bare interpreter, one run.

Each round runs, one after the other: ``python -c pass`` (the interpreter alone), ``skywire
--help``, ``skywire version``, ``skywire dmsg --help`` and ``skywire dmsg curl -q`` of a 1 KiB
file served over dmsg by a local network in this process (discovery, one relay server, a file
server; the curl process makes its own session and stream). Wall time from spawn to exit; the
rounds alternate the commands so that machine noise falls on all of them alike. Prints
``name: value unit`` lines (p50 and min over ``--rounds``).

The package's bytecode is compiled first, as installing a wheel does (``make setup`` does it for
the editable install). The same curl is also run on a copy of the package without bytecode, with
``PYTHONDONTWRITEBYTECODE`` set (the package's modules compiled from source in every process, as
an editable install on a machine that never writes bytecode had it; the standard library and the
dependencies keep theirs), to show that cost.

Usage: ``python bench/startup_bench.py [--rounds 15]``.
"""

from __future__ import annotations

import argparse
import asyncio
import compileall
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

from aiohttp import web

import skywire
from skywire.dmsg.http import HTTPServer, add_static
from skywire.testnet.dmsgnet import LocalDmsgNetwork

PY = sys.executable
SKYWIRE = [PY, "-m", "skywire.cli"]


async def _run(argv: list[str], env: dict[str, str] | None = None) -> float:
    t0 = time.perf_counter()
    proc = await asyncio.create_subprocess_exec(
        *argv, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE, env=env
    )
    _, err = await proc.communicate()
    dt = time.perf_counter() - t0
    if proc.returncode != 0:
        raise RuntimeError(f"{argv} exited {proc.returncode}: {err.decode()[-400:]}")
    return dt


async def main(rounds: int) -> None:
    package = Path(skywire.__file__).parent
    compileall.compile_dir(str(package), quiet=1)
    with tempfile.TemporaryDirectory() as tmp, tempfile.TemporaryDirectory() as bare:
        ignore = shutil.ignore_patterns("__pycache__")
        shutil.copytree(package, Path(bare) / "skywire", ignore=ignore)
        cold = {**os.environ, "PYTHONPATH": bare, "PYTHONDONTWRITEBYTECODE": "1"}
        www = Path(tmp)
        (www / "small.bin").write_bytes(bytes(range(256)) * 4)
        async with LocalDmsgNetwork(servers=1) as net:
            host = await net.client()
            app = web.Application()
            add_static(app.router, "/", www)
            async with HTTPServer(app, await host.listen(80)):
                url = f"dmsg://{host.pk}:80/small.bin"
                curl = [*SKYWIRE, "dmsg", "curl", "-q", "--disc", net.disc_url, url]
                cases: dict[str, tuple[list[str], dict[str, str] | None]] = {
                    "python -c pass": ([PY, "-c", "pass"], None),
                    "skywire --help": ([*SKYWIRE, "--help"], None),
                    "skywire version": ([*SKYWIRE, "version"], None),
                    "skywire dmsg --help": ([*SKYWIRE, "dmsg", "--help"], None),
                    "skywire dmsg curl (1 KiB GET)": (curl, None),
                    "skywire dmsg curl (1 KiB GET), no bytecode": (curl, cold),
                }
                times: dict[str, list[float]] = {name: [] for name in cases}
                for _ in range(2):  # warm the file cache
                    for argv, env in cases.values():
                        await _run(argv, env)
                for _ in range(rounds):
                    for name, (argv, env) in cases.items():
                        times[name].append(await _run(argv, env))
    for name, values in times.items():
        p50 = statistics.median(values) * 1e3
        print(f"startup {name} p50: {p50:.0f} ms (min {min(values) * 1e3:.0f} ms)")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=15)
    asyncio.run(main(parser.parse_args().rounds))

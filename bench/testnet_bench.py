"""The main job's figures beside the benches' own, from one run on one machine.

Each round runs, one after the other, ``skywire testnet --once --disc-port 0`` (every part its
own process, as ``make run`` starts them), ``bench/dmsg_bench.py`` with a GET of the same size
and ``bench/route_setup.py --churn 0``, each as a whole process, and reads the figures both
print for the same thing:

* the dmsg fetch (testnet: a 64 MiB file from the site process through a relay process to its
  own client; the bench: a 64 MiB GET through a relay process, both clients in one process);
* stream dial p50 through a relay;
* 3-hop route set-up p50 (route finder, setup node, the route handshake; testnet: 9 set-ups
  after the first, between visor processes; the bench: 60 in one process);
* the route throughput (testnet: a file through visor 0's ``.skynet`` proxy over the 3-hop
  route; the bench: a raw route group with 2 intermediaries and Noise).

Prints ``name: value unit`` lines: each figure's median over ``--rounds`` for both, their
range, and the ratio testnet / bench.

Usage: ``python bench/testnet_bench.py [--rounds 3]``.
"""

from __future__ import annotations

import argparse
import re
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PY = sys.executable

TESTNET = {
    "dmsg_fetch": (r"^fetched\s+.* = ([\d.]+) MB/s", "MB/s"),
    "dmsg_dial_p50": (r"^stream dial\s+p50 ([\d.]+) ms", "ms"),
    "route_setup_3hop_p50": (r"^route\s+visor .* then p50 ([\d.]+) ms", "ms"),
    "route_throughput": (r"^through the route\s+.* = ([\d.]+) MB/s", "MB/s"),
}
BENCH = {
    "dmsg_fetch": r"^dmsg_relay_get_throughput: ([\d.]+) MB/s",
    "dmsg_dial_p50": r"^dmsg_stream_dial_p50: ([\d.]+) ms",
    "route_setup_3hop_p50": r"^route_setup_3hop_p50: ([\d.]+) ms",
    "route_throughput": r"^route_throughput_2_intermediaries_noise: ([\d.]+) MB/s",
}


def _run(argv: list[str], cwd: Path) -> str:
    done = subprocess.run(argv, cwd=cwd, capture_output=True, text=True, timeout=900)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} exited {done.returncode}:\n{done.stderr[-2000:]}")
    return done.stdout


def _read(text: str, pattern: str, what: str) -> float:
    match = re.search(pattern, text, re.MULTILINE)
    if match is None:
        raise SystemExit(f"no figure for {what} in:\n{text[-2000:]}")
    return float(match.group(1))


def main(rounds: int) -> None:
    testnet: dict[str, list[float]] = {name: [] for name in TESTNET}
    bench: dict[str, list[float]] = {name: [] for name in BENCH}
    for i in range(rounds):
        print(f"round {i + 1}/{rounds}", file=sys.stderr)
        with tempfile.TemporaryDirectory() as tmp:
            argv = [PY, "-m", "skywire.cli", "testnet", "--once", "--disc-port", "0"]
            out = _run([*argv, "--data-dir", tmp], ROOT)
        for name, (pattern, _unit) in TESTNET.items():
            testnet[name].append(_read(out, pattern, f"testnet {name}"))
        dmsg = _run(
            [PY, "bench/dmsg_bench.py", "--size-mb", "64", "--single-mb", "64", "--streams", "",
             "--sessions", "0"],
            ROOT,
        )  # fmt: skip
        route = _run([PY, "bench/route_setup.py", "--churn", "0"], ROOT)
        for name, pattern in BENCH.items():
            bench[name].append(_read(dmsg + route, pattern, f"bench {name}"))
    for name, (_pattern, unit) in TESTNET.items():
        ours, ref = testnet[name], bench[name]
        mid, ref_mid = statistics.median(ours), statistics.median(ref)
        print(
            f"testnet_{name}: {mid:.2f} {unit} (range {min(ours):.2f}–{max(ours):.2f}); the"
            f" bench's {ref_mid:.2f} {unit} (range {min(ref):.2f}–{max(ref):.2f});"
            f" testnet / bench {mid / ref_mid:.2f}"
        )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=3)
    main(parser.parse_args().rounds)

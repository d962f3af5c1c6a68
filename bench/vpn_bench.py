"""VPN throughput through a 1-intermediate route beside the raw route throughput in the same run.

The set-up is the VPN integration test's (tests/integration/_vpn_setup.py): namespaces ``cli``,
``net``, ``srv`` and ``inet``; visors 0─1─2 in one process in ``net`` (stcp transports on
loopback, so a route from 0 to 2 crosses visor 1), an app server on visor 0 for ``cli`` and one
on visor 2 for ``srv``; ``skywire app vpn-server`` in ``srv`` and ``skywire app vpn-client`` in
``cli`` as their own processes.

Each round takes, in alternating order (ABBA across rounds):

* **vpn**: one TCP connection from ``cli`` to a receiver on 198.51.100.1 in ``srv`` (an address
  only the VPN reaches): ``--mb`` MiB sent with ``sendall``; the time runs from the connected
  socket's first send until the receiver's reply that it has read every byte (so it includes
  half a round trip for that reply, not the TCP connect). The bytes go cli's TUN → vpn-client
  → app server (visor 0) → route 0 → 1 → 2 → app server (visor 2) → vpn-server → srv's TUN →
  the receiver, as IP packets of at most 1500 bytes (TUN MTU).
* **raw**: a route group dialled from visor 0 to visor 2 in the visors' process (the same
  0 → 1 → 2 path and routers, Noise as the route negotiates it, no app server, no TUN):
  ``--mb`` MiB written in 256 KiB writes; the time runs from the first write to the last byte
  read at visor 2 (tests/integration/_vpn_net.py ``raw``).

MB/s is 10^6 bytes per second. Prints ``name: value unit`` lines: each round's figures, the
median and range of each, and the vpn/raw ratio of the medians. Needs root, iproute2, iptables
and /dev/net/tun; otherwise it prints why it skips and exits 0.
"""

from __future__ import annotations

import argparse
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import FrameType

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.integration._vpn_setup import (
    NS,
    Proc,
    app_proc,
    build,
    missing,
    start_net,
    teardown,
)

PASSCODE = "bench"
TARGET = ("198.51.100.1", 5201)

RECEIVER = """
import socket, sys
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind((sys.argv[1], int(sys.argv[2])))
s.listen()
print("listening", flush=True)
while True:
    c, _ = s.accept()
    n = 0
    while data := c.recv(1 << 20):
        n += len(data)
    c.sendall(b"%d\\n" % n)
    c.close()
"""

SENDER = """
import socket, sys, time
size = int(sys.argv[3])
block = bytes(1 << 20)
s = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=120)
t0 = time.perf_counter()
left = size
while left > 0:
    s.sendall(block[: min(left, len(block))])
    left -= len(block)
s.shutdown(socket.SHUT_WR)
reply = b""
while not reply.endswith(b"\\n"):
    data = s.recv(64)
    if not data:
        break
    reply += data
dt = time.perf_counter() - t0
print(dt, int(reply or b"-1"))
"""


def _vpn_transfer(size: int) -> float:
    cmd = ["ip", "netns", "exec", NS["cli"], sys.executable, "-c", SENDER]
    res = subprocess.run(
        [*cmd, TARGET[0], str(TARGET[1]), str(size)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    if res.returncode != 0:
        raise RuntimeError(f"vpn sender failed: {res.stderr.strip()[-2000:]}")
    dt, got = res.stdout.split()
    if int(got) != size:
        raise RuntimeError(f"the receiver counted {got} of {size} bytes")
    return float(dt)


def _raw_transfer(net: Proc, size: int) -> tuple[float, int, bool]:
    net.send(f"raw {size}")
    answer = net.line(timeout=300)
    if not answer.startswith("raw "):
        raise RuntimeError(f"raw route transfer: {answer}")
    _, dt, hops, encrypted = answer.split()
    return float(dt), int(hops), encrypted == "1"


def _line(name: str, values: list[float]) -> None:
    print(f"{name}: {statistics.median(values):.1f} MB/s")
    print(f"{name} range: {min(values):.1f}-{max(values):.1f} MB/s over {len(values)} rounds")


def run(mb: int, rounds: int) -> None:
    size = mb << 20
    procs: list[Proc] = []
    with tempfile.TemporaryDirectory(prefix="vpn-bench-") as tmp:
        try:
            build()
            receiver = Proc("srv", sys.executable, "-c", RECEIVER, *map(str, TARGET))
            procs.append(receiver)
            receiver.wait_for("listening", stderr=False, timeout=30)
            net, srv_pk, conf = start_net()
            procs.append(net)
            server = app_proc("srv", conf(2, "vpn-server", 44), "vpn-server",
                              "--passcode", PASSCODE,
                              "--state-file", str(Path(tmp) / "srv.json"))  # fmt: skip
            procs.append(server)
            server.wait_for("vpn-server on routing port 44")
            client = app_proc("cli", conf(0, "vpn-client", 43), "vpn-client", "--srv", srv_pk,
                              "--passcode", PASSCODE,
                              "--state-file", str(Path(tmp) / "cli.json"))  # fmt: skip
            procs.append(client)
            client.wait_for("all traffic via")

            net.send("hops")
            vpn_hops = net.line().split()[1:]
            if vpn_hops != ["2"]:
                raise RuntimeError(f"visor 0's route groups have hops {vpn_hops}, not one of 2")
            _vpn_transfer(1 << 20)  # warm-up: the TCP path, the pumps
            _, raw_hops, encrypted = _raw_transfer(net, 1 << 20)
            print(f"vpn route hops: {vpn_hops[0]} hops (1 intermediate)")
            print(f"raw route hops: {raw_hops} hops (1 intermediate)")
            print(f"raw route encrypted: {'yes (Noise KK)' if encrypted else 'no'}")
            print(f"transfer size: {mb} MiB")

            vpn: list[float] = []
            raw: list[float] = []
            for i in range(rounds):
                order = ("vpn", "raw") if i % 2 == 0 else ("raw", "vpn")
                for which in order:
                    if which == "vpn":
                        dt = _vpn_transfer(size)
                        vpn.append(size / dt / 1e6)
                    else:
                        dt, hops, _ = _raw_transfer(net, size)
                        assert hops == 2, hops
                        raw.append(size / dt / 1e6)
                    print(f"round {i + 1} {which}: {size / dt / 1e6:.1f} MB/s ({dt:.2f} s)")
                    sys.stdout.flush()

            _line("vpn tcp throughput (1 intermediate)", vpn)
            _line("raw route throughput (same path, same run)", raw)
            ratio = statistics.median(vpn) / statistics.median(raw)
            print(f"vpn/raw throughput ratio: {ratio:.2f} x")
        finally:
            signal.signal(signal.SIGTERM, signal.SIG_IGN)  # a second signal must not cut this
            signal.signal(signal.SIGINT, signal.SIG_IGN)
            for p in reversed(procs):
                try:
                    p.stop()
                except Exception as exc:  # stop the others and remove the namespaces anyway
                    print(f"cleanup: pid {p.p.pid}: {exc!r}", file=sys.stderr)
            teardown()


def _terminate(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)  # through run's finally: processes and namespaces go


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--mb", type=int, default=64, help="MiB per transfer")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    reason = missing()
    if reason is not None:
        print(f"SKIP vpn bench: {reason}")
        return 0
    signal.signal(signal.SIGTERM, _terminate)
    t0 = time.monotonic()
    run(args.mb, args.rounds)
    print(f"bench wall time: {time.monotonic() - t0:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())

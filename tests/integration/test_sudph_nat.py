"""sudph through NAT: two hosts behind two separate NATs reach each other by hole punching.

The test builds its own little internet out of network namespaces:

    h1 (192.168.101.2) ── nat1 ──┐                 ┌── nat2 ── h2 (192.168.102.2)
                        10.200.0.11 ── wan bridge ── 10.200.0.12
                                     AR at 10.200.0.1

Each NAT masquerades its LAN behind its WAN address and drops unsolicited inbound traffic, so
neither host can be reached until it has sent towards the other. The address resolver runs on
the WAN; each visor keeps a sudph bind with it; the dialer asks for the other, both punch, and a
transport (handshake, Noise KK, settlement) comes up and carries packets both ways.

Needs root, iproute2 and iptables; otherwise the test is skipped with the reason printed.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from skywire.cipher import KeyPair

pytestmark = pytest.mark.timeout(120)

ROOT = Path(__file__).resolve().parents[2]
TAG = f"sw{os.getpid() % 100000}"
NS = {name: f"{TAG}-{name}" for name in ("wan", "nat1", "nat2", "h1", "h2")}


def _missing() -> str | None:
    if os.geteuid() != 0:
        return "network namespaces need root"
    for tool in ("ip", "iptables"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed (make test installs it where it can)"
    probe = f"{TAG}-probe"
    res = subprocess.run(["ip", "netns", "add", probe], capture_output=True, text=True)
    if res.returncode != 0:
        return f"cannot create a network namespace: {res.stderr.strip()}"
    subprocess.run(["ip", "netns", "del", probe], capture_output=True)
    return None


def _sh(*args: str) -> None:
    res = subprocess.run(args, capture_output=True, text=True)
    if res.returncode != 0:
        raise RuntimeError(f"{' '.join(args)}: {res.stderr.strip()}")


def _in(ns: str, *args: str) -> None:
    _sh("ip", "netns", "exec", NS[ns], *args)


def _build() -> None:
    for ns in NS.values():
        _sh("ip", "netns", "add", ns)
    for ns in NS:
        _in(ns, "ip", "link", "set", "lo", "up")
    _in("wan", "ip", "link", "add", "br0", "type", "bridge")
    _in("wan", "ip", "addr", "add", "10.200.0.1/24", "dev", "br0")
    _in("wan", "ip", "link", "set", "br0", "up")
    for i in (1, 2):
        w, wp, lan, lp = f"{TAG}w{i}", f"{TAG}x{i}", f"{TAG}l{i}", f"{TAG}y{i}"
        _sh("ip", "link", "add", w, "type", "veth", "peer", "name", wp)
        _sh("ip", "link", "set", w, "netns", NS[f"nat{i}"])
        _sh("ip", "link", "set", wp, "netns", NS["wan"])
        _in("wan", "ip", "link", "set", wp, "master", "br0")
        _in("wan", "ip", "link", "set", wp, "up")
        _in(f"nat{i}", "ip", "addr", "add", f"10.200.0.1{i}/24", "dev", w)
        _in(f"nat{i}", "ip", "link", "set", w, "up")
        _sh("ip", "link", "add", lan, "type", "veth", "peer", "name", lp)
        _sh("ip", "link", "set", lan, "netns", NS[f"nat{i}"])
        _sh("ip", "link", "set", lp, "netns", NS[f"h{i}"])
        _in(f"nat{i}", "ip", "addr", "add", f"192.168.10{i}.1/24", "dev", lan)
        _in(f"nat{i}", "ip", "link", "set", lan, "up")
        _in(f"h{i}", "ip", "addr", "add", f"192.168.10{i}.2/24", "dev", lp)
        _in(f"h{i}", "ip", "link", "set", lp, "up")
        _in(f"h{i}", "ip", "route", "add", "default", "via", f"192.168.10{i}.1")
        _in(f"nat{i}", "sysctl", "-q", "-w", "net.ipv4.ip_forward=1")
        _in(f"nat{i}", "iptables", "-t", "nat", "-A", "POSTROUTING", "-o", w, "-j", "MASQUERADE")
        _in(f"nat{i}", "iptables", "-A", "FORWARD", "-i", w, "-m", "conntrack",
            "--ctstate", "ESTABLISHED,RELATED", "-j", "ACCEPT")  # fmt: skip
        _in(f"nat{i}", "iptables", "-A", "FORWARD", "-i", w, "-j", "DROP")
        # Unsolicited datagrams to the NAT itself are dropped before their conntrack entry is
        # confirmed, as a home router does; such an entry would otherwise make the NAT map the
        # host's own later datagram to that peer onto another port.
        _in(f"nat{i}", "iptables", "-A", "INPUT", "-i", w, "-m", "conntrack",
            "--ctstate", "ESTABLISHED,RELATED", "-j", "ACCEPT")  # fmt: skip
        _in(f"nat{i}", "iptables", "-A", "INPUT", "-i", w, "-j", "DROP")


def _teardown() -> None:
    for ns in NS.values():
        subprocess.run(["ip", "netns", "del", ns], capture_output=True)


@pytest.fixture
def internet() -> Iterator[None]:
    reason = _missing()
    if reason is not None:
        print(f"SKIP sudph NAT test: {reason}")
        pytest.skip(reason)
    try:
        _build()
        yield
    finally:
        _teardown()


class Proc:
    """A peer process in a namespace, read line by line with a deadline."""

    def __init__(self, ns: str, *args: str) -> None:
        env = dict(os.environ, PYTHONPATH=str(ROOT))
        self.p = subprocess.Popen(
            ["ip", "netns", "exec", NS[ns], sys.executable, "-m", "tests.integration._nat_peer",
             *args],
            cwd=ROOT, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, text=True,
        )  # fmt: skip

    def line(self, timeout: float = 60) -> str:
        assert self.p.stdout is not None
        out: list[str] = []
        reader = threading.Thread(target=lambda: out.append(self.p.stdout.readline()))  # type: ignore[union-attr]
        reader.start()
        reader.join(timeout)
        if not out or not out[0]:
            self.stop()
            _, err = self.p.communicate(timeout=10)
            raise AssertionError(f"no line from peer; stderr:\n{err[-3000:]}")
        return out[0].strip()

    def stop(self) -> None:
        if self.p.poll() is None:
            assert self.p.stdin is not None
            self.p.stdin.close()
            try:
                self.p.wait(15)
            except subprocess.TimeoutExpired:
                self.p.kill()
                self.p.wait()


def test_sudph_transport_between_two_nats(internet: None) -> None:
    ar = Proc("wan", "ar", "10.200.0.1", "9093", "30178")
    peers: list[Proc] = [ar]
    try:
        assert ar.line() == "ready"
        url, udp = "http://10.200.0.1:9093", "10.200.0.1:30178"
        b_kp, a_kp = KeyPair.generate(), KeyPair.generate()
        b = Proc("h2", "visor", b_kp.sk.hex(), url, udp)
        peers.append(b)
        assert b.line() == f"ready {b_kp.pk.hex()}"
        a = Proc("h1", "visor", a_kp.sk.hex(), url, udp, b_kp.pk.hex())
        peers.append(a)
        assert a.line() == f"ready {a_kp.pk.hex()}"
        # the resolver saw B behind its NAT's WAN address, not its LAN address
        resolved = a.line()
        assert resolved.startswith("resolved 10.200.0.12:"), resolved
        assert a.line(90) == "reply echo: through two NATs"
        assert b.line() == "served"
    finally:
        for p in reversed(peers):
            p.stop()

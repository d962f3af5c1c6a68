"""vpn-server and vpn-client as app processes in network namespaces, across a 2-hop route.

    cli (10.77.1.2) ── net: visors 0─1─2 ── srv (10.77.2.2) ── inet (10.77.3.2, no way back)
                       app server for cli: 10.77.100.1 (not on cli's link)
                       app server for srv: 10.77.2.1
    srv also holds 198.51.100.1 (on its lo): an HTTP server there is reachable from nowhere else.

The visors run in one process in ``net`` (tests/integration/_vpn_net.py); the vpn-server runs in
``srv`` and the vpn-client in ``cli`` as ``skywire app vpn-…`` processes with a PROC_CONFIG
pointing at their visor's app server, so their route goes 0 → 1 → 2. The test shows:

* cli fetches from the HTTP server that lives only in srv, and from inet (which has no route to
  the TUN subnet: only the server's MASQUERADE makes its answers come back);
* any other destination resolves to the TUN, the app server's address does not, and the TUN's
  counters grow with traffic; resolv.conf names the VPN's DNS while up;
* SIGTERM: cli's routing table and resolv.conf are as before, no TUN, no state file;
* kill -9: the leftovers are there (direct route, resolv.conf), the next start (here with a
  wrong passcode) puts them back as before, is answered status 4, and makes no TUN;
* with ``--killswitch``, when the server goes away the routes stay on the TUN until stop;
* the server's SIGTERM takes its MASQUERADE rule and IP forwarding back.

Needs root, iproute2 and iptables; otherwise skipped with the reason printed.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

pytestmark = pytest.mark.timeout(180)

ROOT = Path(__file__).resolve().parents[2]
TAG = f"vp{os.getpid() % 100000}"
NS = {name: f"{TAG}-{name}" for name in ("net", "cli", "srv", "inet")}
RESOLV_DIR = Path("/etc/netns") / NS["cli"]
RESOLV_BEFORE = "nameserver 10.77.1.1\nsearch example.test\n"
PASSCODE = "open sesame"


def _missing() -> str | None:
    if os.geteuid() != 0:
        return "network namespaces and TUN devices need root"
    for tool in ("ip", "iptables", "sysctl"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed (make netns-tools installs iptables where it can)"
    if not os.path.exists("/dev/net/tun"):
        return "/dev/net/tun is missing"
    probe = f"{TAG}-probe"
    res = subprocess.run(["ip", "netns", "add", probe], capture_output=True, text=True)
    if res.returncode != 0:
        return f"cannot create a network namespace: {res.stderr.strip()}"
    subprocess.run(["ip", "netns", "del", probe], capture_output=True)
    return None


def _sh(*args: str) -> str:
    res = subprocess.run(args, capture_output=True, text=True)
    if res.returncode != 0:
        raise RuntimeError(f"{' '.join(args)}: {res.stderr.strip()}")
    return res.stdout


def _in(ns: str, *args: str) -> str:
    return _sh("ip", "netns", "exec", NS[ns], *args)


def _veth(a: str, a_addr: str, b: str, b_addr: str, name: str) -> None:
    _sh("ip", "link", "add", f"{name}a", "type", "veth", "peer", "name", f"{name}b")
    for ns, end, addr in ((a, "a", a_addr), (b, "b", b_addr)):
        _sh("ip", "link", "set", f"{name}{end}", "netns", NS[ns])
        _in(ns, "ip", "addr", "add", addr, "dev", f"{name}{end}")
        _in(ns, "ip", "link", "set", f"{name}{end}", "up")


def _build() -> None:
    for ns in NS.values():
        _sh("ip", "netns", "add", ns)
    for ns in NS:
        _in(ns, "ip", "link", "set", "lo", "up")
    _veth("cli", "10.77.1.2/24", "net", "10.77.1.1/24", f"{TAG}c")
    _veth("srv", "10.77.2.2/24", "net", "10.77.2.1/24", f"{TAG}s")
    _veth("srv", "10.77.3.1/24", "inet", "10.77.3.2/24", f"{TAG}i")
    _in("net", "ip", "addr", "add", "10.77.100.1/32", "dev", "lo")
    _in("cli", "ip", "route", "add", "default", "via", "10.77.1.1")
    _in("srv", "ip", "route", "add", "default", "via", "10.77.3.2")
    _in("srv", "ip", "addr", "add", "198.51.100.1/32", "dev", "lo")
    RESOLV_DIR.mkdir(parents=True, exist_ok=True)
    (RESOLV_DIR / "resolv.conf").write_text(RESOLV_BEFORE)


def _teardown() -> None:
    for ns in NS.values():
        subprocess.run(["ip", "netns", "del", ns], capture_output=True)
    shutil.rmtree(RESOLV_DIR, ignore_errors=True)


@pytest.fixture
def namespaces() -> Iterator[None]:
    reason = _missing()
    if reason is not None:
        print(f"SKIP vpn netns test: {reason}")
        pytest.skip(reason)
    try:
        _build()
        yield
    finally:
        _teardown()


class Proc:
    """A process in a namespace; its stdout and stderr collected by threads, waited on with
    deadlines."""

    def __init__(self, ns: str, *args: str, env: dict[str, str] | None = None) -> None:
        self.p = subprocess.Popen(
            ["ip", "netns", "exec", NS[ns], *args],
            cwd=ROOT,
            env=dict(os.environ, PYTHONPATH=str(ROOT), **(env or {})),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.out: list[str] = []
        self.err: list[str] = []
        self.read = 0
        self.cond = threading.Condition()
        for stream, into in ((self.p.stdout, self.out), (self.p.stderr, self.err)):
            threading.Thread(target=self._collect, args=(stream, into), daemon=True).start()

    def _collect(self, stream: object, into: list[str]) -> None:
        for line in stream:  # type: ignore[attr-defined]
            with self.cond:
                into.append(line)
                self.cond.notify_all()

    def wait_for(self, text: str, *, stderr: bool = True, timeout: float = 60) -> str:
        lines = self.err if stderr else self.out
        with self.cond:
            ok = self.cond.wait_for(
                lambda: any(text in x for x in lines) or self.p.poll() is not None, timeout
            )
            found = [x for x in lines if text in x]
        if not ok or not found:
            raise AssertionError(f"no {text!r}; stderr:\n{''.join(self.err)[-4000:]}")
        return found[0]

    def line(self, timeout: float = 60) -> str:
        """The next stdout line not yet returned."""
        with self.cond:
            n = self.read
            self.cond.wait_for(lambda: len(self.out) > n or self.p.poll() is not None, timeout)
            if len(self.out) <= n:
                raise AssertionError(f"no line; stderr:\n{''.join(self.err)[-4000:]}")
            self.read += 1
            return self.out[n].strip()

    def send(self, line: str) -> None:
        assert self.p.stdin is not None
        self.p.stdin.write(line + "\n")
        self.p.stdin.flush()

    def stop(self, sig: int = signal.SIGTERM) -> int:
        if self.p.poll() is None:
            if self.p.stdin is not None:
                self.p.stdin.close()
            self.p.send_signal(sig)
            try:
                self.p.wait(30)
            except subprocess.TimeoutExpired:
                self.p.kill()
                self.p.wait()
        return self.p.returncode


def _app(ns: str, conf: str, *args: str) -> Proc:
    return Proc(ns, sys.executable, "-m", "skywire.cli", "app", *args, env={"PROC_CONFIG": conf})


def _fetch(ns: str, url: str, timeout: float = 5) -> tuple[int, str]:
    code = (
        "import sys, urllib.request\n"
        "print(urllib.request.urlopen(sys.argv[1], timeout=float(sys.argv[2])).read().decode())"
    )
    res = subprocess.run(
        ["ip", "netns", "exec", NS[ns], sys.executable, "-c", code, url, str(timeout)],
        capture_output=True,
        text=True,
    )
    return res.returncode, res.stdout.strip()


def _web(ns: str, addr: str, port: int, body: str, where: Path) -> Proc:
    where.mkdir(parents=True, exist_ok=True)
    (where / "index.html").write_text(body)
    proc = Proc(ns, sys.executable, "-m", "http.server", str(port), "--bind", addr,
                "--directory", str(where))  # fmt: skip
    deadline = time.monotonic() + 30
    while _fetch(ns, f"http://{addr}:{port}/")[1] != body:  # a bounded poll of the server
        assert time.monotonic() < deadline, f"web server {addr}:{port} did not come up"
        assert proc.p.poll() is None, "".join(proc.err)
    return proc


def _routes(ns: str) -> list[str]:
    return sorted(x.strip() for x in _in(ns, "ip", "-4", "route", "show").splitlines())


def _tuns(ns: str) -> list[str]:
    links = json.loads(_in(ns, "ip", "-j", "link", "show"))
    return [x["ifname"] for x in links if x["ifname"].startswith("tun")]


def _tx_packets(ns: str, dev: str) -> int:
    return int(_in(ns, "cat", f"/sys/class/net/{dev}/statistics/tx_packets"))


def _resolv() -> str:
    return (RESOLV_DIR / "resolv.conf").read_text()


def _udp_burst(ns: str, dst: str, n: int) -> None:
    code = (
        "import socket, sys\n"
        "s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n"
        "for _ in range(int(sys.argv[2])): s.sendto(b'x' * 100, (sys.argv[1], 9))"
    )
    _in(ns, sys.executable, "-c", code, dst, str(n))


def test_vpn_through_a_two_hop_route(namespaces: None, tmp_path: Path) -> None:
    procs: list[Proc] = []
    try:
        procs.append(_web("srv", "198.51.100.1", 8000, "only in srv", tmp_path / "srv-web"))
        procs.append(_web("inet", "10.77.3.2", 8080, "behind the NAT", tmp_path / "inet-web"))
        net = Proc("net", sys.executable, "-m", "tests.integration._vpn_net",
                   "10.77.100.1", "10.77.2.1")  # fmt: skip
        procs.append(net)
        ready = net.line()
        assert ready.startswith("ready "), ready
        srv_pk = ready.split()[1]

        def conf(visor: int, name: str, port: int) -> str:
            net.send(f"config {visor} {name} {port}")
            return net.line()

        forward_before = _in("srv", "sysctl", "-n", "net.ipv4.ip_forward").strip()
        server = _app("srv", conf(2, "vpn-server", 44), "vpn-server", "--passcode", PASSCODE,
                      "--state-file", str(tmp_path / "srv.json"))  # fmt: skip
        procs.append(server)
        server.wait_for("vpn-server on routing port 44")
        nat = _in("srv", "iptables", "-t", "nat", "-S", "POSTROUTING")
        assert f"-A POSTROUTING -o {TAG}ia -j MASQUERADE" in nat
        assert _in("srv", "sysctl", "-n", "net.ipv4.ip_forward").strip() == "1"

        routes_before, resolv_before = _routes("cli"), _resolv()
        assert _fetch("cli", "http://198.51.100.1:8000/", timeout=2)[0] != 0  # no VPN, no way
        state = tmp_path / "cli.json"
        client_args = ("vpn-client", "--srv", srv_pk, "--dns", "10.77.2.53",
                       "--state-file", str(state))  # fmt: skip

        # ---- up: traffic through the TUN, across the route
        client = _app("cli", conf(0, "vpn-client", 43), *client_args, "--passcode", PASSCODE)
        procs.append(client)
        client.wait_for("all traffic via")
        (tun,) = _tuns("cli")
        assert _fetch("cli", "http://198.51.100.1:8000/") == (0, "only in srv")
        assert _fetch("cli", "http://10.77.3.2:8080/") == (0, "behind the NAT")
        assert f"dev {tun}" in _in("cli", "ip", "route", "get", "203.0.113.9")
        assert f"dev {tun}" in _in("cli", "ip", "route", "get", "8.8.8.8")
        direct = _in("cli", "ip", "route", "get", "10.77.100.1")
        assert "via 10.77.1.1" in direct and f"{TAG}ca" in direct, direct
        routes_up = _in("cli", "ip", "-4", "route", "show")
        assert "0.0.0.0/1 via " in routes_up and "128.0.0.0/1 via " in routes_up
        before = _tx_packets("cli", tun)
        _udp_burst("cli", "203.0.113.9", 50)
        assert _tx_packets("cli", tun) >= before + 50
        assert _resolv() == "nameserver 10.77.2.53\n"
        assert state.exists()

        # ---- stop: everything as before
        assert client.stop() == 0, "".join(client.err)
        assert _routes("cli") == routes_before
        assert _resolv() == resolv_before
        assert _tuns("cli") == [] and not state.exists()
        assert _fetch("cli", "http://198.51.100.1:8000/", timeout=2)[0] != 0

        # ---- kill -9: leftovers, undone by the next start (which a wrong passcode ends)
        client = _app("cli", conf(0, "vpn-client", 43), *client_args, "--passcode", PASSCODE)
        procs.append(client)
        client.wait_for("all traffic via")
        assert _fetch("cli", "http://198.51.100.1:8000/") == (0, "only in srv")
        client.stop(signal.SIGKILL)
        assert state.exists()
        assert "10.77.100.1 via 10.77.1.1" in _in("cli", "ip", "-4", "route", "show")
        assert _resolv() == "nameserver 10.77.2.53\n"
        assert _tuns("cli") == []  # the kernel took the TUN with the process

        wrong = _app("cli", conf(0, "vpn-client", 43), *client_args, "--passcode", "wrong")
        procs.append(wrong)
        wrong.wait_for("vpn handshake status", timeout=60)
        assert wrong.p.wait(30) == 1, "".join(wrong.err)
        err = "".join(wrong.err)
        assert "undoing the changes of a run that did not stop cleanly" in err
        assert "vpn handshake status 4 - Forbidden" in err
        assert "all traffic via" not in err and _tuns("cli") == []
        assert _routes("cli") == routes_before
        assert _resolv() == resolv_before
        assert not state.exists()
        server.wait_for("refusing: status 4")

        # ---- kill switch: the server goes away, traffic stays in the TUN until stop
        client = _app("cli", conf(0, "vpn-client", 43), *client_args, "--passcode", PASSCODE,
                      "--killswitch")  # fmt: skip
        procs.append(client)
        client.wait_for("all traffic via")
        (tun,) = _tuns("cli")

        # ---- the server's stop takes its NAT back
        assert server.stop() == 0, "".join(server.err)
        client.wait_for("route to the server ended")
        assert f"dev {tun}" in _in("cli", "ip", "route", "get", "203.0.113.9")
        assert client.stop() == 0, "".join(client.err)
        assert _routes("cli") == routes_before and _resolv() == resolv_before
        nat = _in("srv", "iptables", "-t", "nat", "-S", "POSTROUTING")
        assert "MASQUERADE" not in nat
        assert _in("srv", "sysctl", "-n", "net.ipv4.ip_forward").strip() == forward_before
        assert not (tmp_path / "srv.json").exists()
    finally:
        for p in reversed(procs):
            p.stop()

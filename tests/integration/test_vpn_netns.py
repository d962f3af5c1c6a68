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
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration._vpn_setup import (
    NS,
    RESOLV_DIR,
    TAG,
    Proc,
    app_proc,
    build,
    in_ns,
    missing,
    start_net,
    teardown,
)

pytestmark = pytest.mark.timeout(180)

PASSCODE = "open sesame"


@pytest.fixture
def namespaces() -> Iterator[None]:
    reason = missing()
    if reason is not None:
        print(f"SKIP vpn netns test: {reason}")
        pytest.skip(reason)
    try:
        build()
        yield
    finally:
        teardown()


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
    return sorted(x.strip() for x in in_ns(ns, "ip", "-4", "route", "show").splitlines())


def _tuns(ns: str) -> list[str]:
    links = json.loads(in_ns(ns, "ip", "-j", "link", "show"))
    return [x["ifname"] for x in links if x["ifname"].startswith("tun")]


def _tx_packets(ns: str, dev: str) -> int:
    return int(in_ns(ns, "cat", f"/sys/class/net/{dev}/statistics/tx_packets"))


def _resolv() -> str:
    return (RESOLV_DIR / "resolv.conf").read_text()


def _udp_burst(ns: str, dst: str, n: int) -> None:
    code = (
        "import socket, sys\n"
        "s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n"
        "for _ in range(int(sys.argv[2])): s.sendto(b'x' * 100, (sys.argv[1], 9))"
    )
    in_ns(ns, sys.executable, "-c", code, dst, str(n))


def test_vpn_through_a_two_hop_route(namespaces: None, tmp_path: Path) -> None:
    procs: list[Proc] = []
    try:
        procs.append(_web("srv", "198.51.100.1", 8000, "only in srv", tmp_path / "srv-web"))
        procs.append(_web("inet", "10.77.3.2", 8080, "behind the NAT", tmp_path / "inet-web"))
        net, srv_pk, conf = start_net()
        procs.append(net)

        forward_before = in_ns("srv", "sysctl", "-n", "net.ipv4.ip_forward").strip()
        server = app_proc("srv", conf(2, "vpn-server", 44), "vpn-server", "--passcode", PASSCODE,
                      "--state-file", str(tmp_path / "srv.json"))  # fmt: skip
        procs.append(server)
        server.wait_for("vpn-server on routing port 44")
        nat = in_ns("srv", "iptables", "-t", "nat", "-S", "POSTROUTING")
        assert f"-A POSTROUTING -o {TAG}ia -j MASQUERADE" in nat
        assert in_ns("srv", "sysctl", "-n", "net.ipv4.ip_forward").strip() == "1"

        routes_before, resolv_before = _routes("cli"), _resolv()
        assert _fetch("cli", "http://198.51.100.1:8000/", timeout=2)[0] != 0  # no VPN, no way
        state = tmp_path / "cli.json"
        client_args = ("vpn-client", "--srv", srv_pk, "--dns", "10.77.2.53",
                       "--state-file", str(state))  # fmt: skip

        # ---- up: traffic through the TUN, across the route
        client = app_proc("cli", conf(0, "vpn-client", 43), *client_args, "--passcode", PASSCODE)
        procs.append(client)
        client.wait_for("all traffic via")
        (tun,) = _tuns("cli")
        assert _fetch("cli", "http://198.51.100.1:8000/") == (0, "only in srv")
        assert _fetch("cli", "http://10.77.3.2:8080/") == (0, "behind the NAT")
        assert f"dev {tun}" in in_ns("cli", "ip", "route", "get", "203.0.113.9")
        assert f"dev {tun}" in in_ns("cli", "ip", "route", "get", "8.8.8.8")
        direct = in_ns("cli", "ip", "route", "get", "10.77.100.1")
        assert "via 10.77.1.1" in direct and f"{TAG}ca" in direct, direct
        routes_up = in_ns("cli", "ip", "-4", "route", "show")
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
        client = app_proc("cli", conf(0, "vpn-client", 43), *client_args, "--passcode", PASSCODE)
        procs.append(client)
        client.wait_for("all traffic via")
        assert _fetch("cli", "http://198.51.100.1:8000/") == (0, "only in srv")
        client.stop(signal.SIGKILL)
        assert state.exists()
        assert "10.77.100.1 via 10.77.1.1" in in_ns("cli", "ip", "-4", "route", "show")
        assert _resolv() == "nameserver 10.77.2.53\n"
        assert _tuns("cli") == []  # the kernel took the TUN with the process

        wrong = app_proc("cli", conf(0, "vpn-client", 43), *client_args, "--passcode", "wrong")
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
        client = app_proc("cli", conf(0, "vpn-client", 43), *client_args, "--passcode", PASSCODE,
                          "--killswitch")  # fmt: skip
        procs.append(client)
        client.wait_for("all traffic via")
        (tun,) = _tuns("cli")

        # ---- the server's stop takes its NAT back
        assert server.stop() == 0, "".join(server.err)
        client.wait_for("route to the server ended")
        assert f"dev {tun}" in in_ns("cli", "ip", "route", "get", "203.0.113.9")
        assert client.stop() == 0, "".join(client.err)
        assert _routes("cli") == routes_before and _resolv() == resolv_before
        nat = in_ns("srv", "iptables", "-t", "nat", "-S", "POSTROUTING")
        assert "MASQUERADE" not in nat
        assert in_ns("srv", "sysctl", "-n", "net.ipv4.ip_forward").strip() == forward_before
        assert not (tmp_path / "srv.json").exists()
    finally:
        for p in reversed(procs):
            p.stop()

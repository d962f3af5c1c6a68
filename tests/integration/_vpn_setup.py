"""The network namespaces of the VPN test, shared by tests/integration/test_vpn_netns.py and
bench/vpn_bench.py.

    cli (10.77.1.2) ── net: visors 0─1─2 ── srv (10.77.2.2) ── inet (10.77.3.2, no way back)
                       app server for cli: 10.77.100.1 (not on cli's link)
                       app server for srv: 10.77.2.1
    srv also holds 198.51.100.1 (on its lo): reachable from nowhere else.

The namespace names carry the importing process's id, so parallel runs do not collide.
:func:`missing` says why the set-up cannot be built here (``None`` when it can), :func:`build`
makes it and :func:`teardown` removes it; :class:`Proc` runs a process in one namespace,
:func:`app_proc` a ``skywire app …`` process with a ``PROC_CONFIG``, and :func:`start_net` the
visors (tests/integration/_vpn_net.py) in ``net``.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
TAG = f"vp{os.getpid() % 100000}"
NS = {name: f"{TAG}-{name}" for name in ("net", "cli", "srv", "inet")}
RESOLV_DIR = Path("/etc/netns") / NS["cli"]
RESOLV_BEFORE = "nameserver 10.77.1.1\nsearch example.test\n"
CLIENT_APP_SERVER = "10.77.100.1"
SERVER_APP_SERVER = "10.77.2.1"


def missing() -> str | None:
    if os.geteuid() != 0:
        return "network namespaces and TUN devices need root"
    for tool in ("ip", "iptables", "sysctl"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed (make test installs it as root)"
    if not os.path.exists("/dev/net/tun"):
        return "/dev/net/tun is missing"
    probe = f"{TAG}-probe"
    res = subprocess.run(["ip", "netns", "add", probe], capture_output=True, text=True)
    if res.returncode != 0:
        return f"cannot create a network namespace: {res.stderr.strip()}"
    subprocess.run(["ip", "netns", "del", probe], capture_output=True)
    return None


def sh(*args: str) -> str:
    res = subprocess.run(args, capture_output=True, text=True)
    if res.returncode != 0:
        raise RuntimeError(f"{' '.join(args)}: {res.stderr.strip()}")
    return res.stdout


def in_ns(ns: str, *args: str) -> str:
    return sh("ip", "netns", "exec", NS[ns], *args)


def _veth(a: str, a_addr: str, b: str, b_addr: str, name: str) -> None:
    sh("ip", "link", "add", f"{name}a", "type", "veth", "peer", "name", f"{name}b")
    for ns, end, addr in ((a, "a", a_addr), (b, "b", b_addr)):
        sh("ip", "link", "set", f"{name}{end}", "netns", NS[ns])
        in_ns(ns, "ip", "addr", "add", addr, "dev", f"{name}{end}")
        in_ns(ns, "ip", "link", "set", f"{name}{end}", "up")


def build() -> None:
    for ns in NS.values():
        sh("ip", "netns", "add", ns)
    for ns in NS:
        in_ns(ns, "ip", "link", "set", "lo", "up")
    _veth("cli", "10.77.1.2/24", "net", "10.77.1.1/24", f"{TAG}c")
    _veth("srv", "10.77.2.2/24", "net", "10.77.2.1/24", f"{TAG}s")
    _veth("srv", "10.77.3.1/24", "inet", "10.77.3.2/24", f"{TAG}i")
    in_ns("net", "ip", "addr", "add", f"{CLIENT_APP_SERVER}/32", "dev", "lo")
    in_ns("cli", "ip", "route", "add", "default", "via", "10.77.1.1")
    in_ns("srv", "ip", "route", "add", "default", "via", "10.77.3.2")
    in_ns("srv", "ip", "addr", "add", "198.51.100.1/32", "dev", "lo")
    RESOLV_DIR.mkdir(parents=True, exist_ok=True)
    (RESOLV_DIR / "resolv.conf").write_text(RESOLV_BEFORE)


def teardown() -> None:
    for ns in NS.values():
        subprocess.run(["ip", "netns", "del", ns], capture_output=True)
    shutil.rmtree(RESOLV_DIR, ignore_errors=True)


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


def app_proc(ns: str, conf: str, *args: str) -> Proc:
    return Proc(ns, sys.executable, "-m", "skywire.cli", "app", *args, env={"PROC_CONFIG": conf})


def start_net() -> tuple[Proc, str, Callable[[int, str, int], str]]:
    """The visors in ``net`` (tests/integration/_vpn_net.py): the process, visor 2's key, and
    ``conf(visor, app name, routing port)`` → a ``PROC_CONFIG`` for an app on that visor."""
    net = Proc("net", sys.executable, "-m", "tests.integration._vpn_net",
               CLIENT_APP_SERVER, SERVER_APP_SERVER)  # fmt: skip
    try:
        ready = net.line()
        assert ready.startswith("ready "), ready
    except BaseException:
        net.stop()
        raise
    srv_pk = ready.split()[1]

    def conf(visor: int, name: str, port: int) -> str:
        net.send(f"config {visor} {name} {port}")
        return net.line()

    return net, srv_pk, conf

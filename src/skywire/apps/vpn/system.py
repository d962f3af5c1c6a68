"""The host's network configuration as the VPN apps change it: ``ip``, ``iptables``, ``sysctl``
and ``/etc/resolv.conf``, one command per change (upstream ``os_linux.go``,
``os_server_linux.go``, ``os_client_linux.go`` run the same commands).

The parsing of command output is pure (``parse_*``), so it is tested without a host; every
command that fails raises :class:`SystemConfigError` with its stderr.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import itertools
import json
import os
from dataclasses import dataclass

from skywire.apps.vpn.errors import SystemConfigError

__all__ = [
    "DefaultRoute",
    "interface_ipv4s",
    "parse_default_route",
    "parse_interface_ipv4s",
    "route_args",
    "run",
]

IPv4 = ipaddress.IPv4Address
RESOLV_CONF = "/etc/resolv.conf"


async def run(*args: str, check: bool = True) -> str:
    """Run a command; its stdout. ``check`` raises :class:`SystemConfigError` on failure."""
    try:
        proc = await asyncio.create_subprocess_exec(
            *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
        )
    except OSError as exc:
        raise SystemConfigError(exc.errno, f"{args[0]}: {exc.strerror}") from exc
    out, err = await proc.communicate()
    if check and proc.returncode != 0:
        raise SystemConfigError(
            None, f"{' '.join(args)}: exit {proc.returncode}: {err.decode().strip()}"
        )
    return out.decode()


# ---------------------------------------------------------------------------- routes
@dataclass(frozen=True)
class DefaultRoute:
    gateway: IPv4 | None
    device: str


def parse_default_route(text: str) -> DefaultRoute | None:
    """The first IPv4 default route of ``ip -4 route show default``."""
    for line in text.splitlines():
        words = line.split()
        if not words or words[0] != "default":
            continue
        gateway = device = None
        for key, value in itertools.pairwise(words):
            if key == "via":
                gateway = value
            elif key == "dev":
                device = value
        if device is None:
            continue
        try:
            gw = IPv4(gateway) if gateway else None
        except ValueError:
            continue
        return DefaultRoute(gw, device)
    return None


async def default_route() -> DefaultRoute | None:
    return parse_default_route(await run("ip", "-4", "route", "show", "default"))


_NOT_ARGS = {"linkdown", "dead", "offload", "trap", "rt_offload", "rt_trap", "pervasive"}


def route_args(line: str) -> list[str]:
    """A line of ``ip route show`` as arguments ``ip route add|del`` takes back (state flags
    the kernel prints but does not accept are left out)."""
    return [w for w in line.split() if w not in _NOT_ARGS]


async def routes() -> list[str]:
    """The main IPv4 table, one route a line, as ``ip -4 route show`` prints it."""
    out = await run("ip", "-4", "route", "show", "table", "main")
    return [line.strip() for line in out.splitlines() if line.strip()]


async def add_route(dst: str, *via: str) -> None:
    """``ip route replace dst via …``: one change, whether the route existed or not."""
    await run("ip", "route", "replace", dst, *via)


async def delete_route(args: list[str]) -> None:
    """``ip route del …``; a route already gone is not an error."""
    await run("ip", "route", "del", *args, check=False)


# ---------------------------------------------------------------------------- links
def parse_interface_ipv4s(text: str) -> list[IPv4]:
    """The IPv4 addresses of ``ip -4 -j addr show``."""
    try:
        links = json.loads(text or "[]")
    except json.JSONDecodeError as exc:
        raise SystemConfigError(None, f"ip -j addr: not JSON: {exc}") from exc
    found: list[IPv4] = []
    for link in links if isinstance(links, list) else []:
        for info in link.get("addr_info", []) if isinstance(link, dict) else []:
            if isinstance(info, dict) and info.get("family") == "inet":
                try:
                    found.append(IPv4(info.get("local", "")))
                except ValueError:
                    continue
    return found


async def interface_ipv4s() -> list[IPv4]:
    return parse_interface_ipv4s(await run("ip", "-4", "-j", "addr", "show"))


async def set_up_tun(name: str, address: IPv4, prefix: int, mtu: int) -> None:
    """Upstream ``SetupTUN``: address, MTU, up."""
    await run("ip", "addr", "add", f"{address}/{prefix}", "dev", name)
    await run("ip", "link", "set", "dev", name, "mtu", str(mtu))
    await run("ip", "link", "set", name, "up")


# ---------------------------------------------------------------------------- forwarding, NAT
async def ipv4_forwarding() -> str:
    return (await run("sysctl", "-n", "net.ipv4.ip_forward")).strip()


async def set_ipv4_forwarding(value: str) -> None:
    await run("sysctl", "-q", "-w", f"net.ipv4.ip_forward={value}")


def parse_forward_policy(text: str) -> str:
    """The policy of ``iptables -S FORWARD``'s first line (``-P FORWARD ACCEPT``)."""
    for line in text.splitlines():
        words = line.split()
        if words[:2] == ["-P", "FORWARD"] and len(words) == 3:
            return words[2]
    raise SystemConfigError(None, "iptables -S FORWARD: no policy line")


async def forward_policy() -> str:
    return parse_forward_policy(await run("iptables", "-S", "FORWARD"))


async def set_forward_policy(policy: str) -> None:
    await run("iptables", "--policy", "FORWARD", policy)


def masquerade_rule(device: str) -> list[str]:
    return ["-t", "nat", "POSTROUTING", "-o", device, "-j", "MASQUERADE"]


async def masquerade(device: str, on: bool) -> None:
    """Upstream ``EnableIPMasquerading`` / ``DisableIPMasquerading``."""
    table, chain, *rule = masquerade_rule(device)[1:]
    if on:
        await run("iptables", "-t", table, "-A", chain, *rule)
    else:
        await run("iptables", "-t", table, "-D", chain, *rule, check=False)


async def masquerading(device: str) -> bool:
    out = await run("iptables", "-t", "nat", "-S", "POSTROUTING", check=False)
    return f"-A POSTROUTING -o {device} -j MASQUERADE" in out


# ---------------------------------------------------------------------------- DNS
def read_resolv_conf(path: str = RESOLV_CONF) -> str | None:
    try:
        with open(path) as f:
            return f.read()
    except FileNotFoundError:
        return None


def write_resolv_conf(text: str | None, path: str = RESOLV_CONF) -> None:
    """Rewritten in place (truncate, write): ``/etc/resolv.conf`` may be a bind mount (as
    ``ip netns exec`` makes it), which a rename could not replace. ``None`` removes it."""
    if text is None:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
        return
    with open(path, "w") as f:
        f.write(text)

"""What the visor tells an app by environment at its start, as upstream's visor does.

Only vpn-client gets anything: where the services, the dmsg servers and the transports' peers
are (``ADDR_DMSG_DISC``, ``ADDR_TP_DISC``, ``ADDR_RF``, ``ADDR_ADDRESS_RESOLVER``,
``ADDR_UPTIME_TRACKER``, ``DMSG_SRV_COUNT`` + ``ADDR_DMSG_SRV_<i>``, ``TP_REMOTE_IPS_LEN`` +
``ADDR_TP_REMOTE_<i>``), so that the client keeps their traffic off its TUN: the visor's own
links must not be routed into the tunnel they carry.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from skywire.visor.config import AppConfig, VisorConfig

__all__ = ["app_env", "peer_ip"]


def peer_ip(stream: Any) -> str | None:
    """The IP address at the far end of a transport's stream: the first ``peername`` (TCP) or
    ``remote_addr`` (KCP) found going down its ``inner`` layers (Noise…); ``None`` for a
    stream with no address of its own (dmsg)."""
    for _ in range(8):
        if stream is None:
            return None
        peer = getattr(stream, "peername", None)
        if isinstance(peer, tuple) and peer:
            return str(peer[0])
        remote = getattr(stream, "remote_addr", None)
        if isinstance(remote, tuple) and remote:
            return str(remote[0])
        stream = getattr(stream, "inner", None)
    return None


def app_env(
    app: AppConfig,
    cfg: VisorConfig,
    dmsg_peers: Iterable[tuple[str, int] | None],
    transport_streams: Iterable[Any],
) -> dict[str, str]:
    """The environment of ``app``'s next run (empty but for vpn-client)."""
    if app.name != "vpn-client":
        return {}
    env = {
        "ADDR_DMSG_DISC": cfg.dmsg.discovery,
        "ADDR_TP_DISC": cfg.transport.discovery,
        "ADDR_RF": cfg.routing.route_finder,
        "ADDR_ADDRESS_RESOLVER": cfg.transport.address_resolver,
        "ADDR_UPTIME_TRACKER": cfg.uptime_tracker.addr,
    }
    servers = [peer[0] for peer in dmsg_peers if peer is not None]
    env["DMSG_SRV_COUNT"] = str(len(servers))
    env.update({f"ADDR_DMSG_SRV_{i}": host for i, host in enumerate(servers)})
    remotes = sorted({ip for ip in map(peer_ip, transport_streams) if ip is not None})
    env["TP_REMOTE_IPS_LEN"] = str(len(remotes))
    env.update({f"ADDR_TP_REMOTE_{i}": ip for i, ip in enumerate(remotes)})
    return env

"""What the VPN apps changed on the host, written down before each change.

The client writes a :class:`ClientState` file before it touches anything (the main routing
table and ``/etc/resolv.conf`` as they were) and adds to it *before* each change (each route
it is about to add, that it is about to rewrite ``resolv.conf``). Undoing is the same on stop
and, after a crash (``kill -9``), at the next start: delete each recorded route, put back any
route of the snapshot that is missing, write the old ``resolv.conf`` back, remove the file.
Recording first means a crash between the record and the change leaves only an undo of
something that never happened, which is harmless. The server keeps a :class:`ServerState`
the same way (IPv4 forwarding value, FORWARD policy, the MASQUERADE rule it added).

Upstream keeps these values in memory only, so a crashed upstream client leaves its routes.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from skywire.apps.vpn.errors import VpnError

__all__ = ["ClientState", "ServerState", "StateFile", "missing_routes"]


@dataclass(frozen=True)
class ClientState:
    routes_before: tuple[str, ...]
    resolv_conf: str | None = None  # the content before; None: there was no file
    resolv_changed: bool = False
    added_routes: tuple[tuple[str, ...], ...] = ()

    def adding(self, args: list[str]) -> ClientState:
        if tuple(args) in self.added_routes:
            return self
        return replace(self, added_routes=(*self.added_routes, tuple(args)))

    def dropping(self, args: list[str]) -> ClientState:
        return replace(self, added_routes=tuple(a for a in self.added_routes if a != tuple(args)))

    def changing_dns(self) -> ClientState:
        return replace(self, resolv_changed=True)


@dataclass(frozen=True)
class ServerState:
    ip_forward: str | None = None
    forward_policy: str | None = None
    masquerade_device: str | None = None


def missing_routes(before: tuple[str, ...] | list[str], now: list[str]) -> list[str]:
    """Routes of ``before`` not in ``now``, in their old order (compared word by word)."""
    have = {tuple(line.split()) for line in now}
    return [line for line in before if tuple(line.split()) not in have]


class StateFile:
    """One JSON file; written whole to a temporary name and renamed into place."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    def exists(self) -> bool:
        return self.path.exists()

    def save(self, state: ClientState | ServerState) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(self.path.name + ".tmp")
        with open(tmp, "w") as f:
            json.dump(asdict(state), f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.path)

    def _load(self) -> dict[str, Any]:
        try:
            obj = json.loads(self.path.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise VpnError(f"{self.path}: unreadable state: {exc}") from exc
        if not isinstance(obj, dict):
            raise VpnError(f"{self.path}: state is not a JSON object")
        return obj

    def load_client(self) -> ClientState:
        obj = self._load()
        try:
            return ClientState(
                routes_before=tuple(str(r) for r in obj["routes_before"]),
                resolv_conf=obj.get("resolv_conf"),
                resolv_changed=bool(obj.get("resolv_changed", False)),
                added_routes=tuple(tuple(str(w) for w in r) for r in obj.get("added_routes", [])),
            )
        except (KeyError, TypeError) as exc:
            raise VpnError(f"{self.path}: bad client state: {exc}") from exc

    def load_server(self) -> ServerState:
        obj = self._load()
        return ServerState(
            ip_forward=obj.get("ip_forward"),
            forward_policy=obj.get("forward_policy"),
            masquerade_device=obj.get("masquerade_device"),
        )

    def remove(self) -> None:
        self.path.unlink(missing_ok=True)

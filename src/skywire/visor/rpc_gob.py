"""The control API as upstream's ``skywire cli`` calls it: Go net/rpc (gob) service ``app-visor``.

Upstream registers its ``visor.RPC`` receiver as ``app-visor`` (``pkg/visor/rpc.go``
``RPCPrefix``), so the CLI calls ``app-visor.Summary``, ``app-visor.Transports`` … with the
argument and reply types of ``pkg/visor/api.go``. This module holds those types as gob
descriptors (the Go field names and kinds; gob matches struct fields by name, so a reply
decodes into the CLI's ``visor.Summary`` and friends) and :func:`visor_rpc_server`, a
:class:`~skywire.wire.netrpc.RPCServer` whose handlers answer from the visor. The listener that
tells gob connections from HTTP ones on the same port is :mod:`skywire.visor.rpc_port`.

An upstream method this visor has no counterpart for answers ``not implemented`` (upstream's
``ErrNotImplemented`` text), a name upstream does not have answers net/rpc's own ``rpc: can't
find method …``: the CLI prints either, nothing hangs.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from skywire.cipher import PubKey
from skywire.routing.rule import RuleError, rule_from_summary
from skywire.visor.app_values import AppState, AppStatus
from skywire.visor.config import AppConfig
from skywire.visor.launcher import Launcher
from skywire.wire.gob import (
    GoAny,
    GobDecoder,
    GobEncoder,
    GobError,
    GoBinaryMarshaler,
    GoBool,
    GoFloat64,
    GoInt,
    GoInt64,
    GoMap,
    GoPtr,
    GoSlice,
    GoString,
    GoStruct,
    GoType,
    GoUint16,
    GoUint32,
    GoUint64,
)
from skywire.wire.gob_types import PUBKEY, RULE, RULES, UUID
from skywire.wire.netrpc import RPCMethod, RPCServer

__all__ = [
    "ADD_TRANSPORT_IN",
    "APP_STATE",
    "APP_STATES",
    "EMPTY",
    "HEALTH_INFO",
    "NOT_IMPLEMENTED",
    "OVERVIEW",
    "SERVICE",
    "SET_AUTO_START_IN",
    "SUMMARY",
    "TRANSPORTS_IN",
    "TRANSPORT_SUMMARIES",
    "TRANSPORT_SUMMARY",
    "UPSTREAM_METHODS",
    "GobVisorAPI",
    "TransportLog",
    "app_state",
    "transport_summary",
    "visor_rpc_server",
]

SERVICE = "app-visor"
"""Upstream's ``visor.RPCPrefix``: the net/rpc service name the CLI calls."""

NOT_IMPLEMENTED = "not implemented"
"""Upstream's ``visor.ErrNotImplemented`` text."""

# ---------------------------------------------------------------- upstream types (api.go, rpc.go)
EMPTY = GoStruct("", [])
"""``struct{}``: the argument of every query and the reply of every command."""

BUILD_INFO = GoStruct(
    "Info", [("Version", GoString), ("Commit", GoString), ("Date", GoString)]
)  # skywire-utilities buildinfo.Info


@dataclass(frozen=True, slots=True)
class TransportLog:
    """``transport.LogEntry``: bytes received and sent on a transport."""

    recv: int
    sent: int


def _log_entry_bytes(log: TransportLog) -> bytes:
    # upstream's LogEntry.GobEncode: a nested gob stream of two uint64 values
    return GobEncoder().encode_many([(log.recv, GoUint64), (log.sent, GoUint64)])


def _log_entry_from(data: bytes) -> TransportLog:
    decoder = GobDecoder()
    decoder.feed(bytes(data))
    values = [decoder.next_value(GoUint64) for _ in range(2)]
    if values[0] is None or values[1] is None or decoder.buffered:
        raise GobError("transport.LogEntry: want two uint64 values")
    return TransportLog(int(values[0].value), int(values[1].value))


LOG_ENTRY = GoBinaryMarshaler(
    "LogEntry",
    TransportLog,
    marshal=_log_entry_bytes,
    unmarshal=_log_entry_from,
    wire_kind="GobEncoderT",
)
"""``transport.LogEntry``, which is a ``GobEncoder`` (two counters in a nested gob stream)."""

TRANSPORT_SUMMARY = GoStruct(
    "TransportSummary",
    [
        ("ID", UUID),
        ("Local", PUBKEY),
        ("Remote", PUBKEY),
        ("Type", GoString),  # network.Type
        ("Log", GoPtr(LOG_ENTRY)),
        ("IsSetup", GoBool),
        ("Label", GoString),  # transport.Label
    ],
)
APP_CONFIG = GoStruct(
    "AppConfig",
    [
        ("Name", GoString),
        ("Binary", GoString),
        ("Args", GoSlice(GoString, "[]string")),
        ("AutoStart", GoBool),
        ("Port", GoUint16),  # routing.Port
    ],
)
APP_STATE = GoStruct(
    "AppState",
    # AppConfig is embedded: gob sends it as a field named after its type
    [("AppConfig", APP_CONFIG), ("Status", GoInt), ("DetailedStatus", GoString)],
)
"""``appserver.AppState``; ``Status``: 0 stopped, 1 running, 2 errored, 3 starting."""

_PUBKEYS = GoSlice(PUBKEY, "[]cipher.PubKey")
OVERVIEW = GoStruct(
    "Overview",
    [
        ("PubKey", PUBKEY),
        ("BuildInfo", GoPtr(BUILD_INFO)),
        ("AppProtoVersion", GoString),
        ("Apps", GoSlice(GoPtr(APP_STATE), "[]*appserver.AppState")),
        ("Transports", GoSlice(GoPtr(TRANSPORT_SUMMARY), "[]*visor.TransportSummary")),
        ("RoutesCount", GoInt),
        ("LocalIP", GoString),
        ("PublicIP", GoString),
        ("IsSymmetricNAT", GoBool),
        ("Hypervisors", _PUBKEYS),
        ("ConnectedHypervisor", _PUBKEYS),
    ],
)
HEALTH_INFO = GoStruct("HealthInfo", [("ServicesHealth", GoString)])
DMSG_CLIENT_SUMMARY = GoStruct(
    "DmsgClientSummary", [("PK", PUBKEY), ("ServerPK", PUBKEY), ("RoundTrip", GoInt64)]
)  # dmsgtracker.DmsgClientSummary; RoundTrip is a time.Duration (ns)
PERSISTENT_TRANSPORTS = GoStruct("PersistentTransports", [("PK", PUBKEY), ("NetType", GoString)])
SUMMARY = GoStruct(
    "Summary",
    [
        ("Overview", GoPtr(OVERVIEW)),
        ("Health", GoPtr(HEALTH_INFO)),
        ("Uptime", GoFloat64),
        ("IsHypervisor", GoBool),
        ("DmsgStats", GoPtr(DMSG_CLIENT_SUMMARY)),
        ("Online", GoBool),
        ("MinHops", GoUint16),
        (
            "PersistentTransports",
            GoSlice(PERSISTENT_TRANSPORTS, "[]transport.PersistentTransports"),
        ),
        ("SkybianBuildVersion", GoString),
        ("RewardAddress", GoString),
        ("BuildTag", GoString),
        ("PublicAutoconnect", GoBool),
    ],
)
"""``visor.Summary`` without ``Routes`` (upstream fills it for the hypervisor only)."""

PORT_DETAIL = GoStruct("PortDetail", [("Port", GoString), ("Type", GoString)])
PORTS = GoMap(GoString, PORT_DETAIL)
TRANSPORTS_IN = GoStruct(
    "TransportsIn",
    [
        ("FilterTypes", GoSlice(GoString, "[]string")),
        ("FilterPubKeys", _PUBKEYS),
        ("ShowLogs", GoBool),
    ],
)
ADD_TRANSPORT_IN = GoStruct(
    "AddTransportIn", [("RemotePK", PUBKEY), ("TpType", GoString), ("Timeout", GoInt64)]
)
"""``visor.AddTransportIn``; ``Timeout`` is a ``time.Duration`` in nanoseconds (0: none)."""
SET_AUTO_START_IN = GoStruct("SetAutoStartIn", [("AppName", GoString), ("AutoStart", GoBool)])
TRANSPORT_SUMMARIES = GoSlice(GoPtr(TRANSPORT_SUMMARY))
APP_STATES = GoSlice(GoPtr(APP_STATE))
_STRINGS = GoSlice(GoString)

_UPSTREAM_NAMES = """
Health Uptime SetRewardAddress GetRewardAddress DeleteRewardAddress LogsSince Summary Overview
SetAppDetailedStatus SetAppError App Apps StartApp AddApp DoCustomSetting RegisterApp
DeregisterApp StopApp KillApp StartVPNClient StopVPNClient FetchUptimeTrackerData
StartSkysocksClient StopSkysocksClients RestartApp SetAutoStart SetAppPassword
SetAppNetworkInterface SetAppPK SetAppKillswitch SetAppSecure SetAppAddress GetAppStats
GetAppError GetAppConnectionsSummary TransportTypes Transports Transport AddTransport
RemoveTransport RemoveAllTransports DiscoverTransportsByPK DiscoverTransportByID RoutingRules
RoutingRule SaveRoutingRule RemoveRoutingRule RouteGroups Reload Shutdown SetMinHops
GetPersistentTransports SetPersistentTransports SetPublicAutoconnect VPNServers ProxyServers
RemoteVisors Ports IsDMSGClientReady RegisterHTTPPort DeregisterHTTPPort ListHTTPPorts Connect
Disconnect List DialPing Ping StopPing TestVisor
"""
UPSTREAM_METHODS = tuple(_UPSTREAM_NAMES.split())
"""Every method of upstream's ``visor.RPC`` (skywire 0e7420a5)."""


# ---------------------------------------------------------------- what the visor provides
class Summarized(Protocol):
    """A transport as the API lists it (``summary()``: the JSON API's object)."""

    def summary(self) -> dict[str, object]: ...


class GobVisorAPI(Protocol):
    """What the net/rpc handlers call; the JSON API's ``VisorAPI`` is a superset."""

    @property
    def launcher(self) -> Launcher | None: ...

    def save_apps(self, apps: list[AppConfig]) -> None: ...

    def info(self) -> dict[str, Any]: ...

    def transport_types(self) -> list[str]: ...

    def transports(self) -> Sequence[Summarized]: ...

    async def add_transport(self, pk: PubKey, tp_type: str) -> Summarized: ...

    async def remove_transport(self, tp_id: uuid.UUID) -> None: ...

    def rules(self) -> list[dict[str, Any]]: ...

    def ports(self) -> list[dict[str, Any]]: ...

    def halt(self) -> None: ...


# ---------------------------------------------------------------- our values in upstream's shape
_GO_STATUS = {
    AppState.STOPPED: (0, "Stopped"),
    AppState.STARTING: (3, "Starting"),
    AppState.RUNNING: (1, "Running"),
    AppState.RESTARTING: (3, "Restarting"),
    AppState.ERRORED: (2, "Errored"),
    AppState.STOPPING: (1, "Shutting down"),
}


def app_state(status: AppStatus, config: AppConfig | None) -> dict[str, Any]:
    """An ``appserver.AppState`` from the launcher's status (and the app's config)."""
    code, detail = _GO_STATUS[status.state]
    if status.state is AppState.ERRORED and status.last_error:
        detail = f"{detail}: {status.last_error}"
    return {
        "AppConfig": {
            "Name": status.name,
            "Binary": config.binary if config else "",
            "Args": list(config.args) if config else [],
            "AutoStart": status.auto_start,
            "Port": status.port,
        },
        "Status": code,
        "DetailedStatus": detail,
    }


def transport_summary(summary: dict[str, object], *, logs: bool = True) -> dict[str, Any]:
    """A ``visor.TransportSummary`` from the JSON API's transport object."""
    out: dict[str, Any] = {
        "ID": uuid.UUID(str(summary["id"])),
        "Local": PubKey.from_hex(str(summary["local_pk"])),
        "Remote": PubKey.from_hex(str(summary["remote_pk"])),
        "Type": str(summary["type"]),
        "IsSetup": False,
        "Label": str(summary.get("label") or ""),
    }
    if logs:
        recv, sent = summary.get("received", 0), summary.get("sent", 0)
        out["Log"] = TransportLog(
            recv if isinstance(recv, int) else 0, sent if isinstance(sent, int) else 0
        )
    return out


class _Handlers:
    """The ``app-visor`` methods, each answering from the visor."""

    def __init__(self, api: GobVisorAPI) -> None:
        self.api = api

    def _launcher(self) -> Launcher:
        found = self.api.launcher
        if found is None:
            raise LookupError("no apps here (this visor runs no app launcher)")
        return found

    def _apps(self) -> list[dict[str, Any]]:
        launcher = self.api.launcher
        if launcher is None:
            return []
        configs = {c.name: c for c in launcher.apps()}
        return [app_state(s, configs.get(s.name)) for s in launcher.statuses()]

    def _transports(self, logs: bool = True) -> list[dict[str, Any]]:
        return [transport_summary(tp.summary(), logs=logs) for tp in self.api.transports()]

    def _rules(self) -> list[bytes]:
        out = []
        for summary in self.api.rules():
            try:
                out.append(rule_from_summary(summary).to_bytes())
            except RuleError:
                continue
        return out

    async def overview(self, _: object) -> dict[str, Any]:
        info = self.api.info()
        return {
            "PubKey": PubKey.from_hex(str(info["pk"])),
            "BuildInfo": {"Version": str(info.get("version", "")), "Commit": "", "Date": ""},
            "Apps": self._apps(),
            "Transports": self._transports(),
            "RoutesCount": len(self.api.rules()),
        }

    async def summary(self, arg: object) -> dict[str, Any]:
        info = self.api.info()
        pk = PubKey.from_hex(str(info["pk"]))
        servers = [str(s) for s in info.get("dmsg_servers") or []]
        dmsg: dict[str, Any] = {"PK": pk, "RoundTrip": 0}
        if servers:
            dmsg["ServerPK"] = PubKey.from_hex(servers[0])
        return {
            "Overview": await self.overview(arg),
            "Health": {"ServicesHealth": ""},
            "Uptime": float(info.get("uptime_s", 0.0)),
            "DmsgStats": dmsg,
            "Online": bool(servers),
        }

    async def health(self, _: object) -> dict[str, Any]:
        return {"ServicesHealth": ""}

    async def uptime(self, _: object) -> float:
        return float(self.api.info().get("uptime_s", 0.0))

    async def ports(self, _: object) -> dict[str, dict[str, str]]:
        out: dict[str, dict[str, str]] = {}
        for row in self.api.ports():
            name = str(row.get("what", ""))
            if name in out:
                name = f"{name} {row.get('port')}"
            out[name] = {"Port": str(row.get("port", "")), "Type": str(row.get("kind", ""))}
        return out

    async def is_dmsg_ready(self, _: object) -> bool:
        return bool(self.api.info().get("dmsg_servers"))

    async def transport_types(self, _: object) -> list[str]:
        return list(self.api.transport_types())

    async def transports(self, arg: dict[str, Any]) -> list[dict[str, Any]]:
        types = arg.get("FilterTypes") or []
        pks = set(arg.get("FilterPubKeys") or [])
        return [
            tp
            for tp in self._transports(bool(arg.get("ShowLogs")))
            if (not types or tp["Type"] in types)
            and (not pks or tp["Local"] in pks or tp["Remote"] in pks)
        ]

    async def transport(self, tp_id: uuid.UUID) -> dict[str, Any]:
        for tp in self._transports():
            if tp["ID"] == tp_id:
                return tp
        raise LookupError("not found")

    async def add_transport(self, arg: dict[str, Any]) -> dict[str, Any]:
        pk, tp_type, timeout_ns = arg.get("RemotePK"), str(arg.get("TpType", "")), arg["Timeout"]
        if not isinstance(pk, PubKey) or pk == PubKey.NULL:
            raise ValueError("a remote public key is required")
        async with asyncio.timeout(timeout_ns / 1e9 if timeout_ns > 0 else None):
            tp = await self.api.add_transport(pk, tp_type)
        return transport_summary(tp.summary())

    async def remove_transport(self, tp_id: uuid.UUID) -> dict[str, Any]:
        await self.api.remove_transport(tp_id)
        return {}

    async def remove_all_transports(self, _: object) -> dict[str, Any]:
        for tp in self._transports(False):
            await self.api.remove_transport(tp["ID"])
        return {}

    async def apps(self, _: object) -> list[dict[str, Any]]:
        return self._apps()

    async def app(self, name: str) -> dict[str, Any]:
        for state in self._apps():
            if state["AppConfig"]["Name"] == name:
                return state
        raise LookupError(f"no app named {name!r}")

    async def start_app(self, name: str) -> dict[str, Any]:
        await self._launcher().start(name)
        return {}

    async def stop_app(self, name: str) -> dict[str, Any]:
        await self._launcher().stop(name)
        return {}

    async def restart_app(self, name: str) -> dict[str, Any]:
        await self._launcher().restart(name)
        return {}

    async def set_auto_start(self, arg: dict[str, Any]) -> dict[str, Any]:
        launcher = self._launcher()
        launcher.set_autostart(str(arg.get("AppName", "")), bool(arg.get("AutoStart")))
        self.api.save_apps(launcher.apps())
        return {}

    async def routing_rules(self, _: object) -> list[bytes]:
        return self._rules()

    async def routing_rule(self, key: int) -> bytes:
        for summary in self.api.rules():
            if summary.get("key") == key:
                return rule_from_summary(summary).to_bytes()
        raise LookupError(f"no rule under route ID {key}")

    async def shutdown(self, _: object) -> dict[str, Any]:
        self.api.halt()
        return {}


async def _not_implemented(_: object) -> None:
    raise NotImplementedError(NOT_IMPLEMENTED)


def visor_rpc_server(api: GobVisorAPI) -> RPCServer:
    """A net/rpc server with upstream's ``app-visor`` service, answering from ``api``."""
    h = _Handlers(api)
    served: dict[str, tuple[Callable[[Any], Awaitable[Any]], GoType, GoType]] = {
        "Overview": (h.overview, EMPTY, OVERVIEW),
        "Summary": (h.summary, EMPTY, SUMMARY),
        "Health": (h.health, EMPTY, HEALTH_INFO),
        "Uptime": (h.uptime, EMPTY, GoFloat64),
        "Ports": (h.ports, EMPTY, PORTS),
        "IsDMSGClientReady": (h.is_dmsg_ready, EMPTY, GoBool),
        "TransportTypes": (h.transport_types, EMPTY, _STRINGS),
        "Transports": (h.transports, TRANSPORTS_IN, TRANSPORT_SUMMARIES),
        "Transport": (h.transport, UUID, TRANSPORT_SUMMARY),
        "AddTransport": (h.add_transport, ADD_TRANSPORT_IN, TRANSPORT_SUMMARY),
        "RemoveTransport": (h.remove_transport, UUID, EMPTY),
        "RemoveAllTransports": (h.remove_all_transports, EMPTY, EMPTY),
        "Apps": (h.apps, EMPTY, APP_STATES),
        "App": (h.app, GoString, APP_STATE),
        "StartApp": (h.start_app, GoString, EMPTY),
        "StopApp": (h.stop_app, GoString, EMPTY),
        "RestartApp": (h.restart_app, GoString, EMPTY),
        "SetAutoStart": (h.set_auto_start, SET_AUTO_START_IN, EMPTY),
        "RoutingRules": (h.routing_rules, EMPTY, RULES),
        "RoutingRule": (h.routing_rule, GoUint32, RULE),
        "Shutdown": (h.shutdown, EMPTY, EMPTY),
    }
    methods = {name: RPCMethod(fn, arg, reply) for name, (fn, arg, reply) in served.items()}
    for name in UPSTREAM_METHODS:
        methods.setdefault(name, RPCMethod(_not_implemented, GoAny, EMPTY))
    server = RPCServer()
    server.register(SERVICE, methods)
    return server

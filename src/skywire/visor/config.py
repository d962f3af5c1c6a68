"""The visor configuration, ``skywire-config.json``, in the reference's shape (typed models).

Durations are Go duration strings (``"10s"``, ``"168h0m0s"``); keys keep the reference spelling
(``skywire-tcp``, ``sessions_count``...). Unknown keys are kept when a file is loaded and saved
again, so a file written by another implementation survives a round trip.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from skywire import __version__
from skywire.cipher import KeyPair, PubKey, SecKey

PROD_DMSG_DISCOVERY = "http://dmsgd.skywire.skycoin.com"
PROD_TPD = "http://tpd.skywire.skycoin.com"
PROD_AR = "http://ar.skywire.skycoin.com"
PROD_RF = "http://rf.skywire.skycoin.com"
PROD_SD = "http://sd.skycoin.com"

_DURATION = re.compile(r"^(?:(\d+(?:\.\d+)?)(h|m|s|ms|us|µs|ns))+$")
_PART = re.compile(r"(\d+(?:\.\d+)?)(h|ms|m|s|us|µs|ns)")
_UNITS = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 1e-3, "us": 1e-6, "µs": 1e-6, "ns": 1e-9}


def parse_duration(text: str) -> float:
    """A Go duration string in seconds (``"1m30s"`` → 90.0)."""
    if text in ("0", ""):
        return 0.0
    if not _DURATION.match(text):
        raise ValueError(f"invalid duration {text!r}")
    return sum(float(n) * _UNITS[u] for n, u in _PART.findall(text))


def format_duration(seconds: float) -> str:
    """Seconds as Go prints a duration (``90.0`` → ``"1m30s"``)."""
    if seconds == 0:
        return "0s"
    if seconds < 1:
        ms = seconds * 1e3
        return f"{ms:g}ms"
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    if h:
        return f"{int(h)}h{int(m)}m{s:g}s"
    if m:
        return f"{int(m)}m{s:g}s"
    return f"{s:g}s"


class _Model(BaseModel):
    model_config = ConfigDict(extra="allow", populate_by_name=True, validate_assignment=True)


class DmsgConfig(_Model):
    discovery: str = PROD_DMSG_DISCOVERY
    sessions_count: int = 1
    servers: list[dict[str, Any]] = Field(default_factory=list)
    servers_type: str = "all"


class DmsgPtyConfig(_Model):
    dmsg_port: int = 22
    cli_network: str = "unix"
    cli_address: str = "/tmp/dmsgpty.sock"
    whitelist: list[PubKey] = Field(default_factory=list)


class STCPConfig(_Model):
    pk_table: dict[str, str] = Field(default_factory=dict)
    listening_address: str = ":7777"


class LogStoreConfig(_Model):
    type: str = "file"
    location: str = "./local/transport_logs"
    rotation_interval: str = "168h0m0s"


class TransportConfig(_Model):
    discovery: str = PROD_TPD
    address_resolver: str = PROD_AR
    public_autoconnect: bool = True
    transport_setup: list[PubKey] = Field(default_factory=list)
    log_store: LogStoreConfig = Field(default_factory=LogStoreConfig)
    stcpr_port: int = 0
    sudph_port: int = 0


class RoutingConfig(_Model):
    route_setup_nodes: list[PubKey] = Field(default_factory=list)
    route_finder: str = PROD_RF
    route_finder_timeout: str = "10s"
    min_hops: int = 0

    @field_validator("route_finder_timeout")
    @classmethod
    def _duration(cls, v: str) -> str:
        parse_duration(v)
        return v


class UptimeTrackerConfig(_Model):
    addr: str = ""


class AppConfig(_Model):
    name: str
    binary: str = ""
    args: list[str] = Field(default_factory=list)
    auto_start: bool = False
    port: int = 0


def default_apps() -> list[AppConfig]:
    """The apps a new config lists, with upstream's names, routing ports and arguments:
    skychat (1, page on :8001) and skysocks (3) start with the visor; skysocks-client (13,
    SOCKS5 on :1080), vpn-server (44) and vpn-client (43) wait to be started."""
    return [
        AppConfig(name="vpn-client", binary="skywire", port=43, args=["app", "vpn-client"]),
        AppConfig(
            name="skychat",
            binary="skywire",
            auto_start=True,
            port=1,
            args=["app", "skychat", "--addr", ":8001"],
        ),
        AppConfig(
            name="skysocks", binary="skywire", auto_start=True, port=3, args=["app", "skysocks"]
        ),
        AppConfig(
            name="skysocks-client",
            binary="skywire",
            port=13,
            args=["app", "skysocks-client", "--addr", ":1080"],
        ),
        AppConfig(name="vpn-server", binary="skywire", port=44, args=["app", "vpn-server"]),
    ]


class LauncherConfig(_Model):
    service_discovery: str = PROD_SD
    apps: list[AppConfig] = Field(default_factory=list)
    server_addr: str = "localhost:5505"
    bin_path: str = "./apps"
    display_node_ip: bool = False


class DmsgWebConfig(_Model):
    """The embedded ``.dmsg`` resolving proxy (SOCKS5 and HTTP proxy on one port)."""

    enabled: bool = False
    listen: str = "127.0.0.1:4445"
    alias: str = "skywire"
    ready_timeout: float = 10.0
    """Seconds a request may wait for dmsg to be ready before it fails."""


class SkynetService(_Model):
    """A local TCP service published on a routing port (reached as ``<pk>.skynet:<port>``)."""

    port: int
    address: str


class SkynetWebConfig(_Model):
    """The embedded ``.skynet`` resolving proxy, and the local services this visor publishes."""

    enabled: bool = False
    listen: str = "127.0.0.1:4446"
    alias: str = "skywire"
    idle_timeout: float = 120.0
    """Seconds an unused pooled route is kept before it is closed."""
    services: list[SkynetService] = Field(default_factory=list)


class CookieConfig(_Model):
    """The dashboard's session cookie (upstream's ``hypervisor.cookies``, without the keys:
    sessions live on the server, the cookie holds a random id)."""

    expires_duration: str = "12h0m0s"
    path: str = "/"
    domain: str = ""

    @field_validator("expires_duration", mode="before")
    @classmethod
    def _duration(cls, v: object) -> str:
        if isinstance(v, int) and not isinstance(v, bool):  # upstream: Go nanoseconds
            v = format_duration(v / 1e9)
        if not isinstance(v, str) or parse_duration(v) <= 0:
            raise ValueError("expires_duration must be positive")
        return v


class HypervisorConfig(_Model):
    """A visor that is a hypervisor serves the dashboard on ``http_addr`` and takes the links
    of the visors that name it in their ``hypervisors`` on dmsg port ``dmsg_port``."""

    enabled: bool = False
    http_addr: str = "127.0.0.1:8000"
    dmsg_port: int = 46
    """Where visors' links arrive (they dial upstream's 46)."""
    db_path: str = ""
    """The accounts' SQLite file; empty: ``<local_path>/users.db``."""
    password: str = ""
    """When set, the ``admin`` account's password is set to it at every start (a change made
    on the page lasts until then); empty: the first visit creates the account, as upstream."""
    cookies: CookieConfig = Field(default_factory=CookieConfig)
    enable_tls: bool = False
    tls_cert_file: str = ""
    tls_key_file: str = ""


class PersistentTransport(_Model):
    pk: PubKey
    type: str


class VisorConfig(_Model):
    """The whole ``skywire-config.json``."""

    version: str = f"v{__version__}"
    sk: SecKey
    pk: PubKey
    dmsg: DmsgConfig = Field(default_factory=DmsgConfig)
    dmsgpty: DmsgPtyConfig = Field(default_factory=DmsgPtyConfig)
    skywire_tcp: STCPConfig = Field(default_factory=STCPConfig, alias="skywire-tcp")
    transport: TransportConfig = Field(default_factory=TransportConfig)
    routing: RoutingConfig = Field(default_factory=RoutingConfig)
    uptime_tracker: UptimeTrackerConfig = Field(default_factory=UptimeTrackerConfig)
    launcher: LauncherConfig = Field(default_factory=LauncherConfig)
    survey_whitelist: list[PubKey] = Field(default_factory=list)
    hypervisors: list[PubKey] = Field(default_factory=list)
    cli_addr: str = "localhost:3435"
    log_level: str = "info"
    local_path: str = "./local"
    dmsghttp_server_path: str = "./local/custom"
    stun_servers: list[str] = Field(default_factory=list)
    shutdown_timeout: str = "10s"
    is_public: bool = False
    persistent_transports: list[PersistentTransport] | None = None
    require_pq: bool = False
    """Refuse classical-only handshakes (as the SKYWIRE_REQUIRE_PQ environment switch does)."""
    dmsg_web: DmsgWebConfig = Field(default_factory=DmsgWebConfig)
    skynet_web: SkynetWebConfig = Field(default_factory=SkynetWebConfig)
    hypervisor: HypervisorConfig = Field(default_factory=HypervisorConfig)

    @model_validator(mode="after")
    def _keys_match(self) -> VisorConfig:
        if self.sk.pubkey() != self.pk:
            raise ValueError("pk does not belong to sk")
        return self

    @classmethod
    def generate(
        cls,
        *,
        sk: SecKey | None = None,
        dmsg_discovery: str = PROD_DMSG_DISCOVERY,
        tpd: str = PROD_TPD,
        ar: str = PROD_AR,
        rf: str = PROD_RF,
        setup_nodes: list[PubKey] | None = None,
        local_path: str = "./local",
        cli_addr: str = "localhost:3435",
    ) -> VisorConfig:
        kp = KeyPair.from_seckey(sk) if sk is not None else KeyPair.generate()
        return cls(
            sk=kp.sk,
            pk=kp.pk,
            dmsg=DmsgConfig(discovery=dmsg_discovery),
            transport=TransportConfig(
                discovery=tpd,
                address_resolver=ar,
                log_store=LogStoreConfig(location=f"{local_path}/transport_logs"),
            ),
            routing=RoutingConfig(route_finder=rf, route_setup_nodes=setup_nodes or []),
            launcher=LauncherConfig(apps=default_apps()),
            local_path=local_path,
            dmsghttp_server_path=f"{local_path}/custom",
            cli_addr=cli_addr,
        )

    def to_json(self) -> str:
        return json.dumps(self.model_dump(mode="json", by_alias=True), indent=2)

    @classmethod
    def from_json(cls, text: str) -> VisorConfig:
        return cls.model_validate_json(text)

    @classmethod
    def load(cls, path: str | Path) -> VisorConfig:
        return cls.from_json(Path(path).read_text())

    def save(self, path: str | Path) -> None:
        p = Path(path)
        p.write_text(self.to_json() + "\n")
        p.chmod(0o600)

    @property
    def shutdown_seconds(self) -> float:
        return parse_duration(self.shutdown_timeout)

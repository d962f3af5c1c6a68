"""The resolver hostname grammar, shared by both proxies (sans-I/O)::

    [<vhost>.]<r1>.…<rN>.<destPK>.<suffix>[:port]       suffix: dmsg | skynet; port 80 by default

The destination PK is the label next to the suffix. Walking left, every label shaped like a
public key (66 hex, or the 53-character base32 DNS-label form) or like a transport ID (32 hex,
or a 36-character dashed UUID) joins the routing chain, kept in source order (``r1`` nearest
this visor); the first other label ends the chain and the labels left of it are the vhost.
``<alias>.dmsg`` / ``<alias>.skynet`` (alias ``skywire`` by default) is this visor itself.

For ``.dmsg`` the chain is at most one label, and a pinned name reads
``<client>.<server>.dmsg``: the dmsg client to reach, then the dmsg server (next to the suffix)
to meet it through (:attr:`ProxyTarget.dmsg_peer`, :attr:`ProxyTarget.pinned_server`).
For ``.skynet`` each element is a hop of a source route: a visor's key, or a transport ID.

:func:`parse` refuses anything else with one :class:`~skywire.proxy.errors.HostnameError`
naming the label at fault; :func:`build` writes a name back, so ``parse(build(t)) == t``.
"""

from __future__ import annotations

import enum
import re
import uuid
from dataclasses import dataclass, field
from typing import Final

from skywire.cipher import CipherError, PubKey
from skywire.proxy.errors import HostnameError

__all__ = [
    "DEFAULT_ALIAS",
    "DEFAULT_PORT",
    "MAX_NAME_LENGTH",
    "Hop",
    "ProxyTarget",
    "Suffix",
    "build",
    "classify",
    "parse",
]

DEFAULT_PORT: Final = 80
DEFAULT_ALIAS: Final = "skywire"
MAX_NAME_LENGTH: Final = 1024
"""Longer names are refused before any parsing (a SOCKS5 name is at most 255 bytes anyway)."""

_HEX66 = re.compile(r"[0-9a-f]{66}")
_B32_53 = re.compile(r"[a-z2-7]{53}")
_HEX32 = re.compile(r"[0-9a-f]{32}")
_UUID36 = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
_LABEL = re.compile(r"[a-z0-9_]([a-z0-9_-]*[a-z0-9_])?")

Hop = PubKey | uuid.UUID
"""One element of a routing chain: a visor (or dmsg server) key, or a transport ID."""


class Suffix(enum.StrEnum):
    DMSG = "dmsg"
    SKYNET = "skynet"


@dataclass(frozen=True, slots=True)
class ProxyTarget:
    """What a resolver name asks for.

    ``dest`` is ``None`` for this visor itself (the alias); ``chain`` is in source order;
    ``vhost`` is empty when the name has none.
    """

    suffix: Suffix
    dest: PubKey | None
    chain: tuple[Hop, ...] = ()
    vhost: str = ""
    port: int = DEFAULT_PORT
    alias: str = field(default=DEFAULT_ALIAS, compare=False)

    @property
    def is_self(self) -> bool:
        return self.dest is None

    @property
    def pinned_server(self) -> PubKey | None:
        """The dmsg server a ``<client>.<server>.dmsg`` name pins (the label next to the
        suffix), if any."""
        if self.suffix is Suffix.DMSG and self.chain:
            return self.dest
        return None

    @property
    def dmsg_peer(self) -> PubKey | None:
        """The dmsg client a ``.dmsg`` name reaches: the destination of a bare name, the
        label left of the server in a pinned one; ``None`` for this node itself."""
        if self.suffix is Suffix.DMSG and self.chain and isinstance(self.chain[0], PubKey):
            return self.chain[0]
        return self.dest

    def __str__(self) -> str:
        return build(self)


def classify(label: str) -> Hop | None:
    """The routing element a (lower-case) label is shaped like, ``None`` for any other label.

    Raises :class:`HostnameError` for a label shaped like a key that is not one.
    """
    if _HEX66.fullmatch(label) or _B32_53.fullmatch(label):
        try:
            pk = PubKey.parse(label)
            pk.validate()
        except CipherError as exc:
            raise HostnameError(
                f"label {label!r} looks like a public key but is not: {exc}"
            ) from exc
        return pk
    if _HEX32.fullmatch(label) or _UUID36.fullmatch(label):
        return uuid.UUID(label)
    return None


def _split_port(name: str, default_port: int) -> tuple[str, int]:
    host, sep, port_text = name.rpartition(":")
    if not sep:
        return name, default_port
    if not port_text.isdigit() or len(port_text) > 5:
        raise HostnameError(f"{name!r}: port {port_text!r} is not a number")
    port = int(port_text)
    if not 1 <= port <= 65535:
        raise HostnameError(f"{name!r}: port {port} is out of range 1-65535")
    return host, port


def parse(
    name: str, *, default_port: int = DEFAULT_PORT, alias: str = DEFAULT_ALIAS
) -> ProxyTarget:
    """Parse ``name`` (``host`` or ``host:port``); see the module docstring."""
    if len(name) > MAX_NAME_LENGTH:
        raise HostnameError(f"name of {len(name)} characters is too long (max {MAX_NAME_LENGTH})")
    host, port = _split_port(name.strip(), default_port)
    host = host.lower().removesuffix(".")
    labels = host.split(".")
    try:
        suffix = Suffix(labels[-1])
    except ValueError:
        raise HostnameError(f"{host!r} is not a .dmsg or .skynet name") from None
    labels = labels[:-1]
    if not labels or labels == [""]:
        raise HostnameError(f"{host!r}: no destination before .{suffix}")
    for i, label in enumerate(labels):
        if not label:
            raise HostnameError(f"{host!r}: empty label at position {i + 1}")
    dest_label = labels[-1]
    if dest_label == alias.lower():
        vhost_labels = labels[:-1]
        _check_vhost(host, vhost_labels)
        return ProxyTarget(suffix, None, (), ".".join(vhost_labels), port, alias)
    dest = classify(dest_label)
    if not isinstance(dest, PubKey):
        what = "a transport ID" if isinstance(dest, uuid.UUID) else "not a public key"
        raise HostnameError(
            f"{host!r}: label {dest_label!r} next to .{suffix} is {what}; "
            "the destination must be a visor's public key (66 hex or 53 base32)"
        )
    chain: list[Hop] = []
    i = len(labels) - 2
    while i >= 0:
        hop = classify(labels[i])
        if hop is None:
            break
        chain.append(hop)
        i -= 1
    chain.reverse()
    vhost_labels = labels[: i + 1]
    _check_vhost(host, vhost_labels)
    if suffix is Suffix.DMSG:
        if len(chain) > 1:
            raise HostnameError(
                f"{host!r}: a .dmsg name pins at most one dmsg server; found {len(chain)} "
                f"routing labels ({', '.join(_show(h) for h in chain)})"
            )
        if chain and isinstance(chain[0], uuid.UUID):
            raise HostnameError(
                f"{host!r}: label {str(chain[0])!r} is a transport ID; "
                "a .dmsg name can only pin a dmsg server's public key"
            )
    return ProxyTarget(suffix, dest, tuple(chain), ".".join(vhost_labels), port, alias)


def _check_vhost(host: str, labels: list[str]) -> None:
    for label in labels:
        if len(label) > 66 or not _LABEL.fullmatch(label):
            raise HostnameError(f"{host!r}: label {label!r} is not a valid host name label")


def _show(hop: Hop) -> str:
    return hop.hex() if isinstance(hop, PubKey) else str(hop)


def build(target: ProxyTarget, *, dns_labels: bool = False, with_port: bool | None = None) -> str:
    """The name of ``target`` (keys as hex, or as base32 DNS labels with ``dns_labels``); the
    port is written when it is not the default, or always/never with ``with_port``."""

    def key(pk: PubKey) -> str:
        return pk.dns_label() if dns_labels else pk.hex()

    parts = [target.vhost] if target.vhost else []
    parts += [key(h) if isinstance(h, PubKey) else h.hex for h in target.chain]
    parts.append(target.alias if target.dest is None else key(target.dest))
    parts.append(target.suffix.value)
    name = ".".join(parts)
    show_port = target.port != DEFAULT_PORT if with_port is None else with_port
    return f"{name}:{target.port}" if show_port else name

"""The dmsg port of the service commands: ``--sk``, ``--dmsg-disc``, ``--survey-whitelist``.

With a key, ``skywire svc tpd|ar|rf`` serve their HTTP API on dmsg port 80 as well, with
``/debug/*`` open to the survey whitelist (:mod:`skywire.services.dmsgport`); without one they
serve on TCP only and say that the dmsg port, and so ``/debug``, is off.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Collection, Sequence
from typing import TYPE_CHECKING, Annotated

import typer

from skywire.cipher import CipherError, PubKey, SecKey
from skywire.visor.config import PROD_DMSG_DISCOVERY

if TYPE_CHECKING:
    from aiohttp import web

    from skywire.services.appserver import AppServer
    from skywire.services.dmsgport import DmsgPort, DmsgPortConfig

SkOption = Annotated[
    str,
    typer.Option(
        "--sk",
        help="Secret key (hex): also serve the API on dmsg port 80, with /debug for the survey "
        "whitelist. Empty: no dmsg port.",
        envvar="SKYWIRE_SK",
    ),
]
DmsgDiscOption = Annotated[
    str, typer.Option("--dmsg-disc", help="dmsg discovery URL for the dmsg port (with --sk).")
]
SurveyWhitelistOption = Annotated[
    list[str] | None,
    typer.Option(
        "--survey-whitelist",
        metavar="PK",
        help="A dmsg public key (hex) allowed to read /debug/* on the dmsg port; repeat it (or "
        "separate keys with commas) for more. Without one, /debug answers 403 to everybody.",
    ),
]
DEFAULT_DMSG_DISC = PROD_DMSG_DISCOVERY


def parse_sk(text: str, option: str = "--sk") -> SecKey | None:
    """The secret key of ``--sk`` (None when empty)."""
    text = text.strip()
    if not text:
        return None
    try:
        return SecKey.from_hex(text)
    except CipherError as exc:
        raise typer.BadParameter(str(exc), param_hint=option) from exc


def parse_whitelist(
    items: Sequence[str] | None, option: str = "--survey-whitelist"
) -> frozenset[PubKey]:
    """The keys of every ``--survey-whitelist`` (each may hold several, comma-separated)."""
    keys: set[PubKey] = set()
    for item in items or ():
        for text in filter(None, (p.strip() for p in item.split(","))):
            try:
                keys.add(PubKey.from_hex(text))
            except CipherError as exc:
                raise typer.BadParameter(f"{text!r}: {exc}", param_hint=option) from exc
    return frozenset(keys)


def dmsg_port_config(
    sk: str, dmsg_disc: str, survey_whitelist: Sequence[str] | None, *, min_sessions: int = 1
) -> DmsgPortConfig | None:
    """What ``--sk``, ``--dmsg-disc`` and ``--survey-whitelist`` ask for (None: no key, no dmsg
    port), checked before anything starts."""
    from skywire.services.dmsgport import DmsgPortConfig, DmsgPortConfigError

    whitelist = parse_whitelist(survey_whitelist)
    key = parse_sk(sk)
    if key is None:
        return None
    try:
        return DmsgPortConfig(key, dmsg_disc, whitelist, min_sessions=min_sessions)
    except DmsgPortConfigError as exc:
        raise typer.BadParameter(str(exc), param_hint="--dmsg-disc") from exc


def dmsg_port_line(config: DmsgPortConfig | None) -> str:
    """The one line a service prints about its dmsg port."""
    if config is None:
        return "dmsg port off (no --sk): the API is on TCP only and /debug is not served"
    return (
        f"also serving on {config.url} (dmsg discovery {config.disc_url}); "
        f"/debug open to {debug_audience(config.survey_whitelist)}"
    )


def debug_audience(survey_whitelist: Collection[PubKey]) -> str:
    """Who may read ``/debug``, in words."""
    n = len(survey_whitelist)
    return f"{n} survey-whitelisted key{'s' if n != 1 else ''}" if n else "nobody (no whitelist)"


@contextlib.asynccontextmanager
async def optional_dmsg_port(
    config: DmsgPortConfig | None, app: web.Application | web.BaseRunner | None
) -> AsyncIterator[DmsgPort | None]:
    """``app`` on dmsg port 80 under ``config`` for as long as the block runs; nothing without
    a config."""
    if config is None:
        yield None
        return
    from skywire.services.dmsgport import DmsgPort

    async with DmsgPort(config, app) as port:
        yield port


@contextlib.asynccontextmanager
async def serve_app(
    app: web.Application, host: str, port: int, dmsg: DmsgPortConfig | None
) -> AsyncIterator[tuple[AppServer, DmsgPort | None]]:
    """A service's ``app`` on TCP ``host:port`` and, with ``dmsg``, on dmsg port 80 too, with
    ``/debug/*`` for ``dmsg.survey_whitelist`` (mounted on the one app, so on TCP as well, where
    it answers 403: a TCP caller has no dmsg key)."""
    from skywire.services.appserver import AppServer
    from skywire.services.dmsgport import with_debug

    if dmsg is not None:
        with_debug(app, dmsg.survey_whitelist)
    async with (
        AppServer(host, port, app=app) as server,
        optional_dmsg_port(dmsg, server.runner) as dmsg_port,
    ):
        yield server, dmsg_port

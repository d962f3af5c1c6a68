"""``skywire dmsg disc``: run the dmsg discovery service (with ``--sk``, on dmsg port 80 too,
with ``/debug/*`` for the survey whitelist)."""

from __future__ import annotations

import contextlib
import os
from collections.abc import AsyncIterator, Collection
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from skywire.cipher import CipherError, PubKey, SecKey
from skywire.cli.common import (
    AddrOption,
    DbOption,
    LogFormatOption,
    LogLevelOption,
    RedisNamespaceOption,
    RedisOption,
    describe_store,
    install_stop_signals,
    parse_addr,
    run_service,
    setup_logging,
)
from skywire.cli.svc_dmsgport import (
    SurveyWhitelistOption,
    debug_audience,
    dmsg_port_line,
    optional_dmsg_port,
    parse_whitelist,
)
from skywire.services.dmsgdisc.store import StoreKind

if TYPE_CHECKING:
    from skywire.dmsg.client import Backoff
    from skywire.services.appserver import AppServer
    from skywire.services.dmsgdisc.store import DiscStore
    from skywire.services.dmsgport import DmsgPort

_DEFAULT_DB = Path("./dmsg-discovery.db")


def _parse_pks(text: str, option: str) -> list[PubKey]:
    out: list[PubKey] = []
    for item in filter(None, (p.strip() for p in text.split(","))):
        try:
            out.append(PubKey.from_hex(item))
        except CipherError as exc:
            raise typer.BadParameter(f"{item!r}: {exc}", param_hint=option) from exc
    return out


@contextlib.asynccontextmanager
async def discovery_serving(
    store: DiscStore,
    host: str,
    port: int,
    *,
    sk: SecKey | None,
    survey_whitelist: Collection[PubKey] = (),
    backoff: Backoff | None = None,
    **app_options: Any,
) -> AsyncIterator[tuple[AppServer, DmsgPort | None]]:
    """The discovery's app on TCP ``host:port`` and, with ``sk``, on dmsg port 80 too, with
    ``/debug/*`` for ``survey_whitelist`` (on the one app: on TCP it answers 403). Its dmsg
    client keeps a session with every server and publishes its entry through the TCP side."""
    from skywire.services.appserver import AppServer
    from skywire.services.dmsgdisc.api import make_app
    from skywire.services.dmsgport import DmsgPortConfig, with_debug

    app = make_app(store, **app_options)
    if sk is not None:
        with_debug(app, survey_whitelist)
    async with AppServer(host, port, app=app) as server:
        config = None
        if sk is not None:
            whitelist = frozenset(survey_whitelist)
            config = DmsgPortConfig(sk, server.url, whitelist, min_sessions=0, backoff=backoff)
        async with optional_dmsg_port(config, server.runner) as dmsg_port:
            yield server, dmsg_port


async def _serve(
    *,
    host: str,
    port: int,
    store_kind: StoreKind,
    db: Path,
    redis_url: str,
    redis_namespace: str,
    test_mode: bool,
    auth: str,
    official_servers: list[PubKey],
    sk: SecKey | None = None,
    survey_whitelist: Collection[PubKey] = (),
) -> None:
    from skywire.services.dmsgdisc.store import open_store

    stop = install_stop_signals()

    store = await open_store(
        store_kind,
        db=str(db),
        redis_url=redis_url,
        redis_password=os.environ.get("REDIS_PASSWORD") or None,
        namespace=redis_namespace,
    )
    where = describe_store(store_kind, db=db, redis_url=redis_url)
    serving = discovery_serving(
        store,
        host,
        port,
        sk=sk,
        survey_whitelist=survey_whitelist,
        test_mode=test_mode,
        auth_passphrase=auth,
        official_servers=official_servers,
    )
    async with store, serving as (server, dmsg_port):
        shown = f"{host or '*'}:{server.port}"
        typer.echo(f"dmsg discovery listening on {shown} (store: {where})")
        if test_mode:
            typer.echo("test mode: loopback server addresses are accepted")
        if dmsg_port is None:
            typer.echo(dmsg_port_line(None))
        else:
            typer.echo(
                f"also serving over dmsg at {dmsg_port.url}; "
                f"/debug open to {debug_audience(dmsg_port.config.survey_whitelist)}"
            )
        await stop.wait()
        typer.echo("shutting down")


def _parse_sk(text: str) -> SecKey | None:
    if not text:
        return None
    try:
        return SecKey.from_hex(text)
    except CipherError as exc:
        raise typer.BadParameter(str(exc), param_hint="--sk") from exc


def register(dmsg_app: typer.Typer) -> None:
    """Attach ``disc`` to the ``skywire dmsg`` command group."""

    @dmsg_app.command("disc")
    def disc(
        addr: AddrOption = ":9090",
        store: Annotated[
            StoreKind, typer.Option("--store", help="Where entries live.")
        ] = StoreKind.sqlite,
        db: DbOption = _DEFAULT_DB,
        redis: RedisOption = "redis://localhost:6379",
        redis_namespace: RedisNamespaceOption = "",
        test_mode: Annotated[
            bool, typer.Option("--test-mode", "-t", help="Accept loopback server addresses.")
        ] = False,
        auth: Annotated[
            str,
            typer.Option(
                "--auth", help="Passphrase marking a server entry 'official' via serverType."
            ),
        ] = "",
        official_servers: Annotated[
            str,
            typer.Option(
                "--official-servers", help="Comma-separated PKs of official dmsg servers."
            ),
        ] = "",
        log_level: LogLevelOption = None,
        log_format: LogFormatOption = None,
        sk: Annotated[
            str,
            typer.Option(
                "--sk",
                help="Secret key: also serve the API over dmsg (port 80), connected to every "
                "server, with /debug for --survey-whitelist.",
                envvar="SKYWIRE_SK",
            ),
        ] = "",
        survey_whitelist: SurveyWhitelistOption = None,
    ) -> None:
        """Run the dmsg discovery service (HTTP API of skycoin/dmsg's dmsg-discovery)."""
        setup_logging(log_level, log_format)
        host, port = parse_addr(addr)
        officials = _parse_pks(official_servers, "--official-servers")
        run_service(
            _serve(
                host=host,
                port=port,
                store_kind=store,
                db=db,
                redis_url=redis,
                redis_namespace=redis_namespace,
                test_mode=test_mode,
                auth=auth,
                official_servers=officials,
                sk=_parse_sk(sk),
                survey_whitelist=parse_whitelist(survey_whitelist),
            ),
            "dmsg discovery",
        )

"""``skywire svc sd``: run the service discovery (with ``--sk``, on dmsg port 80 too)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from skywire.cli.common import (
    AddrOption,
    DbOption,
    LogFormatOption,
    LogLevelOption,
    PgSchemaOption,
    PgUrlOption,
    describe_store,
    install_stop_signals,
    parse_addr,
    run_service,
    setup_logging,
)
from skywire.cli.svc_dmsgport import (
    DEFAULT_DMSG_DISC,
    DmsgDiscOption,
    SkOption,
    SurveyWhitelistOption,
    dmsg_port_config,
    dmsg_port_line,
    serve_app,
)
from skywire.services.sd.store import DEFAULT_DB, DEFAULT_PG_URL, DEFAULT_TTL, StoreKind

if TYPE_CHECKING:
    from skywire.services.dmsgport import DmsgPortConfig


async def _serve(
    *,
    host: str,
    port: int,
    store_kind: StoreKind,
    db: Path,
    pg_url: str,
    pg_schema: str,
    ttl: float | None,
    dmsg: DmsgPortConfig | None,
) -> None:
    from skywire.services.sd.api import make_app
    from skywire.services.sd.store import open_store

    stop = install_stop_signals()

    store = await open_store(
        store_kind, db=str(db), pg_url=pg_url, pg_schema=pg_schema or None, ttl=ttl
    )
    where = describe_store(store_kind, db=db, pg_url=pg_url, pg_schema=pg_schema)
    lifetime = "entries never expire" if ttl is None else f"entries live {ttl:g} s"
    async with store, serve_app(make_app(store), host, port, dmsg) as (server, _):
        typer.echo(
            f"service discovery listening on {host or '*'}:{server.port} "
            f"(store: {where}; {lifetime})"
        )
        typer.echo(dmsg_port_line(dmsg))
        await stop.wait()
        typer.echo("shutting down")


def register(svc_app: typer.Typer) -> None:
    """Attach ``sd`` to the ``skywire svc`` command group."""

    @svc_app.command("sd")
    def sd(
        addr: AddrOption = "127.0.0.1:9098",
        store: Annotated[
            StoreKind, typer.Option("--store", help="Where services and nonces live.")
        ] = StoreKind.sqlite,
        db: DbOption = Path(DEFAULT_DB),
        pg_url: PgUrlOption = DEFAULT_PG_URL,
        pg_schema: PgSchemaOption = "",
        entry_timeout: Annotated[
            float,
            typer.Option(
                "--entry-timeout",
                min=0.0,
                help="Seconds an entry lives after its last registration (0: forever).",
            ),
        ] = DEFAULT_TTL,
        sk: SkOption = "",
        dmsg_disc: DmsgDiscOption = DEFAULT_DMSG_DISC,
        survey_whitelist: SurveyWhitelistOption = None,
        log_level: LogLevelOption = None,
        log_format: LogFormatOption = None,
    ) -> None:
        """Run the service discovery (public proxies, VPN servers and visors, by type)."""
        setup_logging(log_level, log_format)
        host, port = parse_addr(addr)
        dmsg = dmsg_port_config(sk, dmsg_disc, survey_whitelist)
        if not math.isfinite(entry_timeout):
            raise typer.BadParameter("must be a finite number", param_hint="--entry-timeout")
        run_service(
            _serve(
                host=host,
                port=port,
                store_kind=store,
                db=db,
                pg_url=pg_url,
                pg_schema=pg_schema,
                ttl=entry_timeout or None,
                dmsg=dmsg,
            ),
            "service discovery",
        )

"""``skywire svc tpd``: run the transport discovery service (with ``--sk``, on dmsg port 80 too)."""

from __future__ import annotations

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
from skywire.services.tpd.store import StoreKind

if TYPE_CHECKING:
    from skywire.services.dmsgport import DmsgPortConfig

_DEFAULT_DB = Path("./transport-discovery.db")
_DEFAULT_PG = "postgresql://postgres@127.0.0.1:5432/postgres"


async def _serve(
    *,
    host: str,
    port: int,
    store_kind: StoreKind,
    db: Path,
    pg_url: str,
    pg_schema: str,
    dmsg: DmsgPortConfig | None,
) -> None:
    from skywire.services.tpd.api import make_app
    from skywire.services.tpd.store import open_store

    stop = install_stop_signals()

    store = await open_store(store_kind, db=str(db), pg_url=pg_url, pg_schema=pg_schema or None)
    where = describe_store(store_kind, db=db, pg_url=pg_url, pg_schema=pg_schema)
    async with store, serve_app(make_app(store), host, port, dmsg) as (server, _):
        typer.echo(f"transport discovery listening on {host or '*'}:{server.port} (store: {where})")
        typer.echo(dmsg_port_line(dmsg))
        await stop.wait()
        typer.echo("shutting down")


def register(svc_app: typer.Typer) -> None:
    """Attach ``tpd`` to the ``skywire svc`` command group."""

    @svc_app.command("tpd")
    def tpd(
        addr: AddrOption = "127.0.0.1:9091",
        store: Annotated[
            StoreKind, typer.Option("--store", help="Where transports and nonces live.")
        ] = StoreKind.sqlite,
        db: DbOption = _DEFAULT_DB,
        pg_url: PgUrlOption = _DEFAULT_PG,
        pg_schema: PgSchemaOption = "",
        sk: SkOption = "",
        dmsg_disc: DmsgDiscOption = DEFAULT_DMSG_DISC,
        survey_whitelist: SurveyWhitelistOption = None,
        log_level: LogLevelOption = None,
        log_format: LogFormatOption = None,
    ) -> None:
        """Run the transport discovery service (registry of signed transport entries)."""
        setup_logging(log_level, log_format)
        host, port = parse_addr(addr)
        dmsg = dmsg_port_config(sk, dmsg_disc, survey_whitelist)
        run_service(
            _serve(
                host=host,
                port=port,
                store_kind=store,
                db=db,
                pg_url=pg_url,
                pg_schema=pg_schema,
                dmsg=dmsg,
            ),
            "transport discovery",
        )

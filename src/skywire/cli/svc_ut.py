"""``skywire svc ut``: run the uptime tracker (with ``--sk``, on dmsg port 80 too)."""

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
from skywire.services.ut.api import DEFAULT_RETENTION_DAYS
from skywire.services.ut.store import DEFAULT_DB, DEFAULT_PG_URL, StoreKind
from skywire.services.ut.uptime import DEFAULT_TOLERANCE

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
    tolerance: float,
    retention_days: int | None,
    dmsg: DmsgPortConfig | None,
) -> None:
    from skywire.services.ut.api import make_app
    from skywire.services.ut.store import open_store

    stop = install_stop_signals()
    store = await open_store(store_kind, db=str(db), pg_url=pg_url, pg_schema=pg_schema or None)
    where = describe_store(store_kind, db=db, pg_url=pg_url, pg_schema=pg_schema)
    app = make_app(store, tolerance=tolerance, retention_days=retention_days)
    kept = "kept forever" if retention_days is None else f"kept {retention_days} days"
    async with store, serve_app(app, host, port, dmsg) as (server, _):
        typer.echo(
            f"uptime tracker listening on {host or '*'}:{server.port} "
            f"(store: {where}; gaps up to {tolerance:g} s credited; {kept})"
        )
        typer.echo(dmsg_port_line(dmsg))
        await stop.wait()
        typer.echo("shutting down")


def register(svc_app: typer.Typer) -> None:
    """Attach ``ut`` to the ``skywire svc`` command group."""

    @svc_app.command("ut")
    def ut(
        addr: AddrOption = "127.0.0.1:9096",
        store: Annotated[
            StoreKind, typer.Option("--store", help="Where uptimes and nonces live.")
        ] = StoreKind.sqlite,
        db: DbOption = Path(DEFAULT_DB),
        pg_url: PgUrlOption = DEFAULT_PG_URL,
        pg_schema: PgSchemaOption = "",
        tolerance: Annotated[
            float,
            typer.Option(
                "--tolerance",
                min=1.0,
                max=86400.0,
                help="Longest gap between two heartbeats credited as up (seconds); also how "
                "long a visor counts as online after its last heartbeat.",
            ),
        ] = DEFAULT_TOLERANCE,
        retention_days: Annotated[
            int,
            typer.Option("--retention-days", min=0, help="Days of uptime kept (0: forever)."),
        ] = DEFAULT_RETENTION_DAYS,
        sk: SkOption = "",
        dmsg_disc: DmsgDiscOption = DEFAULT_DMSG_DISC,
        survey_whitelist: SurveyWhitelistOption = None,
        log_level: LogLevelOption = None,
        log_format: LogFormatOption = None,
    ) -> None:
        """Run the uptime tracker (visors' signed heartbeats; uptime per key and day)."""
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
                tolerance=tolerance,
                retention_days=retention_days or None,
                dmsg=dmsg,
            ),
            "uptime tracker",
        )

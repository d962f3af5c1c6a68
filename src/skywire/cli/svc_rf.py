"""``skywire svc rf``: run the route finder service (with ``--sk``, on dmsg port 80 too)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from skywire.cli.common import (
    AddrOption,
    LogFormatOption,
    LogLevelOption,
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

if TYPE_CHECKING:
    from skywire.services.dmsgport import DmsgPortConfig


async def _serve(
    *,
    host: str,
    port: int,
    tpd: str,
    pg_url: str,
    pg_schema: str,
    refresh: float,
    by_hops: bool,
    dmsg: DmsgPortConfig | None,
) -> None:
    from skywire.services.rf.api import RouteFinder, make_app
    from skywire.services.rf.pgsource import PostgresTransportSource
    from skywire.services.rf.source import HttpTransportSource

    stop = install_stop_signals()

    source: HttpTransportSource | PostgresTransportSource
    if pg_url:
        source = await PostgresTransportSource.open(pg_url, schema=pg_schema or None)
        where = f"{source.table} at {pg_url}"
    else:
        source = HttpTransportSource(tpd)
        where = source.url
    finder = RouteFinder(source, weighted=not by_hops, refresh_interval=refresh)
    try:
        async with serve_app(make_app(finder), host, port, dmsg) as (server, _):
            order = "hop count" if by_hops else "latency-weighted"
            typer.echo(
                f"route finder listening on {host or '*'}:{server.port} "
                f"(transports from {where} every {refresh:g} s; {order})"
            )
            typer.echo(dmsg_port_line(dmsg))
            await stop.wait()
            typer.echo("shutting down")
    finally:
        await source.close()


def register(svc_app: typer.Typer) -> None:
    """Attach ``rf`` to the ``skywire svc`` command group."""

    @svc_app.command("rf")
    def rf(
        tpd: Annotated[
            str, typer.Option("--tpd", help="Transport discovery base URL (http://host:port).")
        ] = "",
        pg_url: Annotated[
            str,
            typer.Option(
                "--pg-url",
                help="Instead of --tpd: read transport discovery's PostgreSQL store directly"
                " (whole once, then only what its change log lists; rebuilt only on changes).",
            ),
        ] = "",
        pg_schema: Annotated[
            str, typer.Option("--pg-schema", help="Its schema (tpd's --pg-schema), with --pg-url.")
        ] = "",
        addr: AddrOption = "127.0.0.1:9092",
        refresh: Annotated[
            float,
            typer.Option("--refresh", help="Seconds between graph rebuilds from the TPD.", min=0.1),
        ] = 3.0,
        by_hops: Annotated[
            bool,
            typer.Option("--by-hops", help="Rank by hop count instead of measured latency."),
        ] = False,
        sk: SkOption = "",
        dmsg_disc: DmsgDiscOption = DEFAULT_DMSG_DISC,
        survey_whitelist: SurveyWhitelistOption = None,
        log_level: LogLevelOption = None,
        log_format: LogFormatOption = None,
    ) -> None:
        """Run the route finder (POST /routes over the transport discovery's graph)."""
        if bool(tpd) == bool(pg_url):
            raise typer.BadParameter("give exactly one of --tpd and --pg-url")
        setup_logging(log_level, log_format)
        host, port = parse_addr(addr)
        dmsg = dmsg_port_config(sk, dmsg_disc, survey_whitelist)
        run_service(
            _serve(
                host=host,
                port=port,
                tpd=tpd,
                pg_url=pg_url,
                pg_schema=pg_schema,
                refresh=refresh,
                by_hops=by_hops,
                dmsg=dmsg,
            ),
            "route finder",
        )

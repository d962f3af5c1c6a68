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
    refresh: float,
    by_hops: bool,
    dmsg: DmsgPortConfig | None,
) -> None:
    from skywire.services.rf.api import RouteFinder, make_app
    from skywire.services.rf.source import HttpTransportSource

    stop = install_stop_signals()

    source = HttpTransportSource(tpd)
    finder = RouteFinder(source, weighted=not by_hops, refresh_interval=refresh)
    try:
        async with serve_app(make_app(finder), host, port, dmsg) as (server, _):
            order = "hop count" if by_hops else "latency-weighted"
            typer.echo(
                f"route finder listening on {host or '*'}:{server.port} "
                f"(transports from {source.url} every {refresh:g} s; {order})"
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
        ],
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
        setup_logging(log_level, log_format)
        host, port = parse_addr(addr)
        dmsg = dmsg_port_config(sk, dmsg_disc, survey_whitelist)
        run_service(
            _serve(host=host, port=port, tpd=tpd, refresh=refresh, by_hops=by_hops, dmsg=dmsg),
            "route finder",
        )

"""``skywire svc sn``: run a route setup node (dmsg port 36; ``/stats``, ``/health``,
``/metrics`` and ``/debug/*`` on dmsg port 80)."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Annotated

import typer

from skywire.cli.common import (
    LogFormatOption,
    LogLevelOption,
    install_stop_signals,
    run_service,
    setup_logging,
)
from skywire.cli.svc_dmsgport import (
    SurveyWhitelistOption,
    debug_audience,
    parse_sk,
    parse_whitelist,
)

if TYPE_CHECKING:
    from skywire.services.dmsgport import DmsgPort, DmsgPortConfig
    from skywire.services.rsn.node import SetupNode


@contextlib.asynccontextmanager
async def setup_node_on_dmsg(
    config: DmsgPortConfig, *, request_timeout: float, ready_timeout: float = 30.0
) -> AsyncIterator[tuple[SetupNode, DmsgPort]]:
    """A setup node on the dmsg client of ``config``, ready: route setup on dmsg port 36, its
    app (``/stats``, ``/health``, ``/metrics``) with ``/debug/*`` for the survey whitelist on
    dmsg port 80."""
    from skywire.services.dmsgport import DmsgPort, with_debug
    from skywire.services.rsn.api import make_app
    from skywire.services.rsn.node import SetupNode

    async with DmsgPort(config) as port:
        await port.ready(timeout=ready_timeout)
        # the node's own port-80 server is off: this one serves its app with /debug mounted
        async with SetupNode(port.client, request_timeout=request_timeout, http_port=None) as node:
            await port.serve(with_debug(make_app(node.stats), config.survey_whitelist))
            yield node, port


async def _serve(*, config: DmsgPortConfig, request_timeout: float) -> None:
    stop = install_stop_signals()
    async with setup_node_on_dmsg(config, request_timeout=request_timeout) as (_, port):
        pk = port.pk.hex()
        typer.echo(f"route setup node {pk} serving on dmsg port 36 (stats: dmsg://{pk}:80/stats)")
        typer.echo(f"/debug on {port.url} open to {debug_audience(config.survey_whitelist)}")
        await stop.wait()
        typer.echo("shutting down")


def register(svc_app: typer.Typer) -> None:
    """Attach ``sn`` to the ``skywire svc`` command group."""

    @svc_app.command("sn")
    def sn(
        dmsg_disc: Annotated[
            str, typer.Option("--dmsg-disc", "-d", help="dmsg discovery URL (http://host:port).")
        ],
        sk: Annotated[
            str,
            typer.Option(
                "--sk", "-s", help="Secret key (hex); a fresh one when empty.", envvar="SKYWIRE_SK"
            ),
        ] = "",
        sessions: Annotated[
            int, typer.Option("--sessions", help="dmsg servers to keep sessions with.", min=1)
        ] = 1,
        request_timeout: Annotated[
            float, typer.Option("--timeout", help="Seconds per route setup request.", min=0.1)
        ] = 30.0,
        survey_whitelist: SurveyWhitelistOption = None,
        log_level: LogLevelOption = None,
        log_format: LogFormatOption = None,
    ) -> None:
        """Run a route setup node: reserves route IDs on every hop and installs the rules."""
        from skywire.cipher import SecKey
        from skywire.services.dmsgport import DmsgPortConfig, DmsgPortConfigError

        setup_logging(log_level, log_format)
        whitelist = parse_whitelist(survey_whitelist)
        key = parse_sk(sk)
        if key is None:
            key = SecKey.generate()
        try:
            config = DmsgPortConfig(key, dmsg_disc, whitelist, min_sessions=sessions)
        except DmsgPortConfigError as exc:
            raise typer.BadParameter(str(exc), param_hint="--dmsg-disc") from exc
        run_service(_serve(config=config, request_timeout=request_timeout), "setup node")

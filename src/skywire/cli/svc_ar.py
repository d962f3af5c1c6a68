"""``skywire svc ar``: run the address resolver (HTTP + sudph UDP; with ``--sk``, the HTTP API
on dmsg port 80 too)."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Annotated

import typer

from skywire.cli.common import (
    LogFormatOption,
    LogLevelOption,
    RedisNamespaceOption,
    RedisOption,
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
    optional_dmsg_port,
)
from skywire.services.ar.store import StoreKind

if TYPE_CHECKING:
    from skywire.services.dmsgport import DmsgPortConfig


async def _serve(
    *,
    http: tuple[str, int],
    udp: tuple[str, int],
    store_kind: StoreKind,
    redis_url: str,
    redis_namespace: str,
    test_mode: bool,
    trust_forwarded: bool,
    stcpr_ttl: float | None,
    dmsg: DmsgPortConfig | None,
) -> None:
    from skywire.services.ar.api import ARServer
    from skywire.services.ar.store import open_store

    stop = install_stop_signals()

    store = await open_store(
        store_kind,
        redis_url=redis_url,
        redis_password=os.environ.get("REDIS_PASSWORD") or None,
        namespace=redis_namespace,
    )
    where = "memory" if store_kind is StoreKind.memory else f"redis {redis_url}"
    server = ARServer(
        store,
        http[0],
        http[1],
        udp[1],
        udp_host=udp[0],
        test_mode=test_mode,
        trust_forwarded=trust_forwarded,
        stcpr_ttl=stcpr_ttl,
        survey_whitelist=dmsg.survey_whitelist if dmsg is not None else None,
    )
    async with store, server, optional_dmsg_port(dmsg, server.runner):
        udp_host, udp_port = server.udp_addr
        typer.echo(
            f"address resolver listening on {http[0] or '*'}:{server.http_port} (HTTP), "
            f"{udp_host}:{udp_port} (UDP) (store: {where})"
        )
        if test_mode:
            typer.echo("test mode: stcpr binds from non-public addresses are accepted")
        typer.echo(dmsg_port_line(dmsg))
        await stop.wait()
        typer.echo("shutting down")


def register(svc_app: typer.Typer) -> None:
    """Attach ``ar`` to the ``skywire svc`` command group."""

    @svc_app.command("ar")
    def ar(
        addr: Annotated[
            str,
            typer.Option(
                "--addr", "-a", help="HTTP listen address host:port (empty host: all interfaces)."
            ),
        ] = "127.0.0.1:9093",
        udp_addr: Annotated[
            str,
            typer.Option(
                "--udp-addr",
                help="UDP (sudph bind, KCP) listen address host:port; default: the --addr port, "
                "where visors look for it when their resolver URL names a port (30178 when not).",
            ),
        ] = "",
        store: Annotated[
            StoreKind, typer.Option("--store", help="Where binds live.")
        ] = StoreKind.memory,
        redis: RedisOption = "redis://localhost:6379",
        redis_namespace: RedisNamespaceOption = "",
        test_mode: Annotated[
            bool,
            typer.Option(
                "--test-mode", "-t", help="Accept stcpr binds from loopback/private addresses."
            ),
        ] = False,
        trust_forwarded: Annotated[
            bool,
            typer.Option(
                "--trust-forwarded",
                help="Take the client IP from X-Real-IP / X-Forwarded-For (behind a proxy).",
            ),
        ] = False,
        stcpr_ttl: Annotated[
            float,
            typer.Option("--stcpr-ttl", help="Seconds an stcpr bind lives (0: until deleted)."),
        ] = 0.0,
        sk: SkOption = "",
        dmsg_disc: DmsgDiscOption = DEFAULT_DMSG_DISC,
        survey_whitelist: SurveyWhitelistOption = None,
        log_level: LogLevelOption = None,
        log_format: LogFormatOption = None,
    ) -> None:
        """Run the address resolver (stcpr/sudph binds; HTTP API and UDP/KCP side)."""
        setup_logging(log_level, log_format)
        http = parse_addr(addr, "--addr")
        udp = parse_addr(udp_addr, "--udp-addr") if udp_addr else http
        dmsg = dmsg_port_config(sk, dmsg_disc, survey_whitelist)
        run_service(
            _serve(
                http=http,
                udp=udp,
                store_kind=store,
                redis_url=redis,
                redis_namespace=redis_namespace,
                test_mode=test_mode,
                trust_forwarded=trust_forwarded,
                stcpr_ttl=stcpr_ttl if stcpr_ttl > 0 else None,
                dmsg=dmsg,
            ),
            "address resolver",
        )

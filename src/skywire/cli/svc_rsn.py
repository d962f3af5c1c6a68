"""``skywire svc sn``: run a route setup node (dmsg port 36; ``/stats`` on dmsg port 80)."""

from __future__ import annotations

from typing import Annotated

import typer

from skywire.cli.common import (
    LogLevelOption,
    install_stop_signals,
    run_service,
    setup_logging,
)


async def _serve(*, sk_hex: str, disc: str, sessions: int, request_timeout: float) -> None:
    from skywire.cipher import SecKey
    from skywire.dmsg.client import Client
    from skywire.services.dmsgdisc.client import DiscClient
    from skywire.services.rsn.node import SetupNode

    sk = SecKey.from_hex(sk_hex) if sk_hex else SecKey.generate()
    stop = install_stop_signals()
    async with (
        DiscClient(disc) as dc,
        Client(sk, dc, min_sessions=sessions) as client,
    ):
        await client.ready(timeout=30)
        async with SetupNode(client, request_timeout=request_timeout):
            pk = sk.pubkey().hex()
            typer.echo(
                f"route setup node {pk} serving on dmsg port 36 (stats: dmsg://{pk}:80/stats)"
            )
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
        log_level: LogLevelOption = "info",
    ) -> None:
        """Run a route setup node: reserves route IDs on every hop and installs the rules."""
        setup_logging(log_level)
        run_service(
            _serve(sk_hex=sk, disc=dmsg_disc, sessions=sessions, request_timeout=request_timeout),
            "setup node",
        )

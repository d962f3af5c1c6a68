"""``skywire dmsg web``: the ``.dmsg`` resolving proxy on its own (SOCKS5 and HTTP proxy)."""

from __future__ import annotations

import asyncio
from typing import Annotated

import typer
from rich.console import Console

from skywire.cipher import CipherError, PubKey, SecKey
from skywire.cli.common import (
    LogFormatOption,
    LogLevelOption,
    parse_addr,
    run_until_interrupted,
    setup_logging,
)

err = Console(stderr=True)


def web(
    disc: Annotated[
        str,
        typer.Option(
            "--disc",
            "-d",
            help="dmsg discovery URL (also where server entries are read at start).",
            envvar="SKYWIRE_DMSG_DISC",
        ),
    ] = "http://127.0.0.1:9090",
    disc_pk: Annotated[
        str,
        typer.Option(
            "--disc-pk",
            help="Reach the discovery over dmsg (its key): the client's own sessions carry its "
            "requests, with every server entry preloaded from --disc.",
        ),
    ] = "",
    listen: Annotated[
        str, typer.Option("--listen", "-l", help="Proxy address (SOCKS5 and HTTP proxy).")
    ] = "127.0.0.1:4445",
    sk: Annotated[
        str,
        typer.Option("--sk", help="Secret key (hex); a fresh one when empty.", envvar="DMSGWEBSK"),
    ] = "",
    sessions: Annotated[int, typer.Option(help="dmsg servers to keep sessions with.")] = 1,
    ready_timeout: Annotated[
        float, typer.Option(help="Seconds a request waits for dmsg to be ready.")
    ] = 10.0,
    log_level: LogLevelOption = None,
    log_format: LogFormatOption = None,
) -> None:
    """Serve <pk>.dmsg names to browsers and curl: SOCKS5 (use socks5h) and HTTP proxy.

    Names: <pk>.dmsg[:port], <vhost>.<pk>.dmsg (Host rewritten to <vhost>),
    <pk>.<server-pk>.dmsg (through that dmsg server, no discovery lookup of <pk>).
    One dmsg client serves every request. The proxy listens at once; requests made before
    dmsg is ready wait up to --ready-timeout seconds.
    """
    setup_logging(log_level, log_format)
    host, port = parse_addr(listen, "--listen")
    try:
        key = SecKey.from_hex(sk) if sk else SecKey.generate()
        server_of_disc = PubKey.from_hex(disc_pk) if disc_pk else None
    except CipherError as exc:
        raise typer.BadParameter(str(exc)) from exc

    async def main(stop: asyncio.Event) -> None:
        from skywire.dmsg.client import Client
        from skywire.proxy.dmsgweb import DmsgConnector
        from skywire.proxy.hostname import Suffix
        from skywire.proxy.server import ProxyServer
        from skywire.services.dmsgdisc.client import DiscClient
        from skywire.services.dmsgdisc.direct import direct_client

        async with DiscClient(disc) as http_disc:
            if server_of_disc is not None:
                bootstrap = await http_disc.all_servers()
                client = direct_client(key, server_of_disc, bootstrap, min_sessions=sessions)
            else:
                client = Client(key, http_disc, min_sessions=sessions)
            connector = DmsgConnector(client, ready_timeout=ready_timeout)
            proxy = ProxyServer(
                {Suffix.DMSG: connector}, host=host or "127.0.0.1", port=port, name="dmsgweb"
            )
            async with proxy, client:
                typer.echo(f"dmsgweb {client.pk}: proxy on {proxy.address}", err=True)
                typer.echo(
                    f"  curl --socks5-hostname {proxy.address} http://<pk>.dmsg/  "
                    f"(or -x http://{proxy.address})",
                    err=True,
                )
                await stop.wait()
                typer.echo("shutting down", err=True)

    try:
        asyncio.run(run_until_interrupted(main))
    except OSError as exc:
        err.print(f"[red]error:[/red] dmsgweb: {exc}")
        raise typer.Exit(1) from exc


def register(dmsg_app: typer.Typer) -> None:
    dmsg_app.command("web")(web)

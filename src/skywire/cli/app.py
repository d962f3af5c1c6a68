"""``skywire app <name>``: an app's own process, as the visor's launcher starts it.

The launcher sets ``PROC_CONFIG`` (the app's name, its proc key, the visor's app server
address, its routing port); the app reaches routes and dmsg through the visor's app server
(:mod:`skywire.apps.appnet`), reports its status there, and runs until SIGTERM. Run by hand
without ``PROC_CONFIG`` an app says so and exits 2.
"""

from __future__ import annotations

import asyncio
import os
import sys
from typing import TYPE_CHECKING, Annotated

import typer

if TYPE_CHECKING:
    from skywire.apps.appnet.client import AppClient

from skywire.cli.common import LogFormatOption, LogLevelOption

app_app = typer.Typer(
    help="Apps as the visor's launcher runs them (each needs PROC_CONFIG from the launcher).",
    no_args_is_help=True,
)


def _need_proc_config() -> None:
    if not os.environ.get("PROC_CONFIG"):
        typer.echo(
            "error: PROC_CONFIG is not set: apps are started by a visor "
            "(skywire cli visor app start <name>)",
            err=True,
        )
        raise typer.Exit(2)


async def until_stopped(stop: asyncio.Event, app: AppClient) -> None:
    """Until SIGTERM/SIGINT, or until the visor goes away (the control connection ends): an
    app does not outlive its visor (it would hold its ports, with no way to be stopped)."""
    waits = [asyncio.ensure_future(stop.wait()), asyncio.ensure_future(app.wait_closed())]
    try:
        await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for w in waits:
            w.cancel()
        await asyncio.gather(*waits, return_exceptions=True)
    if not stop.is_set():
        typer.echo(f"{app.config.app_name}: exiting: {await app.wait_closed()}", err=True)


def _listen_address(addr: str) -> tuple[str, int]:
    """Upstream's ``:1080`` form (empty host) is taken as 127.0.0.1 here: a SOCKS5 proxy open
    to the whole network is an open relay."""
    host, _, port = addr.rpartition(":")
    try:
        return host or "127.0.0.1", int(port)
    except ValueError as exc:
        raise typer.BadParameter(f"{addr!r} is not [host]:port", param_hint="--addr") from exc


@app_app.command("skysocks")
def skysocks(
    passcode: Annotated[
        str, typer.Option(help="Require this passcode (as user name or password).")
    ] = "",
    log_level: LogLevelOption = None,
    log_format: LogFormatOption = None,
) -> None:
    """The skysocks server: SOCKS5 for every route to its routing port (3)."""
    from skywire.cli.common import run_until_interrupted, setup_logging

    _need_proc_config()
    setup_logging(log_level, log_format)

    async def main(stop: asyncio.Event) -> None:
        from skywire.apps.appnet.client import AppClient
        from skywire.apps.skysocks import SERVER_PORT, Passcode, SkysocksServer

        async with AppClient.from_env() as app:
            port = app.config.routing_port or SERVER_PORT
            credentials = Passcode(passcode) if passcode else None
            async with SkysocksServer(app, port=port, credentials=credentials):
                await app.set_status(f"serving SOCKS5 on routing port {port}")
                await until_stopped(stop, app)

    asyncio.run(run_until_interrupted(main))


@app_app.command("skysocks-client")
def skysocks_client(
    srv: Annotated[str, typer.Option("--srv", help="The skysocks server's visor key (hex).")],
    addr: Annotated[str, typer.Option(help="Local SOCKS5 address.")] = "127.0.0.1:1080",
    log_level: LogLevelOption = None,
    log_format: LogFormatOption = None,
) -> None:
    """The skysocks client: SOCKS5 on --addr, over one route to the server at --srv."""
    from skywire.cipher import CipherError, PubKey
    from skywire.cli.common import run_until_interrupted, setup_logging

    _need_proc_config()
    setup_logging(log_level, log_format)
    try:
        server = PubKey.from_hex(srv)
    except CipherError as exc:
        raise typer.BadParameter(f"invalid key: {exc}", param_hint="--srv") from exc
    listen = _listen_address(addr)

    async def main(stop: asyncio.Event) -> None:
        from skywire.apps.appnet.client import AppClient
        from skywire.apps.skysocks import SkysocksClient

        async with AppClient.from_env() as app, SkysocksClient(app, server, listen=listen) as c:
            where = f"{c.address[0]}:{c.address[1]}" if c.address else f"{listen[0]}:{listen[1]}"
            await app.set_status(f"SOCKS5 on {where} through {server}")
            await until_stopped(stop, app)

    asyncio.run(run_until_interrupted(main))


@app_app.command("skychat")
def skychat(
    addr: Annotated[
        str, typer.Option(help="The chat page's address (upstream's :8001 means 127.0.0.1).")
    ] = "127.0.0.1:8001",
    log_level: LogLevelOption = None,
    log_format: LogFormatOption = None,
) -> None:
    """skychat: messages to and from other visors over routes (routing port 1), and a page."""
    from skywire.cli.common import run_until_interrupted, setup_logging

    _need_proc_config()
    setup_logging(log_level, log_format)
    web = _listen_address(addr)

    async def main(stop: asyncio.Event) -> None:
        from skywire.apps.appnet.client import AppClient
        from skywire.apps.skychat import CHAT_PORT, Skychat

        async with AppClient.from_env() as app:
            port = app.config.routing_port or CHAT_PORT
            async with Skychat(app, port=port, web=web, local_pk=app.config.visor_pk) as chat:
                await app.set_status(f"chat page on {chat.url}, messages on routing port {port}")
                await until_stopped(stop, app)

    asyncio.run(run_until_interrupted(main))


@app_app.command("vpn-server")
def vpn_server(
    passcode: Annotated[str, typer.Option(help="Require this passcode in the client hello.")] = "",
    netifc: Annotated[
        str, typer.Option(help="Interface to NAT out of (default: the default route's).")
    ] = "",
    state_file: Annotated[
        str, typer.Option(help="Where the host's old NAT settings are kept until stop.")
    ] = "",
    log_level: LogLevelOption = None,
    log_format: LogFormatOption = None,
) -> None:
    """vpn-server: a TUN per client on routing port 44, NAT out of this host (needs root)."""
    from skywire.cli.common import run_until_interrupted, setup_logging

    _need_proc_config()
    setup_logging(log_level, log_format)

    async def main(stop: asyncio.Event) -> None:
        from skywire.apps.appnet.client import AppClient
        from skywire.apps.vpn import SERVER_PORT
        from skywire.apps.vpn.server import VpnServer

        async with AppClient.from_env() as app:
            port = app.config.routing_port or SERVER_PORT
            state = state_file or _state_path(app.config.proc_work_dir, "vpn-server.json")
            async with VpnServer(
                app, passcode=passcode, port=port, state_file=state, network_interface=netifc
            ) as server:
                await app.set_status(f"serving VPN on routing port {port}, NAT via {server.device}")
                await until_stopped(stop, app)

    asyncio.run(run_until_interrupted(main))


@app_app.command("vpn-client")
def vpn_client(
    srv: Annotated[str, typer.Option("--srv", help="The vpn-server's visor key (hex).")],
    passcode: Annotated[str, typer.Option(help="The server's passcode.")] = "",
    killswitch: Annotated[
        bool, typer.Option(help="Keep traffic in the TUN while the route is down.")
    ] = False,
    exclude: Annotated[
        list[str] | None,
        typer.Option(help="An IPv4 address to reach directly, not through the VPN (repeat)."),
    ] = None,
    dns: Annotated[str, typer.Option(help="Nameserver to put in resolv.conf while up.")] = "",
    state_file: Annotated[
        str, typer.Option(help="Where the old routes and resolv.conf are kept until stop.")
    ] = "",
    log_level: LogLevelOption = None,
    log_format: LogFormatOption = None,
) -> None:
    """vpn-client: all IPv4 traffic through a TUN, over a route to --srv (needs root)."""
    from skywire.cipher import CipherError, PubKey
    from skywire.cli.common import run_until_interrupted, setup_logging

    _need_proc_config()
    setup_logging(log_level, log_format)
    try:
        server = PubKey.from_hex(srv)
    except CipherError as exc:
        raise typer.BadParameter(f"invalid key: {exc}", param_hint="--srv") from exc
    failed: list[str] = []

    async def main(stop: asyncio.Event) -> None:
        from skywire.apps.vpn import VpnError

        try:
            await client_main(stop)
        except VpnError as exc:
            failed.append(str(exc))

    async def client_main(stop: asyncio.Event) -> None:
        import contextlib
        import ipaddress

        from skywire.apps.appnet.client import AppClient
        from skywire.apps.vpn.client import VpnClient, direct_ips_from_env

        async with AppClient.from_env() as app:
            direct: list[str] = [str(ip) for ip in direct_ips_from_env(os.environ)]
            host = app.config.server_address()[0]
            with contextlib.suppress(ValueError):  # the visor's app server, when an IP
                direct.append(str(ipaddress.IPv4Address(host)))
            for value in exclude or []:
                try:
                    direct.append(str(ipaddress.IPv4Address(value)))
                except ValueError as exc:
                    raise typer.BadParameter(str(exc), param_hint="--exclude") from exc
            state = state_file or _state_path(app.config.proc_work_dir, "vpn-client.json")
            async with VpnClient(
                app,
                server,
                passcode=passcode,
                killswitch=killswitch,
                exclude=direct,
                dns=dns,
                state_file=state,
            ) as client:
                await app.set_status(f"connecting to {server}")
                ended = asyncio.ensure_future(client.ended.wait())
                stopped = asyncio.ensure_future(until_stopped(stop, app))
                try:
                    await asyncio.wait({ended, stopped}, return_when=asyncio.FIRST_COMPLETED)
                finally:
                    ended.cancel()
                    stopped.cancel()
                    await asyncio.gather(ended, stopped, return_exceptions=True)
                if client.error is not None:
                    failed.append(str(client.error))
                    await app.set_error(str(client.error))

    asyncio.run(run_until_interrupted(main))
    if failed:
        typer.echo(f"error: {failed[0]}", err=True)
        raise typer.Exit(1)


def _state_path(work_dir: str, name: str) -> str:
    return os.path.join(work_dir or "/run/skywire", name)


def register(app: typer.Typer) -> None:
    app.add_typer(app_app, name="app")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(app_app())

"""``skywire cli vpn list|start|stop|status``: the whole machine's traffic through another
visor, with the visor's vpn-client app. ``list`` asks service discovery for public vpn servers;
``start <pk>`` points the client app at one (its arguments are kept in the visor config) and
(re)starts it; the app needs the visor to run as root (it makes a TUN and changes routes)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from skywire.cli.app_cmds import JsonOption, RpcOption
from skywire.cli.proxy import (
    out,
    point_app,
    print_app_status,
    print_services,
    sd_url,
    stop_app,
)

CLIENT_APP = "vpn-client"

vpn_app = typer.Typer(
    help="A VPN through another visor (vpn-client): list servers, start, stop, status.",
    no_args_is_help=True,
)


@vpn_app.command("list")
def vpn_list(
    sd: Annotated[str, typer.Option("--sd", help="Service discovery URL.")] = "",
    config: Annotated[
        Path, typer.Option("--config", "-c", help="Take the service discovery from here.")
    ] = Path("skywire-config.json"),
    country: Annotated[str, typer.Option(help="Only servers in this country (XX).")] = "",
    as_json: JsonOption = False,
) -> None:
    """Public vpn servers registered in service discovery."""
    print_services(sd_url(config, sd), "vpn", country, as_json)


@vpn_app.command("start")
def vpn_start(
    pk: Annotated[str, typer.Argument(help="The vpn server's visor key (hex).")],
    passcode: Annotated[str, typer.Option(help="The server's passcode.")] = "",
    killswitch: Annotated[
        bool, typer.Option(help="Keep traffic in the TUN while the route is down.")
    ] = False,
    dns: Annotated[str, typer.Option(help="Nameserver while the VPN is up.")] = "",
    rpc: RpcOption = "localhost:3435",
    as_json: JsonOption = False,
) -> None:
    """Point the visor's vpn-client app at <pk> and (re)start it."""
    from skywire.cipher import CipherError, PubKey

    try:
        server = PubKey.from_hex(pk)
    except CipherError as exc:
        raise typer.BadParameter(f"invalid key: {exc}", param_hint="PK") from exc
    args = ["app", CLIENT_APP, "--srv", server.hex()]
    if passcode:
        args += ["--passcode", passcode]
    if killswitch:
        args.append("--killswitch")
    if dns:
        args += ["--dns", dns]
    status = point_app(rpc, CLIENT_APP, args)
    if as_json:
        typer.echo(json.dumps(status, indent=2))
        return
    out.print(f"{CLIENT_APP}: {status.get('state')}; through {server}")


@vpn_app.command("stop")
def vpn_stop(rpc: RpcOption = "localhost:3435") -> None:
    """Stop the vpn-client app (it restores the routes and DNS it changed)."""
    stop_app(rpc, CLIENT_APP)


@vpn_app.command("status")
def vpn_status(rpc: RpcOption = "localhost:3435", as_json: JsonOption = False) -> None:
    """The vpn-client app's state, uptime and last error."""
    print_app_status(rpc, CLIENT_APP, as_json)


def register(cli_app: typer.Typer) -> None:
    cli_app.add_typer(vpn_app, name="vpn")

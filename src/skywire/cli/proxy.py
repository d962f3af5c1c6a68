"""``skywire cli proxy list|start|stop|status``: skysocks proxies through the visor's
skysocks-client app. ``list`` asks service discovery for public skysocks servers; ``start --pk``
points the client app at one (its arguments are kept in the visor config) and (re)starts it."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from skywire.cli.app_cmds import JsonOption, RpcOption, app_path, call_visor

err = Console(stderr=True)
out = Console()

CLIENT_APP = "skysocks-client"

proxy_app = typer.Typer(
    help="SOCKS5 proxies through other visors (skysocks): list servers, point the local "
    "client at one.",
    no_args_is_help=True,
)


def sd_url(config: Path, sd: str) -> str:
    if sd:
        return sd
    from skywire.visor.config import VisorConfig

    try:
        return VisorConfig.load(config).launcher.service_discovery
    except (OSError, ValueError) as exc:
        err.print(f"[red]error:[/red] no service discovery: give --sd, or -c ({config}: {exc})")
        raise typer.Exit(2) from exc


@proxy_app.command("list")
def proxy_list(
    sd: Annotated[str, typer.Option("--sd", help="Service discovery URL.")] = "",
    config: Annotated[
        Path, typer.Option("--config", "-c", help="Take the service discovery from here.")
    ] = Path("skywire-config.json"),
    country: Annotated[str, typer.Option(help="Only servers in this country (XX).")] = "",
    as_json: JsonOption = False,
) -> None:
    """Public skysocks servers registered in service discovery."""
    print_services(sd_url(config, sd), "skysocks", country, as_json)


def print_services(url: str, kind: str, country: str, as_json: bool) -> None:
    """The ``kind`` entries of service discovery at ``url``: a table, or JSON."""
    from skywire.cipher import SecKey
    from skywire.services.sd.client import SDClient
    from skywire.services.sd.errors import SDError

    async def ask() -> list[Any]:
        async with SDClient(url, SecKey.generate()) as client:
            return list(await client.services(kind, country=country))

    try:
        entries = asyncio.run(ask())
    except (SDError, OSError, TimeoutError) as exc:
        err.print(f"[red]error:[/red] {url}: {exc or type(exc).__name__}")
        raise typer.Exit(1) from exc
    if as_json:
        typer.echo(json.dumps([json.loads(e.to_json()) for e in entries], indent=2))
        return
    table = Table()
    table.add_column("server (pk:port)", overflow="fold")  # a key to copy: folded, never cut
    table.add_column("country", no_wrap=True)
    table.add_column("version", no_wrap=True)
    for e in entries:
        table.add_row(str(e.addr), e.geo.country if e.geo else "-", e.version or "-")
    out.print(table)
    if not entries:
        err.print(f"no {kind} servers registered at {url}")


def app_row(rpc: str, name: str) -> dict[str, Any]:
    """The visor's status row of app ``name`` (exits 1 when the visor has no such app)."""
    rows = call_visor(rpc, "GET", "/apps")
    row = next((r for r in rows if isinstance(r, dict) and r.get("name") == name), None)
    if row is None:
        err.print(f"[red]error:[/red] this visor has no {name} app in its config")
        raise typer.Exit(1)
    return row


def point_app(rpc: str, name: str, args: list[str]) -> dict[str, Any]:
    """Give app ``name`` these arguments (kept in the visor config) and restart it."""
    call_visor(rpc, "POST", app_path(name, "args"), {"args": args})
    call_visor(rpc, "POST", app_path(name, "stop"))
    status: dict[str, Any] = call_visor(rpc, "POST", app_path(name, "start"))
    return status


def stop_app(rpc: str, name: str) -> None:
    status = call_visor(rpc, "POST", app_path(name, "stop"))
    out.print(f"{name}: {status.get('state')}")


def print_app_status(rpc: str, name: str, as_json: bool) -> None:
    """App ``name``'s state and last error, or its whole row as JSON."""
    row = app_row(rpc, name)
    if as_json:
        typer.echo(json.dumps(row, indent=2))
        return
    out.print(
        f"{name}: {row.get('state')}"
        + (f", last error: {row['last_error']}" if row.get("last_error") else "")
    )


@proxy_app.command("start")
def proxy_start(
    pk: Annotated[str, typer.Option("--pk", help="The skysocks server's visor key (hex).")],
    addr: Annotated[str, typer.Option(help="Local SOCKS5 address.")] = "127.0.0.1:1080",
    rpc: RpcOption = "localhost:3435",
    as_json: JsonOption = False,
) -> None:
    """Point the visor's skysocks-client app at --pk and (re)start it."""
    from skywire.cipher import CipherError, PubKey

    try:
        server = PubKey.from_hex(pk)
    except CipherError as exc:
        raise typer.BadParameter(f"invalid key: {exc}", param_hint="--pk") from exc
    args = ["app", CLIENT_APP, "--srv", server.hex(), "--addr", addr]
    status = point_app(rpc, CLIENT_APP, args)
    if as_json:
        typer.echo(json.dumps(status, indent=2))
        return
    out.print(f"{CLIENT_APP}: {status.get('state')}; SOCKS5 on {addr} through {server}")


@proxy_app.command("stop")
def proxy_stop(rpc: RpcOption = "localhost:3435") -> None:
    """Stop the visor's skysocks-client app."""
    stop_app(rpc, CLIENT_APP)


@proxy_app.command("status")
def proxy_status(rpc: RpcOption = "localhost:3435", as_json: JsonOption = False) -> None:
    """The skysocks-client app's state, uptime and last error."""
    print_app_status(rpc, CLIENT_APP, as_json)


def register(cli_app: typer.Typer) -> None:
    cli_app.add_typer(proxy_app, name="proxy")

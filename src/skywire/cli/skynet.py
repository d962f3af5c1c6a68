"""``skywire cli tp route-addr`` and ``skywire cli skynet …``: source-routed addresses, and the
local services a visor publishes on routing ports."""

from __future__ import annotations

import itertools
import json
from typing import Annotated, Any

import typer
from rich.table import Table

from skywire.cli.visor import (
    JsonOption,
    RpcOption,
    call_visor,
    cli_app,
    err,
    out,
    parse_pk,
    tp_app,
)
from skywire.transport.entry import TransportType, make_transport_id

skynet_app = typer.Typer(
    help="Local services published on routing ports (reached as <pk>.skynet:<port>), "
    "and the visor's resolving proxies.",
    no_args_is_help=True,
)


def _short(hex_text: str) -> str:
    return f"{hex_text[:8]}…{hex_text[-4:]}"


@tp_app.command("route-addr")
def route_addr(
    pks: Annotated[
        list[str],
        typer.Argument(help="The path, source first: pk1 pk2 … pkN (hex or base32 labels)."),
    ],
    tp_type: Annotated[
        str,
        typer.Option(
            "--type", "-t", help="Use transports of this type (default: any existing; stcpr)."
        ),
    ] = "",
    offline: Annotated[
        bool,
        typer.Option("--offline", help="Compute IDs only (needs --type); ask no visor."),
    ] = False,
    rpc: RpcOption = "localhost:3435",
    as_json: JsonOption = False,
) -> None:
    """The .skynet address of a path: the transport ID of each consecutive pair of visors.

    The visor looks each pair up (its own transports, then transport discovery) and says which
    transports exist and with which type; for a missing one it uses the deterministic ID of
    stcpr (what a source route creates first) or of --type. Paste the address into a browser
    that uses the visor's proxy (socks5h://127.0.0.1:4445 or :4446).
    """
    keys = [parse_pk(text) for text in pks]
    if len(keys) < 2:
        raise typer.BadParameter("give at least two keys: the source and the destination")
    if offline:
        if not tp_type:
            raise typer.BadParameter("--offline needs --type", param_hint="--type")
        if tp_type not in {t.value for t in TransportType}:
            err.print(f"[yellow]note:[/yellow] {tp_type!r} is not a transport type")
        ids = [make_transport_id(a, b, tp_type) for a, b in itertools.pairwise(keys)]
        address = ".".join([*(i.hex for i in ids), keys[-1].hex(), "skynet"])
        answer: dict[str, Any] = {
            "address": address,
            "hops": [
                {
                    "src": a.hex(),
                    "dst": b.hex(),
                    "tp_id": str(i),
                    "type": tp_type,
                    "exists": None,
                    "note": "offline: not looked up",
                }
                for (a, b), i in zip(itertools.pairwise(keys), ids, strict=True)
            ],
        }
    else:
        body = {"pks": [k.hex() for k in keys], "type": tp_type or None}
        answer = call_visor(rpc, "POST", "/route-addr", body)
    if as_json:
        out.print_json(json.dumps(answer))
        return
    table = Table(title="hops")
    for col in ("#", "from", "to", "type", "transport", "status"):
        table.add_column(col, overflow="fold")
    for i, hop in enumerate(answer["hops"], 1):
        table.add_row(
            str(i), _short(hop["src"]), _short(hop["dst"]), hop["type"], hop["tp_id"], hop["note"]
        )
    out.print(table)
    if answer.get("starts_here") is False:
        err.print(
            "[yellow]note:[/yellow] the path does not start at this visor: use the address "
            "with the proxy of its first visor"
        )
    out.print("address:")
    out.print(answer["address"], soft_wrap=True)


@skynet_app.command("ls")
def skynet_ls(rpc: RpcOption = "localhost:3435", as_json: JsonOption = False) -> None:
    """Published services, the resolving proxies and the route pool of the visor."""
    info = call_visor(rpc, "GET", "/skynet")
    if as_json:
        out.print_json(json.dumps(info))
        return
    table = Table(title="published on routing ports")
    table.add_column("port")
    table.add_column("local service")
    for port, address in sorted(info["published"].items(), key=lambda kv: int(kv[0])):
        table.add_row(port, address)
    out.print(table)
    for name, address in info["proxies"].items():
        out.print(f"{name}: socks5h://{address} (or http proxy http://{address})")
    if not info["proxies"]:
        out.print("no resolving proxy is enabled (dmsg_web / skynet_web in the config)")
    pool = info["route_pool"]
    out.print(
        f"route pool: {pool['routes']} open, {pool['routes_dialed']} dialled, "
        f"{pool['streams_opened']} streams"
    )


@skynet_app.command("publish")
def skynet_publish(
    port: Annotated[int, typer.Argument(help="Routing port (80 for <pk>.skynet).")],
    address: Annotated[str, typer.Argument(help="Local service host:port, e.g. 127.0.0.1:8080.")],
    rpc: RpcOption = "localhost:3435",
) -> None:
    """Publish a local TCP service on a routing port (until the visor stops)."""
    done = call_visor(rpc, "POST", "/skynet/services", {"port": port, "address": address})
    out.print(f"skynet port {done['port']} → {done['address']}")


@skynet_app.command("unpublish")
def skynet_unpublish(
    port: Annotated[int, typer.Argument(help="Routing port.")],
    rpc: RpcOption = "localhost:3435",
) -> None:
    """Stop publishing on a routing port."""
    call_visor(rpc, "DELETE", f"/skynet/services/{port}")
    out.print(f"skynet port {port} no longer published")


def register() -> None:
    cli_app.add_typer(skynet_app, name="skynet")
    cli_app.add_typer(tp_app, name="tp")

"""Operator commands of ``skywire cli``: ``visor ver|ports|ping|halt``, ``tp disc`` and
``route trace``. Keys in tables are shortened to their first 8 hex digits plus ``…`` (the
``--json`` form, and ``--full``, show them whole)."""

from __future__ import annotations

import asyncio
import json
import uuid
from typing import Annotated, Any

import typer
from rich.table import Table

from skywire import __version__
from skywire.cli.visor import (
    FullOption,
    JsonOption,
    RpcOption,
    call_visor,
    err,
    out,
    parse_pk,
    route_app,
    short,
    tp_app,
    visor_app,
)


# ------------------------------------------------------------------------------ visor
def visor_ver(rpc: RpcOption = "localhost:3435", as_json: JsonOption = False) -> None:
    """The running visor's version, and this command's."""
    info = call_visor(rpc, "GET", "/visor/info")
    if as_json:
        out.print_json(json.dumps({"visor": info["version"], "cli": __version__}))
        return
    out.print(f"visor {info['version']} (cli {__version__})", highlight=False)


def visor_ports(rpc: RpcOption = "localhost:3435", as_json: JsonOption = False) -> None:
    """Every port the visor holds: TCP/UDP here, dmsg ports and routing ports."""
    rows = call_visor(rpc, "GET", "/visor/ports")
    if as_json:
        out.print_json(json.dumps(rows))
        return
    table = Table(title="ports")
    for col in ("kind", "port", "what", "address"):
        table.add_column(col, no_wrap=True, justify="right" if col == "port" else "left")
    for r in rows:
        table.add_row(r["kind"], str(r["port"]), r["what"], r.get("address") or "")
    out.print(table)


def visor_ping(
    pk: Annotated[str, typer.Argument(help="A visor (or any dmsg client) to ping.")],
    count: Annotated[int, typer.Option("--count", "-c", min=1, max=100)] = 3,
    rpc: RpcOption = "localhost:3435",
    as_json: JsonOption = False,
) -> None:
    """dmsgctrl round trips from the visor to a key over dmsg (dmsg port 7)."""
    target = parse_pk(pk)
    doc = call_visor(rpc, "POST", "/dmsg/ping", {"pk": target.hex(), "count": count})
    if as_json:
        out.print_json(json.dumps(doc))
        return
    for i, rtt in enumerate(doc["rtt_ms"], 1):
        out.print(f"{i}: {rtt:.2f} ms", highlight=False)


def visor_halt(rpc: RpcOption = "localhost:3435") -> None:
    """Stop the running visor (its apps, transports and sessions end as on SIGTERM)."""
    call_visor(rpc, "POST", "/visor/halt")
    out.print("the visor is stopping")


def visor_reload(rpc: RpcOption = "localhost:3435") -> None:
    """Restart the running visor from its configuration file (re-read), in the same process."""
    call_visor(rpc, "POST", "/visor/reload")
    out.print("the visor is restarting from its configuration file")


# ------------------------------------------------------------------------------ rules
KeepAliveOption = Annotated[
    float, typer.Option("--keep-alive", help="Seconds without traffic before the rule expires.")
]


def _save_rule(rpc: str, rule: Any, as_json: bool) -> None:
    row = call_visor(rpc, "POST", "/rules", rule.summary())
    if as_json:
        out.print_json(json.dumps(row))
    else:
        out.print(f"rule {row['key_route_id']} saved", highlight=False)


def add_rule_app(
    route_id: Annotated[int, typer.Argument(help="The rule's route ID (key).")],
    local_pk: Annotated[str, typer.Argument()],
    local_port: Annotated[int, typer.Argument()],
    remote_pk: Annotated[str, typer.Argument()],
    remote_port: Annotated[int, typer.Argument()],
    keep_alive: KeepAliveOption = 30.0,
    rpc: RpcOption = "localhost:3435",
    as_json: JsonOption = False,
) -> None:
    """A consume rule: packets on the route ID are delivered to the local app."""
    from skywire.routing.rule import ConsumeRule, RouteDescriptor

    desc = RouteDescriptor(parse_pk(local_pk), parse_pk(remote_pk), local_port, remote_port)
    _save_rule(rpc, ConsumeRule(int(keep_alive * 1e9), route_id, desc), as_json)


def add_rule_fwd(
    route_id: Annotated[int, typer.Argument(help="The rule's route ID (key).")],
    next_route_id: Annotated[int, typer.Argument()],
    next_tp_id: Annotated[str, typer.Argument(help="The transport to send on.")],
    local_pk: Annotated[str, typer.Argument()],
    local_port: Annotated[int, typer.Argument()],
    remote_pk: Annotated[str, typer.Argument()],
    remote_port: Annotated[int, typer.Argument()],
    keep_alive: KeepAliveOption = 30.0,
    rpc: RpcOption = "localhost:3435",
    as_json: JsonOption = False,
) -> None:
    """A forward rule: the route's first hop out of this (initiating) visor."""
    from skywire.routing.rule import ForwardRule, RouteDescriptor

    desc = RouteDescriptor(parse_pk(local_pk), parse_pk(remote_pk), local_port, remote_port)
    rule = ForwardRule(int(keep_alive * 1e9), route_id, next_route_id, _tp_id(next_tp_id), desc)
    _save_rule(rpc, rule, as_json)


def add_rule_intfwd(
    route_id: Annotated[int, typer.Argument(help="The rule's route ID (key).")],
    next_route_id: Annotated[int, typer.Argument()],
    next_tp_id: Annotated[str, typer.Argument(help="The transport to send on.")],
    keep_alive: KeepAliveOption = 30.0,
    rpc: RpcOption = "localhost:3435",
    as_json: JsonOption = False,
) -> None:
    """An intermediary forward rule: packets on the route ID go on to the next hop."""
    from skywire.routing.rule import IntermediaryForwardRule

    rule = IntermediaryForwardRule(
        int(keep_alive * 1e9), route_id, next_route_id, _tp_id(next_tp_id)
    )
    _save_rule(rpc, rule, as_json)


def _tp_id(text: str) -> uuid.UUID:
    try:
        return uuid.UUID(text)
    except ValueError as exc:
        raise typer.BadParameter(f"{text!r} is not a transport ID") from exc


def rm_rule(
    route_id: Annotated[int, typer.Argument(help="The rule's route ID (key).")],
    rpc: RpcOption = "localhost:3435",
) -> None:
    """Remove a routing rule by its route ID."""
    call_visor(rpc, "DELETE", f"/rules/{route_id}")
    out.print(f"rule {route_id} removed", highlight=False)


# ------------------------------------------------------------------------------ tp disc
def tp_disc(
    pk: Annotated[str, typer.Option("--pk", help="Transports with this edge.")] = "",
    tp_id: Annotated[str, typer.Option("--id", help="One transport, by ID.")] = "",
    tpd: Annotated[
        str, typer.Option("--tpd", help="Transport discovery URL (default: the visor's).")
    ] = "",
    rpc: RpcOption = "localhost:3435",
    full: FullOption = False,
    as_json: JsonOption = False,
) -> None:
    """Ask transport discovery what it lists: by edge (default: the visor's own key) or ID."""
    from skywire.cipher import SecKey
    from skywire.services.tpd.client import TPDClient, TPDError, TPDUnreachableError

    if pk and tp_id:
        raise typer.BadParameter("give --pk or --id, not both")
    if not tpd or not (pk or tp_id):
        info = call_visor(rpc, "GET", "/visor/info")
        tpd = tpd or info["transport_discovery"]
        pk = pk or ("" if tp_id else info["pk"])
    try:
        wanted = uuid.UUID(tp_id) if tp_id else None
    except ValueError as exc:
        raise typer.BadParameter(f"{tp_id!r} is not a transport ID", param_hint="--id") from exc
    edge = parse_pk(pk) if pk else None

    async def ask() -> list[Any]:
        async with TPDClient(tpd, SecKey.generate()) as client:
            if wanted is not None:
                return [await client.get_transport_by_id(wanted)]
            assert edge is not None
            return await client.get_transports_by_edge(edge)

    try:
        entries = asyncio.run(ask())
    except (TPDError, TPDUnreachableError, OSError) as exc:
        err.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(1) from exc
    rows = [
        {
            "id": str(e.id),
            "type": e.type,
            "edges": [p.hex() for p in e.edges],
            "label": e.label,
            "latency_ms": e.latency_ms,
        }
        for e in entries
    ]
    if as_json:
        out.print_json(json.dumps(rows))
        return
    table = Table(title=f"transport discovery {tpd}")
    for col in ("id", "type", "edge 1", "edge 2", "label", "latency"):
        table.add_column(col, no_wrap=True)
    for r in rows:
        lat = r["latency_ms"]
        table.add_row(
            short(r["id"], full),
            r["type"],
            short(r["edges"][0], full),
            short(r["edges"][1], full),
            r["label"],
            f"{lat:.1f} ms" if isinstance(lat, int | float) else "-",
        )
    out.print(table)


# ------------------------------------------------------------------------------ route trace
def route_trace(
    pk: Annotated[str, typer.Argument(help="Destination visor.")],
    min_hops: Annotated[int, typer.Option("--min", "-n", help="Minimum hops.")] = 1,
    max_hops: Annotated[int, typer.Option("--max", "-x", help="Maximum hops.")] = 10,
    rpc: RpcOption = "localhost:3435",
    full: FullOption = False,
    as_json: JsonOption = False,
) -> None:
    """The route the route finder picks to a visor, and the round trip to each hop on it
    (a route to every hop in turn, each through the hops before it)."""
    from skywire.routing.route import RouteQueryError
    from skywire.services.rf.client import RFClient

    dst = parse_pk(pk)
    info = call_visor(rpc, "GET", "/visor/info")
    source = parse_pk(info["pk"])

    async def path() -> list[str]:
        async with RFClient(info["route_finder"]) as client:
            routes, _ = await client.candidate_routes(
                source, dst, min_hops=min_hops, max_hops=max_hops, num_routes=1
            )
        if not routes:
            raise RouteQueryError(f"no route to {dst}")
        return [str(h["To"]) for h in routes[0]["hops"]]

    try:
        hops = asyncio.run(path())
    except (RouteQueryError, OSError, TimeoutError) as exc:
        err.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(1) from exc
    rows = []
    for k, hop in enumerate(hops, 1):
        body = {"pk": hop, "via": hops[: k - 1], "count": 3}
        try:
            doc = call_visor(rpc, "POST", "/routes/ping", body)
            rtts = doc.get("rtt_ms") or []
            rows.append({"hop": k, "pk": hop, "rtt_ms": min(rtts) if rtts else None,
                         "setup_ms": doc.get("setup_ms"), "error": doc.get("error")})  # fmt: skip
        except typer.Exit:
            rows.append({"hop": k, "pk": hop, "rtt_ms": None, "setup_ms": None,
                         "error": "no answer"})  # fmt: skip
    if as_json:
        out.print_json(json.dumps(rows))
        return
    table = Table(title=f"route trace → {short(dst.hex(), full)}")
    for col in ("hop", "visor", "rtt", "route set-up"):
        table.add_column(col, no_wrap=True)
    for r in rows:
        rtt, setup = r["rtt_ms"], r["setup_ms"]
        table.add_row(
            str(r["hop"]),
            short(r["pk"], full),
            f"{rtt:.2f} ms" if isinstance(rtt, int | float) else str(r["error"]),
            f"{setup:.1f} ms" if isinstance(setup, int | float) else "-",
        )
    out.print(table)


add_rule_app_ = typer.Typer(help="Add a routing rule by hand (app, fwd or intfwd).")


def register() -> None:
    visor_app.command("reload")(visor_reload)
    add_rule_app_.command("app")(add_rule_app)
    add_rule_app_.command("fwd")(add_rule_fwd)
    add_rule_app_.command("intfwd")(add_rule_intfwd)
    route_app.add_typer(add_rule_app_, name="add-rule")
    route_app.command("rm-rule")(rm_rule)
    visor_app.command("ver")(visor_ver)
    visor_app.command("ports")(visor_ports)
    visor_app.command("ping")(visor_ping)
    visor_app.command("halt")(visor_halt)
    tp_app.command("disc")(tp_disc)
    route_app.command("trace")(route_trace)

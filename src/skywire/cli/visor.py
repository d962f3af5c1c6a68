"""``skywire visor`` (run a visor) and ``skywire cli …`` (configure and control one)."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from skywire.cipher import CipherError, PubKey, SecKey
from skywire.cli.common import LogFormatOption, LogLevelOption
from skywire.transport.entry import TransportType, make_transport_id

out = Console()
err = Console(stderr=True)

cli_app = typer.Typer(help="Configure and control a visor.", no_args_is_help=True)
config_app = typer.Typer(help="Visor configuration files.", no_args_is_help=True)
visor_app = typer.Typer(help="Talk to a running visor.", no_args_is_help=True)
tp_app = typer.Typer(help="Transports of a running visor.", no_args_is_help=True)
cli_app.add_typer(config_app, name="config")
cli_app.add_typer(visor_app, name="visor")
visor_app.add_typer(tp_app, name="tp")
route_app = typer.Typer(help="Routes: ask the route finder, list the visor's routes.")
rule_app = typer.Typer(help="The visor's routing rules.")
cli_app.add_typer(route_app, name="route")
cli_app.add_typer(rule_app, name="rule")

RpcOption = Annotated[
    str, typer.Option("--rpc", help="The visor's control address.", envvar="SKYWIRE_RPC")
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]

TESTNET = {
    "dmsg_discovery": "http://127.0.0.1:9090",
    "tpd": "http://127.0.0.1:9091",
    "rf": "http://127.0.0.1:9092",
    "ar": "http://127.0.0.1:9093",
}


def parse_pk(text: str) -> PubKey:
    try:
        pk = PubKey.parse(text)
    except CipherError as exc:
        raise typer.BadParameter(f"{text!r}: {exc}") from exc
    if pk.is_null():
        raise typer.BadParameter("the null public key is not a visor")
    return pk


def call_visor(rpc: str, method: str, path: str, body: Any = None) -> Any:
    from skywire.visor.rpc import RPCClient, RPCClientError

    try:
        client = RPCClient(rpc)
    except ValueError as exc:
        err.print(f"[red]error:[/red] --rpc {rpc!r} is not host:port")
        raise typer.Exit(2) from exc
    try:
        return asyncio.run(client.call(method, path, body))
    except RPCClientError as exc:
        err.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(1) from exc


# ------------------------------------------------------------------------------ config
@config_app.command("gen")
def config_gen(
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Write here instead of stdout.")
    ] = None,
    testnet: Annotated[
        bool,
        typer.Option("--testnet", "-t", help="Point at local services (skywire testnet ports)."),
    ] = False,
    sk: Annotated[str, typer.Option("--sk", help="Use this secret key (hex).")] = "",
    local_path: Annotated[str, typer.Option(help="State directory of the visor.")] = "./local",
    cli_addr: Annotated[str, typer.Option(help="Control API address.")] = "localhost:3435",
    force: Annotated[
        bool, typer.Option("--force", "-f", help="Overwrite --output if it exists.")
    ] = False,
) -> None:
    """Write a skywire-config.json with a fresh key pair (or the one given)."""
    from skywire.visor.config import VisorConfig

    if output is not None and output.exists() and not force:
        err.print(
            f"[red]error:[/red] {output} exists (it holds a secret key): "
            "use --force to overwrite it"
        )
        raise typer.Exit(2)
    key = None
    if sk:
        try:
            key = SecKey.from_hex(sk)
        except CipherError as exc:
            raise typer.BadParameter(str(exc), param_hint="--sk") from exc
    if testnet:
        cfg = VisorConfig.generate(
            sk=key,
            local_path=local_path,
            cli_addr=cli_addr,
            dmsg_discovery=TESTNET["dmsg_discovery"],
            tpd=TESTNET["tpd"],
            ar=TESTNET["ar"],
            rf=TESTNET["rf"],
        )
    else:
        cfg = VisorConfig.generate(sk=key, local_path=local_path, cli_addr=cli_addr)
    if output is None:
        sys.stdout.write(cfg.to_json() + "\n")
    else:
        cfg.save(output)
        err.print(f"wrote {output} (visor {cfg.pk})")


# ------------------------------------------------------------------------------ visor info
@visor_app.command("info")
def visor_info(rpc: RpcOption = "localhost:3435", as_json: JsonOption = False) -> None:
    """Summary of the running visor."""
    info = call_visor(rpc, "GET", "/visor/info")
    if as_json:
        out.print_json(json.dumps(info))
        return
    table = Table(show_header=False, box=None)
    table.add_column(no_wrap=True)
    table.add_column(overflow="fold")  # a key folds onto the next line, it is never cut
    for key, value in info.items():
        if isinstance(value, list):
            value = "\n".join(map(str, value)) or "-"
        elif isinstance(value, dict):
            value = "\n".join(f"{k}: {v}" for k, v in value.items()) or "-"
        table.add_row(f"[bold]{key}[/bold]", str(value))
    out.print(table)


@visor_app.command("pk")
def visor_pk(rpc: RpcOption = "localhost:3435") -> None:
    """The running visor's public key."""
    out.print(call_visor(rpc, "GET", "/visor/info")["pk"])


# ------------------------------------------------------------------------------ transports
def short(text: str, full: bool = False) -> str:
    """A key or ID as tables show it: its first 8 characters and an ellipsis, unless ``full``
    (``--json`` always has them whole)."""
    return text if full or len(text) <= 12 else f"{text[:8]}…"


FullOption = Annotated[bool, typer.Option("--full", help="Show keys and IDs whole in tables.")]


def _tp_table(rows: list[dict[str, Any]], full: bool = False) -> Table:
    table = Table(title="transports")
    for col in ("type", "id", "remote", "mode", "noise", "latency", "sent", "received"):
        table.add_column(
            col, justify="right" if col in ("sent", "received") else "left", no_wrap=True
        )
    for r in rows:
        latency = r.get("latency_ms")
        table.add_row(
            r["type"],
            short(r["id"], full),
            short(r["remote_pk"], full),
            "up" if r.get("is_up") else "down",
            "hybrid" if r.get("post_quantum") else "classical",
            f"{latency:.1f} ms" if isinstance(latency, int | float) else "-",
            str(r.get("sent", 0)),
            str(r.get("received", 0)),
        )
    return table


@tp_app.command("ls")
def tp_ls(
    rpc: RpcOption = "localhost:3435", as_json: JsonOption = False, full: FullOption = False
) -> None:
    """List the visor's transports."""
    rows = call_visor(rpc, "GET", "/transports")
    if as_json:
        out.print_json(json.dumps(rows))
    else:
        out.print(_tp_table(rows, full))


@tp_app.command("add")
def tp_add(
    pk: Annotated[str, typer.Argument(help="Remote visor public key.")],
    tp_type: Annotated[str, typer.Option("--type", "-t", help="dmsg, stcp, stcpr or sudph.")],
    rpc: RpcOption = "localhost:3435",
    as_json: JsonOption = False,
) -> None:
    """Create (or reuse) a transport to a visor."""
    row = call_visor(rpc, "POST", "/transports", {"pk": parse_pk(pk).hex(), "type": tp_type})
    if as_json:
        out.print_json(json.dumps(row))
    else:
        out.print(_tp_table([row]))


@tp_app.command("rm")
def tp_rm(
    tp_id: Annotated[str, typer.Argument(help="Transport ID.")],
    rpc: RpcOption = "localhost:3435",
) -> None:
    """Remove a transport (also from transport discovery)."""
    call_visor(rpc, "DELETE", f"/transports/{tp_id}")
    out.print(f"removed {tp_id}")


@tp_app.command("type")
def tp_type(rpc: RpcOption = "localhost:3435") -> None:
    """Transport types the visor can make."""
    for t in call_visor(rpc, "GET", "/transport-types"):
        out.print(t)


@tp_app.command("id")
def tp_id(
    pk_a: Annotated[str, typer.Argument(help="One edge.")],
    pk_b: Annotated[str, typer.Argument(help="The other edge.")],
    tp_type: Annotated[str, typer.Argument(help="dmsg, stcp, stcpr or sudph.")],
) -> None:
    """Print the deterministic transport ID of a pair of visors and a type (offline)."""
    known = {t.value for t in TransportType}
    if tp_type not in known:
        err.print(f"[yellow]note:[/yellow] {tp_type!r} is not one of {sorted(known)}")
    out.print(str(make_transport_id(parse_pk(pk_a), parse_pk(pk_b), tp_type)))


# ------------------------------------------------------------------------------ routes
@route_app.command("find")
def route_find(
    pk: Annotated[str, typer.Argument(help="Destination visor.")],
    min_hops: Annotated[int, typer.Option("--min", "-n", help="Minimum hops.")] = 1,
    max_hops: Annotated[int, typer.Option("--max", "-x", help="Maximum hops.")] = 50,
    count: Annotated[int, typer.Option("--count", "-c", help="Candidates to show.")] = 5,
    rf: Annotated[str, typer.Option("--rf", help="Route finder URL (default: the visor's).")] = "",
    src: Annotated[
        str, typer.Option("--from", help="Source visor (default: the visor's own key).")
    ] = "",
    rpc: RpcOption = "localhost:3435",
    as_json: JsonOption = False,
) -> None:
    """Ask the route finder for ranked candidate routes, with their measured latencies."""
    from skywire.routing.route import RouteQueryError
    from skywire.services.rf.client import RFClient

    dst = parse_pk(pk)
    if not src or not rf:
        info = call_visor(rpc, "GET", "/visor/info")
        src = src or info["pk"]
        rf = rf or info["route_finder"]
    source = parse_pk(src)

    async def ask() -> tuple[list[dict[str, Any]], bool]:
        async with RFClient(rf) as client:
            return await client.candidate_routes(
                source, dst, min_hops=min_hops, max_hops=max_hops, num_routes=count
            )

    try:
        routes, ranked = asyncio.run(ask())
    except (RouteQueryError, OSError, TimeoutError) as exc:
        err.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(1) from exc
    if not ranked:
        err.print(
            "[yellow]note:[/yellow] this route finder has no ranked endpoint (an upstream one): "
            "paths in its own order, without latencies"
        )
    if as_json:
        out.print_json(json.dumps(routes))
        return
    table = Table(title=f"routes {source} → {dst}")
    for col in ("#", "hops", "latency", "rank cost", "path"):
        table.add_column(col)
    for i, r in enumerate(routes, 1):
        hops = r.get("hops", [])
        path = " → ".join(str(h.get("To", ""))[:10] for h in hops)
        lat = r.get("latency_ms")
        table.add_row(
            str(i),
            str(len(hops)),
            f"{lat:.1f} ms" if isinstance(lat, int | float) else "unmeasured",
            f"{r['cost_ms']:.1f}" if isinstance(r.get("cost_ms"), int | float) else "-",
            path,
        )
    out.print(table)


@route_app.command("ls")
def route_ls(
    rpc: RpcOption = "localhost:3435", as_json: JsonOption = False, full: FullOption = False
) -> None:
    """The visor's live route groups."""
    rows = call_visor(rpc, "GET", "/routes")
    if as_json:
        out.print_json(json.dumps(rows))
        return
    table = Table(title="route groups")
    for col in ("remote", "encrypted", "latency"):
        table.add_column(col, no_wrap=True)
    for r in rows:
        lat = r.get("latency_ms")
        table.add_row(
            short(r["remote_pk"], full),
            "yes" if r.get("encrypted") else "no",
            f"{lat:.1f} ms" if isinstance(lat, int | float) else "-",
        )
    out.print(table)


@route_app.command("ping")
def route_ping(
    pk: Annotated[str, typer.Argument(help="The visor to ping (hex or base32 key).")],
    via: Annotated[
        list[str] | None,
        typer.Option("--via", help="Go exactly through this visor (repeat, in order)."),
    ] = None,
    count: Annotated[int, typer.Option("-n", "--count", help="Probes.", min=1)] = 4,
    size: Annotated[
        int, typer.Option("-s", "--size", help="Bytes per probe.", min=1, max=65536)
    ] = 32,
    interval: Annotated[
        float, typer.Option("-i", "--interval", help="Seconds between probes.", min=0)
    ] = 0.2,
    min_hops: Annotated[int | None, typer.Option("--min-hops", min=1)] = None,
    max_hops: Annotated[int | None, typer.Option("--max-hops", min=1)] = None,
    rpc: RpcOption = "localhost:3435",
    as_json: JsonOption = False,
) -> None:
    """Set a new route up to a visor's echo (route port 7), probe it, close it.

    Prints the set-up time, each probe's round trip and the path. Only visors of this project
    echo; an upstream visor answers "no app listens on port 7".
    """
    from skywire.visor.rpc import RPCClient, RPCClientError

    target = parse_pk(pk)
    body: dict[str, Any] = {
        "pk": target.hex(),
        "via": [parse_pk(v).hex() for v in via or []],
        "count": count,
        "size": size,
        "interval": interval,
        "min_hops": min_hops,
        "max_hops": max_hops,
    }
    try:
        client = RPCClient(rpc, timeout=60.0 + count * (interval + 10.0))
    except ValueError as exc:
        err.print(f"[red]error:[/red] --rpc: {exc}")
        raise typer.Exit(2) from exc
    try:
        doc = asyncio.run(client.call("POST", "/routes/ping", body))
    except RPCClientError as exc:
        err.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(1) from exc
    if as_json:
        out.print_json(json.dumps(doc))
        return
    hops = doc.get("hops") or []
    out.print(
        f"route to {target} set up in {doc['setup_ms']:.1f} ms, {len(hops)} hop(s): "
        + " → ".join(h[:10] for h in hops),
        soft_wrap=True,
    )
    for i, rtt in enumerate(doc.get("rtt_ms") or [], 1):
        out.print(f"probe {i}: {size} bytes, {rtt:.2f} ms")
    rtts = doc.get("rtt_ms") or []
    if rtts:
        out.print(f"min/avg/max {min(rtts):.2f}/{sum(rtts) / len(rtts):.2f}/{max(rtts):.2f} ms")


@rule_app.command("ls")
def rule_ls(rpc: RpcOption = "localhost:3435", as_json: JsonOption = False) -> None:
    """The visor's routing table."""
    rows = call_visor(rpc, "GET", "/rules")
    if as_json:
        out.print_json(json.dumps(rows))
        return
    table = Table(title="rules")
    for col in ("key", "type", "keep alive", "next", "descriptor"):
        table.add_column(col)
    for r in rows:
        fwd = r.get("forward_fields") or r.get("intermediary_forward_fields") or {}
        app = r.get("app_fields") or {}
        desc = fwd.get("route_descriptor") or app.get("route_descriptor") or {}
        table.add_row(
            str(r.get("key")),
            str(r.get("rule_type")),
            str(r.get("keep_alive")),
            f"{fwd.get('next_rid', '')} via {str(fwd.get('next_tid', ''))[:8]}" if fwd else "-",
            f"{str(desc.get('src_pk', ''))[:8]}:{desc.get('src_port', '')} → "
            f"{str(desc.get('dst_pk', ''))[:8]}:{desc.get('dst_port', '')}"
            if desc
            else "-",
        )
    out.print(table)


# ------------------------------------------------------------------------------ run
def visor_run(
    config: Annotated[
        Path, typer.Option("--config", "-c", help="skywire-config.json to run.")
    ] = Path("skywire-config.json"),
    log_level: LogLevelOption = None,
    log_format: LogFormatOption = None,
) -> None:
    """Run a visor until interrupted (it also logs to <local_path>/log/skywire.log, rotated)."""
    from skywire.cli.common import run_until_interrupted, setup_logging
    from skywire.visor.config import VisorConfig
    from skywire.visor.visor import Visor

    try:
        cfg = VisorConfig.load(config)
    except (OSError, ValueError) as exc:
        err.print(f"[red]error:[/red] cannot load {config}: {exc}")
        raise typer.Exit(2) from exc
    setup_logging(log_level, log_format, configured=cfg.log_level)
    lock = _claim(cfg)

    async def main(stop: asyncio.Event) -> None:
        current = cfg
        while await run_once(stop, current):  # `cli visor reload`: again, from the file
            try:
                current = VisorConfig.load(config)
            except (OSError, ValueError) as exc:
                err.print(f"[red]error:[/red] reload: cannot load {config}: {exc}")
                raise typer.Exit(2) from exc
            err.print(f"reloading from {config}")

    async def run_once(stop: asyncio.Event, cfg: VisorConfig) -> bool:
        """Run the visor until stopped; True when it asked to be started again."""
        from skywire.visor.services import service_registry

        async with (
            service_registry(cfg) as registry,
            Visor(cfg, registry=registry, log_file=True, apps=True, config_path=config) as v,
        ):
            err.print(f"visor {v.pk} running; control API on {cfg.cli_addr}")
            waits = [asyncio.ensure_future(stop.wait()), asyncio.ensure_future(v.halted.wait())]
            try:
                await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for w in waits:
                    w.cancel()
                await asyncio.gather(*waits, return_exceptions=True)
            if v.reload_requested and not stop.is_set():
                return True
            err.print(
                "shutting down" + (" (halted over the control API)" if v.halted.is_set() else "")
            )
        return False

    try:
        asyncio.run(run_until_interrupted(main))
    finally:
        lock.release()


def _claim(cfg: Any) -> Any:
    """Before anything shared is touched: this visor's state folder (one process at a time)
    and its listening ports. Exits with one line naming what is taken."""
    from skywire.visor.statelock import (
        PortInUseError,
        StateLock,
        StateLockedError,
        check_ports_free,
    )
    from skywire.visor.web import split_address

    lock = StateLock(Path(cfg.local_path), "visor.lock")
    try:
        lock.acquire()
    except StateLockedError as exc:
        err.print(f"[red]error:[/red] a visor already runs from this state: {exc}")
        raise typer.Exit(1) from exc
    ports = [("control API", *split_address(cfg.cli_addr))]
    for name, block in (("dmsg_web", cfg.dmsg_web), ("skynet_web", cfg.skynet_web)):
        if block.enabled:
            ports.append((name, *split_address(block.listen)))
    if cfg.transport.stcpr_port:
        ports.append(("stcpr", "0.0.0.0", cfg.transport.stcpr_port))
    try:
        check_ports_free(ports)
    except (PortInUseError, ValueError) as exc:
        lock.release()
        err.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(1) from exc
    return lock


def register(app: typer.Typer) -> None:
    app.add_typer(cli_app, name="cli")
    app.command("visor")(visor_run)

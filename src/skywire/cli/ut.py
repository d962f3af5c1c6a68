"""``skywire cli ut``: a visor's uptime per day, as the uptime tracker counts it.

By default the running visor's own key and the tracker its config names (``uptime_tracker.addr``),
both read from ``GET /visor/info`` of its control API; ``--pk`` and ``--ut`` ask about any key
at any tracker without a visor. Upstream's ``skywire-cli ut`` reads the whole ``/uptimes?v=v2``
list and filters it; this one asks the tracker's ``/uptimes/{pk}`` for the one key.
"""

from __future__ import annotations

import asyncio
import json
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from skywire.cli.app_cmds import JsonOption, RpcOption, call_visor

err = Console(stderr=True)
out = Console()


def _duration(seconds: float) -> str:
    s = round(seconds)
    d, rest = divmod(s, 86400)
    h, rest = divmod(rest, 3600)
    m, sec = divmod(rest, 60)
    return f"{d}d {h:02d}:{m:02d}:{sec:02d}" if d else f"{h:02d}:{m:02d}:{sec:02d}"


def uptime_table(found: dict[str, Any]) -> Table:
    """One row per day (date, time up, percent of the day), then the total."""
    table = Table("date", "up", "of the day", show_footer=True)
    table.columns[0].footer = "total"
    table.columns[1].footer = _duration(float(found.get("up", 0.0)))
    table.columns[2].footer = f"{float(found.get('pct', 0.0)):.2f} %"
    for col in table.columns[1:]:
        col.justify = "right"
    for day in found.get("days", []):
        table.add_row(
            str(day.get("date", "?")),
            _duration(float(day.get("up", 0.0))),
            f"{float(day.get('pct', 0.0)):.2f} %",
        )
    return table


def _ask(url: str, pk: str, days: int) -> dict[str, Any]:
    from skywire.cipher import CipherError, PubKey
    from skywire.services.ut.client import UTClient, UTNotFoundError
    from skywire.services.ut.errors import UTError

    try:
        key = PubKey.from_hex(pk)
    except CipherError as exc:
        raise typer.BadParameter(f"{pk!r}: {exc}", param_hint="--pk") from exc

    async def ask() -> dict[str, Any]:
        async with UTClient(url) as client:
            return await client.uptime(key, days=days)

    try:
        return asyncio.run(ask())
    except UTNotFoundError as exc:
        err.print(f"[red]error:[/red] {url} has no heartbeat from {pk}")
        raise typer.Exit(1) from exc
    except (UTError, OSError, TimeoutError) as exc:
        err.print(f"[red]error:[/red] {url}: {exc or type(exc).__name__}")
        raise typer.Exit(1) from exc


def ut(
    pk: Annotated[
        str, typer.Option("--pk", "-k", help="The visor key to ask about (default: this visor).")
    ] = "",
    url: Annotated[
        str,
        typer.Option("--ut", "-u", help="The uptime tracker URL (default: the visor's own)."),
    ] = "",
    days: Annotated[int, typer.Option("--days", min=1, max=366, help="Days to show.")] = 30,
    rpc: RpcOption = "localhost:3435",
    as_json: JsonOption = False,
) -> None:
    """Uptime per day of a visor (this one by default), from the uptime tracker."""
    if not pk or not url:
        info = call_visor(rpc, "GET", "/visor/info")
        pk = pk or str(info.get("pk", ""))
        url = url or str(info.get("uptime_tracker") or "")
        if not url:
            err.print(
                "[red]error:[/red] the visor has no uptime tracker (uptime_tracker.addr): give --ut"
            )
            raise typer.Exit(2)
    found = _ask(url, pk, days)
    if as_json:
        typer.echo(json.dumps(found, indent=2))
        return
    state = "online" if found.get("on") else "offline"
    out.print(f"visor {found.get('pk', pk)}", highlight=False)
    out.print(
        f"{state}, version {found.get('version') or '-'}, "
        f"last heartbeat {found.get('last_seen', '-')}",
        highlight=False,
    )
    out.print(f"tracker {url}", highlight=False)
    out.print(uptime_table(found))


def register(cli_app: typer.Typer) -> None:
    """``skywire cli ut``."""
    cli_app.command("ut")(ut)

"""``skywire cli log <pk>`` and ``skywire cli debug tasks|profile|memory <pk>``: look inside a
running visor or service over dmsg, with the caller's own key (a visor's config, or ``--sk``).

The other side answers only keys on its survey whitelist (``/visor.log``: also its hypervisors
and dmsgpty whitelist); a refusal is printed as it came, with exit code 3.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from typing import Annotated
from urllib.parse import urlencode

import httpx
import typer
from rich.console import Console

from skywire.cipher import CipherError, PubKey, SecKey

err = Console(stderr=True)

EXIT_FAILED = 1
EXIT_REFUSED = 3

debug_app = typer.Typer(
    help="Look inside a running visor or service over dmsg (its survey whitelist must hold "
    "your key).",
    no_args_is_help=True,
)

PkArg = Annotated[str, typer.Argument(help="The visor's or service's public key (hex).")]
ConfigOption = Annotated[
    Path,
    typer.Option("--config", "-c", help="Take your key and dmsg discovery from this visor config."),
]
SkOption = Annotated[
    str,
    typer.Option(
        "--sk", help="Your secret key (hex), instead of the config's.", envvar="SKYWIRE_SK"
    ),
]
DiscOption = Annotated[
    str,
    typer.Option(
        "--disc", help="dmsg discovery URL, instead of the config's.", envvar="SKYWIRE_DMSG_DISC"
    ),
]
PortOption = Annotated[int, typer.Option("--port", help="The dmsg port it serves on.")]
TimeoutOption = Annotated[float, typer.Option(help="Seconds before giving up.")]


def _identity(config: Path, sk: str, disc: str) -> tuple[SecKey, str]:
    """Your key and the discovery: ``--sk``/``--disc`` first, then the visor config."""
    key: SecKey | None = None
    if sk:
        try:
            key = SecKey.from_hex(sk)
        except CipherError as exc:
            raise typer.BadParameter(f"invalid secret key: {exc}", param_hint="--sk") from exc
    if key is None or not disc:
        from skywire.visor.config import VisorConfig

        try:
            cfg = VisorConfig.load(config)
        except (OSError, ValueError) as exc:
            if key is None:
                err.print(
                    f"[red]error:[/red] no key: give --sk, or a visor config with -c ({config}: "
                    f"{exc})"
                )
                raise typer.Exit(2) from exc
            err.print(f"[red]error:[/red] no discovery: give --disc ({config}: {exc})")
            raise typer.Exit(2) from exc
        key = key or cfg.sk
        disc = disc or cfg.dmsg.discovery
    return key, disc


def _target(pk: str) -> PubKey:
    try:
        return PubKey.from_hex(pk)
    except CipherError as exc:
        raise typer.BadParameter(f"invalid public key: {exc}", param_hint="pk") from exc


async def _get(sk: SecKey, disc_url: str, url: str, timeout: float) -> httpx.Response:
    from skywire.dmsg.client import Client
    from skywire.dmsg.http import fetch
    from skywire.services.dmsgdisc.client import DiscClient

    async with (
        DiscClient(disc_url, timeout=min(timeout, 10.0)) as disc,
        Client(sk, disc, serve_ctrl=False) as client,
    ):
        await client.ready(min(timeout, 30.0))
        return await fetch(client.dial, url, timeout=timeout)


def _run(
    pk: PubKey,
    path: str,
    query: dict[str, str],
    config: Path,
    sk: str,
    disc: str,
    port: int,
    timeout: float,
) -> bytes:
    """GET ``path`` of ``pk``; exits plainly on a refusal or a failure."""
    from skywire.dmsg.disc_errors import DiscError
    from skywire.dmsg.errors import DmsgError

    key, disc_url = _identity(config, sk, disc)
    url = f"dmsg://{pk.hex()}:{port}{path}" + (f"?{urlencode(query)}" if query else "")
    try:
        resp = asyncio.run(_get(key, disc_url, url, timeout))
    except (DiscError, DmsgError, OSError, TimeoutError, httpx.HTTPError) as exc:
        err.print(f"[red]error:[/red] {url}: {exc or type(exc).__name__}")
        raise typer.Exit(EXIT_FAILED) from exc
    if resp.status_code == 403:
        err.print(
            f"refused: {pk} does not let your key {key.pubkey()} in "
            f"({resp.text.strip() or 'forbidden'})",
            markup=False,
        )
        raise typer.Exit(EXIT_REFUSED)
    if resp.status_code != 200:
        err.print(f"error: {url}: HTTP {resp.status_code}: {resp.text.strip()}", markup=False)
        raise typer.Exit(EXIT_FAILED)
    return resp.content


def _write(body: bytes, output: Path | None) -> None:
    if output is None:
        sys.stdout.buffer.write(body)
        sys.stdout.buffer.flush()
    else:
        output.write_bytes(body)
        err.print(f"wrote {len(body)} bytes to {output}")


def log(
    pk: PkArg,
    lines: Annotated[int, typer.Option("--lines", "-n", min=1, help="Newest lines.")] = 200,
    level: Annotated[str, typer.Option(help="Lowest level: debug, info, warning, error.")] = "",
    visor_log: Annotated[
        bool,
        typer.Option("--visor-log", help="A visor's whole log file (/visor.log) instead."),
    ] = False,
    config: ConfigOption = Path("skywire-config.json"),
    sk: SkOption = "",
    disc: DiscOption = "",
    port: PortOption = 80,
    timeout: TimeoutOption = 30.0,
) -> None:
    """Print the recent log of a visor or service (its /debug/log ring), over dmsg."""
    target = _target(pk)
    if visor_log:
        body = _run(target, "/visor.log", {}, config, sk, disc, port, timeout)
    else:
        query = {"lines": str(lines), **({"level": level} if level else {})}
        body = _run(target, "/debug/log", query, config, sk, disc, port, timeout)
    _write(body, None)


@debug_app.command("tasks")
def tasks(
    pk: PkArg,
    as_json: Annotated[bool, typer.Option("--json", help="JSON instead of text.")] = False,
    config: ConfigOption = Path("skywire-config.json"),
    sk: SkOption = "",
    disc: DiscOption = "",
    port: PortOption = 80,
    timeout: TimeoutOption = 30.0,
) -> None:
    """Every live asyncio task of the process, with its age and stack."""
    query = {"format": "json"} if as_json else {}
    _write(_run(_target(pk), "/debug/tasks", query, config, sk, disc, port, timeout), None)


@debug_app.command("profile")
def profile(
    pk: PkArg,
    seconds: Annotated[
        float, typer.Option("--seconds", min=0.1, max=60, help="Sampling time.")
    ] = 5.0,
    output: Annotated[
        Path | None,
        typer.Option("--output", "-o", help="Write the folded stacks here (speedscope opens it)."),
    ] = None,
    config: ConfigOption = Path("skywire-config.json"),
    sk: SkOption = "",
    disc: DiscOption = "",
    port: PortOption = 80,
    timeout: TimeoutOption = 90.0,
) -> None:
    """A CPU profile of the process over --seconds, as folded stacks (flamegraph.pl,
    speedscope)."""
    if not output:
        err.print(f"sampling {pk[:16]}… for {seconds:g} s")
    body = _run(
        _target(pk),
        "/debug/profile",
        {"seconds": f"{seconds:g}"},
        config,
        sk,
        disc,
        port,
        timeout,
    )
    _write(body, output)


@debug_app.command("memory")
def memory(
    pk: PkArg,
    start: Annotated[bool, typer.Option("--start", help="Start tracing allocations.")] = False,
    stop: Annotated[bool, typer.Option("--stop", help="Stop tracing allocations.")] = False,
    top: Annotated[int, typer.Option("--top", min=1, help="Allocation sites to list.")] = 25,
    config: ConfigOption = Path("skywire-config.json"),
    sk: SkOption = "",
    disc: DiscOption = "",
    port: PortOption = 80,
    timeout: TimeoutOption = 30.0,
) -> None:
    """The top allocation sites of the process (tracing is switched on with --start)."""
    query = {
        "top": str(top),
        **({"start": "1"} if start else {}),
        **({"stop": "1"} if stop else {}),
    }
    _write(_run(_target(pk), "/debug/memory", query, config, sk, disc, port, timeout), None)


def register(cli_app: typer.Typer) -> None:
    cli_app.command("log")(log)
    cli_app.add_typer(debug_app, name="debug")

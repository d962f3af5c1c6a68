"""``skywire dmsg server|curl|http``: run a relay server, fetch and serve over dmsg."""

from __future__ import annotations

import asyncio
import sys
import time
from pathlib import Path
from typing import Annotated

import httpx
import typer
from aiohttp import web
from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)

from skywire.cipher import CipherError, SecKey
from skywire.cli.common import (
    LogFormatOption,
    LogLevelOption,
    run_until_interrupted,
    setup_logging,
)
from skywire.dmsg.client import Client
from skywire.dmsg.disc_errors import DiscError
from skywire.dmsg.errors import DmsgError
from skywire.dmsg.http import DmsgURL, DmsgURLError, HTTPServer, add_static, fetch_stream
from skywire.dmsg.server import (
    DEFAULT_LIMIT_IP,
    DEFAULT_MAX_PENDING_STREAMS,
    DEFAULT_MAX_STREAMS,
    Server,
    ServerConfig,
    split_listen_address,
)
from skywire.services.dmsgdisc.client import DiscClient

err = Console(stderr=True)

server_app = typer.Typer(help="The dmsg relay server.", no_args_is_help=True)
config_app = typer.Typer(help="dmsg server configuration files.", no_args_is_help=True)
server_app.add_typer(config_app, name="config")

EXIT_TRANSPORT = 1
EXIT_HTTP = 22

DiscOption = Annotated[
    str, typer.Option("--disc", "-d", help="dmsg discovery URL.", envvar="SKYWIRE_DMSG_DISC")
]
SkOption = Annotated[
    str,
    typer.Option(
        "--sk", "-s", help="Secret key (hex); a fresh one when empty.", envvar="SKYWIRE_SK"
    ),
]


def _secret(sk: str) -> SecKey:
    if not sk:
        return SecKey.generate()
    try:
        return SecKey.from_hex(sk)
    except CipherError as exc:
        raise typer.BadParameter(f"invalid secret key: {exc}") from exc


# ------------------------------------------------------------------------------ server
@config_app.command("gen")
def config_gen(
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Write here instead of stdout.")
    ] = None,
    discovery: Annotated[str, typer.Option(help="Discovery URL.")] = "http://127.0.0.1:9090",
    public_address: Annotated[str, typer.Option(help="Address clients dial.")] = "127.0.0.1:8081",
    local_address: Annotated[str, typer.Option(help="Address to listen on.")] = ":8081",
    max_sessions: Annotated[int, typer.Option(help="Sessions advertised as capacity.")] = 2048,
) -> None:
    """Generate a server configuration with a fresh key pair (the reference's JSON shape)."""
    cfg = ServerConfig.generate(
        discovery=discovery,
        public_address=public_address,
        local_address=local_address,
        max_sessions=max_sessions,
    )
    text = cfg.to_json() + "\n"
    if output is None:
        sys.stdout.write(text)
    else:
        output.write_text(text)
        output.chmod(0o600)
        err.print(f"wrote {output} (public key {cfg.public_key})")


@server_app.command("start")
def server_start(
    config: Annotated[Path, typer.Argument(help="Configuration file (see `config gen`).")],
    limit_ip: Annotated[
        int,
        typer.Option("--limit-ip", help="Concurrent connections per remote IP (0: no limit)."),
    ] = DEFAULT_LIMIT_IP,
    max_streams: Annotated[
        int, typer.Option(help="Streams one session may have relayed at once.")
    ] = DEFAULT_MAX_STREAMS,
    max_pending: Annotated[
        int, typer.Option(help="Streams of one session in their handshake at once.")
    ] = DEFAULT_MAX_PENDING_STREAMS,
    log_level: LogLevelOption = None,
    log_format: LogFormatOption = None,
) -> None:
    """Run a relay server until interrupted; it advertises itself in discovery.

    Streams over a session's limits are reset at once; connections over the per-IP limit are
    closed (upstream leaves them hanging)."""
    try:
        cfg = ServerConfig.load(config)
    except (OSError, ValueError) as exc:
        err.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2) from exc
    setup_logging(log_level, log_format, configured=cfg.log_level)
    host, port = split_listen_address(cfg.local_address)
    interval = cfg.update_interval / 1e9 if cfg.update_interval else 60.0

    async def main(stop: asyncio.Event) -> None:
        async with (
            DiscClient(cfg.discovery) as disc,
            Server(
                cfg.secret_key,
                host=host,
                port=port,
                public_address=cfg.public_address,
                disc=disc,
                max_sessions=cfg.max_sessions,
                update_interval=interval,
                health_address=cfg.health_endpoint_address or None,
                limit_ip=limit_ip,
                max_streams_per_session=max_streams,
                max_pending_streams=max_pending,
            ) as srv,
        ):
            err.print(f"dmsg server {srv.pk} on {host}:{srv.port}, advertised as {srv.address}")
            await stop.wait()
            err.print("shutting down: closing sessions")

    asyncio.run(run_until_interrupted(main))


# ------------------------------------------------------------------------------ curl
def curl(
    url: Annotated[str, typer.Argument(help="dmsg://<pk>[:port]/path")],
    disc: DiscOption = "http://127.0.0.1:9090",
    sk: SkOption = "",
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Write the body to a file.")
    ] = None,
    method: Annotated[str, typer.Option("--request", "-X", help="HTTP method.")] = "GET",
    data: Annotated[str | None, typer.Option("--data", help="Request body.")] = None,
    sessions: Annotated[int, typer.Option(help="dmsg sessions to keep.")] = 1,
    timeout: Annotated[float, typer.Option(help="Seconds before giving up.")] = 30.0,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress output.")] = False,
) -> None:
    """Fetch a URL over dmsg. Exit codes: 0 ok, 1 dmsg/transport failure, 22 HTTP status >= 400."""
    try:
        target = DmsgURL.parse(url)
    except DmsgURLError as exc:
        err.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2) from exc
    key = _secret(sk)
    code = asyncio.run(_curl(target, disc, key, output, method, data, sessions, timeout, quiet))
    raise typer.Exit(code)


async def _curl(
    target: DmsgURL,
    disc_url: str,
    sk: SecKey,
    output: Path | None,
    method: str,
    data: str | None,
    sessions: int,
    timeout: float,
    quiet: bool,
) -> int:
    start = time.monotonic()
    try:
        async with DiscClient(disc_url, timeout=min(timeout, 10.0)) as disc:
            # ask discovery once up front: an unreachable one is reported at once
            await disc.available_servers()
            async with Client(sk, disc, min_sessions=sessions, serve_ctrl=False) as client:
                await client.ready(timeout)
                return await _fetch(client, target, output, method, data, quiet, start)
    except (DiscError, DmsgError, OSError, TimeoutError) as exc:
        err.print(f"[red]error:[/red] {exc or type(exc).__name__}")
        return EXIT_TRANSPORT
    except httpx.HTTPError as exc:
        err.print(f"[red]error:[/red] {type(exc).__name__}: {exc}")
        return EXIT_TRANSPORT


async def _fetch(
    client: Client,
    target: DmsgURL,
    output: Path | None,
    method: str,
    data: str | None,
    quiet: bool,
    start: float,
) -> int:
    async with fetch_stream(
        client.dial, target, method=method, content=data.encode() if data else None
    ) as resp:
        total = int(resp.headers.get("content-length", "0") or 0) or None
        sink = output.open("wb") if output else sys.stdout.buffer
        got = 0
        with Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            DownloadColumn(),
            TransferSpeedColumn(),
            TimeRemainingColumn(),
            console=err,
            disable=quiet or (output is None and total is not None and total < 1 << 20),
            transient=True,
        ) as progress:
            task = progress.add_task(str(target), total=total)
            try:
                async for chunk in resp.aiter_bytes():
                    sink.write(chunk)
                    got += len(chunk)
                    progress.update(task, advance=len(chunk))
            finally:
                if output:
                    sink.close()
                else:
                    sink.flush()
        elapsed = time.monotonic() - start
        if not quiet:
            err.print(
                f"{resp.status_code} {resp.reason_phrase}: {got} bytes in {elapsed:.2f}s"
                f" ({got / elapsed / 1e6:.1f} MB/s)"
            )
        return EXIT_HTTP if resp.status_code >= 400 else 0


# ------------------------------------------------------------------------------ http
def http(
    directory: Annotated[Path, typer.Argument(help="Directory to serve.")] = Path("."),
    port: Annotated[int, typer.Option("--port", "-p", help="dmsg port.")] = 80,
    disc: DiscOption = "http://127.0.0.1:9090",
    sk: SkOption = "",
    sessions: Annotated[int, typer.Option(help="dmsg sessions to keep.")] = 1,
    log_level: LogLevelOption = None,
    log_format: LogFormatOption = None,
) -> None:
    """Serve a directory over dmsg HTTP until interrupted."""
    if not directory.is_dir():
        err.print(f"[red]error:[/red] {directory} is not a directory")
        raise typer.Exit(2)
    setup_logging(log_level, log_format)
    key = _secret(sk)

    async def main(stop: asyncio.Event) -> None:
        app = web.Application()
        add_static(app.router, "/", directory, show_index=True)
        async with (
            DiscClient(disc) as dc,
            Client(key, dc, min_sessions=sessions) as client,
        ):
            await client.ready()
            listener = await client.listen(port)
            async with HTTPServer(app, listener):
                err.print(f"serving {directory} at dmsg://{client.pk}:{port}/")
                await stop.wait()

    asyncio.run(run_until_interrupted(main))


def register(dmsg_app: typer.Typer) -> None:
    dmsg_app.add_typer(server_app, name="server")
    dmsg_app.command("curl")(curl)
    dmsg_app.command("http")(http)

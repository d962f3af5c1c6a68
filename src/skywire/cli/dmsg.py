"""``skywire dmsg server|curl|http``: run a relay server, fetch and serve over dmsg."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from typing import Annotated

import typer
from aiohttp import web
from rich.console import Console

from skywire.cli.common import (
    LogFormatOption,
    LogLevelOption,
    run_until_interrupted,
    setup_logging,
)
from skywire.cli.dmsg_curl import DiscOption, SkOption
from skywire.cli.dmsg_curl import secret_key as _secret
from skywire.dmsg.client import Client
from skywire.dmsg.http import HTTPServer, add_static
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
    workers: Annotated[
        int,
        typer.Option(
            min=1,
            help="Worker processes sharing the port (SO_REUSEPORT), one per core to use; "
            "streams between sessions of different workers cross a local link.",
        ),
    ] = 1,
    worker_index: Annotated[int | None, typer.Option(hidden=True)] = None,
    worker_links: Annotated[str, typer.Option(hidden=True)] = "",
    log_level: LogLevelOption = None,
    log_format: LogFormatOption = None,
) -> None:
    """Run a relay server until interrupted; it advertises itself in discovery.

    Streams over a session's limits are reset at once; connections over the per-IP limit are
    closed (upstream leaves them hanging). With --workers N, N processes serve the port; the
    first one advertises the server and serves the health endpoint."""
    try:
        cfg = ServerConfig.load(config)
    except (OSError, ValueError) as exc:
        err.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2) from exc
    setup_logging(log_level, log_format, configured=cfg.log_level)
    host, port = split_listen_address(cfg.local_address)
    interval = cfg.update_interval / 1e9 if cfg.update_interval else 60.0
    if workers > 1 and worker_index is None:
        from skywire.dmsg.workers import run_workers, worker_command

        extra = ["--limit-ip", str(limit_ip), "--max-streams", str(max_streams)]
        extra += ["--max-pending", str(max_pending)]
        if log_level:
            extra += ["--log-level", log_level]
        if log_format:
            extra += ["--log-format", log_format]
        err.print(f"dmsg server {cfg.public_key}: {workers} workers on {host}:{port}")
        raise typer.Exit(asyncio.run(run_workers(worker_command(str(config), extra), workers)))
    mesh = None
    if worker_index is not None:
        from skywire.dmsg.mesh import Mesh
        from skywire.dmsg.workers import parse_links

        mesh = Mesh(worker_index, parse_links(worker_links))
    first = worker_index in (None, 0)  # advertises, and serves the health endpoint

    async def main(stop: asyncio.Event) -> None:
        async with (
            DiscClient(cfg.discovery) as disc,
            Server(
                cfg.secret_key,
                host=host,
                port=port,
                public_address=cfg.public_address,
                disc=disc if first else None,
                max_sessions=cfg.max_sessions,
                update_interval=interval,
                health_address=(cfg.health_endpoint_address or None) if first else None,
                limit_ip=limit_ip,
                max_streams_per_session=max_streams,
                max_pending_streams=max_pending,
                reuse_port=mesh is not None,
                mesh=mesh,
            ) as srv,
        ):
            err.print(f"dmsg server {srv.pk} on {host}:{srv.port}, advertised as {srv.address}")
            await stop.wait()
            err.print("shutting down: closing sessions")

    asyncio.run(run_until_interrupted(main))


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
    dmsg_app.command("http")(http)

"""Helpers shared by the service commands: listen addresses, signals, logging."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Awaitable, Callable, Coroutine
from typing import Annotated, Any

import typer

from skywire.dmsg.disc_entry import split_host_port

LOG_FORMAT = "%(asctime)s %(levelname)-5s %(name)s: %(message)s"


def parse_addr(addr: str, option: str = "--addr") -> tuple[str, int]:
    """``host:port`` (empty host: every interface) for a listening option."""
    try:
        host, port_text = split_host_port(addr)
        port = int(port_text)
    except ValueError as exc:
        raise typer.BadParameter(f"{addr!r} is not host:port ({exc})", param_hint=option) from exc
    if not 0 <= port <= 65535:
        raise typer.BadParameter(f"port {port} out of range", param_hint=option)
    return host, port


def setup_logging(level: str) -> None:
    """Log to stderr at ``level`` (debug, info, warning, error)."""
    value = getattr(logging, level.upper(), None)
    if not isinstance(value, int):
        raise typer.BadParameter(f"unknown level {level!r}", param_hint="--log-level")
    logging.basicConfig(level=value, format=LOG_FORMAT)
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)


def install_stop_signals() -> asyncio.Event:
    """An event that SIGINT and SIGTERM set (call inside the running loop)."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    return stop


async def run_until_interrupted(main: Callable[[asyncio.Event], Awaitable[None]]) -> None:
    """Run ``main(stop)``; SIGINT/SIGTERM set ``stop`` so that it can close cleanly."""
    stop = install_stop_signals()
    loop = asyncio.get_running_loop()
    try:
        await main(stop)
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.remove_signal_handler(sig)


def run_service(main: Coroutine[Any, Any, None], name: str) -> None:
    """Run a service's ``main`` until it returns or Ctrl-C; a failure (a store that cannot
    open, a port in use) is printed as one line and exits 1, its traceback logged at debug."""
    try:
        asyncio.run(main)
    except KeyboardInterrupt:
        pass
    except Exception as exc:  # the one top-level handler: say what failed and exit
        logging.getLogger("skywire.cli").debug("%s failed", name, exc_info=True)
        text = str(exc).strip() or type(exc).__name__
        typer.echo(f"error: {name}: {text}", err=True)
        raise typer.Exit(1) from exc


LogLevelOption = Annotated[str, typer.Option("--log-level", help="debug, info, warning or error.")]
AddrOption = Annotated[
    str,
    typer.Option("--addr", "-a", help="Listen address host:port (empty host: all interfaces)."),
]
RedisOption = Annotated[
    str,
    typer.Option("--redis", help="Redis URL (--store redis); password from $REDIS_PASSWORD."),
]
RedisNamespaceOption = Annotated[
    str,
    typer.Option("--redis-namespace", help="Prefix of every Redis key (empty: upstream layout)."),
]

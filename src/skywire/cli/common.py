"""Helpers shared by the service commands: listen addresses, signals, logging.

Every command imports this module (the root command's options are here), so what only some
helpers need (asyncio, the address parser, the log ring) is imported inside them: ``skywire
--help`` and ``skywire version`` import neither asyncio nor a key library.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

if TYPE_CHECKING:
    import asyncio

LOG_FORMAT = "%(asctime)s %(levelname)-5s %(name)s: %(message)s"


def parse_addr(addr: str, option: str = "--addr") -> tuple[str, int]:
    """``host:port`` (empty host: every interface) for a listening option."""
    from skywire.dmsg.disc_entry import split_host_port

    try:
        host, port_text = split_host_port(addr)
        port = int(port_text)
    except ValueError as exc:
        raise typer.BadParameter(f"{addr!r} is not host:port ({exc})", param_hint=option) from exc
    if not 0 <= port <= 65535:
        raise typer.BadParameter(f"port {port} out of range", param_hint=option)
    return host, port


LOG_FORMATS = ("text", "json")


@dataclass
class LoggingChoice:
    """What ``skywire --log-level/--log-format`` chose for every command (a command's own
    options win)."""

    level: str | None = None
    format: str | None = None


ROOT_LOGGING = LoggingChoice()


class JSONFormatter(logging.Formatter):
    """One JSON object per line: time (UTC, RFC 3339), level, logger, msg and, for an
    exception, its traceback as ``exc``."""

    def format(self, record: logging.LogRecord) -> str:
        when = datetime.fromtimestamp(record.created, UTC)
        doc: dict[str, Any] = {
            "time": when.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        if record.exc_info:
            doc["exc"] = self.formatException(record.exc_info)
        return json.dumps(doc, ensure_ascii=False)


def log_formatter(fmt: str) -> logging.Formatter:
    """The formatter of ``--log-format`` ``text`` or ``json``."""
    if fmt == "json":
        return JSONFormatter()
    if fmt == "text":
        return logging.Formatter(LOG_FORMAT)
    raise typer.BadParameter(f"unknown format {fmt!r} (text or json)", param_hint="--log-format")


def setup_logging(
    level: str | None = None, fmt: str | None = None, *, configured: str | None = None
) -> None:
    """Log to stderr at ``level`` (debug, info, warning, error) in ``fmt`` (text, json); what a
    command leaves unset comes from ``skywire --log-level/--log-format``, then from the
    ``configured`` level (a config file's), then info and text.
    Recent lines also go to the process's log ring (``/debug/log``)."""
    from skywire.debug import install_ring_handler

    level = level or ROOT_LOGGING.level or configured or "info"
    fmt = fmt or ROOT_LOGGING.format or "text"
    value = getattr(logging, level.upper(), None)
    if not isinstance(value, int):
        raise typer.BadParameter(f"unknown level {level!r}", param_hint="--log-level")
    formatter = log_formatter(fmt)
    handler = logging.StreamHandler()
    handler.setFormatter(formatter)
    root = logging.getLogger()
    for old in [h for h in root.handlers if isinstance(h, logging.StreamHandler)]:
        if getattr(old, "skywire_stderr", False):
            root.removeHandler(old)
    handler.skywire_stderr = True  # type: ignore[attr-defined]
    root.addHandler(handler)
    root.setLevel(value)
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
    install_ring_handler()


def install_stop_signals() -> asyncio.Event:
    """An event that SIGINT and SIGTERM set (call inside the running loop)."""
    import asyncio
    import contextlib
    import signal

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    return stop


async def run_until_interrupted(main: Callable[[asyncio.Event], Awaitable[None]]) -> None:
    """Run ``main(stop)``; SIGINT/SIGTERM set ``stop`` so that it can close cleanly."""
    import asyncio
    import contextlib
    import signal

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
    import asyncio

    try:
        asyncio.run(main)
    except KeyboardInterrupt:
        pass
    except Exception as exc:  # the one top-level handler: say what failed and exit
        logging.getLogger("skywire.cli").debug("%s failed", name, exc_info=True)
        text = str(exc).strip() or type(exc).__name__
        typer.echo(f"error: {name}: {text}", err=True)
        raise typer.Exit(1) from exc


LogLevelOption = Annotated[
    str | None, typer.Option("--log-level", help="debug, info, warning or error (default: info).")
]
LogFormatOption = Annotated[
    str | None,
    typer.Option("--log-format", help="text, or json: one object per line (default: text)."),
]
AddrOption = Annotated[
    str,
    typer.Option("--addr", "-a", help="Listen address host:port (empty host: all interfaces)."),
]
RedisOption = Annotated[
    str,
    typer.Option("--redis", help="Redis URL (--store redis); password from $REDIS_PASSWORD."),
]
DbOption = Annotated[Path, typer.Option("--db", help="SQLite file (--store sqlite).")]
PgUrlOption = Annotated[str, typer.Option("--pg-url", help="PostgreSQL URL (--store postgres).")]
PgSchemaOption = Annotated[
    str, typer.Option("--pg-schema", help="PostgreSQL schema for the tables (optional).")
]


def describe_store(
    kind: Enum, *, db: Path | str = "", pg_url: str = "", pg_schema: str = "", redis_url: str = ""
) -> str:
    """A service's store as its start-up line names it: ``sqlite <file>``, ``memory``,
    ``postgres <url> [schema <name>]`` or ``redis <url>``."""
    name = str(kind.value)
    if name == "sqlite":
        return f"sqlite {db}"
    if name == "postgres":
        return f"postgres {pg_url}" + (f" schema {pg_schema}" if pg_schema else "")
    if name == "redis":
        return f"redis {redis_url}"
    return name


RedisNamespaceOption = Annotated[
    str,
    typer.Option("--redis-namespace", help="Prefix of every Redis key (empty: upstream layout)."),
]

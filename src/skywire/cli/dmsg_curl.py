"""``skywire dmsg curl``: one HTTP request over dmsg, as a whole process.

Start-up time is most of what this command costs, so it imports only what a request needs:
the dmsg client, the discovery client without aiohttp (``pooled=False``) and the one-request
HTTP/1.1 client of :mod:`skywire.wire.http1` (h11, no httpx); the progress bar's module only
when a bar is shown. ``--help`` imports none of them (nor asyncio, nor a key library).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

if TYPE_CHECKING:
    from skywire.cipher import SecKey
    from skywire.dmsg.client import Client
    from skywire.dmsg.http.url import DmsgURL
    from skywire.wire.http1 import Response

EXIT_TRANSPORT = 1
EXIT_HTTP = 22
FETCH_TIMEOUT = 20.0
"""Seconds allowed to dial and get the answer's head, and then for each read of the body."""

DiscOption = Annotated[
    str, typer.Option("--disc", "-d", help="dmsg discovery URL.", envvar="SKYWIRE_DMSG_DISC")
]
SkOption = Annotated[
    str,
    typer.Option(
        "--sk", "-s", help="Secret key (hex); a fresh one when empty.", envvar="SKYWIRE_SK"
    ),
]


def secret_key(sk: str) -> SecKey:
    """The key of ``--sk``, or a fresh one when empty."""
    from skywire.cipher import CipherError, SecKey

    if not sk:
        return SecKey.generate()
    try:
        return SecKey.from_hex(sk)
    except CipherError as exc:
        raise typer.BadParameter(f"invalid secret key: {exc}") from exc


def _error(text: str) -> None:
    typer.secho("error: ", fg="red", err=True, nl=False)
    typer.echo(text, err=True)


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
    import asyncio

    from skywire.dmsg.http.url import DmsgURL, DmsgURLError

    try:
        target = DmsgURL.parse(url)
    except DmsgURLError as exc:
        _error(str(exc))
        raise typer.Exit(2) from exc
    key = secret_key(sk)
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
    from skywire.dmsg.client import Client
    from skywire.dmsg.disc_errors import DiscError
    from skywire.dmsg.errors import DmsgError
    from skywire.services.dmsgdisc.client import DiscClient

    start = time.monotonic()
    try:
        async with DiscClient(disc_url, timeout=min(timeout, 10.0), pooled=False) as disc:
            # ask discovery once up front: an unreachable one is reported at once
            await disc.available_servers()
            async with Client(sk, disc, min_sessions=sessions, serve_ctrl=False) as client:
                await client.ready(timeout)
                return await _fetch(client, target, output, method, data, quiet, start)
    except (DiscError, DmsgError, OSError, TimeoutError) as exc:
        _error(str(exc) or type(exc).__name__)
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
    import asyncio

    from skywire import __version__
    from skywire.wire import http1

    async with asyncio.timeout(FETCH_TIMEOUT):
        stream = await client.dial(target.pk, target.port)
        resp = await http1.request(
            stream,
            method,
            target.target,
            host=target.host,
            headers=[("User-Agent", f"skywire/{__version__}"), ("Accept", "*/*")],
            body=data.encode() if data else None,
            read_timeout=FETCH_TIMEOUT,
        )
    async with resp:
        length = resp.header("content-length")
        total = int(length) if length.isdigit() and int(length) else None
        sink = output.open("wb") if output else sys.stdout.buffer
        got = 0
        bar = not quiet and not (output is None and total is not None and total < 1 << 20)
        try:
            if bar:
                got = await _with_progress(resp, sink, str(target), total)
            else:
                async for chunk in resp:
                    sink.write(chunk)
                    got += len(chunk)
        finally:
            if output:
                sink.close()
            else:
                sink.flush()
        elapsed = time.monotonic() - start
        if not quiet:
            typer.echo(
                f"{resp.status} {resp.reason}: {got} bytes in {elapsed:.2f}s"
                f" ({got / elapsed / 1e6:.1f} MB/s)",
                err=True,
            )
        return EXIT_HTTP if resp.status >= 400 else 0


async def _with_progress(resp: Response, sink: object, label: str, total: int | None) -> int:
    """Copy the body to ``sink`` under a progress bar on stderr; the bytes copied."""
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        DownloadColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
        TransferSpeedColumn,
    )

    got = 0
    with Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
        console=Console(stderr=True),
        transient=True,
    ) as progress:
        task = progress.add_task(label, total=total)
        async for chunk in resp:
            sink.write(chunk)  # type: ignore[attr-defined]
            got += len(chunk)
            progress.update(task, advance=len(chunk))
    return got


def register(dmsg_app: typer.Typer) -> None:
    dmsg_app.command("curl")(curl)

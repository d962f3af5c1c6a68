"""``skywire dmsg pty host|start``: a shell over dmsg (dmsgpty), byte-compatible with upstream.

``host`` serves dmsg port 22 to the keys given with ``--whitelist`` (and, with
``--cli-address``, the local CLI socket upstream's ``dmsgpty-cli`` speaks to); ``start <pk>``
opens an interactive terminal on a remote host, in raw mode, following local resizes.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from typing import Annotated

import typer
from rich.console import Console

from skywire.cipher import CipherError, PubKey
from skywire.cli.common import (
    LogFormatOption,
    LogLevelOption,
    run_until_interrupted,
    setup_logging,
)
from skywire.cli.dmsg_curl import DiscOption, SkOption, secret_key
from skywire.dmsg.pty import DEFAULT_CMD, DEFAULT_PORT

err = Console(stderr=True)

pty_app = typer.Typer(
    help="A shell over dmsg (dmsgpty): host one for whitelisted keys, or open a remote one.",
    no_args_is_help=True,
)

PortOption = Annotated[int, typer.Option("--port", "-p", help="dmsg port of the pty host.")]
SessionsOption = Annotated[int, typer.Option(help="dmsg sessions to keep.")]


def _pubkey(text: str, option: str) -> PubKey:
    try:
        return PubKey.from_hex(text)
    except CipherError as exc:
        raise typer.BadParameter(f"{text!r} is not a public key: {exc}", param_hint=option) from exc


@pty_app.command("host")
def host(
    whitelist: Annotated[
        list[str] | None,
        typer.Option("--whitelist", "-w", help="A public key allowed a shell (repeatable)."),
    ] = None,
    disc: DiscOption = "http://127.0.0.1:9090",
    sk: SkOption = "",
    port: PortOption = DEFAULT_PORT,
    cli_address: Annotated[
        str,
        typer.Option(help="Also serve the local CLI unix socket here (proxy, whitelist)."),
    ] = "",
    shell: Annotated[
        str, typer.Option(help="What a Start naming no command runs ($SHELL or /bin/sh).")
    ] = "",
    sessions: SessionsOption = 1,
    log_level: LogLevelOption = None,
    log_format: LogFormatOption = None,
) -> None:
    """Serve a shell to the keys on the whitelist until interrupted."""
    from skywire.dmsg.client import Client
    from skywire.dmsg.pty import MemoryWhitelist, PtyHost, PtyHostConfig
    from skywire.services.dmsgdisc.client import DiscClient

    keys = [_pubkey(text, "--whitelist") for text in whitelist or ()]
    setup_logging(log_level, log_format)
    key = secret_key(sk)
    config = PtyHostConfig(shell=shell or None)

    async def main(stop: asyncio.Event) -> None:
        async with (
            DiscClient(disc) as dc,
            Client(key, dc, min_sessions=sessions) as client,
        ):
            await client.ready()
            async with PtyHost(client, MemoryWhitelist(keys), port=port, config=config) as pty:
                if cli_address:
                    await pty.serve_cli(cli_address)
                err.print(
                    f"dmsgpty host {client.pk}: serving dmsg port {port} to "
                    f"{len(keys)} whitelisted key(s)"
                    + (f", CLI socket {cli_address}" if cli_address else "")
                )
                await stop.wait()

    asyncio.run(run_until_interrupted(main))


@pty_app.command("start")
def start(
    pk: Annotated[str, typer.Argument(help="Public key of the pty host.")],
    disc: DiscOption = "http://127.0.0.1:9090",
    sk: SkOption = "",
    port: PortOption = DEFAULT_PORT,
    cmd: Annotated[
        str,
        typer.Option(
            "--cmd", "-c", help="Command to run on the host (empty: the host's own shell)."
        ),
    ] = DEFAULT_CMD,
    arg: Annotated[
        list[str] | None, typer.Option("--arg", "-a", help="An argument of the command.")
    ] = None,
    sessions: SessionsOption = 1,
    timeout: Annotated[float, typer.Option(help="Seconds to reach the host.")] = 30.0,
    log_level: LogLevelOption = None,
    log_format: LogFormatOption = None,
) -> None:
    """Open an interactive terminal on a remote dmsgpty host (exit the shell to leave)."""
    from skywire.dmsg.client import Client
    from skywire.dmsg.errors import DmsgError
    from skywire.dmsg.pty import PtyClient, PtyError, PtyRejectedError
    from skywire.dmsg.pty.term import attach
    from skywire.services.dmsgdisc.client import DiscClient
    from skywire.wire.errors import WireError

    remote = _pubkey(pk, "PK")
    setup_logging(log_level or "warning", log_format)
    key = secret_key(sk)

    async def main() -> None:
        loop = asyncio.get_running_loop()
        me = asyncio.current_task()
        assert me is not None
        for sig in (signal.SIGTERM, signal.SIGHUP):  # leave through the terminal restore
            loop.add_signal_handler(sig, me.cancel)
        async with (
            DiscClient(disc) as dc,
            Client(key, dc, min_sessions=sessions) as client,
        ):
            async with asyncio.timeout(timeout):
                await client.ready()
                stream = await client.dial(remote, port)
                pty = await PtyClient.connect(stream)
            async with pty:
                await attach(pty, cmd, arg or ())

    try:
        with contextlib.suppress(asyncio.CancelledError):
            asyncio.run(main())
    except PtyRejectedError as exc:
        err.print(f"[red]error:[/red] {remote} refused the pty ({exc}): not on its whitelist?")
        raise typer.Exit(1) from exc
    except (PtyError, DmsgError, WireError, OSError, TimeoutError) as exc:
        err.print(f"[red]error:[/red] {exc or type(exc).__name__}")
        raise typer.Exit(1) from exc


# ------------------------------------------------------------------ through a running visor
visor_pty_app = typer.Typer(
    help="A shell on a remote visor, through the local visor's dmsgpty socket.",
    no_args_is_help=True,
)


PkArg = Annotated[
    str,
    typer.Argument(help="The remote visor (its dmsgpty whitelist must list the local visor)."),
]


@visor_pty_app.command("start")
def cli_start(
    pk: PkArg,
    socket_path: Annotated[
        str,
        typer.Option("--socket", "-s", help="The local visor's dmsgpty.cli_address."),
    ] = "/tmp/dmsgpty.sock",
    port: PortOption = DEFAULT_PORT,
    cmd: Annotated[
        str, typer.Option("--cmd", "-c", help="Command to run there (empty: its own shell).")
    ] = DEFAULT_CMD,
    arg: Annotated[
        list[str] | None, typer.Option("--arg", "-a", help="An argument of the command.")
    ] = None,
    timeout: Annotated[float, typer.Option(help="Seconds to reach the remote visor.")] = 30.0,
) -> None:
    """Open an interactive terminal on a remote visor: the local visor dials it over dmsg (as
    upstream's ``skywire cli dmsgpty start``); exit the shell to leave."""
    from skywire.dmsg.pty import PtyClient, PtyError, PtyRejectedError, connect_cli
    from skywire.dmsg.pty.protocol import proxy_uri
    from skywire.dmsg.pty.term import attach
    from skywire.wire.errors import WireError

    remote = _pubkey(pk, "PK")

    async def main() -> None:
        loop = asyncio.get_running_loop()
        me = asyncio.current_task()
        assert me is not None
        for sig in (signal.SIGTERM, signal.SIGHUP):  # leave through the terminal restore
            loop.add_signal_handler(sig, me.cancel)
        async with asyncio.timeout(timeout):
            stream = await connect_cli(socket_path)
            pty = await PtyClient.connect(stream, proxy_uri(remote, port))
        async with pty:
            await attach(pty, cmd, arg or ())

    try:
        with contextlib.suppress(asyncio.CancelledError):
            asyncio.run(main())
    except PtyRejectedError as exc:
        err.print(f"[red]error:[/red] {remote} refused the pty ({exc}): not on its whitelist?")
        raise typer.Exit(1) from exc
    except (FileNotFoundError, ConnectionRefusedError) as exc:
        err.print(f"[red]error:[/red] no visor serves dmsgpty on {socket_path} ({exc.strerror})")
        raise typer.Exit(1) from exc
    except (PtyError, WireError, OSError, TimeoutError) as exc:
        err.print(f"[red]error:[/red] {exc or type(exc).__name__}")
        raise typer.Exit(1) from exc


def register(dmsg_app: typer.Typer) -> None:
    dmsg_app.add_typer(pty_app, name="pty")


def register_cli(cli_app: typer.Typer) -> None:
    cli_app.add_typer(visor_pty_app, name="dmsgpty")

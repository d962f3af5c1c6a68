"""``skywire testnet``: the main job, a local network on loopback on embedded defaults."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

console = Console()


def register(app: typer.Typer) -> None:
    @app.command()
    def testnet(
        data_dir: Annotated[
            Path, typer.Option(help="Where the discovery database and served files live.")
        ] = Path(".skywire-testnet"),
        size_mb: Annotated[int, typer.Option(help="Size of the file fetched through dmsg.")] = 64,
        disc_port: Annotated[int, typer.Option(help="Discovery port (0: any free port).")] = 9090,
        once: Annotated[
            bool, typer.Option("--once", help="Exit after the fetch instead of staying up.")
        ] = False,
    ) -> None:
        """Run a whole Skywire network on loopback and use it.

        dmsg: discovery (SQLite), two relay servers, a file server over dmsghttp and a fetch
        through it. Skywire: transport discovery, address resolver, route finder, setup node and
        four visors linked by stcpr transports; a 3-hop route carries a file from the last visor
        to the first. Every step is printed with its timing; the network then stays up until
        Ctrl-C (or exits with --once).
        """
        from skywire.cli.common import run_until_interrupted
        from skywire.testnet.run import run_local_network

        def say(line: str) -> None:
            console.print(line, highlight=False, soft_wrap=True)

        async def main(stop: asyncio.Event) -> None:
            report = await run_local_network(
                data_dir, size=size_mb << 20, disc_port=disc_port, once=once, stop=stop, say=say
            )
            if not (report.sha256_ok and report.route_ok and report.apps_ok):
                raise typer.Exit(1)

        from skywire.visor.statelock import PortInUseError, StateLockedError

        try:
            asyncio.run(run_until_interrupted(main))
        except StateLockedError as exc:
            console.print(f"[red]error:[/red] a local network already runs: {exc}", highlight=False)
            raise typer.Exit(1) from exc
        except PortInUseError as exc:
            console.print(
                f"[red]error:[/red] {exc.strerror} (another network running? try --disc-port 0 "
                "for free ports)",
                highlight=False,
            )
            raise typer.Exit(1) from exc
        except OSError as exc:
            console.print(f"[red]error:[/red] {exc}", highlight=False)
            raise typer.Exit(1) from exc

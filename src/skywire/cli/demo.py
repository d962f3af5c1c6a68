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
        verbose: Annotated[
            bool,
            typer.Option(
                "--verbose", "-v", help="Print every log line of every part (else warnings)."
            ),
        ] = False,
    ) -> None:
        """Run a whole Skywire network on loopback and use it.

        Every part is its own process, as in a deployment: dmsg discovery (SQLite), two relay
        servers, the demo site (a file server over dmsghttp), transport and service discovery,
        address resolver, route finder, setup node and four visors with apps. This process
        fetches a file over dmsg, links the visors with stcpr transports, pulls a file across a
        3-hop route, fetches the demo site through the resolving proxies and uses skysocks and
        skychat. Every step is printed with its timing; parts' warnings are printed with the
        part's name (all lines with --verbose; full logs in <data-dir>/logs/). The network then
        stays up until Ctrl-C stops every part (or exits with --once).
        """
        from skywire.cli.common import run_until_interrupted
        from skywire.testnet.run import run_local_network

        def say(line: str) -> None:
            console.print(line, highlight=False, soft_wrap=True)

        async def main(stop: asyncio.Event) -> None:
            report = await run_local_network(
                data_dir,
                size=size_mb << 20,
                disc_port=disc_port,
                once=once,
                stop=stop,
                say=say,
                verbose=verbose,
            )
            if not (
                report.sha256_ok and report.route_ok and report.apps_ok and report.autoconnect_ok
            ):
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

"""``skywire demo``: placeholder until the local network lands."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    @app.command()
    def demo() -> None:
        """Run the local demonstration."""
        typer.echo("demo: not yet available")

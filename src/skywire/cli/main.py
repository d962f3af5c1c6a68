"""``skywire``: the root of the command tree.

The sub-commands live in their own modules and are imported only when one of them runs
(:mod:`skywire.cli.lazy`): the tables below name them, with the line each shows in ``--help``.
"""

from __future__ import annotations

from typing import Annotated

import typer

from skywire import __version__
from skywire.cli.common import ROOT_LOGGING, LogFormatOption, LogLevelOption, setup_logging
from skywire.cli.lazy import Lazy, lazy_group

ROOT = [
    Lazy("testnet", "skywire.cli.demo", "register", "Run a whole Skywire network on loopback."),
    Lazy("visor", "skywire.cli.main", "register_visor", "Run a visor until interrupted."),
    Lazy("cli", "skywire.cli.main", "register_visor", "Configure and control a visor."),
    Lazy("app", "skywire.cli.app", "register", "Apps as the visor's launcher runs them."),
]
DMSG = [
    Lazy("curl", "skywire.cli.dmsg_curl", "register", "Fetch a URL over dmsg."),
    Lazy("http", "skywire.cli.dmsg", "register", "Serve a directory over dmsg HTTP."),
    Lazy("server", "skywire.cli.dmsg", "register", "The dmsg relay server."),
    Lazy("disc", "skywire.cli.dmsg_disc", "register", "Run the dmsg discovery service."),
    Lazy("web", "skywire.cli.dmsg_web", "register", "Serve <pk>.dmsg names to browsers and curl."),
    Lazy("pty", "skywire.cli.dmsg_pty", "register", "A shell over dmsg (dmsgpty)."),
]
SVC = [
    Lazy("tpd", "skywire.cli.svc_tpd", "register", "Run the transport discovery."),
    Lazy("ar", "skywire.cli.svc_ar", "register", "Run the address resolver."),
    Lazy("rf", "skywire.cli.svc_rf", "register", "Run the route finder."),
    Lazy("sn", "skywire.cli.svc_rsn", "register", "Run a route setup node."),
    Lazy("sd", "skywire.cli.svc_sd", "register", "Run the service discovery."),
    Lazy("ut", "skywire.cli.svc_ut", "register", "Run the uptime tracker."),
]

app = typer.Typer(
    name="skywire",
    help="Skywire in Python: a decentralized overlay network addressed by secp256k1 public keys.",
    no_args_is_help=True,
    cls=lazy_group(ROOT),
    context_settings={"help_option_names": ["-h", "--help"]},
)

dmsg_app = typer.Typer(
    help="dmsg: discovery, relay servers, clients and HTTP over dmsg.", cls=lazy_group(DMSG)
)
app.add_typer(dmsg_app, name="dmsg")
svc_app = typer.Typer(
    help="Network services: discovery, resolver, route finder, setup node.",
    cls=lazy_group(SVC),
)
app.add_typer(svc_app, name="svc")


def _print_version(value: bool) -> None:
    if value:
        typer.echo(f"skywire {__version__}")
        raise typer.Exit()


@app.callback()
def root(
    log_level: LogLevelOption = None,
    log_format: LogFormatOption = None,
    version: Annotated[
        bool,
        typer.Option(
            "--version", "-V", is_eager=True, callback=_print_version, help="Print the version."
        ),
    ] = False,
) -> None:
    """Skywire in Python: a decentralized overlay network addressed by secp256k1 public keys.

    --log-level and --log-format here apply to every command (a command's own options win).
    """
    ROOT_LOGGING.level = log_level
    ROOT_LOGGING.format = log_format
    if log_level or log_format:
        setup_logging(log_level, log_format)


@app.command()
def version() -> None:
    """Print the version."""
    typer.echo(__version__)


def register_visor(app: typer.Typer) -> None:
    """``skywire visor`` and the ``skywire cli …`` tree (its parts live in several modules)."""
    from skywire.cli import (
        app_cmds,
        config_update,
        debug,
        dmsg_pty,
        proxy,
        skynet,
        ut,
        visor,
        visor_ops,
        vpn,
    )

    visor.register(app)
    config_update.register()
    dmsg_pty.register_cli(visor.cli_app)
    visor_ops.register()
    debug.register(visor.cli_app)
    app_cmds.register(visor.visor_app)
    proxy.register(visor.cli_app)
    vpn.register(visor.cli_app)
    skynet.register()
    ut.register(visor.cli_app)


def run() -> None:
    """The ``skywire`` command (``-o json`` accepted wherever ``--json`` is)."""
    import sys

    from skywire.cli.lazy import wants_output_flag

    command = typer.main.get_command(app)
    command(args=wants_output_flag(command, sys.argv[1:]), prog_name="skywire")

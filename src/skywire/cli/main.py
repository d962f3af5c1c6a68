"""``skywire``: the root of the command tree."""

from __future__ import annotations

import typer

from skywire import __version__
from skywire.cli.common import ROOT_LOGGING, LogFormatOption, LogLevelOption, setup_logging

app = typer.Typer(
    name="skywire",
    help="Skywire in Python: a decentralized overlay network addressed by secp256k1 public keys.",
    no_args_is_help=True,
    add_completion=False,
)

dmsg_app = typer.Typer(help="dmsg: discovery, relay servers, clients and HTTP over dmsg.")
app.add_typer(dmsg_app, name="dmsg")
svc_app = typer.Typer(
    help="Network services: transport discovery, address resolver, route finder, setup node, "
    "service discovery."
)
app.add_typer(svc_app, name="svc")


@app.callback()
def root(
    log_level: LogLevelOption = None,
    log_format: LogFormatOption = None,
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


def _register() -> None:
    """Attach the sub-commands that live in their own modules."""
    from skywire.cli import app as app_process
    from skywire.cli import (
        app_cmds,
        debug,
        demo,
        dmsg,
        dmsg_disc,
        dmsg_web,
        proxy,
        skynet,
        svc_ar,
        svc_rf,
        svc_rsn,
        svc_sd,
        svc_tpd,
        visor,
    )

    demo.register(app)
    visor.register(app)
    debug.register(visor.cli_app)
    app_cmds.register(visor.visor_app)
    proxy.register(visor.cli_app)
    app_process.register(app)
    skynet.register()
    dmsg.register(dmsg_app)
    dmsg_disc.register(dmsg_app)
    dmsg_web.register(dmsg_app)
    svc_rf.register(svc_app)
    svc_tpd.register(svc_app)
    svc_ar.register(svc_app)
    svc_rsn.register(svc_app)
    svc_sd.register(svc_app)


_register()

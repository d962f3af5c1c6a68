"""``skywire cli config update``: change a visor configuration file in place.

The file is read (fields this version added take their defaults, so an older file comes out
current), the options given are applied, and it is written back with its key unchanged; what
changed is printed, one line per setting. Without options it only brings the file up to date.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from skywire.cli.visor import TESTNET, config_app, err, out, parse_pk

PkList = Annotated[list[str] | None, typer.Option(metavar="PK")]


def _flatten(doc: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(doc, dict):
        out: dict[str, Any] = {}
        for key, value in doc.items():
            out.update(_flatten(value, f"{prefix}{key}."))
        return out
    return {prefix.rstrip("."): doc}


@config_app.command("update")
def config_update(
    config: Annotated[Path, typer.Option("--config", "-c", help="The file to update.")] = Path(
        "skywire-config.json"
    ),
    testnet: Annotated[
        bool, typer.Option("--testnet", "-t", help="Point at local services (testnet ports).")
    ] = False,
    dmsg_disc: Annotated[str, typer.Option(help="dmsg discovery URL.")] = "",
    tpd: Annotated[str, typer.Option(help="Transport discovery URL.")] = "",
    ar: Annotated[str, typer.Option(help="Address resolver URL.")] = "",
    rf: Annotated[str, typer.Option(help="Route finder URL.")] = "",
    sd: Annotated[str, typer.Option(help="Service discovery URL (the launcher's).")] = "",
    setup_node: Annotated[
        list[str] | None,
        typer.Option(help="Route setup node key; repeat for several (replaces the list)."),
    ] = None,
    add_hypervisor: PkList = None,
    remove_hypervisor: PkList = None,
    add_pty_whitelist: PkList = None,
    remove_pty_whitelist: PkList = None,
    log_level: Annotated[str, typer.Option(help="debug, info, warning or error.")] = "",
    public: Annotated[
        bool | None, typer.Option("--public/--no-public", help="Announce as a public visor.")
    ] = None,
    autoconnect: Annotated[
        bool | None,
        typer.Option("--autoconnect/--no-autoconnect", help="Transports to public visors."),
    ] = None,
) -> None:
    """Update a visor configuration file in place (the key stays); prints what changed."""
    from skywire.visor.config import VisorConfig

    try:
        cfg = VisorConfig.load(config)
        before = _flatten(VisorConfig.from_json(config.read_text()).model_dump(mode="json"))
    except (OSError, ValueError) as exc:
        err.print(f"[red]error:[/red] cannot load {config}: {exc}")
        raise typer.Exit(2) from exc
    if log_level and log_level not in ("debug", "info", "warning", "error"):
        raise typer.BadParameter(f"unknown level {log_level!r}", param_hint="--log-level")
    urls = dict(TESTNET) if testnet else {}
    given = {"dmsg_discovery": dmsg_disc, "tpd": tpd, "ar": ar, "rf": rf}
    urls.update({k: v for k, v in given.items() if v})
    if "dmsg_discovery" in urls:
        cfg.dmsg.discovery = urls["dmsg_discovery"]
    if "tpd" in urls:
        cfg.transport.discovery = urls["tpd"]
    if "ar" in urls:
        cfg.transport.address_resolver = urls["ar"]
    if "rf" in urls:
        cfg.routing.route_finder = urls["rf"]
    if sd:
        cfg.launcher.service_discovery = sd
    if setup_node:
        cfg.routing.route_setup_nodes = [parse_pk(pk) for pk in setup_node]
    cfg.hypervisors = _edit(cfg.hypervisors, add_hypervisor, remove_hypervisor)
    cfg.dmsgpty.whitelist = _edit(cfg.dmsgpty.whitelist, add_pty_whitelist, remove_pty_whitelist)
    if log_level:
        cfg.log_level = log_level
    if public is not None:
        cfg.is_public = public
    if autoconnect is not None:
        cfg.transport.public_autoconnect = autoconnect
    cfg.save(config)
    after = _flatten(cfg.model_dump(mode="json"))
    changed = [k for k in sorted(after) if before.get(k) != after[k] and k != "sk"]
    if not changed:
        out.print(f"{config}: nothing to change", highlight=False, soft_wrap=True)
    for key in changed:
        out.print(f"{key}: {before.get(key)!r} -> {after[key]!r}", highlight=False, soft_wrap=True)


def _edit(keys: list[Any], add: list[str] | None, remove: list[str] | None) -> list[Any]:
    gone = {parse_pk(pk) for pk in remove or []}
    kept = [pk for pk in keys if pk not in gone]
    for text in add or []:
        pk = parse_pk(text)
        if pk not in kept:
            kept.append(pk)
    return kept


def register() -> None:
    """Importing this module adds ``config update`` (the decorator above)."""

"""Command groups whose sub-commands are imported only when one of them runs.

Every ``skywire`` command used to import the whole command tree (services, visor, proxies,
aiohttp's server, pydantic models…) before parsing its arguments: 0.7–1 s before anything
happened. A :func:`lazy_group` lists its sub-commands from a table (name, module, the module's
``register`` function, the one-line help shown in listings), so ``skywire --help`` imports
nothing of them, and ``skywire dmsg curl`` imports the dmsg commands only.

A listed sub-command is a :class:`LazyCommand` stand-in until it is used: its ``make_context``
imports the module, lets ``register`` attach the real commands to a scratch ``typer.Typer``, and
hands over to the real command (its options, its help, its invocation).
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import typer
from typer import core as typer_core
from typer import main as typer_main

__all__ = ["COMPLETE_VAR", "Lazy", "LazyCommand", "lazy_group", "load"]

COMPLETE_VAR = "_SKYWIRE_COMPLETE"
"""Set by the shell while it asks for completions (``skywire --install-completion``)."""

Click = Any  # typer's bundled click: its classes are reached through typer.core


@dataclass(frozen=True)
class Lazy:
    """One sub-command: ``register`` (a function of ``module`` taking a ``typer.Typer``)
    attaches it (and maybe siblings) under ``name``; ``help`` is its line in listings."""

    name: str
    module: str
    register: str
    help: str


_loaded: dict[tuple[str, str], typer_core.TyperGroup] = {}


def load(entry: Lazy) -> Click:
    """The real click command of ``entry`` (each module's ``register`` runs once)."""
    key = (entry.module, entry.register)
    group = _loaded.get(key)
    if group is None:
        register: Callable[[typer.Typer], None] = getattr(
            importlib.import_module(entry.module), entry.register
        )
        scratch = typer.Typer()
        scratch.callback()(_nothing)  # a group even when it holds one command
        register(scratch)
        built = typer_main.get_command(scratch)
        assert isinstance(built, typer_core.TyperGroup)
        group = _loaded[key] = built
    command = group.commands.get(entry.name)
    if command is None:
        raise LookupError(f"{entry.module}.{entry.register} does not register {entry.name!r}")
    return command


def _nothing() -> None:
    """The scratch group's callback."""


class LazyCommand(typer_core.TyperCommand):
    """Stands for ``entry`` in listings; becomes the real command when invoked."""

    def __init__(self, entry: Lazy) -> None:
        super().__init__(entry.name, help=entry.help, short_help=entry.help)
        self.entry = entry

    def make_context(
        self,
        info_name: str | None,
        args: list[str],
        parent: Click | None = None,
        **extra: Any,
    ) -> Click:
        real = load(self.entry)
        return real.make_context(info_name, args, parent=parent, **extra)

    def invoke(self, ctx: Click) -> Any:
        if ctx.command is self:  # not reached through make_context: load now
            return load(self.entry).invoke(ctx)
        return ctx.command.invoke(ctx)


def lazy_group(entries: Sequence[Lazy]) -> type[typer_core.TyperGroup]:
    """A ``TyperGroup`` class (for ``typer.Typer(cls=…)``) that lists ``entries`` after its
    own commands and imports each one only when it is invoked."""
    table = {e.name: e for e in entries}

    class LazyGroup(typer_core.TyperGroup):
        def list_commands(self, ctx: Click) -> list[str]:
            own = super().list_commands(ctx)
            return own + [name for name in table if name not in own]

        def get_command(self, ctx: Click, cmd_name: str) -> Click | None:
            command = super().get_command(ctx, cmd_name)
            if command is None and cmd_name in table:
                if os.environ.get(COMPLETE_VAR):  # completing: the real tree, all of it
                    return load(table[cmd_name])
                command = LazyCommand(table[cmd_name])
            return command

    return LazyGroup


def wants_output_flag(root: Click, argv: list[str]) -> list[str]:
    """``-o json`` / ``--output json`` (upstream's spelling) as ``--json`` for a command that
    lists things (it has a ``--json`` flag and no ``-o`` of its own); ``argv`` otherwise
    unchanged. The command is found by walking the tree along ``argv``."""
    ctx_free: Any = None
    command: Any = root
    i = 0
    while i < len(argv) and hasattr(command, "commands"):
        token = argv[i]
        if token.startswith("-"):
            i += 1
            continue
        entry = command.get_command(ctx_free, token)
        if entry is None:
            return argv
        command = load(entry.entry) if isinstance(entry, LazyCommand) else entry
        i += 1
    opts = {o for p in getattr(command, "params", []) for o in getattr(p, "opts", [])}
    if "--json" not in opts or "-o" in opts or "--output" in opts:
        return argv
    out: list[str] = []
    j = 0
    while j < len(argv):
        a = argv[j]
        if a in ("-o", "--output") and j + 1 < len(argv) and argv[j + 1] in ("json", "table"):
            if argv[j + 1] == "json":
                out.append("--json")
            j += 2
            continue
        if a in ("-ojson", "--output=json"):
            out.append("--json")
        elif a not in ("-otable", "--output=table"):
            out.append(a)
        j += 1
    return out

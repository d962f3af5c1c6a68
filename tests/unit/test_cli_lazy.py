"""The lazy command tables: every listed command loads and is what the table says, the help
lines match, and a listing or a light command imports none of the heavy parts."""

from __future__ import annotations

import subprocess
import sys

import pytest
from typer.testing import CliRunner

from skywire.cli.lazy import Lazy, load
from skywire.cli.main import DMSG, ROOT, SVC, app

ALL = [*ROOT, *DMSG, *SVC]


@pytest.mark.parametrize("entry", ALL, ids=[e.name for e in ALL])
def test_every_entry_loads_its_command(entry: Lazy) -> None:
    command = load(entry)
    assert command.name == entry.name
    real = (command.help or "").strip().splitlines()[0]
    # the listing's line is the start of the command's own help
    assert real.startswith(entry.help.rstrip(".")), (entry.help, real)


def test_an_entry_that_registers_nothing_says_so() -> None:
    with pytest.raises(LookupError, match="does not register"):
        load(Lazy("nope", "skywire.cli.dmsg_web", "register", "x"))


def test_help_lists_every_command_and_runs_one() -> None:
    runner = CliRunner()
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0
    for entry in ROOT:
        assert entry.name in result.output
    result = runner.invoke(app, ["dmsg", "--help"])
    assert result.exit_code == 0 and all(e.name in result.output for e in DMSG)
    result = runner.invoke(app, ["svc", "sd", "--help"])
    assert result.exit_code == 0 and "--store" in result.output
    result = runner.invoke(app, ["svc", "nope"])
    assert result.exit_code != 0 and "No such command" in result.output


HEAVY = ["aiohttp", "skywire.dmsg.client", "skywire.visor.visor", "skywire.services", "httpx"]


@pytest.mark.parametrize("argv", [["--help"], ["version"], ["dmsg", "--help"]])
def test_light_commands_import_nothing_heavy(argv: list[str]) -> None:
    code = (
        "import sys\n"
        "from skywire.cli.main import app\n"
        "try:\n"
        f"    app({argv!r})\n"
        "except SystemExit:\n"
        "    pass\n"
        f"print([m for m in {HEAVY!r} if m in sys.modules])\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert out.strip().splitlines()[-1] == "[]", out


@pytest.mark.parametrize(
    ("argv", "want"),
    [
        (["cli", "visor", "tp", "ls", "-o", "json"], ["cli", "visor", "tp", "ls", "--json"]),
        (["cli", "visor", "app", "ls", "--output=json"], ["cli", "visor", "app", "ls", "--json"]),
        (["cli", "route", "ls", "-o", "table", "--rpc", "x"], ["cli", "route", "ls", "--rpc", "x"]),
        # commands whose -o is a file keep it
        (["cli", "config", "gen", "-o", "json"], ["cli", "config", "gen", "-o", "json"]),
        (["dmsg", "curl", "-o", "json", "dmsg://x"], ["dmsg", "curl", "-o", "json", "dmsg://x"]),
        (["nope", "-o", "json"], ["nope", "-o", "json"]),
    ],
)
def test_dash_o_json_is_json_where_a_command_lists(argv: list[str], want: list[str]) -> None:
    import typer

    from skywire.cli.lazy import wants_output_flag

    assert wants_output_flag(typer.main.get_command(app), argv) == want

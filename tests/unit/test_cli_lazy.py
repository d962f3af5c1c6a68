"""The lazy command tables: every listed command loads and is what the table says, the help
lines match, and a listing or a light command imports none of the heavy parts."""

from __future__ import annotations

import ast
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


HEAVY = [
    "aiohttp",
    "httpx",
    "pydantic",  # typer 0.29 builds a pydantic TypeAdapter per parameter: pinned below it
    "rich",
    "skywire.dmsg.client",
    "skywire.visor.visor",
    "skywire.services",
]
"""Modules a listing or ``version`` must not import; a listing or ``version`` also imports no
asyncio and no key library (``LIGHT``)."""
LIGHT = ["asyncio", "coincurve", "cryptography"]
CURL = ["aiohttp", "httpx", "pydantic", "rich"]
"""What ``skywire dmsg curl`` never imports, even when it runs (its discovery client makes
each request with ``wire.http1``)."""


def _imported(argv: list[str], names: list[str]) -> list[str]:
    """The ``names`` in ``sys.modules`` after running ``skywire argv`` in a fresh process."""
    code = (
        "import sys\n"
        "from skywire.cli.main import run\n"
        f"sys.argv = ['skywire', *{argv!r}]\n"
        "try:\n"
        "    run()\n"
        "except SystemExit:\n"
        "    pass\n"
        f"print([m for m in {names!r} if m in sys.modules])\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    got: list[str] = ast.literal_eval(out.strip().splitlines()[-1])
    return got


@pytest.mark.parametrize("argv", [["--help"], ["version"], ["dmsg", "--help"]])
def test_light_commands_import_nothing_heavy(argv: list[str]) -> None:
    assert _imported(argv, HEAVY + LIGHT) == []


def test_dmsg_curl_help_imports_nothing_heavy() -> None:
    assert _imported(["dmsg", "curl", "--help"], HEAVY + LIGHT) == []


def test_dmsg_curl_imports_no_http_library_when_it_runs() -> None:
    """A curl whose discovery refuses: the discovery client was made and asked, and exits 1."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    argv = ["dmsg", "curl", "-q", "--disc", f"http://127.0.0.1:{port}", "dmsg://02" + "ab" * 32]
    assert _imported(argv, [*CURL, "skywire.wire.http1"]) == ["skywire.wire.http1"]


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

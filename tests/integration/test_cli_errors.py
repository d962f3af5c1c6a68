"""Commands fail with one line that says what failed, not a traceback or an empty message."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.timeout(60)
SKYWIRE = [sys.executable, "-m", "skywire.cli"]
ENV = {"COLUMNS": "300", "PATH": "/usr/bin:/bin"}


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*SKYWIRE, *args], capture_output=True, text=True, env=ENV)


def test_dmsg_curl_with_unreachable_discovery_says_so_at_once() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    start = time.monotonic()
    proc = run(
        "dmsg", "curl", "--disc", f"http://127.0.0.1:{port}", "dmsg://" + "02" + "ab" * 32 + ":80/"
    )
    assert proc.returncode == 1
    assert time.monotonic() - start < 20  # not the 30 s readiness wait
    assert "discovery unreachable" in proc.stderr and f"127.0.0.1:{port}" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_bad_rpc_address_is_one_line() -> None:
    proc = run("cli", "visor", "info", "--rpc", "nonsense")
    assert proc.returncode == 2
    assert "--rpc 'nonsense' is not host:port" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_config_gen_does_not_overwrite_a_secret_key_without_force(tmp_path: Path) -> None:
    out = tmp_path / "skywire-config.json"
    assert run("cli", "config", "gen", "-o", str(out)).returncode == 0
    first = json.loads(out.read_text())["sk"]
    proc = run("cli", "config", "gen", "-o", str(out))
    assert proc.returncode == 2 and "use --force" in proc.stderr
    assert json.loads(out.read_text())["sk"] == first
    assert run("cli", "config", "gen", "-o", str(out), "--force").returncode == 0
    assert json.loads(out.read_text())["sk"] != first

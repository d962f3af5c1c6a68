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


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_a_second_visor_from_the_same_state_is_refused_before_it_starts(tmp_path: Path) -> None:
    cfg_path = tmp_path / "skywire-config.json"
    dead = f"http://127.0.0.1:{_free_port()}"
    assert run("cli", "config", "gen", "-o", str(cfg_path), "--local-path", str(tmp_path / "local"),
               "--cli-addr", f"127.0.0.1:{_free_port()}").returncode == 0  # fmt: skip
    doc = json.loads(cfg_path.read_text())
    doc["dmsg"]["discovery"] = dead
    doc["transport"]["discovery"] = doc["transport"]["address_resolver"] = ""
    doc["routing"]["route_finder"] = ""
    doc["skywire-tcp"]["listening_address"] = ""
    cfg_path.write_text(json.dumps(doc))
    first = subprocess.Popen([*SKYWIRE, "visor", "-c", str(cfg_path)], env=ENV,
                             stderr=subprocess.PIPE, text=True)  # fmt: skip
    try:
        assert first.stderr is not None
        line = first.stderr.readline()
        while "running; control API" not in line:
            assert line, "the first visor did not start"
            line = first.stderr.readline()
        second = run("visor", "-c", str(cfg_path))
        assert second.returncode == 1
        assert f"process {first.pid}" in second.stderr and "already runs" in second.stderr
        assert second.stderr.count("\n") <= 3 and "Traceback" not in second.stderr
    finally:
        first.terminate()
        first.wait(30)


def test_rf_takes_exactly_one_transport_source() -> None:
    for args in ((), ("--tpd", "http://127.0.0.1:1", "--pg-url", "postgresql://x@127.0.0.1/y")):
        proc = run("svc", "rf", *args)
        assert proc.returncode == 2
        assert "give exactly one of --tpd and --pg-url" in proc.stderr
        assert "Traceback" not in proc.stderr

"""The visor's ``dmsgpty`` block: a visor serves shells to the keys on its whitelist, and its
local socket lets ``skywire cli dmsgpty start <pk>`` reach another visor through it (as upstream's
CLI does). A visor off the far visor's whitelist is refused; the real command runs in tmux."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import pytest

from skywire.cipher import SecKey
from skywire.dmsg.pty import PtyClient, PtyRejectedError, connect_cli
from skywire.dmsg.pty.protocol import proxy_uri
from skywire.testnet.dmsgnet import LocalDmsgNetwork
from skywire.testnet.skynet import LocalSkywire
from skywire.visor.config import VisorConfig
from tests.integration.test_dmsgpty import pane_shows, read_until, tmux, wait_for

pytestmark = pytest.mark.timeout(120)


async def test_a_visor_reaches_another_visors_shell_through_its_socket(tmp_path: Path) -> None:
    keys = {f"visor-{i}": SecKey.generate() for i in range(3)}
    keys["setup-node"] = SecKey.generate()
    sockets = {i: str(tmp_path / f"pty-{i}.sock") for i in range(3)}

    def configure(i: int, cfg: VisorConfig) -> None:
        cfg.dmsgpty.cli_address = sockets[i]
        if i == 1:  # visor 1 serves shells to visor 0 only
            cfg.dmsgpty.whitelist = [keys["visor-0"].pubkey()]

    async with (
        LocalDmsgNetwork(servers=1) as dnet,
        LocalSkywire(dnet, visors=3, configure=configure, keys=keys.__getitem__) as sky,
    ):
        _, b, _ = sky.visors
        assert b.pty_host is not None
        stream = await connect_cli(sockets[0])
        async with await PtyClient.connect(stream, proxy_uri(b.pk)) as pty:
            await pty.start("/bin/sh", ["-c", "echo via-$((3*4)); sleep 30"])
            assert "via-12" in await read_until(pty, "via-12")
            assert b.pty_host.shells_started == 1
        # visor 2 is not on visor 1's whitelist: refused before any shell starts
        stream = await connect_cli(sockets[2])
        with pytest.raises(PtyRejectedError):
            await PtyClient.connect(stream, proxy_uri(b.pk))
        assert b.pty_host.shells_started == 1 and b.pty_host.rejected >= 1

        if shutil.which("tmux") is None:
            pytest.skip("tmux is not installed (make browser-tools installs it): the command")
        session = f"skywire-visor-pty-{os.getpid()}"
        try:
            await tmux(
                "new-session", "-d", "-s", session, "-x", "100", "-y", "30",
                sys.executable, "-m", "skywire.cli", "cli", "dmsgpty", "start", b.pk.hex(),
                "--socket", sockets[0], "--cmd", "/bin/sh",
            )  # fmt: skip
            assert await pane_shows(session, r"(?m)[$#] *$", 30), await tmux(
                "capture-pane", "-p", "-t", session
            )
            await tmux("send-keys", "-t", session, "echo typed-$((20+2))", "Enter")
            assert await pane_shows(session, r"(?m)^typed-22 *$")
            await tmux("send-keys", "-t", session, "exit", "Enter")
            await wait_for(lambda: b.pty_host is not None and not b.pty_host.live_pids, "exit")
        finally:
            await tmux("kill-session", "-t", session, check=False)

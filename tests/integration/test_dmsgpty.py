"""dmsgpty over a real local dmsg network: a whitelisted key gets a shell on the host (commands
run, output returns, resizes reach the pty); a key off the whitelist is refused before any shell
exists; the shell dies with its stream. The last test runs the real commands in tmux."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from skywire.cipher import KeyPair
from skywire.dmsg.client import Client
from skywire.dmsg.pty import (
    DEFAULT_PORT,
    MemoryWhitelist,
    PtyClient,
    PtyHost,
    PtyHostConfig,
    PtyRejectedError,
    WhitelistClient,
    WinSize,
    connect_cli,
    proxy_uri,
)
from skywire.testnet.dmsgnet import LocalDmsgNetwork
from tests.conftest import no_leaked_tasks

CONFIG = PtyHostConfig(shell="/bin/sh", kill_grace=1.0)
WAIT = 15.0


def children() -> set[int]:
    """Live (not zombie) child processes of this process."""
    found: set[int] = set()
    for task in Path("/proc/self/task").iterdir():
        with contextlib.suppress(OSError):
            found |= {int(p) for p in (task / "children").read_text().split()}
    return {p for p in found if alive(p)}


def alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


async def wait_for(predicate: object, what: str, timeout: float = WAIT) -> None:
    assert callable(predicate)
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.02)


async def read_until(client: PtyClient, pattern: str, timeout: float = WAIT) -> str:
    seen = b""
    async with asyncio.timeout(timeout):
        while not re.search(pattern, seen.decode(errors="replace")):
            seen += await client.read()
    return seen.decode(errors="replace")


@contextlib.asynccontextmanager
async def network(whitelisted: bool = True) -> AsyncIterator[tuple[PtyHost, Client, Client]]:
    async with LocalDmsgNetwork(servers=1) as net:
        host_dmsg = await net.client()
        user = await net.client()
        wl = MemoryWhitelist([user.pk] if whitelisted else [])
        async with PtyHost(host_dmsg, wl, config=CONFIG) as host:
            yield host, host_dmsg, user


async def test_whitelisted_key_runs_a_command_and_resizes() -> None:
    before = children()
    async with no_leaked_tasks(), network() as (host, host_dmsg, user):
        stream = await user.dial(host_dmsg.pk, DEFAULT_PORT)
        async with await PtyClient.connect(stream) as client:
            await client.start("", (), WinSize(24, 80))
            assert host.shells_started == 1
            [pid] = host.live_pids
            assert pid in children() - before
            await client.write(b"echo hello-$((6*7))\n")
            await read_until(client, r"hello-42")
            await client.write(b"stty size\n")
            await read_until(client, r"24 80")
            await client.set_size(WinSize(40, 132))
            await client.write(b"stty size\n")
            await read_until(client, r"40 132")
        # the client closed its stream: the shell is killed and reaped
        await wait_for(lambda: not host.live_pids and not alive(pid), "the shell to end")
    assert children() <= before


async def test_key_off_the_whitelist_is_refused_before_a_shell_starts() -> None:
    before = children()
    async with network(whitelisted=False) as (host, host_dmsg, user):
        stream = await user.dial(host_dmsg.pk, DEFAULT_PORT)
        await stream.write(b"\x0bdmsgpty/pty")
        assert await stream.readexactly(1) == b"\x01"  # the reject byte
        assert await stream.read() == b""  # and the stream is closed
        await stream.close()
        with pytest.raises(PtyRejectedError):
            await PtyClient.connect(await user.dial(host_dmsg.pk, DEFAULT_PORT))
        assert host.rejected == 2
        assert host.shells_started == 0
        assert children() <= before


async def test_stream_end_kills_the_shell_and_its_job() -> None:
    async with network() as (host, host_dmsg, user):
        stream = await user.dial(host_dmsg.pk, DEFAULT_PORT)
        client = await PtyClient.connect(stream)
        await client.start("", (), WinSize(24, 80))
        [shell] = host.live_pids
        await client.write(b"sleep 1000\n")

        def job() -> set[int]:
            kids = Path(f"/proc/{shell}/task/{shell}/children")
            with contextlib.suppress(OSError):
                return {int(p) for p in kids.read_text().split()}
            return set()

        await wait_for(lambda: bool(job()), "the shell to start sleep")
        [sleeper] = job()
        await stream.close()  # no Stop: the stream just ends
        await wait_for(lambda: not alive(shell) and not alive(sleeper), "shell and job to die")
        await wait_for(lambda: not host.live_pids, "the host to forget the shell")


async def test_closing_the_host_reaps_its_shells() -> None:
    before = children()
    async with no_leaked_tasks(), LocalDmsgNetwork(servers=1) as net:
        host_dmsg, user = await net.client(), await net.client()
        host = PtyHost(host_dmsg, MemoryWhitelist([user.pk]), config=CONFIG)
        await host.start()
        clients = []
        for _ in range(3):
            client = await PtyClient.connect(await user.dial(host_dmsg.pk, DEFAULT_PORT))
            await client.start("", ["-c", "trap '' HUP; echo up; exec sleep 1000"])
            await read_until(client, "up")
            clients.append(client)
        pids = host.live_pids
        assert len(pids) == 3
        await host.close()  # the sleeps ignore SIGHUP: SIGKILL after the grace period
        await host.close()
        assert not any(alive(p) for p in pids)
        for client in clients:
            await client.close()
    assert children() <= before


async def test_command_exit_ends_reading() -> None:
    async with network() as (_host, host_dmsg, user):
        stream = await user.dial(host_dmsg.pk, DEFAULT_PORT)
        async with await PtyClient.connect(stream) as client:
            await client.start("/bin/sh", ["-c", "echo bye-$((1+1))"], WinSize(24, 80))
            out = b""
            with contextlib.suppress(EOFError):
                async with asyncio.timeout(WAIT):
                    while True:
                        out += await client.read()
            assert b"bye-2" in out


async def test_cli_socket_whitelist_and_proxy(tmp_path: Path) -> None:
    """The local CLI socket: edit the whitelist, then reach another host's pty through this
    host's dmsg key (what ``skywire cli dmsgpty start <pk>`` does through a visor)."""
    sock = tmp_path / "dmsgpty.sock"
    async with LocalDmsgNetwork(servers=1) as net:
        local_dmsg, remote_dmsg = await net.client(), await net.client()
        remote_wl = MemoryWhitelist()
        async with (
            PtyHost(local_dmsg, MemoryWhitelist(), config=CONFIG) as local,
            PtyHost(remote_dmsg, remote_wl, config=CONFIG) as remote,
        ):
            await local.serve_cli(sock)
            other = KeyPair.generate().pk
            wl = await WhitelistClient.connect(await connect_cli(str(sock)))
            await wl.add(other, remote_dmsg.pk)
            await wl.remove(remote_dmsg.pk)
            assert await wl.all() == [other]
            await wl.close()

            uri = proxy_uri(remote_dmsg.pk)
            with pytest.raises(PtyRejectedError):  # the local key is not on the remote's list
                await PtyClient.connect(await connect_cli(str(sock)), uri)
            remote_wl.add(local_dmsg.pk)
            stream = await connect_cli(str(sock))
            async with await PtyClient.connect(stream, uri) as client:
                await client.start("", (), WinSize(30, 90))
                await client.write(b"echo proxied-$((3*3)); stty size\n")
                await read_until(client, r"proxied-9[\s\S]*30 90")
                assert remote.shells_started == 1 and local.shells_started == 0
            await wait_for(lambda: not remote.live_pids, "the remote shell to end")


# ------------------------------------------------------------------------------------------
# The commands, in tmux
# ------------------------------------------------------------------------------------------


async def tmux(*args: str, check: bool = True) -> str:
    proc = await asyncio.create_subprocess_exec(
        "tmux", *args, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    async with asyncio.timeout(10):
        out, errs = await proc.communicate()
    if check and proc.returncode != 0:
        raise AssertionError(f"tmux {' '.join(args)}: {errs.decode()}")
    return out.decode()


async def pane_shows(session: str, pattern: str, timeout: float = WAIT) -> bool:
    deadline = time.monotonic() + timeout
    while not re.search(pattern, await tmux("capture-pane", "-p", "-t", session)):
        if time.monotonic() >= deadline:
            return False
        await asyncio.sleep(0.1)
    return True


@pytest.mark.skipif(
    shutil.which("tmux") is None, reason="tmux is not installed: make browser-tools"
)
async def test_cli_host_and_start_in_tmux(tmp_path: Path) -> None:
    """``skywire dmsg pty host`` in one process, ``skywire dmsg pty start`` in a tmux pane: keys
    typed in the pane run on the host, and a resized pane resizes the remote pty."""
    async with LocalDmsgNetwork(servers=1) as net:
        user, host_key = KeyPair.generate(), KeyPair.generate()
        host_log = tmp_path / "host.log"
        skywire = [sys.executable, "-m", "skywire.cli"]
        with host_log.open("wb") as log:
            host = await asyncio.create_subprocess_exec(
                *skywire, "dmsg", "pty", "host", "--sk", host_key.sk.hex(),
                "--disc", net.disc_url, "--whitelist", str(user.pk), "--shell", "/bin/sh",
                stdout=log, stderr=subprocess.STDOUT,
            )  # fmt: skip
        session = f"skywire-pty-{os.getpid()}"
        status = tmp_path / "cli.status"  # the CLI's exit status, written when it ends
        pane = ""
        try:
            await wait_for(
                lambda: "serving" in host_log.read_text() or host.returncode is not None,
                "the host to serve",
                30,
            )
            assert host.returncode is None, host_log.read_text()
            await tmux(
                "new-session", "-d", "-s", session, "-x", "100", "-y", "30",
                "sh", "-c", f'"$@"; echo "exit=$?" > {status}; sleep 1', "sh",
                *skywire, "dmsg", "pty", "start", str(host_key.pk), "--sk", user.sk.hex(),
                "--disc", net.disc_url, "--cmd", "",
            )  # fmt: skip
            if not await pane_shows(session, r"(?m)[$#] *$", 30):
                pane = await tmux("capture-pane", "-p", "-t", session)
                raise AssertionError(f"no remote prompt:\n{pane}\nhost:\n{host_log.read_text()}")
            await tmux("send-keys", "-t", session, "echo typed-$((2+3))", "Enter")
            assert await pane_shows(session, r"(?m)^typed-5 *$")
            await tmux("send-keys", "-t", session, "stty size", "Enter")
            assert await pane_shows(session, r"(?m)^30 100 *$")
            await tmux("resize-window", "-t", session, "-x", "120", "-y", "40")
            deadline = time.monotonic() + WAIT
            while True:  # the resize travels as SIGWINCH then RPC: ask until it has arrived
                await tmux("send-keys", "-t", session, "clear; stty size", "Enter")
                if await pane_shows(session, r"(?m)^40 120 *$", 1.0):
                    break
                pane = await tmux("capture-pane", "-p", "-t", session)
                assert time.monotonic() < deadline, f"no 40 120 on the pane:\n{pane}"
            await tmux("send-keys", "-t", session, "exit", "Enter")
            # the CLI exits, and exits 0, when the remote shell does
            await wait_for(
                lambda: status.exists() and status.read_text().endswith("\n"),
                "the CLI to exit with the remote shell",
            )
            assert status.read_text().strip() == "exit=0", await tmux(
                "capture-pane", "-p", "-S", "-", "-t", session, check=False
            )
        finally:
            await tmux("kill-session", "-t", session, check=False)
            if host.returncode is None:
                host.terminate()
                try:
                    async with asyncio.timeout(10):
                        await host.wait()
                except TimeoutError:
                    host.kill()
                    await host.wait()

"""One process of a local network (a service, a relay server, a visor…), started with its
``skywire`` command and stopped with SIGTERM, then SIGKILL.

Its output goes to its log file. Given ``on_line``, the part also hands every output line to
it (the supervisor prints them with the part's name in front); the pump reading the pipe
belongs to the part and ends with it.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import signal
import socket
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["STARTUP_TIMEOUT", "STOP_TIMEOUT", "Part", "PartError", "free_port"]

STARTUP_TIMEOUT = 30.0
STOP_TIMEOUT = 10.0


_HANDED_OUT: set[int] = set()


def free_port() -> int:
    """A port free now, below the kernel's ephemeral range (32768 and up), so that an outgoing
    connection made before the part binds it cannot take it meanwhile, and not handed out by
    this process before (two parts given the same free port: only the first could bind it)."""
    for _ in range(200):
        port = random.randrange(20000, 32000)
        if port in _HANDED_OUT:
            continue
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
        _HANDED_OUT.add(port)
        return port
    raise OSError("no free port found in 20000-32000")


class PartError(RuntimeError):
    """A part did not start (its log's last lines say why)."""


@dataclass
class Part:
    """One process of the network."""

    name: str
    argv: list[str]
    port: int | None
    """A TCP port the part listens on once it is up (``None``: the caller knows when)."""
    log: Path
    env: dict[str, str] = field(default_factory=dict)
    on_line: Callable[[str, str], None] | None = None
    """Called with (part name, line) for every line the process writes."""
    proc: asyncio.subprocess.Process | None = None
    starts: int = 0
    _pump: asyncio.Task[None] | None = None

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.returncode is None

    async def start(self) -> None:
        if self.running:
            return
        await self._end_pump()
        self.log.parent.mkdir(parents=True, exist_ok=True)
        head = f"---- start {self.starts + 1}: {' '.join(self.argv)}\n".encode()
        env = {**os.environ, **self.env}
        if self.on_line is None:
            with self.log.open("ab") as out:
                out.write(head)
                out.flush()
                self.proc = await asyncio.create_subprocess_exec(
                    *self.argv,
                    stdin=asyncio.subprocess.DEVNULL,
                    stdout=out,
                    stderr=asyncio.subprocess.STDOUT,
                    env=env,
                    start_new_session=True,
                )
        else:
            self.proc = await asyncio.create_subprocess_exec(
                *self.argv,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.STDOUT,
                env=env,
                start_new_session=True,
            )
            assert self.proc.stdout is not None
            self._pump = asyncio.create_task(
                self._copy(self.proc.stdout, head, self.on_line), name=f"{self.name}-log"
            )
        self.starts += 1
        if self.port is not None:
            await self._wait_listening(self.port)

    async def _copy(
        self, reader: asyncio.StreamReader, head: bytes, on_line: Callable[[str, str], None]
    ) -> None:
        """Every output line to the log file and to ``on_line``, until the pipe closes."""
        with self.log.open("ab") as out:
            out.write(head)
            while line := await reader.readline():
                out.write(line)
                out.flush()
                text = line.decode(errors="replace").rstrip()
                try:
                    on_line(self.name, text)
                except Exception:  # a printer's bug must not stop the copy
                    continue

    async def _end_pump(self) -> None:
        pump, self._pump = self._pump, None
        if pump is not None:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(STOP_TIMEOUT):
                    await asyncio.wait([pump])  # the pipe closes when the process ends
            if not pump.done():
                pump.cancel()
                await asyncio.wait([pump])

    async def _wait_listening(self, port: int) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + STARTUP_TIMEOUT
        assert self.proc is not None
        while True:
            if self.proc.returncode is not None:
                raise PartError(f"{self.name} exited ({self.proc.returncode}): {self.tail()}")
            try:
                _, writer = await asyncio.open_connection("127.0.0.1", port)
            except OSError:
                if loop.time() > deadline:
                    raise PartError(
                        f"{self.name} not listening on {port} after "
                        f"{STARTUP_TIMEOUT:g} s: {self.tail()}"
                    ) from None
                await asyncio.sleep(0.05)  # the process is starting: poll its port
                continue
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()
            return

    async def kill(self) -> None:
        """``SIGKILL``, as a crash: nothing of the part's own shutdown runs."""
        if self.running:
            assert self.proc is not None
            self.proc.send_signal(signal.SIGKILL)
            await self.proc.wait()
        await self._end_pump()

    async def stop(self) -> None:
        """``SIGTERM``, then ``SIGKILL`` if it has not ended in time."""
        if self.running:
            assert self.proc is not None
            self.proc.send_signal(signal.SIGTERM)
            try:
                async with asyncio.timeout(STOP_TIMEOUT):
                    await self.proc.wait()
            except TimeoutError:
                await self.kill()
        await self._end_pump()

    def tail(self, lines: int = 8) -> str:
        try:
            text = self.log.read_text(errors="replace").splitlines()
        except OSError:
            return "(no log)"
        return " | ".join(text[-lines:])


async def wait_disc_entry(disc_url: str, pk_hex: str, part: Part, since_ns: int) -> None:
    """Until discovery lists a relay server in an entry of ``pk_hex`` signed at ``since_ns``
    or later (a dmsg node that has no port of its own is up then; an entry its previous run
    left behind, with the same key, does not count); :class:`PartError` when the part exits
    or the time is up."""
    import aiohttp

    url = f"{disc_url}/dmsg-discovery/entry/{pk_hex}"
    loop = asyncio.get_running_loop()
    deadline = loop.time() + STARTUP_TIMEOUT
    async with aiohttp.ClientSession() as http:
        while True:
            if part.proc is not None and part.proc.returncode is not None:
                raise PartError(f"{part.name} exited: {part.tail()}")
            with contextlib.suppress(aiohttp.ClientError, OSError):
                async with http.get(url) as resp:
                    if resp.status == 200:
                        doc = await resp.json(content_type=None)
                        fresh = isinstance(doc, dict) and doc.get("timestamp", 0) >= since_ns
                        client = doc.get("client") if fresh else None
                        if client and client.get("delegated_servers"):
                            return
            if loop.time() > deadline:
                raise PartError(f"{part.name}: no discovery entry: {part.tail()}")
            await asyncio.sleep(0.05)  # another process: poll discovery


async def wait_visor(rpc_addr: str, part: Part, *, transports: int = 0) -> dict[str, object]:
    """Until the visor behind ``rpc_addr`` has its dmsg sessions and at least ``transports``
    transports up; its ``/visor/info``."""
    from skywire.visor.rpc import RPCClient, RPCClientError

    rpc = RPCClient(rpc_addr, timeout=5.0)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + STARTUP_TIMEOUT
    while True:
        with contextlib.suppress(RPCClientError):
            info = await rpc.call("GET", "/visor/info")
            if info["dmsg_servers"] and int(info["transports"]) >= transports:
                return dict(info)
        if not part.running:
            raise PartError(f"{part.name} exited: {part.tail()}")
        if loop.time() > deadline:
            raise PartError(f"{part.name} not ready: {part.tail()}")
        await asyncio.sleep(0.05)  # another process: poll its control API

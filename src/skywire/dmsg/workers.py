"""A relay server on several cores: the parent that starts its worker processes.

``skywire dmsg server start config.json --workers N`` runs no server itself: it makes a Unix
socket pair for every pair of workers (:func:`~skywire.dmsg.mesh.socket_pairs`), starts ``N``
copies of the same command with ``--worker-index i --worker-links peer:fd,…`` (each inherits its
ends of the pairs), and waits. All of them listen on the configured port with ``SO_REUSEPORT``;
worker 0 alone advertises the server in discovery and serves the health endpoint. SIGTERM or
SIGINT to the parent stops every worker (SIGTERM, then SIGKILL after a grace); a worker that
dies takes the others down with it, so the parent's exit code tells a supervisor to restart the
whole server.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import socket
import sys
from collections.abc import Sequence

from skywire.dmsg.mesh import socket_pairs

__all__ = ["parse_links", "run_workers", "worker_command", "worker_links"]

log = logging.getLogger(__name__)

STOP_GRACE = 10.0


def worker_links(
    pairs: dict[tuple[int, int], tuple[socket.socket, socket.socket]], index: int
) -> dict[int, socket.socket]:
    """Worker ``index``'s ends of the pairs, by peer index."""
    out = {}
    for (a, b), (sa, sb) in pairs.items():
        if a == index:
            out[b] = sa
        elif b == index:
            out[a] = sb
    return out


def parse_links(text: str) -> dict[int, socket.socket]:
    """``peer:fd,peer:fd`` (what the parent passes) as sockets, by peer index."""
    out: dict[int, socket.socket] = {}
    for item in filter(None, text.split(",")):
        peer, _, fd = item.partition(":")
        out[int(peer)] = socket.socket(fileno=int(fd))
    return out


async def run_workers(argv: Sequence[str], workers: int) -> int:
    """Start ``workers`` copies of ``argv`` (the worker command, without the worker options),
    wait until a signal or a worker's exit, stop them all; the exit code (0 after a signal)."""
    if workers < 2:
        raise ValueError("run_workers needs 2 workers or more")
    pairs = socket_pairs(workers)
    procs: list[asyncio.subprocess.Process] = []
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        for i in range(workers):
            links = worker_links(pairs, i)
            spec = ",".join(f"{peer}:{s.fileno()}" for peer, s in sorted(links.items()))
            procs.append(
                await asyncio.create_subprocess_exec(
                    *argv,
                    "--worker-index",
                    str(i),
                    "--worker-links",
                    spec,
                    pass_fds=[s.fileno() for s in links.values()],
                )
            )
        for a, b in pairs.values():  # the workers hold their own copies now
            a.close()
            b.close()
        waits = [asyncio.ensure_future(p.wait()) for p in procs]
        stopped = asyncio.ensure_future(stop.wait())
        done, _ = await asyncio.wait([*waits, stopped], return_when=asyncio.FIRST_COMPLETED)
        code = 0
        if stopped not in done:
            died = next(p for p in procs if p.returncode is not None)
            code = died.returncode or 1
            log.error("dmsg worker %d exited (%s): stopping the others", procs.index(died), code)
        stopped.cancel()
        await _stop_all(procs)
        await asyncio.gather(*waits, stopped, return_exceptions=True)
        return code
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)
        for a, b in pairs.values():
            a.close()
            b.close()
        await _stop_all(procs)


async def _stop_all(procs: list[asyncio.subprocess.Process]) -> None:
    live = [p for p in procs if p.returncode is None]
    for p in live:
        with contextlib.suppress(ProcessLookupError):
            p.send_signal(signal.SIGTERM)
    try:
        async with asyncio.timeout(STOP_GRACE):
            await asyncio.gather(*(p.wait() for p in live))
    except TimeoutError:
        for p in live:
            if p.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    p.kill()
        await asyncio.gather(*(p.wait() for p in live))


def worker_command(config: str, extra: Sequence[str]) -> list[str]:
    """The command a worker runs (the parent's own, by the same interpreter)."""
    return [sys.executable, "-m", "skywire.cli", "dmsg", "server", "start", config, *extra]

"""Route ping: does a route to that visor work, and how fast is it?

Every visor of this project echoes on route port :data:`ECHO_PORT` (whatever arrives on a route
group there goes back). :func:`route_ping` sets a fresh route up to a visor's echo, over the
route finder's choice or exactly the hops named (``via``), sends ``count`` probes of ``size``
bytes, each after the previous echo and ``interval`` seconds, and closes the route. It reports
the set-up time, each round trip and the path; a failure after set-up keeps what was measured
and says what broke (a route torn down mid-ping reads "broken").

Upstream visors have no echo there (their ``visor ping`` loops a route back to the pinging
visor), so pinging one fails with "no app listens on port 7".
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from skywire.cipher import PubKey
from skywire.router import RouteDialError, RouteGroup, RouteListener, Router
from skywire.router.route_group import RouteClosedError, RouteHandshakeError
from skywire.routing.route import Hop
from skywire.wire.tasks import serve_each

__all__ = ["ECHO_PORT", "MAX_PROBE", "PingResult", "RouteEcho", "route_ping"]

log = logging.getLogger(__name__)

ECHO_PORT = 7
MAX_PROBE = 64 * 1024
"""The largest probe a ping sends (bytes)."""
ROUTE_ERRORS = (RouteDialError, RouteHandshakeError, ConnectionError, TimeoutError, OSError)


class RouteEcho:
    """``async with RouteEcho(router)``: echo every route group accepted on :data:`ECHO_PORT`."""

    def __init__(self, router: Router) -> None:
        self.router = router
        self._listener: RouteListener | None = None
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> RouteEcho:
        self._listener = await self.router.listen(ECHO_PORT)
        self._task = asyncio.create_task(self._serve(self._listener), name="route-echo")
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._listener is not None:
            await self._listener.close()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _serve(self, listener: RouteListener) -> None:
        await serve_each(listener.accept, _echo, ended=(RouteClosedError,), what="route echo")


async def _echo(rg: RouteGroup) -> None:
    try:
        while data := await rg.read(MAX_PROBE):
            await rg.write(data)
    except ConnectionError as exc:
        log.debug("route echo for %s ended: %s", rg.remote_pk, exc)
    finally:
        await rg.close()


@dataclass
class PingResult:
    pk: PubKey
    setup_ms: float | None = None
    rtt_ms: list[float] = field(default_factory=list)
    hops: list[PubKey] = field(default_factory=list)
    error: str | None = None
    """What failed (the set-up, or a probe after it); ``None`` when every probe came back."""

    def to_json(self) -> dict[str, Any]:
        return {
            "pk": self.pk.hex(),
            "setup_ms": None if self.setup_ms is None else round(self.setup_ms, 3),
            "rtt_ms": [round(x, 3) for x in self.rtt_ms],
            "hops": [pk.hex() for pk in self.hops],
            "error": self.error,
        }


async def route_ping(
    router: Router,
    pk: PubKey,
    *,
    forward: Sequence[Hop] = (),
    reverse: Sequence[Hop] = (),
    min_hops: int | None = None,
    max_hops: int | None = None,
    count: int = 1,
    size: int = 32,
    interval: float = 0.0,
) -> PingResult:
    """Ping ``pk``'s echo over a new route (``forward``/``reverse``: exactly those hops)."""
    if not 1 <= size <= MAX_PROBE:
        raise ValueError(f"probe size must be 1..{MAX_PROBE} bytes")
    if count < 1:
        raise ValueError("count must be at least 1")
    result = PingResult(pk)
    start = time.perf_counter()
    try:
        if forward:
            rg = await router.dial_source_route(pk, ECHO_PORT, forward, reverse)
        else:
            rg = await router.dial_routes(pk, 0, ECHO_PORT, min_hops=min_hops, max_hops=max_hops)
    except ROUTE_ERRORS as exc:
        result.error = f"route set-up failed: {exc}"
        return result
    result.setup_ms = (time.perf_counter() - start) * 1e3
    if rg.route is not None:
        result.hops = [h.dst for h in rg.route.forward]
    try:
        for i in range(count):
            if i and interval > 0:
                await asyncio.sleep(interval)
            probe = os.urandom(size)
            sent = time.perf_counter()
            await rg.write(probe)
            back = await rg.readexactly(size)
            if back != probe:
                raise ConnectionError("the echo came back altered")
            result.rtt_ms.append((time.perf_counter() - sent) * 1e3)
    except asyncio.IncompleteReadError:
        result.error = f"the route ended after {len(result.rtt_ms)} of {count} probes"
    except ROUTE_ERRORS as exc:
        result.error = f"probe {len(result.rtt_ms) + 1} of {count}: {exc}"
    finally:
        await rg.close()
    return result

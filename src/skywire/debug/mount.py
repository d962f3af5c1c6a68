"""``/debug/*`` on a service's aiohttp app, gated by the survey whitelist.

Upstream (skywire PR 3043) mounts ``/debug/pprof/*`` and ``/debug/log`` on every service's
dmsg port-80 handler with ``dmsghttp.WithDebug(handler, whitelist, logSource)``; this is the same
for our apps, with the Python tools in place of pprof:

* ``GET /debug/log?lines=N&level=L``: the newest N log lines (default 200) at or above level L
  (``debug``, ``info``, ``warning``, ``error``, ``critical`` or a number), oldest first.
* ``GET /debug/tasks[?format=json][&depth=N]``: every live asyncio task with its await chain.
* ``GET /debug/profile?seconds=N[&hz=H]``: a sampling CPU profile of the event loop thread as
  folded stacks (``profile.folded``: open it in speedscope or ``flamegraph.pl``).
* ``GET /debug/memory[?start=1[&frames=F]|?stop=1][&top=N][&stacks=1]``: tracemalloc on demand.

Every route asks ``allowed(pk)`` first, with the caller's dmsg public key (``None`` for a caller
that has none, such as one on plain TCP), and answers 403 when it says no.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable, Collection, Mapping
from typing import Final

from aiohttp import web

from skywire.cipher import CipherError, PubKey
from skywire.debug import memory
from skywire.debug.errors import DebugError, DebugParamError
from skywire.debug.profile import DEFAULT_HZ, MAX_HZ, sample_profile
from skywire.debug.ring import LogRing, default_ring, install_ring_handler
from skywire.debug.tasks import (
    DEFAULT_DEPTH,
    MAX_DEPTH,
    format_tasks,
    install_task_clock,
    snapshot_tasks,
    task_clock_installed,
)

__all__ = [
    "DEFAULT_LOG_LINES",
    "DEFAULT_PROFILE_SECONDS",
    "INDEX",
    "Gate",
    "caller_key",
    "mount_debug",
    "parse_level",
    "whitelist_gate",
]

log = logging.getLogger(__name__)

DEFAULT_LOG_LINES: Final = 200
MAX_LOG_LINES: Final = 1_000_000
DEFAULT_PROFILE_SECONDS: Final = 30.0
"""As Go's ``/debug/pprof/profile``."""

Gate = Callable[[PubKey | None], bool]
"""Says whether a caller (its dmsg key, or None) may use ``/debug/*``."""
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off", "")


def whitelist_gate(keys: Collection[PubKey]) -> Gate:
    """A gate that lets in exactly the dmsg keys in ``keys`` (copied now), never a caller
    without a key."""
    allowed = frozenset(keys)

    def gate(pk: PubKey | None) -> bool:
        return pk is not None and pk in allowed

    return gate


def caller_key(request: web.Request) -> PubKey | None:
    """The dmsg public key of the caller, or None when it came some other way (plain TCP).

    The dmsghttp server's transport reports ``peername`` as ``(pk-hex, port)``; a TCP one as
    ``(ip, port)``, which is no key.
    """
    transport = request.transport
    if transport is None:
        return None
    peer = transport.get_extra_info("peername")
    if not (isinstance(peer, tuple) and peer and isinstance(peer[0], str)):
        return None
    try:
        pk = PubKey.from_hex(peer[0])
    except CipherError:
        return None
    return None if pk.is_null() else pk


# -- query parameters -------------------------------------------------------------------------


def _only(query: Mapping[str, str], route: str, known: Collection[str]) -> None:
    unknown = sorted(set(query) - set(known))
    if unknown:
        takes = ", ".join(sorted(known)) if known else "no parameters"
        raise DebugParamError(f"unknown parameter {unknown[0]!r}: {route} takes {takes}")


def _int(query: Mapping[str, str], name: str, default: int, low: int, high: int) -> int:
    text = query.get(name)
    if text is None:
        return default
    try:
        value = int(text.strip())
    except ValueError:
        raise DebugParamError(f"{name} must be a whole number, not {text!r}") from None
    if not low <= value <= high:
        raise DebugParamError(f"{name} must be from {low} to {high}, not {value}")
    return value


def _float(query: Mapping[str, str], name: str, default: float) -> float:
    text = query.get(name)
    if text is None:
        return default
    try:
        return float(text.strip())
    except ValueError:
        raise DebugParamError(f"{name} must be a number of seconds, not {text!r}") from None


def _flag(query: Mapping[str, str], name: str) -> bool:
    text = query.get(name)
    if text is None:
        return False
    if text.strip().lower() in _TRUE:
        return True
    if text.strip().lower() in _FALSE:
        return False
    raise DebugParamError(f"{name} must be 1 or 0, not {text!r}")


def parse_level(text: str) -> int:
    """A level name (``debug``, ``info``, ``warn``/``warning``, ``error``,
    ``fatal``/``critical``; any case) or a number, as a ``logging`` level number."""
    word = text.strip()
    if word.isdigit():
        return int(word)
    number = logging.getLevelNamesMapping().get(word.upper())
    if number is None:
        raise DebugParamError(
            f"unknown level {text!r}: use debug, info, warning, error, critical or a number"
        )
    return number


# -- the routes -------------------------------------------------------------------------------


def _text(body: str, status: int = 200) -> web.Response:
    return web.Response(text=body, status=status)


def _gated(handler: Handler, allowed: Gate) -> Handler:
    async def gate(request: web.Request) -> web.StreamResponse:
        pk = caller_key(request)
        if not allowed(pk):
            who = pk.hex() if pk is not None else "a caller without a dmsg key"
            log.info("debug: refused %s %s from %s", request.method, request.path, who)
            return _text(f"forbidden: {who} is not on the survey whitelist\n", 403)
        try:
            return await handler(request)
        except DebugError as exc:
            return _text(f"{exc}\n", exc.status)

    return gate


INDEX: Final = """\
/debug/log?lines=N&level=L       the newest N log lines (default 200) at or above level L
/debug/tasks?format=json&depth=N every live asyncio task, its age and await chain
/debug/profile?seconds=N&hz=H    a CPU profile of the event loop thread, folded stacks
/debug/memory?start=1&frames=F   start tracemalloc (then ask /debug/memory?top=N)
/debug/memory?top=N&stacks=1     the top N allocation sites (or stacks) by size
/debug/memory?stop=1             the last view, then stop tracing
"""


async def _index(request: web.Request) -> web.StreamResponse:
    _only(request.query, "/debug/", ())
    return _text(INDEX)


def _log_route(ring: LogRing) -> Handler:
    async def handle(request: web.Request) -> web.StreamResponse:
        query = request.query
        _only(query, "/debug/log", ("lines", "level"))
        n = _int(query, "lines", DEFAULT_LOG_LINES, 1, MAX_LOG_LINES)
        level_text = query.get("level")
        level = parse_level(level_text) if level_text is not None else None
        lines = ring.lines(n, level)
        return _text("".join(line + "\n" for line in lines))

    return handle


async def _tasks_route(request: web.Request) -> web.StreamResponse:
    query = request.query
    _only(query, "/debug/tasks", ("format", "depth"))
    form = query.get("format", "text").strip().lower()
    if form not in ("text", "json"):
        raise DebugParamError(f"format must be text or json, not {query['format']!r}")
    depth = _int(query, "depth", DEFAULT_DEPTH, 1, MAX_DEPTH)
    loop = asyncio.get_running_loop()
    install_task_clock(loop)  # if the startup hook did not run: ages count from now on
    infos = snapshot_tasks(loop, depth=depth)
    clock = task_clock_installed(loop)
    if form == "json":
        doc = {"tasks": [info.to_dict() for info in infos], "task_clock": clock}
        return web.json_response(doc, dumps=lambda obj: json.dumps(obj, indent=1))
    return _text(format_tasks(infos, clock_installed=clock))


async def _profile_route(request: web.Request) -> web.StreamResponse:
    query = request.query
    _only(query, "/debug/profile", ("seconds", "hz"))
    seconds = _float(query, "seconds", DEFAULT_PROFILE_SECONDS)
    hz = _int(query, "hz", DEFAULT_HZ, 1, MAX_HZ)
    folded = await sample_profile(seconds, hz)
    return web.Response(
        text=folded,
        headers={"Content-Disposition": "attachment; filename=profile.folded"},
    )


async def _memory_route(request: web.Request) -> web.StreamResponse:
    query = request.query
    _only(query, "/debug/memory", ("start", "stop", "frames", "top", "stacks"))
    begin, end = _flag(query, "start"), _flag(query, "stop")
    if begin and end:
        raise DebugParamError("start and stop together: ask for one")
    frames = _int(query, "frames", memory.DEFAULT_FRAMES, 1, memory.MAX_FRAMES)
    if "frames" in query and not begin:
        raise DebugParamError("frames goes with start=1")
    n = _int(query, "top", memory.DEFAULT_TOP, 1, memory.MAX_TOP)
    stacks = _flag(query, "stacks")
    if begin:
        was = memory.is_tracing()
        memory.start(frames)
        note = "tracemalloc was already tracing" if was else "tracemalloc started"
        return _text(f"{note}; ask /debug/memory again for the top allocation sites\n")
    # the snapshot and its statistics take a while on a big heap: not on the loop thread
    if not end:
        return _text(await asyncio.to_thread(memory.top, n, stacks=stacks))
    if not memory.is_tracing():
        return _text("tracemalloc was not tracing\n")
    last = await asyncio.to_thread(memory.top, n, stacks=stacks)
    memory.stop()
    return _text("tracemalloc stopped; the last view:\n" + last)


def mount_debug(
    app: web.Application,
    *,
    allowed: Gate,
    ring: LogRing | None = None,
) -> None:
    """Add ``/debug/log``, ``/debug/tasks``, ``/debug/profile``, ``/debug/memory`` (and
    :data:`INDEX` at ``/debug/``) to ``app``, each answering only the callers for whom
    ``allowed(pk)`` is true.

    ``ring`` is what ``/debug/log`` reads; without one, the process-wide :func:`default_ring`,
    which is then fed from the root logger (:func:`install_ring_handler`, once). The app's
    startup installs the task clock, so that ``/debug/tasks`` knows the age of later tasks.
    Call before the app is started.
    """
    if ring is None:
        ring = default_ring()
        install_ring_handler()

    async def clock_on_startup(_app: web.Application) -> None:
        install_task_clock(asyncio.get_running_loop())

    app.on_startup.append(clock_on_startup)
    routes: dict[str, Handler] = {
        "/debug/log": _log_route(ring),
        "/debug/tasks": _tasks_route,
        "/debug/profile": _profile_route,
        "/debug/memory": _memory_route,
        "/debug/": _index,
        "/debug": _index,
    }
    for path, handler in routes.items():
        app.router.add_get(path, _gated(handler, allowed))

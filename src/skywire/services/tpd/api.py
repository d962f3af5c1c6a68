"""The transport discovery HTTP API (aiohttp), wire-compatible with the upstream service.

======  ===============================  ===================================================
GET     ``/transports/id:{id}``          the entry, latest latency overlaid (httpauth)
GET     ``/transports/edge:{pk}``        entries touching ``pk``, latency overlaid (httpauth)
POST    ``/transports/``                 register a JSON array of signed entries (httpauth)
DELETE  ``/transports/id:{id}``          deregister, by one of its edges (httpauth)
POST    ``/transports/id:{id}/latency``  an edge reports ``{"latency": <ms>}`` (httpauth)
GET     ``/all-transports``              every entry, without latency (``?latency=1``: with)
GET     ``/security/nonces/{pk}``        httpauth: ``{"edge":…,"next_nonce":…}``
GET     ``/health``                      build info, start time, the process's task count
GET     ``/metrics``                     Prometheus text: requests, transports by type
POST    ``/statuses``                    410 Gone (removed upstream)
======  ===============================  ===================================================

Errors are ``{"error":"<message>"}`` (httpauth refusals: ``{"error":{"message":…,"code":401}}``):
400 bad ID / key / body / entry, 403 the signer is not an edge of the transport, 404 transport
not found, 409 ID already registered. A refused request changes nothing.

Deliberately stricter than upstream (which stores whatever it is sent): a registered entry must
have its deterministic ID, sorted valid edges, and valid signatures by both edges, and the
authenticated key must be one of them; a batch is registered all-or-nothing. A delete by a key
that is not an edge is 403 (upstream: 400 ``transport ID is invalid``). ``registered`` and the
latency report endpoint are this implementation's; the ``latency`` key on entries (milliseconds,
omitted when unknown) follows [2026] in spirit, its exact upstream shape being unverified.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from skywire import __version__
from skywire.cipher import CipherError, PubKey
from skywire.debug.metrics import Registry, instrument_app
from skywire.services.appserver import StoreAppServer
from skywire.services.httpauth import HTTPAuth, NonceStore, authenticated_pk
from skywire.services.tpd.store import StoreError, TransportStore
from skywire.transport.entry import (
    EntryDecodeError,
    InvalidEntryError,
    SignedEntry,
    go_json_string,
    marshal_entries,
    marshal_signed_entries,
    parse_signed_entries,
)

__all__ = [
    "MAX_LABEL_LEN",
    "MAX_LATENCY_MS",
    "MAX_REGISTER_BATCH",
    "MAX_TYPE_LEN",
    "TPDServer",
    "make_app",
]

log = logging.getLogger("skywire.tpd")

MAX_REGISTER_BATCH = 256
"""The most signed entries one registration may carry."""

MAX_TYPE_LEN = 32
MAX_LABEL_LEN = 64
MAX_LATENCY_MS = 3_600_000.0
"""Latency reports above an hour are refused as nonsense."""

_Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class APIError(Exception):
    """A refusal answered as ``{"error": message}`` with ``status``."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def _error_body(message: str) -> bytes:
    return f'{{"error":{go_json_string(message)}}}\n'.encode()


def _json_response(body: bytes, status: int = 200) -> web.Response:
    return web.Response(body=body, status=status, content_type="application/json")


def _rfc3339(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat().replace("+00:00", "Z")


def _parse_id(text: str) -> uuid.UUID:
    try:
        if len(text) not in (32, 36, 38, 45):
            raise ValueError(text)
        return uuid.UUID(text)
    except ValueError:
        raise APIError(400, "transport ID is invalid") from None


def _check_entry(se: SignedEntry, signer: PubKey) -> None:
    e = se.entry
    if not e.type or len(e.type) > MAX_TYPE_LEN or not e.type.isascii():
        raise APIError(400, f"invalid entry {e.id}: bad transport type")
    if len(e.label) > MAX_LABEL_LEN:
        raise APIError(400, f"invalid entry {e.id}: label too long")
    try:
        e.check()
    except InvalidEntryError as exc:
        raise APIError(400, f"invalid entry {e.id}: {exc}") from exc
    if not e.has_edge(signer):
        raise APIError(403, f"{signer} is not an edge of transport {e.id}")
    for i, err in enumerate(se.verification_errors()):
        if err is not None and not (i == 1 and e.edges[0] == e.edges[1]):
            raise APIError(400, f"invalid entry {e.id}: edge {i} signature: {err}")


class _TPDAPI:
    def __init__(self, store: TransportStore, clock: Callable[[], float]) -> None:
        self.store = store
        self.started_at = clock()
        self.by_type: dict[str, int] = {}  # transports per type, counted at each scrape
        self.registry = Registry()
        self.registry.gauge(
            "skywire_tpd_transports",
            "Transports registered, by type.",
            ("type",),
            callback=lambda: self.by_type,
        )

    async def refresh_metrics(self) -> None:
        counts = await self.store.count_by_type()
        self.by_type.clear()
        self.by_type.update(counts)

    @web.middleware
    async def errors(self, request: web.Request, handler: _Handler) -> web.StreamResponse:
        started = time.perf_counter()
        try:
            response = await handler(request)
        except APIError as exc:
            response = _json_response(_error_body(str(exc)), exc.status)
        except StoreError as exc:
            if exc.status >= 500:
                log.error("%s %s: %s", request.method, request.path, exc)
            response = _json_response(_error_body(str(exc)), exc.status)
        except web.HTTPException:
            raise
        except Exception:
            log.exception("%s %s failed", request.method, request.path_qs)
            response = _json_response(_error_body("something unexpected happened"), 500)
        log.info(
            "%s %s %s -> %d (%.1f ms)",
            request.remote,
            request.method,
            request.path_qs,
            response.status,
            (time.perf_counter() - started) * 1000,
        )
        return response

    async def get_by_id(self, request: web.Request) -> web.StreamResponse:
        entry = await self.store.get_by_id(_parse_id(request.match_info["id"]))
        return _json_response(entry.to_json() + b"\n")

    async def get_by_edge(self, request: web.Request) -> web.StreamResponse:
        try:
            pk = PubKey.from_hex(request.match_info["edge"])
        except CipherError:
            raise APIError(400, "public key is invalid") from None
        entries = await self.store.get_by_edge(pk)
        return _json_response(marshal_entries(entries) + b"\n")

    async def register(self, request: web.Request) -> web.StreamResponse:
        signer = authenticated_pk(request)
        try:
            entries = parse_signed_entries(await request.read())
        except EntryDecodeError as exc:
            raise APIError(400, str(exc)) from exc
        if len(entries) > MAX_REGISTER_BATCH:
            raise APIError(400, f"at most {MAX_REGISTER_BATCH} entries per registration")
        for se in entries:
            _check_entry(se, signer)
        await self.store.register(entries)
        for se in entries:
            log.info("registered %s transport %s by %s", se.entry.type, se.entry.id, signer)
        return _json_response(marshal_signed_entries(entries) + b"\n", 201)

    async def delete(self, request: web.Request) -> web.StreamResponse:
        signer = authenticated_pk(request)
        tp_id = _parse_id(request.match_info["id"])
        entry = await self.store.get_by_id(tp_id)
        if not entry.has_edge(signer):
            raise APIError(403, f"{signer} is not an edge of transport {tp_id}")
        await self.store.deregister(tp_id)
        log.info("deregistered transport %s by %s", tp_id, signer)
        return web.Response(text="transport deleted", status=200)

    async def report_latency(self, request: web.Request) -> web.StreamResponse:
        signer = authenticated_pk(request)
        tp_id = _parse_id(request.match_info["id"])
        try:
            obj: Any = json.loads(await request.read())
        except (ValueError, RecursionError):
            raise APIError(400, "error bad input: invalid JSON") from None
        latency = obj.get("latency") if isinstance(obj, dict) else None
        if (
            isinstance(latency, bool)
            or not isinstance(latency, int | float)
            or not math.isfinite(latency)
            or not 0 <= latency <= MAX_LATENCY_MS
        ):
            raise APIError(
                400, f"error bad input: latency must be a number of ms in 0..{MAX_LATENCY_MS:g}"
            )
        entry = await self.store.get_by_id(tp_id)
        if not entry.has_edge(signer):
            raise APIError(403, f"{signer} is not an edge of transport {tp_id}")
        await self.store.set_latency(tp_id, float(latency), signer)
        updated = await self.store.get_by_id(tp_id)
        return _json_response(updated.to_json() + b"\n")

    async def all_transports(self, request: web.Request) -> web.StreamResponse:
        # Upstream leaves latency out of this listing; ``?latency=1`` (ours) keeps it, so that a
        # route finder can rank by measured latency.
        with_latency = request.query.get("latency", "") in ("1", "true")
        entries = await self.store.all_transports(with_latency=with_latency)
        return _json_response(marshal_entries(entries, with_latency=with_latency) + b"\n")

    async def health(self, request: web.Request) -> web.StreamResponse:
        body = {
            "build_info": {"version": __version__, "commit": "unknown", "date": "unknown"},
            "started_at": _rfc3339(self.started_at),
            "tasks": len(asyncio.all_tasks()),
        }
        return _json_response(json.dumps(body, separators=(",", ":")).encode() + b"\n")

    async def statuses(self, request: web.Request) -> web.StreamResponse:
        return web.Response(status=410)


def make_app(
    store: TransportStore,
    *,
    nonce_store: NonceStore | None = None,
    clock: Callable[[], float] = time.time,
) -> web.Application:
    """Build the transport discovery application over ``store`` (the caller closes it).

    httpauth nonces live in ``nonce_store``, by default the one kept in ``store``'s database.
    """
    api = _TPDAPI(store, clock)
    auth = HTTPAuth(nonce_store if nonce_store is not None else store.nonce_store())
    app = web.Application(middlewares=[api.errors])
    auth.setup(app)
    app.router.add_get("/transports/id:{id}", auth.protect(api.get_by_id))
    app.router.add_get("/transports/edge:{edge}", auth.protect(api.get_by_edge))
    app.router.add_post("/transports/", auth.protect(api.register))
    app.router.add_delete("/transports/id:{id}", auth.protect(api.delete))
    app.router.add_post("/transports/id:{id}/latency", auth.protect(api.report_latency))
    app.router.add_get("/all-transports", api.all_transports)
    app.router.add_get("/health", api.health)
    app.router.add_post("/statuses", api.statuses)
    instrument_app(app, api.registry, refresh=api.refresh_metrics)
    return app


class TPDServer(StoreAppServer[TransportStore]):
    """Serve :func:`make_app` on a TCP address for as long as the ``async with`` block runs."""

    def make_app(self) -> web.Application:
        return make_app(self.store, **self.app_options)

"""The dmsg discovery HTTP API (aiohttp), wire-compatible with the upstream Go discovery.

Endpoints (all answers JSON; errors are ``{"message": …, "code": <status>}``):

======  ===================================  ==================================================
GET     ``/dmsg-discovery/entry/{pk}``        the entry; 404 not found; 400 bad key
POST    ``/dmsg-discovery/entry/[{pk}]``      create or update (``?timeout=true``: client TTL)
DELETE  ``/dmsg-discovery/entry``             delete; the body is the signed entry
GET     ``/dmsg-discovery/entries``           keys of all client entries
GET     ``/dmsg-discovery/visorEntries``      keys of client entries with ``client_type`` visor
GET     ``/dmsg-discovery/available_servers`` servers with free sessions, most first (≤ 512)
GET     ``/dmsg-discovery/all_servers``       every server entry
DELETE  ``/dmsg-discovery/deregister``        network-monitor bulk delete (whitelisted keys)
GET     ``/health``                           build info and start time
GET     ``/metrics``                          Prometheus text: requests, entries stored
======  ===================================  ==================================================

A POST or DELETE is checked in the upstream order: decode (400 here, see below), loopback server
address (422, skipped in test mode), shape and — for server entries — timestamp window (422),
signature (401), then for an existing key a strictly greater sequence and a timestamp not going
back (422). A rejected request changes nothing.

One deliberate difference: a body that does not decode is answered 400 ``error bad input``
where the Go discovery answers 500 ``something unexpected happened``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from skywire import __version__
from skywire.cipher import CipherError, PubKey, Sig
from skywire.cipher import verify as verify_payload
from skywire.debug.metrics import Registry, instrument_app
from skywire.dmsg.addr import Addr
from skywire.dmsg.disc_entry import (
    ENTRY_LIFETIME_NS,
    MSG_ENTRY_DELETED,
    MSG_ENTRY_SET,
    MSG_ENTRY_UPDATED,
    SERVER_TYPE_COMMUNITY,
    SERVER_TYPE_OFFICIAL,
    BadInputError,
    Clock,
    DiscError,
    DiscVersion,
    Entry,
    KeyNotFoundError,
    NoAvailableServersError,
    ServerAddressError,
    UnexpectedError,
    http_message_json,
    is_loopback_address,
    marshal_entries,
    parse_entry,
    validate,
    validate_iteration,
    verify,
)
from skywire.dmsg.disc_errors import (
    DeleteNotProvenError,
    UnusableServerAddressError,
    WrongTimeError,
)
from skywire.dmsg.netaddr import parse_server_address
from skywire.services.appserver import StoreAppServer
from skywire.services.dmsgdisc.store import MAX_AVAILABLE_SERVERS, DiscStore

__all__ = ["API_PREFIX", "DiscoveryServer", "make_app"]

log = logging.getLogger("skywire.dmsgdisc")

API_PREFIX = "/dmsg-discovery"
PURGE_INTERVAL = 10.0
"""Seconds between housekeeping passes over the store (expired entries, dangling index keys)."""

_Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


TOMBSTONE_LIFETIME_NS = 3600 * 1_000_000_000
"""How long a deleted key's tombstone refuses older copies (see ``_DiscoveryAPI.delete_entry``);
tombstones live in the store, so that every replica sharing it refuses them."""


def _dmsg_peer(request: web.Request) -> PubKey | None:
    """The authenticated key of the dmsg stream a request came over (None over TCP)."""
    transport = request.transport
    stream = transport.get_extra_info("stream") if transport is not None else None
    addr = getattr(stream, "remote_addr", None)
    return addr.pk if isinstance(addr, Addr) else None


def _json_response(status: int, body: bytes) -> web.Response:
    return web.Response(body=body, status=status, content_type="application/json")


def _pk_list_json(pks: Iterable[PubKey]) -> bytes:
    return ("[" + ",".join(f'"{pk.hex()}"' for pk in pks) + "]").encode()


def _rfc3339_nano(ns: int) -> str:
    secs, frac = divmod(ns, 1_000_000_000)
    stamp = datetime.fromtimestamp(secs, UTC).strftime("%Y-%m-%dT%H:%M:%S")
    digits = f"{frac:09d}".rstrip("0")
    return f"{stamp}.{digits}Z" if digits else f"{stamp}Z"


class _DiscoveryAPI:
    def __init__(
        self,
        store: DiscStore,
        *,
        test_mode: bool,
        clock: Clock,
        version: DiscVersion,
        auth_passphrase: str,
        official_servers: frozenset[PubKey],
        nm_whitelist: frozenset[PubKey],
        dmsg_address: str,
        dmsg_servers: Sequence[str],
        purge_interval: float | None,
    ) -> None:
        self.store = store
        self.test_mode = test_mode
        self.clock = clock
        self.version = version
        self.auth_passphrase = auth_passphrase
        self.official_servers = official_servers
        self.nm_whitelist = nm_whitelist
        self.dmsg_address = dmsg_address
        self.dmsg_servers = list(dmsg_servers)
        self.purge_interval = purge_interval
        self.started_at = clock()
        # Serialises read-compare-write of POST so that two updates cannot both pass the
        # sequence check against the same old entry (within this process only: replicas on
        # one store can still interleave two writes of the same key).
        self._write_lock = asyncio.Lock()
        self.registry = Registry()
        self.servers_stored = self.registry.gauge(
            "skywire_dmsg_discovery_servers", "Live server entries stored."
        )
        self.clients_stored = self.registry.gauge(
            "skywire_dmsg_discovery_clients", "Live client entries stored."
        )

    # -- middleware, metrics and housekeeping ------------------------------------------------

    async def refresh_metrics(self) -> None:
        servers, clients = await self.store.count()
        self.servers_stored.set(servers)
        self.clients_stored.set(clients)

    @web.middleware
    async def middleware(self, request: web.Request, handler: _Handler) -> web.StreamResponse:
        started = time.perf_counter()
        try:
            response = await handler(request)
        except DiscError as exc:
            if exc.code != 404:
                log.warning("%d: %s", exc.code, exc)
            response = _json_response(exc.code, exc.to_json())
        except web.HTTPException as exc:
            self._log_request(request, exc.status, started)
            raise
        except Exception:
            log.exception("%s %s failed", request.method, request.path_qs)
            err = UnexpectedError()
            response = _json_response(err.code, err.to_json())
        self._log_request(request, response.status, started)
        return response

    @staticmethod
    def _log_request(request: web.Request, status: int, started: float) -> None:
        log.info(
            "%s %s %s -> %d (%.1f ms)",
            request.remote,
            request.method,
            request.path_qs,
            status,
            (time.perf_counter() - started) * 1000,
        )

    async def housekeeping(self, app: web.Application) -> AsyncIterator[None]:
        task = None
        if self.purge_interval is not None:
            task = asyncio.create_task(self._purge_loop(self.purge_interval))
        yield
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _purge_loop(self, interval: float) -> None:
        while True:
            await asyncio.sleep(interval)
            try:
                await self.store.purge()
            except Exception:
                log.exception("store housekeeping failed")

    # -- helpers -----------------------------------------------------------------------------

    async def _read_entry(self, request: web.Request) -> Entry:
        return parse_entry(await request.read())

    def _check_signed(self, entry: Entry) -> None:
        # Upstream skips the timestamp window for anything carrying a client part.
        validate(entry, None if entry.client is not None else self.clock())
        verify(entry, self.version)

    def _as_stored(self, entry: Entry) -> Entry:
        if self.version is DiscVersion.V2023:
            # The [2023] discovery's model has neither field, so it never stores them.
            server = None if entry.server is None else replace(entry.server, server_type="")
            return replace(entry, client_type="", server=server)
        if entry.server is not None:
            # Upstream compares against the passphrase even when none is set, so with no
            # --auth every server that sends no serverType is stored as official.
            official = (
                entry.server.server_type == self.auth_passphrase
                or entry.static in self.official_servers
            )
            kind = SERVER_TYPE_OFFICIAL if official else SERVER_TYPE_COMMUNITY
            return replace(entry, server=replace(entry.server, server_type=kind))
        return entry

    # -- handlers ----------------------------------------------------------------------------

    async def get_entry(self, request: web.Request) -> web.StreamResponse:
        try:
            pk = PubKey.from_hex(request.match_info["pk"])
        except CipherError as exc:
            raise BadInputError(str(exc)) from exc
        entry = await self.store.get(pk)
        return _json_response(200, entry.to_json(self.version))

    async def post_entry(self, request: web.Request) -> web.StreamResponse:
        timeout = request.query.get("timeout") == "true"
        entry = await self._read_entry(request)
        if (
            entry.server is not None
            and not self.test_mode
            and is_loopback_address(entry.server.address)
        ):
            raise ServerAddressError(entry.server.address)
        self._check_signed(entry)
        if entry.server is not None:  # after upstream's own checks, which come first
            try:
                parse_server_address(entry.server.address)
            except ValueError as exc:
                raise UnusableServerAddressError(str(exc)) from exc
        entry = self._as_stored(entry)
        async with self._write_lock:
            try:
                old = await self.store.get(entry.static)
            except KeyNotFoundError:
                await self._check_tombstone(entry)
                await self.store.set(entry, timeout=timeout)
                return _json_response(200, http_message_json(200, MSG_ENTRY_SET))
            validate_iteration(old, entry)
            await self.store.set(entry, timeout=timeout)
        return _json_response(200, http_message_json(200, MSG_ENTRY_UPDATED))

    async def delete_entry(self, request: web.Request) -> web.StreamResponse:
        """Delete an entry. The body must prove that the key's holder sends it now: a new
        iteration of the stored entry (higher sequence, later timestamp, fresh, signed), or
        the stored entry itself over a dmsg stream from that very key. A copy of the stored
        entry sent over plain HTTP, as anyone can fetch and replay it, is refused."""
        entry = await self._read_entry(request)
        self._check_signed(entry)
        async with self._write_lock:
            old = await self.store.get(entry.static)
            now = self.clock()
            fresh = (
                entry.sequence > old.sequence
                and entry.timestamp > old.timestamp
                and abs(now - entry.timestamp) <= ENTRY_LIFETIME_NS
            )
            if not fresh and _dmsg_peer(request) != entry.static:
                raise DeleteNotProvenError(
                    f"got sequence {entry.sequence}, stored {old.sequence}; "
                    f"send sequence {old.sequence + 1} signed now"
                )
            # The tombstone first: a replica must never see the entry gone and no tombstone.
            await self.store.bury(
                entry.static,
                max(old.timestamp, entry.timestamp),
                now,
                TOMBSTONE_LIFETIME_NS / 1_000_000_000,
            )
            await self.store.delete(entry.static)
        return _json_response(200, http_message_json(200, MSG_ENTRY_DELETED))

    async def _check_tombstone(self, entry: Entry) -> None:
        found = await self.store.tombstone(entry.static)
        if found is None:
            return
        timestamp, buried = found
        if self.clock() - buried > TOMBSTONE_LIFETIME_NS:
            await self.store.unbury(entry.static)
            return
        if entry.timestamp <= timestamp:
            raise WrongTimeError(f"entry of {entry.static} was deleted; this copy is older")

    async def entries(self, request: web.Request) -> web.StreamResponse:
        return _json_response(200, _pk_list_json(await self.store.client_pks()))

    async def visor_entries(self, request: web.Request) -> web.StreamResponse:
        return _json_response(200, _pk_list_json(await self.store.visor_client_pks()))

    async def available_servers(self, request: web.Request) -> web.StreamResponse:
        servers = await self.store.available_servers(MAX_AVAILABLE_SERVERS)
        if not servers:
            raise NoAvailableServersError()
        return _json_response(200, marshal_entries(servers, self.version))

    async def all_servers(self, request: web.Request) -> web.StreamResponse:
        servers = await self.store.all_servers()
        if not servers:
            raise NoAvailableServersError()
        return _json_response(200, marshal_entries(servers, self.version))

    async def deregister(self, request: web.Request) -> web.StreamResponse:
        """Bulk delete by a whitelisted network monitor; failures answer with an empty body."""
        nm_text = request.headers.get("NM-PK", "")
        try:
            nm_pk = PubKey.from_hex(nm_text)
            if nm_pk.is_null() or nm_pk not in self.nm_whitelist:
                log.warning("deregister: %s is not a whitelisted network monitor", nm_text)
                return web.Response(status=403)
        except CipherError:
            return web.Response(status=403)
        try:
            nm_sig = Sig.from_hex(request.headers.get("NM-Sign", ""))
        except CipherError:
            return web.Response(status=400)
        try:
            verify_payload(nm_pk, nm_sig, nm_pk.hex().encode())
        except CipherError:
            log.warning("deregister: bad signature from %s", nm_pk)
            return web.Response(status=403)
        try:
            keys_text = json.loads(await request.read())
        except (ValueError, RecursionError):
            return web.Response(status=400)
        if not isinstance(keys_text, list) or not all(isinstance(k, str) for k in keys_text):
            return web.Response(status=400)
        try:
            keys = [PubKey.from_hex(k) for k in keys_text]
        except CipherError as exc:
            raise BadInputError(str(exc)) from exc
        async with self._write_lock:
            for pk in keys:
                await self.store.delete(pk)
        log.info("deregistered %d keys on behalf of %s", len(keys), nm_pk)
        return _json_response(200, b"null")

    async def health(self, request: web.Request) -> web.StreamResponse:
        body: dict[str, Any] = {
            "build_info": {"version": __version__, "commit": "unknown", "date": "unknown"},
            "started_at": _rfc3339_nano(self.started_at),
        }
        if self.dmsg_address:
            body["dmsg_address"] = self.dmsg_address
        if self.dmsg_servers:
            body["dmsg_servers"] = self.dmsg_servers
        text = json.dumps(body, separators=(",", ":"), ensure_ascii=False)
        return _json_response(200, text.encode())


def make_app(
    store: DiscStore,
    *,
    test_mode: bool = False,
    clock: Clock = time.time_ns,
    version: DiscVersion = DiscVersion.V2024,
    auth_passphrase: str = "",
    official_servers: Iterable[PubKey] = (),
    nm_whitelist: Iterable[PubKey] = (),
    dmsg_address: str = "",
    dmsg_servers: Sequence[str] = (),
    purge_interval: float | None = PURGE_INTERVAL,
) -> web.Application:
    """Build the discovery application over ``store`` (which the caller keeps and closes).

    ``test_mode`` accepts loopback server addresses. ``clock`` gives Unix nanoseconds for the
    server-entry timestamp window. ``version`` picks the upstream revision whose verification and
    stored fields to reproduce ([2024] by default; it accepts [2023] entries too).
    ``auth_passphrase`` / ``official_servers`` classify server entries as ``official`` or
    ``community`` ([2024]). ``nm_whitelist`` lists network monitors allowed to deregister.
    ``purge_interval`` seconds between housekeeping passes (``None``: none).
    """
    api = _DiscoveryAPI(
        store,
        test_mode=test_mode,
        clock=clock,
        version=version,
        auth_passphrase=auth_passphrase,
        official_servers=frozenset(official_servers),
        nm_whitelist=frozenset(nm_whitelist),
        dmsg_address=dmsg_address,
        dmsg_servers=dmsg_servers,
        purge_interval=purge_interval,
    )
    app = web.Application(middlewares=[api.middleware])
    app.cleanup_ctx.append(api.housekeeping)
    p = API_PREFIX
    app.router.add_get(f"{p}/entry/{{pk}}", api.get_entry)
    app.router.add_post(f"{p}/entry/", api.post_entry)
    app.router.add_post(f"{p}/entry/{{pk}}", api.post_entry)
    app.router.add_delete(f"{p}/entry", api.delete_entry)
    app.router.add_get(f"{p}/entries", api.entries)
    if version is DiscVersion.V2024:
        app.router.add_get(f"{p}/visorEntries", api.visor_entries)
    app.router.add_get(f"{p}/available_servers", api.available_servers)
    app.router.add_get(f"{p}/all_servers", api.all_servers)
    app.router.add_delete(f"{p}/deregister", api.deregister)
    app.router.add_get("/health", api.health)
    instrument_app(app, api.registry, refresh=api.refresh_metrics)
    return app


class DiscoveryServer(StoreAppServer[DiscStore]):
    """Serve :func:`make_app` on a TCP address for as long as the ``async with`` block runs."""

    def make_app(self) -> web.Application:
        return make_app(self.store, **self.app_options)

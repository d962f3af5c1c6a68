"""The dashboard's HTTP application: the page, the account routes, and the gate in front of
every ``/api`` call.

Open without a session: ``GET /`` and ``/static/*`` (the page, served from this package: no
asset comes from elsewhere), ``GET /api/ping``, ``GET /api/account`` (whether the account
exists), ``GET /api/csrf``, ``POST /api/login`` and ``POST /api/create-account``. Everything
else under ``/api`` answers 401 without a live session cookie. Every call that is not a
GET/HEAD — the login and the account creation included, so that another site cannot post them
from a visitor's browser — needs a fresh ``X-CSRF-Token`` from ``GET /api/csrf`` (403), and one
that carries an ``Origin`` must come from the page's own origin (403). The terminal's websocket
(``GET /api/visors/{pk}/pty``, :mod:`.terminal_aio`) cannot send the header: it carries the
token as its ``csrf`` query parameter and must come with the page's ``Origin``. Errors are
``{"error": "..."}`` with the status of the :mod:`.errors` class raised.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from importlib import resources
from typing import Any
from urllib.parse import urlsplit

from aiohttp import web

from skywire import __version__
from skywire.cipher import PubKey
from skywire.visor.hypervisor.api_visors import VisorProxy, add_visor_routes
from skywire.visor.hypervisor.auth import (
    CSRF_HEADER,
    SESSION_COOKIE,
    CsrfSigner,
    LoginThrottle,
    Session,
    SessionStore,
)
from skywire.visor.hypervisor.errors import (
    BadRequestError,
    CsrfError,
    HypervisorError,
    NotLoggedInError,
    ThrottledError,
)
from skywire.visor.hypervisor.terminal_aio import Terminals, add_terminal_route
from skywire.visor.hypervisor.users import UserDB

__all__ = ["DashboardConfig", "dashboard_app"]

log = logging.getLogger(__name__)

OPEN = {
    ("GET", "/api/ping"),
    ("GET", "/api/account"),
    ("GET", "/api/csrf"),
    ("POST", "/api/login"),
    ("POST", "/api/create-account"),
}
SAFE_METHODS = {"GET", "HEAD", "OPTIONS"}
STATIC_FILES = {
    "index.html": "text/html",
    "app.js": "text/javascript",
    "term.js": "text/javascript",
    "app.css": "text/css",
}
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
        "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
    ),
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}
SESSION_KEY = web.RequestKey("hypervisor_session", Session)
SID_KEY = web.RequestKey("hypervisor_sid", str)


@dataclass(frozen=True)
class DashboardConfig:
    pk: PubKey
    cookie_path: str = "/"
    cookie_domain: str = ""
    secure_cookie: bool = False


def _static(name: str) -> bytes:
    return resources.files("skywire.visor.hypervisor").joinpath("static", name).read_bytes()


def _session(request: web.Request) -> Session:
    session = request.get(SESSION_KEY)
    assert isinstance(session, Session), "the gate sets the session of every closed route"
    return session


def _client(request: web.Request) -> str:
    return request.remote or "unknown"


def _check_origin(request: web.Request) -> None:
    origin = request.headers.get("Origin")
    if origin is None:
        return
    if origin == "null" or urlsplit(origin).netloc != request.host:
        raise CsrfError(f"cross-origin request from {origin} refused")


def _check_ws_origin(request: web.Request) -> None:
    """A browser always sends ``Origin`` with a websocket; one without is refused too."""
    if request.headers.get("Origin") is None:
        raise CsrfError("a websocket without an Origin header refused")
    _check_origin(request)


async def _credentials(request: web.Request) -> tuple[str, str]:
    try:
        body = await request.json()
    except ValueError as exc:
        raise BadRequestError("request format is malformed") from exc
    if not isinstance(body, dict):
        raise BadRequestError("request format is malformed")
    name, password = body.get("username"), body.get("password")
    if not isinstance(name, str) or not isinstance(password, str):
        raise BadRequestError('the body is {"username": "…", "password": "…"}')
    return name, password


def dashboard_app(
    config: DashboardConfig,
    *,
    users: UserDB,
    proxy: VisorProxy,
    sessions: SessionStore | None = None,
    csrf: CsrfSigner | None = None,
    throttle: LoginThrottle | None = None,
    terminals: Terminals | None = None,
    clock: Callable[[], float] = time.time,
) -> web.Application:
    sessions = sessions or SessionStore()
    csrf = csrf or CsrfSigner()
    throttle = throttle or LoginThrottle()

    def live(request: web.Request) -> Session | None:
        """The caller's live session, if it has one (its CSRF tokens are bound to it)."""
        try:
            return sessions.get(request.cookies.get(SESSION_COOKIE), clock())
        except NotLoggedInError:
            return None

    @web.middleware
    async def gate(
        request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        try:
            if request.path.startswith("/api"):
                session = live(request)
                if session is None and (request.method, request.path) not in OPEN:
                    raise NotLoggedInError()
                if session is not None:
                    request[SESSION_KEY] = session
                request[SID_KEY] = session.sid if session is not None else ""
                if request.method not in SAFE_METHODS:
                    _check_origin(request)
                    csrf.verify(request.headers.get(CSRF_HEADER), request[SID_KEY], clock())
            response = await handler(request)
        except HypervisorError as exc:
            response = web.json_response({"error": str(exc)}, status=exc.status)
            if isinstance(exc, ThrottledError):
                response.headers["Retry-After"] = str(max(1, round(exc.retry_after)))
        if response.prepared:  # a websocket: its headers are sent
            return response
        response.headers.update(SECURITY_HEADERS)
        if request.path.startswith("/api"):
            response.headers["Cache-Control"] = "no-store"
        return response

    def websocket_gate(request: web.Request) -> None:
        """The CSRF check of a websocket: the token in ``?csrf=``, the page's ``Origin``."""
        _check_ws_origin(request)
        token = request.query.get("csrf")
        if not token:
            raise CsrfError("no csrf query parameter: get a token from GET /api/csrf")
        csrf.verify(token, request[SID_KEY], clock())

    def set_cookie(response: web.Response, session: Session) -> None:
        response.set_cookie(
            SESSION_COOKIE,
            session.sid,
            max_age=round(sessions.ttl),
            path=config.cookie_path,
            domain=config.cookie_domain or None,
            secure=config.secure_cookie,
            httponly=True,
            samesite="Strict",
        )

    async def ping(_: web.Request) -> web.Response:
        return web.json_response("PONG!")

    async def account(_: web.Request) -> web.Response:
        return web.json_response({"exists": await users.count() > 0})

    async def get_csrf(request: web.Request) -> web.Response:
        # bound to the session; before login, to none (good for the login call only)
        return web.json_response({"csrf_token": csrf.issue(request[SID_KEY], clock())})

    async def login(request: web.Request) -> web.Response:
        client = _client(request)
        throttle.check(client, clock())
        name, password = await _credentials(request)
        try:
            await users.verify(name, password)
        except HypervisorError:
            throttle.failed(client, clock())
            log.warning("hypervisor: failed login for %r from %s", name, client)
            raise
        throttle.succeeded(client)
        old = request.cookies.get(SESSION_COOKIE)
        if old:
            sessions.delete(old)
        response = web.json_response(True)
        set_cookie(response, sessions.create(name, clock()))
        return response

    async def logout(request: web.Request) -> web.Response:
        sessions.delete(_session(request).sid)
        response = web.json_response(True)
        response.del_cookie(SESSION_COOKIE, path=config.cookie_path)
        return response

    async def create_account(request: web.Request) -> web.Response:
        throttle.check(_client(request), clock())
        name, password = await _credentials(request)
        await users.create(name, password)
        log.info("hypervisor: account %r created", name)
        return web.json_response(True)

    async def user(request: web.Request) -> web.Response:
        session = _session(request)
        return web.json_response(
            {
                "username": session.user,
                "current_session": session.to_json(),
                "other_sessions": [s.to_json() for s in sessions.others(session)],
            }
        )

    async def change_password(request: web.Request) -> web.Response:
        session = _session(request)
        try:
            body: Any = await request.json()
            old, new = str(body["old_password"]), str(body["new_password"])
        except (ValueError, KeyError, TypeError) as exc:
            raise BadRequestError('the body is {"old_password", "new_password"}') from exc
        client = _client(request)
        throttle.check(client, clock())
        try:
            await users.verify(session.user, old)
        except HypervisorError:
            throttle.failed(client, clock())
            raise
        await users.set_password(session.user, new)
        sessions.delete_user(session.user)  # as upstream: every session ends
        response = web.json_response(True)
        response.del_cookie(SESSION_COOKIE, path=config.cookie_path)
        return response

    async def about(_: web.Request) -> web.Response:
        return web.json_response({"public_key": config.pk.hex(), "build": {"version": __version__}})

    def static(name: str) -> Callable[[web.Request], Awaitable[web.Response]]:
        body, content_type = _static(name), STATIC_FILES[name]

        async def handler(_: web.Request) -> web.Response:
            return web.Response(body=body, content_type=content_type, charset="utf-8")

        return handler

    app = web.Application(middlewares=[gate], client_max_size=1 << 20)
    r = app.router
    r.add_get("/api/ping", ping)
    r.add_get("/api/account", account)
    r.add_get("/api/csrf", get_csrf)
    r.add_post("/api/login", login)
    r.add_post("/api/logout", logout)
    r.add_post("/api/create-account", create_account)
    r.add_get("/api/user", user)
    r.add_post("/api/change-password", change_password)
    r.add_get("/api/about", about)
    add_visor_routes(app, proxy)
    if terminals is not None:
        add_terminal_route(app, terminals, proxy.directory, websocket_gate)
    r.add_get("/", static("index.html"))
    for name in STATIC_FILES:
        r.add_get(f"/static/{name}", static(name))
    return app

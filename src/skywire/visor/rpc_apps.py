"""The control API's app routes (``skywire cli visor app …``, ``skywire cli proxy …``): list,
start, stop, autostart and arguments (kept in the config file when the visor has one), logs.
A visor without apps answers 404 "no apps here" on each."""

from __future__ import annotations

import json
from collections.abc import Callable

from aiohttp import web

from skywire.visor.config import AppConfig
from skywire.visor.launcher import Launcher, LauncherError, UnknownAppError

__all__ = ["add_app_routes"]


def _error(status: int, message: str) -> web.Response:
    return web.json_response({"error": message}, status=status)


def add_app_routes(
    app: web.Application,
    launcher: Callable[[], Launcher | None],
    persist: Callable[[list[AppConfig]], None] | None = None,
) -> None:
    """``launcher()`` is the visor's launcher, or None (no apps configured or enabled);
    ``persist(apps)`` writes the apps back to the config after an autostart change."""

    def get() -> Launcher:
        found = launcher()
        if found is None:
            raise web.HTTPNotFound(
                text=json.dumps({"error": "no apps here (this visor runs no app launcher)"}),
                content_type="application/json",
            )
        return found

    async def ls(request: web.Request) -> web.Response:
        return web.json_response([s.to_json() for s in get().statuses()])

    async def start(request: web.Request) -> web.Response:
        try:
            st = await get().start(request.match_info["name"])
        except UnknownAppError as exc:
            return _error(404, str(exc))
        except LauncherError as exc:
            return _error(409, str(exc))
        return web.json_response(st.to_json())

    async def stop(request: web.Request) -> web.Response:
        try:
            st = await get().stop(request.match_info["name"])
        except UnknownAppError as exc:
            return _error(404, str(exc))
        except LauncherError as exc:
            return _error(409, str(exc))
        return web.json_response(st.to_json())

    async def autostart(request: web.Request) -> web.Response:
        try:
            body = await request.json()
        except (json.JSONDecodeError, UnicodeDecodeError):
            return _error(400, 'body must be JSON: {"on": true|false}')
        on = body.get("on") if isinstance(body, dict) else None
        if not isinstance(on, bool):
            return _error(400, 'body must be {"on": true|false}')
        found = get()
        try:
            st = found.set_autostart(request.match_info["name"], on)
        except UnknownAppError as exc:
            return _error(404, str(exc))
        if persist is not None:
            persist(found.apps())
        return web.json_response(st.to_json())

    async def set_args(request: web.Request) -> web.Response:
        try:
            body = await request.json()
        except (json.JSONDecodeError, UnicodeDecodeError):
            return _error(400, 'body must be JSON: {"args": ["…", …]}')
        args = body.get("args") if isinstance(body, dict) else None
        if not isinstance(args, list) or not all(isinstance(a, str) for a in args):
            return _error(400, 'body must be {"args": [strings]}')
        if len(args) > 64 or sum(len(a) for a in args) > 4096:
            return _error(400, "too many or too long arguments")
        found = get()
        try:
            st = found.set_args(request.match_info["name"], args)
        except UnknownAppError as exc:
            return _error(404, str(exc))
        if persist is not None:
            persist(found.apps())
        return web.json_response(st.to_json())

    async def logs(request: web.Request) -> web.Response:
        try:
            n = int(request.query.get("n", "100"))
        except ValueError:
            return _error(400, "n must be a whole number")
        if not 1 <= n <= 10_000:
            return _error(400, "n must be between 1 and 10000")
        try:
            lines = get().logs(request.match_info["name"], n)
        except UnknownAppError as exc:
            return _error(404, str(exc))
        return web.json_response({"lines": lines})

    r = app.router
    r.add_get("/apps", ls)
    r.add_post("/apps/{name}/start", start)
    r.add_post("/apps/{name}/stop", stop)
    r.add_post("/apps/{name}/autostart", autostart)
    r.add_get("/apps/{name}/logs", logs)
    r.add_post("/apps/{name}/args", set_args)

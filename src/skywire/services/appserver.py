"""Serving an aiohttp application on a TCP address for as long as an ``async with`` runs."""

from __future__ import annotations

from types import TracebackType
from typing import Any, Generic, Self, TypeVar

from aiohttp import web


class AppServer:
    """``async with`` a subclass: its :meth:`make_app` is served on ``host:port``; or
    ``AppServer(host, port, app=app)``: ``app`` (made by the caller, who may have added to it,
    e.g. ``/debug``) is.

    ``port=0`` picks a free port (read it back from :attr:`port`); :attr:`url` is the base URL
    to give clients; :attr:`runner` lets the same application be served elsewhere too (e.g. on
    a dmsg port). Whatever the application uses (its store) stays the caller's to close.
    """

    def __init__(
        self, host: str = "127.0.0.1", port: int = 0, *, app: web.Application | None = None
    ) -> None:
        self.host = host
        self.port = port
        self._given_app = app
        self._runner: web.AppRunner | None = None

    def make_app(self) -> web.Application:
        """The application to serve: the one given, or what a subclass makes."""
        if self._given_app is None:
            raise NotImplementedError("give AppServer an app or override make_app")
        return self._given_app

    @property
    def url(self) -> str:
        host = self.host if self.host not in ("", "0.0.0.0", "::") else "127.0.0.1"
        if ":" in host:
            host = f"[{host}]"
        return f"http://{host}:{self.port}"

    @property
    def runner(self) -> web.AppRunner | None:
        """The set-up runner while serving."""
        return self._runner

    async def __aenter__(self) -> Self:
        runner = web.AppRunner(self.make_app(), access_log=None)
        await runner.setup()
        try:
            site = web.TCPSite(runner, self.host or None, self.port)
            await site.start()
        except BaseException:
            await runner.cleanup()
            raise
        self._runner = runner
        addresses = runner.addresses
        if addresses:
            self.port = int(addresses[0][1])
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._runner is not None:
            runner, self._runner = self._runner, None
            await runner.cleanup()


S = TypeVar("S")


class StoreAppServer(AppServer, Generic[S]):
    """An :class:`AppServer` over a service's store: a subclass's :meth:`make_app` builds the
    application from :attr:`store` and :attr:`app_options` (the store is not closed on exit:
    whoever opened it closes it)."""

    def __init__(
        self, store: S, host: str = "127.0.0.1", port: int = 0, **app_options: Any
    ) -> None:
        super().__init__(host, port)
        self.store = store
        self.app_options = app_options

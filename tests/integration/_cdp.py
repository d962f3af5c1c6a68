"""A headless Chromium that stays up, driven over the DevTools protocol (CDP), for pages whose
script must run while the test acts: a page that keeps an event stream open never lets
``--dump-dom`` finish under ``--virtual-time-budget``, so the one-shot runs cannot see it live.

``async with Browser.launch() as browser: tab = await browser.open(url)`` — ``tab.run(js)``
evaluates a statement, ``await tab.until(js_condition)`` resolves inside the page as soon as
the condition holds (a ``MutationObserver``, no polling from here: the caller bounds the wait),
``tab.screenshot(path)`` saves a PNG. Chromium prints its DevTools address on stderr
(``DevTools listening on ws://…``); that line, not a timer, says when it is ready.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import itertools
import json
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp

from tests.integration.test_browser import CHROMIUM, FLAGS

READY = b"DevTools listening on "


class CDPError(Exception):
    pass


class Browser:
    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws
        self._ids = itertools.count(1)
        self._calls: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self._events: dict[tuple[str, str], list[asyncio.Future[dict[str, Any]]]] = {}

    @classmethod
    @contextlib.asynccontextmanager
    async def launch(cls) -> AsyncIterator[Browser]:
        assert CHROMIUM is not None
        with tempfile.TemporaryDirectory() as profile:
            proc = await asyncio.create_subprocess_exec(
                CHROMIUM,
                *FLAGS,
                f"--user-data-dir={profile}",
                "--remote-debugging-port=0",
                "about:blank",
                stdout=asyncio.subprocess.DEVNULL,
                stderr=asyncio.subprocess.PIPE,
            )
            try:
                assert proc.stderr is not None
                async with asyncio.timeout(30):
                    while READY not in (line := await proc.stderr.readline()):
                        assert line, "chromium ended before it listened for DevTools"
                url = line.split(READY, 1)[1].strip().decode()
                async with (
                    aiohttp.ClientSession() as http,
                    http.ws_connect(url, max_msg_size=0) as ws,
                    asyncio.TaskGroup() as tg,
                ):
                    browser = cls(ws)
                    reader = tg.create_task(browser._read())
                    drain = tg.create_task(proc.stderr.read())  # keep its stderr flowing
                    try:
                        yield browser
                    finally:
                        reader.cancel()
                        drain.cancel()
            finally:
                if proc.returncode is None:
                    proc.kill()
                await proc.wait()

    async def _read(self) -> None:
        async for msg in self.ws:
            data = json.loads(msg.data)
            if "id" in data:
                fut = self._calls.pop(data["id"], None)
                if fut is None or fut.done():
                    continue
                if "error" in data:
                    fut.set_exception(CDPError(data["error"]))
                else:
                    fut.set_result(data.get("result", {}))
            else:
                key = (data.get("sessionId", ""), data["method"])
                for fut in self._events.pop(key, []):
                    if not fut.done():
                        fut.set_result(data.get("params", {}))

    async def call(self, method: str, session: str = "", **params: Any) -> dict[str, Any]:
        n = next(self._ids)
        fut: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._calls[n] = fut
        message: dict[str, Any] = {"id": n, "method": method, "params": params}
        if session:
            message["sessionId"] = session
        await self.ws.send_str(json.dumps(message))
        return await fut

    def event(self, method: str, session: str = "") -> asyncio.Future[dict[str, Any]]:
        """A future for the next ``method`` event (ask before causing it)."""
        fut: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._events.setdefault((session, method), []).append(fut)
        return fut

    async def open(self, url: str) -> Tab:
        """A new tab with ``url`` loaded (its load event fired)."""
        target = await self.call("Target.createTarget", url="about:blank")
        attached = await self.call(
            "Target.attachToTarget", targetId=target["targetId"], flatten=True
        )
        tab = Tab(self, attached["sessionId"])
        await tab.call("Page.enable")
        loaded = self.event("Page.loadEventFired", tab.session)
        await tab.call("Page.navigate", url=url)
        await loaded
        return tab


class Tab:
    def __init__(self, browser: Browser, session: str) -> None:
        self.browser = browser
        self.session = session

    async def call(self, method: str, **params: Any) -> dict[str, Any]:
        return await self.browser.call(method, self.session, **params)

    async def evaluate(self, expression: str) -> Any:
        """The value of ``expression`` (a promise is awaited); a page exception is raised."""
        answer = await self.call(
            "Runtime.evaluate", expression=expression, awaitPromise=True, returnByValue=True
        )
        if "exceptionDetails" in answer:
            raise CDPError(answer["exceptionDetails"])
        return answer["result"].get("value")

    async def run(self, statements: str) -> None:
        await self.evaluate(f"(() => {{ {statements} }})()")

    async def until(self, condition: str) -> None:
        """Return once ``condition`` (a JS expression) is true in the page."""
        await self.evaluate(
            "new Promise((resolve) => {"
            f"  const ok = () => Boolean({condition});"
            "  if (ok()) { resolve(true); return; }"
            "  const seen = new MutationObserver(() => {"
            "    if (ok()) { seen.disconnect(); resolve(true); }"
            "  });"
            "  seen.observe(document.documentElement,"
            "    {subtree: true, childList: true, characterData: true, attributes: true});"
            "})"
        )

    async def text(self, selector: str) -> list[str]:
        value = await self.evaluate(
            f"[...document.querySelectorAll({json.dumps(selector)})].map((e) => e.textContent)"
        )
        return list(value)

    async def screenshot(self, path: Path) -> None:
        shot = await self.call("Page.captureScreenshot", format="png")
        await asyncio.to_thread(path.write_bytes, base64.b64decode(shot["data"]))

"""The hypervisor's dashboard in a real browser: headless Chromium (Debian's package; ``make
test`` installs it when run as root), driven over the DevTools protocol
(:mod:`tests.integration._cdp`), on three visors over real dmsg: visor 0 is the hypervisor,
visors 1 and 2 name it in ``hypervisors``; visor 1 has a skychat app, stopped.

As a user would, one step after another: a wrong password is refused on the page (and no API
call works without the session), the right one logs in; the page lists the three visors; a
transport from visor 0 to visor 1 is added through the page's form and shows in both visors'
lists (on the page and in each visor); the latency chart draws it; skychat on visor 1 is
started from the page, its log opened, and stopped; a fourth visor that names the hypervisor
joins the list. The page content is asserted after each step and a screenshot of each is saved
under ``artifacts/screenshots/hypervisor-*.png``. Every wait resolves inside the page as soon
as the DOM shows the state (``tab.until``), or on the visor's own event.
"""

from __future__ import annotations

import asyncio
import json
import socket
import uuid
from pathlib import Path

import pytest

from skywire.visor.config import AppConfig, VisorConfig
from skywire.visor.launcher import AppState
from tests.integration._cdp import Browser, Tab
from tests.integration.test_browser import CHROMIUM, SHOTS
from tests.integration.test_hypervisor import PASSWORD, hypervisor_net
from tests.integration.test_hypervisor_pty import gone

pytestmark = pytest.mark.timeout(180)

# JS: whether the dashboard is out of sight (the login form alone is shown)
HIDDEN = 'getComputedStyle(document.getElementById("dashboard")).display === "none"'
# JS: every action started on the page (more than {} of them) has completed
ACTIONS_DONE = (
    "Number(document.body.dataset.started) > {0}"
    " && document.body.dataset.actions === document.body.dataset.started"
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def shot(tab: Tab, label: str) -> None:
    path = SHOTS / f"hypervisor-{label}.png"
    path.unlink(missing_ok=True)
    await tab.screenshot(path)
    assert path.stat().st_size > 5000, label


def q(selector: str) -> str:
    """JS: the element matching ``selector``."""
    return f"document.querySelector({json.dumps(selector)})"


async def fetch_status(tab: Tab, path: str, method: str = "GET") -> int:
    status = await tab.evaluate(
        f"fetch({json.dumps(path)}, {{method: {json.dumps(method)}}}).then((r) => r.status)"
    )
    return int(status)


@pytest.mark.skipif(
    CHROMIUM is None, reason="chromium is not installed (make test installs it as root)"
)
async def test_the_dashboard_in_a_real_browser(tmp_path: Path) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    chat_port = free_port()

    def configure(i: int, cfg: VisorConfig) -> None:
        cfg.launcher.apps = []
        if i == 0:
            cfg.hypervisor.password = PASSWORD
        if i == 1:
            cfg.launcher.apps = [
                AppConfig(
                    name="skychat",
                    binary="skywire",
                    port=1,
                    args=["app", "skychat", "--addr", f"127.0.0.1:{chat_port}"],
                )
            ]

    async with (
        hypervisor_net(tmp_path, apps=True, configure=configure) as sky,
        Browser.launch() as browser,
    ):
        hv, v1, v2 = sky.visors
        assert hv.hypervisor is not None and v1.launcher is not None
        assert hv.tm is not None and v1.tm is not None
        hv_hex, v1_hex, v2_hex = hv.pk.hex(), v1.pk.hex(), v2.pk.hex()
        async with asyncio.timeout(150):
            tab = await browser.open(f"{hv.hypervisor.url}/?poll=300")
            await tab.call(
                "Emulation.setDeviceMetricsOverride",
                width=1280,
                height=1500,
                deviceScaleFactor=1,
                mobile=False,
            )

            # 1. the login form; without the session no API call works
            await tab.until('document.body.dataset.state === "login"')
            assert await tab.text("#login-title") == ["Log in"]
            assert await tab.evaluate(HIDDEN) is True
            for path, method in (
                ("/api/visors", "GET"),
                (f"/api/visors/{v1_hex}/transports", "GET"),
                (f"/api/visors/{v1_hex}/apps/skychat", "PUT"),
                ("/api/about", "GET"),
            ):
                assert await fetch_status(tab, path, method) == 401, path

            # 2. a wrong password is refused, on the page
            await tab.run(
                f"const f = {q('#login-form')};"
                'f.username.value = "admin"; f.password.value = "Wrong-pass1"; f.requestSubmit();'
            )
            await tab.until(f"{q('#error')}.textContent.includes('(401)')")
            [error] = await tab.text("#error")
            assert error == "Login refused (401): incorrect username or password"
            assert await tab.evaluate("document.body.dataset.state") == "login"
            assert await fetch_status(tab, "/api/visors") == 401
            await shot(tab, "1-wrong-password")

            # 3. the right one logs in; the three visors are listed, the hypervisor first
            await tab.run(
                f"const f = {q('#login-form')};"
                f"f.password.value = {json.dumps(PASSWORD)}; f.requestSubmit();"
            )
            await tab.until('document.body.dataset.state === "dashboard"')
            assert await tab.evaluate(HIDDEN) is False
            await tab.until(f"{q('#visors')}.children.length === 3")
            listed = await tab.evaluate(
                "[...document.querySelectorAll('#visors li')].map((li) => li.dataset.pk)"
            )
            assert listed[0] == hv_hex and set(listed) == {hv_hex, v1_hex, v2_hex}
            assert await tab.text("#visors li .tag") == ["this hypervisor"]
            assert await tab.evaluate("document.cookie") == ""  # HttpOnly: not for scripts
            # the overview: key, version, uptime, the dmsg server and the session's latency
            await tab.until(f"{q('#ov-pk')}.textContent === {json.dumps(hv_hex)}")
            await tab.until(f"{q('#dmsg tbody tr[data-server]')} !== null")
            [server_row] = await tab.text("#dmsg tbody tr")
            assert server_row.startswith(sky.dmsg.servers[0].pk.hex()) and "ms" in server_row
            assert (await tab.text("#ov-version"))[0]
            assert "dmsg" in (await tab.text("#ov-types"))[0]
            await shot(tab, "2-logged-in")

            # 4. a transport from visor 0 to visor 1, added with the page's form
            assert await tab.text("#transports tbody tr") == ["no transports"]
            await tab.run(
                f"const f = {q('#add-transport')};"
                f'f.pk.value = {json.dumps(v1_hex)}; f.type.value = "dmsg"; f.requestSubmit();'
            )
            row = f'#transports tr[data-remote="{v1_hex}"]'
            await tab.until(f"{q(row)} !== null")
            assert (await tab.text(f"{row} .type")) == ["dmsg"]
            tp_id = await tab.evaluate(f"{q(row)}.dataset.id")
            # both visors hold it
            assert uuid.UUID(tp_id) in hv.tm.transports
            await v1.tm.wait_for(uuid.UUID(tp_id))
            # and visor 1's list on the page shows it, towards visor 0
            v1_item = f'#visors li[data-pk="{v1_hex}"]'
            await tab.run(f"{q(v1_item)}.click();")
            await tab.until(f"{q('#visor')}.dataset.pk === {json.dumps(v1_hex)}")
            back = f'#transports tr[data-remote="{hv_hex}"]'
            await tab.until(f"{q(back)} !== null")
            assert await tab.evaluate(f"{q(back)}.dataset.id") == tp_id
            assert await tab.text("#ov-pk") == [v1_hex]
            # latency measured, charted over time: one line for this transport
            line = f'#chart polyline[data-id="{tp_id}"]'
            await tab.until(f"{q(line)} !== null")
            await tab.until(f"{q(back + ' .latency')}.textContent.endsWith(' ms')")
            assert await tab.text("#legend li") == [f"dmsg → {hv_hex[:8]}…{hv_hex[-4:]}"]
            await shot(tab, "3-transport-both-ends")

            # 5. skychat on visor 1: started from the page
            app = '#apps tr[data-app="skychat"]'
            await tab.until(f"{q(app)} !== null")
            assert await tab.evaluate(f"{q(app)}.dataset.state") == "stopped"
            await tab.run(f"{q(app + ' button.start')}.click();")
            await tab.until(f'{q(app)}.dataset.state === "running"')
            assert v1.launcher.status("skychat").state is AppState.RUNNING
            # its log, opened from the page
            await tab.run(f"{q(app + ' button.logs')}.click();")
            await tab.until(f"{q('#app-log')}.textContent.includes('skychat on routing port 1')")
            assert await tab.text("#app-log-title") == ["Log of skychat"]
            await shot(tab, "4-app-running-log")

            # 6. and stopped from the page
            await tab.run(f"{q(app + ' button.stop')}.click();")
            await tab.until(f'{q(app)}.dataset.state === "stopped"')
            assert v1.launcher.status("skychat").state is AppState.STOPPED
            assert await tab.text(f"{app} button.start") == ["Start"]
            # autostart, switched on from the page, is the launcher's (and the config's) now
            started = int(await tab.evaluate("document.body.dataset.started"))
            await tab.run(f"{q(app + ' input.autostart')}.click();")
            await tab.until(ACTIONS_DONE.format(started))
            assert await tab.text("#error") == [""]
            assert await tab.evaluate(f"{q(app + ' input.autostart')}.checked") is True
            assert v1.launcher.status("skychat").auto_start
            assert [a.auto_start for a in v1.cfg.launcher.apps] == [True]
            # the visor's own log is on the page too
            assert (await tab.text("#visor-log"))[0].strip()
            await shot(tab, "5-app-stopped")

            # the transport removed from the page
            await tab.run(f"{q(back + ' button.remove')}.click();")
            await tab.until(f"{q(back)} === null")
            assert await tab.text("#transports tbody tr") == ["no transports"]
            assert uuid.UUID(tp_id) not in v1.tm.transports

            # 7. a visor that names this hypervisor starts, and joins the list
            v3 = await sky.add_visor()
            joined = f'#visors li[data-pk="{v3.pk.hex()}"]'
            await tab.until(f"{q(joined)} !== null")
            await tab.until(f"{q('#visors')}.children.length === 4")
            [sub] = await tab.text(f"{joined} .sub")
            assert "transports" in sub and "unreachable" not in sub
            await shot(tab, "6-visor-joined")

            # 8. log out: the form again, and the API closed
            await tab.run(f"{q('#logout')}.click();")
            await tab.until('document.body.dataset.state === "login"')
            assert await tab.evaluate(HIDDEN) is True
            assert await fetch_status(tab, "/api/visors") == 401
            await shot(tab, "7-logged-out")


async def press(tab: Tab, key: str, *, text: str | None = None, modifiers: int = 0) -> None:
    """One key pressed and released, as a keyboard sends it (CDP ``Input.dispatchKeyEvent``)."""
    down = {"key": key, "modifiers": modifiers}
    if key == "Enter":
        down.update(code="Enter", windowsVirtualKeyCode=13, text="\r")
    elif text is not None:
        down["text"] = text
    await tab.call("Input.dispatchKeyEvent", type="keyDown", **down)
    await tab.call("Input.dispatchKeyEvent", type="keyUp", key=key, modifiers=modifiers)


async def type_line(tab: Tab, line: str) -> None:
    for ch in line:
        await press(tab, ch, text=ch)
    await press(tab, "Enter")


TERM = "document.getElementById('term')"


@pytest.mark.skipif(
    CHROMIUM is None, reason="chromium is not installed (make test installs it as root)"
)
async def test_a_shell_on_a_remote_visor_in_the_page(tmp_path: Path) -> None:
    """Visor 1's shell from the page: opened from its Terminal panel, keys typed as a keyboard
    types them, output drawn in the panel; a smaller panel resizes the shell; Ctrl-C stops a
    command; closing the panel ends the shell on the visor."""
    SHOTS.mkdir(parents=True, exist_ok=True)

    def configure(i: int, cfg: VisorConfig) -> None:
        cfg.launcher.apps = []
        if i == 0:
            cfg.hypervisor.password = PASSWORD

    async with (
        hypervisor_net(tmp_path, configure=configure) as sky,
        Browser.launch() as browser,
    ):
        hv, v1, _ = sky.visors
        assert hv.hypervisor is not None and v1.pty_host is not None
        v1_hex = v1.pk.hex()
        async with asyncio.timeout(150):
            tab = await browser.open(f"{hv.hypervisor.url}/?poll=1000")
            await tab.call(
                "Emulation.setDeviceMetricsOverride",
                width=1280,
                height=1500,
                deviceScaleFactor=1,
                mobile=False,
            )
            await tab.until('document.body.dataset.state === "login"')
            await tab.run(
                f"const f = {q('#login-form')};"
                f"f.password.value = {json.dumps(PASSWORD)}; f.requestSubmit();"
            )
            await tab.until('document.body.dataset.state === "dashboard"')
            v1_item = f'#visors li[data-pk="{v1_hex}"]'
            await tab.until(f"{q(v1_item)} !== null")
            await tab.run(f"{q(v1_item)}.click();")
            await tab.until(f"{q('#visor')}.dataset.pk === {json.dumps(v1_hex)}")

            # the panel opens a shell on visor 1, at the panel's size in character cells
            await tab.run(f"{q('#term-open')}.click();")
            await tab.until(f'{TERM}.dataset.state === "open"')
            assert await tab.evaluate(f"{TERM}.dataset.pk") == v1_hex
            [status] = await tab.text("#term-status")
            assert status.startswith("shell on ")
            rows = int(await tab.evaluate(f"{TERM}.dataset.rows"))
            cols = int(await tab.evaluate(f"{TERM}.dataset.cols"))
            assert rows >= 10 and cols >= 60
            assert v1.pty_host.shells_started == 1
            [pid] = v1.pty_host.live_pids

            # typed as a keyboard types it: the output is drawn in the panel
            await tab.run(f"{TERM}.focus();")
            await type_line(tab, "echo typed-$((2+3))")
            await tab.until(f"{TERM}.textContent.includes('typed-5')")
            await type_line(tab, "stty size")
            await tab.until(f"{TERM}.textContent.includes('{rows} {cols}')")

            # a narrower page: the panel sends its new size, and the shell has it
            await tab.call(
                "Emulation.setDeviceMetricsOverride",
                width=1000,
                height=1500,
                deviceScaleFactor=1,
                mobile=False,
            )
            await tab.until(f"Number({TERM}.dataset.cols) < {cols}")
            narrow = int(await tab.evaluate(f"{TERM}.dataset.cols"))
            await type_line(tab, "clear; stty size")
            await tab.until(f"{TERM}.textContent.includes('{rows} {narrow}')")
            assert "typed-5" not in "".join(await tab.text("#term"))  # the screen was cleared

            # Ctrl-C stops a command; the shell takes the next line
            await type_line(tab, "sleep 100")
            await press(tab, "c", text="c", modifiers=2)
            await type_line(tab, "echo after-$((1+1))")
            await tab.until(f"{TERM}.textContent.includes('after-2')")
            await shot(tab, "8-terminal")

            # closing the panel ends the shell on the visor
            await tab.run(f"{q('#term-close')}.click();")
            await tab.until(f'{TERM}.dataset.state === "closed"')
            await gone(pid)

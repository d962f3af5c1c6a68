"""The skychat page in a real browser: headless Chromium (Debian's package; ``make test``
installs it when run as root) loads B's page after A's message reached B, and A's page after B's
reply reached A; the text is asserted in each dumped DOM and a screenshot of each page is saved
under ``artifacts/screenshots/``.

The first test runs Chromium once per URL (``--dump-dom``, ``--screenshot``): the sending goes
through the JSON endpoint the page's own form posts to, and each page is loaded after the chat's
own subscription saw the message; the page renders the conversation on the server, so the DOM
shows it at load. The second keeps one Chromium up, driven over the DevTools protocol
(:mod:`tests.integration._cdp`), with both pages open: A's form sends, B's page shows it from
its event stream without a reload, B's form answers, and the page shows the server's 413, 400
and 502 errors. Each waits inside the page for the DOM to change, never on a timer.
"""

from __future__ import annotations

import asyncio
import html
import json
import tempfile

import pytest

from skywire.apps.skychat import Direction
from skywire.cipher import SecKey
from tests.integration._cdp import Browser
from tests.integration._skychat import chat_net
from tests.integration.test_browser import CHROMIUM, FLAGS, SHOTS

pytestmark = pytest.mark.timeout(180)


async def chromium(url: str, *extra: str) -> str:
    assert CHROMIUM is not None
    with tempfile.TemporaryDirectory() as profile:
        proc = await asyncio.create_subprocess_exec(
            CHROMIUM,
            *FLAGS,
            f"--user-data-dir={profile}",
            *extra,
            url,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.DEVNULL,
        )
        out, _ = await asyncio.wait_for(proc.communicate(), 60)
    return out.decode("utf-8", "replace")


async def page(url: str, label: str) -> str:
    """The DOM of ``url`` after load, and its screenshot saved as ``skychat-<label>.png``."""
    dom = await chromium(url, "--dump-dom")
    shot = SHOTS / f"skychat-{label}.png"
    shot.unlink(missing_ok=True)
    await chromium(url, f"--screenshot={shot}")
    assert shot.exists() and shot.stat().st_size > 1000, label
    return dom


@pytest.mark.skipif(
    CHROMIUM is None, reason="chromium is not installed (make test installs it as root)"
)
async def test_both_pages_show_the_conversation_in_a_real_browser() -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    hello = "Hello B, this is A over two hops <b>not bold</b> ✓"
    reply = "Hi A! B here, got it."
    async with chat_net() as cn:
        assert cn.a.url is not None and cn.b.url is not None
        a_hex, b_hex = cn.a_pk.hex(), cn.b_pk.hex()

        async with cn.b.subscribe() as b_new:
            await cn.send(cn.a, cn.b_pk, hello)
            assert (await b_new.get()).text == hello

        dom_b = await page(f"{cn.b.url}?peer={a_hex}", "b-received")
        assert f'data-me="{b_hex}"' in dom_b
        assert f'<li class="peer active connected" data-pk="{a_hex}">' in dom_b
        assert f'<span class="text">{html.escape(hello, quote=False)}</span>' in dom_b
        assert '<li class="msg in"' in dom_b and '<li class="msg out"' not in dom_b
        assert "<b>not bold</b>" not in dom_b  # text, never markup
        assert f'value="{a_hex}"' in dom_b  # the form is addressed to A

        async with cn.a.subscribe() as a_new:
            await cn.send(cn.b, cn.a_pk, reply)
            got = await a_new.get()
            assert got.direction is Direction.IN and got.text == reply

        dom_a = await page(f"{cn.a.url}?peer={b_hex}", "a-replied")
        assert f'data-me="{a_hex}"' in dom_a
        escaped = html.escape(hello, quote=False)
        out_at = dom_a.index(f'<span class="text">{escaped}</span>')
        in_at = dom_a.index(f'<span class="text">{reply}</span>')
        assert out_at < in_at  # oldest first
        assert dom_a.count('<li class="msg out"') == 1 and dom_a.count('<li class="msg in"') == 1
        assert f"Conversation with {b_hex}" in dom_a
        assert f'<li class="peer active connected" data-pk="{b_hex}">' in dom_a

        # the page with no peer picked lists the conversation and says what to do
        dom_index = await page(cn.a.url, "a-index")
        assert f'data-pk="{b_hex}"' in dom_index
        assert "Pick a peer, or send to a public key below." in dom_index


def has_message(direction: str, text: str) -> str:
    """A JS condition: the conversation shown has a ``direction`` message with ``text``."""
    selector = json.dumps(f"#messages li.msg.{direction} .text")
    wanted = json.dumps(text)
    return f"[...document.querySelectorAll({selector})].some((e) => e.textContent === {wanted})"


def type_and_send(text: str, recipient: str | None = None) -> str:
    """JS statements: fill the page's form as a user would and submit it."""
    to = f"form.recipient.value = {json.dumps(recipient)};" if recipient is not None else ""
    return (
        'const form = document.getElementById("send");'
        f"{to} form.message.value = {json.dumps(text)}; form.requestSubmit();"
    )


@pytest.mark.skipif(
    CHROMIUM is None, reason="chromium is not installed (make test installs it as root)"
)
async def test_the_pages_form_sends_and_the_other_page_updates_live() -> None:
    """Both pages open at once in one browser: A's form sends, B's page shows it from its event
    stream without a reload; B's form answers; an oversize message shows the server's 413."""
    SHOTS.mkdir(parents=True, exist_ok=True)
    hello, reply = "typed into A's page", "typed into B's page ✓"
    async with chat_net() as cn, Browser.launch() as browser:
        assert cn.a.url is not None and cn.b.url is not None
        a_hex, b_hex = cn.a_pk.hex(), cn.b_pk.hex()
        async with asyncio.timeout(60):
            a_tab = await browser.open(f"{cn.a.url}?peer={b_hex}")
            b_tab = await browser.open(f"{cn.b.url}?peer={a_hex}")
            for tab in (a_tab, b_tab):  # each page's event stream is open
                await tab.until('document.body.dataset.live === "1"')

            await a_tab.run(type_and_send(hello))
            await b_tab.until(has_message("in", hello))  # live, from B's event stream
            await a_tab.until(has_message("out", hello))
            assert await b_tab.text(f'#peers li[data-pk="{a_hex}"] .preview') == [hello]

            await b_tab.run(type_and_send(reply))
            await a_tab.until(has_message("in", reply))
            assert await a_tab.text("#messages li.msg .text") == [hello, reply]
            assert await b_tab.text("#messages li.msg .text") == [hello, reply]

            await a_tab.run(type_and_send("x" * 5000))  # past maxlength: set by script
            await a_tab.until('document.getElementById("error").textContent.includes("413")')
            [error] = await a_tab.text("#error")
            assert error.startswith("Not sent (413): message is 5000 bytes")

            await a_tab.run(type_and_send("hello?", recipient="not-a-key"))
            await a_tab.until('document.getElementById("error").textContent.includes("(400)")')
            [error] = await a_tab.text("#error")
            assert "not a public key" in error

            nobody = SecKey.generate().pubkey()
            await a_tab.run(type_and_send("anyone there?", recipient=nobody.hex()))
            await a_tab.until('document.getElementById("error").textContent.includes("(502)")')
            [error] = await a_tab.text("#error")
            assert error.startswith(f"Not sent (502): cannot reach {nobody}")

            await a_tab.screenshot(SHOTS / "skychat-a-live.png")
            await b_tab.screenshot(SHOTS / "skychat-b-live.png")
        assert cn.a.stats.sent == 1 and cn.b.stats.sent == 1
        assert (SHOTS / "skychat-a-live.png").stat().st_size > 1000

"""The skychat web page: one self-contained HTML document (inline CSS and script, no external
asset), rendered from the chat's state, so that the page shows the conversations as they are
when it loads, even before its script runs.

The page lists the peers (the most recently active first, a dot when a route is open), shows the
selected conversation (``/?peer=<pk hex>``), and has a form to send a message to any public
key. Its script posts the form to ``message`` as JSON, shows the error body when the answer is
not 2xx, and keeps the page live from the ``sse`` event stream (``message`` events for what
arrives, ``sent`` events for what this visor sent; ``<body data-live="1">`` while the stream is
open); after a lost stream it reloads ``conversations`` and fills the gaps. Every text from
the network is escaped here and set with ``textContent`` there (upstream's page inserts it as
HTML: ``index.html`` ``_showMessage``).
"""

from __future__ import annotations

import datetime
import html
from collections.abc import Sequence

from skywire.apps.skychat.codec import MAX_MESSAGE_BYTES
from skywire.apps.skychat.history import ChatMessage, Conversation
from skywire.cipher import PubKey

__all__ = ["CONTENT_SECURITY_POLICY", "render_page"]

CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; "
    "connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'self'; "
    "frame-ancestors 'none'"
)
"""No asset from elsewhere, no framing by another site; fetch and the event stream go home."""

STYLE = """
* { box-sizing: border-box; }
body { margin: 0; display: flex; height: 100vh; font: 14px/1.4 system-ui, sans-serif;
  color: #1d2330; background: #eef1f6; }
aside { width: 300px; background: #1d2330; color: #e8ecf4; display: flex; flex-direction: column; }
aside h1 { font-size: 18px; margin: 14px 16px 4px; }
#me { font: 11px monospace; color: #9aa6bd; margin: 0 16px 12px; word-break: break-all; }
#peers { list-style: none; margin: 0; padding: 0; overflow-y: auto; flex: 1; }
#peers li a { display: block; padding: 8px 16px; color: inherit; text-decoration: none;
  border-left: 3px solid transparent; }
#peers li.active a { background: #2c3547; border-left-color: #5b8def; }
#peers .pk { font: 12px monospace; }
#peers .preview { display: block; color: #9aa6bd; white-space: nowrap; overflow: hidden;
  text-overflow: ellipsis; }
#peers .dot { color: #4caf50; visibility: hidden; }
#peers li.connected .dot { visibility: visible; }
#peers .unread { background: #5b8def; border-radius: 8px; padding: 0 6px; font-size: 11px; }
#peers .unread:empty { display: none; }
main { flex: 1; display: flex; flex-direction: column; min-width: 0; }
header { padding: 12px 16px; background: #fff; border-bottom: 1px solid #d5dbe6;
  font: 12px monospace; word-break: break-all; }
#messages { list-style: none; margin: 0; padding: 16px; flex: 1; overflow-y: auto; }
#messages li { max-width: 70%; margin: 6px 0; padding: 6px 10px; border-radius: 8px;
  background: #fff; word-wrap: break-word; white-space: pre-wrap; }
#messages li.out { margin-left: auto; background: #d7e6ff; }
#messages li time { display: block; font-size: 10px; color: #7a8599; text-align: right; }
#messages li.note { background: none; color: #7a8599; max-width: none; text-align: center; }
form#send { display: flex; gap: 8px; padding: 12px 16px; background: #fff;
  border-top: 1px solid #d5dbe6; }
form#send input { padding: 6px 8px; border: 1px solid #c3cad8; border-radius: 4px; }
#recipient { width: 32%; font: 12px monospace; }
#message { flex: 1; }
#error { color: #b3261e; margin: 0; padding: 8px 16px 0; background: #fff; }
#error:empty { display: none; }
body[data-live] #title::after { content: "  ● live"; color: #4caf50; }
"""

SCRIPT = """
(() => {
  const body = document.body;
  const selected = body.dataset.peer || "";
  const list = document.getElementById("messages");
  const peers = document.getElementById("peers");
  const form = document.getElementById("send");
  const errorBox = document.getElementById("error");
  const pad = (n) => String(n).padStart(2, "0");
  const hhmm = (at) => {
    const d = new Date(at * 1000);
    return pad(d.getHours()) + ":" + pad(d.getMinutes());
  };
  const short = (pk) => pk.slice(0, 8) + "…" + pk.slice(-6);

  function addMessage(m) {
    if (m.peer !== selected || list.querySelector('li[data-seq="' + m.seq + '"]')) return;
    const li = document.createElement("li");
    li.className = "msg " + m.direction;
    li.dataset.seq = m.seq;
    const text = document.createElement("span");
    text.className = "text";
    text.textContent = m.message;
    const time = document.createElement("time");
    time.textContent = hhmm(m.at);
    li.append(text, time);
    const later = [...list.querySelectorAll("li[data-seq]")]
      .find((x) => Number(x.dataset.seq) > m.seq);
    list.insertBefore(li, later || null);
    const empty = document.getElementById("empty");
    if (empty) empty.remove();
    list.scrollTop = list.scrollHeight;
  }

  function touchPeer(m) {
    let li = peers.querySelector('li[data-pk="' + m.peer + '"]');
    if (!li) {
      li = document.createElement("li");
      li.className = "peer";
      li.dataset.pk = m.peer;
      const a = document.createElement("a");
      a.href = "?peer=" + m.peer;
      a.title = m.peer;
      const pk = document.createElement("span");
      pk.className = "pk";
      pk.textContent = short(m.peer) + " ";
      const dot = document.createElement("span");
      dot.className = "dot";
      dot.textContent = "●";
      const unread = document.createElement("span");
      unread.className = "unread";
      const preview = document.createElement("span");
      preview.className = "preview";
      a.append(pk, dot, unread, preview);
      li.append(a);
    }
    li.classList.add("connected");
    li.querySelector(".preview").textContent = m.message;
    if (m.peer !== selected && m.direction === "in") {
      const unread = li.querySelector(".unread");
      unread.textContent = String(Number(unread.textContent || "0") + 1);
    }
    peers.prepend(li);
  }

  function onEvent(ev) {
    const m = JSON.parse(ev.data);
    addMessage(m);
    touchPeer(m);
  }

  async function resync() {
    const r = await fetch("conversations" + (selected ? "?peer=" + selected : ""));
    if (!r.ok) return;
    const state = await r.json();
    for (const c of state.conversations) for (const m of c.messages) addMessage(m);
  }

  const source = new EventSource("sse");
  let lost = false;
  source.addEventListener("message", onEvent);
  source.addEventListener("sent", onEvent);
  source.onerror = () => { lost = true; delete body.dataset.live; };
  source.onopen = () => {
    body.dataset.live = "1";
    if (lost) { lost = false; resync(); }
  };

  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    errorBox.textContent = "";
    const recipient = form.recipient.value.trim().toLowerCase();
    const message = form.message.value;
    if (!recipient || !message) return;
    const button = form.querySelector("button");
    button.disabled = true;
    try {
      const r = await fetch("message", {
        method: "POST",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify({ recipient, message }),
      });
      const answer = await r.json().catch(() => ({ error: r.statusText }));
      if (!r.ok) {
        errorBox.textContent = "Not sent (" + r.status + "): " + answer.error;
        return;
      }
      form.message.value = "";
      if (recipient !== selected) { location.search = "?peer=" + recipient; return; }
      addMessage(answer.message);
      touchPeer(answer.message);
    } catch (err) {
      errorBox.textContent = "Not sent: " + err;
    } finally {
      button.disabled = false;
    }
  });
})();
"""


def _e(text: str) -> str:
    return html.escape(text, quote=True)


def _short(pk: PubKey) -> str:
    text = pk.hex()
    return f"{text[:8]}…{text[-6:]}"


def _hhmm(at: float) -> str:
    return datetime.datetime.fromtimestamp(at).strftime("%H:%M")


def _message_li(m: ChatMessage) -> str:
    return (
        f'<li class="msg {m.direction.value}" data-seq="{m.seq}">'
        f'<span class="text">{_e(m.text)}</span><time>{_hhmm(m.at)}</time></li>'
    )


def _peer_li(c: Conversation, selected: PubKey | None) -> str:
    pk = c.peer.hex()
    classes = ["peer"]
    if c.peer == selected:
        classes.append("active")
    if c.connected:
        classes.append("connected")
    last = c.messages[-1].text if c.messages else ""
    return (
        f'<li class="{" ".join(classes)}" data-pk="{pk}"><a href="?peer={pk}" title="{pk}">'
        f'<span class="pk">{_short(c.peer)} </span><span class="dot">●</span>'
        f'<span class="unread"></span><span class="preview">{_e(last)}</span></a></li>'
    )


def _conversation(c: Conversation | None) -> str:
    if c is None:
        return '<li class="note" id="empty">Pick a peer, or send to a public key below.</li>'
    items = []
    if c.dropped:
        items.append(f'<li class="note">{c.dropped} older messages are no longer kept.</li>')
    items.extend(_message_li(m) for m in c.messages)
    if not c.messages:
        items.append('<li class="note" id="empty">No messages yet.</li>')
    return "".join(items)


def render_page(
    me: PubKey | None,
    conversations: Sequence[Conversation],
    selected: PubKey | None = None,
    *,
    error: str | None = None,
) -> str:
    """The whole page; ``selected`` is the peer whose conversation is shown."""
    shown: Conversation | None = None
    if selected is not None:
        shown = next((c for c in conversations if c.peer == selected), Conversation(selected, ()))
    peers = "".join(_peer_li(c, selected) for c in conversations)
    peer_attr = selected.hex() if selected is not None else ""
    me_hex = me.hex() if me is not None else ""
    me_text = f"You are {me_hex}" if me is not None else "This visor's key is not known"
    header = f"Conversation with {peer_attr}" if peer_attr else "No conversation selected"
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>Skychat</title><style>{STYLE}</style></head>"
        f'<body data-me="{me_hex}" data-peer="{peer_attr}">'
        f'<aside><h1>Skychat</h1><p id="me" title="this visor">{me_text}</p>'
        f'<ul id="peers">{peers}</ul></aside>'
        f'<main><header id="title">{_e(header)}</header>'
        f'<ul id="messages" data-peer="{peer_attr}">{_conversation(shown)}</ul>'
        f'<p id="error" role="alert">{_e(error or "")}</p>'
        '<form id="send" autocomplete="off">'
        f'<input id="recipient" name="recipient" placeholder="recipient public key (hex)" '
        f'value="{peer_attr}" required>'
        f'<input id="message" name="message" placeholder="Write your message" '
        f'maxlength="{MAX_MESSAGE_BYTES}" required autofocus>'
        '<button type="submit">Send</button></form></main>'
        f"<script>{SCRIPT}</script></body></html>\n"
    )

"""skychat's sans-I/O parts: the message bytes on a route (ours and upstream's raw ones), the
bounded history, the subscriptions, the page and the event-stream lines. No socket, no sleep."""

from __future__ import annotations

import html
import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from skywire.apps.skychat import (
    MAX_MESSAGE_BYTES,
    ChatMessage,
    Conversation,
    DialPolicy,
    Direction,
    History,
    MessageDecoder,
    MessageError,
    MessageTooLongError,
    SkychatClosedError,
    SubscriptionEndedError,
    check_message,
    encode_message,
)
from skywire.apps.skychat.page import render_page
from skywire.apps.skychat.updates import Updates
from skywire.apps.skychat.web import host_name, message_json, parse_peer, sse_event
from skywire.cipher import SecKey
from skywire.wire.noise_frames import MAX_PLAINTEXT

PK_A = SecKey.generate().pubkey()
PK_B = SecKey.generate().pubkey()


# ------------------------------------------------------------------ encoding
def test_a_message_is_its_utf8_and_a_newline() -> None:
    assert encode_message("hello") == b"hello\n"
    assert encode_message("ünï ✓") == "ünï ✓\n".encode()


def test_the_longest_message_fills_exactly_one_noise_frame() -> None:
    assert MAX_PLAINTEXT == 4096 - 2 - 24  # upstream noise maxPayloadSize
    assert MAX_MESSAGE_BYTES == 4069
    assert len(encode_message("x" * MAX_MESSAGE_BYTES)) == MAX_PLAINTEXT
    with pytest.raises(MessageTooLongError) as caught:
        encode_message("x" * (MAX_MESSAGE_BYTES + 1))
    assert caught.value.status == 413 and caught.value.limit == MAX_MESSAGE_BYTES
    assert caught.value.size == MAX_MESSAGE_BYTES + 1
    # counted in bytes, not characters: 2035 × "é" is 4070 bytes
    assert len(check_message("é" * 2034)) == 4068
    with pytest.raises(MessageTooLongError):
        encode_message("é" * 2035)


@pytest.mark.parametrize(
    ("text", "why"),
    [("", "empty"), ("two\nlines", "one line"), ("\n", "one line"), ("\ud800", "not valid text")],
)
def test_a_message_that_cannot_be_sent_says_why(text: str, why: str) -> None:
    with pytest.raises(MessageError, match=why) as caught:
        encode_message(text)
    assert caught.value.status == 400
    assert isinstance(caught.value, ValueError)


# ------------------------------------------------------------------ decoding
def test_each_newline_ends_a_message_and_empty_lines_are_skipped() -> None:
    d = MessageDecoder()
    assert d.receive_data(b"hello\nworld\n") == ["hello", "world"]
    assert d.receive_data(b"\n\nagain\n") == ["again"]
    assert d.pending == 0


def test_upstreams_raw_write_is_one_message_per_read() -> None:
    """A Go peer writes the text alone; what one read brings is one message."""
    d = MessageDecoder()
    assert d.receive_data(b"hello from Go") == ["hello from Go"]
    assert d.receive_data(b"second") == ["second"]
    # two that arrive together are one (the documented limit)
    assert d.receive_data(b"onetwo") == ["onetwo"]
    # a newline inside one splits it (the Go page cannot type one)
    assert d.receive_data(b"a\nb") == ["a", "b"]


def test_a_full_read_keeps_its_tail_for_the_next() -> None:
    d = MessageDecoder()
    assert d.receive_data(b"first\nsec", end_of_read=False) == ["first"]
    assert d.pending == 3
    assert d.receive_data(b"ond\n", end_of_read=False) == ["second"]
    assert d.receive_data(b"tail", end_of_read=False) == []
    assert d.end_of_stream() == ["tail"]
    assert d.end_of_stream() == []


def test_ours_fed_one_byte_at_a_time_gives_the_same_messages() -> None:
    texts = ["héllo", "wörld ✓", "x" * 300, "🙂 emoji"]
    data = b"".join(encode_message(t) for t in texts)
    d = MessageDecoder()
    got: list[str] = []
    for i in range(len(data)):
        got += d.receive_data(data[i : i + 1], end_of_read=False)
    assert got == texts and d.pending == 0


def test_a_long_run_without_newline_is_cut_on_character_boundaries() -> None:
    d = MessageDecoder(max_message=5)
    assert d.receive_data(b"abcdefghijkl") == ["abcde", "fghij", "kl"]
    # "é" is two bytes: a 5-byte cut would split the third one
    assert d.receive_data("éééé".encode(), end_of_read=False) == ["éé"]
    assert d.end_of_stream() == ["éé"]
    with pytest.raises(ValueError):
        MessageDecoder(max_message=3)


def test_bytes_that_are_not_utf8_become_replacement_characters() -> None:
    assert MessageDecoder().receive_data(b"bad \xff byte\n") == ["bad \ufffd byte"]


messages = st.lists(
    st.text(st.characters(blacklist_characters="\n", blacklist_categories=["Cs"]), min_size=1)
    .filter(lambda t: len(t.encode()) <= MAX_MESSAGE_BYTES)
    .filter(lambda t: t.strip("\n") != ""),
    max_size=8,
)


@given(messages, st.lists(st.integers(min_value=1, max_value=50), max_size=20))
def test_any_messages_cut_anywhere_come_back_whole(texts: list[str], cuts: list[int]) -> None:
    data = b"".join(encode_message(t) for t in texts)
    d = MessageDecoder()
    got: list[str] = []
    off = 0
    for size in cuts:
        got += d.receive_data(data[off : off + size], end_of_read=False)
        off += size
    got += d.receive_data(data[off:], end_of_read=True)
    got += d.end_of_stream()
    assert got == texts


# ------------------------------------------------------------------ history
def test_history_keeps_per_peer_and_drops_the_oldest() -> None:
    h = History(per_peer=3, peers=10)
    for i in range(5):
        h.add(PK_A, Direction.IN, f"m{i}", now=100.0 + i)
    conv = h.conversation(PK_A)
    assert [m.text for m in conv.messages] == ["m2", "m3", "m4"]
    assert conv.dropped == 2 and [m.seq for m in conv.messages] == [3, 4, 5]
    assert len(h) == 3 and conv.last_at == 104.0


def test_history_drops_the_quietest_conversation_past_its_peer_bound() -> None:
    h = History(per_peer=5, peers=2)
    c = SecKey.generate().pubkey()
    h.add(PK_A, Direction.OUT, "to a", 1.0)
    h.add(PK_B, Direction.IN, "from b", 2.0)
    h.add(PK_A, Direction.IN, "from a", 3.0)  # A is now the most recent
    h.add(c, Direction.IN, "from c", 4.0)  # B, the quietest, goes
    assert h.peers() == [c, PK_A]
    assert h.dropped_conversations == 1
    assert h.conversation(PK_B) == Conversation(PK_B, ())
    assert [m.text for m in h.conversation(PK_A).messages] == ["to a", "from a"]
    with pytest.raises(ValueError):
        History(per_peer=0)


# ------------------------------------------------------------------ subscriptions
def _msg(seq: int, text: str = "t", direction: Direction = Direction.IN) -> ChatMessage:
    return ChatMessage(seq, PK_A, direction, text, 1.0)


async def test_a_subscription_gets_what_is_published_after_it_and_ends_on_close() -> None:
    hub = Updates()
    hub.publish(_msg(1))  # before anyone listens: nobody gets it
    sub = hub.subscribe(maxsize=4)
    hub.publish(_msg(2))
    hub.publish(_msg(3))
    assert (await sub.get()).seq == 2
    hub.close()
    with pytest.raises(SubscriptionEndedError, match="chat closed"):
        await sub.get()
    with pytest.raises(SubscriptionEndedError):
        await sub.get()
    with pytest.raises(SkychatClosedError):
        hub.subscribe()
    assert len(hub) == 0


async def test_a_subscriber_that_falls_behind_is_ended_not_grown() -> None:
    hub = Updates()
    slow = hub.subscribe(maxsize=2)
    async with hub.subscribe(maxsize=10) as fast:
        for i in range(3):
            hub.publish(_msg(i))
        assert slow.overflowed and slow.ended
        with pytest.raises(SubscriptionEndedError, match="fell behind"):
            await slow.get()
        assert [(await fast.get()).seq for _ in range(3)] == [0, 1, 2]
        assert len(hub) == 1
    assert len(hub) == 0  # leaving the block unsubscribed


# ------------------------------------------------------------------ web shapes and the page
def test_an_incoming_event_carries_upstreams_fields_and_a_sent_one_is_named() -> None:
    incoming = ChatMessage(7, PK_B, Direction.IN, "hi\nthere", 12.5)
    line = sse_event(incoming, PK_A).decode()
    assert line.startswith("data: ") and line.endswith("\n\n") and line.count("\n") == 2
    data = json.loads(line[len("data: ") :])
    assert data["sender"] == PK_B.hex() and data["message"] == "hi\nthere"
    assert data == message_json(incoming, PK_A)
    assert data["seq"] == 7 and data["direction"] == "in" and data["at"] == 12.5
    sent = sse_event(ChatMessage(8, PK_B, Direction.OUT, "yo", 13.0), PK_A).decode()
    assert sent.startswith("event: sent\ndata: ")
    assert json.loads(sent.split("data: ", 1)[1])["sender"] == PK_A.hex()


@pytest.mark.parametrize(
    ("header", "name"),
    [
        ("127.0.0.1:8001", "127.0.0.1"),
        ("LocalHost:8001", "localhost"),
        ("localhost", "localhost"),
        ("[::1]:8001", "::1"),
        ("::1", "::1"),
        ("evil.test:8001", "evil.test"),
        ("127.0.0.1:80/", "127.0.0.1"),
    ],
)
def test_host_name_reads_a_host_header(header: str, name: str) -> None:
    assert host_name(header) == name


def test_parse_peer_takes_hex_in_any_case_and_refuses_the_rest() -> None:
    assert parse_peer(PK_A.hex().upper()) == PK_A
    for bad in ["", "02", "zz" * 33, "00" * 33]:
        with pytest.raises(ValueError):
            parse_peer(bad)


def test_the_page_escapes_what_peers_send_and_loads_nothing_from_elsewhere() -> None:
    evil = '<script>alert("x")</script><img src=x onerror=alert(1)>'
    conv = Conversation(PK_B, (ChatMessage(1, PK_B, Direction.IN, evil, 1.0),), connected=True)
    page = render_page(PK_A, [conv], PK_B)
    assert evil not in page
    assert html.escape(evil) in page
    rest = page.replace(html.escape(evil), "")  # the page less the two escaped copies
    assert "<img" not in rest and "src=" not in rest and "http" not in rest
    assert page.count("<script>") == 1  # ours, inline
    assert f'data-me="{PK_A.hex()}"' in page and f'data-peer="{PK_B.hex()}"' in page
    assert f'<li class="peer active connected" data-pk="{PK_B.hex()}">' in page


def test_the_page_without_a_selection_or_a_key_still_renders() -> None:
    page = render_page(None, [], None, error="recipient <x> is bad")
    assert "This visor's key is not known" in page
    assert "Pick a peer" in page and "recipient &lt;x&gt; is bad" in page
    dropped = Conversation(PK_B, (), dropped=3)
    assert "3 older messages are no longer kept." in render_page(PK_A, [dropped], PK_B)


def test_the_dial_policy_is_checked_and_backs_off() -> None:
    policy = DialPolicy(attempts=4, initial=0.05, factor=2.0, wait=5.0)
    assert [policy.delay(n) for n in range(4)] == [0.0, 0.05, 0.1, 0.2]
    for bad in ({"attempts": 0}, {"factor": 0.5}, {"wait": 0}, {"initial": -1}):
        with pytest.raises(ValueError):
            DialPolicy(**bad)

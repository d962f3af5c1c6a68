"""skychat over a real 2-hop route on loopback: skychat on visor A (0) and B (2), visor 1 between.

What a user sees: a message sent from A's page (its JSON endpoint) is in B's conversation and
B's event stream; B's reply reaches A on the same route; bad requests get a JSON error and send
nothing (unknown key 502, bad key or JSON 400, too long 413, another site's page 403); a route
that broke is redialled by the next send; many messages at once arrive one by one. A peer that
speaks upstream's raw bytes (no newline) is read, and gets upstream's bytes plus a newline.
Routes past ``max_routes`` are closed; a taken web address fails the start and frees port 1;
the page is served on IPv6 loopback too. Fifty start/stop cycles leave no task, descriptor or
route group behind.
"""

from __future__ import annotations

import asyncio
import gc
import os
import socket

import aiohttp
import pytest

from skywire.apps.skychat import (
    CHAT_PORT,
    MAX_MESSAGE_BYTES,
    DialPolicy,
    Direction,
    Skychat,
)
from skywire.cipher import SecKey
from tests.integration._skychat import A, B, EventStream, chat, chat_net
from tests.integration.test_router import RouteNet

pytestmark = pytest.mark.timeout(120)


async def test_a_message_crosses_a_2_hop_route_and_the_reply_comes_back() -> None:
    async with chat_net() as cn:
        assert cn.b.url is not None
        async with EventStream.open(cn.http, cn.b.url + "sse") as b_events:
            answer = await cn.send(cn.a, cn.b_pk, "hello B ✓ <b>not bold</b>")
            sent = answer["message"]
            assert sent["direction"] == "out" and sent["peer"] == cn.b_pk.hex()
            assert sent["sender"] == cn.a_pk.hex()
            assert sent["message"] == "hello B ✓ <b>not bold</b>"

            event = await b_events.next()
            assert event is not None and event.name == "message"
            # upstream's two fields, as its page reads them
            assert event.data["sender"] == cn.a_pk.hex()
            assert event.data["message"] == "hello B ✓ <b>not bold</b>"
            assert event.data["direction"] == "in" and event.data["peer"] == cn.a_pk.hex()
            assert b_events.retry == 2000

        # the route A dialled has two hops
        [rg] = cn.net.nodes[A].router.route_groups
        assert rg.route is not None and len(rg.route.forward) == 2
        assert rg.remote_port == CHAT_PORT

        state = await cn.get_json(cn.b, f"conversations?peer={cn.a_pk.hex()}")
        assert state["me"] == cn.b_pk.hex()
        [conv] = state["conversations"]
        assert conv["connected"] is True
        assert [(m["direction"], m["message"]) for m in conv["messages"]] == [
            ("in", "hello B ✓ <b>not bold</b>")
        ]

        # B answers on the route A made: no dial on B's side, still one route group each
        async with cn.a.subscribe() as a_new:
            await cn.send(cn.b, cn.a_pk, "hi A, B here")
            got = await a_new.get()
        assert got.direction is Direction.IN and got.peer == cn.b_pk
        assert got.text == "hi A, B here"
        assert cn.b.stats.dials == 0 and cn.a.stats.dials == 1
        assert len(cn.net.nodes[A].router.route_groups) == 1
        assert len(cn.net.nodes[B].router.route_groups) == 1

        texts = [(m.direction, m.text) for m in cn.a.conversation(cn.b_pk).messages]
        assert texts == [
            (Direction.OUT, "hello B ✓ <b>not bold</b>"),
            (Direction.IN, "hi A, B here"),
        ]
        status = await cn.get_json(cn.a, "status")
        assert status["stats"]["sent"] == 1 and status["stats"]["received"] == 1
        assert status["peers_connected"] == [cn.b_pk.hex()] and status["routes"] == 1


async def test_the_sender_sees_its_own_message_as_a_sent_event() -> None:
    async with chat_net() as cn:
        assert cn.a.url is not None
        async with EventStream.open(cn.http, cn.a.url + "sse") as a_events:
            await cn.send(cn.a, cn.b_pk, "for B")
            event = await a_events.next()
        assert event is not None and event.name == "sent"
        assert event.data["message"] == "for B" and event.data["peer"] == cn.b_pk.hex()


async def test_bad_requests_get_a_json_error_and_send_nothing() -> None:
    async with chat_net(rf_retry_total=0.2, rf_retry_interval=0.1) as cn:
        nobody = SecKey.generate().pubkey()
        b = cn.b_pk.hex()

        status, body = await cn.post(cn.a, {"recipient": nobody.hex(), "message": "anyone?"})
        assert status == 502
        assert body["error"].startswith(f"cannot reach {nobody}")
        assert "no route" in body["error"]
        assert cn.a.stats.dial_failures == 2  # both tries of QUICK_DIAL

        status, body = await cn.post(cn.a, {"recipient": "02abc", "message": "x"})
        assert status == 400 and "not a public key" in body["error"]

        status, body = await cn.post(cn.a, {"recipient": "00" * 33, "message": "x"})
        assert status == 400 and "null key" in body["error"]

        status, body = await cn.post(cn.a, {"recipient": cn.a_pk.hex(), "message": "me?"})
        assert status == 400 and "this visor itself" in body["error"]

        status, body = await cn.post(
            cn.a, {"recipient": b, "message": "x" * (MAX_MESSAGE_BYTES + 1)}
        )
        assert status == 413 and str(MAX_MESSAGE_BYTES) in body["error"]

        status, body = await cn.post(cn.a, {"recipient": b, "message": "é" * 2035})  # 4070 bytes
        assert status == 413

        status, body = await cn.post(cn.a, b'{"recipient": "02", "message": ')
        assert status == 400 and "not JSON" in body["error"]

        status, body = await cn.post(cn.a, ["not", "an", "object"])
        assert status == 400 and "JSON object" in body["error"]

        status, body = await cn.post(cn.a, {"recipient": b})
        assert status == 400 and '"message"' in body["error"]

        status, body = await cn.post(cn.a, {"recipient": b, "message": ""})
        assert status == 400 and "empty" in body["error"]

        status, body = await cn.post(cn.a, {"recipient": b, "message": "two\nlines"})
        assert status == 400 and "one line" in body["error"]

        status, body = await cn.post(cn.a, b"x" * (70 * 1024))
        assert status == 413 and "body" in body["error"]

        status, body = await cn.post(
            cn.a, {"recipient": b, "message": "csrf"}, headers={"Origin": "http://evil.test"}
        )
        assert status == 403 and "evil.test" in body["error"]

        # a DNS name rebound to 127.0.0.1 reads nothing
        assert cn.a.url is not None and cn.a.address is not None
        rebound = {"Host": f"evil.test:{cn.a.address[1]}"}
        async with cn.http.get(cn.a.url + "conversations", headers=rebound) as resp:
            assert resp.status == 403
            assert "evil.test" in (await resp.json())["error"]

        # nothing went anywhere
        assert cn.a.stats.sent == 0 and cn.b.stats.received == 0
        assert cn.a.conversations() == [] and cn.b.conversations() == []
        assert cn.net.nodes[B].router.route_groups == []

        # and the same page (same origin) may send
        assert cn.a.url is not None
        origin = cn.a.url.rstrip("/")
        status, body = await cn.post(
            cn.a, {"recipient": b, "message": "ok"}, headers={"Origin": origin}
        )
        assert status == 200, body


async def test_a_route_that_broke_is_redialled_by_the_next_send() -> None:
    async with chat_net() as cn:
        async with cn.b.subscribe() as b_new:
            await cn.a.send(cn.b_pk, "first")
            assert (await b_new.get()).text == "first"
            # B's side ends the route (as a visor restart of the app would)
            for rg in cn.net.nodes[B].router.route_groups:
                await rg.close()
            async with asyncio.timeout(10):
                await cn.a.wait_disconnected(cn.b_pk)
            assert not cn.a.connected(cn.b_pk)
            await cn.a.send(cn.b_pk, "second")
            assert (await b_new.get()).text == "second"
        assert cn.a.stats.dials == 2
        assert [m.text for m in cn.b.conversation(cn.a_pk).messages] == ["first", "second"]

        # B's whole app restarts: A's next send finds the new one
        await cn.b.close()
        async with asyncio.timeout(10):
            await cn.a.wait_disconnected(cn.b_pk)
        async with chat(cn.net, B) as b2, b2.subscribe() as b2_new:
            await cn.a.send(cn.b_pk, "third")
            assert (await b2_new.get()).text == "third"
        assert cn.a.stats.dials == 3


async def test_fifty_messages_at_once_arrive_one_by_one_over_one_route() -> None:
    async with chat_net() as cn:
        texts = [f"message {i} " + "·" * (i * 40) for i in range(50)]
        async with cn.b.subscribe() as b_new:
            await asyncio.gather(*(cn.a.send(cn.b_pk, t) for t in texts))
            got = [(await b_new.get()).text for _ in texts]
        assert sorted(got) == sorted(texts)
        assert cn.a.stats.dials == 1  # the concurrent sends shared one dial
        assert len(cn.net.nodes[A].router.route_groups) == 1


async def test_upstream_raw_bytes_are_read_and_answered_with_one_write() -> None:
    """A peer that talks as upstream's Go app does: the text raw, no newline, one write each."""
    async with RouteNet(3, [(A, 1), (1, B)]) as net, chat(net, B, web=None) as b:
        go = await net.nodes[A].router.dial_routes(net.nodes[B].pk, 0, CHAT_PORT)
        try:
            async with b.subscribe() as b_new:
                await go.write(b"hello from Go")
                assert (await b_new.get()).text == "hello from Go"
                await go.write("ünïcode".encode())
                assert (await b_new.get()).text == "ünïcode"
                await go.write(b"bad \xff byte")
                assert (await b_new.get()).text == "bad \ufffd byte"
            # B answers on the route the peer opened: the message and a newline
            await b.send(net.nodes[A].pk, "hello Go")
            assert await go.readexactly(9) == b"hello Go\n"
            assert b.stats.dials == 0
        finally:
            await go.close()


async def test_routes_past_max_routes_are_closed_at_once() -> None:
    async with RouteNet(3, [(A, 1), (1, B)]) as net, chat(net, B, web=None, max_routes=1) as b:
        first = await net.nodes[A].router.dial_routes(net.nodes[B].pk, 0, CHAT_PORT)
        async with asyncio.timeout(10):
            await b.wait_connected(net.nodes[A].pk)
        second = await net.nodes[1].router.dial_routes(net.nodes[B].pk, 0, CHAT_PORT)
        async with asyncio.timeout(10):
            await second.wait_closed()
        assert await second.read() == b""
        assert b.stats.routes_refused == 1 and b.stats.routes_accepted == 2
        assert b.status().peers_connected == (net.nodes[A].pk,)
        async with b.subscribe() as b_new:  # the first one still works
            await first.write(b"still here\n")
            assert (await b_new.get()).text == "still here"
        await first.close()


async def test_a_taken_web_address_fails_the_start_and_frees_the_routing_port() -> None:
    async with RouteNet(2, [(0, 1)]) as net, chat(net, 0) as first:
        assert first.address is not None
        second = Skychat(net.nodes[1].router, web=first.address)
        with pytest.raises(OSError):
            await second.start()
        assert not second.running
        listener = await net.nodes[1].router.listen(CHAT_PORT)  # free again
        await listener.close()
        # and the routing port taken makes the start fail, holding no web port
        third = Skychat(net.nodes[0].router, web=("127.0.0.1", 0))
        with pytest.raises(ValueError, match="already taken"):
            await third.start()
        assert third.address is None


async def test_the_page_is_served_on_ipv6_loopback_too() -> None:
    try:
        probe = socket.socket(socket.AF_INET6)
        probe.bind(("::1", 0))
        probe.close()
    except OSError:
        pytest.skip("no IPv6 loopback here")
    async with (
        RouteNet(2, [(0, 1)]) as net,
        chat(net, 0, web=("::1", 0)) as c,
        aiohttp.ClientSession() as http,
    ):
        assert c.url is not None and c.url.startswith("http://[::1]:")
        async with http.get(c.url) as resp:
            assert resp.status == 200
            assert f'data-me="{net.nodes[0].pk.hex()}"' in await resp.text()


def _open_fds() -> int:
    try:
        return len(os.listdir("/proc/self/fd"))
    except OSError:
        return 0


async def test_50_start_stop_cycles_leave_no_task_fd_or_route_group() -> None:
    async with RouteNet(3, [(A, 1), (1, B)]) as net, aiohttp.ClientSession() as http:
        routers = [n.router for n in net.nodes]
        b_pk, a_pk = net.nodes[B].pk, net.nodes[A].pk
        # kept, so that a task one of them failed to end stays alive (and counted)
        stopped: list[Skychat] = []
        policy = DialPolicy(attempts=3, initial=0.05, wait=20.0)

        async def cycle(i: int) -> None:
            a = chat(net, A, dial=policy)
            b = chat(net, B, dial=policy)
            stopped.extend((a, b))
            async with a, b:
                assert b.url is not None
                async with EventStream.open(http, b.url + "sse") as b_events:
                    async with b.subscribe() as b_new, a.subscribe() as a_new:
                        await a.send(b_pk, f"ping {i}")
                        assert (await b_new.get()).text == f"ping {i}"
                        await b.send(a_pk, f"pong {i}")
                        assert (await a_new.get()).direction is Direction.OUT
                        assert (await a_new.get()).text == f"pong {i}"
                    ping, pong = await b_events.next(), await b_events.next()
                    assert ping is not None and ping.data["message"] == f"ping {i}"
                    assert pong is not None and pong.name == "sent"
                    if i % 2:  # the chat stops while a page listens: the stream ends
                        await b.close()
                        assert await b_events.next() is None

        await cycle(0)
        gc.collect()
        base_tasks = len(asyncio.all_tasks())
        base_fds = _open_fds()
        for i in range(1, 50):
            await cycle(i)
        for r in routers:
            assert r.route_groups == [], r.route_groups
        gc.collect()
        for _ in range(100):  # tasks that end on their own (RPC connection closers) may lag
            if len(asyncio.all_tasks()) <= base_tasks:
                break
            await asyncio.sleep(0)
        assert len(asyncio.all_tasks()) <= base_tasks, asyncio.all_tasks()
        if base_fds:
            assert _open_fds() <= base_fds
        # the routing port is free again on both visors
        for i in (A, B):
            listener = await routers[i].listen(CHAT_PORT)
            await listener.close()
        assert all(not s.running for s in stopped)

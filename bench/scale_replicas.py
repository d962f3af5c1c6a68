"""Replica checks of ``bench/scale_bench.py``: two dmsg discoveries on one Redis and two
transport discoveries on one PostgreSQL must act as one service."""

from __future__ import annotations

import contextlib
import time
from dataclasses import replace

from skywire.cipher import KeyPair
from skywire.dmsg.disc_entry import Entry as DiscEntry
from skywire.dmsg.disc_entry import KeyNotFoundError, sign
from skywire.services.dmsgdisc.client import DiscClient
from skywire.services.tpd.client import TPDClient
from skywire.transport.entry import SignedEntry, make_entry


def check(what: str, ok: bool) -> bool:
    print(f"replica check: {what}: {'OK' if ok else 'FAILED'}", flush=True)
    return ok


async def disc_replicas(one: str, two: str) -> None:
    kp = KeyPair.generate()
    async with DiscClient(one) as c1, DiscClient(two) as c2:
        v1 = sign(DiscEntry.new_client(kp.pk, 1, client_type="visor"), kp.sk)
        await c1.post_entry(v1)
        check(
            "dmsg disc: entry posted through replica 1 is read through replica 2",
            await c2.get_entry(kp.pk) == v1,
        )
        v2 = sign(replace(v1, sequence=2, timestamp=time.time_ns()), kp.sk)
        await c2.post_entry(v2)
        check(
            "dmsg disc: update through replica 2 is read through replica 1",
            (await c1.get_entry(kp.pk)).sequence == 2,
        )
        stale = False
        with contextlib.suppress(Exception):
            await c1.post_entry(v1)
            stale = True
        check(
            "dmsg disc: replica 1 refuses the older sequence written before replica 2's update",
            not stale,
        )
        v3 = sign(replace(v2, sequence=3, timestamp=time.time_ns()), kp.sk)
        await c1.delete_entry(v3)
        gone = False
        try:
            await c2.get_entry(kp.pk)
        except KeyNotFoundError:
            gone = True
        check("dmsg disc: delete through replica 1 is seen by replica 2 (404)", gone)
        replayed = {}
        for name, c in (("replica 1", c1), ("replica 2", c2)):
            try:
                await c.post_entry(v2)
                replayed[name] = True
                with contextlib.suppress(Exception):
                    await c.delete_entry(
                        sign(replace(v2, sequence=9, timestamp=time.time_ns()), kp.sk)
                    )
            except Exception:
                replayed[name] = False
        check(
            "dmsg disc: a copy captured before the delete is refused by the replica that "
            "deleted (replica 1)",
            not replayed["replica 1"],
        )
        check("dmsg disc: ... and by the other replica (replica 2)", not replayed["replica 2"])


async def tpd_replicas(one: str, two: str) -> None:
    a, b = KeyPair.generate(), KeyPair.generate()
    se = SignedEntry.new(make_entry(a.pk, b.pk, "stcpr"), a.pk, a.sk).sign(b.pk, b.sk)
    async with TPDClient(one, a.sk) as a1, TPDClient(two, a.sk) as a2, TPDClient(two, b.sk) as b2:
        await a1.register_transports(se)
        got = await a2.get_transport_by_id(se.entry.id)
        check(
            "tpd: transport registered through replica 1 is read through replica 2 "
            "(same key signing on both: httpauth nonces are shared in PostgreSQL)",
            got.id == se.entry.id,
        )
        edge = await b2.get_transports_by_edge(b.pk)
        check("tpd: replica 2 lists it by edge", [e.id for e in edge] == [se.entry.id])
        await b2.delete_transport(se.entry.id)
        check(
            "tpd: delete through replica 2 is seen by replica 1",
            await a1.find_transport(se.entry.id) is None,
        )

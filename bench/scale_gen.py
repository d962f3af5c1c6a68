"""Worker-process half of ``bench/scale_bench.py``: key and signed-entry generation, and the
load generators (each run in its own process so that the clients do not share one event loop
with the orchestration, and so that both cores can drive load).

Every function here is a top-level function taking and returning picklable values, for a
``ProcessPoolExecutor`` with the ``spawn`` start method.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import random
import statistics
import time
from collections.abc import Iterator, Sequence
from typing import Any

import aiohttp

from skywire.cipher import KeyPair, PubKey, SecKey
from skywire.dmsg.disc_entry import Entry as DiscEntry
from skywire.dmsg.disc_entry import sign as sign_disc
from skywire.transport.entry import SignedEntry, make_entry

TP_TYPES = ["stcpr"] * 6 + ["sudph"] * 2 + ["stcp", "dmsg"]


class Exhausted(Exception):
    """A load client has nothing left to send."""


_SKS: list[bytes] = []
_PKS: list[bytes] = []


def pct(samples: Sequence[float], q: int) -> float:
    if len(samples) < 2:
        return samples[0] if samples else float("nan")
    return statistics.quantiles(samples, n=100, method="inclusive")[q - 1]


def chunks(n: int, size: int) -> Iterator[tuple[int, int]]:
    for start in range(0, n, size):
        yield start, min(n, start + size)


def split(n: int, parts: int) -> list[int]:
    return [n // parts + (1 if i < n % parts else 0) for i in range(parts)]


# -- generation ----------------------------------------------------------------------------------


def gen_keys(seed: int, start: int, stop: int) -> list[tuple[bytes, bytes]]:
    """Deterministic key pairs ``start..stop`` of a run: ``(sk raw, pk raw)``."""
    out = []
    for i in range(start, stop):
        raw = hashlib.sha256(f"scale-bench/{seed}/{i}".encode()).digest()
        sk = SecKey(raw)  # a SHA-256 output is below the curve order but for ~2^-128
        out.append((raw, sk.pubkey().raw))
    return out


def init_signer(sks: list[bytes], pks: list[bytes]) -> None:
    """Pool initializer: every visor key, once per worker."""
    global _SKS, _PKS
    _SKS, _PKS = sks, pks


def sign_disc_entries(start: int, stop: int, timestamp: int) -> list[DiscEntry]:
    """Signed visor client entries (sequence 1, ``client_type`` visor) of visors start..stop."""
    out = []
    for i in range(start, stop):
        entry = DiscEntry.new_client(
            PubKey(_PKS[i]), 1, (), timestamp=timestamp + i, client_type="visor"
        )
        out.append(sign_disc(entry, SecKey(_SKS[i])))
    return out


def sign_transports(pairs: list[tuple[int, int, str]]) -> list[SignedEntry]:
    """Transport entries of visor index pairs, signed by both edges."""
    out = []
    for a, b, tp_type in pairs:
        pa, pb = PubKey(_PKS[a]), PubKey(_PKS[b])
        se = SignedEntry.new(make_entry(pa, pb, tp_type), pa, SecKey(_SKS[a]))
        out.append(se.sign(pb, SecKey(_SKS[b])))
    return out


# -- load generators -------------------------------------------------------------------------


def _connector(clients: int) -> aiohttp.TCPConnector:
    return aiohttp.TCPConnector(limit=clients + 8, force_close=False)


async def _run_clients(
    clients: int, seconds: float, one: Any, sink: list[float], statuses: dict[int, int]
) -> float:
    """Run ``clients`` loops of ``one(i)`` (returns an HTTP status) for ``seconds``; latencies
    in ms go to ``sink``. Returns the wall time the loops ran."""
    deadline = time.perf_counter() + seconds

    async def loop(i: int) -> None:
        while time.perf_counter() < deadline:
            started = time.perf_counter()
            try:
                status = await one(i)
            except Exhausted:
                return
            except (aiohttp.ClientError, TimeoutError, OSError):
                status = -1
            sink.append((time.perf_counter() - started) * 1000)
            statuses[status] = statuses.get(status, 0) + 1

    started = time.perf_counter()
    await asyncio.gather(*(loop(i) for i in range(clients)))
    return time.perf_counter() - started


def _result(elapsed: float, sink: list[float], statuses: dict[int, int]) -> dict[str, Any]:
    return {"elapsed": elapsed, "latencies": sink, "statuses": statuses}


def load_disc_get(
    urls: list[str], pks: list[str], clients: int, seconds: float, seed: int
) -> dict[str, Any]:
    """GET ``/dmsg-discovery/entry/<pk>`` of random loaded keys; client ``i`` uses
    ``urls[i % len(urls)]`` over one keep-alive connection of its own."""

    async def main() -> dict[str, Any]:
        rng = random.Random(seed)
        sink: list[float] = []
        statuses: dict[int, int] = {}
        async with aiohttp.ClientSession(connector=_connector(clients)) as http:

            async def one(i: int) -> int:
                url = f"{urls[i % len(urls)]}/dmsg-discovery/entry/{rng.choice(pks)}"
                async with http.get(url) as resp:
                    await resp.read()
                    return resp.status

            elapsed = await _run_clients(clients, seconds, one, sink, statuses)
        return _result(elapsed, sink, statuses)

    return asyncio.run(main())


def load_rf_routes(
    url: str, pks: list[str], clients: int, seconds: float, seed: int
) -> dict[str, Any]:
    """``POST /routes`` for one random (source, destination) pair per request, MinHops 1,
    MaxHops 50 (what a [2024] visor asks)."""

    async def main() -> dict[str, Any]:
        rng = random.Random(seed)
        sink: list[float] = []
        statuses: dict[int, int] = {}
        async with aiohttp.ClientSession(connector=_connector(clients)) as http:

            async def one(i: int) -> int:
                src, dst = rng.sample(pks, 2)
                body = json.dumps(
                    {"Edges": [f"{src}:{dst}"], "Opts": {"MinHops": 1, "MaxHops": 50}}
                )
                async with http.post(f"{url}/routes", data=body) as resp:
                    await resp.read()
                    return resp.status

            elapsed = await _run_clients(clients, seconds, one, sink, statuses)
        return _result(elapsed, sink, statuses)

    return asyncio.run(main())


def load_tpd_register(
    urls: list[str], sks: list[str], per_client: int, seconds: float, seed: int
) -> dict[str, Any]:
    """Visor ``i`` (secret key ``sks[i]``) registers, one request each, new transports to fresh
    peers through ``urls[i % len(urls)]`` with its own :class:`TPDClient` (httpauth signed).
    The entries are signed before the clock starts; a visor stops when it has used its
    ``per_client`` entries."""
    from skywire.services.tpd.client import TPDClient

    rng = random.Random(seed)
    visors = [KeyPair.from_seckey(SecKey.from_hex(h)) for h in sks]
    queues: list[list[SignedEntry]] = []
    for kp in visors:
        todo = []
        for _ in range(per_client):
            peer = KeyPair.from_seckey(SecKey(rng.randbytes(31) + b"\x01"))
            se = SignedEntry.new(make_entry(kp.pk, peer.pk, rng.choice(TP_TYPES)), kp.pk, kp.sk)
            todo.append(se.sign(peer.pk, peer.sk))
        queues.append(todo)

    async def main() -> dict[str, Any]:
        sink: list[float] = []
        statuses: dict[int, int] = {}
        async with aiohttp.ClientSession(connector=_connector(len(visors))) as http:
            tpds = [TPDClient(urls[i % len(urls)], kp.sk, http) for i, kp in enumerate(visors)]

            async def one(i: int) -> int:
                if not queues[i]:
                    raise Exhausted
                resp = await tpds[i].auth.request(
                    "POST", "/transports/", body=b"[" + queues[i].pop().to_json() + b"]"
                )
                return resp.status

            elapsed = await _run_clients(len(visors), seconds, one, sink, statuses)
            left = sum(len(q) for q in queues)
        out = _result(elapsed, sink, statuses)
        out["exhausted"] = sum(1 for q in queues if not q)
        out["left"] = left
        return out

    return asyncio.run(main())

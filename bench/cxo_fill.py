"""CXO fill figures on loopback, one line each (``name: value unit``).

A publisher node stores one treestore feed of about ``--objects`` objects (leaves of
``--leaf-bytes`` bytes spread over directories); a subscriber node connects over dmsg (a local
discovery and one relay server, all in this process) or plain TCP, subscribes and fills the
whole Root. The figures cover the fill only (from Sub to the filled Root), then an update that
changes one leaf.

Usage: ``python bench/cxo_fill.py [--objects 10000] [--leaf-bytes 256] [--transport dmsg|tcp]
[--in-flight 32]``.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from typing import Any

from skywire.cipher import KeyPair
from skywire.cxo.node import Node, NodeConfig
from skywire.cxo.store import MemoryStore
from skywire.cxo.treestore import build_tree
from skywire.testnet.dmsgnet import LocalDmsgNetwork

PORT = 53


def make_tree(objects: int, leaf_bytes: int) -> dict[str, Any]:
    """A two-level tree whose object count is close to ``objects`` (entries dominate)."""
    per_dir = 100
    dirs = max(1, objects // (per_dir + 10))
    return {
        f"dir{d:04}": {
            f"leaf{i:03}": (f"{d}/{i}:".encode() * leaf_bytes)[:leaf_bytes] for i in range(per_dir)
        }
        for d in range(dirs)
    }


async def run(args: argparse.Namespace) -> None:
    tree = make_tree(args.objects, args.leaf_bytes)
    _, _, objects = build_tree(tree)
    feed = KeyPair.generate()
    cfg = NodeConfig(max_in_flight=args.in_flight)
    pub_kp, sub_kp = KeyPair.generate(), KeyPair.generate()
    async with (
        LocalDmsgNetwork(servers=1) as net,
        Node(MemoryStore(), pub_kp.sk, config=cfg) as pub,
        Node(MemoryStore(), sub_kp.sk, config=cfg) as sub,
    ):
        await pub.publish(feed.sk, tree)
        if args.transport == "dmsg":
            a, b = await net.client(pub_kp.sk), await net.client(sub_kp.sk)
            await pub.listen_dmsg(a, PORT)
            conn = await sub.connect_dmsg(b, a.pk, PORT)
        else:
            host, port = await pub.listen_tcp()
            conn = await sub.connect_tcp(host, port)
        updates = sub.updates(feed.pk)
        t0 = time.perf_counter()
        await sub.subscribe(feed.pk, conn)
        root = await anext(updates)
        elapsed = time.perf_counter() - t0
        n, nbytes = sub.stats.objects_received, sub.stats.bytes_received
        assert root.is_full and n == len(objects), (n, len(objects))
        print(f"cxo_fill_objects: {n} objects")
        print(f"cxo_fill_bytes: {nbytes / 1e6:.2f} MB")
        print(f"cxo_fill_time: {elapsed * 1000:.0f} ms")
        print(f"cxo_fill_rate: {n / elapsed:.0f} objects/s")
        print(f"cxo_fill_throughput: {nbytes / elapsed / 1e6:.2f} MB/s")

        first = next(iter(tree))
        tree[first]["leaf000"] = b"changed"
        before = sub.stats.objects_requested
        t0 = time.perf_counter()
        await pub.publish(feed.sk, tree)
        await anext(updates)
        elapsed = time.perf_counter() - t0
        print(f"cxo_update_objects: {sub.stats.objects_requested - before} objects")
        print(f"cxo_update_latency: {elapsed * 1000:.1f} ms")
        updates.close()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--objects", type=int, default=10_000)
    p.add_argument("--leaf-bytes", type=int, default=256)
    p.add_argument("--transport", choices=["dmsg", "tcp"], default="dmsg")
    p.add_argument("--in-flight", type=int, default=32)
    asyncio.run(run(p.parse_args()))


if __name__ == "__main__":
    main()

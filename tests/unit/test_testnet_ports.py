"""The testnet's free ports: free when handed out, and never handed out twice."""

from __future__ import annotations

import socket

from skywire.testnet.parts import free_port


def test_free_ports_are_bindable_below_the_ephemeral_range_and_never_repeat() -> None:
    ports = [free_port() for _ in range(500)]  # ~30 % of the range: repeats were likely
    assert len(set(ports)) == len(ports)
    assert all(20000 <= p < 32000 for p in ports)
    with socket.socket() as s:
        s.bind(("127.0.0.1", ports[-1]))

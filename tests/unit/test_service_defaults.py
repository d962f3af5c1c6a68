"""Defaults that decide whether our parts find each other (and Go parts find ours)."""

from __future__ import annotations

from skywire.dmsg.server import ServerConfig
from skywire.services.ar.client import _default_udp_addr


def test_resolver_udp_side_follows_the_url_port_like_the_reference_visor() -> None:
    assert _default_udp_addr("http://127.0.0.1:9093") == ("127.0.0.1", 9093)
    assert _default_udp_addr("http://ar.example") == ("ar.example", 30178)
    assert _default_udp_addr("10.0.0.1:80") == ("10.0.0.1", 80)


def test_generated_server_configs_do_not_share_a_health_port() -> None:
    first = ServerConfig.generate(local_address=":8081")
    second = ServerConfig.generate(local_address=":8083")
    assert first.health_endpoint_address == ":8082"
    assert second.health_endpoint_address == ":8084"
    explicit = ServerConfig.generate(health_endpoint_address="127.0.0.1:1")
    assert explicit.health_endpoint_address == "127.0.0.1:1"

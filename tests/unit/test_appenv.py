"""What the visor tells its vpn-client app: the far end of each transport, found down its
layers, and nothing for other apps."""

from __future__ import annotations

from types import SimpleNamespace

from skywire.cipher import SecKey
from skywire.visor.appenv import app_env, peer_ip
from skywire.visor.config import AppConfig, VisorConfig


def test_peer_ip_goes_down_the_layers() -> None:
    tcp = SimpleNamespace(peername=("10.0.0.7", 7777))
    kcp = SimpleNamespace(remote_addr=("10.0.0.8", 30178), peername=None)
    assert peer_ip(SimpleNamespace(inner=tcp)) == "10.0.0.7"
    assert peer_ip(SimpleNamespace(inner=SimpleNamespace(inner=kcp))) == "10.0.0.8"
    assert peer_ip(SimpleNamespace(inner=None)) is None  # dmsg: no address of its own
    assert peer_ip(None) is None


def test_only_vpn_client_is_told() -> None:
    cfg = VisorConfig.generate(sk=SecKey.generate(), dmsg_discovery="http://10.0.0.1:9090")
    streams = [SimpleNamespace(peername=("10.0.0.9", 1)), SimpleNamespace(peername=None)]
    env = app_env(AppConfig(name="vpn-client", port=43), cfg, [("10.0.0.2", 8081), None], streams)
    assert env["ADDR_DMSG_DISC"] == "http://10.0.0.1:9090"
    assert (env["DMSG_SRV_COUNT"], env["ADDR_DMSG_SRV_0"]) == ("1", "10.0.0.2")
    assert (env["TP_REMOTE_IPS_LEN"], env["ADDR_TP_REMOTE_0"]) == ("1", "10.0.0.9")
    assert app_env(AppConfig(name="skychat", port=1), cfg, [], streams) == {}

"""A generated visor config lists upstream's default apps (names, binary, routing ports,
arguments, which start with the visor), and the launcher block survives a JSON round trip."""

from __future__ import annotations

import json

from skywire.visor.config import VisorConfig


def test_a_new_config_lists_the_default_apps_as_upstream_does() -> None:
    cfg = VisorConfig.generate()
    apps = {a.name: a for a in cfg.launcher.apps}
    assert {name: (a.port, a.auto_start) for name, a in apps.items()} == {
        "vpn-client": (43, False),
        "skychat": (1, True),
        "skysocks": (3, True),
        "skysocks-client": (13, False),
        "vpn-server": (44, False),
    }
    assert all(a.binary == "skywire" and a.args[:2] == ["app", a.name] for a in apps.values())
    assert apps["skychat"].args[-2:] == ["--addr", ":8001"]
    assert apps["skysocks-client"].args[-2:] == ["--addr", ":1080"]
    doc = json.loads(cfg.to_json())
    assert doc["launcher"]["apps"][1] == {
        "name": "skychat",
        "binary": "skywire",
        "args": ["app", "skychat", "--addr", ":8001"],
        "auto_start": True,
        "port": 1,
    }
    assert VisorConfig.from_json(cfg.to_json()).launcher == cfg.launcher

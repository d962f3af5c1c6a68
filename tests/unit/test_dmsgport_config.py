"""``DmsgPortConfig``: checked once, before anything runs; and the command's dmsg-port line."""

from __future__ import annotations

import pytest

from skywire.cipher import KeyPair, SecKey
from skywire.cli.svc_dmsgport import dmsg_port_config, dmsg_port_line
from skywire.services.dmsgport import DMSG_API_PORT, DmsgPortConfig, DmsgPortConfigError

SK = SecKey.generate()


def test_defaults_and_address() -> None:
    config = DmsgPortConfig(SK, "http://127.0.0.1:9090")
    assert config.port == DMSG_API_PORT == 80
    assert config.survey_whitelist == frozenset()
    assert config.url == f"dmsg://{SK.pubkey().hex()}:80"


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"disc_url": ""}, "discovery URL"),
        ({"port": 0}, "from 1 to 65535"),
        ({"port": 65536}, "from 1 to 65535"),
        ({"min_sessions": -1}, "must not be negative"),
    ],
)
def test_bad_configs_are_refused(kwargs: dict[str, object], message: str) -> None:
    args: dict[str, object] = {"sk": SK, "disc_url": "http://127.0.0.1:9090", **kwargs}
    with pytest.raises(DmsgPortConfigError, match=message) as err:
        DmsgPortConfig(**args)  # type: ignore[arg-type]
    assert isinstance(err.value, ValueError)


def test_a_whitelist_given_as_a_set_is_frozen() -> None:
    pk = KeyPair.generate().pk
    config = DmsgPortConfig(SK, "http://d", {pk})  # type: ignore[arg-type]
    assert config.survey_whitelist == frozenset({pk})
    assert isinstance(config.survey_whitelist, frozenset)


def test_the_command_options() -> None:
    a, b = KeyPair.generate().pk, KeyPair.generate().pk
    assert dmsg_port_config("", "http://d", [a.hex()]) is None
    config = dmsg_port_config(SK.hex(), "http://d", [f"{a.hex()},{b.hex()}", a.hex()])
    assert config is not None and config.survey_whitelist == {a, b}
    assert "2 survey-whitelisted keys" in dmsg_port_line(config)
    assert "/debug open to nobody" in dmsg_port_line(dmsg_port_config(SK.hex(), "http://d", None))
    assert dmsg_port_line(None).startswith("dmsg port off (no --sk)")

"""The resolver hostname grammar: a table of accepted and refused names, and a round trip."""

from __future__ import annotations

import uuid

import pytest
from hypothesis import given
from hypothesis import strategies as st

from skywire.cipher import KeyPair, PubKey
from skywire.proxy.errors import HostnameError
from skywire.proxy.hostname import ProxyTarget, Suffix, build, classify, parse

A, B, C, D = (KeyPair.generate().pk for _ in range(4))
T1, T2 = uuid.UUID(int=0x1234), uuid.uuid4()


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        (f"{A.hex()}.dmsg", ProxyTarget(Suffix.DMSG, A)),
        (f"{A.hex()}.dmsg:8080", ProxyTarget(Suffix.DMSG, A, port=8080)),
        (f"{A.dns_label()}.dmsg", ProxyTarget(Suffix.DMSG, A)),
        (f"{A.hex().upper()}.DMSG.", ProxyTarget(Suffix.DMSG, A)),
        (f"site.{A.hex()}.dmsg", ProxyTarget(Suffix.DMSG, A, vhost="site")),
        (f"www.example.net.{A.hex()}.dmsg", ProxyTarget(Suffix.DMSG, A, vhost="www.example.net")),
        (f"{B.hex()}.{A.hex()}.dmsg", ProxyTarget(Suffix.DMSG, A, (B,))),
        (f"blog.{B.dns_label()}.{A.hex()}.dmsg:81", ProxyTarget(Suffix.DMSG, A, (B,), "blog", 81)),
        (f"{A.hex()}.skynet", ProxyTarget(Suffix.SKYNET, A)),
        (f"{B.hex()}.{C.hex()}.{A.hex()}.skynet", ProxyTarget(Suffix.SKYNET, A, (B, C))),
        (f"{T1.hex}.{T2}.{A.hex()}.skynet", ProxyTarget(Suffix.SKYNET, A, (T1, T2))),
        (f"x.{B.hex()}.{T2}.{A.hex()}.skynet", ProxyTarget(Suffix.SKYNET, A, (B, T2), "x")),
        # the first label that is not a routing element ends the chain
        (f"{B.hex()}.x.{C.hex()}.{A.hex()}.skynet", None),
        ("skywire.dmsg", ProxyTarget(Suffix.DMSG, None)),
        ("skywire.skynet:8080", ProxyTarget(Suffix.SKYNET, None, port=8080)),
        ("site.skywire.dmsg", ProxyTarget(Suffix.DMSG, None, vhost="site")),
    ],
)
def test_accepted(name: str, expected: ProxyTarget | None) -> None:
    got = parse(name)
    if expected is None:  # the vhost holds a key-shaped label left of a plain one
        assert got.chain == (C,) and got.vhost == f"{B.hex()}.x"
        return
    assert got == expected


def test_a_pinned_dmsg_name_reads_client_then_server() -> None:
    pinned = parse(f"blog.{B.hex()}.{A.hex()}.dmsg")
    assert pinned.dmsg_peer == B and pinned.pinned_server == A and pinned.vhost == "blog"
    bare = parse(f"{A.hex()}.dmsg")
    assert bare.dmsg_peer == A and bare.pinned_server is None
    assert parse("skywire.dmsg").dmsg_peer is None
    assert parse(f"{B.hex()}.{A.hex()}.skynet").pinned_server is None


def test_alias_is_configurable() -> None:
    assert parse("home.dmsg", alias="home").is_self
    with pytest.raises(HostnameError, match="'home'"):
        parse("home.dmsg")


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("example.com", "not a .dmsg or .skynet name"),
        (".dmsg", "no destination"),
        ("dmsg", "no destination"),
        (f"a..{A.hex()}.dmsg", "empty label at position 2"),
        ("site.dmsg", "label 'site' next to .dmsg is not a public key"),
        (f"{T1}.skynet", "is a transport ID"),
        (f"{A.hex()[:-2]}zz.dmsg", "label '"),
        ("0" * 64 + "ab.dmsg", "looks like a public key but is not"),
        (f"{B.hex()}.{C.hex()}.{A.hex()}.dmsg", "at most one dmsg server; found 2"),
        (f"{T1}.{A.hex()}.dmsg", "can only pin a dmsg server"),
        (f"{A.hex()}.dmsg:0", "port 0 is out of range"),
        (f"{A.hex()}.dmsg:70000", "out of range"),
        (f"{A.hex()}.dmsg:http", "port 'http' is not a number"),
        (f"bad_-.{A.hex()}.dmsg", "'bad_-' is not a valid host name label"),
        (f"{'x' * 67}.{A.hex()}.dmsg", "is not a valid host name label"),
        ("x" * 2000 + ".dmsg", "too long"),
    ],
)
def test_refused_with_the_label_named(name: str, message: str) -> None:
    with pytest.raises(HostnameError, match=message.replace(".", r"\.").replace("(", r"\(")):
        parse(name)


def test_classify() -> None:
    assert classify(A.hex()) == A
    assert classify(A.dns_label()) == A
    assert classify(T1.hex) == T1
    assert classify(str(T2)) == T2
    assert classify("www") is None
    assert classify("0" * 33) is None


_KEYS = [KeyPair.generate().pk for _ in range(8)]
keys = st.sampled_from(_KEYS)
tp_ids = st.uuids()
vhost_label = st.from_regex(r"[a-z][a-z0-9-]{0,20}[g-z]", fullmatch=True)


@st.composite
def targets(draw: st.DrawFn) -> ProxyTarget:
    suffix = draw(st.sampled_from(list(Suffix)))
    if suffix is Suffix.DMSG:
        chain: tuple[PubKey | uuid.UUID, ...] = tuple(draw(st.lists(keys, max_size=1)))
    else:
        chain = tuple(draw(st.lists(st.one_of(keys, tp_ids), max_size=4)))
    vhost = ".".join(draw(st.lists(vhost_label, max_size=3)))
    port = draw(st.integers(1, 65535))
    if draw(st.booleans()) and not chain:
        return ProxyTarget(suffix, None, (), vhost, port)
    return ProxyTarget(suffix, draw(keys), chain, vhost, port)


@given(targets(), st.booleans())
def test_build_then_parse_gives_back_the_parts(target: ProxyTarget, dns: bool) -> None:
    assert parse(build(target, dns_labels=dns)) == target

"""The hypervisor's login rules without HTTP: password hashing and upstream's password rules,
server-side sessions, CSRF tokens and login throttling, each driven with explicit times."""

from __future__ import annotations

import pytest

from skywire.visor.config import HypervisorConfig, VisorConfig
from skywire.visor.hypervisor.auth import (
    CsrfSigner,
    LoginThrottle,
    SessionStore,
    check_password,
    check_username,
    hash_password,
    verify_password,
)
from skywire.visor.hypervisor.errors import (
    AccountError,
    CsrfError,
    NotLoggedInError,
    ThrottledError,
)
from skywire.visor.hypervisor.link import Backoff
from skywire.visor.hypervisor.server import parse_http_addr
from skywire.visor.hypervisor.users import UserDB

GOOD = "Sky-wire9"


def test_a_password_verifies_only_itself() -> None:
    stored = hash_password(GOOD)
    assert stored.startswith("scrypt$16384$8$1$")
    assert verify_password(GOOD, stored)
    assert not verify_password("Sky-wire8", stored)
    assert not verify_password("", stored)
    # a fresh salt each time: the same password never hashes the same
    assert hash_password(GOOD) != stored
    assert hash_password(GOOD, salt=b"s" * 16) == hash_password(GOOD, salt=b"s" * 16)


@pytest.mark.parametrize("stored", ["", "scrypt$", "md5$x$y$z$a$b", "scrypt$a$8$1$AA$AA"])
def test_a_malformed_stored_hash_verifies_nothing(stored: str) -> None:
    assert not verify_password(GOOD, stored)


@pytest.mark.parametrize(
    ("password", "why"),
    [
        ("Ab1!", "length"),
        ("A" * 60 + "b1!xx", "length"),
        ("skywire9!", "upper"),
        ("SKYWIRE9!", "upper, lower"),
        ("Skywire!!", "digit"),
        ("Skywire99", "special"),
        ("Sky wire9!", "printable"),
        ("Skywiré9!", "printable"),
    ],
)
def test_upstreams_password_rules(password: str, why: str) -> None:
    with pytest.raises(AccountError) as err:
        check_password(password)
    assert why.split(",")[0] in str(err.value)
    assert err.value.status == 400


def test_usernames() -> None:
    assert check_username("admin") == "admin"
    for bad in ("adm", "Admin", "a" * 22, "ad min", "admin!"):
        with pytest.raises(AccountError):
            check_username(bad)


def test_sessions_expire_and_end() -> None:
    store = SessionStore(ttl=100.0)
    a = store.create("admin", now=1000.0)
    b = store.create("admin", now=1001.0)
    assert a.sid != b.sid and len(a.sid) >= 40
    assert store.get(a.sid, now=1099.9) == a
    with pytest.raises(NotLoggedInError, match="expired"):
        store.get(a.sid, now=1100.0)
    with pytest.raises(NotLoggedInError):  # forgotten once seen expired
        store.get(a.sid, now=1000.0)
    assert store.others(b) == []
    c = store.create("admin", now=1002.0)
    assert store.others(c) == [b]
    for missing in (None, "", "nope"):
        with pytest.raises(NotLoggedInError) as err:
            store.get(missing, now=1002.0)
        assert err.value.status == 401
    assert store.delete(c.sid) and not store.delete(c.sid)
    assert store.delete_user("admin") == 1
    assert len(store) == 0
    with pytest.raises(ValueError):
        SessionStore(ttl=0)


def test_csrf_tokens_are_bound_to_the_session_and_expire() -> None:
    signer = CsrfSigner(key=b"k" * 64, max_age=30.0)
    token = signer.issue("sid-1", now=500.0)
    signer.verify(token, "sid-1", now=530.0)
    with pytest.raises(CsrfError, match="expired"):
        signer.verify(token, "sid-1", now=530.1)
    with pytest.raises(CsrfError, match="invalid"):
        signer.verify(token, "sid-2", now=510.0)  # another session's token
    with pytest.raises(CsrfError, match="invalid"):
        CsrfSigner(key=b"x" * 64).verify(token, "sid-1", now=510.0)  # another process's
    body, _, mac = token.partition(".")
    for bad in (f"{body}.", f".{mac}", f"{body}x.{mac}", "garbage", "a.b.c", f"{body}.{mac[:-2]}"):
        with pytest.raises(CsrfError):
            signer.verify(bad, "sid-1", now=510.0)
    for missing in (None, ""):
        with pytest.raises(CsrfError, match="no X-CSRF-Token") as err:
            signer.verify(missing, "sid-1", now=510.0)
        assert err.value.status == 403
    assert signer.issue("sid-1", now=500.0) != token  # a fresh nonce each time


def test_failed_logins_lock_a_client_out_with_a_growing_delay() -> None:
    throttle = LoginThrottle(max_failures=3, window=60.0, lockout=10.0, max_lockout=25.0)
    for t in (0.0, 1.0):
        throttle.check("a", t)
        throttle.failed("a", t)
    throttle.check("a", 2.0)
    throttle.failed("a", 2.0)  # the third within the window
    with pytest.raises(ThrottledError) as err:
        throttle.check("a", 2.0)
    assert err.value.retry_after == 10.0 and err.value.status == 429
    throttle.check("b", 2.0)  # another client is not affected
    throttle.check("a", 12.0)  # lockout over
    for t in (12.0, 13.0, 14.0):
        throttle.failed("a", t)
    with pytest.raises(ThrottledError) as err:
        throttle.check("a", 14.0)
    assert err.value.retry_after == 20.0  # doubled
    for t in (40.0, 41.0, 42.0):
        throttle.failed("a", t)
    with pytest.raises(ThrottledError) as err:
        throttle.check("a", 42.0)
    assert err.value.retry_after == 25.0  # capped
    throttle.succeeded("a")
    throttle.check("a", 42.0)


def test_failures_outside_the_window_do_not_add_up() -> None:
    throttle = LoginThrottle(max_failures=3, window=60.0, lockout=10.0)
    for t in (0.0, 30.0, 61.0, 100.0):
        throttle.failed("a", t)
        throttle.check("a", t)


def test_redial_backoff() -> None:
    b = Backoff(initial=1.0, maximum=30.0)
    assert [b.delay(n) for n in (1, 2, 3, 4, 5, 6, 9)] == [1, 2, 4, 8, 16, 30, 30]


def test_config_block_defaults_and_upstream_form() -> None:
    cfg = VisorConfig.generate()
    assert cfg.hypervisor.enabled is False
    assert cfg.hypervisor.http_addr == "127.0.0.1:8000"
    again = VisorConfig.from_json(cfg.to_json())
    assert again.hypervisor == cfg.hypervisor
    # upstream writes the cookie lifetime as Go nanoseconds, and keys of its own
    upstream = HypervisorConfig.model_validate(
        {
            "db_path": "/x/users.db",
            "enable_auth": True,
            "cookies": {"hash_key": "ab", "block_key": "cd", "expires_duration": 43200000000000},
            "dmsg_port": 46,
            "http_addr": ":8000",
        }
    )
    assert upstream.cookies.expires_duration == "12h0m0s"
    assert parse_http_addr(upstream.http_addr) == ("0.0.0.0", 8000)
    assert parse_http_addr("127.0.0.1:0") == ("127.0.0.1", 0)
    for bad in ("8000", "host:", "h:99999"):
        with pytest.raises(ValueError):
            parse_http_addr(bad)


async def test_the_user_db_has_one_account() -> None:
    async with UserDB(":memory:") as users:
        assert await users.count() == 0
        await users.create("admin", GOOD)
        await users.verify("admin", GOOD)
        with pytest.raises(AccountError) as err:
            await users.create("other", GOOD)
        assert err.value.status == 403
        for name, password in (("admin", "Wrong-pass1"), ("nobody", GOOD)):
            with pytest.raises(PermissionError):
                await users.verify(name, password)
        await users.set_password("admin", "New-pass1")
        await users.verify("admin", "New-pass1")
        with pytest.raises(AccountError):
            await users.set_password("admin", "weak")
        assert await users.count() == 1

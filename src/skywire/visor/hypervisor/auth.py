"""The dashboard's login rules, without I/O: passwords, sessions, CSRF tokens, login throttling.

Time enters as ``now`` (seconds since the epoch); nothing here reads a clock, opens a file or
awaits, so every rule is tested by passing times (``tests/unit/test_hypervisor_auth.py``).

* **Passwords** (:func:`hash_password`, :func:`verify_password`): scrypt from the standard
  library, a random 16-byte salt per password, stored as ``scrypt$n$r$p$salt$hash`` (base64);
  compared in constant time. The rules are upstream's (``usermanager/user.go``): a user name of
  4–21 of ``a-z0-9_-``; a password of 6–64 printable ASCII characters with an upper case
  letter, a lower case letter, a digit and a symbol.
* **Sessions** (:class:`SessionStore`): kept on the server; the cookie holds only a random
  256-bit id. A session ends at its expiry, at logout, or when the password changes.
* **CSRF** (:class:`CsrfSigner`): upstream's scheme — ``GET /api/csrf`` hands out a token that
  expires after 30 s, an HMAC-SHA256 under a per-process key of ``{nonce, expiry}`` — and the
  token is also bound to the session it was issued to, so a token leaked from one session is
  worthless in another.
* **Throttling** (:class:`LoginThrottle`): after ``max_failures`` failed logins from one client
  within ``window`` seconds, that client is refused for ``lockout`` seconds, doubling with
  every further lockout (reset by a successful login).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
import secrets
import unicodedata
from dataclasses import dataclass, field

from skywire.visor.hypervisor.errors import (
    AccountError,
    CsrfError,
    NotLoggedInError,
    ThrottledError,
)

__all__ = [
    "CSRF_HEADER",
    "CSRF_MAX_AGE",
    "SESSION_COOKIE",
    "CsrfSigner",
    "LoginThrottle",
    "Session",
    "SessionStore",
    "check_password",
    "check_username",
    "hash_password",
    "verify_password",
]

SESSION_COOKIE = "swm-session"
"""Upstream's cookie name."""
CSRF_HEADER = "X-CSRF-Token"
CSRF_MAX_AGE = 30.0
"""Seconds a CSRF token is good for (upstream's ``CSRFMaxAge``)."""

_USERNAME = re.compile(r"^[a-z0-9_-]{4,21}$")
MIN_PASSWORD, MAX_PASSWORD = 6, 64

# scrypt's cost: 2**14 * 8 * 128 bytes = 16 MiB of memory, some 50 ms per check.
SCRYPT_N, SCRYPT_R, SCRYPT_P = 1 << 14, 8, 1
_SALT_BYTES = 16
_KEY_BYTES = 32


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


# ---------------------------------------------------------------------------------- passwords


def check_username(name: str) -> str:
    if not _USERNAME.match(name):
        raise AccountError("user name must be 4-21 characters of a-z, 0-9, _ and -")
    return name


def check_password(password: str) -> str:
    """Upstream's rules; raises :class:`AccountError` naming the one broken."""
    if not MIN_PASSWORD <= len(password) <= MAX_PASSWORD:
        raise AccountError(
            f"password length should be between {MIN_PASSWORD} and {MAX_PASSWORD} chars"
        )
    if any(not "!" <= c <= "~" for c in password):
        raise AccountError("password must be printable ASCII without spaces")
    classes = (str.isupper, str.islower, str.isdigit, lambda c: not c.isalnum())
    if not all(any(test(c) for c in password) for test in classes):
        raise AccountError(
            "password must have at least one upper, lower, digit and special character"
        )
    return password


def hash_password(password: str, *, salt: bytes | None = None) -> str:
    """The stored form of ``password`` (slow on purpose: run it off the event loop)."""
    salt = secrets.token_bytes(_SALT_BYTES) if salt is None else salt
    key = hashlib.scrypt(
        unicodedata.normalize("NFC", password).encode("utf-8"),
        salt=salt,
        n=SCRYPT_N,
        r=SCRYPT_R,
        p=SCRYPT_P,
        dklen=_KEY_BYTES,
    )
    return f"scrypt${SCRYPT_N}${SCRYPT_R}${SCRYPT_P}${_b64(salt)}${_b64(key)}"


def verify_password(password: str, stored: str) -> bool:
    """Whether ``password`` is the one ``stored`` was made from (False for a malformed one)."""
    try:
        scheme, n, r, p, salt, want = stored.split("$")
        if scheme != "scrypt":
            return False
        key = hashlib.scrypt(
            unicodedata.normalize("NFC", password).encode("utf-8"),
            salt=_unb64(salt),
            n=int(n),
            r=int(r),
            p=int(p),
            dklen=len(_unb64(want)),
            maxmem=1 << 26,
        )
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(key, _unb64(want))


# ---------------------------------------------------------------------------------- sessions


@dataclass(frozen=True)
class Session:
    sid: str
    user: str
    created: float
    expires: float

    def to_json(self) -> dict[str, object]:
        """Upstream's shape, without the id (it is the cookie: it stays out of page script)."""
        return {"username": self.user, "created": self.created, "expiry": self.expires}


class SessionStore:
    """Server-side sessions by id; ``ttl`` seconds each (upstream: 12 h)."""

    def __init__(self, ttl: float = 12 * 3600.0) -> None:
        if ttl <= 0:
            raise ValueError("session ttl must be positive")
        self.ttl = ttl
        self._by_id: dict[str, Session] = {}

    def __len__(self) -> int:
        return len(self._by_id)

    def create(self, user: str, now: float) -> Session:
        self.expire(now)
        session = Session(secrets.token_urlsafe(32), user, now, now + self.ttl)
        self._by_id[session.sid] = session
        return session

    def get(self, sid: str | None, now: float) -> Session:
        """The live session ``sid``; raises :class:`NotLoggedInError` (and forgets an expired
        one)."""
        session = self._by_id.get(sid) if sid else None
        if session is None:
            raise NotLoggedInError()
        if now >= session.expires:
            del self._by_id[session.sid]
            raise NotLoggedInError("the session expired: log in again")
        return session

    def delete(self, sid: str) -> bool:
        return self._by_id.pop(sid, None) is not None

    def delete_user(self, user: str) -> int:
        """End every session of ``user`` (after a password change); how many ended."""
        gone = [sid for sid, s in self._by_id.items() if s.user == user]
        for sid in gone:
            del self._by_id[sid]
        return len(gone)

    def others(self, session: Session) -> list[Session]:
        """The user's other live sessions."""
        return [s for s in self._by_id.values() if s.user == session.user and s != session]

    def expire(self, now: float) -> None:
        for sid in [sid for sid, s in self._by_id.items() if now >= s.expires]:
            del self._by_id[sid]


# ---------------------------------------------------------------------------------- CSRF


class CsrfSigner:
    """Issues and checks CSRF tokens: ``<base64 json>.<base64 hmac>``, as upstream's, with the
    session id inside the MAC."""

    def __init__(self, key: bytes | None = None, max_age: float = CSRF_MAX_AGE) -> None:
        self._key = secrets.token_bytes(64) if key is None else key
        self.max_age = max_age

    def _mac(self, body: bytes, sid: str) -> str:
        return _b64(hmac.new(self._key, body + b"\x00" + sid.encode(), hashlib.sha256).digest())

    def issue(self, sid: str, now: float) -> str:
        body = json.dumps(
            {"nonce": _b64(secrets.token_bytes(32)), "expires_at": now + self.max_age},
            separators=(",", ":"),
        ).encode()
        return f"{_b64(body)}.{self._mac(body, sid)}"

    def verify(self, token: str | None, sid: str, now: float) -> None:
        """Raises :class:`CsrfError` unless ``token`` was issued to ``sid`` and is fresh."""
        if not token:
            raise CsrfError(f"no {CSRF_HEADER} header: get one from GET /api/csrf")
        body_text, _, mac = token.partition(".")
        try:
            body = _unb64(body_text)
        except ValueError as exc:
            raise CsrfError("invalid CSRF token") from exc
        if not mac or not hmac.compare_digest(mac, self._mac(body, sid)):
            raise CsrfError("invalid CSRF token")
        try:
            expires = float(json.loads(body)["expires_at"])
        except (ValueError, KeyError, TypeError) as exc:
            raise CsrfError("invalid CSRF token") from exc
        if now > expires:
            raise CsrfError("CSRF token expired: get a new one from GET /api/csrf")


# ---------------------------------------------------------------------------------- throttle


@dataclass
class _Record:
    failures: list[float] = field(default_factory=list)
    locked_until: float = 0.0
    lockouts: int = 0


class LoginThrottle:
    """Failed logins per client (an address): ``check`` before trying, ``failed`` after a
    refusal, ``succeeded`` after a login."""

    def __init__(
        self,
        max_failures: int = 5,
        window: float = 300.0,
        lockout: float = 30.0,
        max_lockout: float = 3600.0,
        max_clients: int = 10_000,
    ) -> None:
        if max_failures < 1 or window <= 0 or lockout <= 0:
            raise ValueError("max_failures, window and lockout must be positive")
        self.max_failures = max_failures
        self.window = window
        self.lockout = lockout
        self.max_lockout = max_lockout
        self.max_clients = max_clients
        self._clients: dict[str, _Record] = {}

    def check(self, client: str, now: float) -> None:
        """Raises :class:`ThrottledError` while ``client`` is locked out."""
        record = self._clients.get(client)
        if record is not None and now < record.locked_until:
            raise ThrottledError(record.locked_until - now)

    def failed(self, client: str, now: float) -> None:
        record = self._clients.get(client)
        if record is None:
            if len(self._clients) >= self.max_clients:
                self._forget_idle(now)
            record = self._clients[client] = _Record()
        record.failures = [t for t in record.failures if now - t < self.window] + [now]
        if len(record.failures) >= self.max_failures:
            record.locked_until = now + min(self.lockout * 2**record.lockouts, self.max_lockout)
            record.lockouts += 1
            record.failures.clear()

    def succeeded(self, client: str) -> None:
        self._clients.pop(client, None)

    def _forget_idle(self, now: float) -> None:
        for client, rec in list(self._clients.items()):
            if now >= rec.locked_until and all(now - t >= self.window for t in rec.failures):
                del self._clients[client]

"""The hypervisor's errors: one base, each carrying the HTTP status the dashboard answers with
(``{"error": "..."}`` and that status, from one middleware in :mod:`.api`)."""

from __future__ import annotations

__all__ = [
    "AccountError",
    "BadLoginError",
    "BadRequestError",
    "CsrfError",
    "HypervisorError",
    "NotLoggedInError",
    "TerminalError",
    "ThrottledError",
    "VisorCallError",
    "VisorOfflineError",
]


class HypervisorError(Exception):
    """Base of the hypervisor's errors; ``status`` is the HTTP status it is answered with."""

    status = 500


class NotLoggedInError(HypervisorError, PermissionError):
    """No session cookie, or one that is unknown or expired (upstream's ``ErrBadSession``)."""

    status = 401

    def __init__(self, message: str = "not logged in: the session cookie is missing or expired"):
        super().__init__(message)


class BadLoginError(HypervisorError, PermissionError):
    """Wrong user name or password (upstream's ``ErrBadLogin``)."""

    status = 401

    def __init__(self, message: str = "incorrect username or password") -> None:
        super().__init__(message)


class CsrfError(HypervisorError, PermissionError):
    """A mutating call without a valid ``X-CSRF-Token`` header."""

    status = 403


class AccountError(HypervisorError, ValueError):
    """A user name or password that the rules refuse, or a second account."""

    status = 400


class ThrottledError(HypervisorError, PermissionError):
    """Too many failed logins from one client: ``retry_after`` seconds to wait."""

    status = 429

    def __init__(self, retry_after: float) -> None:
        super().__init__(f"too many failed logins: try again in {retry_after:.0f} s")
        self.retry_after = retry_after


class VisorOfflineError(HypervisorError, ConnectionError):
    """The visor named is not connected to this hypervisor (or its link just dropped)."""

    status = 404


class VisorCallError(HypervisorError, ConnectionError):
    """A managed visor could not be reached over its link (502), or answered with an error
    (its own status and message, passed on)."""

    def __init__(self, message: str, status: int = 502) -> None:
        super().__init__(message)
        self.status = status


class BadRequestError(HypervisorError, ValueError):
    """A malformed request: a bad key, a body that is not the JSON expected."""

    status = 400


class TerminalError(HypervisorError, ValueError):
    """A terminal request or message the dashboard does not understand (a size out of range, a
    control message that is not ``{"type": "resize", "rows": …, "cols": …}``)."""

    status = 400

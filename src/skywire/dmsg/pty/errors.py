"""dmsgpty errors: one base, the upstream texts where a peer sees them.

An error raised by the host's pty becomes the net/rpc ``Response.Error`` string, so the texts of
:class:`PtyNotRunningError`, :class:`PtyAlreadyRunningError` and :class:`PtyEOFError` are those
of upstream ``pkg/dmsgpty/pty_unix.go`` and of Go's ``os.File.Read`` on a pty master.
"""

from __future__ import annotations

__all__ = [
    "ALREADY_RUNNING_TEXT",
    "EIO_READ_TEXT",
    "EOF_TEXT",
    "NOT_RUNNING_TEXT",
    "PtyAlreadyRunningError",
    "PtyEOFError",
    "PtyError",
    "PtyNotRunningError",
    "PtyRejectedError",
    "PtyRemoteError",
    "PtyRequestError",
]

NOT_RUNNING_TEXT = "no active pty session"
ALREADY_RUNNING_TEXT = "a pty session is already running"
EIO_READ_TEXT = "read /dev/ptmx: input/output error"
"""What a Go host answers to ``Read`` once the shell has gone (EIO on the master)."""
EOF_TEXT = "EOF"


class PtyError(Exception):
    """Base of every dmsgpty failure."""


class PtyRequestError(PtyError, ValueError):
    """A request line (``u8 len ‖ URI``) that cannot be sent or understood."""


class PtyRejectedError(PtyError, ConnectionRefusedError):
    """The host answered the request with the reject byte (whitelist, or no such endpoint)."""

    def __init__(self, message: str = "request rejected by remote dmsgpty-host") -> None:
        super().__init__(message)


class PtyNotRunningError(PtyError):
    """No command runs on the pty (upstream ``ErrPtyNotRunning``)."""

    def __init__(self, message: str = NOT_RUNNING_TEXT) -> None:
        super().__init__(message)


class PtyAlreadyRunningError(PtyError):
    """``Start`` while a command runs (upstream ``ErrPtyAlreadyRunning``)."""

    def __init__(self, message: str = ALREADY_RUNNING_TEXT) -> None:
        super().__init__(message)


class PtyEOFError(PtyError, EOFError):
    """The command has ended: nothing more will be read from the pty."""

    def __init__(self, message: str = EIO_READ_TEXT) -> None:
        super().__init__(message)


class PtyRemoteError(PtyError):
    """The host answered a call with an error string."""

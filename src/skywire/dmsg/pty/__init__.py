"""dmsgpty: a shell over dmsg, byte-compatible with upstream ``skycoin/dmsg/pkg/dmsgpty``.

* :mod:`.protocol`: the request line, the answer byte, the gob types of the RPC calls (sans-I/O);
* :mod:`.local`: a command on a local pty; :mod:`.gateway`: the ``pty`` and ``whitelist`` RPC
  services and the whitelist;
* :mod:`.host`: :class:`PtyHost`, serving port 22 (and the local CLI socket);
* :mod:`.client`: :class:`PtyClient`; :mod:`.term`: the local terminal attached to one.
"""

from __future__ import annotations

from skywire.dmsg.pty.client import PtyClient, WhitelistClient, connect_cli
from skywire.dmsg.pty.errors import (
    PtyAlreadyRunningError,
    PtyEOFError,
    PtyError,
    PtyNotRunningError,
    PtyRejectedError,
    PtyRemoteError,
    PtyRequestError,
)
from skywire.dmsg.pty.gateway import MemoryWhitelist, PtyBackend, Whitelist
from skywire.dmsg.pty.host import PtyHost, PtyHostConfig
from skywire.dmsg.pty.local import LocalPty
from skywire.dmsg.pty.protocol import (
    DEFAULT_CMD,
    DEFAULT_PORT,
    PTY_PROXY_URI,
    PTY_URI,
    WHITELIST_URI,
    CommandReq,
    WinSize,
    proxy_uri,
)

__all__ = [
    "DEFAULT_CMD",
    "DEFAULT_PORT",
    "PTY_PROXY_URI",
    "PTY_URI",
    "WHITELIST_URI",
    "CommandReq",
    "LocalPty",
    "MemoryWhitelist",
    "PtyAlreadyRunningError",
    "PtyBackend",
    "PtyClient",
    "PtyEOFError",
    "PtyError",
    "PtyHost",
    "PtyHostConfig",
    "PtyNotRunningError",
    "PtyRejectedError",
    "PtyRemoteError",
    "PtyRequestError",
    "Whitelist",
    "WhitelistClient",
    "WinSize",
    "connect_cli",
    "proxy_uri",
]

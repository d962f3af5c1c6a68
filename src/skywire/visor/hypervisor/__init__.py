"""The hypervisor: a web dashboard, served by a visor, that manages it and every visor that
names it in ``hypervisors``.

Design, and why:

* **Who dials whom.** A managed visor dials the hypervisor on dmsg port 46 and keeps the stream
  (upstream's ``ServeRPCClient``): the open stream is the visor's presence, so the list is live
  without polling, and a visor behind any NAT can be managed. Only the keys a visor names are
  dialed, and a dmsg stream is Noise KK to that key, so **a visor serves its control API to no
  one else**; it listens on nothing new (:mod:`.link`).
* **What runs over the link.** Upstream runs gob net/rpc on the stream; here a yamux session
  runs on it and every dashboard request is HTTP/1.1 on a yamux stream opened by the
  hypervisor, answered by the visor's own control API application (the one ``skywire cli``
  uses, :class:`~skywire.visor.rpc.RPCServer`, plus ``/visor/dmsg`` and ``/visor/log``:
  :mod:`.control`). One API, one set of handlers; slow calls do not block the rest. The
  hypervisor reaches its own visor through the same code on in-memory streams.
* **The dashboard** (:mod:`.api`, :mod:`.api_visors`) keeps upstream's ``/api`` names where
  they fit and proxies each per-visor call over the link. One page (``static/``: HTML, plain
  JS, CSS; no CDN) polls it; the latency chart is drawn from those polls, kept in the page.
* **Terminals** (:mod:`.terminal`, sans-I/O; :mod:`.terminal_aio`): ``GET
  /api/visors/{pk}/pty`` is a websocket to a shell on that visor (upstream's ``/pty/{pk}``),
  dialed over dmsg to its dmsgpty host, which lets the keys in its ``hypervisors`` in; the
  hypervisor's own visor's shell runs in-process. The page draws it in a ``<pre>``
  (``static/term.js``).
* **Login** (:mod:`.auth`, sans-I/O; :mod:`.users`, SQLite): one account, created on the first
  visit (``POST /api/create-account``, as upstream) or from ``hypervisor.password``; scrypt
  hashes; sessions on the server, the cookie a random id (``HttpOnly``, ``SameSite=Strict``,
  ``Secure`` with TLS); upstream's 30 s CSRF tokens (``GET /api/csrf``), required on every
  mutating call and bound to the session; failed logins throttled per client address.
"""

from skywire.visor.hypervisor.errors import HypervisorError
from skywire.visor.hypervisor.link import HYPERVISOR_PORT, HypervisorClient, LinkServer
from skywire.visor.hypervisor.server import Hypervisor, client_of, hypervisor_of
from skywire.visor.hypervisor.users import set_password

__all__ = [
    "HYPERVISOR_PORT",
    "Hypervisor",
    "HypervisorClient",
    "HypervisorError",
    "LinkServer",
    "client_of",
    "hypervisor_of",
    "set_password",
]

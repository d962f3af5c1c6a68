"""skychat: text messages between visors over routes to routing port 1, read and written on a
web page at 127.0.0.1:8001.

* :mod:`~skywire.apps.skychat.chat` — :class:`Skychat`: routes on port 1 (accepted, or dialled
  on the first send to a peer), conversations, the page's server.
* :mod:`~skywire.apps.skychat.codec` — the bytes of a message on a route, sans-I/O (upstream's
  raw writes, plus a newline; :class:`MessageDecoder` reads both).
* :mod:`~skywire.apps.skychat.history` — conversations in memory, bounded, sans-I/O.
* :mod:`~skywire.apps.skychat.updates` — new messages handed to subscribers (event streams).
* :mod:`~skywire.apps.skychat.web` — ``/``, ``POST /message``, ``/sse``, ``/conversations``,
  ``/status``.
* :mod:`~skywire.apps.skychat.page` — the self-contained HTML page.
* :mod:`~skywire.apps.skychat.config` — port, web address, dial policy, counters.
"""

from __future__ import annotations

from skywire.apps.skychat.chat import ChatListener, ChatRoute, ChatRouter, Skychat
from skywire.apps.skychat.codec import (
    MAX_INCOMING,
    MAX_MESSAGE_BYTES,
    MessageDecoder,
    check_message,
    encode_message,
)
from skywire.apps.skychat.config import CHAT_PORT, WEB_ADDRESS, ChatStats, ChatStatus, DialPolicy
from skywire.apps.skychat.errors import (
    MessageError,
    MessageTooLongError,
    PeerUnreachableError,
    RecipientError,
    RequestError,
    SkychatClosedError,
    SkychatError,
    SubscriptionEndedError,
)
from skywire.apps.skychat.history import ChatMessage, Conversation, Direction, History
from skywire.apps.skychat.updates import Subscription
from skywire.apps.skychat.web import make_app

__all__ = [
    "CHAT_PORT",
    "MAX_INCOMING",
    "MAX_MESSAGE_BYTES",
    "WEB_ADDRESS",
    "ChatListener",
    "ChatMessage",
    "ChatRoute",
    "ChatRouter",
    "ChatStats",
    "ChatStatus",
    "Conversation",
    "DialPolicy",
    "Direction",
    "History",
    "MessageDecoder",
    "MessageError",
    "MessageTooLongError",
    "PeerUnreachableError",
    "RecipientError",
    "RequestError",
    "Skychat",
    "SkychatClosedError",
    "SkychatError",
    "Subscription",
    "SubscriptionEndedError",
    "check_message",
    "encode_message",
    "make_app",
]

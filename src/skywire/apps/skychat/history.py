"""Conversations kept in memory, bounded, sans-I/O: time comes in as ``now``.

Upstream keeps nothing on the visor side: its page stores conversations in the browser's
``localStorage`` (``cmd/apps/skychat/commands/static/index.html``, ``saveRecipients`` / the
``messages`` map) and a message that arrives while no page listens is thrown away
(``skychat.go`` ``handleConn``: ``select { case clientCh <- msg: … default: "trashed" }``).
Ours keeps them here, so any page (or a page loaded later) shows them: at most ``per_peer``
messages per peer (the oldest go first) and at most ``peers`` conversations (the one quiet the
longest goes first), so ``per_peer × peers`` messages in all.
"""

from __future__ import annotations

import enum
from collections import OrderedDict, deque
from dataclasses import dataclass

from skywire.cipher import PubKey

__all__ = ["ChatMessage", "Conversation", "Direction", "History"]


class Direction(enum.Enum):
    IN = "in"  # the peer sent it
    OUT = "out"  # this visor sent it


@dataclass(frozen=True, slots=True)
class ChatMessage:
    """One message: ``seq`` counts every message this chat has kept, from 1."""

    seq: int
    peer: PubKey
    direction: Direction
    text: str
    at: float  # seconds since the epoch


@dataclass(frozen=True, slots=True)
class Conversation:
    """The messages kept for one peer, oldest first; ``dropped`` were let go to stay bounded.
    ``connected``: a route to the peer is open (filled in by the chat, not the history)."""

    peer: PubKey
    messages: tuple[ChatMessage, ...]
    dropped: int = 0
    connected: bool = False

    @property
    def last_at(self) -> float:
        return self.messages[-1].at if self.messages else 0.0


class _Kept:
    def __init__(self, per_peer: int) -> None:
        self.messages: deque[ChatMessage] = deque(maxlen=per_peer)
        self.dropped = 0


class History:
    """``add(peer, direction, text, now)`` keeps a message and returns it; reads never change
    anything. See the module docstring for the bounds."""

    def __init__(self, *, per_peer: int = 500, peers: int = 200) -> None:
        if per_peer < 1 or peers < 1:
            raise ValueError("per_peer and peers must be at least 1")
        self.per_peer = per_peer
        self.max_peers = peers
        self.seq = 0
        self.dropped_conversations = 0
        self._kept: OrderedDict[PubKey, _Kept] = OrderedDict()  # quietest first

    def __len__(self) -> int:
        """Messages kept, all peers together."""
        return sum(len(k.messages) for k in self._kept.values())

    def add(self, peer: PubKey, direction: Direction, text: str, now: float) -> ChatMessage:
        kept = self._kept.get(peer)
        if kept is None:
            while len(self._kept) >= self.max_peers:
                self._kept.popitem(last=False)
                self.dropped_conversations += 1
            kept = self._kept[peer] = _Kept(self.per_peer)
        else:
            self._kept.move_to_end(peer)
        if len(kept.messages) == self.per_peer:
            kept.dropped += 1
        self.seq += 1
        message = ChatMessage(self.seq, peer, direction, text, now)
        kept.messages.append(message)
        return message

    def peers(self) -> list[PubKey]:
        """Peers with a conversation, the most recently active first."""
        return list(reversed(self._kept))

    def conversation(self, peer: PubKey) -> Conversation:
        """The conversation with ``peer`` (empty if there is none)."""
        kept = self._kept.get(peer)
        if kept is None:
            return Conversation(peer, ())
        return Conversation(peer, tuple(kept.messages), kept.dropped)

    def conversations(self) -> list[Conversation]:
        """Every conversation, the most recently active first."""
        return [self.conversation(peer) for peer in self.peers()]

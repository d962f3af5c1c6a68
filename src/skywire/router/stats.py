"""The router's counters: packets, dials, and the route setups this visor asked for (by outcome,
with their latency in a histogram the visor's ``/metrics`` exposes). Pure bookkeeping."""

from __future__ import annotations

import collections
import enum
from dataclasses import dataclass, field

from skywire.cipher import PubKey
from skywire.debug.metrics import Histogram

__all__ = ["SETUP_BUCKETS", "RouterStats", "SetupOutcome"]

SETUP_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 30.0)
"""Bounds (seconds) of the route setup latency histogram."""


class SetupOutcome(enum.StrEnum):
    """How one route setup attempt (setup node, then the route handshake) ended."""

    SUCCESS = "success"
    SETUP_FAILURE = "setup_failure"
    """The setup node refused or failed (or could not be reached)."""
    BAD_ANSWER = "bad_answer"
    """The setup node answered with rules for another route."""
    HANDSHAKE_FAILURE = "handshake_failure"
    """The rules were installed but the route handshake did not complete."""
    ERROR = "error"
    """Anything else: cancelled, an unexpected error."""


def _setup_histogram() -> Histogram:
    return Histogram(
        "skywire_visor_route_setup_seconds",
        "Time of each route setup attempt this visor dialled (setup node and route handshake),"
        " whatever the outcome.",
        SETUP_BUCKETS,
    )


@dataclass
class RouterStats:
    forwarded: int = 0
    delivered: int = 0
    dropped: int = 0
    dials: int = 0
    dial_failures: int = 0
    setup_failures: int = 0
    handshake_failures: int = 0
    routes_broken: int = 0
    """Route groups and passing routes torn down because a transport of theirs went away."""
    excluded: list[PubKey] = field(default_factory=list)
    setups: collections.Counter[SetupOutcome] = field(default_factory=collections.Counter)
    """Route setup attempts by outcome."""
    setup_seconds: Histogram = field(default_factory=_setup_histogram)

    def setup_done(self, outcome: SetupOutcome, seconds: float) -> None:
        """Count one finished setup attempt."""
        self.setups[outcome] += 1
        self.setup_seconds.observe(seconds)
        if outcome is SetupOutcome.SETUP_FAILURE:
            self.setup_failures += 1
        elif outcome is SetupOutcome.HANDSHAKE_FAILURE:
            self.handshake_failures += 1

    def setup_outcomes(self) -> dict[str, int]:
        """Every outcome's count, zeros included (what ``/metrics`` shows)."""
        return {o.value: self.setups.get(o, 0) for o in SetupOutcome}

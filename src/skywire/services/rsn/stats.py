"""Route setup node statistics: what ``/stats`` serves (spec §7, skycoin/skywire PR #3042).

Counts requests, successes and failures by class, keeps a window of setup latencies for the
percentiles, and counts the churn-tolerance retries (dial retries on dmsg error 202, re-dials of
stale pooled connections). Pure bookkeeping: no I/O, time passed in by the caller.
"""

from __future__ import annotations

import enum
import math
from collections import Counter, deque
from typing import Any

from skywire.debug.metrics import Histogram

__all__ = ["SETUP_BUCKETS", "FailureClass", "SetupStats", "percentile"]

SETUP_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 30.0)
"""Bounds (seconds) of the setup latency histogram."""


class FailureClass(enum.StrEnum):
    """Why a route setup failed (the keys of ``failures_by_class``)."""

    ID_RESERVATION = "id_reservation"
    """Dialling a hop on port 136 or its ``ReserveIDs`` failed."""
    CONTEXT_DEADLINE = "context_deadline"
    """The request, or one hop's call, ran past its deadline."""
    SOURCE_UNREACHABLE = "source_unreachable"
    """The route's source visor (the requester) could not be reached on port 136."""
    CIRCUIT_OPEN = "circuit_open"
    """Reserved (upstream per-destination circuit breaker; not implemented here)."""
    INTERMEDIARY_RULES = "intermediary_rules"
    """``AddIntermediaryRules`` failed on an intermediary."""
    DESTINATION_RULES = "destination_rules"
    """``AddEdgeRules`` failed on the destination visor."""
    INVALID_ROUTE = "invalid_route"
    """The requested route is malformed or not the requester's."""
    UNKNOWN = "unknown"


def percentile(sorted_values: list[float], p: float) -> float | None:
    """Nearest-rank percentile of an ascending list (``None`` when empty)."""
    if not sorted_values:
        return None
    rank = max(1, math.ceil(p / 100 * len(sorted_values)))
    return sorted_values[min(rank, len(sorted_values)) - 1]


class SetupStats:
    """Counters of one setup node."""

    def __init__(self, window: int = 10_000) -> None:
        self.requests = 0
        self.successes = 0
        self.in_flight = 0
        self.failures: Counter[FailureClass] = Counter()
        self.latencies: deque[float] = deque(maxlen=window)
        self.latency_histogram = Histogram(
            "skywire_rsn_route_setup_seconds",
            "Time from a route setup request to its answer, whatever the outcome.",
            SETUP_BUCKETS,
        )
        self.dial_retries = 0
        """Hop dials retried after dmsg error 202."""
        self.stale_redials = 0
        """Calls re-dialled once because the pooled connection was dead."""
        self.rollbacks = 0
        self.last_errors: deque[tuple[FailureClass, str]] = deque(maxlen=20)

    def started(self) -> None:
        self.requests += 1
        self.in_flight += 1

    def succeeded(self, seconds: float) -> None:
        self.in_flight -= 1
        self.successes += 1
        self.latencies.append(seconds)
        self.latency_histogram.observe(seconds)

    def failed(self, cls: FailureClass, seconds: float, message: str = "") -> None:
        self.in_flight -= 1
        self.failures[cls] += 1
        self.latencies.append(seconds)
        self.latency_histogram.observe(seconds)
        self.last_errors.append((cls, message))

    def outcomes(self) -> dict[str, int]:
        """Finished setups by outcome: ``success`` or a :class:`FailureClass` value."""
        return {"success": self.successes} | {
            c.value: self.failures.get(c, 0) for c in FailureClass
        }

    @property
    def failure_count(self) -> int:
        return sum(self.failures.values())

    @property
    def success_rate(self) -> float | None:
        done = self.successes + self.failure_count
        return self.successes / done if done else None

    def snapshot(self) -> dict[str, Any]:
        """The ``/stats`` JSON object."""
        lat = sorted(self.latencies)
        ms = {
            name: (None if v is None else round(v * 1000, 3))
            for name, v in (
                ("p50", percentile(lat, 50)),
                ("p90", percentile(lat, 90)),
                ("p99", percentile(lat, 99)),
                ("max", lat[-1] if lat else None),
            )
        }
        rate = self.success_rate
        return {
            "requests": self.requests,
            "in_flight": self.in_flight,
            "successes": self.successes,
            "failures": self.failure_count,
            "success_rate": None if rate is None else round(rate, 6),
            "failures_by_class": {c.value: self.failures.get(c, 0) for c in FailureClass},
            "latency_ms": ms,
            "retries": {
                "dial_202": self.dial_retries,
                "stale_connection": self.stale_redials,
            },
            "rollbacks": self.rollbacks,
            "last_errors": [{"class": c.value, "error": e} for c, e in self.last_errors],
        }

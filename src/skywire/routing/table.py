"""The routing table (``pkg/routing/table.go``), sans-I/O: time enters only as an argument.

* Route IDs come from :meth:`RoutingTable.reserve_keys`: they start at 1, strictly increase and
  are never handed out twice; reserving fails once the counter would reach 2^32 − 1.
* A rule is **expired** when the time since its last activity exceeds its keep-alive. Looking up
  an expired rule fails with :class:`RuleTimedOutError`; :meth:`~RoutingTable.collect_garbage`
  removes and returns expired rules (the router runs it every 5 s and closes the route group of
  an expired Consume rule).
* Activity is refreshed by saving a rule, by looking up a Consume rule (:meth:`~RoutingTable.rule`)
  and, for forwarding rules, by :meth:`~RoutingTable.update_activity`.

``now`` is a monotonic clock reading in seconds (e.g. ``loop.time()``); keep-alives are in
nanoseconds as on the wire.
"""

from __future__ import annotations

from collections.abc import Iterable

from skywire.routing.rule import ConsumeRule, ForwardRule, RouteDescriptor, Rule

__all__ = [
    "MAX_ROUTE_ID",
    "NoAvailableRoutesError",
    "RoutingTable",
    "RoutingTableError",
    "RuleNotFoundError",
    "RuleTimedOutError",
]

MAX_ROUTE_ID = 0xFFFFFFFF


class RoutingTableError(Exception):
    """Base class of routing table refusals."""


class RuleNotFoundError(RoutingTableError, KeyError):
    def __init__(self, key: int) -> None:
        super().__init__("rule not found")
        self.key = key

    def __str__(self) -> str:
        return f"rule not found (route ID {self.key})"


class RuleTimedOutError(RoutingTableError):
    def __init__(self, key: int) -> None:
        super().__init__("rule keep-alive timeout exceeded")
        self.key = key

    def __str__(self) -> str:
        return f"rule keep-alive timeout exceeded (route ID {self.key})"


class NoAvailableRoutesError(RoutingTableError):
    def __init__(self) -> None:
        super().__init__("no available routeIDs")


class RoutingTable:
    """In-memory rules keyed by this visor's route IDs, with last-activity times."""

    def __init__(self, *, start_after: int = 0) -> None:
        """``start_after``: IDs up to this one count as already handed out (default none)."""
        if not 0 <= start_after < MAX_ROUTE_ID:
            raise ValueError(f"start_after {start_after} out of range")
        self._next_id = start_after
        self._rules: dict[int, Rule] = {}
        self._activity: dict[int, float] = {}

    # -- route IDs -----------------------------------------------------------------------------

    @property
    def last_reserved(self) -> int:
        """The highest route ID handed out so far (0 before the first reservation)."""
        return self._next_id

    def reserve_keys(self, n: int) -> list[int]:
        """Reserve ``n`` fresh route IDs (``last+1 … last+n``); all or nothing."""
        if n < 0:
            raise ValueError(f"cannot reserve {n} route IDs")
        if self._next_id + n >= MAX_ROUTE_ID:
            raise NoAvailableRoutesError()
        first = self._next_id + 1
        self._next_id += n
        return list(range(first, self._next_id + 1))

    # -- rules ---------------------------------------------------------------------------------

    def _expired(self, key: int, rule: Rule, now: float) -> bool:
        last = self._activity.get(key)
        return last is None or (now - last) * 1e9 > rule.keep_alive

    def save_rule(self, rule: Rule, now: float) -> None:
        """Store ``rule`` under its key route ID (replacing any rule there); activity = now."""
        key = rule.key_route_id
        self._rules[key] = rule
        self._activity[key] = now

    def rule(self, key: int, now: float) -> Rule:
        """The live rule under ``key``; a Consume rule's activity is refreshed by the lookup."""
        rule = self._rules.get(key)
        if rule is None:
            raise RuleNotFoundError(key)
        if self._expired(key, rule, now):
            raise RuleTimedOutError(key)
        if isinstance(rule, ConsumeRule):
            self._activity[key] = now
        return rule

    def update_activity(self, key: int, now: float) -> None:
        """Mark the rule under ``key`` active (a packet was forwarded through it)."""
        rule = self._rules.get(key)
        if rule is None:
            raise RuleNotFoundError(key)
        if self._expired(key, rule, now):
            raise RuleTimedOutError(key)
        self._activity[key] = now

    def last_activity(self, key: int) -> float:
        try:
            return self._activity[key]
        except KeyError:
            raise RuleNotFoundError(key) from None

    def rules_with_desc(self, desc: RouteDescriptor, now: float) -> list[Rule]:
        """Live Consume and Forward rules carrying ``desc``."""
        return [
            r
            for k, r in self._rules.items()
            if isinstance(r, ConsumeRule | ForwardRule)
            and r.desc == desc
            and not self._expired(k, r, now)
        ]

    def all_rules(self, now: float) -> list[Rule]:
        """Every live rule, in the order they were first saved."""
        return [r for k, r in self._rules.items() if not self._expired(k, r, now)]

    def del_rules(self, keys: Iterable[int]) -> None:
        """Remove the rules under ``keys``; unknown keys are ignored."""
        for key in keys:
            self._rules.pop(key, None)
            self._activity.pop(key, None)

    def count(self) -> int:
        """Number of stored rules, expired ones included until collected."""
        return len(self._rules)

    def __len__(self) -> int:
        return len(self._rules)

    def __contains__(self, key: object) -> bool:
        return key in self._rules

    def collect_garbage(self, now: float) -> list[Rule]:
        """Remove and return every expired rule."""
        expired = [k for k, r in self._rules.items() if self._expired(k, r, now)]
        out = [self._rules[k] for k in expired]
        self.del_rules(expired)
        return out

    def next_expiry(self) -> float | None:
        """The earliest time at which a stored rule becomes expired (``None``: no rules).

        A rule expires once idle time *exceeds* its keep-alive, so at the returned instant it is
        still live and any later ``now`` collects it.
        """
        times = [self._activity[k] + r.keep_alive / 1e9 for k, r in self._rules.items()]
        return min(times, default=None)

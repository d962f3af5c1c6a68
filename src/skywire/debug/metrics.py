"""Prometheus metrics without a dependency: a per-instance :class:`Registry` of counters, gauges
and histograms rendered in the text exposition format 0.0.4, and the aiohttp glue that serves
it (``GET /metrics``) and counts every answered request.

A metric either holds its own value (``inc``, ``set``, ``observe``) or reads it at scrape time
from a ``callback``, so that a component's existing stats object is exposed as it is, counted
once. Each service instance builds its own registry: nothing here is process-wide.

>>> reg = Registry()
>>> hits = reg.counter("app_hits_total", "Hits.", ("path",))
>>> hits.labels("/a").inc()
>>> print(reg.render(), end="")
# HELP app_hits_total Hits.
# TYPE app_hits_total counter
app_hits_total{path="/a"} 1
"""

from __future__ import annotations

import asyncio
import bisect
import itertools
import math
import re
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from typing import ClassVar, TypeVar

from aiohttp import web
from aiohttp.typedefs import Handler, Middleware

from skywire.debug.errors import DebugError

__all__ = [
    "CONTENT_TYPE",
    "DEFAULT_BUCKETS",
    "HTTP_REQUESTS",
    "Counter",
    "Gauge",
    "Histogram",
    "Metric",
    "MetricError",
    "Registry",
    "add_metrics_route",
    "count_requests",
    "format_value",
    "instrument_app",
    "metrics_handler",
    "requests_middleware",
]

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
DEFAULT_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
HTTP_REQUESTS = "skywire_http_requests_total"
"""Every service's request counter, labelled ``route`` (the pattern), ``method``, ``status``."""

_NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*\Z")
_LABEL = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*\Z")
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"})

LabelValues = tuple[str, ...]
Reading = float | Mapping[str, float] | Mapping[LabelValues, float]
"""What a callback returns: the value, or (labelled) the value of each label set; with one
label a key may be the plain string."""
Callback = Callable[[], Reading]


class MetricError(DebugError, ValueError):
    """A bad metric or label name, label set, value or registration (a programming error)."""


def _check_name(name: str) -> None:
    if not _NAME.match(name):
        raise MetricError(f"invalid metric name {name!r}")


def _check_labels(names: Sequence[str], reserved: frozenset[str] = frozenset()) -> LabelValues:
    out = tuple(names)
    for label in out:
        if not _LABEL.match(label) or label.startswith("__") or label in reserved:
            raise MetricError(f"invalid label name {label!r}")
    if len(set(out)) != len(out):
        raise MetricError(f"duplicate label names in {out}")
    return out


def _escape_label(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _escape_help(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n")


def format_value(value: float) -> str:
    """A sample value as Go's Prometheus client writes it (``+Inf``, ``NaN``, ``3``, ``0.25``)."""
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if float(value).is_integer() and abs(value) < 1e15:
        return str(int(value))
    return repr(float(value))


def _sample(name: str, labels: Sequence[tuple[str, str]], value: float) -> str:
    if not labels:
        return f"{name} {format_value(value)}"
    inner = ",".join(f'{k}="{_escape_label(v)}"' for k, v in labels)
    return f"{name}{{{inner}}} {format_value(value)}"


class Metric:
    """A family: name, help text, label names; :meth:`lines` renders its samples."""

    kind: ClassVar[str] = "untyped"

    def __init__(self, name: str, help: str, labels: Sequence[str] = ()) -> None:
        _check_name(name)
        self.name = name
        self.help = help
        self.label_names = _check_labels(labels, frozenset({"le"}))

    def sample_names(self) -> frozenset[str]:
        """The names its samples use (two families may not share one)."""
        return frozenset({self.name})

    def key(self, values: Sequence[str], named: Mapping[str, str]) -> LabelValues:
        """Label values in declared order, from positional or keyword arguments."""
        if values and named:
            raise MetricError("label values either by position or by name, not both")
        if named:
            if set(named) != set(self.label_names):
                raise MetricError(f"{self.name}: labels {sorted(named)} != {self.label_names}")
            values = [named[n] for n in self.label_names]
        if len(values) != len(self.label_names):
            raise MetricError(f"{self.name}: {len(values)} label values for {self.label_names}")
        return tuple(str(v) for v in values)

    def samples(self) -> Iterator[tuple[str, list[tuple[str, str]], float]]:
        raise NotImplementedError

    def lines(self) -> Iterator[str]:
        yield f"# HELP {self.name} {_escape_help(self.help)}"
        yield f"# TYPE {self.name} {self.kind}"
        for name, labels, value in self.samples():
            yield _sample(name, labels, value)


class _Valued(Metric):
    """A counter or gauge: one value per label set, held here or read from ``callback``."""

    def __init__(
        self,
        name: str,
        help: str,
        labels: Sequence[str] = (),
        *,
        callback: Callback | None = None,
    ) -> None:
        super().__init__(name, help, labels)
        self.callback = callback
        self._values: dict[LabelValues, float] = {}
        if not self.label_names and callback is None:
            self._values[()] = 0.0

    def add_to(self, key: LabelValues, amount: float) -> None:
        """Add ``amount`` to the value of label set ``key`` (as :meth:`key` returns it)."""
        if self.callback is not None:
            raise MetricError(f"{self.name} is read from a callback, not changed")
        self._values[key] = self._values.get(key, 0.0) + amount

    def set_at(self, key: LabelValues, value: float) -> None:
        if self.callback is not None:
            raise MetricError(f"{self.name} is read from a callback, not changed")
        self._values[key] = float(value)

    def value(self, *values: str, **named: str) -> float:
        """The current value of one label set (0 if never touched)."""
        key = self.key(values, named)
        return self._read().get(key, 0.0)

    def _read(self) -> dict[LabelValues, float]:
        if self.callback is None:
            return dict(self._values)
        reading = self.callback()
        if isinstance(reading, int | float):
            if self.label_names:
                raise MetricError(f"{self.name}: a labelled callback must return a mapping")
            return {(): float(reading)}
        if not self.label_names:
            raise MetricError(f"{self.name}: an unlabelled callback must return a number")
        out: dict[LabelValues, float] = {}
        for k, v in reading.items():
            key = (k,) if isinstance(k, str) else tuple(k)
            if len(key) != len(self.label_names):
                raise MetricError(f"{self.name}: callback key {key} for {self.label_names}")
            out[key] = float(v)
        return out

    def samples(self) -> Iterator[tuple[str, list[tuple[str, str]], float]]:
        for key, value in sorted(self._read().items()):
            yield self.name, list(zip(self.label_names, key, strict=True)), value


class Counter(_Valued):
    """A value that only goes up; the name ends in ``_total``."""

    kind = "counter"

    def __init__(
        self,
        name: str,
        help: str,
        labels: Sequence[str] = (),
        *,
        callback: Callback | None = None,
    ) -> None:
        if not name.endswith("_total"):
            raise MetricError(f"counter name {name!r} must end in _total")
        super().__init__(name, help, labels, callback=callback)

    def inc(self, amount: float = 1.0) -> None:
        self.labels().inc(amount)

    def labels(self, *values: str, **named: str) -> BoundCounter:
        return BoundCounter(self, self.key(values, named))


class BoundCounter:
    """One label set of a :class:`Counter`."""

    def __init__(self, counter: Counter, key: LabelValues) -> None:
        self.counter = counter
        self.key = key

    def inc(self, amount: float = 1.0) -> None:
        if amount < 0 or math.isnan(amount):
            raise MetricError(f"{self.counter.name}: a counter cannot go down ({amount})")
        self.counter.add_to(self.key, amount)


class Gauge(_Valued):
    """A value that goes up and down."""

    kind = "gauge"

    def set(self, value: float) -> None:
        self.labels().set(value)

    def inc(self, amount: float = 1.0) -> None:
        self.labels().inc(amount)

    def dec(self, amount: float = 1.0) -> None:
        self.labels().inc(-amount)

    def labels(self, *values: str, **named: str) -> BoundGauge:
        return BoundGauge(self, self.key(values, named))


class BoundGauge:
    """One label set of a :class:`Gauge`."""

    def __init__(self, gauge: Gauge, key: LabelValues) -> None:
        self.gauge = gauge
        self.key = key

    def set(self, value: float) -> None:
        self.gauge.set_at(self.key, value)

    def inc(self, amount: float = 1.0) -> None:
        self.gauge.add_to(self.key, amount)


class Histogram(Metric):
    """Observations counted into buckets (upper bounds, inclusive), with their sum and count.

    Rendered cumulatively: ``name_bucket{le="b"}`` counts observations ``<= b``, the last
    bucket is ``le="+Inf"`` and equals ``name_count``.
    """

    kind = "histogram"

    def __init__(self, name: str, help: str, buckets: Sequence[float] = DEFAULT_BUCKETS) -> None:
        super().__init__(name, help)
        if name.endswith(("_bucket", "_sum", "_count")):
            raise MetricError(f"histogram name {name!r} ends in a reserved suffix")
        bounds = [float(b) for b in buckets if not (math.isinf(b) and b > 0)]
        if not bounds or any(math.isnan(b) or math.isinf(b) for b in bounds):
            raise MetricError(f"{name}: buckets must be finite numbers, at least one")
        if any(a >= b for a, b in itertools.pairwise(bounds)):
            raise MetricError(f"{name}: buckets must be strictly increasing")
        self.bounds = tuple(bounds)
        self._counts = [0] * (len(bounds) + 1)  # the last one is +Inf
        self.sum = 0.0
        self.count = 0

    def sample_names(self) -> frozenset[str]:
        n = self.name
        return frozenset({n, f"{n}_bucket", f"{n}_sum", f"{n}_count"})

    def observe(self, value: float) -> None:
        if math.isnan(value):
            raise MetricError(f"{self.name}: cannot observe NaN")
        self._counts[bisect.bisect_left(self.bounds, value)] += 1
        self.sum += value
        self.count += 1

    def samples(self) -> Iterator[tuple[str, list[tuple[str, str]], float]]:
        running = 0
        for bound, n in zip((*self.bounds, math.inf), self._counts, strict=True):
            running += n
            yield f"{self.name}_bucket", [("le", format_value(bound))], running
        yield f"{self.name}_sum", [], self.sum
        yield f"{self.name}_count", [], self.count


M = TypeVar("M", bound=Metric)


class Registry:
    """The metrics of one component instance, rendered in registration order."""

    def __init__(self) -> None:
        self._metrics: dict[str, Metric] = {}
        self._taken: set[str] = set()

    def register(self, metric: M) -> M:
        """Add ``metric`` (one made elsewhere, e.g. kept by a stats object) and return it."""
        clash = metric.sample_names() & self._taken
        if clash:
            raise MetricError(f"already registered: {sorted(clash)}")
        self._metrics[metric.name] = metric
        self._taken |= metric.sample_names()
        return metric

    def counter(
        self,
        name: str,
        help: str,
        labels: Sequence[str] = (),
        *,
        callback: Callback | None = None,
    ) -> Counter:
        return self.register(Counter(name, help, labels, callback=callback))

    def gauge(
        self,
        name: str,
        help: str,
        labels: Sequence[str] = (),
        *,
        callback: Callback | None = None,
    ) -> Gauge:
        return self.register(Gauge(name, help, labels, callback=callback))

    def histogram(
        self, name: str, help: str, buckets: Sequence[float] = DEFAULT_BUCKETS
    ) -> Histogram:
        return self.register(Histogram(name, help, buckets))

    def get(self, name: str) -> Metric | None:
        return self._metrics.get(name)

    def __iter__(self) -> Iterator[Metric]:
        return iter(list(self._metrics.values()))

    def render(self) -> str:
        """Every family in the text exposition format 0.0.4."""
        return "".join(line + "\n" for metric in self for line in metric.lines())


# ---------------------------------------------------------------------------- aiohttp
Refresh = Callable[[], Awaitable[None]]
"""Run before each scrape, e.g. to count a store's entries into plain gauges."""


def metrics_handler(registry: Registry, refresh: Refresh | None = None) -> Handler:
    """An aiohttp handler answering ``registry`` in the text format."""

    async def handle(_: web.Request) -> web.StreamResponse:
        if refresh is not None:
            await refresh()
        body = registry.render().encode()
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE})

    return handle


def add_metrics_route(
    app: web.Application,
    registry: Registry,
    path: str = "/metrics",
    *,
    refresh: Refresh | None = None,
) -> None:
    app.router.add_get(path, metrics_handler(registry, refresh))


def _route_label(request: web.Request) -> str:
    """The route's pattern (``/transports/id:{id}``), never the raw path: bounded labels."""
    resource = request.match_info.route.resource
    return resource.canonical if resource is not None else "unmatched"


def requests_middleware(counter: Counter) -> Middleware:
    """Count each answered request by route pattern, method and status (4xx/5xx included; a
    handler's uncaught error counts as the 500 aiohttp answers)."""

    @web.middleware
    async def count(request: web.Request, handler: Handler) -> web.StreamResponse:
        status: int | None = 500
        try:
            response = await handler(request)
            status = response.status
            return response
        except web.HTTPException as exc:
            status = exc.status
            raise
        except asyncio.CancelledError:
            status = None  # nobody is answered
            raise
        finally:
            if status is not None:
                method = request.method if request.method in _METHODS else "other"
                counter.labels(_route_label(request), method, str(status)).inc()

    return count


def count_requests(app: web.Application, registry: Registry) -> Counter:
    """Register :data:`HTTP_REQUESTS` and count ``app``'s requests into it. The middleware
    goes first, outside the application's own error middleware, to see the final status."""
    counter = registry.counter(
        HTTP_REQUESTS,
        "HTTP requests answered, by route pattern, method and status.",
        ("route", "method", "status"),
    )
    app.middlewares.insert(0, requests_middleware(counter))
    return counter


def instrument_app(
    app: web.Application,
    registry: Registry,
    path: str = "/metrics",
    *,
    refresh: Refresh | None = None,
) -> Registry:
    """:func:`count_requests` and :func:`add_metrics_route` on ``app`` (before it starts)."""
    count_requests(app, registry)
    add_metrics_route(app, registry, path, refresh=refresh)
    return registry

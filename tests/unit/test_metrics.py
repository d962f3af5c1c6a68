"""The metrics registry: text format 0.0.4 as the ``prometheus_client`` parser reads it, escaping,
cumulative histogram buckets, callback metrics, and refusals of bad names and uses."""

from __future__ import annotations

import math

import pytest
from prometheus_client.parser import text_string_to_metric_families

from skywire.debug.metrics import (
    Counter,
    Gauge,
    Histogram,
    MetricError,
    Registry,
    format_value,
)


def parsed(reg: Registry) -> dict[str, list[tuple[str, dict[str, str], float]]]:
    return {
        f.name: [(s.name, s.labels, s.value) for s in f.samples]
        for f in text_string_to_metric_families(reg.render())
    }


def test_counter_with_labels_renders_help_type_and_samples() -> None:
    reg = Registry()
    c = reg.counter("app_requests_total", "Requests.", ("route", "status"))
    c.labels("/a", "200").inc()
    c.labels(route="/a", status="200").inc(2)
    c.labels("/b", "404").inc()
    assert reg.render() == (
        "# HELP app_requests_total Requests.\n"
        "# TYPE app_requests_total counter\n"
        'app_requests_total{route="/a",status="200"} 3\n'
        'app_requests_total{route="/b",status="404"} 1\n'
    )
    families = list(text_string_to_metric_families(reg.render()))
    assert [(f.name, f.type, f.documentation) for f in families] == [
        ("app_requests", "counter", "Requests.")
    ]
    assert c.value("/a", "200") == 3 and c.value("/c", "500") == 0


def test_label_values_and_help_are_escaped() -> None:
    reg = Registry()
    nasty = 'back\\slash "quoted"\nnew line'
    g = reg.gauge("g", 'Help with \\ and\na newline and "quotes".', ("v",))
    g.labels(nasty).set(1.5)
    text = reg.render()
    assert '# HELP g Help with \\\\ and\\na newline and "quotes".\n' in text
    assert 'g{v="back\\\\slash \\"quoted\\"\\nnew line"} 1.5\n' in text
    (family,) = text_string_to_metric_families(text)
    assert family.documentation == 'Help with \\ and\na newline and "quotes".'
    assert family.samples[0].labels == {"v": nasty}
    assert family.samples[0].value == 1.5


def test_histogram_buckets_are_cumulative_with_sum_and_count() -> None:
    reg = Registry()
    h = reg.histogram("op_seconds", "Op time.", (0.1, 0.5, 1))
    for v in (0.05, 0.1, 0.3, 0.7, 2.0, 9.0):
        h.observe(v)
    samples = parsed(reg)["op_seconds"]
    assert samples == [
        ("op_seconds_bucket", {"le": "0.1"}, 2),  # 0.1 itself is in the 0.1 bucket
        ("op_seconds_bucket", {"le": "0.5"}, 3),
        ("op_seconds_bucket", {"le": "1"}, 4),
        ("op_seconds_bucket", {"le": "+Inf"}, 6),
        ("op_seconds_sum", {}, pytest.approx(12.15)),
        ("op_seconds_count", {}, 6),
    ]
    assert h.count == 6


def test_empty_histogram_renders_zeros() -> None:
    reg = Registry()
    reg.histogram("idle_seconds", "Nothing yet.", (1,))
    assert parsed(reg)["idle_seconds"] == [
        ("idle_seconds_bucket", {"le": "1"}, 0),
        ("idle_seconds_bucket", {"le": "+Inf"}, 0),
        ("idle_seconds_sum", {}, 0),
        ("idle_seconds_count", {}, 0),
    ]


class Stats:
    def __init__(self) -> None:
        self.relayed = 0
        self.types = {"stcpr": 2}


def test_callback_metrics_are_read_at_scrape_time() -> None:
    stats = Stats()
    reg = Registry()
    reg.counter("relayed_total", "Relayed.", callback=lambda: stats.relayed)
    reg.gauge("tps", "By type.", ("type",), callback=lambda: stats.types)
    reg.gauge("pairs", "By pair.", ("a", "b"), callback=lambda: {("x", "y"): 4})
    assert parsed(reg)["relayed"] == [("relayed_total", {}, 0)]
    stats.relayed = 7
    stats.types = {"stcpr": 1, "dmsg": 3}
    got = parsed(reg)
    assert got["relayed"] == [("relayed_total", {}, 7)]
    assert got["tps"] == [("tps", {"type": "dmsg"}, 3), ("tps", {"type": "stcpr"}, 1)]
    assert got["pairs"] == [("pairs", {"a": "x", "b": "y"}, 4)]


def test_a_callback_metric_cannot_be_changed_by_hand() -> None:
    c = Counter("read_total", "Read.", callback=lambda: 1)
    with pytest.raises(MetricError):
        c.inc()
    g = Gauge("read", "Read.", callback=lambda: 1)
    with pytest.raises(MetricError):
        g.set(2)


def test_a_callback_of_the_wrong_shape_is_refused() -> None:
    bad = Registry()
    bad.gauge("labelled", "x", ("t",), callback=lambda: 3)
    with pytest.raises(MetricError):
        bad.render()
    bad2 = Registry()
    bad2.gauge("wrong_arity", "x", ("a", "b"), callback=lambda: {("only-one",): 1})
    with pytest.raises(MetricError):
        bad2.render()


def test_gauge_up_and_down_and_special_values() -> None:
    reg = Registry()
    g = reg.gauge("level", "Level.")
    g.inc(3)
    g.dec()
    assert g.value() == 2
    g.set(math.inf)
    assert "level +Inf\n" in reg.render()
    g.set(math.nan)
    assert math.isnan(parsed(reg)["level"][0][2])
    assert [format_value(v) for v in (3.0, 0.25, -math.inf, 1e20)] == ["3", "0.25", "-Inf", "1e+20"]


@pytest.mark.parametrize("name", ["", "9lives", "has-dash", "sp ace", "é"])
def test_invalid_metric_names_are_refused(name: str) -> None:
    with pytest.raises(MetricError):
        Gauge(name, "x")


@pytest.mark.parametrize("label", ["", "__reserved", "le", "with-dash", "1st"])
def test_invalid_label_names_are_refused(label: str) -> None:
    with pytest.raises(MetricError):
        Gauge("ok", "x", (label,))


def test_misuses_are_refused() -> None:
    with pytest.raises(MetricError, match="_total"):
        Counter("requests", "x")
    with pytest.raises(MetricError):
        Gauge("dup", "x", ("a", "a"))
    with pytest.raises(MetricError, match="reserved"):
        Histogram("op_count", "x")
    with pytest.raises(MetricError, match="increasing"):
        Histogram("op_seconds", "x", (1, 1))
    with pytest.raises(MetricError):
        Histogram("op_seconds", "x", ())
    c = Counter("c_total", "x", ("a",))
    with pytest.raises(MetricError, match="down"):
        c.labels("v").inc(-1)
    with pytest.raises(MetricError):
        c.labels("v", "w")
    with pytest.raises(MetricError):
        c.labels(b="v")
    with pytest.raises(MetricError):
        Histogram("h", "x").observe(math.nan)


def test_names_are_unique_within_a_registry_but_not_across_registries() -> None:
    reg = Registry()
    reg.histogram("op", "x")
    with pytest.raises(MetricError):
        reg.gauge("op_count", "clashes with the histogram's count")
    with pytest.raises(MetricError):
        reg.gauge("op", "x")
    other = Registry()  # no state shared between instances
    other.gauge("op", "x").set(1)
    assert "op 1" in other.render() and "op 1" not in reg.render()


def test_one_histogram_kept_elsewhere_is_shown_by_each_registry() -> None:
    h = Histogram("kept_seconds", "Kept by a stats object.", (1,))
    a, b = Registry(), Registry()
    a.register(h)
    b.register(h)
    h.observe(0.5)
    assert parsed(a) == parsed(b)
    assert parsed(a)["kept_seconds"][-1] == ("kept_seconds_count", {}, 1)

"""The uptime accounting without I/O: what a heartbeat credits (across midnight, over the
tolerance, the first, a clock gone back), what a window of days sums to, the v2 shape, the
query parsers; and the visor's reporter over a client that fails on demand (an outage logged
once)."""

from __future__ import annotations

import asyncio
import logging

import pytest

from skywire.cipher import KeyPair
from skywire.services.ut.client import UTUnreachableError
from skywire.services.ut.errors import QueryError
from skywire.services.ut.uptime import (
    DAY,
    Credit,
    VisorRecord,
    check_tolerance,
    check_version,
    credits,
    day_of,
    day_start,
    parse_days,
    parse_keys,
    summarize,
    window,
)
from skywire.visor.config import UptimeTrackerConfig
from skywire.visor.uptime import UptimeReporter, report_interval, uptime_reporter

MIDNIGHT = day_start("2023-11-15")  # 1_700_006_400.0
TOL = 600.0


def test_days_are_utc() -> None:
    assert MIDNIGHT == 1_700_006_400.0
    assert day_of(MIDNIGHT) == "2023-11-15"
    assert day_of(MIDNIGHT - 0.001) == "2023-11-14"
    assert day_start(day_of(MIDNIGHT + 5000)) == MIDNIGHT


def test_the_gap_since_the_previous_heartbeat_is_credited() -> None:
    assert credits(MIDNIGHT + 100, MIDNIGHT + 400, TOL) == [Credit("2023-11-15", 300.0)]
    assert credits(MIDNIGHT + 100, MIDNIGHT + 100 + TOL, TOL) == [Credit("2023-11-15", TOL)]


def test_a_gap_across_midnight_is_split_between_the_days() -> None:
    got = credits(MIDNIGHT - 120, MIDNIGHT + 180, TOL)
    assert got == [Credit("2023-11-14", 120.0), Credit("2023-11-15", 180.0)]
    # ending exactly at midnight: all of it the day before
    assert credits(MIDNIGHT - 300, MIDNIGHT, TOL) == [Credit("2023-11-14", 300.0)]
    # starting exactly at midnight: all of it the new day
    assert credits(MIDNIGHT, MIDNIGHT + 300, TOL) == [Credit("2023-11-15", 300.0)]
    # the longest tolerance (a day): a gap touches two days at most
    got = credits(MIDNIGHT - 10, MIDNIGHT + DAY - 10, DAY)
    assert got == [Credit("2023-11-14", 10.0), Credit("2023-11-15", DAY - 10)]


def test_gaps_over_the_tolerance_and_odd_gaps_credit_nothing() -> None:
    assert credits(None, MIDNIGHT, TOL) == []  # the first heartbeat
    assert credits(MIDNIGHT, MIDNIGHT + TOL + 0.001, TOL) == []  # the visor was away
    assert credits(MIDNIGHT, MIDNIGHT + 3 * DAY, TOL) == []
    assert credits(MIDNIGHT, MIDNIGHT, TOL) == []  # twice at once
    assert credits(MIDNIGHT + 50, MIDNIGHT, TOL) == []  # the clock went back


def test_tolerance_is_checked() -> None:
    assert check_tolerance(600) == 600
    for bad in (0.0, -1.0, DAY + 1, float("inf"), float("nan")):
        with pytest.raises(ValueError):
            check_tolerance(bad)


def record(first: float, last: float) -> VisorRecord:
    return VisorRecord(KeyPair.generate().pk, "v1.3.29", first, last)


def test_a_window_starts_no_earlier_than_the_first_heartbeat() -> None:
    now = MIDNIGHT + 3600
    assert window(now, 3) == ["2023-11-13", "2023-11-14", "2023-11-15"]
    assert window(now, 1) == ["2023-11-15"]
    assert window(now, 30, first_seen=MIDNIGHT - 10) == ["2023-11-14", "2023-11-15"]
    assert window(now, 30, first_seen=now) == ["2023-11-15"]


def test_summary_of_days_today_counted_so_far() -> None:
    now = MIDNIGHT + 6 * 3600  # 06:00 on the 15th
    rec = record(MIDNIGHT - 2 * DAY + 10, now - 60)
    seconds = {"2023-11-13": DAY / 2, "2023-11-14": DAY, "2023-11-15": 3 * 3600, "2023-11-01": 5.0}
    got = summarize(rec, seconds, now, days=30, tolerance=TOL)
    assert [(d.day, d.up, d.span) for d in got.days] == [
        ("2023-11-13", DAY / 2, DAY),
        ("2023-11-14", DAY, DAY),
        ("2023-11-15", 3 * 3600, 6 * 3600),
    ]
    assert [d.pct for d in got.days] == [50.0, 100.0, 50.0]
    assert got.online
    assert got.up == DAY / 2 + DAY + 3 * 3600
    assert got.down == DAY / 2 + 3 * 3600
    assert got.pct == pytest.approx(100 * got.up / (2 * DAY + 6 * 3600))
    v2 = got.to_v2()
    assert v2 == {
        "pk": rec.pk.hex(),
        "up": round(got.up),
        "down": round(got.down),
        "pct": round(got.pct, 2),
        "on": True,
        "version": "v1.3.29",
        "daily": {"2023-11-13": "50.00", "2023-11-14": "100.00", "2023-11-15": "50.00"},
    }
    mine = got.to_json()
    assert mine["days"][2] == {"date": "2023-11-15", "up": 10800.0, "pct": 50.0}
    assert mine["last_seen"] == "2023-11-15T05:59:00Z"


def test_offline_after_the_tolerance_and_never_over_100_percent() -> None:
    now = MIDNIGHT + 3600
    rec = record(MIDNIGHT, now - TOL - 1)
    got = summarize(rec, {"2023-11-15": 2 * 3600}, now, days=1, tolerance=TOL)
    assert not got.online
    assert got.days[0].pct == 100.0 and got.up == 3600 and got.down == 0
    assert summarize(rec, {}, now, 1, TOL).to_v2()["daily"] == {"2023-11-15": "0.00"}


def test_query_parsers() -> None:
    a, b = KeyPair.generate().pk, KeyPair.generate().pk
    assert parse_keys(f"{a.hex()};{b.hex()}") == [a, b]  # upstream's separator
    assert parse_keys(f"{b.hex()},{a.hex()},{b.hex()},") == [b, a]
    assert parse_keys("") == []
    with pytest.raises(QueryError, match="invalid public key") as info:
        parse_keys(f"{a.hex()},nope")
    assert info.value.status == 400
    assert parse_days("") == 30 and parse_days("366") == 366
    for bad in ("0", "367", "-1", "1.5", "x"):
        with pytest.raises(QueryError):
            parse_days(bad)
    assert check_version("v1.3.29") == "v1.3.29" and check_version("") == ""
    for bad in ("v" * 65, "v1 2", "v1\n", "vé"):
        with pytest.raises(QueryError):
            check_version(bad)


# ------------------------------------------------------------------------------ the reporter
def test_interval_comes_from_the_config_block() -> None:
    assert report_interval(UptimeTrackerConfig(addr="http://ut")) == 300.0
    assert report_interval(UptimeTrackerConfig.model_validate({"interval": "1m30s"})) == 90.0
    for bad in ("0s", "soon", 5):
        with pytest.raises(ValueError):
            report_interval(UptimeTrackerConfig.model_validate({"interval": bad}))
    sk = KeyPair.generate().sk
    assert uptime_reporter(UptimeTrackerConfig(), sk, "v1") is None
    assert uptime_reporter(UptimeTrackerConfig(addr="dmsg://02ab:80"), sk, "v1") is None
    reporter = uptime_reporter(UptimeTrackerConfig(addr="http://127.0.0.1:1"), sk, "v1")
    assert reporter is not None and reporter.interval == 300.0


class FlakyClient:
    def __init__(self) -> None:
        self.up = True
        self.versions: list[str] = []

    async def update(self, version: str = "") -> float:
        if not self.up:
            raise UTUnreachableError("uptime tracker: connection refused")
        self.versions.append(version)
        return 0.0

    async def close(self) -> None:
        pass


async def test_an_outage_is_logged_once(caplog: pytest.LogCaptureFixture) -> None:
    client = FlakyClient()
    reporter = UptimeReporter(
        "http://ut",
        KeyPair.generate().sk,
        version="v9",
        interval=3600,
        client=client,  # type: ignore[arg-type]
    )
    caplog.set_level(logging.INFO, logger="skywire.visor.uptime")
    async with reporter:
        await asyncio.wait_for(reporter.wait_sent(1), 5)  # the first beat goes at once
        assert client.versions == ["v9"] and reporter.reachable
        client.up = False
        assert [await reporter.beat() for _ in range(3)] == [False, False, False]
        client.up = True
        assert await reporter.beat()
        client.up = False
        assert not await reporter.beat()
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    infos = [r for r in caplog.records if "go through again" in r.getMessage()]
    assert len(warnings) == 2 and "connection refused" in warnings[0].getMessage()
    assert len(infos) == 1
    assert (reporter.sent, reporter.failed) == (2, 4)
    await reporter.close()  # twice is harmless

"""Pure helpers: durations, available-to-sell, promise dates."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from hypothesis import given, strategies as st

from inventory.arithmetic import available_to_sell
from models.status import DeliveryMethod
from nodal.durations import format_duration, parse_duration
from promise import promised_by, ship_by, transit_days
from routing.model import NodeInfo


@pytest.mark.parametrize("text, seconds", [("90s", 90), ("30m", 1800), ("2h", 7200), ("30d", 2592000),
                                           ("1h30m", 5400), ("45", 45), ("500ms", 0.5)])
def test_parse_duration(text, seconds):
    assert parse_duration(text) == timedelta(seconds=seconds)


@pytest.mark.parametrize("bad", ["", "abc", "10x", "h", "5m3", "-5m"])
def test_parse_duration_rejects(bad):
    with pytest.raises(ValueError):
        parse_duration(bad)


def test_settings_read_durations_from_the_environment(monkeypatch):
    from nodal.settings import Settings

    monkeypatch.setenv("NODAL_REMORSE_WINDOW", "90s")
    monkeypatch.setenv("NODAL_RETURN_WINDOW", "30d")
    s = Settings()
    assert s.remorse_window == timedelta(seconds=90) and s.return_window == timedelta(days=30)
    assert s.accept_timeout == timedelta(hours=2)
    assert format_duration(s.return_window) == "30d"


@given(st.integers(0, 10**6), st.integers(0, 10**6), st.integers(0, 10**6))
def test_available_to_sell_is_never_negative(on_hand, reserved, safety):
    ats = available_to_sell(on_hand, reserved, safety)
    assert ats >= 0 and ats == max(on_hand - reserved - safety, 0)


NY = NodeInfo("N", "dc", 40.7, -74.0, frozenset({"ship"}), processing_minutes=120, cutoff_time="15:00",
              timezone="America/New_York", closed_weekdays=frozenset({6}), holidays=frozenset({"2026-12-25"}))


def utc(*a) -> datetime:
    return datetime(*a, tzinfo=timezone.utc)


def test_ship_by_same_day_before_cutoff():
    # Tuesday 10:00 New York: ready at 12:00, ships at the 15:00 cutoff.
    assert ship_by(NY, utc(2026, 11, 24, 15, 0)) == utc(2026, 11, 24, 20, 0)


def test_ship_by_after_cutoff_is_next_open_day():
    # Saturday 16:00 New York: past cutoff; Sunday is closed; ships Monday 15:00.
    assert ship_by(NY, utc(2026, 11, 21, 21, 0)) == utc(2026, 11, 23, 20, 0)


def test_ship_by_skips_holidays():
    # Thursday 24 Dec after cutoff → 25 Dec is a holiday → Saturday 26th.
    assert ship_by(NY, utc(2026, 12, 24, 22, 0)) == utc(2026, 12, 26, 20, 0)


def test_transit_and_promise():
    assert transit_days(DeliveryMethod.ship_standard, 100) == 1
    assert transit_days(DeliveryMethod.ship_standard, 2000) == 4
    assert transit_days(DeliveryMethod.ship_express, 2000) == 2
    assert transit_days(DeliveryMethod.pickup, 5000) == 0
    at = utc(2026, 11, 24, 15, 0)
    assert promised_by(NY, DeliveryMethod.pickup, 0, at) == at + timedelta(hours=2)
    # Ships Tuesday, 2 days of transit → Thursday end of day.
    assert promised_by(NY, DeliveryMethod.ship_standard, 500, at) == utc(2026, 11, 26, 23, 59)
    # Carriers don't deliver on Sunday: Friday ship + 2 days → Monday.
    assert promised_by(NY, DeliveryMethod.ship_standard, 500, utc(2026, 11, 27, 15, 0)) == utc(2026, 11, 30, 23, 59)


@pytest.mark.parametrize("available, threshold, level", [(0, 5, "out"), (-2, 5, "out"), (1, 5, "low"),
                                                         (5, 5, "low"), (6, 5, "in_stock"), (1, 0, "in_stock")])
def test_stock_level(available, threshold, level):
    from inventory.arithmetic import stock_level

    assert stock_level(available, threshold) == level


@given(st.integers(0, 1000), st.integers(0, 1000), st.integers(0, 50), st.integers(0, 50),
       st.floats(0, 100, allow_nan=False))
def test_channel_available_never_exceeds_the_pool(on_hand, reserved, safety, units, pct):
    from inventory.arithmetic import channel_available

    seen = channel_available(on_hand, reserved, safety, units, pct)
    assert 0 <= seen <= available_to_sell(on_hand, reserved, safety)
    assert channel_available(on_hand, reserved, safety) == available_to_sell(on_hand, reserved, safety)


def test_protection_is_a_nested_level():
    from inventory.arithmetic import channel_available

    # 10 on hand, 4 protected for another tier: everyone else sees 6; the tier itself is not limited.
    assert channel_available(10, 0, 0, protected_for_others=4) == 6
    assert channel_available(10, 7, 0, protected_for_others=4) == 0
    assert channel_available(10, 0, 1, 2, 10.0, protected_for_others=4) == 10 - 1 - 2 - 1 - 4

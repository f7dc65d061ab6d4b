"""Pure helpers: durations, available-to-sell (promise dates: test_promise.py)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from hypothesis import given, strategies as st

from inventory.arithmetic import available_to_sell
from nodal.durations import format_duration, parse_duration


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
def test_available_to_sell_is_what_can_still_be_reserved(on_hand, reserved, safety):
    """Its behaviour, not its formula: reserving what it says leaves nothing; one unit less leaves one; more
    stock never lowers it; safety stock is never sold."""
    ats = available_to_sell(on_hand, reserved, safety)
    assert available_to_sell(on_hand, reserved + ats, safety) == 0
    if ats:
        assert available_to_sell(on_hand, reserved + ats - 1, safety) == 1
        assert reserved + ats + safety == on_hand  # what is sold, held and kept safe is all there is
    assert available_to_sell(on_hand + 1, reserved, safety) >= ats
    assert available_to_sell(on_hand, reserved, safety + 1) <= ats


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


def test_a_flood_of_new_keys_never_resets_a_spent_bucket():
    """100,000 random keys used to clear every bucket (a spent key got its burst back). Buckets are kept by
    recent use; only a full one (as good as new) makes room, and past the table's size the newcomers share one."""
    from api.guard import RateLimiter

    limiter = RateLimiter(per_second=0.001, burst=1)
    assert limiter.wait("spent") == 0 and limiter.wait("spent") > 0
    for i in range(100_001):
        limiter.wait(f"random-{i}")
    assert limiter.wait("spent") > 0, "the spent key got its burst back"
    assert len(limiter._buckets) <= 100_001

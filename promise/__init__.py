"""Delivery promise: pure date arithmetic (processing time, cutoffs, calendars, transit)."""

from promise.dates import promised_by, release_start, ship_by, transit_days

__all__ = ["promised_by", "release_start", "ship_by", "transit_days"]

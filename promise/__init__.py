"""Delivery promise: pure date arithmetic (processing time, cutoffs, calendars, transit)."""

from promise.dates import ship_by, promised_by, transit_days

__all__ = ["ship_by", "promised_by", "transit_days"]

"""Delivery promise: pure date arithmetic (processing in opening hours, cutoffs, node and carrier calendars,
transit by zone, backwards scheduling to a requested date)."""

from promise.carriers import CARRIERS, DEFAULT_CALENDAR, SERVICES, CarrierCalendar, CarrierService
from promise.dates import Quote, promised_by, quote, ready_at, release_start, ship_by

__all__ = ["CARRIERS", "DEFAULT_CALENDAR", "SERVICES", "CarrierCalendar", "CarrierService", "Quote",
           "promised_by", "quote", "ready_at", "release_start", "ship_by"]

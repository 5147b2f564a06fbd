"""Time, injected: production reads the system clock, tests move a fake one by hand."""

from __future__ import annotations

import datetime as dt
from typing import Protocol

UTC = dt.UTC


class Clock(Protocol):
    """Anything that tells the current time as an aware UTC datetime."""

    def now(self) -> dt.datetime:
        """The current time, timezone-aware, in UTC."""
        ...


class SystemClock:
    """The real clock."""

    def now(self) -> dt.datetime:
        """The current time, timezone-aware, in UTC."""
        return dt.datetime.now(UTC)


class FakeClock:
    """A clock that only moves when told to; for tests and benchmarks of scheduled work."""

    def __init__(self, start: dt.datetime | None = None) -> None:
        self._now = start or dt.datetime(2026, 12, 1, 0, 0, tzinfo=UTC)

    def now(self) -> dt.datetime:
        """The current fake time."""
        return self._now

    def advance(self, delta: dt.timedelta | None = None, **kwargs: float) -> dt.datetime:
        """Move forward by ``delta`` (or by ``timedelta(**kwargs)``) and return the new time."""
        self._now += delta if delta is not None else dt.timedelta(**kwargs)
        return self._now

    def set(self, moment: dt.datetime) -> None:
        """Jump to a given moment (clock jumps are allowed, also backwards)."""
        self._now = moment


def utc(moment: dt.datetime) -> dt.datetime:
    """Treat a naive datetime read back from the database as UTC; keep aware ones."""
    if moment.tzinfo is None:
        return moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)


class OffsetClock:
    """The real clock moved forward by hand (the sandbox's /skip, to try reminders)."""

    def __init__(self) -> None:
        self.offset = dt.timedelta()

    def now(self) -> dt.datetime:
        """System time plus the offset."""
        return dt.datetime.now(UTC) + self.offset

    def skip(self, delta: dt.timedelta) -> dt.datetime:
        """Jump ahead by ``delta``; returns the new time."""
        self.offset += delta
        return self.now()

"""Recurring meetings: simple choices as RFC 5545 rules, expanded in a time zone.

A series is stored as its first start (UTC) and an RRULE value such as
``FREQ=WEEKLY;INTERVAL=2;BYDAY=MO;UNTIL=20270630T145959Z``. It is expanded with python-dateutil
on the local wall clock of the organisation's time zone, so "every other Monday 19:30" stays at
19:30 across daylight-saving changes, and only then turned into UTC.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from zoneinfo import ZoneInfo

from dateutil.rrule import rrulestr

UTC = dt.UTC
WEEKLY = "weekly"
BIWEEKLY = "biweekly"
MONTHLY = "monthly"
KINDS = (WEEKLY, BIWEEKLY, MONTHLY)
DAY_CODES = ("MO", "TU", "WE", "TH", "FR", "SA", "SU")
_UNTIL_FORMAT = "%Y%m%dT%H%M%SZ"


@dataclass(frozen=True)
class Recurrence:
    """What a rule means in words: its kind, the weekday, which one in the month, the end."""

    kind: str
    weekday: int  # 0 = Monday
    ordinal: int = 0  # monthly: 1..4, or -1 for the last such weekday of the month
    until: dt.datetime | None = None  # aware UTC, the last moment an occurrence may start


def to_local(moment: dt.datetime, timezone: str) -> dt.datetime:
    """An aware UTC moment as a naive wall-clock time in the zone."""
    return moment.astimezone(ZoneInfo(timezone)).replace(tzinfo=None)


def from_local(local: dt.datetime, timezone: str) -> dt.datetime:
    """A naive wall-clock time in the zone as an aware UTC moment."""
    return local.replace(tzinfo=ZoneInfo(timezone)).astimezone(UTC)


def month_ordinal(day: dt.date) -> int:
    """Which of its weekday the date is in its month: 1..4, or -1 for a fifth (the last)."""
    ordinal = (day.day - 1) // 7 + 1
    return -1 if ordinal == 5 else ordinal


def build_rule(
    kind: str, *, start: dt.datetime, timezone: str, until: dt.datetime | None = None
) -> str:
    """The RRULE value for a choice, anchored on the (UTC) start's local weekday."""
    if kind not in KINDS:
        raise ValueError(f"unknown repeat {kind!r}")
    local = to_local(start, timezone)
    day = DAY_CODES[local.weekday()]
    if kind == WEEKLY:
        parts = ["FREQ=WEEKLY", f"BYDAY={day}"]
    elif kind == BIWEEKLY:
        parts = ["FREQ=WEEKLY", "INTERVAL=2", f"BYDAY={day}"]
    else:
        parts = ["FREQ=MONTHLY", f"BYDAY={month_ordinal(local.date())}{day}"]
    if until is not None:
        parts.append("UNTIL=" + until.astimezone(UTC).strftime(_UNTIL_FORMAT))
    return ";".join(parts)


def _fields(rule: str) -> dict[str, str]:
    return dict(part.split("=", 1) for part in rule.split(";") if "=" in part)


def describe(rule: str) -> Recurrence | None:
    """The rule as a choice (None for a one-off meeting)."""
    if not rule:
        return None
    fields = _fields(rule)
    byday = fields.get("BYDAY", "MO")
    code = byday[-2:]
    until = (
        dt.datetime.strptime(fields["UNTIL"], _UNTIL_FORMAT).replace(tzinfo=UTC)
        if "UNTIL" in fields
        else None
    )
    if fields.get("FREQ") == "MONTHLY":
        return Recurrence(MONTHLY, DAY_CODES.index(code), int(byday[:-2] or 1), until)
    kind = BIWEEKLY if fields.get("INTERVAL") == "2" else WEEKLY
    return Recurrence(kind, DAY_CODES.index(code), 0, until)


def with_new_start(rule: str, *, start: dt.datetime, timezone: str) -> str:
    """The same rhythm and end, anchored on a new start (a series moved to another day)."""
    recurrence = describe(rule)
    if recurrence is None:
        return ""
    return build_rule(recurrence.kind, start=start, timezone=timezone, until=recurrence.until)


def interval(rule: str) -> dt.timedelta:
    """The shortest gap between two occurrences of the rule."""
    recurrence = describe(rule)
    if recurrence is None:
        return dt.timedelta.max
    return {WEEKLY: dt.timedelta(days=7), BIWEEKLY: dt.timedelta(days=14)}.get(
        recurrence.kind, dt.timedelta(days=28)
    )


def occurrences(
    rule: str,
    *,
    first: dt.datetime,
    timezone: str,
    after: dt.datetime | None = None,
    limit: int = 10,
) -> list[dt.datetime]:
    """Up to ``limit`` starts (aware UTC) of the series that begins at ``first``.

    Only starts later than ``after`` are given (all from ``first`` on when it is None). The rule
    is expanded on the zone's wall clock, then each local time is turned into UTC.
    """
    if not rule:
        return [first] if after is None or first > after else []
    fields = _fields(rule)
    until_text = fields.pop("UNTIL", None)
    expression = ";".join(f"{key}={value}" for key, value in fields.items())
    expanded = rrulestr(expression, dtstart=to_local(first, timezone))
    if until_text is not None:
        until = dt.datetime.strptime(until_text, _UNTIL_FORMAT).replace(tzinfo=UTC)
        expanded = expanded.replace(until=to_local(until, timezone))
    result: list[dt.datetime] = []
    cursor = to_local(after, timezone) if after is not None else None
    moments = expanded.xafter(cursor, inc=False) if cursor is not None else iter(expanded)
    for local in moments:
        moment = from_local(local, timezone)
        if after is not None and moment <= after:
            continue
        result.append(moment)
        if len(result) >= limit:
            break
    return result


def token(moment: dt.datetime) -> str:
    """A short, sortable name for a moment, used in job keys: 20261207T1030Z."""
    return moment.astimezone(UTC).strftime("%Y%m%dT%H%MZ")

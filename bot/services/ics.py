"""Calendar files (.ics, RFC 5545) of meetings, written with the icalendar library.

One VEVENT per meeting under a stable UID (so importing again updates instead of doubling),
with its RRULE, EXDATEs for cancelled occurrences and an extra VEVENT with RECURRENCE-ID for
each occurrence that was moved; times carry the organisation's TZID and a VTIMEZONE.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo

from models import Meeting, MeetingOccurrence

if TYPE_CHECKING:
    import icalendar

PRODID = "-//moim//meetings//KO"


@dataclass(frozen=True)
class CalendarEntry:
    """A meeting with the occurrences known as rows and the zone it is shown in."""

    meeting: Meeting
    occurrences: Sequence[MeetingOccurrence]
    timezone: str
    organization: str


def uid(meeting_id: int, domain: str) -> str:
    """The meeting's stable calendar id."""
    return f"meeting-{meeting_id}@{domain}"


def _location(meeting: Meeting) -> str:
    return meeting.place or meeting.link


def _event(
    entry: CalendarEntry, *, start: dt.datetime, minutes: int, now: dt.datetime, domain
) -> icalendar.Event:
    import icalendar

    meeting = entry.meeting
    zone = ZoneInfo(entry.timezone)
    event = icalendar.Event()
    event.add("uid", uid(meeting.id, domain))
    event.add("dtstamp", now)
    event.add("dtstart", start.astimezone(zone))
    event.add("dtend", (start + dt.timedelta(minutes=minutes)).astimezone(zone))
    event.add("summary", meeting.title)
    event.add("sequence", meeting.revision)
    if _location(meeting):
        event.add("location", _location(meeting))
    if meeting.link:
        event.add("url", meeting.link)
    description = "\n".join(part for part in (entry.organization, meeting.agenda) if part)
    if description:
        event.add("description", description)
    return event


def calendar(entries: Sequence[CalendarEntry], *, now: dt.datetime, domain: str) -> bytes:
    """An .ics file holding every entry."""
    # Imported where a calendar is written (here and below): the library costs every process
    # start-up time and memory, and calendar files are asked for now and then.
    import icalendar

    cal = icalendar.Calendar()
    cal.add("prodid", PRODID)
    cal.add("version", "2.0")
    cal.add("calscale", "GREGORIAN")
    cal.add("method", "PUBLISH")
    for entry in entries:
        for component in _components(entry, now=now, domain=domain):
            cal.add_component(component)
    cal.add_missing_timezones()
    return cal.to_ical()


def _components(entry: CalendarEntry, *, now: dt.datetime, domain: str) -> list:
    import icalendar

    meeting = entry.meeting
    zone = ZoneInfo(entry.timezone)
    rows = sorted(entry.occurrences, key=lambda o: o.original_start)
    if not meeting.rrule:
        # A one-off meeting is its only occurrence, wherever it was moved.
        row = rows[0] if rows else None
        start = row.starts_at if row else meeting.starts_at
        minutes = row.duration_minutes if row else meeting.duration_minutes
        event = _event(entry, start=start, minutes=minutes, now=now, domain=domain)
        if meeting.cancelled_at or (row and row.cancelled_at):
            event.add("status", "CANCELLED")
        return [event]
    main = _event(
        entry, start=meeting.starts_at, minutes=meeting.duration_minutes, now=now, domain=domain
    )
    main.add("rrule", icalendar.vRecur.from_ical(meeting.rrule))
    if meeting.cancelled_at:
        main.add("status", "CANCELLED")
    components = [main]
    for row in rows:
        if row.original_start < meeting.starts_at:
            continue  # before the series was moved: no longer part of its rule
        if row.cancelled_at:
            main.add("exdate", row.original_start.astimezone(zone))
        elif row.starts_at != row.original_start or row.duration_minutes != (
            meeting.duration_minutes
        ):
            moved = _event(
                entry, start=row.starts_at, minutes=row.duration_minutes, now=now, domain=domain
            )
            moved.add("recurrence-id", row.original_start.astimezone(zone))
            components.append(moved)
    return components

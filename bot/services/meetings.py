"""Meetings: create one or a series, RSVP per occurrence, reminders, move and cancel, check-in,
minutes, calendars and attendance.

A series keeps its next few occurrences as rows (``scheduled_ahead``, topped up by a job when
one begins); each occurrence's reminders are ScheduledJob rows under fixed keys such as
``meeting-42-occ-20261207T1030Z-remind-1440``. A reminder job renders the message per
recipient and queues outbox deliveries with dedupe keys in the job's own transaction, so it
goes out once across restarts and instances.
"""

from __future__ import annotations

import datetime as dt
import io
import logging
import re
import secrets
from collections.abc import AsyncIterator, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import sqlalchemy as sa
from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession

from bot.render import Renderer
from bot.services import audit, exports, ics, jobs, organizations, outbox, recurrence
from bot.services.dialects import upsert_insert
from bot.services.errors import DomainError, StaleButton
from bot.services.timeparse import WEEKDAYS, parse_duration, parse_when, require_future
from models import (
    Answer,
    CheckinMethod,
    Delivery,
    Meeting,
    MeetingAttendance,
    MeetingOccurrence,
    MeetingRsvp,
    Member,
    Membership,
    Organization,
    ReminderAudience,
)

log = logging.getLogger(__name__)

REMIND_JOB = "meetings.remind"
EXTEND_JOB = "meetings.extend"
CHECKIN_CLOSE_JOB = "meetings.checkin_close"
MAX_TITLE = 120
MAX_PLACE = 200
MAX_LINK = 500
MAX_AGENDA = 2000
MIN_DURATION = dt.timedelta(minutes=5)
MAX_DURATION = dt.timedelta(hours=24)
MAX_REMINDERS = 6
MAX_REMINDER_MINUTES = 14 * 24 * 60
MAX_SERIES_YEARS = 10
# Check-in opens at most this long before the start (people arrive early).
CHECKIN_EARLY = dt.timedelta(hours=1)
CHECKIN_CODE_DIGITS = 6
UPCOMING_DAYS = 35
ANSWER_CODES = {"y": Answer.YES, "n": Answer.NO, "m": Answer.MAYBE}
REPEAT_WORDS = {
    "매주": recurrence.WEEKLY,
    "weekly": recurrence.WEEKLY,
    "every week": recurrence.WEEKLY,
    "격주": recurrence.BIWEEKLY,
    "2주마다": recurrence.BIWEEKLY,
    "biweekly": recurrence.BIWEEKLY,
    "every other week": recurrence.BIWEEKLY,
    "every 2 weeks": recurrence.BIWEEKLY,
    "매월": recurrence.MONTHLY,
    "매달": recurrence.MONTHLY,
    "monthly": recurrence.MONTHLY,
    "every month": recurrence.MONTHLY,
    "한 번": "",
    "한번": "",
    "once": "",
}


# --- errors ------------------------------------------------------------------------------------


class MeetingError(DomainError):
    """A meetings error; its message is in meetings/errors.html under its code."""

    feature = "meetings"


class MeetingNotFound(MeetingError):
    """No such meeting (deleted, or a tampered link)."""

    code = "not_found"


class OccurrenceCancelled(MeetingError):
    """The meeting (or this occurrence of it) was cancelled."""

    code = "cancelled"


class MeetingStarted(MeetingError):
    """The occurrence has already begun: answers and changes are closed."""

    code = "started"


class NotOrgMember(MeetingError):
    """Only members of the meeting's organisation may answer or check in."""

    code = "not_member"


class CheckinClosed(MeetingError):
    """Check-in for this occurrence is not open (not yet, or no longer)."""

    code = "checkin_closed"


class WrongCheckinCode(MeetingError):
    """No open check-in has this code."""

    code = "wrong_code"


class CheckinWindow(MeetingError):
    """Check-in can only be opened around the meeting."""

    code = "checkin_window"


class MinutesTooEarly(MeetingError):
    """Minutes are sent once the meeting has begun."""

    code = "minutes_too_early"


class MeetingInvalid(MeetingError):
    """Input about a meeting that cannot be used; ``field`` and ``reason`` say why."""

    code = "invalid"


# --- drafts and the one-line form --------------------------------------------------------------


@dataclass
class MeetingDraft:
    """A meeting as it is being described, before it is created."""

    title: str = ""
    starts_at: dt.datetime | None = None
    duration_minutes: int = 120
    place: str = ""
    link: str = ""
    agenda: str = ""
    repeat: str = ""  # "", weekly, biweekly, monthly
    until: dt.datetime | None = None

    def to_data(self) -> dict[str, Any]:
        """A JSON-able form, for a flow's state."""
        data = asdict(self)
        for name in ("starts_at", "until"):
            data[name] = data[name].isoformat() if data[name] else None
        return data

    @classmethod
    def from_data(cls, data: dict[str, Any]) -> MeetingDraft:
        """Rebuild from :meth:`to_data` (other keys are ignored)."""
        names = {f for f in cls.__dataclass_fields__}
        values = {k: v for k, v in data.items() if k in names}
        for name in ("starts_at", "until"):
            if values.get(name):
                values[name] = dt.datetime.fromisoformat(values[name])
        return cls(**values)

    def rule(self, timezone: str) -> str:
        """The RRULE of the draft's repeat choice ("" for a one-off meeting)."""
        if not self.repeat or self.starts_at is None:
            return ""
        return recurrence.build_rule(
            self.repeat, start=self.starts_at, timezone=timezone, until=self.until
        )


def clean_title(text: str) -> str:
    """A meeting title as stored, or MeetingInvalid."""
    title = " ".join(text.split())
    if not title:
        raise MeetingInvalid(field="title", reason="empty")
    if len(title) > MAX_TITLE:
        raise MeetingInvalid(field="title", reason="too_long", limit=MAX_TITLE)
    return title


def read_start(text: str, *, now: dt.datetime, timezone: str) -> dt.datetime:
    """When the meeting starts, as typed; friendly errors for unreadable or past times."""
    return require_future(parse_when(text, now=now, timezone=timezone), now=now, text=text)


def read_duration(text: str) -> int:
    """How long the meeting lasts, in minutes."""
    return check_duration(parse_duration(text))


def check_duration(duration: dt.timedelta) -> int:
    """The duration in minutes if it is between 5 minutes and a day."""
    if not MIN_DURATION <= duration <= MAX_DURATION:
        raise MeetingInvalid(field="duration", reason="range")
    return int(duration.total_seconds() // 60)


def read_place(text: str) -> tuple[str, str]:
    """(place, link) from what was typed: a web address is the online link."""
    text = " ".join(text.split())
    if re.match(r"^https?://", text, re.I):
        if " " in text or len(text) > MAX_LINK:
            raise MeetingInvalid(field="link", reason="invalid", limit=MAX_LINK)
        return "", text
    if len(text) > MAX_PLACE:
        raise MeetingInvalid(field="place", reason="too_long", limit=MAX_PLACE)
    return text, ""


def read_agenda(text: str) -> str:
    """The agenda as typed (line breaks kept)."""
    agenda = text.strip()
    if len(agenda) > MAX_AGENDA:
        raise MeetingInvalid(field="agenda", reason="too_long", limit=MAX_AGENDA)
    return agenda


def read_until(text: str, *, now: dt.datetime, timezone: str, start: dt.datetime) -> dt.datetime:
    """The end of a series: "2027년 6월까지", "2027-06", "6월", "2027-06-30", "until Jun 30".

    A month means its last day; the end is the end of that day in the organisation's zone.
    """
    cleaned = re.sub(r"\s*까지\s*$", "", text.strip(), flags=re.I)
    cleaned = re.sub(r"^(until|till|to)\s+", "", cleaned, flags=re.I).strip()
    local_start = recurrence.to_local(start, timezone)
    day: dt.date | None = None
    match = re.fullmatch(r"(\d{4})\s*(?:년\s*|[-./])(\d{1,2})\s*월?", cleaned)
    month_only = re.fullmatch(r"(\d{1,2})\s*월", cleaned)
    if match:
        day = _month_end(int(match.group(1)), int(match.group(2)), text)
    elif month_only:
        month = int(month_only.group(1))
        year = local_start.year + (1 if month < local_start.month else 0)
        day = _month_end(year, month, text)
    else:
        try:
            moment = parse_when(cleaned, now=now, timezone=timezone, default_time=dt.time(23, 59))
        except DomainError:
            raise MeetingInvalid(field="until", reason="unreadable", value=text) from None
        day = recurrence.to_local(moment, timezone).date()
    until = recurrence.from_local(dt.datetime.combine(day, dt.time(23, 59, 59)), timezone)
    if until < start:
        raise MeetingInvalid(field="until", reason="before_start")
    if until > start + dt.timedelta(days=366 * MAX_SERIES_YEARS):
        raise MeetingInvalid(field="until", reason="too_far", years=MAX_SERIES_YEARS)
    return until


def _month_end(year: int, month: int, text: str) -> dt.date:
    if not 1 <= month <= 12:
        raise MeetingInvalid(field="until", reason="unreadable", value=text)
    following = dt.date(year + month // 12, month % 12 + 1, 1)
    return following - dt.timedelta(days=1)


def read_repeat(text: str) -> str | None:
    """The repeat choice a word names ("격주", "weekly", "한 번" → ""), or None."""
    lowered = " ".join(text.lower().split())
    for word in sorted(REPEAT_WORDS, key=len, reverse=True):
        if lowered == word or lowered.startswith(word + " "):
            return REPEAT_WORDS[word]
    return None


def _named_weekday(text: str) -> int | None:
    match = re.search(
        r"([월화수목금토일])요일|\b(mon|tue|wed|thu|fri|sat|sun)"
        r"(?:day|s|sday|nesday|rs|rsday|urday)?\b",
        text.lower(),
    )
    if not match:
        return None
    return WEEKDAYS[match.group(1) or match.group(2)]


def parse_one_line(text: str, *, now: dt.datetime, timezone: str) -> MeetingDraft:
    """``TITLE | WHEN | options...`` → a draft (grammar in the README).

    After the title and the start, each part is recognised by its form, in any order: a
    duration ("2시간"), a repeat ("격주", "매월", "weekly"), an end ("2027년 6월까지",
    "until 2027-06-30"), a web address (the online link); the first other part is the place
    and the second the agenda.
    """
    parts = [part.strip() for part in text.split("|")]
    if len(parts) < 2 or not parts[0] or not parts[1]:
        raise MeetingInvalid(field="one_line", reason="usage")
    draft = MeetingDraft(title=clean_title(parts[0]))
    draft.starts_at = read_start(parts[1], now=now, timezone=timezone)
    repeat_text = ""
    until_text = ""
    free: list[str] = []
    for part in parts[2:]:
        if not part:
            continue
        repeat = read_repeat(part)
        if repeat is not None:
            draft.repeat = repeat
            repeat_text = part
        elif re.search(r"까지\s*$", part) or re.match(r"^(until|till)\s", part, re.I):
            until_text = part
        elif re.match(r"^https?://", part, re.I):
            _, draft.link = read_place(part)
        elif _is_duration(part):
            draft.duration_minutes = read_duration(part)
        else:
            free.append(part)
    if len(free) > 2:
        raise MeetingInvalid(field="one_line_option", value=free[2])
    if free:
        draft.place, link = read_place(free[0])
        draft.link = draft.link or link
    if len(free) > 1:
        draft.agenda = read_agenda(free[1])
    if draft.repeat:
        named = _named_weekday(repeat_text)
        local_day = recurrence.to_local(draft.starts_at, timezone).weekday()
        if named is not None and named != local_day:
            raise MeetingInvalid(field="repeat", reason="weekday", weekday=local_day)
    if until_text:
        if not draft.repeat:
            raise MeetingInvalid(field="until", reason="no_repeat")
        draft.until = read_until(until_text, now=now, timezone=timezone, start=draft.starts_at)
    return draft


def _is_duration(text: str) -> bool:
    try:
        parse_duration(text)
    except DomainError:
        return False
    return True


# --- looking things up -------------------------------------------------------------------------


@dataclass(frozen=True)
class Recipient:
    """Someone a meeting message goes to."""

    member_id: int
    telegram_user_id: int
    language: str
    answer: str | None = None


@dataclass
class MeetingView:
    """What a card, a reminder or a list line shows about a meeting and one occurrence."""

    meeting: Meeting
    organization: Organization
    occurrence: MeetingOccurrence | None
    counts: dict[str, int] = field(default_factory=dict)
    answer: str | None = None
    attended: int = 0
    checkin_open: bool = False
    is_organizer: bool = False
    is_member: bool = True
    upcoming: list[MeetingOccurrence] = field(default_factory=list)
    last_started: MeetingOccurrence | None = None

    @property
    def repeat(self) -> recurrence.Recurrence | None:
        """The series' rhythm, or None for a one-off meeting."""
        return recurrence.describe(self.meeting.rrule)

    @property
    def timezone(self) -> str:
        """The zone the meeting is shown in."""
        return self.organization.timezone

    @property
    def ends_at(self) -> dt.datetime | None:
        """When the shown occurrence ends."""
        return _ends_at(self.occurrence) if self.occurrence is not None else None

    def checkin_window(self, now: dt.datetime) -> bool:
        """True when the organiser may open check-in for the shown occurrence."""
        occurrence = self.occurrence
        if occurrence is None or occurrence.cancelled_at is not None:
            return False
        return occurrence.starts_at - CHECKIN_EARLY <= now < _ends_at(occurrence)


def _ends_at(occurrence: MeetingOccurrence) -> dt.datetime:
    return occurrence.starts_at + dt.timedelta(minutes=occurrence.duration_minutes)


async def get_meeting(session: AsyncSession, meeting_id: int) -> tuple[Meeting, Organization]:
    """The meeting and its organisation, or MeetingNotFound."""
    row = (
        await session.exec(
            select(Meeting, Organization)
            .join(Organization, Organization.id == Meeting.organization_id)
            .where(Meeting.id == meeting_id)
        )
    ).first()
    if row is None:
        raise MeetingNotFound()
    return row[0], row[1]


async def get_occurrence(
    session: AsyncSession, occurrence_id: int
) -> tuple[MeetingOccurrence, Meeting, Organization]:
    """An occurrence with its meeting and organisation; a stale button if it is gone."""
    row = (
        await session.exec(
            select(MeetingOccurrence, Meeting, Organization)
            .join(Meeting, Meeting.id == MeetingOccurrence.meeting_id)
            .join(Organization, Organization.id == Meeting.organization_id)
            .where(MeetingOccurrence.id == occurrence_id)
        )
    ).first()
    if row is None:
        raise StaleButton()
    return row[0], row[1], row[2]


async def meeting_owner(session: AsyncSession, meeting_id: int) -> int | None:
    """The id of the organisation a meeting belongs to (for /post)."""
    return (
        await session.exec(select(Meeting.organization_id).where(Meeting.id == meeting_id))
    ).first()


async def next_occurrence(
    session: AsyncSession, meeting_id: int, *, now: dt.datetime
) -> MeetingOccurrence | None:
    """The occurrence a card shows: the one going on or the next one not cancelled."""
    rows = await _upcoming_rows(session, meeting_id, now=now, include_cancelled=False, limit=1)
    return rows[0] if rows else None


async def _upcoming_rows(
    session: AsyncSession,
    meeting_id: int,
    *,
    now: dt.datetime,
    include_cancelled: bool = True,
    limit: int = 20,
) -> list[MeetingOccurrence]:
    """Occurrences that have not ended yet, soonest first."""
    query = select(MeetingOccurrence).where(MeetingOccurrence.meeting_id == meeting_id)
    if not include_cancelled:
        query = query.where(MeetingOccurrence.cancelled_at.is_(None))
    # Not ended: starts_at + duration > now; duration is at most a day, so filter roughly in
    # SQL and exactly here.
    query = query.where(MeetingOccurrence.starts_at > now - MAX_DURATION)
    rows = (await session.exec(query.order_by(MeetingOccurrence.starts_at).limit(limit + 4))).all()
    return [row for row in rows if _ends_at(row) > now][:limit]


async def answer_counts(session: AsyncSession, occurrence_id: int) -> dict[str, int]:
    """How many answered yes, no and maybe for the occurrence."""
    result = await session.exec(
        select(MeetingRsvp.answer, sa.func.count())
        .where(MeetingRsvp.occurrence_id == occurrence_id)
        .group_by(MeetingRsvp.answer)
    )
    counts = {answer.value: 0 for answer in Answer}
    counts.update({str(answer): count for answer, count in result.all()})
    return counts


async def attendance_count(session: AsyncSession, occurrence_id: int) -> int:
    """How many checked in at the occurrence."""
    return (
        await session.exec(
            select(sa.func.count())
            .select_from(MeetingAttendance)
            .where(MeetingAttendance.occurrence_id == occurrence_id)
        )
    ).one()


async def answer_of(session: AsyncSession, member_id: int, occurrence_id: int) -> str | None:
    """What the member answered for the occurrence, if anything."""
    answer = (
        await session.exec(
            select(MeetingRsvp.answer).where(
                MeetingRsvp.occurrence_id == occurrence_id, MeetingRsvp.member_id == member_id
            )
        )
    ).first()
    return str(answer) if answer is not None else None


def checkin_is_open(occurrence: MeetingOccurrence, now: dt.datetime) -> bool:
    """True while people can check in."""
    return (
        occurrence.checkin_opened_at is not None
        and occurrence.checkin_closes_at is not None
        and occurrence.checkin_opened_at <= now < occurrence.checkin_closes_at
    )


async def view(
    session: AsyncSession,
    meeting_id: int,
    *,
    now: dt.datetime,
    viewer: Member | None = None,
    occurrence_id: int | None = None,
    is_bot_admin: bool = False,
    for_management: bool = False,
    loaded: tuple[MeetingOccurrence, Meeting, Organization] | None = None,
) -> MeetingView:
    """Everything a card (or the organiser's view) shows about a meeting.

    ``loaded`` is the occurrence with its meeting and organisation when the caller has them
    already (a tap that just answered), so they are not read again.
    """
    if loaded is not None:
        occurrence, meeting, org = loaded
    elif occurrence_id is not None:
        occurrence, meeting, org = await get_occurrence(session, occurrence_id)
        if meeting.id != meeting_id:
            raise StaleButton()
    else:
        meeting, org = await get_meeting(session, meeting_id)
        occurrence = await next_occurrence(session, meeting.id, now=now)
    result = MeetingView(meeting=meeting, organization=org, occurrence=occurrence)
    if occurrence is not None:
        result.counts = await answer_counts(session, occurrence.id)
        result.checkin_open = checkin_is_open(occurrence, now)
        if occurrence.checkin_opened_at is not None:
            result.attended = await attendance_count(session, occurrence.id)
    if viewer is not None:
        # The viewer's role and answer in one statement (no row: not a member).
        answer = (
            select(MeetingRsvp.answer)
            .where(
                MeetingRsvp.occurrence_id == (occurrence.id if occurrence else None),
                MeetingRsvp.member_id == viewer.id,
            )
            .scalar_subquery()
        )
        row = (
            await session.exec(
                select(Membership.role, answer).where(
                    Membership.member_id == viewer.id, Membership.organization_id == org.id
                )
            )
        ).first()
        result.is_member = row is not None
        result.answer = str(row[1]) if row is not None and row[1] is not None else None
        result.is_organizer = is_bot_admin or (
            row is not None and row[0] in ("organizer", "admin")
        )
    if for_management:
        result.upcoming = await _upcoming_rows(session, meeting.id, now=now, limit=6)
        result.last_started = (
            await session.exec(
                select(MeetingOccurrence)
                .where(
                    MeetingOccurrence.meeting_id == meeting.id,
                    MeetingOccurrence.starts_at <= now,
                    MeetingOccurrence.cancelled_at.is_(None),
                )
                .order_by(MeetingOccurrence.starts_at.desc())
                .limit(1)
            )
        ).first()
    return result


async def _require_member(session: AsyncSession, member: Member, org: Organization) -> None:
    found = (
        await session.exec(
            select(Membership.id).where(
                Membership.member_id == member.id, Membership.organization_id == org.id
            )
        )
    ).first()
    if found is None:
        raise NotOrgMember(org=org.name, slug=org.slug)


async def _require_organizer(
    session: AsyncSession,
    *,
    actor: Member,
    org: Organization,
    now: dt.datetime,
    action: str,
    is_bot_admin: bool,
) -> None:
    await organizations.require_organizer(
        session, member=actor, org=org, now=now, action=action, is_bot_admin=is_bot_admin
    )


# --- creating and scheduling -------------------------------------------------------------------


def validate_reminders(minutes: Sequence[int]) -> list[int]:
    """Reminder offsets, sorted longest first, each from 1 minute to 14 days."""
    cleaned = sorted({int(m) for m in minutes}, reverse=True)
    if len(cleaned) > MAX_REMINDERS:
        raise MeetingInvalid(field="reminder", reason="too_many", limit=MAX_REMINDERS)
    for value in cleaned:
        if not 1 <= value <= MAX_REMINDER_MINUTES:
            raise MeetingInvalid(field="reminder", reason="range")
    return cleaned


async def create_meeting(
    session: AsyncSession,
    *,
    actor: Member,
    org: Organization,
    draft: MeetingDraft,
    reminder_minutes: Sequence[int],
    now: dt.datetime,
    ahead: int,
    is_bot_admin: bool = False,
) -> Meeting:
    """An organiser creates a meeting (or a series); its occurrences and reminders are set up."""
    await _require_organizer(
        session, actor=actor, org=org, now=now, action="meeting.create", is_bot_admin=is_bot_admin
    )
    title = clean_title(draft.title)
    if draft.starts_at is None:
        raise MeetingInvalid(field="one_line", reason="usage")
    starts_at = require_future(draft.starts_at, now=now)
    duration = check_duration(dt.timedelta(minutes=draft.duration_minutes))
    place, link = (draft.place, draft.link)
    if draft.until is not None and draft.until < starts_at:
        raise MeetingInvalid(field="until", reason="before_start")
    meeting = Meeting(
        organization_id=org.id,
        title=title,
        starts_at=starts_at,
        duration_minutes=duration,
        place=read_place(place)[0] if place else "",
        link=read_place(link)[1] if link else "",
        agenda=read_agenda(draft.agenda),
        rrule=draft.rule(org.timezone),
        reminder_minutes=validate_reminders(reminder_minutes),
        created_by=actor.id,
        created_at=now,
    )
    session.add(meeting)
    await session.flush()
    await extend_series(session, meeting, org, now=now, ahead=ahead)
    await audit.record(
        session,
        action="meeting.create",
        now=now,
        actor_member_id=actor.id,
        organization_id=org.id,
        target=f"meeting:{meeting.id}",
        details={"repeat": draft.repeat or "once"},
    )
    return meeting


def reminder_key(meeting_id: int, original_start: dt.datetime, minutes: int) -> str:
    """The fixed job key of one reminder of one occurrence."""
    return f"{occurrence_prefix(meeting_id, original_start)}remind-{minutes}"


def occurrence_prefix(meeting_id: int, original_start: dt.datetime) -> str:
    """The start of every job key that belongs to one occurrence."""
    return f"meeting-{meeting_id}-occ-{recurrence.token(original_start)}-"


async def extend_series(
    session: AsyncSession, meeting: Meeting, org: Organization, *, now: dt.datetime, ahead: int
) -> list[MeetingOccurrence]:
    """Keep ``ahead`` future occurrences as rows with their reminders; returns the new ones.

    The extend job runs again when the next occurrence begins, so a series never has more
    than a few rows and jobs ahead, however long it runs.
    """
    if meeting.cancelled_at is not None:
        return []
    rows = list(
        (
            await session.exec(
                select(MeetingOccurrence)
                .where(MeetingOccurrence.meeting_id == meeting.id)
                .order_by(MeetingOccurrence.original_start.desc())
                .limit(ahead + 1)
            )
        ).all()
    )
    future = [row for row in rows if row.original_start > now]
    latest = rows[0].original_start if rows else None
    need = ahead - len(future) if meeting.rrule else (0 if rows else 1)
    created = []
    if need > 0:
        starts = recurrence.occurrences(
            meeting.rrule,
            first=meeting.starts_at,
            timezone=org.timezone,
            after=max(latest, now) if latest is not None else None,
            limit=need,
        )
        for start in starts:
            if start <= now:
                continue
            occurrence = MeetingOccurrence(
                meeting_id=meeting.id,
                original_start=start,
                starts_at=start,
                duration_minutes=meeting.duration_minutes,
            )
            session.add(occurrence)
            created.append(occurrence)
        await session.flush()
        for occurrence in created:
            await schedule_reminders(session, meeting, occurrence, now=now)
    await _schedule_extension(session, meeting, now=now)
    return created


async def _schedule_extension(session: AsyncSession, meeting: Meeting, *, now: dt.datetime):
    """Wake the meeting up when its next occurrence begins: a series adds one more, and the
    cards stop taking answers for the one that began.

    Each wake-up has its own key (the occurrence's): a job cannot reschedule its own row,
    which the runner marks done once the handler returns.
    """
    prefix = f"meeting-{meeting.id}-extend-"
    await jobs.cancel_prefix(session, prefix)
    if meeting.cancelled_at is not None:
        return
    next_start = (
        await session.exec(
            select(sa.func.min(MeetingOccurrence.original_start)).where(
                MeetingOccurrence.meeting_id == meeting.id,
                MeetingOccurrence.original_start > now,
            )
        )
    ).one()
    if next_start is None:
        return
    await jobs.schedule(
        session,
        kind=EXTEND_JOB,
        key=prefix + recurrence.token(next_start),
        due_at=next_start,
        payload={"meeting_id": meeting.id},
        now=now,
    )


async def schedule_reminders(
    session: AsyncSession,
    meeting: Meeting,
    occurrence: MeetingOccurrence,
    *,
    now: dt.datetime,
) -> int:
    """(Re)schedule the occurrence's reminders at its offsets; returns how many are pending.

    Reminders whose time has already passed when they are scheduled are left out: the person
    who moved or created the meeting that close to its start tells people another way (the
    "moved" message), and the shorter reminders still come.
    """
    prefix = occurrence_prefix(meeting.id, occurrence.original_start) + "remind-"
    await jobs.cancel_prefix(session, prefix)
    if meeting.cancelled_at is not None or occurrence.cancelled_at is not None:
        return 0
    count = 0
    for minutes in meeting.reminder_minutes:
        due = occurrence.starts_at - dt.timedelta(minutes=minutes)
        if due <= now:
            continue
        await jobs.schedule(
            session,
            kind=REMIND_JOB,
            key=reminder_key(meeting.id, occurrence.original_start, minutes),
            due_at=due,
            payload={"occurrence_id": occurrence.id, "minutes": minutes},
            now=now,
        )
        count += 1
    return count


# --- answering ---------------------------------------------------------------------------------


def _require_open(occurrence: MeetingOccurrence, meeting: Meeting, now: dt.datetime) -> None:
    """Answers and changes need an occurrence that is neither cancelled nor begun."""
    if meeting.cancelled_at is not None or occurrence.cancelled_at is not None:
        raise OccurrenceCancelled(title=meeting.title)
    if now >= occurrence.starts_at:
        raise MeetingStarted(title=meeting.title)


async def rsvp(
    session: AsyncSession,
    *,
    member: Member,
    occurrence_id: int,
    answer: Answer,
    now: dt.datetime,
    join: bool = False,
) -> tuple[MeetingOccurrence, Meeting, Organization]:
    """A member answers 참석 / 불참 / 미정 for one occurrence (a new answer replaces the old).

    With ``join`` someone who opened the meeting's link joins its organisation with the same
    tap (as a supporter; a sensitive organisation still asks its separate consent first).
    """
    occurrence, meeting, org = await get_occurrence(session, occurrence_id)
    _require_open(occurrence, meeting, now)
    if join:
        await organizations.join(session, member=member, org=org, now=now)
    else:
        await _require_member(session, member, org)
    statement = upsert_insert(session, MeetingRsvp).values(
        occurrence_id=occurrence.id, member_id=member.id, answer=answer.value, answered_at=now
    )
    statement = statement.on_conflict_do_update(
        index_elements=["occurrence_id", "member_id"],
        set_={"answer": statement.excluded.answer, "answered_at": statement.excluded.answered_at},
    )
    await session.exec(statement)
    return occurrence, meeting, org


# --- reminders ---------------------------------------------------------------------------------


async def send_reminder(
    session: AsyncSession,
    *,
    occurrence_id: int,
    minutes: int,
    renderer: Renderer,
    now: dt.datetime,
) -> int:
    """A reminder is due: queue it for everyone in its audience; returns how many.

    Dropped when the occurrence was cancelled or has begun, or when a shorter reminder of the
    same occurrence is due too (after downtime only the latest one goes out). A late reminder
    says the real time left. Each recipient's message shows their own answer.
    """
    row = (
        await session.exec(
            select(MeetingOccurrence, Meeting, Organization)
            .join(Meeting, Meeting.id == MeetingOccurrence.meeting_id)
            .join(Organization, Organization.id == Meeting.organization_id)
            .where(MeetingOccurrence.id == occurrence_id)
        )
    ).first()
    if row is None:
        return 0
    occurrence, meeting, org = row
    if meeting.cancelled_at is not None or occurrence.cancelled_at is not None:
        return 0
    if now >= occurrence.starts_at:
        log.info("reminder for occurrence %s dropped: the meeting has begun", occurrence.id)
        return 0
    if any(
        other < minutes and occurrence.starts_at - dt.timedelta(minutes=other) <= now
        for other in meeting.reminder_minutes
    ):
        return 0
    batch = f"mtg-remind:{occurrence.id}:{minutes}:{recurrence.token(occurrence.starts_at)}"
    recipients = await _reminder_recipients(session, meeting, occurrence, batch)
    remaining = max(1, round((occurrence.starts_at - now).total_seconds() / 60))
    payloads: dict[tuple[str, str | None], dict[str, Any]] = {}
    rows = []
    for person in recipients:
        key = (person.language, person.answer)
        if key not in payloads:
            shown = MeetingView(meeting, org, occurrence, answer=person.answer)
            rendered = renderer.render(
                "meetings/reminder.html", person.language, view=shown, remaining=remaining
            )
            payloads[key] = outbox.message_payload(rendered.to_payload())
        rows.append(
            {
                "chat_id": person.telegram_user_id,
                "member_id": person.member_id,
                "payload": payloads[key],
                "dedupe_key": f"{batch}:{person.member_id}",
            }
        )
    return await outbox.enqueue_many(session, rows, now=now, batch=batch, priority=1)


async def _reminder_recipients(
    session: AsyncSession, meeting: Meeting, occurrence: MeetingOccurrence, batch: str
) -> list[Recipient]:
    """Members who get this reminder, with their answers; muted ones only if they said yes."""
    answer = MeetingRsvp.answer
    query = (
        select(Member.id, Member.telegram_user_id, Member.language, answer)
        .join(Membership, Membership.member_id == Member.id)
        .outerjoin(
            MeetingRsvp,
            sa.and_(
                MeetingRsvp.member_id == Member.id, MeetingRsvp.occurrence_id == occurrence.id
            ),
        )
        .where(
            Membership.organization_id == meeting.organization_id,
            Member.deleted_at.is_(None),
            Member.telegram_user_id.is_not(None),
            Member.unreachable_since.is_(None),
            # Already queued by an earlier run (looked up by its unique dedupe key).
            ~sa.exists().where(
                Delivery.dedupe_key == sa.literal(batch + ":") + sa.cast(Member.id, sa.String)
            ),
        )
    )
    not_muted = Member.muted.is_(False)
    if meeting.reminder_audience == ReminderAudience.EVERYONE:
        query = query.where(
            sa.or_(
                answer == Answer.YES,
                sa.and_(sa.or_(answer.is_(None), answer == Answer.MAYBE), not_muted),
            )
        )
    else:
        query = query.where(
            sa.or_(answer == Answer.YES, sa.and_(answer == Answer.MAYBE, not_muted))
        )
    rows = (await session.exec(query.order_by(Member.id))).all()
    return [
        Recipient(member_id, telegram_id, language, str(given) if given else None)
        for member_id, telegram_id, language, given in rows
    ]


async def extend_job(session: AsyncSession, *, meeting_id: int, now: dt.datetime, ahead: int):
    """The extend job: one occurrence began, schedule the next ones."""
    try:
        meeting, org = await get_meeting(session, meeting_id)
    except MeetingNotFound:
        return []
    return await extend_series(session, meeting, org, now=now, ahead=ahead)


async def set_reminders(
    session: AsyncSession,
    *,
    actor: Member,
    meeting_id: int,
    minutes: Sequence[int] | None = None,
    audience: ReminderAudience | None = None,
    now: dt.datetime,
    is_bot_admin: bool = False,
) -> Meeting:
    """An organiser changes when reminders go out, or to whom; the jobs follow at once.

    An offset longer than the time to a one-off meeting (or than the gap between two
    occurrences of a series) could never go out: it is refused with the gap named.
    """
    meeting, org = await get_meeting(session, meeting_id)
    await _require_organizer(
        session, actor=actor, org=org, now=now, action="meeting.remind", is_bot_admin=is_bot_admin
    )
    if meeting.cancelled_at is not None:
        raise OccurrenceCancelled(title=meeting.title)
    rows = await _upcoming_rows(session, meeting.id, now=now, include_cancelled=False)
    if minutes is not None:
        cleaned = validate_reminders(minutes)
        if meeting.rrule:
            gap = recurrence.interval(meeting.rrule)
        else:
            gap = (rows[0].starts_at - now) if rows else dt.timedelta()
        for value in cleaned:
            if dt.timedelta(minutes=value) >= gap:
                raise MeetingInvalid(
                    field="reminder",
                    reason="too_long",
                    minutes=value,
                    gap=max(0, int(gap.total_seconds() // 60)),
                    series=bool(meeting.rrule),
                )
        meeting.reminder_minutes = cleaned
    if audience is not None:
        meeting.reminder_audience = audience
    session.add(meeting)
    for occurrence in rows:
        if occurrence.starts_at > now:
            await schedule_reminders(session, meeting, occurrence, now=now)
    await audit.record(
        session,
        action="meeting.reminders",
        now=now,
        actor_member_id=actor.id,
        organization_id=org.id,
        target=f"meeting:{meeting.id}",
        details={"minutes": meeting.reminder_minutes, "audience": str(meeting.reminder_audience)},
    )
    await session.flush()
    return meeting


# --- moving and cancelling ---------------------------------------------------------------------


async def _responders(
    session: AsyncSession,
    occurrence_ids: Sequence[int],
    answers: Sequence[Answer] = (Answer.YES, Answer.MAYBE),
) -> list[Recipient]:
    """Reachable members who gave one of ``answers`` for any of the occurrences (once each)."""
    if not occurrence_ids:
        return []
    rows = (
        await session.exec(
            select(Member.id, Member.telegram_user_id, Member.language)
            .join(MeetingRsvp, MeetingRsvp.member_id == Member.id)
            .where(
                MeetingRsvp.occurrence_id.in_(list(occurrence_ids)),
                MeetingRsvp.answer.in_([a.value for a in answers]),
                Member.deleted_at.is_(None),
                Member.telegram_user_id.is_not(None),
                Member.unreachable_since.is_(None),
            )
            .distinct()
            .order_by(Member.id)
        )
    ).all()
    return [
        Recipient(member_id, telegram_id, language) for member_id, telegram_id, language in rows
    ]


async def _notify(
    session: AsyncSession,
    renderer: Renderer,
    recipients: Sequence[Recipient],
    *,
    template: str,
    batch: str,
    now: dt.datetime,
    priority: int = 1,
    **values: Any,
) -> int:
    """Queue the same message (in each person's language) for every recipient, once each."""
    payloads: dict[str, dict[str, Any]] = {}
    rows = []
    for person in recipients:
        if person.language not in payloads:
            rendered = renderer.render(template, person.language, **values)
            payloads[person.language] = outbox.message_payload(rendered.to_payload())
        rows.append(
            {
                "chat_id": person.telegram_user_id,
                "member_id": person.member_id,
                "payload": payloads[person.language],
                "dedupe_key": f"{batch}:{person.member_id}",
            }
        )
    return await outbox.enqueue_many(session, rows, now=now, batch=batch, priority=priority)


async def _organiser_occurrence(
    session: AsyncSession,
    *,
    actor: Member,
    occurrence_id: int,
    now: dt.datetime,
    action: str,
    is_bot_admin: bool,
) -> tuple[MeetingOccurrence, Meeting, Organization]:
    occurrence, meeting, org = await get_occurrence(session, occurrence_id)
    await _require_organizer(
        session, actor=actor, org=org, now=now, action=action, is_bot_admin=is_bot_admin
    )
    return occurrence, meeting, org


@dataclass(frozen=True)
class Change:
    """What a move or a cancellation did, for the organiser's confirmation."""

    meeting: Meeting
    organization: Organization
    occurrence: MeetingOccurrence | None
    told: int
    before: dt.datetime | None = None


async def move_occurrence(
    session: AsyncSession,
    *,
    actor: Member,
    occurrence_id: int,
    new_start: dt.datetime,
    renderer: Renderer,
    now: dt.datetime,
    is_bot_admin: bool = False,
) -> Change:
    """Move one occurrence; its reminders follow; everyone who said yes or maybe is told."""
    occurrence, meeting, org = await _organiser_occurrence(
        session,
        actor=actor,
        occurrence_id=occurrence_id,
        now=now,
        action="meeting.move",
        is_bot_admin=is_bot_admin,
    )
    _require_open(occurrence, meeting, now)
    require_future(new_start, now=now)
    before = occurrence.starts_at
    if new_start == before:
        return Change(meeting, org, occurrence, 0, before)
    occurrence.starts_at = new_start
    meeting.revision += 1
    session.add_all([occurrence, meeting])
    await session.flush()
    await schedule_reminders(session, meeting, occurrence, now=now)
    told = await _notify(
        session,
        renderer,
        await _responders(session, [occurrence.id]),
        template="meetings/moved.html",
        batch=f"mtg-{meeting.id}-r{meeting.revision}-moved",
        now=now,
        view=MeetingView(meeting, org, occurrence),
        before=before,
    )
    await _audit_change(session, actor, meeting, "meeting.move", now, occurrence)
    return Change(meeting, org, occurrence, told, before)


async def cancel_occurrence(
    session: AsyncSession,
    *,
    actor: Member,
    occurrence_id: int,
    renderer: Renderer,
    now: dt.datetime,
    is_bot_admin: bool = False,
) -> Change:
    """Cancel one occurrence (a one-off meeting: the meeting); yes and maybe are told."""
    occurrence, meeting, org = await _organiser_occurrence(
        session,
        actor=actor,
        occurrence_id=occurrence_id,
        now=now,
        action="meeting.cancel",
        is_bot_admin=is_bot_admin,
    )
    _require_open(occurrence, meeting, now)
    occurrence.cancelled_at = now
    if not meeting.rrule:
        meeting.cancelled_at = now
    meeting.revision += 1
    session.add_all([occurrence, meeting])
    await jobs.cancel_prefix(session, occurrence_prefix(meeting.id, occurrence.original_start))
    told = await _notify(
        session,
        renderer,
        await _responders(session, [occurrence.id]),
        template="meetings/cancelled.html",
        batch=f"mtg-{meeting.id}-r{meeting.revision}-cancelled",
        now=now,
        view=MeetingView(meeting, org, occurrence),
        series=False,
    )
    await _audit_change(session, actor, meeting, "meeting.cancel", now, occurrence)
    return Change(meeting, org, occurrence, told)


async def move_series(
    session: AsyncSession,
    *,
    actor: Member,
    meeting_id: int,
    new_start: dt.datetime,
    renderer: Renderer,
    now: dt.datetime,
    ahead: int,
    is_bot_admin: bool = False,
) -> Change:
    """Move the whole series: ``new_start`` is the next occurrence's new time, and the rhythm
    continues from there (same repeat and end); answers stay with their occurrences."""
    meeting, org = await get_meeting(session, meeting_id)
    await _require_organizer(
        session, actor=actor, org=org, now=now, action="meeting.move", is_bot_admin=is_bot_admin
    )
    if meeting.cancelled_at is not None:
        raise OccurrenceCancelled(title=meeting.title)
    require_future(new_start, now=now)
    rows = [
        row for row in await _upcoming_rows(session, meeting.id, now=now) if row.starts_at > now
    ]
    if not meeting.rrule:
        if not rows:
            raise MeetingStarted(title=meeting.title)
        return await move_occurrence(
            session,
            actor=actor,
            occurrence_id=rows[0].id,
            new_start=new_start,
            renderer=renderer,
            now=now,
            is_bot_admin=is_bot_admin,
        )
    rows.sort(key=lambda row: row.original_start)
    before = rows[0].starts_at if rows else meeting.starts_at
    rule = recurrence.with_new_start(meeting.rrule, start=new_start, timezone=org.timezone)
    starts = recurrence.occurrences(rule, first=new_start, timezone=org.timezone, limit=len(rows))
    # Two steps, so that no row ever takes a start another row still has (unique per meeting).
    for index, row in enumerate(rows):
        await jobs.cancel_prefix(session, occurrence_prefix(meeting.id, row.original_start))
        row.original_start = row.original_start - dt.timedelta(microseconds=index + 1)
        session.add(row)
    await session.flush()
    for index, row in enumerate(rows):
        if index < len(starts):
            row.original_start = row.starts_at = starts[index]
        else:  # the series now ends before this one
            row.original_start = row.starts_at = row.original_start.replace(microsecond=0)
            row.cancelled_at = row.cancelled_at or now
        session.add(row)
    meeting.starts_at = new_start
    meeting.rrule = rule
    meeting.revision += 1
    session.add(meeting)
    await session.flush()
    for row in rows:
        await schedule_reminders(session, meeting, row, now=now)
    await extend_series(session, meeting, org, now=now, ahead=ahead)
    told = await _notify(
        session,
        renderer,
        await _responders(session, [row.id for row in rows]),
        template="meetings/series_moved.html",
        batch=f"mtg-{meeting.id}-r{meeting.revision}-moved",
        now=now,
        view=MeetingView(meeting, org, rows[0] if rows else None),
        before=before,
    )
    await _audit_change(session, actor, meeting, "meeting.move_series", now)
    return Change(meeting, org, rows[0] if rows else None, told, before)


async def cancel_series(
    session: AsyncSession,
    *,
    actor: Member,
    meeting_id: int,
    renderer: Renderer,
    now: dt.datetime,
    is_bot_admin: bool = False,
) -> Change:
    """Cancel the meeting with every occurrence still to come; yes and maybe are told."""
    meeting, org = await get_meeting(session, meeting_id)
    await _require_organizer(
        session, actor=actor, org=org, now=now, action="meeting.cancel", is_bot_admin=is_bot_admin
    )
    if meeting.cancelled_at is not None:
        raise OccurrenceCancelled(title=meeting.title)
    rows = [
        row for row in await _upcoming_rows(session, meeting.id, now=now) if row.starts_at > now
    ]
    recipients = await _responders(session, [row.id for row in rows if row.cancelled_at is None])
    for row in rows:
        row.cancelled_at = row.cancelled_at or now
        session.add(row)
    meeting.cancelled_at = now
    meeting.revision += 1
    session.add(meeting)
    await jobs.cancel_prefix(session, f"meeting-{meeting.id}-")
    told = await _notify(
        session,
        renderer,
        recipients,
        template="meetings/cancelled.html",
        batch=f"mtg-{meeting.id}-r{meeting.revision}-cancelled",
        now=now,
        view=MeetingView(meeting, org, None),
        series=True,
    )
    await _audit_change(session, actor, meeting, "meeting.cancel_series", now)
    return Change(meeting, org, None, told)


async def _audit_change(
    session: AsyncSession,
    actor: Member,
    meeting: Meeting,
    action: str,
    now: dt.datetime,
    occurrence: MeetingOccurrence | None = None,
) -> None:
    target = f"meeting:{meeting.id}"
    if occurrence is not None:
        target += f":{recurrence.token(occurrence.original_start)}"
    await audit.record(
        session,
        action=action,
        now=now,
        actor_member_id=actor.id,
        organization_id=meeting.organization_id,
        target=target,
    )


# --- check-in ----------------------------------------------------------------------------------


async def open_checkin(
    session: AsyncSession,
    *,
    actor: Member,
    occurrence_id: int,
    minutes: int,
    renderer: Renderer,
    now: dt.datetime,
    is_bot_admin: bool = False,
) -> tuple[MeetingOccurrence, Meeting, Organization]:
    """The organiser opens check-in at the meeting: a code to read out (and its QR link),
    a button on the cards; it closes by itself after ``minutes``. Those who said yes or
    maybe get a message with the button."""
    occurrence, meeting, org = await _organiser_occurrence(
        session,
        actor=actor,
        occurrence_id=occurrence_id,
        now=now,
        action="meeting.checkin",
        is_bot_admin=is_bot_admin,
    )
    if meeting.cancelled_at is not None or occurrence.cancelled_at is not None:
        raise OccurrenceCancelled(title=meeting.title)
    if not MeetingView(meeting, org, occurrence).checkin_window(now):
        raise CheckinWindow(title=meeting.title, early=int(CHECKIN_EARLY.total_seconds() // 60))
    already_open = checkin_is_open(occurrence, now)
    if not already_open:
        occurrence.checkin_code = await _free_code(session, now)
        occurrence.checkin_opened_at = now
        occurrence.checkin_opened_by = actor.id
    occurrence.checkin_closes_at = now + dt.timedelta(minutes=minutes)
    session.add(occurrence)
    await jobs.schedule(
        session,
        kind=CHECKIN_CLOSE_JOB,
        key=occurrence_prefix(meeting.id, occurrence.original_start) + "checkin-close",
        due_at=occurrence.checkin_closes_at,
        payload={"occurrence_id": occurrence.id},
        now=now,
    )
    if not already_open:
        recipients = [
            person
            for person in await _responders(session, [occurrence.id])
            if person.member_id != actor.id
        ]
        await _notify(
            session,
            renderer,
            recipients,
            template="meetings/checkin_invite.html",
            batch=f"mtg-checkin:{occurrence.id}:{recurrence.token(now)}",
            now=now,
            view=MeetingView(meeting, org, occurrence, checkin_open=True),
        )
        await _audit_change(session, actor, meeting, "meeting.checkin_open", now, occurrence)
    await session.flush()
    return occurrence, meeting, org


async def _free_code(session: AsyncSession, now: dt.datetime) -> str:
    """A short numeric code no other open check-in uses."""
    for _ in range(20):
        code = f"{secrets.randbelow(10**CHECKIN_CODE_DIGITS):0{CHECKIN_CODE_DIGITS}d}"
        taken = (
            await session.exec(
                select(MeetingOccurrence.id).where(
                    MeetingOccurrence.checkin_code == code,
                    MeetingOccurrence.checkin_closes_at > now,
                )
            )
        ).first()
        if taken is None:
            return code
    raise RuntimeError("no free check-in code")  # pragma: no cover - a million codes


async def close_checkin(
    session: AsyncSession,
    *,
    actor: Member,
    occurrence_id: int,
    now: dt.datetime,
    is_bot_admin: bool = False,
) -> tuple[MeetingOccurrence, Meeting, int]:
    """The organiser closes check-in now; returns how many checked in."""
    occurrence, meeting, _ = await _organiser_occurrence(
        session,
        actor=actor,
        occurrence_id=occurrence_id,
        now=now,
        action="meeting.checkin",
        is_bot_admin=is_bot_admin,
    )
    if checkin_is_open(occurrence, now):
        occurrence.checkin_closes_at = now
        session.add(occurrence)
        await jobs.cancel(
            session, occurrence_prefix(meeting.id, occurrence.original_start) + "checkin-close"
        )
    return occurrence, meeting, await attendance_count(session, occurrence.id)


async def finish_checkin(
    session: AsyncSession, *, occurrence_id: int, renderer: Renderer, now: dt.datetime
) -> int | None:
    """The close job: check-in ended by itself; the organiser who opened it gets the count.

    Returns the meeting id (its cards change), or None if nothing closed.
    """
    row = (
        await session.exec(
            select(MeetingOccurrence, Meeting, Organization)
            .join(Meeting, Meeting.id == MeetingOccurrence.meeting_id)
            .join(Organization, Organization.id == Meeting.organization_id)
            .where(MeetingOccurrence.id == occurrence_id)
        )
    ).first()
    if row is None:
        return None
    occurrence, meeting, org = row
    if occurrence.checkin_closes_at is None or occurrence.checkin_closes_at > now:
        return None
    opener = (
        await session.get(Member, occurrence.checkin_opened_by)
        if occurrence.checkin_opened_by
        else None
    )
    if opener is not None and opener.telegram_user_id and opener.deleted_at is None:
        count = await attendance_count(session, occurrence.id)
        rendered = renderer.render(
            "meetings/checkin_closed.html",
            opener.language,
            view=MeetingView(meeting, org, occurrence, attended=count),
        )
        await outbox.enqueue(
            session,
            chat_id=opener.telegram_user_id,
            payload=outbox.message_payload(rendered.to_payload()),
            now=now,
            member_id=opener.id,
            batch=f"mtg-checkin-closed:{occurrence.id}",
            dedupe_key=f"mtg-checkin-closed:{occurrence.id}:{recurrence.token(now)}",
        )
    return meeting.id


async def check_in(
    session: AsyncSession,
    *,
    member: Member,
    now: dt.datetime,
    occurrence_id: int | None = None,
    code: str | None = None,
    method: CheckinMethod = CheckinMethod.BUTTON,
) -> tuple[MeetingOccurrence, Meeting, Organization, bool]:
    """A member present checks in (button, QR link or typed code); True if newly recorded."""
    if code is not None:
        code = re.sub(r"\s", "", code)
        found = (
            await session.exec(
                select(MeetingOccurrence.id).where(
                    MeetingOccurrence.checkin_code == code,
                    MeetingOccurrence.checkin_opened_at <= now,
                    MeetingOccurrence.checkin_closes_at > now,
                )
            )
        ).first()
        if found is None:
            raise WrongCheckinCode()
        occurrence_id = found
    if occurrence_id is None:
        raise StaleButton()
    occurrence, meeting, org = await get_occurrence(session, occurrence_id)
    if not checkin_is_open(occurrence, now):
        raise CheckinClosed(title=meeting.title)
    await _require_member(session, member, org)
    statement = (
        upsert_insert(session, MeetingAttendance)
        .values(
            occurrence_id=occurrence.id,
            member_id=member.id,
            method=CheckinMethod(method).value,
            checked_in_at=now,
        )
        .on_conflict_do_nothing(index_elements=["occurrence_id", "member_id"])
        .returning(MeetingAttendance.id)
    )
    new = (await session.exec(statement)).first() is not None
    return occurrence, meeting, org, new


def qr_png(link: str) -> bytes:
    """A QR code (PNG) holding the check-in link, to show on a screen or print at the meeting."""
    # Imported here, for the few who open check-in, not at every start of every process.
    import qrcode
    from qrcode.image.pure import PyPNGImage

    code = qrcode.QRCode(error_correction=qrcode.constants.ERROR_CORRECT_M, box_size=10, border=4)
    code.add_data(link)
    code.make(fit=True)
    buffer = io.BytesIO()
    code.make_image(image_factory=PyPNGImage).save(buffer)
    return buffer.getvalue()


# --- minutes -----------------------------------------------------------------------------------


async def send_minutes(
    session: AsyncSession,
    *,
    actor: Member,
    occurrence_id: int,
    renderer: Renderer,
    now: dt.datetime,
    text: str = "",
    file_id: str = "",
    filename: str = "",
    is_bot_admin: bool = False,
) -> int:
    """After the meeting the organiser sends minutes (a text or a document); those who
    attended and those who said yes receive them. Returns how many."""
    occurrence, meeting, org = await _organiser_occurrence(
        session,
        actor=actor,
        occurrence_id=occurrence_id,
        now=now,
        action="meeting.minutes",
        is_bot_admin=is_bot_admin,
    )
    if occurrence.cancelled_at is not None:
        raise OccurrenceCancelled(title=meeting.title)
    if now < occurrence.starts_at:
        raise MinutesTooEarly(title=meeting.title)
    if not text.strip() and not file_id:
        raise MeetingInvalid(field="minutes", reason="empty")
    version = int(occurrence.minutes.get("version", 0)) + 1
    occurrence.minutes = {
        "version": version,
        "text": text.strip(),
        "file_id": file_id,
        "filename": filename,
    }
    occurrence.minutes_sent_at = now
    session.add(occurrence)
    attended = select(MeetingAttendance.member_id).where(
        MeetingAttendance.occurrence_id == occurrence.id
    )
    said_yes = select(MeetingRsvp.member_id).where(
        MeetingRsvp.occurrence_id == occurrence.id, MeetingRsvp.answer == Answer.YES
    )
    rows = (
        await session.exec(
            select(Member.id, Member.telegram_user_id, Member.language)
            .where(
                sa.or_(Member.id.in_(attended), Member.id.in_(said_yes)),
                Member.id != actor.id,
                Member.deleted_at.is_(None),
                Member.telegram_user_id.is_not(None),
                Member.unreachable_since.is_(None),
            )
            .order_by(Member.id)
        )
    ).all()
    shown = MeetingView(meeting, org, occurrence)
    batch = f"mtg-minutes:{occurrence.id}:{version}"
    payloads: dict[str, dict[str, Any]] = {}
    deliveries = []
    for member_id, telegram_id, language in rows:
        if language not in payloads:
            if file_id:
                caption = renderer.render("meetings/minutes.html", language, view=shown, text="")
                payloads[language] = outbox.message_payload(
                    caption.to_payload(),
                    method=outbox.SEND_DOCUMENT,
                    file_id=file_id,
                    filename=filename,
                )
            else:
                rendered = renderer.render(
                    "meetings/minutes.html", language, view=shown, text=text.strip()
                )
                payloads[language] = outbox.message_payload(rendered.to_payload())
        deliveries.append(
            {
                "chat_id": telegram_id,
                "member_id": member_id,
                "payload": payloads[language],
                "dedupe_key": f"{batch}:{member_id}",
            }
        )
    count = await outbox.enqueue_many(session, deliveries, now=now, batch=batch)
    await _audit_change(session, actor, meeting, "meeting.minutes", now, occurrence)
    return count


# --- what people see: lists, /me, calendars ----------------------------------------------------


@dataclass(frozen=True)
class Upcoming:
    """One upcoming occurrence in a person's list, with their answer."""

    meeting: Meeting
    organization: Organization
    occurrence: MeetingOccurrence
    answer: str | None


async def upcoming_for(
    session: AsyncSession, member: Member, *, now: dt.datetime, limit: int = 10
) -> list[Upcoming]:
    """The person's next meetings (in their organisations, not cancelled), soonest first."""
    rows = (
        await session.exec(
            select(MeetingOccurrence, Meeting, Organization, MeetingRsvp.answer)
            .join(Meeting, Meeting.id == MeetingOccurrence.meeting_id)
            .join(Organization, Organization.id == Meeting.organization_id)
            .join(
                Membership,
                sa.and_(
                    Membership.organization_id == Organization.id,
                    Membership.member_id == member.id,
                ),
            )
            .outerjoin(
                MeetingRsvp,
                sa.and_(
                    MeetingRsvp.occurrence_id == MeetingOccurrence.id,
                    MeetingRsvp.member_id == member.id,
                ),
            )
            .where(
                MeetingOccurrence.cancelled_at.is_(None),
                Meeting.cancelled_at.is_(None),
                MeetingOccurrence.starts_at > now - MAX_DURATION,
                MeetingOccurrence.starts_at < now + dt.timedelta(days=UPCOMING_DAYS),
            )
            .order_by(MeetingOccurrence.starts_at, MeetingOccurrence.id)
            .limit(limit + 10)
        )
    ).all()
    result = [
        Upcoming(meeting, org, occurrence, str(answer) if answer else None)
        for occurrence, meeting, org, answer in rows
        if _ends_at(occurrence) > now
    ]
    return result[:limit]


@dataclass(frozen=True)
class Attendance:
    """A person's attendance record, for /me."""

    attended: int
    recent: list[tuple[Meeting, MeetingOccurrence]]


async def attendance_of(session: AsyncSession, member: Member, *, recent: int = 3) -> Attendance:
    """How often the person checked in, and where most recently."""
    total = (
        await session.exec(
            select(sa.func.count())
            .select_from(MeetingAttendance)
            .where(MeetingAttendance.member_id == member.id)
        )
    ).one()
    rows = (
        await session.exec(
            select(Meeting, MeetingOccurrence)
            .join(MeetingOccurrence, MeetingOccurrence.meeting_id == Meeting.id)
            .join(MeetingAttendance, MeetingAttendance.occurrence_id == MeetingOccurrence.id)
            .where(MeetingAttendance.member_id == member.id)
            .order_by(MeetingOccurrence.starts_at.desc())
            .limit(recent)
        )
    ).all()
    return Attendance(total, [(meeting, occurrence) for meeting, occurrence in rows])


async def calendar_for(
    session: AsyncSession, member: Member, *, now: dt.datetime, domain: str
) -> tuple[bytes, int]:
    """An .ics of the meetings the person has coming up (their organisations'), and how many."""
    ids = (
        await session.exec(
            select(Meeting.id)
            .join(Membership, Membership.organization_id == Meeting.organization_id)
            .join(MeetingOccurrence, MeetingOccurrence.meeting_id == Meeting.id)
            .where(
                Membership.member_id == member.id,
                Meeting.cancelled_at.is_(None),
                MeetingOccurrence.starts_at > now - MAX_DURATION,
            )
            .distinct()
        )
    ).all()
    return await calendar_of(session, list(ids), now=now, domain=domain), len(ids)


async def calendar_of(
    session: AsyncSession, meeting_ids: Sequence[int], *, now: dt.datetime, domain: str
) -> bytes:
    """An .ics holding these meetings (a card's own .ics holds one)."""
    entries = []
    for meeting_id in sorted(meeting_ids):
        meeting, org = await get_meeting(session, meeting_id)
        rows = (
            await session.exec(
                select(MeetingOccurrence).where(MeetingOccurrence.meeting_id == meeting.id)
            )
        ).all()
        entries.append(ics.CalendarEntry(meeting, list(rows), org.timezone, org.name))
    return ics.calendar(entries, now=now, domain=domain)


async def postable(session: AsyncSession, org: Organization, *, now: dt.datetime) -> list[Meeting]:
    """The organisation's meetings that still have an occurrence coming (for /post)."""
    rows = (
        await session.exec(
            select(Meeting)
            .where(
                Meeting.organization_id == org.id,
                Meeting.cancelled_at.is_(None),
                sa.exists().where(
                    MeetingOccurrence.meeting_id == Meeting.id,
                    MeetingOccurrence.cancelled_at.is_(None),
                    MeetingOccurrence.starts_at > now - MAX_DURATION,
                ),
            )
            .order_by(Meeting.starts_at)
            .limit(20)
        )
    ).all()
    return list(rows)


@dataclass(frozen=True)
class AudienceItem:
    """An occurrence offered as an announcement audience (its id and a plain title)."""

    id: int
    title: str


async def audience_items(
    session: AsyncSession, org: Organization, *, now: dt.datetime
) -> list[AudienceItem]:
    """The next occurrence of each of the organisation's meetings, as audience items."""
    items = []
    for meeting in await postable(session, org, now=now):
        occurrence = await next_occurrence(session, meeting.id, now=now)
        if occurrence is not None:
            local = recurrence.to_local(occurrence.starts_at, org.timezone)
            items.append(AudienceItem(occurrence.id, f"{meeting.title} ({local:%Y-%m-%d %H:%M})"))
    return items


def audience_member_ids(occurrence_id: int, variant: str):
    """Members who answered ``variant`` (yes / maybe / no) for the occurrence."""
    return select(MeetingRsvp.member_id).where(
        MeetingRsvp.occurrence_id == occurrence_id,
        MeetingRsvp.answer == Answer(variant).value,
        MeetingRsvp.member_id.is_not(None),
    )


# --- exports and privacy -----------------------------------------------------------------------


async def attendance_rows(
    session: AsyncSession, meeting: Meeting, *, now: dt.datetime, labels: dict[str, str]
) -> AsyncIterator[list[Any]]:
    """Rows of the attendance sheet: every occurrence so far, everyone who answered or came."""
    occurrences = (
        await session.exec(
            select(MeetingOccurrence)
            .where(MeetingOccurrence.meeting_id == meeting.id, MeetingOccurrence.starts_at <= now)
            .order_by(MeetingOccurrence.starts_at)
        )
    ).all()
    for occurrence in occurrences:
        people: dict[Any, list[Any]] = {}
        answers = (
            await session.exec(
                select(MeetingRsvp.member_id, Member.display_name, MeetingRsvp.answer)
                .outerjoin(Member, Member.id == MeetingRsvp.member_id)
                .where(MeetingRsvp.occurrence_id == occurrence.id)
            )
        ).all()
        for index, (member_id, name, answer) in enumerate(answers):
            key = member_id if member_id is not None else f"a{index}"
            people[key] = [name or labels["erased"], labels[str(answer)], False, None, ""]
        present = (
            await session.exec(
                select(
                    MeetingAttendance.member_id,
                    Member.display_name,
                    MeetingAttendance.checked_in_at,
                    MeetingAttendance.method,
                )
                .outerjoin(Member, Member.id == MeetingAttendance.member_id)
                .where(MeetingAttendance.occurrence_id == occurrence.id)
            )
        ).all()
        for index, (member_id, name, at, method) in enumerate(present):
            key = member_id if member_id is not None else f"p{index}"
            row = people.setdefault(
                key, [name or labels["erased"], labels["none"], False, None, ""]
            )
            row[2:] = [True, at, labels[str(method)]]
        status = labels["cancelled"] if occurrence.cancelled_at else ""
        for name, answer, came, at, method in sorted(
            people.values(), key=lambda r: (not r[2], r[0])
        ):
            yield [occurrence.starts_at, status, name, answer, came, at, method]


async def export_attendance(
    session: AsyncSession,
    *,
    actor: Member,
    meeting_id: int,
    kind: str,
    headers: Sequence[str],
    labels: dict[str, str],
    now: dt.datetime,
    is_bot_admin: bool = False,
) -> tuple[Meeting, bytes]:
    """The attendance sheet of a meeting as CSV or XLSX (organisers)."""
    meeting, org = await get_meeting(session, meeting_id)
    await _require_organizer(
        session, actor=actor, org=org, now=now, action="meeting.export", is_bot_admin=is_bot_admin
    )
    rows = attendance_rows(session, meeting, now=now, labels=labels)
    if kind == "csv":
        data = await exports.csv_bytes(headers, rows, timezone=org.timezone)
    else:
        data = await exports.xlsx_bytes(
            headers, rows, sheet_title=meeting.title, timezone=org.timezone
        )
    await audit.record(
        session,
        action="meeting.export",
        now=now,
        actor_member_id=actor.id,
        organization_id=org.id,
        target=f"meeting:{meeting.id}",
        details={"format": kind},
    )
    return meeting, data


async def export_member(session: AsyncSession, member: Member) -> dict[str, Any]:
    """/mydata: the person's answers and attendance, and the meetings they created."""
    answers = (
        await session.exec(
            select(Meeting.title, MeetingOccurrence.starts_at, MeetingRsvp)
            .join(MeetingOccurrence, MeetingOccurrence.id == MeetingRsvp.occurrence_id)
            .join(Meeting, Meeting.id == MeetingOccurrence.meeting_id)
            .where(MeetingRsvp.member_id == member.id)
            .order_by(MeetingOccurrence.starts_at)
        )
    ).all()
    present = (
        await session.exec(
            select(Meeting.title, MeetingOccurrence.starts_at, MeetingAttendance)
            .join(MeetingOccurrence, MeetingOccurrence.id == MeetingAttendance.occurrence_id)
            .join(Meeting, Meeting.id == MeetingOccurrence.meeting_id)
            .where(MeetingAttendance.member_id == member.id)
            .order_by(MeetingOccurrence.starts_at)
        )
    ).all()
    created = (
        await session.exec(select(Meeting.title).where(Meeting.created_by == member.id))
    ).all()
    return {
        "answers": [
            {
                "meeting": title,
                "starts_at": starts.isoformat(),
                "answer": str(row.answer),
                "answered_at": row.answered_at.isoformat(),
            }
            for title, starts, row in answers
        ],
        "attendance": [
            {
                "meeting": title,
                "starts_at": starts.isoformat(),
                "checked_in_at": row.checked_in_at.isoformat(),
                "method": str(row.method),
            }
            for title, starts, row in present
        ],
        "created": list(created),
    }


async def erase_member(session: AsyncSession, member: Member, now: dt.datetime) -> None:
    """/forget: answers for meetings still to come go; past answers and attendance stay only
    as anonymous counts; meetings they created stay, without their name."""
    upcoming = select(MeetingOccurrence.id).where(MeetingOccurrence.starts_at > now)
    await session.exec(
        sa.delete(MeetingRsvp).where(
            MeetingRsvp.member_id == member.id, MeetingRsvp.occurrence_id.in_(upcoming)
        )
    )
    await session.exec(
        sa.update(MeetingRsvp).where(MeetingRsvp.member_id == member.id).values(member_id=None)
    )
    await session.exec(
        sa.update(MeetingAttendance)
        .where(MeetingAttendance.member_id == member.id)
        .values(member_id=None)
    )
    await session.exec(
        sa.update(Meeting).where(Meeting.created_by == member.id).values(created_by=None)
    )
    await session.exec(
        sa.update(MeetingOccurrence)
        .where(MeetingOccurrence.checkin_opened_by == member.id)
        .values(checkin_opened_by=None)
    )

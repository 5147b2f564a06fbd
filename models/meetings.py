"""Meetings: a meeting (one-off or a recurring series), its occurrences, RSVPs and attendance."""

from __future__ import annotations

import datetime as dt
from typing import Any

import sqlalchemy as sa
from sqlmodel import Field, SQLModel

from models.base import StrEnum, enum_field, json_field, when


class Answer(StrEnum):
    """What a member answered for one occurrence: 참석 / 불참 / 미정."""

    YES = "yes"
    NO = "no"
    MAYBE = "maybe"


class ReminderAudience(StrEnum):
    """Who gets a meeting's reminders."""

    RESPONDERS = "responders"  # those who answered yes or maybe
    EVERYONE = "everyone"  # every member of the organisation (except those who said no)


class CheckinMethod(StrEnum):
    """How someone's presence was recorded."""

    BUTTON = "button"
    QR = "qr"
    CODE = "code"


class Meeting(SQLModel, table=True):
    """A meeting, or a series of them on a rhythm (an RFC 5545 rule expanded in local time)."""

    id: int | None = Field(default=None, primary_key=True)
    organization_id: int = Field(foreign_key="organization.id", index=True, ondelete="CASCADE")
    title: str = Field(max_length=120)
    # Start of the first occurrence of the series (of the one-off meeting), UTC.
    starts_at: dt.datetime = when(nullable=False)
    duration_minutes: int = Field(default=120)
    place: str = Field(default="", max_length=200)
    link: str = Field(default="", max_length=500)
    agenda: str = Field(default="", max_length=2000)
    # RFC 5545 RRULE value, e.g. "FREQ=WEEKLY;INTERVAL=2;BYDAY=MO;UNTIL=20270630T145959Z";
    # empty for a one-off meeting. Expanded in the organisation's time zone from starts_at.
    rrule: str = Field(default="", max_length=300)
    # Minutes before an occurrence at which reminders go out, e.g. [1440, 60].
    reminder_minutes: list[int] = Field(default_factory=list, sa_type=sa.JSON(), nullable=False)
    reminder_audience: ReminderAudience = enum_field(ReminderAudience.RESPONDERS)
    created_by: int | None = Field(default=None, foreign_key="member.id", ondelete="SET NULL")
    created_at: dt.datetime = when(nullable=False)
    cancelled_at: dt.datetime | None = when()
    # Raised on every change, so calendar apps replace the event they imported (SEQUENCE).
    revision: int = Field(default=0)


class MeetingOccurrence(SQLModel, table=True):
    """One occurrence of a meeting; a series keeps the next few of them as rows.

    ``original_start`` names the occurrence (RFC 5545's RECURRENCE-ID) and never changes
    when one occurrence is moved; ``starts_at`` is when it really starts.
    """

    __table_args__ = (sa.UniqueConstraint("meeting_id", "original_start"),)

    id: int | None = Field(default=None, primary_key=True)
    meeting_id: int = Field(foreign_key="meeting.id", index=True, ondelete="CASCADE")
    original_start: dt.datetime = when(nullable=False)
    starts_at: dt.datetime = when(nullable=False, index=True)
    duration_minutes: int = Field(default=120)
    cancelled_at: dt.datetime | None = when()
    checkin_code: str | None = Field(default=None, max_length=8, index=True)
    checkin_opened_at: dt.datetime | None = when()
    checkin_closes_at: dt.datetime | None = when()
    checkin_opened_by: int | None = Field(
        default=None, foreign_key="member.id", ondelete="SET NULL"
    )
    minutes_sent_at: dt.datetime | None = when()
    # The minutes as sent: a text, or a Telegram document (file id and name).
    minutes: dict[str, Any] = json_field()


class MeetingRsvp(SQLModel, table=True):
    """A member's answer for one occurrence; after /forget the member link is removed."""

    __table_args__ = (
        sa.UniqueConstraint("occurrence_id", "member_id"),
        sa.Index("ix_meetingrsvp_member", "member_id"),
    )

    id: int | None = Field(default=None, primary_key=True)
    occurrence_id: int = Field(foreign_key="meetingoccurrence.id", ondelete="CASCADE")
    member_id: int | None = Field(default=None, foreign_key="member.id", ondelete="SET NULL")
    answer: Answer = enum_field(Answer.YES, length=8)
    answered_at: dt.datetime = when(nullable=False)


class MeetingAttendance(SQLModel, table=True):
    """Someone was at an occurrence (checked in); after /forget only the count remains."""

    __table_args__ = (
        sa.UniqueConstraint("occurrence_id", "member_id"),
        sa.Index("ix_meetingattendance_member", "member_id"),
    )

    id: int | None = Field(default=None, primary_key=True)
    occurrence_id: int = Field(foreign_key="meetingoccurrence.id", ondelete="CASCADE")
    member_id: int | None = Field(default=None, foreign_key="member.id", ondelete="SET NULL")
    method: CheckinMethod = enum_field(CheckinMethod.BUTTON, length=8)
    checked_in_at: dt.datetime = when(nullable=False)

"""Campaigns and event sign-ups: capacity, waitlist, questions, co-hosts, follow-up surveys."""

from __future__ import annotations

import datetime as dt
from typing import Any

import sqlalchemy as sa
from sqlmodel import Field, SQLModel

from models.base import StrEnum, enum_field, json_field, when


class CampaignStatus(StrEnum):
    """A draft is seen only by organisers; open takes sign-ups; closed takes none."""

    DRAFT = "draft"
    OPEN = "open"
    CLOSED = "closed"


class SignupStatus(StrEnum):
    """Where one person's sign-up stands."""

    CONFIRMED = "confirmed"
    WAITLISTED = "waitlisted"
    CANCELLED = "cancelled"


class Campaign(SQLModel, table=True):
    """An event or action people sign up for (a screening, a rally, a training, a shift).

    The counters are kept on the row and changed only while the row is locked (PostgreSQL:
    SELECT ... FOR UPDATE; SQLite serialises write transactions), so the card reads one row
    and races for the last seats are decided in arrival order.
    """

    id: int | None = Field(default=None, primary_key=True)
    # A network's campaign is co-hosted by the network's groups (each sign-up counts for one).
    organization_id: int = Field(foreign_key="organization.id", index=True, ondelete="CASCADE")
    title: str = Field(max_length=200)
    description: str = Field(default="", max_length=2000)
    starts_at: dt.datetime | None = when()
    place: str = Field(default="", max_length=300)  # a place, or an online link
    capacity: int | None = Field(default=None)  # seats, guests included; None: no limit
    max_guests: int = Field(default=0)  # how many people one person may bring (+1, +2)
    deadline: dt.datetime | None = when()  # sign-ups and cancellations end (else: the start)
    # [{"kind": "text", "prompt": "...", "max_length": 200} | {"kind": "choice", "prompt":
    # "...", "choices": ["S", "M"]}]
    questions: list[dict[str, Any]] = Field(
        default_factory=list, sa_type=sa.JSON(), nullable=False
    )
    survey_after_minutes: int | None = Field(default=None)  # after the start; None: no survey
    status: CampaignStatus = enum_field(CampaignStatus.DRAFT)
    confirmed_seats: int = Field(default=0)  # confirmed people plus their guests
    confirmed_people: int = Field(default=0)
    waitlisted_people: int = Field(default=0)
    arrivals: int = Field(default=0)  # the last position handed out (arrival order)
    milestone: int = Field(default=0)  # highest share of capacity (%) organisers were told of
    notices: int = Field(default=0)  # announcements sent to the sign-ups so far
    created_by: int | None = Field(default=None, foreign_key="member.id", ondelete="SET NULL")
    created_at: dt.datetime = when(nullable=False)
    opened_at: dt.datetime | None = when()
    closed_at: dt.datetime | None = when()


class Signup(SQLModel, table=True):
    """One person's sign-up to a campaign (one row per person; cancelled rows stay)."""

    __table_args__ = (
        sa.UniqueConstraint("campaign_id", "member_id"),
        sa.Index("ix_signup_queue", "campaign_id", "status", "position"),
    )

    id: int | None = Field(default=None, primary_key=True)
    campaign_id: int = Field(foreign_key="campaign.id", ondelete="CASCADE")
    member_id: int = Field(foreign_key="member.id", index=True, ondelete="CASCADE")
    status: SignupStatus = enum_field(SignupStatus.CONFIRMED)
    guests: int = Field(default=0)
    position: int = Field(default=0)  # arrival order within the campaign (new on re-sign-up)
    # The co-host group the sign-up counts for (network campaigns): the person's group.
    host_id: int | None = Field(default=None, foreign_key="organization.id", ondelete="SET NULL")
    answers: dict[str, Any] = json_field()  # question index (as text) -> answer
    signed_up_at: dt.datetime = when(nullable=False)
    confirmed_at: dt.datetime | None = when()
    cancelled_at: dt.datetime | None = when()


class SurveyResponse(SQLModel, table=True):
    """A satisfaction rating (1–5) and optional comment after the event.

    After /forget the member link and the comment are erased; the rating stays in the counts.
    """

    __table_args__ = (sa.UniqueConstraint("campaign_id", "member_id"),)

    id: int | None = Field(default=None, primary_key=True)
    campaign_id: int = Field(foreign_key="campaign.id", index=True, ondelete="CASCADE")
    member_id: int | None = Field(default=None, foreign_key="member.id", ondelete="SET NULL")
    rating: int
    comment: str = Field(default="", max_length=1000)
    answered_at: dt.datetime = when(nullable=False)

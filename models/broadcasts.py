"""Announcements: what an organiser sent (or will send) to whom, and how it went."""

from __future__ import annotations

import datetime as dt
from typing import Any

import sqlalchemy as sa
from sqlmodel import Field, SQLModel

from models.base import StrEnum, enum_field, json_field, when


class BroadcastStatus(StrEnum):
    """Life of an announcement."""

    SCHEDULED = "scheduled"  # waits for its time (or for the end of quiet hours)
    SENDING = "sending"  # one delivery per recipient is in the outbox
    DONE = "done"  # every delivery has its outcome; the author got the report
    CANCELLED = "cancelled"  # cancelled before its time, or stopped while sending


class Broadcast(SQLModel, table=True):
    """One announcement to an audience; its messages are Delivery rows of batch broadcast:<id>."""

    __table_args__ = (sa.Index("ix_broadcast_org_created", "organization_id", "created_at"),)

    id: int | None = Field(default=None, primary_key=True)
    organization_id: int = Field(foreign_key="organization.id", ondelete="CASCADE")
    author_member_id: int | None = Field(
        default=None, foreign_key="member.id", ondelete="SET NULL", index=True
    )
    # Telegram HTML with {{ variables }}, as the organiser wrote it (formatting kept).
    body: str = Field(sa_type=sa.Text())
    # "" for a text message, "photo" or "document" (resent by Telegram file id).
    media_kind: str = Field(default="", max_length=16)
    media_file_id: str = Field(default="", max_length=255)
    media_filename: str = Field(default="", max_length=255)
    # Who receives it: {"kind": "org"|"network"|"feature", ...}; see bot.services.broadcasts.
    audience: dict[str, Any] = json_field()
    urgent: bool = Field(default=False)  # goes out in quiet hours too
    status: BroadcastStatus = enum_field(BroadcastStatus.SCHEDULED)
    send_at: dt.datetime = when(nullable=False)  # when it starts (after quiet hours)
    requested_at: dt.datetime | None = when()  # the time the organiser asked for, if any
    created_at: dt.datetime = when(nullable=False)
    started_at: dt.datetime | None = when()
    finished_at: dt.datetime | None = when()
    cancelled_at: dt.datetime | None = when()
    # Counted when it starts: the audience, and who was left out before sending.
    audience_size: int = Field(default=0)
    skipped_muted: int = Field(default=0)
    skipped_unreachable: int = Field(default=0)
    # Counted when it finishes (the outbox rows may be pruned later).
    sent: int = Field(default=0)
    failed: int = Field(default=0)
    unreachable: int = Field(default=0)
    not_sent: int = Field(default=0)  # stopped by the organiser, or the person left meanwhile

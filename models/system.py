"""The bot's own bookkeeping: processed updates, conversations, jobs, the outbox, the audit log."""

from __future__ import annotations

import datetime as dt
from typing import Any

import sqlalchemy as sa
from sqlmodel import Field, SQLModel

from models.base import StrEnum, big_id, enum_field, json_field, when


class ProcessedUpdate(SQLModel, table=True):
    """An update id already handled, so a redelivered update does nothing twice."""

    update_id: int = big_id(primary_key=True)
    processed_at: dt.datetime = when(nullable=False, index=True)


class ConversationState(SQLModel, table=True):
    """Where a person is in a multi-step flow; in the database, so any instance continues it."""

    chat_id: int = big_id(primary_key=True)
    user_id: int = big_id(primary_key=True)
    flow: str = Field(max_length=32)
    step: str = Field(max_length=32)
    data: dict[str, Any] = json_field()
    updated_at: dt.datetime = when(nullable=False, index=True)


class JobStatus(StrEnum):
    """Life of a scheduled job."""

    PENDING = "pending"
    DONE = "done"
    CANCELLED = "cancelled"
    DEAD = "dead"  # failed too often; set aside so it blocks nothing


class ScheduledJob(SQLModel, table=True):
    """Something that must happen at a time; the row is the truth, the timer only wakes us."""

    __table_args__ = (sa.Index("ix_scheduledjob_due", "status", "due_at"),)

    id: int | None = Field(default=None, primary_key=True)
    kind: str = Field(max_length=40)
    # A fixed, meaningful key ("meeting-42-remind-1440") so rescheduling replaces, never doubles.
    key: str = Field(max_length=120, unique=True)
    due_at: dt.datetime = when(nullable=False)
    payload: dict[str, Any] = json_field()
    status: JobStatus = enum_field(JobStatus.PENDING)
    attempts: int = Field(default=0)
    last_error: str = Field(default="", max_length=500)
    created_at: dt.datetime = when(nullable=False)
    finished_at: dt.datetime | None = when()


class DeliveryStatus(StrEnum):
    """Life of one outgoing message in the outbox."""

    PENDING = "pending"
    SENDING = "sending"
    SENT = "sent"
    FAILED = "failed"
    UNREACHABLE = "unreachable"
    CANCELLED = "cancelled"


class Delivery(SQLModel, table=True):
    """One message to one chat in the outbox: written before sending, updated after."""

    __table_args__ = (
        # Claiming reads due rows off this index in order (see outbox.claim_batch), never sorts.
        sa.Index("ix_delivery_claim", "status", "priority", "id"),
        # A batch's counts per status, and "is anything of it still open?", from the index alone.
        sa.Index("ix_delivery_batch_status", "batch", "status"),
    )

    id: int | None = Field(default=None, primary_key=True)
    # What it belongs to, e.g. "broadcast:7", "reminder:meeting-3", for reports and cancelling.
    batch: str = Field(default="", max_length=64)
    chat_id: int = big_id()
    member_id: int | None = Field(
        default=None, foreign_key="member.id", ondelete="SET NULL", index=True
    )
    # A sendMessage/editMessageText/sendDocument call, already rendered.
    payload: dict[str, Any] = json_field()
    dedupe_key: str | None = Field(default=None, max_length=120, unique=True)
    priority: int = Field(default=0)
    status: DeliveryStatus = enum_field(DeliveryStatus.PENDING)
    attempts: int = Field(default=0)
    next_attempt_at: dt.datetime = when(nullable=False)
    claimed_by: str = Field(default="", max_length=40)
    claimed_until: dt.datetime | None = when()
    telegram_message_id: int | None = Field(default=None, sa_type=sa.BigInteger())
    last_error: str = Field(default="", max_length=300)
    created_at: dt.datetime = when(nullable=False)
    sent_at: dt.datetime | None = when()


class AuditLog(SQLModel, table=True):
    """Who did what as an organiser or admin, and what was refused."""

    id: int | None = Field(default=None, primary_key=True)
    at: dt.datetime = when(nullable=False, index=True)
    actor_member_id: int | None = Field(default=None, index=True)
    organization_id: int | None = Field(default=None, index=True)
    action: str = Field(max_length=64)
    target: str = Field(default="", max_length=120)
    outcome: str = Field(default="ok", max_length=16)
    details: dict[str, Any] = json_field()

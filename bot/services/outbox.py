"""The outbox: every message that is not a direct reply is a Delivery row before it is sent.

Rows are written in the transaction that decides to send them, claimed in batches by any
instance, and updated after sending, so a crash loses nothing and doubles at most the batch
that was in flight.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession

from models import Delivery, DeliveryStatus

SEND_MESSAGE = "send_message"
EDIT_MESSAGE = "edit_message_text"
SEND_DOCUMENT = "send_document"
SEND_PHOTO = "send_photo"


ENQUEUED = "moim.outbox.enqueued"


def enqueued_in(session: AsyncSession) -> bool:
    """True if this session put anything in the outbox (so the sender should look)."""
    return bool(session.info.get(ENQUEUED))


def message_payload(
    rendered: dict[str, Any], *, method: str = SEND_MESSAGE, **extra: Any
) -> dict[str, Any]:
    """A payload for a Delivery from a rendered message (``Rendered.to_payload()``)."""
    return {"method": method, **rendered, **extra}


async def enqueue(
    session: AsyncSession,
    *,
    chat_id: int,
    payload: dict[str, Any],
    now: dt.datetime,
    member_id: int | None = None,
    batch: str = "",
    dedupe_key: str | None = None,
    priority: int = 0,
    not_before: dt.datetime | None = None,
) -> Delivery | None:
    """Put one message in the outbox; with a ``dedupe_key`` seen before, do nothing."""
    if dedupe_key is not None:
        exists = await session.exec(select(Delivery.id).where(Delivery.dedupe_key == dedupe_key))
        if exists.first() is not None:
            return None
    delivery = Delivery(
        batch=batch,
        chat_id=chat_id,
        member_id=member_id,
        payload=payload,
        dedupe_key=dedupe_key,
        priority=priority,
        next_attempt_at=not_before or now,
        created_at=now,
    )
    session.add(delivery)
    session.info[ENQUEUED] = True
    await session.flush()
    return delivery


async def enqueue_many(
    session: AsyncSession,
    rows: list[dict[str, Any]],
    *,
    now: dt.datetime,
    batch: str,
    priority: int = 0,
    not_before: dt.datetime | None = None,
) -> int:
    """Insert many deliveries at once (each row: chat_id, payload, member_id, dedupe_key)."""
    if not rows:
        return 0
    values = [
        {
            "batch": batch,
            "chat_id": row["chat_id"],
            "member_id": row.get("member_id"),
            "payload": row["payload"],
            "dedupe_key": row.get("dedupe_key"),
            "priority": priority,
            "status": DeliveryStatus.PENDING,
            "attempts": 0,
            "next_attempt_at": not_before or now,
            "claimed_by": "",
            "last_error": "",
            "created_at": now,
        }
        for row in rows
    ]
    for start in range(0, len(values), 1000):
        await session.exec(sa.insert(Delivery), params=values[start : start + 1000])
    session.info[ENQUEUED] = True
    return len(values)


async def claim_batch(
    session: AsyncSession,
    *,
    worker: str,
    now: dt.datetime,
    limit: int,
    lease: dt.timedelta,
) -> list[Delivery]:
    """Claim up to ``limit`` due deliveries for ``worker`` with one atomic UPDATE.

    Due means pending and past its next attempt time, or claimed by someone whose lease ran
    out (an instance that died mid-batch).
    """
    due = (
        select(Delivery.id)
        .where(
            sa.or_(
                sa.and_(
                    Delivery.status == DeliveryStatus.PENDING, Delivery.next_attempt_at <= now
                ),
                sa.and_(Delivery.status == DeliveryStatus.SENDING, Delivery.claimed_until < now),
            )
        )
        .order_by(Delivery.priority.desc(), Delivery.id)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    result = await session.exec(
        sa.update(Delivery)
        .where(Delivery.id.in_(due.scalar_subquery()))
        .values(
            status=DeliveryStatus.SENDING,
            claimed_by=worker,
            claimed_until=now + lease,
            attempts=Delivery.attempts + 1,
        )
        .returning(Delivery.id)
    )
    ids = [row for row in result.scalars().all()]
    if not ids:
        return []
    claimed = await session.exec(
        select(Delivery)
        .where(Delivery.id.in_(ids))
        .order_by(Delivery.priority.desc(), Delivery.id)
        .execution_options(populate_existing=True)
    )
    return list(claimed.all())


@dataclass(frozen=True)
class Outcome:
    """What happened to one claimed delivery."""

    delivery_id: int
    status: DeliveryStatus
    telegram_message_id: int | None = None
    error: str = ""
    retry_at: dt.datetime | None = None
    chat_id: int | None = None  # a new chat id after a group migration


async def record_outcomes(
    session: AsyncSession, outcomes: list[Outcome], *, worker: str, now: dt.datetime
) -> None:
    """Write what happened to a batch; only rows still claimed by ``worker`` are touched."""
    for outcome in outcomes:
        values: dict[str, Any] = {"status": outcome.status, "last_error": outcome.error[:300]}
        if outcome.status == DeliveryStatus.SENT:
            values.update(sent_at=now, telegram_message_id=outcome.telegram_message_id)
        if outcome.status == DeliveryStatus.PENDING:
            values.update(next_attempt_at=outcome.retry_at or now, claimed_by="")
        if outcome.chat_id is not None:
            values["chat_id"] = outcome.chat_id
        await session.exec(
            sa.update(Delivery)
            .where(
                Delivery.id == outcome.delivery_id,
                Delivery.claimed_by == worker,
                Delivery.status == DeliveryStatus.SENDING,
            )
            .values(**values)
        )


async def cancel_batch(session: AsyncSession, batch: str) -> int:
    """Cancel every delivery of a batch that has not gone out yet."""
    result = await session.exec(
        sa.update(Delivery)
        .where(Delivery.batch == batch, Delivery.status == DeliveryStatus.PENDING)
        .values(status=DeliveryStatus.CANCELLED)
    )
    return result.rowcount or 0


async def cancel_for_member(session: AsyncSession, member_id: int) -> int:
    """Cancel what is still queued for a member (they deleted their data)."""
    result = await session.exec(
        sa.update(Delivery)
        .where(Delivery.member_id == member_id, Delivery.status == DeliveryStatus.PENDING)
        .values(status=DeliveryStatus.CANCELLED)
    )
    return result.rowcount or 0


async def batch_counts(session: AsyncSession, batch: str) -> Counter:
    """How many deliveries of a batch are in each status."""
    result = await session.exec(
        select(Delivery.status, sa.func.count())
        .where(Delivery.batch == batch)
        .group_by(Delivery.status)
    )
    return Counter({DeliveryStatus(status): count for status, count in result.all()})


async def pending_count(session: AsyncSession, *, now: dt.datetime) -> int:
    """Deliveries waiting to be sent now (for health checks and tests)."""
    return (
        await session.exec(
            select(sa.func.count())
            .select_from(Delivery)
            .where(
                sa.or_(
                    sa.and_(
                        Delivery.status == DeliveryStatus.PENDING,
                        Delivery.next_attempt_at <= now,
                    ),
                    Delivery.status == DeliveryStatus.SENDING,
                )
            )
        )
    ).one()


async def next_attempt_at(session: AsyncSession) -> dt.datetime | None:
    """When the next pending delivery becomes due."""
    return (
        await session.exec(
            select(sa.func.min(Delivery.next_attempt_at)).where(
                Delivery.status == DeliveryStatus.PENDING
            )
        )
    ).one()

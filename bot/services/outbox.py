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


def take_enqueued(session: AsyncSession) -> bool:
    """True if this session put anything in the outbox since the last call (so the sender
    should look)."""
    return bool(session.info.pop(ENQUEUED, False))


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


@dataclass(frozen=True, slots=True)
class Claimed:
    """A claimed delivery: what the sender needs to send it (lighter than an ORM object)."""

    id: int
    batch: str
    chat_id: int
    member_id: int | None
    payload: dict[str, Any]
    attempts: int
    priority: int


_CLAIMED_COLUMNS = tuple(Delivery.__table__.c[name] for name in Claimed.__slots__)


async def claim_batch(
    session: AsyncSession,
    *,
    worker: str,
    now: dt.datetime,
    limit: int,
    lease: dt.timedelta,
) -> list[Claimed]:
    """Claim up to ``limit`` due deliveries for ``worker`` with atomic UPDATEs.

    Due means claimed by someone whose lease ran out (an instance that died mid-batch; taken
    first), or pending and past its next attempt time: highest priority first, oldest first.
    Each UPDATE reads rows straight off the index in claiming order (one priority at a time),
    so a claim costs the same with a hundred or a hundred thousand messages waiting. Rows
    another instance is claiming at the same moment are skipped (SKIP LOCKED on PostgreSQL).
    """
    ids = await _claim(
        session,
        sa.and_(Delivery.status == DeliveryStatus.SENDING, Delivery.claimed_until < now),
        worker=worker,
        now=now,
        limit=limit,
        lease=lease,
    )
    below: int | None = None
    while len(ids) < limit:
        highest = select(sa.func.max(Delivery.priority)).where(
            Delivery.status == DeliveryStatus.PENDING
        )
        if below is not None:
            highest = highest.where(Delivery.priority < below)
        priority = (await session.exec(highest)).one()
        if priority is None:
            break
        ids += await _claim(
            session,
            sa.and_(
                Delivery.status == DeliveryStatus.PENDING,
                Delivery.priority == priority,
                Delivery.next_attempt_at <= now,
            ),
            worker=worker,
            now=now,
            limit=limit - len(ids),
            lease=lease,
        )
        below = priority
    if not ids:
        return []
    table = Delivery.__table__
    claimed = await session.exec(
        sa.select(*_CLAIMED_COLUMNS)
        .where(table.c.id.in_(ids))
        .order_by(table.c.priority.desc(), table.c.id)
    )
    return [Claimed(*row) for row in claimed.all()]


async def _claim(
    session: AsyncSession,
    due: Any,
    *,
    worker: str,
    now: dt.datetime,
    limit: int,
    lease: dt.timedelta,
) -> list[int]:
    chosen = (
        select(Delivery.id)
        .where(due)
        .order_by(Delivery.id)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    result = await session.exec(
        sa.update(Delivery)
        .where(Delivery.id.in_(chosen.scalar_subquery()))
        .values(
            status=DeliveryStatus.SENDING,
            claimed_by=worker,
            claimed_until=now + lease,
            attempts=Delivery.attempts + 1,
        )
        .returning(Delivery.id)
    )
    return list(result.scalars().all())


@dataclass(frozen=True)
class Outcome:
    """What happened to one claimed delivery."""

    delivery_id: int
    status: DeliveryStatus
    telegram_message_id: int | None = None
    error: str = ""
    retry_at: dt.datetime | None = None
    chat_id: int | None = None  # a new chat id after a group migration


def _outcome_statement(*, sent: bool, pending: bool, migrated: bool):
    """One UPDATE for many outcomes of the same shape (executed with a list of parameters)."""
    table = Delivery.__table__
    values: dict[str, Any] = {
        "status": sa.bindparam("o_status"),
        "last_error": sa.bindparam("o_error"),
    }
    if sent:
        values.update(sent_at=sa.bindparam("o_now"), telegram_message_id=sa.bindparam("o_mid"))
    if pending:
        values.update(next_attempt_at=sa.bindparam("o_retry"), claimed_by="")
    if migrated:
        values["chat_id"] = sa.bindparam("o_chat")
    return (
        sa.update(table)
        .where(
            table.c.id == sa.bindparam("o_id"),
            table.c.claimed_by == sa.bindparam("o_worker"),
            table.c.status == DeliveryStatus.SENDING.value,
        )
        .values(**values)
    )


async def record_outcomes(
    session: AsyncSession, outcomes: list[Outcome], *, worker: str, now: dt.datetime
) -> None:
    """Write what happened to claimed deliveries; only rows still claimed by ``worker`` change.

    Outcomes of the same shape share one statement with many parameter sets, so writing the
    outcomes of a hundred messages costs about as much as writing one.
    """
    groups: dict[tuple[bool, bool, bool], list[dict[str, Any]]] = {}
    for outcome in outcomes:
        sent = outcome.status == DeliveryStatus.SENT
        pending = outcome.status == DeliveryStatus.PENDING
        migrated = outcome.chat_id is not None
        params: dict[str, Any] = {
            "o_id": outcome.delivery_id,
            "o_worker": worker,
            "o_status": outcome.status.value,
            "o_error": outcome.error[:300],
        }
        if sent:
            params.update(o_now=now, o_mid=outcome.telegram_message_id)
        if pending:
            params["o_retry"] = outcome.retry_at or now
        if migrated:
            params["o_chat"] = outcome.chat_id
        groups.setdefault((sent, pending, migrated), []).append(params)
    for (sent, pending, migrated), rows in groups.items():
        statement = _outcome_statement(sent=sent, pending=pending, migrated=migrated)
        await session.exec(statement, params=rows)


async def renew_claims(
    session: AsyncSession, *, worker: str, now: dt.datetime, lease: dt.timedelta
) -> int:
    """Extend the lease of everything ``worker`` still holds (it is alive and working)."""
    result = await session.exec(
        sa.update(Delivery)
        .where(Delivery.claimed_by == worker, Delivery.status == DeliveryStatus.SENDING)
        .values(claimed_until=now + lease)
    )
    return result.rowcount or 0


async def release(session: AsyncSession, delivery_ids: list[int], *, worker: str) -> int:
    """Give back claimed deliveries that were not sent (shutting down): due again at once."""
    if not delivery_ids:
        return 0
    result = await session.exec(
        sa.update(Delivery)
        .where(
            Delivery.id.in_(delivery_ids),
            Delivery.claimed_by == worker,
            Delivery.status == DeliveryStatus.SENDING,
        )
        .values(
            status=DeliveryStatus.PENDING,
            claimed_by="",
            claimed_until=None,
            attempts=sa.case((Delivery.attempts > 0, Delivery.attempts - 1), else_=0),
        )
    )
    return result.rowcount or 0


async def unfinished_batches(session: AsyncSession, batches: set[str]) -> set[str]:
    """Which of these batches still have deliveries waiting or being sent."""
    if not batches:
        return set()
    result = await session.exec(
        select(Delivery.batch)
        .where(
            Delivery.batch.in_(sorted(batches)),
            Delivery.status.in_([DeliveryStatus.PENDING, DeliveryStatus.SENDING]),
        )
        .distinct()
    )
    return set(result.all())


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


async def erase_for_member(session: AsyncSession, member_id: int) -> int:
    """Blank what the outbox keeps of a member who erased their data: the texts sent to them
    (they carry their name) and their chat id. The rows stay, so counts stay right."""
    result = await session.exec(
        sa.update(Delivery)
        .where(
            Delivery.member_id == member_id,
            Delivery.status.not_in([DeliveryStatus.PENDING, DeliveryStatus.SENDING]),
        )
        .values(payload={}, chat_id=0, member_id=None)
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

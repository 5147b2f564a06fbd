"""The outbox: claiming order, concurrent claimers, leases, outcomes written in groups."""

from __future__ import annotations

import asyncio
import datetime as dt

from sqlmodel import select

from bot.db import transaction
from bot.services import outbox
from bot.services.outbox import Outcome
from models import Delivery, DeliveryStatus

LEASE = dt.timedelta(seconds=30)


def _rows(count: int, start: int = 0) -> list[dict]:
    return [{"chat_id": start + n, "payload": {"text": f"m{start + n}"}} for n in range(count)]


async def test_claims_take_expired_leases_first_then_priority_then_age(runtime, clock):
    now = clock.now()
    async with transaction(runtime.sessions) as session:
        low = {"batch": "broadcast:1", "priority": -1}
        await outbox.enqueue_many(session, _rows(3, 100), now=now, **low)
        await outbox.enqueue_many(session, _rows(2, 200), now=now, batch="reminder:1")
        later = now + dt.timedelta(hours=1)
        await outbox.enqueue_many(session, _rows(1, 300), now=now, batch="r:2", not_before=later)
        dead = await outbox.claim_batch(session, worker="dead", now=now, limit=1, lease=LEASE)
    assert [d.chat_id for d in dead] == [200]  # priority 0 before -1
    clock.advance(seconds=31)
    async with transaction(runtime.sessions) as session:
        claimed = await outbox.claim_batch(
            session, worker="alive", now=clock.now(), limit=4, lease=LEASE
        )
    assert [d.chat_id for d in claimed] == [200, 201, 100, 101]
    assert claimed[0].attempts == 2  # the dead instance's attempt counts


async def test_concurrent_claimers_never_share_a_row(runtime, clock):
    now = clock.now()
    async with transaction(runtime.sessions) as session:
        await outbox.enqueue_many(session, _rows(200), now=now, batch="broadcast:1")

    async def claimer(name: str) -> list[int]:
        ids = []
        while True:
            async with transaction(runtime.sessions) as session:
                batch = await outbox.claim_batch(
                    session, worker=name, now=now, limit=15, lease=LEASE
                )
            if not batch:
                return ids
            ids += [d.id for d in batch]
            await asyncio.sleep(0)

    claimed = await asyncio.gather(*(claimer(f"w{n}") for n in range(4)))
    everything = [i for ids in claimed for i in ids]
    assert len(everything) == len(set(everything)) == 200


async def test_outcomes_renewals_and_releases_touch_only_the_claimers_rows(runtime, clock):
    now = clock.now()
    async with transaction(runtime.sessions) as session:
        await outbox.enqueue_many(session, _rows(4), now=now, batch="broadcast:1")
        mine = await outbox.claim_batch(session, worker="me", now=now, limit=4, lease=LEASE)
    sent, retry, blocked, unsent = (d.id for d in mine)
    clock.advance(seconds=20)
    async with transaction(runtime.sessions) as session:
        assert await outbox.renew_claims(session, worker="me", now=clock.now(), lease=LEASE) == 4
        await outbox.record_outcomes(
            session,
            [
                Outcome(sent, DeliveryStatus.SENT, telegram_message_id=77),
                Outcome(retry, DeliveryStatus.PENDING, error="500", retry_at=clock.now()),
                Outcome(blocked, DeliveryStatus.UNREACHABLE, error="403"),
            ],
            worker="someone else",
            now=clock.now(),
        )
        untouched = (await session.exec(select(Delivery.status))).all()
        assert set(untouched) == {DeliveryStatus.SENDING}
        await outbox.record_outcomes(
            session,
            [
                Outcome(sent, DeliveryStatus.SENT, telegram_message_id=77),
                Outcome(retry, DeliveryStatus.PENDING, error="500", retry_at=clock.now()),
                Outcome(blocked, DeliveryStatus.UNREACHABLE, error="403"),
            ],
            worker="me",
            now=clock.now(),
        )
        assert await outbox.release(session, [unsent], worker="me") == 1
        assert await outbox.unfinished_batches(session, {"broadcast:1", "other"}) == {
            "broadcast:1"
        }
    async with transaction(runtime.sessions) as session:
        rows = {d.id: d for d in (await session.exec(select(Delivery))).all()}
    assert (rows[sent].status, rows[sent].telegram_message_id) == (DeliveryStatus.SENT, 77)
    assert (rows[retry].status, rows[retry].claimed_by) == (DeliveryStatus.PENDING, "")
    assert rows[blocked].status == DeliveryStatus.UNREACHABLE
    assert (rows[unsent].status, rows[unsent].attempts) == (DeliveryStatus.PENDING, 0)
    # The lease was renewed at +20 s: nobody else could take them at +31 s.
    assert rows[sent].claimed_until == now + dt.timedelta(seconds=50)

"""Robustness built in from the start: duplicates, webhook acks, limits, outbox, scheduled jobs."""

from __future__ import annotations

import asyncio
import datetime as dt
import time

import httpx
import sqlalchemy as sa
from telegram import Update

from bot.db import transaction
from bot.local import LocalOptions, LocalTelegram
from bot.render import Rendered
from bot.scheduler import JobRunner
from bot.services import jobs, outbox
from bot.webhook import create_webhook_app
from models import AuditLog, Delivery, DeliveryStatus, JobStatus, Member, Organization
from tests.e2e import Person, register
from tests.test_e2e_organizations import admin


def _update(local, person: Person, text: str, update_id: int) -> Update:
    """A message update built as Telegram would send it, for redelivery tests."""
    payload = {
        "update_id": update_id,
        "message": {
            "message_id": update_id,
            "date": 1_780_000_000,
            "chat": {"id": person.id, "type": "private", "first_name": person.name},
            "from": {
                "id": person.id,
                "is_bot": False,
                "first_name": person.name,
                "language_code": "ko",
            },
            "text": text,
            "entities": [{"type": "bot_command", "offset": 0, "length": len(text.split()[0])}],
        },
    }
    return Update.de_json(payload, local.application.bot)


async def test_the_same_update_twice_has_one_effect_also_concurrently(local):
    minji = admin(local)
    await register(minji)
    app = local.application
    processor = app.update_processor
    first = _update(local, minji, "/new_org 새솔마을 주민회 | saesol", 900_001)
    await processor.process_update(first, app.process_update(first))
    await processor.process_update(first, app.process_update(first))  # redelivered
    twin = _update(local, minji, "/new_org 다른 모임 | other", 900_002)
    await asyncio.gather(  # delivered twice at once (as to two instances)
        processor.process_update(twin, app.process_update(twin)),
        processor.process_update(twin, app.process_update(twin)),
    )
    await local.settle()
    async with transaction(local.runtime.sessions) as session:
        slugs = (await session.exec(sa.select(Organization.slug))).scalars().all()
        audits = (await session.exec(sa.select(AuditLog.action))).scalars().all()
    assert sorted(slugs) == ["other", "saesol"]
    assert audits.count("org.create") == 2
    replies = [m for m in minji.inbox() if "만들었습니다" in (m["text"] or "")]
    assert len(replies) == 2


def webhook_client(local, config) -> httpx.AsyncClient:
    """An HTTP client for the bot's webhook server (in process), with secret s3cret-…"""
    webhook_config = config.replace(
        telegram={
            "mode": "webhook",
            "webhook_url": "https://moim.example.org/telegram",
            "webhook_secret": "s3cret-s3cret-s3cret",
            "token": "x",
        }
    )
    app = create_webhook_app(local.application, webhook_config)
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://moim")


async def test_webhook_checks_the_secret_and_acks_after_commit(local, config):
    minji = Person(local, "민지")
    await register(minji)
    update = _update(local, minji, "/name 김민지", 910_001).to_dict()
    async with webhook_client(local, config) as client:
        refused = await client.post("/telegram", json=update)
        wrong = await client.post(
            "/telegram", json=update, headers={"X-Telegram-Bot-Api-Secret-Token": "nope"}
        )
        assert (refused.status_code, wrong.status_code) == (403, 403)
        async with transaction(local.runtime.sessions) as session:
            name = (await session.exec(sa.select(Member.display_name))).scalars().one()
        assert name == "민지"  # nothing was processed
        headers = {"X-Telegram-Bot-Api-Secret-Token": "s3cret-s3cret-s3cret"}
        accepted = await client.post("/telegram", json=update, headers=headers)
        # The answer came after the commit: the change is already in the database.
        async with transaction(local.runtime.sessions) as session:
            name = (await session.exec(sa.select(Member.display_name))).scalars().one()
        assert accepted.status_code == 200 and name == "김민지"
        again = await client.post("/telegram", json=update, headers=headers)
        assert again.status_code == 200
        health = await client.get("/healthz")
        assert health.json()["status"] == "ok"
    renamed = [m for m in minji.inbox() if "김민지" in (m["text"] or "")]
    assert len(renamed) == 1  # the redelivered update did nothing


async def test_replies_keep_to_telegrams_real_per_chat_limit(config, clock):
    """With Telegram's real limits, a burst of replies to one person is paced, never refused."""
    async with LocalTelegram(
        config, LocalOptions(clock=clock, run_scheduler=False, poll_timeout=1)
    ) as local:
        person = Person(local, "서준")
        await register(person)
        started = time.monotonic()
        for _ in range(4):
            local.emulator.send_text(local.token, person.id, "/help")
        await local.settle(timeout=30)
        elapsed = time.monotonic() - started
        assert local.stats()["rate_limited"] == 0
        assert sum("/mydata" in (m["text"] or "") for m in person.inbox()) == 4
        assert elapsed >= 2.0  # 1 message/s once the small burst is used up


async def test_outbox_delivers_marks_blocked_people_and_retries_server_errors(local, clock):
    people = [Person(local, name) for name in ("가은", "나래", "다솜")]
    for person in people:
        await register(person)
    local.emulator.block_bot(local.token, people[1].id)
    await local.settle()
    runtime = local.runtime
    rendered = Rendered(text="<b>내일 모임</b> 잊지 마세요").to_payload()
    local.emulator.faults.error_rate = 1.0  # every send fails with 500 for now
    async with transaction(runtime.sessions) as session:
        ids = {}
        for person in people:
            member = (
                (await session.exec(sa.select(Member).where(Member.telegram_user_id == person.id)))
                .scalars()
                .one()
            )
            delivery = await outbox.enqueue(
                session,
                chat_id=person.id,
                member_id=member.id,
                now=clock.now(),
                payload=outbox.message_payload(rendered),
                batch="test:1",
            )
            ids[person.name] = delivery.id
    await runtime.sender.drain()
    async with transaction(runtime.sessions) as session:
        counts = await outbox.batch_counts(session, "test:1")
    assert counts[DeliveryStatus.PENDING] == 3  # all to be retried later
    local.emulator.faults.error_rate = 0.0
    clock.advance(minutes=1)
    await runtime.sender.drain()
    async with transaction(runtime.sessions) as session:
        rows = {d.id: d for d in (await session.exec(sa.select(Delivery))).scalars().all()}
    assert rows[ids["가은"]].status == DeliveryStatus.SENT
    assert rows[ids["가은"]].telegram_message_id is not None
    assert rows[ids["나래"]].status == DeliveryStatus.UNREACHABLE
    assert rows[ids["다솜"]].status == DeliveryStatus.SENT
    assert sum("내일 모임" in (m["text"] or "") for m in people[0].inbox()) == 1


async def test_a_due_job_runs_once_even_with_two_runners(local, clock):
    runtime = local.runtime
    ran = []

    async def remember(context, job):
        ran.append((job.key, context.now))
        await context.send(job.payload["chat_id"], Rendered(text="알림입니다"))

    runtime.features.add_job("test.remember", remember)
    person = Person(local, "하은")
    await register(person)
    async with transaction(runtime.sessions) as session:
        await jobs.schedule(
            session,
            kind="test.remember",
            key="test-1",
            now=clock.now(),
            due_at=clock.now() + dt.timedelta(hours=1),
            payload={"chat_id": person.id},
        )
    assert await local.run_due_jobs() == 0
    clock.advance(hours=1)
    second_instance = JobRunner(runtime)
    counts = await asyncio.gather(runtime.scheduler.run_due(), second_instance.run_due())
    await local.settle()
    assert sorted(counts) == [0, 1] and len(ran) == 1
    assert sum("알림입니다" in (m["text"] or "") for m in person.inbox()) == 1


async def test_a_failing_job_is_set_aside_and_does_not_block_others(local, clock):
    runtime = local.runtime

    async def broken(context, job):
        raise RuntimeError("always fails")

    done = []

    async def fine(context, job):
        done.append(job.key)

    runtime.features.add_job("test.broken", broken)
    runtime.features.add_job("test.fine", fine)
    async with transaction(runtime.sessions) as session:
        await jobs.schedule(
            session, kind="test.broken", key="b", now=clock.now(), due_at=clock.now()
        )
        await jobs.schedule(
            session,
            kind="test.fine",
            key="f",
            now=clock.now(),
            due_at=clock.now() + dt.timedelta(seconds=1),
        )
    for _ in range(6):
        clock.advance(hours=2)
        await runtime.scheduler.run_due()
    async with transaction(runtime.sessions) as session:
        broken_job = await jobs.by_key(session, "b")
    assert done == ["f"]
    assert broken_job.status == JobStatus.DEAD and broken_job.attempts == 5

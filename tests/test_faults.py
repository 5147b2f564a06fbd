"""Faults: the database going away mid-run, odd update ids, clock jumps."""

from __future__ import annotations

import asyncio
import datetime as dt
import time

import pytest
import sqlalchemy as sa
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import create_async_engine

from bot.db import transaction
from bot.emulator.limits import Faults
from bot.services import jobs
from models import JobStatus, Member, Tier
from tests.conftest import POSTGRES_URL
from tests.e2e import Person, register
from tests.test_e2e_broadcasts import (
    _announce_now,
    _members,
    _organiser,
    _received,
)
from tests.test_robustness import _update, webhook_client


async def test_a_dropped_database_connection_is_retried_and_handled_once(local, caplog):
    from handlers import members as members_handlers

    person = Person(local, "서준")
    await register(person)
    original = members_handlers.members.rename
    calls = 0

    async def flaky(session, member, name):
        nonlocal calls
        calls += 1
        if calls == 1:
            raise DBAPIError(
                "SELECT 1", {}, ConnectionResetError("server closed"), connection_invalidated=True
            )
        return await original(session, member, name)

    members_handlers.members.rename = flaky
    try:
        replies = await person.say("/name 김서준")
    finally:
        members_handlers.members.rename = original
    assert calls == 2
    assert [m["text"] for m in replies] == ["바꿨습니다. 이제 이름은 ‘김서준’입니다."]
    assert not any("아무것도 저장하지" in (m["text"] or "") for m in person.inbox())
    assert any("database unavailable" in r.getMessage() for r in caplog.records)


async def test_an_update_id_lower_than_the_highest_seen_is_still_handled_once(local):
    person = Person(local, "하은")
    await register(person)
    app = local.application
    processor = app.update_processor
    high = _update(local, person, "/name 높은번호", 990_000)
    low = _update(local, person, "/name 낮은번호", 12)
    for update in (high, low, low):
        await processor.process_update(update, app.process_update(update))
    await local.settle()
    texts = [m["text"] for m in person.inbox()]
    assert sum("높은번호" in t for t in texts) == 1
    assert sum("낮은번호" in t for t in texts) == 1
    async with transaction(local.runtime.sessions) as session:
        name = (await session.exec(sa.select(Member.display_name))).scalars().one()
    assert name == "낮은번호"


async def test_clock_jumps_run_due_work_once_and_nothing_early(runtime, clock):
    from bot.scheduler import JobRunner

    ran = []

    async def remember(context, job):
        ran.append(job.key)

    runtime.features.add_job("test.jump", remember)
    runtime.scheduler = JobRunner(runtime)
    start = clock.now()
    async with transaction(runtime.sessions) as session:
        for hours in (1, 2, 30):
            await jobs.schedule(
                session,
                kind="test.jump",
                key=f"j{hours}",
                now=start,
                due_at=start + dt.timedelta(hours=hours),
            )
    clock.set(start - dt.timedelta(days=3))  # the clock jumps backwards: nothing is due
    assert await runtime.scheduler.run_due() == 0
    clock.set(start + dt.timedelta(hours=2, minutes=1))  # forwards past two jobs
    assert await runtime.scheduler.run_due() == 2
    clock.set(start)  # back again: the done jobs stay done
    assert await runtime.scheduler.run_due() == 0
    clock.set(start + dt.timedelta(days=10))
    assert await runtime.scheduler.run_due() == 1
    assert sorted(ran) == ["j1", "j2", "j30"]
    async with transaction(runtime.sessions) as session:
        statuses = {(await jobs.by_key(session, f"j{h}")).status for h in (1, 2, 30)}
    assert statuses == {JobStatus.DONE}


async def _drop_moim_connections(killer, config) -> int:
    """The PostgreSQL server ends every connection of this test's moim (as a restart would)."""
    async with killer.connect() as connection:
        result = await connection.execute(
            sa.text(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                "WHERE application_name = :name"
            ),
            {"name": f"moim:{config.database.schema}"},
        )
        return result.scalar_one()


if POSTGRES_URL:  # SQLite has no server whose connections could be lost

    @pytest.mark.parametrize("backend", ["postgresql"])
    async def test_postgresql_connections_killed_mid_burst(local, config):
        """The server drops every moim connection while a burst is handled: each update still
        has its effect once."""
        people = [Person(local, f"주민{n}") for n in range(12)]
        for person in people:
            await register(person)
        killer = create_async_engine(POSTGRES_URL)
        try:
            for n, person in enumerate(people):
                local.emulator.send_text(local.token, person.id, f"/name 새이름{n}")
            killed = 0
            for _ in range(5):
                killed += await _drop_moim_connections(killer, config)
                await asyncio.sleep(0.02)
            await local.settle(timeout=60)
        finally:
            await killer.dispose()
        assert killed > 0
        for n, person in enumerate(people):
            renamed = [m for m in person.inbox() if f"새이름{n}" in (m["text"] or "")]
            assert len(renamed) == 1, (n, [m["text"] for m in person.inbox()])
        async with transaction(local.runtime.sessions) as session:
            names = (await session.exec(sa.select(Member.display_name))).scalars().all()
        assert sorted(names) == sorted(f"새이름{n}" for n in range(12))

    @pytest.mark.parametrize("backend", ["postgresql"])
    async def test_after_the_server_dropped_idle_connections_nothing_notices(local, config):
        """moim does not ping a pooled connection before each use: one the server dropped
        fails once and the pool is renewed. Neither the health check nor a person sees it."""
        people = [Person(local, f"주민{n}") for n in range(4)]
        for person in people:
            await register(person)  # the pool now holds connections, idle
        killer = create_async_engine(POSTGRES_URL)
        try:
            killed = await _drop_moim_connections(killer, config)
        finally:
            await killer.dispose()
        assert killed > 0
        async with webhook_client(local, config) as client:
            health = await client.get("/healthz")
        assert (health.status_code, health.json()["status"]) == (200, "ok")
        renamed = (await people[0].say("/name 새이름"))[-1]
        assert "새이름" in renamed["text"]


async def test_a_429_burst_is_waited_out_and_every_message_arrives_once(quiet_local, clock):
    """Telegram refuses every send for a second ("retry after 1") while an announcement goes
    out: the bot pauses as told instead of hammering, and everyone gets it exactly once."""
    local = quiet_local
    minji = await _organiser(local)
    people = await _members(local, {f"회원{n}": Tier.SUPPORTER for n in range(20)})
    await _announce_now(local, minji, "잠시 막혀도 도착하는 공지", "모두 · 21")
    local.emulator.set_faults(Faults(flood_seconds=1.0, flood_retry_after=1))
    started = time.monotonic()
    sent = await local.runtime.sender.drain()
    waited = time.monotonic() - started
    local.emulator.set_faults(Faults())
    clock.advance(minutes=1)  # anything the sender set aside for later is due now
    sent += await local.runtime.sender.drain()
    await local.settle()
    counts = [len(_received(p, "잠시 막혀도 도착하는 공지")) for p in people.values()]
    assert counts == [1] * 20
    assert waited >= 1.0  # it waited the burst out
    refused = local.stats()["faults"].get("flood", 0)
    assert refused > 0  # the burst really hit the announcement
    # Paused after the first refusals: at most the sends already in flight are refused,
    # not one per try.
    assert refused <= 8 + 4, refused
    assert "공지 #1 발송을 마쳤습니다" in minji.last()["text"]

"""Several instances in webhook mode sharing one database, updates delivered round-robin."""

from __future__ import annotations

import asyncio

import sqlalchemy as sa

from bot.db import transaction
from bot.local import LocalCluster, LocalOptions
from models import AuditLog, Member, Membership, Organization
from tests.conftest import fast_chat_limits
from tests.e2e import Person, register


async def test_three_instances_share_the_work_and_flows_continue_anywhere(config, clock):
    delivery, limits = fast_chat_limits()
    async with LocalCluster(
        config.replace(delivery=delivery),
        instances=3,
        options=LocalOptions(clock=clock, run_scheduler=False, limits=limits),
    ) as cluster:
        minji = Person(cluster, "민지")
        for instance in cluster.instances:
            runtime = instance.application.runtime
            runtime.config = runtime.config.replace(bot={"admins": [minji.id]})
        await register(minji)
        # Each step of the guided flow is one update; round-robin sends them to different
        # instances, and the flow's state in the database carries over.
        await minji.say("/new_org")
        await minji.say("새솔마을 주민회")
        await minji.tap("회원이 있는 단체")
        await minji.tap("아니요, 일반 단체입니다")
        await minji.say("saesol")
        await minji.tap("만들기")
        assert "‘새솔마을 주민회’ 단체를 만들었습니다" in minji.last()["text"]

        people = [Person(cluster, f"주민{n}") for n in range(12)]
        await asyncio.gather(*(register(person, "org_saesol") for person in people))
        await asyncio.gather(*(person.tap("가입하기") for person in people))
        for person in people:
            joined = [m for m in person.inbox() if "가입했습니다" in (m["text"] or "")]
            assert len(joined) == 1
        handled = cluster.handled_by()
        assert all(count > 0 for count in handled), handled
        async with transaction(cluster.runtime.sessions) as session:
            members = (await session.exec(sa.select(sa.func.count()).select_from(Member))).one()
            joined = (await session.exec(sa.select(sa.func.count()).select_from(Membership))).one()
            orgs = (await session.exec(sa.select(Organization.slug))).scalars().all()
            creations = (
                (await session.exec(sa.select(AuditLog).where(AuditLog.action == "org.create")))
                .scalars()
                .all()
            )
        assert (members, joined, orgs, len(creations)) == ((13,), (13,), ["saesol"], 1)


async def test_an_update_delivered_twice_to_two_instances_has_one_effect(config, clock):
    delivery, limits = fast_chat_limits()
    async with LocalCluster(
        config.replace(delivery=delivery),
        instances=2,
        options=LocalOptions(clock=clock, run_scheduler=False, limits=limits),
    ) as cluster:
        seojun = Person(cluster, "서준")
        await register(seojun)
        update_id, _ = cluster.emulator.send_text(cluster.token, seojun.id, "/name 김서준")
        await cluster.settle()
        # Telegram repeats a delivery it thinks failed; the next instance gets it this time.
        cluster.emulator.redeliver(cluster.token, update_id)
        cluster.emulator.redeliver(cluster.token, update_id)
        await cluster.settle()
        renamed = [m for m in seojun.inbox() if "김서준" in (m["text"] or "")]
        assert len(renamed) == 1
        urls = {
            d["url"]
            for d in cluster.emulator.webhook_deliveries(cluster.token)
            if d["update_id"] == update_id
        }
        assert len(urls) == 2  # really delivered to both instances

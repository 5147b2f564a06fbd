"""Several instances in webhook mode sharing one database, updates delivered round-robin."""

from __future__ import annotations

import asyncio
import datetime as dt

import sqlalchemy as sa

from bot.db import transaction
from bot.local import LocalCluster, LocalOptions
from models import (
    AuditLog,
    Delivery,
    DeliveryStatus,
    MeetingRsvp,
    Member,
    Membership,
    Organization,
    Petition,
    PollVote,
    Signature,
    Signup,
    SignupStatus,
)
from tests.conftest import fast_chat_limits
from tests.e2e import Person, register


def three_instances(config, clock) -> LocalCluster:
    """Three webhook instances on one database; scheduled work runs when a test says so."""
    delivery, limits = fast_chat_limits()
    return LocalCluster(
        config.replace(delivery=delivery),
        instances=3,
        options=LocalOptions(clock=clock, run_scheduler=False, limits=limits),
    )


async def registered_admin(cluster: LocalCluster) -> Person:
    """민지, registered, a bot administrator on every instance."""
    minji = Person(cluster, "민지")
    for instance in cluster.instances:
        runtime = instance.application.runtime
        runtime.config = runtime.config.replace(bot={"admins": [minji.id]})
    await register(minji)
    return minji


async def test_three_instances_share_the_work_and_flows_continue_anywhere(config, clock):
    async with three_instances(config, clock) as cluster:
        minji = await registered_admin(cluster)
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


async def test_a_mixed_workload_over_three_instances_counts_everything_once(config, clock):
    """Registrations, votes, sign-ups, signatures, a reminder and a broadcast, with guided
    creation flows whose steps land on different instances: every count right, nothing twice."""
    async with three_instances(config, clock) as cluster:
        minji = await registered_admin(cluster)
        await minji.say("/new_org 새솔마을 주민회 | saesol")
        group = cluster.emulator.create_group("새솔 단톡방")
        cluster.emulator.add_member(group["id"], minji.id)
        cluster.emulator.add_bot_to_group(cluster.token, group["id"], by_user_id=minji.id)
        await cluster.settle()
        await minji.say("/link_group", chat_id=group["id"])

        people = [Person(cluster, f"주민{n}") for n in range(10)]
        await asyncio.gather(*(register(person, "org_saesol") for person in people))
        await asyncio.gather(*(person.tap("가입하기") for person in people))
        for person in people:
            cluster.emulator.add_member(group["id"], person.id)

        # A vote: the card goes to the group, and everyone taps at once.
        await minji.say("/new_poll 다음 모임 장소는? | 사무실 | 카페 | 온라인")
        await minji.tap("단체방에 올리기")
        await asyncio.gather(*(person.tap("2. 카페", chat_id=group["id"]) for person in people))
        await asyncio.gather(
            *(person.tap("2. 카페", chat_id=group["id"]) for person in people[:3])
        )
        card = minji.last(group["id"])
        assert "10표" in card["text"] or "10명" in card["text"], card["text"]

        # A campaign with 6 places, created by a guided flow over several updates.
        await minji.say("/new_campaign")
        await minji.say("12월 정기 상영회")
        await minji.tap("건너뛰기")
        await minji.say("12월 19일 19:00")
        await minji.say("마을회관 2층")
        await minji.say("6")
        await minji.tap("동반 없음")
        await minji.say("12월 18일 18:00")
        await minji.tap("질문 없음")
        await minji.tap("시작 2시간 뒤")
        await minji.tap("지금 신청 받기")
        assert "start=camp_1" in minji.last()["text"]
        await asyncio.gather(*(person.say("/start camp_1") for person in people))
        await asyncio.gather(*(person.tap("참가 신청") for person in people))

        # A petition, also step by step, signed by everyone at once.
        await minji.say("/new_petition")
        await minji.say("마을버스 증차 요청")
        await minji.say("구청장")
        await minji.say("8")
        await minji.say("12월 3일")
        await minji.tap("이름 공개 가능")
        await minji.say("7번 마을버스 배차 간격 단축을 요청합니다.")
        await minji.tap("다 보냈어요")
        await minji.tap("청원 시작하기")
        await asyncio.gather(*(person.say("/start pet_1") for person in people))
        await asyncio.gather(*(person.tap("서명하기") for person in people))

        # A meeting; six say yes; the day-before reminder is run by all three at once.
        await minji.say(
            "/new_meeting 운영위원회 | 다음주 월요일 19:30 | 2시간 | 마을회관 2층 | 한 번"
        )
        attending = people[:6]
        await asyncio.gather(*(person.say("/start meet_1") for person in attending))
        await asyncio.gather(*(person.tap("참석") for person in attending))
        clock.set(dt.datetime(2026, 12, 6, 10, 30, tzinfo=dt.UTC))
        ran = await asyncio.gather(
            *(instance.application.runtime.scheduler.run_due() for instance in cluster.instances)
        )
        await cluster.settle()

        # An announcement to everyone.
        await minji.say("/broadcast")
        await minji.say("{{ 이름 }}님, 토요일 청소 모임에 오세요")
        await minji.tap("모두 · 11")
        await minji.tap("지금 보내기")

        handled = cluster.handled_by()
        assert all(count > 20 for count in handled), handled

        def received(person: Person, fragment: str) -> int:
            return sum(fragment in (m["text"] or "") for m in person.inbox())

        for person in people:
            assert received(person, f"{person.name}님, 토요일 청소 모임") == 1
            assert received(person, "1일 뒤에 시작합니다") == (1 if person in attending else 0)
        assert sum(ran) >= 1
        assert "공지 #1 발송을 마쳤습니다" in minji.last()["text"]
        async with transaction(cluster.runtime.sessions) as session:

            async def count(model, *where) -> int:
                query = sa.select(sa.func.count()).select_from(model).where(*where)
                return (await session.exec(query)).one()[0]

            assert await count(Member) == 11
            assert await count(Membership) == 11
            assert await count(PollVote) == 10
            assert await count(Signup, Signup.status == SignupStatus.CONFIRMED) == 6
            assert await count(Signup, Signup.status == SignupStatus.WAITLISTED) == 4
            assert await count(Signature) == 10
            assert await count(MeetingRsvp) == 6
            assert await count(Delivery, Delivery.status != DeliveryStatus.SENT) == 0
            petition = (await session.exec(sa.select(Petition))).scalars().one()
            assert petition.signature_count == 10

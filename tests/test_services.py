"""Domain services over a real database (SQLite, and PostgreSQL when configured)."""

from __future__ import annotations

import datetime as dt

import pytest
from sqlmodel import select

from bot.db import transaction
from bot.services import jobs, members, organizations, outbox, privacy
from bot.services.errors import (
    InvalidInput,
    NotOrganizer,
    SensitiveConsentRequired,
    SlugTaken,
)
from models import AuditLog, Delivery, DeliveryStatus, JobStatus, Member, Membership, Role, Tier
from tests.factories import HAEUN, MINJI, SEOJUN, add_member, make_member, make_org


async def test_register_records_consent_version_and_reconsent(session, clock):
    now = clock.now()
    member = await make_member(session, SEOJUN, "  서준  \u200b", now=now)
    assert member.display_name == "서준"
    assert member.consent_version == 1
    assert not members.needs_consent(member, 1)
    assert members.needs_consent(member, 2)
    again = await members.register(
        session,
        telegram_user_id=SEOJUN,
        display_name="서준",
        language="ko",
        notice_version=2,
        now=now,
    )
    assert again.id == member.id and again.consent_version == 2


async def test_names_are_checked(session, clock):
    member = await make_member(session, SEOJUN, "서준", now=clock.now())
    with pytest.raises(InvalidInput):
        await members.rename(session, member, "   ")
    with pytest.raises(InvalidInput) as caught:
        await members.rename(session, member, "가" * 65)
    assert caught.value.params["limit"] == 64


async def test_create_org_makes_creator_admin_and_audits(session, clock):
    minji = await make_member(session, MINJI, "민지", now=clock.now())
    org = await make_org(session, minji, now=clock.now())
    membership = await organizations.membership_of(session, minji, org)
    assert (membership.role, membership.tier) == (Role.ADMIN, Tier.FULL)
    entries = (await session.exec(select(AuditLog))).all()
    assert [e.action for e in entries] == ["org.create"]
    with pytest.raises(SlugTaken):
        await make_org(session, minji, name="다른 모임", now=clock.now())
    with pytest.raises(InvalidInput):
        await make_org(session, minji, name="x", slug="Not a slug!", now=clock.now())


async def test_slug_suggestions(session, clock):
    assert organizations.suggest_slug("Seoul Climate Network") == "seoul-climate-network"
    assert organizations.suggest_slug("새솔마을 주민회", 3) == "moim-3"
    minji = await make_member(session, MINJI, "민지", now=clock.now())
    await make_org(session, minji, name="Saesol", slug="saesol", now=clock.now())
    assert await organizations.next_free_slug(session, "Saesol") == "saesol-2"


async def test_joining_a_sensitive_org_needs_separate_consent(session, clock):
    now = clock.now()
    minji = await make_member(session, MINJI, "민지", now=now)
    union = await make_org(session, minji, name="노동조합", slug="union", sensitive=True, now=now)
    seojun = await make_member(session, SEOJUN, "서준", now=now)
    with pytest.raises(SensitiveConsentRequired):
        await organizations.join(session, member=seojun, org=union, now=now)
    membership, new = await organizations.join(
        session, member=seojun, org=union, sensitive_consent=True, now=now
    )
    assert new and membership.tier == Tier.SUPPORTER and membership.sensitive_consent_at == now
    _, new_again = await organizations.join(session, member=seojun, org=union, now=now)
    assert not new_again


async def test_only_organisers_change_members_and_only_admins_grant_admin(session, clock):
    now = clock.now()
    minji = await make_member(session, MINJI, "민지", now=now)
    org = await make_org(session, minji, now=now)
    seojun = await make_member(session, SEOJUN, "서준", now=now)
    haeun = await make_member(session, HAEUN, "하은", now=now)
    seojun_ms = await add_member(session, org, seojun, now=now)
    haeun_ms = await add_member(session, org, haeun, role=Role.ORGANIZER, now=now)

    with pytest.raises(NotOrganizer):
        await organizations.change_membership(
            session, actor=seojun, org=org, membership_id=haeun_ms.id, tier=Tier.FULL, now=now
        )
    row = await organizations.change_membership(
        session, actor=haeun, org=org, membership_id=seojun_ms.id, tier=Tier.FULL, now=now
    )
    assert row.membership.tier == Tier.FULL
    with pytest.raises(NotOrganizer):  # an organiser cannot make an admin
        await organizations.change_membership(
            session, actor=haeun, org=org, membership_id=seojun_ms.id, role=Role.ADMIN, now=now
        )
    minji_ms = await organizations.membership_of(session, minji, org)
    with pytest.raises(InvalidInput):  # the last admin stays
        await organizations.change_membership(
            session, actor=minji, org=org, membership_id=minji_ms.id, role=Role.MEMBER, now=now
        )
    actions = [e.action for e in (await session.exec(select(AuditLog))).all()]
    assert actions == ["org.create", "members.tier"]


async def test_member_list_puts_organisers_first(session, clock):
    now = clock.now()
    minji = await make_member(session, MINJI, "민지", now=now)
    org = await make_org(session, minji, now=now)
    for i, name in enumerate(["가은", "나래", "다솜"]):
        await add_member(
            session, org, await make_member(session, 5000 + i, name, now=now), now=now
        )
    rows, total = await organizations.list_members(session, org, limit=2)
    assert total == 4
    assert [r.member.display_name for r in rows] == ["민지", "가은"]


async def test_group_migration_keeps_the_link(session, clock):
    now = clock.now()
    minji = await make_member(session, MINJI, "민지", now=now)
    org = await make_org(session, minji, now=now)
    await organizations.link_chat(
        session, actor=minji, org=org, chat_id=-100, title="새솔방", now=now
    )
    assert await organizations.migrate_chat(session, old_chat_id=-100, new_chat_id=-100777)
    linked = await organizations.linked_chat(session, -100777)
    assert linked.organization_id == org.id
    assert await organizations.linked_chat(session, -100) is None


async def test_networks_hold_groups(session, clock):
    now = clock.now()
    minji = await make_member(session, MINJI, "민지", now=now)
    network = await make_org(
        session, minji, name="서울연대", slug="seoul-net", kind="network", now=now
    )
    group = await make_org(session, minji, now=now)
    assert await organizations.add_to_network(
        session, actor=minji, network=network, group=group, now=now
    )
    assert not await organizations.add_to_network(
        session, actor=minji, network=network, group=group, now=now
    )
    assert [g.slug for g in await organizations.network_groups(session, network)] == ["saesol"]
    with pytest.raises(InvalidInput):
        await organizations.add_to_network(
            session, actor=minji, network=group, group=network, now=now
        )


async def test_forget_erases_personal_data_and_keeps_a_tombstone(runtime, clock):
    now = clock.now()
    calls = []

    async def export(session, member):
        return {"feature": "data"}

    async def erase(session, member, when):
        calls.append(member.id)

    hook = privacy.PrivacyHook("example", export, erase)
    async with transaction(runtime.sessions) as session:
        minji = await make_member(session, MINJI, "민지", now=now)
        org = await make_org(session, minji, now=now)
        seojun = await make_member(session, SEOJUN, "서준", now=now)
        await add_member(session, org, seojun, now=now)
        await outbox.enqueue(
            session,
            chat_id=SEOJUN,
            member_id=seojun.id,
            now=now,
            payload={"method": "send_message", "text": "hi"},
        )
        document = await privacy.export_member_data(session, seojun, hooks=[hook], now=now)
        assert document["profile"]["display_name"] == "서준"
        assert document["memberships"][0]["slug"] == "saesol"
        assert document["example"] == {"feature": "data"}
        await privacy.forget_member(session, seojun, hooks=[hook], now=now)
        seojun_id = seojun.id
    async with transaction(runtime.sessions) as session:
        tombstone = await session.get(Member, seojun_id)
        assert tombstone.telegram_user_id is None and tombstone.display_name == ""
        assert tombstone.deleted_at is not None
        assert await members.by_telegram_id(session, SEOJUN) is None
        left = await session.exec(select(Membership).where(Membership.member_id == seojun_id))
        assert left.all() == []
        queued = (await session.exec(select(Delivery))).one()
        assert queued.status == DeliveryStatus.CANCELLED
        # What was (to be) sent to them carried their name and chat id: blanked.
        assert (queued.payload, queued.chat_id, queued.member_id) == ({}, 0, None)
    assert calls == [seojun_id]


async def test_jobs_are_claimed_once_and_rescheduled_by_key(runtime, clock):
    now = clock.now()
    async with transaction(runtime.sessions) as session:
        await jobs.schedule(
            session,
            kind="k",
            key="meeting-1-remind-60",
            due_at=now + dt.timedelta(minutes=5),
            now=now,
        )
        # Rescheduling under the same key replaces the job, never doubles it.
        await jobs.schedule(
            session,
            kind="k",
            key="meeting-1-remind-60",
            due_at=now + dt.timedelta(minutes=10),
            now=now,
        )
    async with transaction(runtime.sessions) as session:
        assert await jobs.claim_due(session, now=now) is None
    later = now + dt.timedelta(minutes=10)
    async with transaction(runtime.sessions) as session:
        job = await jobs.claim_due(session, now=later)
        assert job.key == "meeting-1-remind-60" and job.attempts == 1
        jobs.complete(session, job, now=later)
    async with transaction(runtime.sessions) as session:
        assert await jobs.claim_due(session, now=later) is None
        assert (await jobs.by_key(session, "meeting-1-remind-60")).status == JobStatus.DONE


async def test_a_failing_job_backs_off_then_goes_dead(runtime, clock):
    now = clock.now()
    async with transaction(runtime.sessions) as session:
        job = await jobs.schedule(session, kind="k", key="x", due_at=now, now=now)
        job_id = job.id
    for attempt in range(1, 4):
        async with transaction(runtime.sessions) as session:
            failed = await jobs.record_failure(
                session, job_id=job_id, error="boom", now=now, max_attempts=3
            )
        assert failed.attempts == attempt
    assert failed.status == JobStatus.DEAD


async def test_outbox_claims_in_batches_and_reclaims_expired_leases(runtime, clock):
    now = clock.now()
    async with transaction(runtime.sessions) as session:
        await outbox.enqueue_many(
            session,
            [
                {"chat_id": 100 + i, "payload": {"method": "send_message", "text": str(i)}}
                for i in range(5)
            ],
            now=now,
            batch="broadcast:1",
        )
        assert await outbox.enqueue(
            session, chat_id=1, payload={"text": "x"}, now=now, dedupe_key="d1"
        )
        assert (
            await outbox.enqueue(
                session, chat_id=1, payload={"text": "x"}, now=now, dedupe_key="d1"
            )
            is None
        )
    lease = dt.timedelta(seconds=60)
    async with transaction(runtime.sessions) as session:
        first = await outbox.claim_batch(session, worker="a", now=now, limit=3, lease=lease)
    async with transaction(runtime.sessions) as session:
        second = await outbox.claim_batch(session, worker="b", now=now, limit=10, lease=lease)
    assert len(first) == 3 and len(second) == 3
    assert not {d.id for d in first} & {d.id for d in second}
    # Worker a dies; after its lease runs out, its batch is claimed again.
    expired = now + dt.timedelta(seconds=61)
    async with transaction(runtime.sessions) as session:
        await outbox.record_outcomes(
            session,
            [outbox.Outcome(d.id, DeliveryStatus.SENT, 1) for d in second],
            worker="b",
            now=expired,
        )
        again = await outbox.claim_batch(session, worker="c", now=expired, limit=10, lease=lease)
    assert sorted(d.id for d in again) == sorted(d.id for d in first)
    assert all(d.attempts == 2 for d in again)
    async with transaction(runtime.sessions) as session:
        counts = await outbox.batch_counts(session, "broadcast:1")
    assert counts[DeliveryStatus.SENDING] + counts[DeliveryStatus.SENT] == 5

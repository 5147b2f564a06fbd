"""Petitions over a real database: one signature per person, exact counts under races,
milestones and closing exactly once, exports, privacy, the full text in safe parts."""

from __future__ import annotations

import asyncio
import csv
import datetime as dt
import html
import io
import re

import pytest
import sqlalchemy as sa
from openpyxl import load_workbook
from sqlmodel import select

from bot.db import transaction
from bot.render import split_html, visible_length
from bot.scheduler import JobRunner
from bot.services import organizations, petitions, privacy
from bot.services.errors import InvalidInput, NotOrganizer
from bot.services.petitions import (
    AlreadySigned,
    InvalidPetition,
    NotSigned,
    PetitionClosed,
    PetitionNotFound,
    TapLimiter,
    TooManyTaps,
)
from models import (
    Delivery,
    JobStatus,
    Member,
    OrgKind,
    Petition,
    Role,
    ScheduledJob,
    Signature,
)
from tests.factories import HAEUN, JIHO, MINJI, SEOJUN, add_member, make_member, make_org

TEXT = "우리 마을 7번 마을버스는 출퇴근 시간에 30분씩 기다려야 합니다.\n\n증차를 요청합니다."


async def start(session, clock, *, goal=4, **options):
    """민지 (organiser of 새솔마을 주민회) starts a petition."""
    now = clock.now()
    minji = await make_member(session, MINJI, "민지", now=now)
    org = await make_org(session, minji, now=now)
    petition = await petitions.create_petition(
        session,
        actor=minji,
        org=org,
        title="마을버스 증차 요청",
        addressee="구청장",
        goal=goal,
        body=TEXT,
        now=now,
        **options,
    )
    return minji, org, petition


async def sign(runtime, telegram_id: int, petition_id: int, **options):
    """One person's tap, in its own transaction as an update would be."""
    async with transaction(runtime.sessions) as session:
        member = (
            await session.exec(select(Member).where(Member.telegram_user_id == telegram_id))
        ).one()
        return await petitions.sign_petition(
            session,
            member=member,
            petition_id=petition_id,
            now=runtime.now(),
            renderer=runtime.renderer,
            **options,
        )


async def count_of(runtime, petition_id: int) -> tuple[int, int]:
    """The stored count and the number of active signature rows."""
    async with transaction(runtime.sessions) as session:
        petition = await session.get(Petition, petition_id)
        rows = (
            await session.exec(
                select(sa.func.count())
                .select_from(Signature)
                .where(Signature.petition_id == petition_id, Signature.withdrawn_at.is_(None))
            )
        ).one()
        return petition.signature_count, rows


async def batches(runtime) -> dict[str, int]:
    async with transaction(runtime.sessions) as session:
        rows = await session.exec(select(Delivery.batch, sa.func.count()).group_by(Delivery.batch))
        return dict(rows.all())


async def test_one_signature_per_person_withdraw_and_sign_again(runtime, clock):
    async with transaction(runtime.sessions) as session:
        _, _, petition = await start(session, clock)
        await make_member(session, SEOJUN, "서준", now=clock.now())
    await sign(runtime, SEOJUN, petition.id)
    with pytest.raises(AlreadySigned) as caught:
        await sign(runtime, SEOJUN, petition.id)
    assert caught.value.params["count"] == 1
    assert await count_of(runtime, petition.id) == (1, 1)
    async with transaction(runtime.sessions) as session:
        seojun = (await session.exec(select(Member).where(Member.display_name == "서준"))).one()
        after = await petitions.withdraw_signature(
            session, member=seojun, petition_id=petition.id, now=clock.now()
        )
        assert after.signature_count == 0
    async with transaction(runtime.sessions) as session:
        with pytest.raises(NotSigned):
            await petitions.withdraw_signature(
                session, member=seojun, petition_id=petition.id, now=clock.now()
            )
    outcome = await sign(runtime, SEOJUN, petition.id)
    assert outcome.petition.signature_count == 1
    assert await count_of(runtime, petition.id) == (1, 1)
    async with transaction(runtime.sessions) as session:
        rows = (await session.exec(select(Signature))).all()
    assert len(rows) == 1 and rows[0].withdrawn_at is None


async def test_unknown_and_closed_petitions_are_refused(runtime, clock):
    async with transaction(runtime.sessions) as session:
        minji, _, petition = await start(session, clock)
        await make_member(session, SEOJUN, "서준", now=clock.now())
    with pytest.raises(PetitionNotFound):
        await sign(runtime, SEOJUN, 999)
    await sign(runtime, SEOJUN, petition.id)
    async with transaction(runtime.sessions) as session:
        closed = await petitions.close_petition(
            session,
            petition_id=petition.id,
            now=clock.now(),
            renderer=runtime.renderer,
            actor=await session.get(Member, minji.id),
        )
        assert closed.status == "closed" and closed.closed_reason == "hand"
    with pytest.raises(PetitionClosed):
        await sign(runtime, SEOJUN, petition.id)
    async with transaction(runtime.sessions) as session:
        seojun = (
            await session.exec(select(Member).where(Member.telegram_user_id == SEOJUN))
        ).one()
        with pytest.raises(PetitionClosed):
            await petitions.withdraw_signature(
                session, member=seojun, petition_id=petition.id, now=clock.now()
            )
    assert await count_of(runtime, petition.id) == (1, 1)


async def test_a_crowd_signs_at_once_counted_exactly_each_milestone_once(runtime, clock):
    """60 people (each tapping twice, at the same moment) sign a petition with goal 40."""
    async with transaction(runtime.sessions) as session:
        _minji, org, petition = await start(session, clock, goal=40, notify_signers=True)
        organiser = await make_member(session, 9000, "지호", now=clock.now())
        await add_member(session, org, organiser, role=Role.ORGANIZER, now=clock.now())
        for n in range(60):
            await make_member(session, 10_000 + n, f"시민{n}", now=clock.now())

    async def tap(telegram_id: int) -> str:
        try:
            await sign(runtime, telegram_id, petition.id)
            return "signed"
        except AlreadySigned:
            return "already"

    results = await asyncio.gather(*(tap(10_000 + n % 60) for n in range(120)))
    assert results.count("signed") == 60 and results.count("already") == 60
    assert await count_of(runtime, petition.id) == (60, 60)
    sent = await batches(runtime)
    # Organisers (민지 and 지호) once per milestone, and (notify_signers) everyone who had
    # signed when it was crossed: 10 at 25 % of 40, 20 at 50 %, ...
    for level in (25, 50, 75, 100):
        assert sent[f"petition:{petition.id}:ms{level}"] == 2 + 40 * level // 100
    async with transaction(runtime.sessions) as session:
        stored = await session.get(Petition, petition.id)
    assert stored.milestone_reached == 100


async def test_milestones_are_announced_once_even_when_withdrawn_and_crossed_again(runtime, clock):
    async with transaction(runtime.sessions) as session:
        _, _, petition = await start(session, clock, goal=4)
        for telegram_id, name in ((SEOJUN, "서준"), (HAEUN, "하은"), (JIHO, "지호")):
            await make_member(session, telegram_id, name, now=clock.now())
    first = await sign(runtime, SEOJUN, petition.id)
    assert first.milestone == 25
    async with transaction(runtime.sessions) as session:
        seojun = (
            await session.exec(select(Member).where(Member.telegram_user_id == SEOJUN))
        ).one()
        await petitions.withdraw_signature(
            session, member=seojun, petition_id=petition.id, now=clock.now()
        )
    again = await sign(runtime, SEOJUN, petition.id)
    assert again.milestone is None
    assert (await sign(runtime, HAEUN, petition.id)).milestone == 50
    sent = await batches(runtime)
    assert sent == {f"petition:{petition.id}:ms25": 1, f"petition:{petition.id}:ms50": 1}


async def test_a_small_goal_crosses_several_milestones_with_one_message(runtime, clock):
    async with transaction(runtime.sessions) as session:
        _, _, petition = await start(session, clock, goal=1)
        await make_member(session, SEOJUN, "서준", now=clock.now())
    assert (await sign(runtime, SEOJUN, petition.id)).milestone == 100
    assert await batches(runtime) == {f"petition:{petition.id}:ms100": 1}


async def test_closing_job_runs_once_across_instances_and_after_closing_by_hand(runtime, clock):
    async with transaction(runtime.sessions) as session:
        _, _, petition = await start(session, clock, closes_at=clock.now() + dt.timedelta(days=2))
        for telegram_id, name in ((SEOJUN, "서준"), (HAEUN, "하은")):
            await make_member(session, telegram_id, name, now=clock.now())
    await sign(runtime, SEOJUN, petition.id)
    await sign(runtime, HAEUN, petition.id)
    _register_close_job(runtime)
    first, second = JobRunner(runtime), JobRunner(runtime)
    assert await first.run_due() == 0
    clock.advance(days=2, minutes=1)
    ran = await asyncio.gather(first.run_due(), second.run_due())
    assert sum(ran) == 1
    assert await first.run_due() == 0
    sent = await batches(runtime)
    # 서준 and 하은 as signers, 민지 as organiser: each told once.
    assert sent[f"petition:{petition.id}:closed"] == 3
    async with transaction(runtime.sessions) as session:
        stored = await session.get(Petition, petition.id)
        job = (await session.exec(select(ScheduledJob))).one()
    assert (stored.status, stored.closed_reason, job.status) == ("closed", "time", JobStatus.DONE)


async def test_closing_by_hand_cancels_the_job(runtime, clock):
    async with transaction(runtime.sessions) as session:
        _, _, petition = await start(session, clock, closes_at=clock.now() + dt.timedelta(1))
        await make_member(session, SEOJUN, "서준", now=clock.now())
    await sign(runtime, SEOJUN, petition.id)
    async with transaction(runtime.sessions) as session:
        minji = (await session.exec(select(Member).where(Member.telegram_user_id == MINJI))).one()
        await petitions.close_petition(
            session,
            petition_id=petition.id,
            now=clock.now(),
            renderer=runtime.renderer,
            actor=minji,
        )
    with pytest.raises(PetitionClosed):
        async with transaction(runtime.sessions) as session:
            await petitions.close_petition(
                session,
                petition_id=petition.id,
                now=clock.now(),
                renderer=runtime.renderer,
                actor=await session.get(Member, minji.id),
            )
    _register_close_job(runtime)
    clock.advance(days=2)
    assert await JobRunner(runtime).run_due() == 0
    async with transaction(runtime.sessions) as session:
        job = (await session.exec(select(ScheduledJob))).one()
    assert job.status == JobStatus.CANCELLED
    # 서준 is told the final count once; 민지, who closed it, saw it already.
    async with transaction(runtime.sessions) as session:
        told = (
            await session.exec(select(Delivery.chat_id).where(Delivery.batch.endswith(":closed")))
        ).all()
    assert told == [SEOJUN]


def _register_close_job(runtime):
    from handlers.petitions import close_due

    runtime.features.jobs.setdefault(petitions.CLOSE_JOB, close_due)


async def test_only_organisers_create_close_and_export(runtime, clock):
    async with transaction(runtime.sessions) as session:
        _, org, petition = await start(session, clock)
        seojun = await make_member(session, SEOJUN, "서준", now=clock.now())
        await add_member(session, org, seojun, now=clock.now())
        with pytest.raises(NotOrganizer):
            await petitions.create_petition(
                session,
                actor=seojun,
                org=org,
                title="t",
                addressee="a",
                goal=1,
                body="b",
                now=clock.now(),
            )
        for attempt in (
            petitions.close_petition(
                session,
                petition_id=petition.id,
                now=clock.now(),
                renderer=runtime.renderer,
                actor=seojun,
            ),
            petitions.summarise(session, actor=seojun, petition_id=petition.id, now=clock.now()),
            petitions.printable(session, actor=seojun, petition_id=petition.id, now=clock.now()),
        ):
            with pytest.raises(NotOrganizer):
                await attempt


async def test_exports_name_only_who_agreed_and_escape_markup(runtime, clock):
    async with transaction(runtime.sessions) as session:
        minji, _org, petition = await start(session, clock, goal=10)
        await make_member(session, SEOJUN, "서준 <b>굵게</b>", now=clock.now())
        await make_member(session, HAEUN, "하은", now=clock.now())
        await make_member(session, JIHO, "=지호", now=clock.now())
    for telegram_id in (SEOJUN, HAEUN, JIHO):
        await sign(runtime, telegram_id, petition.id)
    async with transaction(runtime.sessions) as session:
        by_id = {m.telegram_user_id: m for m in (await session.exec(select(Member))).all()}
        for telegram_id in (SEOJUN, JIHO):
            await petitions.set_name_public(
                session,
                member=by_id[telegram_id],
                petition_id=petition.id,
                public=True,
                now=clock.now(),
            )
        await petitions.add_comment(
            session,
            member=by_id[HAEUN],
            petition_id=petition.id,
            text="<script>alert(1)</script> 꼭 필요해요",
            chat_id=HAEUN,
            user_id=HAEUN,
        )
    headers = ["번호", "이름", "단체", "서명 일시", "한마디"]
    async with transaction(runtime.sessions) as session:
        minji = await session.get(Member, minji.id)
        _, name, data = await petitions.export_table(
            session,
            actor=minji,
            petition_id=petition.id,
            kind="csv",
            headers=headers,
            private_label="(비공개)",
            now=clock.now(),
        )
        _, _, workbook = await petitions.export_table(
            session,
            actor=minji,
            petition_id=petition.id,
            kind="xlsx",
            headers=headers,
            private_label="(비공개)",
            now=clock.now(),
        )
        page = await petitions.printable(
            session, actor=minji, petition_id=petition.id, now=clock.now()
        )
    assert name.endswith(".csv") and data.startswith(b"\xef\xbb\xbf")
    rows = list(csv.reader(io.StringIO(data.decode("utf-8-sig"))))
    assert rows[0] == headers
    assert [row[1] for row in rows[1:]] == ["서준 <b>굵게</b>", "(비공개)", "'=지호"]
    assert rows[2][4] == "<script>alert(1)</script> 꼭 필요해요"
    assert rows[1][3] == "2026-12-01 09:00"  # Seoul time
    sheet = load_workbook(io.BytesIO(workbook)).active
    assert [cell.value for cell in sheet["B"]] == [
        "이름",
        "서준 <b>굵게</b>",
        "(비공개)",
        "'=지호",
    ]
    assert (page.names, page.private, page.total) == (["서준 <b>굵게</b>", "=지호"], 1, 3)
    rendered = runtime.renderer.text("petitions/printable.html", "ko", p=page, now=clock.now())
    assert "<li>서준 &lt;b&gt;굵게&lt;/b&gt;</li>" in rendered
    assert "하은" not in rendered and "<script>" not in rendered
    assert "모두 3명이 서명했습니다" in rendered and "1명은 이름 없이" in rendered


async def test_forget_keeps_the_signature_counted_without_name_or_comment(runtime, clock):
    async with transaction(runtime.sessions) as session:
        minji, _, petition = await start(session, clock)
        seojun = await make_member(session, SEOJUN, "서준", now=clock.now())
    await sign(runtime, SEOJUN, petition.id)
    async with transaction(runtime.sessions) as session:
        seojun = await session.get(Member, seojun.id)
        await petitions.set_name_public(
            session, member=seojun, petition_id=petition.id, public=True, now=clock.now()
        )
        await petitions.add_comment(
            session,
            member=seojun,
            petition_id=petition.id,
            text="찬성합니다",
            chat_id=SEOJUN,
            user_id=SEOJUN,
        )
        exported = await petitions.export_member(session, seojun)
        assert exported[0]["comment"] == "찬성합니다" and exported[0]["name_shown_publicly"]
        hook = privacy.PrivacyHook("petitions", petitions.export_member, petitions.erase_member)
        await privacy.forget_member(session, seojun, hooks=[hook], now=clock.now())
    async with transaction(runtime.sessions) as session:
        page = await petitions.printable(
            session,
            actor=await session.get(Member, minji.id),
            petition_id=petition.id,
            now=clock.now(),
        )
        signature = (await session.exec(select(Signature))).one()
    assert (page.names, page.private) == ([], 1)
    assert (signature.public, signature.comment, signature.withdrawn_at) == (False, None, None)
    assert await count_of(runtime, petition.id) == (1, 1)


async def test_comment_limit_and_name_choice_need_an_active_signature(runtime, clock):
    async with transaction(runtime.sessions) as session:
        _, _, petition = await start(session, clock, public_names=False)
        seojun = await make_member(session, SEOJUN, "서준", now=clock.now())
        with pytest.raises(NotSigned):
            await petitions.set_name_public(
                session, member=seojun, petition_id=petition.id, public=False, now=clock.now()
            )
    await sign(runtime, SEOJUN, petition.id)
    async with transaction(runtime.sessions) as session:
        seojun = await session.get(Member, seojun.id)
        with pytest.raises(InvalidPetition) as caught:
            await petitions.add_comment(
                session,
                member=seojun,
                petition_id=petition.id,
                text="가" * 301,
                chat_id=SEOJUN,
                user_id=SEOJUN,
            )
        assert caught.value.params == {
            "field": "comment",
            "reason": "too_long",
            "limit": 300,
            "length": 301,
        }
        with pytest.raises(InvalidPetition):  # names are never shown on this petition
            await petitions.set_name_public(
                session, member=seojun, petition_id=petition.id, public=True, now=clock.now()
            )


async def test_network_petition_counts_per_co_sponsor(runtime, clock):
    now = clock.now()
    async with transaction(runtime.sessions) as session:
        minji = await make_member(session, MINJI, "민지", now=now)
        network = await make_org(
            session, minji, name="서울 기후 연대", slug="seoul-net", kind=OrgKind.NETWORK, now=now
        )
        saesol = await make_org(session, minji, name="새솔마을 주민회", slug="saesol", now=now)
        haneul = await make_org(session, minji, name="하늘 협동조합", slug="haneul", now=now)
        for group in (saesol, haneul):
            await organizations.add_to_network(
                session, actor=minji, network=network, group=group, now=now
            )
        petition = await petitions.create_petition(
            session,
            actor=minji,
            org=network,
            title="기후 조례",
            addressee="시의회",
            goal=10,
            body="본문",
            now=now,
        )
        seojun = await make_member(session, SEOJUN, "서준", now=now)
        await add_member(session, haneul, seojun, now=now)
        await make_member(session, HAEUN, "하은", now=now)
        await make_member(session, JIHO, "지호", now=now)
    assert petition.network
    await sign(runtime, SEOJUN, petition.id)  # a member of 하늘 협동조합
    await sign(runtime, HAEUN, petition.id, sponsor_hint=saesol.id)  # 새솔's link
    await sign(runtime, JIHO, petition.id, sponsor_hint=12345)  # a forged hint: the network
    async with transaction(runtime.sessions) as session:
        summary = await petitions.summarise(
            session, actor=await session.get(Member, minji.id), petition_id=petition.id, now=now
        )
        opened = await petitions.open_link(session, arg=f"{petition.id}_saesol", member=None)
    assert summary.per_sponsor == [
        ("새솔마을 주민회", 1),
        ("하늘 협동조합", 1),
        ("서울 기후 연대", 1),
    ]
    assert summary.active == 3 and summary.per_day[0][1] == 3
    assert opened.sponsor_id == saesol.id


async def test_summary_counts_per_local_day(runtime, clock):
    async with transaction(runtime.sessions) as session:
        minji, _, petition = await start(session, clock, goal=10)
        for n, telegram_id in enumerate((SEOJUN, HAEUN, JIHO)):
            await make_member(session, telegram_id, f"시민{n}", now=clock.now())
    clock.set(dt.datetime(2026, 12, 1, 14, 30, tzinfo=dt.UTC))  # 23:30 in Seoul, 1 Dec
    await sign(runtime, SEOJUN, petition.id)
    clock.set(dt.datetime(2026, 12, 1, 15, 30, tzinfo=dt.UTC))  # 00:30 in Seoul, 2 Dec
    await sign(runtime, HAEUN, petition.id)
    await sign(runtime, JIHO, petition.id)
    async with transaction(runtime.sessions) as session:
        summary = await petitions.summarise(
            session,
            actor=await session.get(Member, minji.id),
            petition_id=petition.id,
            now=clock.now(),
        )
    assert [(day.day, count) for day, count in summary.per_day] == [(1, 1), (2, 2)]


async def test_signed_by_and_audience(runtime, clock):
    async with transaction(runtime.sessions) as session:
        _, org, petition = await start(session, clock)
        seojun = await make_member(session, SEOJUN, "서준", now=clock.now())
        await make_member(session, HAEUN, "하은", now=clock.now())
    await sign(runtime, SEOJUN, petition.id)
    await sign(runtime, HAEUN, petition.id)
    async with transaction(runtime.sessions) as session:
        haeun = (await session.exec(select(Member).where(Member.telegram_user_id == HAEUN))).one()
        await petitions.withdraw_signature(
            session, member=haeun, petition_id=petition.id, now=clock.now()
        )
    async with transaction(runtime.sessions) as session:
        rows, total = await petitions.signed_by(session, await session.get(Member, seojun.id))
        audience = (
            await session.exec(petitions.audience_member_ids(petition.id, "signers"))
        ).all()
        items = await petitions.audience_items(session, org)
    assert total == 1 and rows[0][0].title == "마을버스 증차 요청"
    assert audience == [seojun.id]
    assert [item.title for item in items] == ["마을버스 증차 요청"]


def test_tap_limiter_refuses_a_flood_and_forgets_it_after_the_window():
    limiter = TapLimiter(taps=3, window=dt.timedelta(seconds=30))
    now = dt.datetime(2026, 12, 1, tzinfo=dt.UTC)
    for _ in range(3):
        limiter.check(1, 7, now)
    with pytest.raises(TooManyTaps) as caught:
        limiter.check(1, 7, now + dt.timedelta(seconds=5))
    assert caught.value.params["seconds"] == 25
    limiter.check(2, 7, now)  # someone else
    limiter.check(1, 8, now)  # another petition
    limiter.check(1, 7, now + dt.timedelta(seconds=30))


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("500", 500),
        ("1,000", 1000),
        ("500명", 500),
        (" 2 000 ", 2000),
    ],
)
def test_goals_people_type(text, expected):
    assert petitions.parse_goal(text) == expected


@pytest.mark.parametrize("text", ["", "많이", "0", "-5", "10000001", "5.5"])
def test_goals_that_are_refused(text):
    with pytest.raises(InvalidPetition):
        petitions.parse_goal(text)


async def test_one_line_grammar(session, clock):
    now = clock.now()
    minji = await make_member(session, MINJI, "민지", now=now)
    org = await make_org(session, minji, now=now)
    parsed = await petitions.parse_one_line(
        session,
        member=minji,
        text="마을버스 증차 요청 | 구청장 | 500 | 12월 31일 | 비공개 | 알림\n첫 줄\n\n둘째 줄",
        is_bot_admin=False,
        now=now,
    )
    assert (parsed.title, parsed.addressee, parsed.goal) == ("마을버스 증차 요청", "구청장", 500)
    assert parsed.closes_at == dt.datetime(2026, 12, 31, 14, 59, tzinfo=dt.UTC)
    assert (parsed.public_names, parsed.notify_signers, parsed.org.id) == (False, True, org.id)
    assert parsed.body == "첫 줄\n\n둘째 줄"
    short = await petitions.parse_one_line(
        session, member=minji, text="제목 | 구청장 | 10 | saesol", is_bot_admin=False, now=now
    )
    assert (short.closes_at, short.public_names, short.body) == (None, True, None)
    for bad in ("제목만", "제목 | 구청장", "제목 | 구청장 | 많이"):
        with pytest.raises(InvalidPetition):
            await petitions.parse_one_line(
                session, member=minji, text=bad, is_bot_admin=False, now=now
            )
    with pytest.raises(InvalidInput):  # a closing date in the past
        await petitions.parse_one_line(
            session,
            member=minji,
            text="제목 | 구청장 | 10 | 2020-01-01",
            is_bot_admin=False,
            now=now,
        )


def test_full_text_splits_safely_on_the_real_template():
    """A 10,000-character text full of markup-like input: every part within Telegram's limit,
    no tag or entity cut, and nothing lost."""
    from bot.render import Renderer

    unit = "주민 <b>의견</b> & 요청 &amp; <a href='x'>링크</a> 5 < 6 > 4 ; "
    body = (unit * (10_000 // len(unit) + 1))[:10_000]
    petition = Petition(
        id=3,
        organization_id=1,
        title="<i>긴</i> 청원",
        addressee="구청장 & 시장",
        body=body,
        goal=10,
        signature_count=0,
    )
    rendered = Renderer().render(
        "petitions/full_text.html", "ko", petition=petition, org=None, signed=False
    )
    parts = split_html(rendered.text)
    assert len(parts) >= 3
    for part in parts:
        assert visible_length(part) <= 4096
        assert not re.search(r"&[^;\s]*(\s|$)", part)  # every & starts a whole entity
        assert "<" not in re.sub(r"</?b>", "", part)  # only our own tags, all whole
    joined = html.unescape(re.sub(r"</?b>", "", "".join(parts)))
    assert re.sub(r"\s+", "", joined) == re.sub(
        r"\s+", "", "📄 <i>긴</i> 청원청원 대상: 구청장 & 시장" + body
    )


def test_group_card_presses_are_ordered_per_presser_not_per_group():
    """Many people tapping one card in a group must not wait for each other; each person's
    own taps and messages stay in order (the lane of their private chat)."""
    from telegram import Update

    from bot.processing import order_key

    group = {"id": -100123, "type": "supergroup", "title": "새솔 단톡방"}

    def press(user_id: int, update_id: int) -> Update:
        user = {"id": user_id, "is_bot": False, "first_name": "p"}
        card = {"message_id": 7, "date": 0, "chat": group, "text": "card"}
        query = {"id": str(update_id), "from": user, "chat_instance": "1", "data": "v1:x:y"}
        return Update.de_json(
            {"update_id": update_id, "callback_query": {**query, "message": card}}, None
        )

    def text(user_id: int, chat: dict, update_id: int) -> Update:
        user = {"id": user_id, "is_bot": False, "first_name": "p"}
        message = {"message_id": 8, "date": 0, "chat": chat, "from": user, "text": "/me"}
        return Update.de_json({"update_id": update_id, "message": message}, None)

    private = {"id": 2002, "type": "private", "first_name": "p"}
    assert order_key(press(2002, 1)) != order_key(press(3003, 2))
    assert order_key(press(2002, 1)) == order_key(text(2002, private, 3))
    assert order_key(text(2002, group, 4)) == order_key(text(3003, group, 5)) == ("chat", -100123)

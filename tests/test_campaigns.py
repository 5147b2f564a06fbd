"""Campaign services over the real database (SQLite, and PostgreSQL when configured): the
one-line grammar, capacity with guests, waitlist order, promotions, deadlines, milestones,
races, answers, co-hosts, exports, announcements, the survey and privacy."""

from __future__ import annotations

import asyncio
import csv
import datetime as dt
import io
import random

import pytest
import sqlalchemy as sa
from openpyxl import load_workbook
from sqlmodel import select

from bot.db import transaction
from bot.services import campaigns, jobs, privacy
from bot.services.campaigns import CampaignDraft
from bot.services.errors import InvalidInput, NotOrganizer, SensitiveConsentRequired
from models import (
    Campaign,
    Delivery,
    JobStatus,
    Member,
    OrgKind,
    Role,
    ScheduledJob,
    Signup,
    SignupStatus,
    SurveyResponse,
)
from tests.factories import HAEUN, JIHO, MINJI, SEOJUN, add_member, make_member, make_org

SEOUL = "Asia/Seoul"
LABELS = {
    **{c: c for c in campaigns.EXPORT_COLUMNS},
    "confirmed": "확정",
    "waitlisted": "대기",
    "cancelled": "취소",
    "deleted": "(삭제)",
    "rating": "점수",
    "comment": "의견",
    "answered_at": "시각",
}


def seoul(moment: dt.datetime) -> str:
    return moment.astimezone(dt.timezone(dt.timedelta(hours=9))).strftime("%Y-%m-%d %H:%M")


# --- the one-line form and the guided flow's steps ---------------------------------------------


def test_the_one_line_form_reads_the_readme_example(clock):
    draft, slug = campaigns.parse_one_line(
        "12월 정기 상영회 | 12월 19일 19:00 | 마을회관 | 정원 50 | 마감 12월 18일 18:00",
        now=clock.now(),
        timezone=SEOUL,
    )
    assert draft.title == "12월 정기 상영회"
    assert seoul(draft.starts_at) == "2026-12-19 19:00"
    assert draft.place == "마을회관"
    assert draft.capacity == 50
    assert seoul(draft.deadline) == "2026-12-18 18:00"
    assert slug is None


def test_the_one_line_form_takes_labelled_options_in_any_order(clock):
    draft, slug = campaigns.parse_one_line(
        "Climate march | capacity: 200 | guests 2 | question T-shirt size? S / M / L"
        " | question Name for the tag? | survey 3h | 2026-12-20 14:00 | https://meet.example/x"
        " | about Bring a banner | deadline 12월 19일 | org saesol",
        now=clock.now(),
        timezone=SEOUL,
    )
    assert (draft.capacity, draft.max_guests, draft.survey_after_minutes) == (200, 2, 180)
    assert draft.place == "https://meet.example/x"
    assert draft.description == "Bring a banner"
    assert seoul(draft.deadline) == "2026-12-19 23:59"  # a date alone: the end of that day
    assert draft.questions == [
        {"kind": "choice", "prompt": "T-shirt size?", "choices": ["S", "M", "L"]},
        {"kind": "text", "prompt": "Name for the tag?", "max_length": 200},
    ]
    assert slug == "saesol"
    assert campaigns.named_org("Climate march | 단체: Saesol") == "saesol"


@pytest.mark.parametrize(
    ("line", "field", "reason"),
    [
        ("", "title", "empty"),
        ("상영회 | 정원 쉰명", "capacity", None),
        ("상영회 | 정원 0", "capacity", None),
        ("상영회 | 동반 9", "guests", None),
        ("상영회 | 12월 19일 19:00 | 마감 12월 20일 18:00", "deadline", "after_start"),
        ("상영회 | 설문 2시간", "survey", "no_start"),
        ("상영회 | 마을회관 | 도서관", "option", None),
        ("상영회 | 질문 사이즈? S /", "question", "choices"),
        ("상영회 | 질문 사이즈? S / S", "question", "choice_twice"),
    ],
)
def test_the_one_line_form_refuses_what_it_cannot_use(clock, line, field, reason):
    with pytest.raises(campaigns.InvalidCampaign) as caught:
        campaigns.parse_one_line(line, now=clock.now(), timezone=SEOUL)
    assert caught.value.params["field"] == field
    if reason:
        assert caught.value.params["reason"] == reason


def test_a_mistyped_or_past_date_is_an_error_not_a_place(clock):
    with pytest.raises(InvalidInput) as caught:
        campaigns.parse_one_line("상영회 | 12월 32일 19:00", now=clock.now(), timezone=SEOUL)
    assert caught.value.params["field"] == "when"
    with pytest.raises(InvalidInput) as caught:
        campaigns.parse_one_line("상영회 | 2026-11-01 19:00", now=clock.now(), timezone=SEOUL)
    assert caught.value.params["reason"] == "past"


def test_the_guided_steps_skip_the_survey_without_a_date(clock):
    draft = CampaignDraft(title="봉사")
    assert campaigns.next_step(draft, "questions") == "preview"
    dated = campaigns.read_step(draft, "when", "12월 19일 19:00", now=clock.now(), timezone=SEOUL)
    assert campaigns.next_step(dated, "questions") == "survey"
    assert campaigns.choose_step(dated, "survey", "1440").survey_after_minutes == 1440
    with pytest.raises(campaigns.InvalidCampaign):
        campaigns.choose_step(dated, "survey", "999")  # not one of the buttons
    assert CampaignDraft.from_data(dated.to_data()) == dated


# --- helpers ------------------------------------------------------------------------------------


async def setup(session, clock, *, capacity=10, max_guests=0, questions=(), **draft_fields):
    """An organisation with 민지 as admin and an open campaign."""
    now = clock.now()
    minji = await make_member(session, MINJI, "민지", now=now)
    org = await make_org(session, minji, now=now)
    draft = CampaignDraft(
        title="12월 정기 상영회",
        starts_at=now + dt.timedelta(days=18),
        place="마을회관",
        capacity=capacity,
        max_guests=max_guests,
        questions=[campaigns.parse_question(q) for q in questions],
        **draft_fields,
    )
    campaign = await campaigns.create_campaign(
        session, org=org, creator=minji, draft=draft, open_now=True, now=now
    )
    return minji, org, campaign


async def people(session, clock, count: int, start: int = 50_000) -> list[Member]:
    return [
        await make_member(session, start + n, f"사람{n}", now=clock.now()) for n in range(count)
    ]


async def sign_up(session, runtime, campaign, member, guests=0, *, now=None):
    return await campaigns.sign_up(
        session,
        campaign_id=campaign.id,
        member=member,
        guests=guests,
        now=now or runtime.now(),
        renderer=runtime.renderer,
    )


async def cancel(session, runtime, campaign, member, *, now=None):
    return await campaigns.cancel_signup(
        session,
        campaign_id=campaign.id,
        member=member,
        now=now or runtime.now(),
        renderer=runtime.renderer,
    )


async def deliveries(session, batch_prefix: str) -> list[Delivery]:
    result = await session.exec(
        select(Delivery).where(Delivery.batch.startswith(batch_prefix)).order_by(Delivery.id)
    )
    return list(result.all())


async def check_counters(session, campaign_id: int) -> Campaign:
    """The counters on the row agree with the sign-ups, and nobody waiting would fit."""
    campaign = await session.get(Campaign, campaign_id, populate_existing=True)
    rows = (await session.exec(select(Signup).where(Signup.campaign_id == campaign_id))).all()
    confirmed = [s for s in rows if s.status == SignupStatus.CONFIRMED]
    waiting = [s for s in rows if s.status == SignupStatus.WAITLISTED]
    assert campaign.confirmed_people == len(confirmed)
    assert campaign.confirmed_seats == sum(1 + s.guests for s in confirmed)
    assert campaign.waitlisted_people == len(waiting)
    if campaign.capacity is not None:
        free = campaign.capacity - campaign.confirmed_seats
        assert free >= 0
        assert all(1 + s.guests > free for s in waiting)
    positions = [s.position for s in rows if s.status != SignupStatus.CANCELLED]
    assert len(positions) == len(set(positions))
    return campaign


# --- signing up, the waitlist, cancelling -------------------------------------------------------


async def test_guests_take_places_and_a_full_campaign_has_a_waitlist(session, runtime, clock):
    _, _, campaign = await setup(session, clock, capacity=4, max_guests=2)
    a, b, c, d, e = await people(session, clock, 5)
    first = await sign_up(session, runtime, campaign, a, guests=2)
    assert first.signup.status == SignupStatus.CONFIRMED and first.view.free_seats == 1
    second = await sign_up(session, runtime, campaign, b, guests=1)  # needs 2, 1 left
    assert second.signup.status == SignupStatus.WAITLISTED and second.view.rank == 1
    third = await sign_up(session, runtime, campaign, c)  # a single person still fits
    assert third.signup.status == SignupStatus.CONFIRMED and third.view.free_seats == 0
    fourth = await sign_up(session, runtime, campaign, d)
    assert (fourth.signup.status, fourth.view.rank) == (SignupStatus.WAITLISTED, 2)
    with pytest.raises(campaigns.TooManyGuests) as caught:
        await sign_up(session, runtime, campaign, e, guests=3)
    assert caught.value.params["limit"] == 2
    again = await sign_up(session, runtime, campaign, d)  # a double tap changes nothing
    assert not again.new and again.view.rank == 2
    await check_counters(session, campaign.id)


async def test_a_cancellation_confirms_the_first_waiting_people_who_fit(session, runtime, clock):
    _, _, campaign = await setup(session, clock, capacity=3, max_guests=2)
    a, b, c, d = await people(session, clock, 4)
    await sign_up(session, runtime, campaign, a, guests=2)  # 3 places: full
    await sign_up(session, runtime, campaign, b, guests=2)  # waiting 1: needs 3
    await sign_up(session, runtime, campaign, c)  # waiting 2: needs 1
    await sign_up(session, runtime, campaign, d)  # waiting 3: needs 1
    outcome = await cancel(session, runtime, campaign, a)
    # Three places free: b (3) fits first and takes all; c and d keep waiting, now 1st and 2nd.
    assert outcome.promoted == 1
    states = {
        s.member_id: s.status
        for s in (await session.exec(select(Signup).where(Signup.campaign_id == campaign.id)))
    }
    assert states == {
        a.id: SignupStatus.CANCELLED,
        b.id: SignupStatus.CONFIRMED,
        c.id: SignupStatus.WAITLISTED,
        d.id: SignupStatus.WAITLISTED,
    }
    told = await deliveries(session, f"campaign:{campaign.id}:promoted")
    assert [t.member_id for t in told] == [b.id]
    assert "참가가 확정되었습니다" in told[0].payload["text"]
    await cancel(session, runtime, campaign, b)  # 3 free again: c and d both fit
    told = await deliveries(session, f"campaign:{campaign.id}:promoted")
    assert [t.member_id for t in told] == [b.id, c.id, d.id]
    view = await campaigns.card_view(session, campaign.id, now=clock.now(), member=c)
    assert view.mine.status == SignupStatus.CONFIRMED
    with pytest.raises(campaigns.NotSignedUp):
        await cancel(session, runtime, campaign, a)
    again = await sign_up(session, runtime, campaign, a)  # back, at the end of the line
    assert again.signup.status == SignupStatus.CONFIRMED
    assert again.signup.position == 5
    await check_counters(session, campaign.id)


async def test_deadline_draft_and_closing_are_refused_clearly(session, runtime, clock):
    minji, org, campaign = await setup(session, clock, capacity=5)
    a, b = await people(session, clock, 2)
    await sign_up(session, runtime, campaign, a)
    await campaigns.close_campaign(session, campaign_id=campaign.id, actor=minji, now=clock.now())
    with pytest.raises(campaigns.CampaignClosed):
        await sign_up(session, runtime, campaign, b)
    await cancel(session, runtime, campaign, a)  # cancelling is still possible when closed
    await campaigns.open_campaign(session, campaign_id=campaign.id, actor=minji, now=clock.now())
    await sign_up(session, runtime, campaign, a)
    late = campaign.starts_at + dt.timedelta(minutes=1)  # no deadline: the start is one
    with pytest.raises(campaigns.DeadlinePassed) as caught:
        await sign_up(session, runtime, campaign, b, now=late)
    assert caught.value.params["action"] == "sign_up"
    assert caught.value.params["deadline"] == campaign.starts_at
    with pytest.raises(campaigns.DeadlinePassed) as caught:
        await cancel(session, runtime, campaign, a, now=late)
    assert caught.value.params["action"] == "cancel"
    draft = await campaigns.create_campaign(
        session,
        org=org,
        creator=minji,
        draft=CampaignDraft(title="초안"),
        open_now=False,
        now=clock.now(),
    )
    with pytest.raises(campaigns.CampaignNotOpen):
        await sign_up(session, runtime, draft, b)
    with pytest.raises(campaigns.CampaignNotFound):
        await campaigns.card_view(session, 999, now=clock.now())
    await check_counters(session, campaign.id)


async def test_only_organisers_create_open_and_close(session, runtime, clock):
    _, org, campaign = await setup(session, clock)
    seojun = await make_member(session, SEOJUN, "서준", now=clock.now())
    await add_member(session, org, seojun, now=clock.now())
    with pytest.raises(NotOrganizer):
        await campaigns.close_campaign(
            session, campaign_id=campaign.id, actor=seojun, now=clock.now()
        )
    with pytest.raises(NotOrganizer):
        await campaigns.create_campaign(
            session,
            org=org,
            creator=seojun,
            draft=CampaignDraft(title="가짜"),
            open_now=True,
            now=clock.now(),
        )
    with pytest.raises(NotOrganizer):
        await campaigns.signups_page(
            session, campaign_id=campaign.id, member=seojun, now=clock.now()
        )


async def test_a_sensitive_organisations_campaign_needs_its_separate_consent(
    session, runtime, clock
):
    now = clock.now()
    minji = await make_member(session, MINJI, "민지", now=now)
    union = await make_org(session, minji, name="노동조합", slug="union", sensitive=True, now=now)
    campaign = await campaigns.create_campaign(
        session,
        org=union,
        creator=minji,
        draft=CampaignDraft(title="총회"),
        open_now=True,
        now=now,
    )
    seojun = await make_member(session, SEOJUN, "서준", now=now)
    with pytest.raises(SensitiveConsentRequired):
        await sign_up(session, runtime, campaign, seojun)
    await add_member(session, union, seojun, now=now)  # joined with the separate consent
    assert (await sign_up(session, runtime, campaign, seojun)).new


# --- milestones, and races ----------------------------------------------------------------------


async def test_milestones_are_announced_once_each(session, runtime, clock):
    minji, org, campaign = await setup(session, clock, capacity=10)
    organiser = await make_member(session, SEOJUN, "서준", now=clock.now())
    await add_member(session, org, organiser, role=Role.ORGANIZER, now=clock.now())
    crowd = await people(session, clock, 12)
    for person in crowd[:5]:
        await sign_up(session, runtime, campaign, person)
    await cancel(session, runtime, campaign, crowd[0])  # 40 %, then back to 50 %: no repeat
    await sign_up(session, runtime, campaign, crowd[5])
    for person in crowd[6:12]:
        await sign_up(session, runtime, campaign, person)
    told = await deliveries(session, f"campaign:{campaign.id}:milestone")
    keys = sorted(d.dedupe_key.split(":")[3] for d in told)
    assert keys == ["100", "100", "50", "50", "80", "80"]  # to both organisers, once each
    assert {d.member_id for d in told} == {minji.id, organiser.id}


async def test_200_people_racing_for_the_last_10_places(runtime, clock):
    """Real concurrent transactions: exactly 10 confirmed, 190 waiting, in arrival order."""
    async with transaction(runtime.sessions) as session:
        _, _, campaign = await setup(session, clock, capacity=50)
        early = await people(session, clock, 40, start=10_000)
        racers = await people(session, clock, 200, start=20_000)
        for person in early:
            await sign_up(session, runtime, campaign, person)
        campaign_id, racer_ids = campaign.id, [p.id for p in racers]

    async def race(member_id: int) -> None:
        async with transaction(runtime.sessions) as session:
            member = await session.get(Member, member_id)
            await campaigns.sign_up(
                session,
                campaign_id=campaign_id,
                member=member,
                now=runtime.now(),
                renderer=runtime.renderer,
            )

    await asyncio.gather(*(race(member_id) for member_id in racer_ids))
    async with transaction(runtime.sessions) as session:
        campaign = await check_counters(session, campaign_id)
        rows = (
            await session.exec(
                select(Signup)
                .where(Signup.campaign_id == campaign_id, Signup.member_id.in_(racer_ids))
                .order_by(Signup.position)
            )
        ).all()
        statuses = [s.status for s in rows]
        assert statuses == [SignupStatus.CONFIRMED] * 10 + [SignupStatus.WAITLISTED] * 190
        assert [s.position for s in rows] == list(range(41, 241))
        assert (campaign.confirmed_seats, campaign.waitlisted_people) == (50, 190)
        last = rows[-1]
        assert await campaigns.waitlist_rank(session, last) == 190
        full = await deliveries(session, f"campaign:{campaign_id}:milestone")
        assert [d.dedupe_key.split(":")[3] for d in full].count("100") == 1


async def test_concurrent_cancellations_and_sign_ups_keep_the_counts_right(runtime, clock):
    async with transaction(runtime.sessions) as session:
        _, _, campaign = await setup(session, clock, capacity=30, max_guests=3)
        crowd = await people(session, clock, 80, start=30_000)
        chooser = random.Random(4)
        guests = {p.id: chooser.choice([0, 0, 0, 1, 2, 3]) for p in crowd}
        for person in crowd[:50]:
            await sign_up(session, runtime, campaign, person, guests=guests[person.id])
        campaign_id, ids = campaign.id, [p.id for p in crowd]

    async def act(member_id: int, leave: bool) -> None:
        async with transaction(runtime.sessions) as session:
            member = await session.get(Member, member_id)
            action = campaigns.cancel_signup if leave else campaigns.sign_up
            extra = {} if leave else {"guests": guests[member_id]}
            await action(
                session,
                campaign_id=campaign_id,
                member=member,
                now=runtime.now(),
                renderer=runtime.renderer,
                **extra,
            )

    work = [act(i, True) for i in ids[:25]] + [act(i, False) for i in ids[50:]]
    random.Random(7).shuffle(work)
    await asyncio.gather(*work)
    async with transaction(runtime.sessions) as session:
        campaign = await check_counters(session, campaign_id)
        assert campaign.confirmed_people + campaign.waitlisted_people == 55


# --- questions ----------------------------------------------------------------------------------


async def test_answers_are_checked_and_stored(session, runtime, clock):
    _, _, campaign = await setup(
        session, clock, questions=["티셔츠 사이즈? S / M / L", "이름표에 쓸 이름?"]
    )
    (seojun,) = await people(session, clock, 1)
    outcome = await sign_up(session, runtime, campaign, seojun)
    assert campaigns.first_unanswered(campaign, outcome.signup) == 0
    with pytest.raises(campaigns.InvalidCampaign):
        await campaigns.answer_question(
            session, campaign_id=campaign.id, member=seojun, index=0, text="XXL"
        )
    first = await campaigns.answer_question(
        session, campaign_id=campaign.id, member=seojun, index=0, text="m"
    )  # typed instead of tapped: the matching choice
    assert first.signup.answers == {"0": "M"} and first.next_index == 1
    with pytest.raises(campaigns.AnswerTooLong) as caught:
        await campaigns.answer_question(
            session, campaign_id=campaign.id, member=seojun, index=1, text="가" * 201
        )
    assert (caught.value.params["limit"], caught.value.params["length"]) == (200, 201)
    done = await campaigns.answer_question(
        session, campaign_id=campaign.id, member=seojun, index=1, text="  서준  "
    )
    assert done.signup.answers == {"0": "M", "1": "서준"} and done.next_index is None
    (stranger,) = await people(session, clock, 1, start=60_000)
    with pytest.raises(campaigns.NotSignedUp):
        await campaigns.answer_question(
            session, campaign_id=campaign.id, member=stranger, index=0, choice=0
        )


# --- networks and co-hosts ----------------------------------------------------------------------


async def network_campaign(session, clock):
    now = clock.now()
    minji = await make_member(session, MINJI, "민지", now=now)
    network = await make_org(
        session, minji, name="서울기후연대", slug="seoul-net", kind=OrgKind.NETWORK, now=now
    )
    saesol = await make_org(session, minji, name="새솔마을", slug="saesol", now=now)
    haneul = await make_org(session, None, name="하늘마을", slug="haneul", now=now)
    from bot.services import organizations

    for group in (saesol, haneul):
        await organizations.add_to_network(
            session, actor=minji, network=network, group=group, is_bot_admin=True, now=now
        )
    campaign = await campaigns.create_campaign(
        session,
        org=network,
        creator=minji,
        draft=CampaignDraft(title="기후 행진", capacity=3, questions=[]),
        open_now=True,
        now=now,
    )
    return minji, network, saesol, haneul, campaign


async def test_a_network_campaign_counts_each_sign_up_for_the_persons_group(
    session, runtime, clock
):
    minji, _, saesol, haneul, campaign = await network_campaign(session, clock)
    now = clock.now()
    a, b, c, d = await people(session, clock, 4)
    await add_member(session, saesol, a, now=now)
    await add_member(session, saesol, b, now=now)
    await add_member(session, haneul, c, now=now)
    for person in (a, b, c, d):
        await sign_up(session, runtime, campaign, person)
    summary = await campaigns.overview(session, campaign_id=campaign.id, member=minji, now=now)
    counts = {h.name: (h.confirmed_people, h.waitlisted) for h in summary.hosts}
    assert counts == {"새솔마을": (2, 0), "하늘마을": (1, 0), "": (0, 1)}
    # 하늘마을's organiser sees the campaign as co-host, only with their own people.
    jiho = await make_member(session, JIHO, "지호", now=now)
    await add_member(session, haneul, jiho, role=Role.ORGANIZER, now=now)
    page = await campaigns.signups_page(session, campaign_id=campaign.id, member=jiho, now=now)
    assert page.overview.access.host.name == "하늘마을"
    assert [row.signup.member_id for row in page.rows] == [c.id]
    with pytest.raises(NotOrganizer):  # co-hosts see, but do not close
        await campaigns.close_campaign(session, campaign_id=campaign.id, actor=jiho, now=now)
    items, total = await campaigns.org_campaigns(session, haneul)
    assert total == 1 and items[0] == (campaign, True)


# --- exports ------------------------------------------------------------------------------------


async def test_exports_open_in_a_spreadsheet_with_korean_intact(session, runtime, clock):
    minji, _, campaign = await setup(
        session, clock, capacity=1, questions=["티셔츠 사이즈? S / M / L", "하고 싶은 말?"]
    )
    seojun = await make_member(session, SEOJUN, "서준", now=clock.now())
    haeun = await make_member(session, HAEUN, "=하은", now=clock.now())  # a formula-like name
    await sign_up(session, runtime, campaign, seojun)
    await campaigns.answer_question(
        session, campaign_id=campaign.id, member=seojun, index=0, choice=2
    )
    await campaigns.answer_question(
        session, campaign_id=campaign.id, member=seojun, index=1, text='한글, 쉼표 "따옴표"'
    )
    await sign_up(session, runtime, campaign, haeun)
    export = await campaigns.export_signups(
        session, campaign_id=campaign.id, member=minji, fmt="csv", labels=LABELS, now=clock.now()
    )
    assert export.filename == f"campaign-{campaign.id}-signups-20261201.csv"
    assert export.data.startswith("\ufeff".encode())
    rows = list(csv.reader(io.StringIO(export.data.decode("utf-8-sig"))))
    assert rows[0][:3] == ["number", "name", "status"] and rows[0][-2:] == [
        "티셔츠 사이즈?",
        "하고 싶은 말?",
    ]
    assert rows[1][:5] == ["1", "서준", "확정", "", "0"]
    assert rows[1][-2:] == ["L", '한글, 쉼표 "따옴표"']
    assert rows[1][6] == "2026-12-01 09:00"  # signed-up time in Seoul time
    assert rows[2][:4] == ["2", "'=하은", "대기", "1"]
    export = await campaigns.export_signups(
        session, campaign_id=campaign.id, member=minji, fmt="xlsx", labels=LABELS, now=clock.now()
    )
    sheet = load_workbook(io.BytesIO(export.data)).active
    values = [[cell.value for cell in row] for row in sheet.iter_rows()]
    assert values[1][1] == "서준" and values[1][-1] == '한글, 쉼표 "따옴표"'
    assert values[1][6] == dt.datetime(2026, 12, 1, 9, 0)


# --- announcements ------------------------------------------------------------------------------


async def test_a_message_to_the_sign_ups_skips_muted_and_unreachable_people(
    session, runtime, clock
):
    minji, _, campaign = await setup(session, clock, capacity=3)
    crowd = await people(session, clock, 5)
    for person in crowd:
        await sign_up(session, runtime, campaign, person)
    crowd[0].muted = True
    crowd[1].unreachable_since = clock.now()
    session.add_all(crowd[:2])
    sent = await campaigns.announce(
        session,
        campaign_id=campaign.id,
        actor=minji,
        text="내일 우산을 챙겨 오세요 <b>꼭</b>",
        include_waitlisted=False,
        now=clock.now(),  # 09:00 in Seoul: not quiet hours
        renderer=runtime.renderer,
        quiet_hours=("22:00", "08:00"),
    )
    assert (sent.queued, sent.skipped, sent.not_before) == (1, 2, None)
    rows = await deliveries(session, f"campaign:{campaign.id}:notice:1")
    assert [r.member_id for r in rows] == [crowd[2].id]
    assert "우산" in rows[0].payload["text"] and "&lt;b&gt;꼭" in rows[0].payload["text"]
    night = clock.now() + dt.timedelta(hours=14)  # 23:00 in Seoul
    sent = await campaigns.announce(
        session,
        campaign_id=campaign.id,
        actor=minji,
        text="두 번째 안내",
        include_waitlisted=True,
        now=night,
        renderer=runtime.renderer,
        quiet_hours=("22:00", "08:00"),
    )
    assert sent.queued == 3 and seoul(sent.not_before) == "2026-12-02 08:00"
    rows = await deliveries(session, f"campaign:{campaign.id}:notice:2")
    assert {r.next_attempt_at for r in rows} == {sent.not_before}
    with pytest.raises(campaigns.InvalidCampaign) as caught:
        campaigns.clean_notice("가" * 3001)
    assert caught.value.params["limit"] == 3000


def test_quiet_hours_across_midnight():
    utc = dt.UTC
    at = dt.datetime(2026, 12, 1, 13, 30, tzinfo=utc)  # 22:30 in Seoul
    assert seoul(campaigns.quiet_until(at, SEOUL, ("22:00", "08:00"))) == "2026-12-02 08:00"
    at = dt.datetime(2026, 12, 1, 21, 0, tzinfo=utc)  # 06:00 the next morning
    assert seoul(campaigns.quiet_until(at, SEOUL, ("22:00", "08:00"))) == "2026-12-02 08:00"
    assert campaigns.quiet_until(at, SEOUL, ("01:00", "05:00")) is None


# --- jobs: the deadline and the survey ----------------------------------------------------------


async def test_opening_schedules_the_deadline_and_the_survey(session, runtime, clock):
    _, _, campaign = await setup(
        session,
        clock,
        deadline=clock.now() + dt.timedelta(days=17),
        survey_after_minutes=120,
    )
    deadline = await jobs.by_key(session, f"campaign-{campaign.id}-deadline")
    survey = await jobs.by_key(session, f"campaign-{campaign.id}-survey")
    assert deadline.due_at == campaign.deadline and deadline.status == JobStatus.PENDING
    assert survey.due_at == campaign.starts_at + dt.timedelta(hours=2)


async def test_the_survey_goes_to_everyone_confirmed_and_results_add_up(session, runtime, clock):
    minji, _, campaign = await setup(session, clock, capacity=3, survey_after_minutes=120)
    crowd = await people(session, clock, 4)
    for person in crowd:
        await sign_up(session, runtime, campaign, person)
    queued = await campaigns.send_survey(
        session, campaign_id=campaign.id, now=clock.now(), renderer=runtime.renderer
    )
    again = await campaigns.send_survey(  # a job run twice sends nothing twice
        session, campaign_id=campaign.id, now=clock.now(), renderer=runtime.renderer
    )
    assert (queued, again) == (3, 0)
    rows = await deliveries(session, f"campaign:{campaign.id}:survey")
    assert [r.member_id for r in rows] == [p.id for p in crowd[:3]]
    for person, rating in zip(crowd[:3], (5, 4, 4), strict=True):
        await campaigns.rate(
            session, campaign_id=campaign.id, member=person, rating=rating, now=clock.now()
        )
    await campaigns.comment(
        session, campaign_id=campaign.id, member=crowd[0], text="정말 좋았어요", now=clock.now()
    )
    with pytest.raises(campaigns.NotAttendee):  # the waitlisted person did not come
        await campaigns.rate(
            session, campaign_id=campaign.id, member=crowd[3], rating=1, now=clock.now()
        )
    with pytest.raises(campaigns.InvalidCampaign):
        await campaigns.rate(
            session, campaign_id=campaign.id, member=crowd[0], rating=9, now=clock.now()
        )
    with pytest.raises(campaigns.AnswerTooLong):
        await campaigns.comment(
            session, campaign_id=campaign.id, member=crowd[1], text="가" * 1001, now=clock.now()
        )
    results = await campaigns.survey_results(
        session, campaign_id=campaign.id, member=minji, now=clock.now()
    )
    assert results.count == 3 and round(results.average, 2) == 4.33
    assert results.distribution == {1: 0, 2: 0, 3: 0, 4: 2, 5: 1}
    assert [c.comment for c in results.comments] == ["정말 좋았어요"]
    export = await campaigns.export_survey(
        session, campaign_id=campaign.id, member=minji, fmt="csv", labels=LABELS, now=clock.now()
    )
    lines = export.data.decode("utf-8-sig").splitlines()
    assert lines[0] == "점수,의견,시각" and lines[1].startswith("5,정말 좋았어요,")


# --- audiences, /me and privacy -----------------------------------------------------------------


async def test_audiences_and_my_sign_ups(session, runtime, clock):
    _, org, campaign = await setup(session, clock, capacity=1)
    a, b = await people(session, clock, 2)
    await sign_up(session, runtime, campaign, a)
    await sign_up(session, runtime, campaign, b)
    confirmed = (await session.exec(campaigns.audience_member_ids(campaign.id, "confirmed"))).all()
    waiting = (await session.exec(campaigns.audience_member_ids(campaign.id, "waitlisted"))).all()
    assert (list(confirmed), list(waiting)) == ([a.id], [b.id])
    assert [c.id for c in await campaigns.announceable(session, org)] == [campaign.id]
    mine = await campaigns.my_signups(session, b, now=clock.now())
    assert [(m.campaign.id, m.rank) for m in mine] == [(campaign.id, 1)]
    later = campaign.starts_at + dt.timedelta(days=2)
    assert await campaigns.my_signups(session, b, now=later) == []


async def test_forget_erases_answers_and_comments_but_keeps_counts(session, runtime, clock):
    _, _, campaign = await setup(session, clock, capacity=1, questions=["하고 싶은 말?"])
    seojun = await make_member(session, SEOJUN, "서준", now=clock.now())
    haeun = await make_member(session, HAEUN, "하은", now=clock.now())
    await sign_up(session, runtime, campaign, seojun)
    await sign_up(session, runtime, campaign, haeun)
    for person in (seojun, haeun):
        await campaigns.answer_question(
            session, campaign_id=campaign.id, member=person, index=0, text="비밀 이야기"
        )
    await campaigns.rate(
        session, campaign_id=campaign.id, member=seojun, rating=5, now=clock.now()
    )
    await campaigns.comment(
        session, campaign_id=campaign.id, member=seojun, text="개인적인 의견", now=clock.now()
    )
    hooks = [privacy.PrivacyHook("campaigns", campaigns.export_member, campaigns.erase_member)]
    document = await privacy.export_member_data(session, seojun, hooks=hooks, now=clock.now())
    assert document["campaigns"]["signups"][0]["answers"] == {"하고 싶은 말?": "비밀 이야기"}
    assert document["campaigns"]["survey_responses"][0]["comment"] == "개인적인 의견"
    for person in (seojun, haeun):
        await privacy.forget_member(session, person, hooks=hooks, now=clock.now())
    await session.flush()
    signups = (await session.exec(select(Signup).order_by(Signup.id))).all()
    assert [s.answers for s in signups] == [{}, {}]
    # The confirmed seat stays counted; the waiting place was given up.
    assert [s.status for s in signups] == [SignupStatus.CONFIRMED, SignupStatus.CANCELLED]
    response = (await session.exec(select(SurveyResponse))).one()
    assert (response.rating, response.comment, response.member_id) == (5, "", None)
    campaign = await check_counters(session, campaign.id)
    assert (campaign.confirmed_people, campaign.waitlisted_people) == (1, 0)
    count = (await session.exec(select(sa.func.count()).select_from(ScheduledJob))).one()
    assert count >= 0


async def test_editing_moves_the_scheduled_jobs_and_fills_new_places(session, runtime, clock):
    minji, _, campaign = await setup(session, clock, capacity=1, survey_after_minutes=60)
    a, b, c = await people(session, clock, 3)
    for person in (a, b, c):
        await sign_up(session, runtime, campaign, person)
    edit = await campaigns.edit_campaign(
        session,
        campaign_id=campaign.id,
        actor=minji,
        text="정원 없음 | 일시 12월 20일 14:00 | 마감 12월 19일 | 제목 송년 상영회",
        now=clock.now(),
        renderer=runtime.renderer,
    )
    assert (edit.promoted, edit.changed) == (2, ["capacity", "when", "deadline", "title"])
    assert campaign.title == "송년 상영회" and campaign.capacity is None
    deadline = await jobs.by_key(session, f"campaign-{campaign.id}-deadline")
    survey = await jobs.by_key(session, f"campaign-{campaign.id}-survey")
    assert seoul(deadline.due_at) == "2026-12-19 23:59"
    assert seoul(survey.due_at) == "2026-12-20 15:00"
    await check_counters(session, campaign.id)
    with pytest.raises(campaigns.InvalidCampaign) as caught:
        await campaigns.edit_campaign(
            session,
            campaign_id=campaign.id,
            actor=minji,
            text="정원 2",
            now=clock.now(),
            renderer=runtime.renderer,
        )
    assert caught.value.params == {"field": "capacity", "reason": "below_confirmed", "limit": 3}


async def test_a_survey_due_at_night_waits_for_the_morning(session, runtime, clock):
    _, _, campaign = await setup(session, clock, capacity=3, survey_after_minutes=120)
    (person,) = await people(session, clock, 1)
    await sign_up(session, runtime, campaign, person)
    night = clock.now() + dt.timedelta(hours=14)  # 23:00 in Seoul
    queued = await campaigns.send_survey(
        session,
        campaign_id=campaign.id,
        now=night,
        renderer=runtime.renderer,
        quiet_hours=("22:00", "08:00"),
    )
    (row,) = await deliveries(session, f"campaign:{campaign.id}:survey")
    assert queued == 1 and seoul(row.next_attempt_at) == "2026-12-02 08:00"


async def test_the_card_and_the_lists_stay_within_telegrams_limit(session, runtime, clock):
    from bot.render import TELEGRAM_TEXT_LIMIT, visible_length

    minji, _, campaign = await setup(
        session,
        clock,
        capacity=10_000,
        max_guests=5,
        questions=[f"{'질문' * 95}? " + " / ".join("가" * 29 + str(i) for i in range(8))] * 5,
    )
    campaign.title = "가" * campaigns.MAX_TITLE
    campaign.description = "나" * campaigns.MAX_DESCRIPTION
    campaign.place = "다" * campaigns.MAX_PLACE
    crowd = await people(session, clock, 16)
    for person in crowd:
        person.display_name = "라" * 64
        await sign_up(session, runtime, campaign, person, guests=5)
        for index in range(5):
            await campaigns.answer_question(
                session, campaign_id=campaign.id, member=person, index=index, choice=7
            )
    campaign.confirmed_seats, campaign.waitlisted_people = 10_000, 9_999
    view = await campaigns.card_view(session, campaign.id, now=clock.now(), member=crowd[-1])
    for language in ("ko", "en"):
        for personal in (True, False):
            card = runtime.renderer.render(
                "campaigns/card.html", language, view=view, personal=personal
            )
            assert visible_length(card.text) < TELEGRAM_TEXT_LIMIT
        page = await campaigns.signups_page(
            session, campaign_id=campaign.id, member=minji, now=clock.now()
        )
        listing = runtime.renderer.render(
            "campaigns/signups.html", language, page=page, page_size=15
        )
        assert len(page.rows) == 15 and visible_length(listing.text) < TELEGRAM_TEXT_LIMIT

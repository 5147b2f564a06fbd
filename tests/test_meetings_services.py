"""Meetings over the real database (SQLite, and PostgreSQL when configured): occurrences,
answers, reminders exactly once (also with two instances), moves, check-in, minutes, privacy."""

from __future__ import annotations

import asyncio
import csv
import datetime as dt
import io
from collections import Counter
from dataclasses import dataclass

import pytest
import sqlalchemy as sa

from bot.app import build_runtime
from bot.db import transaction
from bot.scheduler import JobRunner
from bot.services import meetings, privacy, recurrence
from bot.services.errors import NotOrganizer
from handlers import meetings as meeting_handlers
from models import (
    Answer,
    CheckinMethod,
    Delivery,
    JobStatus,
    Meeting,
    MeetingAttendance,
    MeetingOccurrence,
    MeetingRsvp,
    Member,
    Organization,
    ReminderAudience,
    ScheduledJob,
)
from tests.factories import MINJI, add_member, make_member, make_org

SEOUL = "Asia/Seoul"
FIRST = recurrence.from_local(dt.datetime(2026, 12, 7, 19, 30), SEOUL)  # Monday, 10:30 UTC
NAMES = ["서준", "하은", "지호", "도윤", "수아"]


@dataclass
class World:
    """An organisation with its admin (민지) and five members."""

    org: Organization
    minji: Member
    people: dict[str, Member]


def install_jobs(runtime) -> None:
    """The meetings feature's job handlers, as handlers.meetings.register installs them."""
    jobs = runtime.features.jobs
    jobs.setdefault(meetings.REMIND_JOB, meeting_handlers.run_reminder)
    jobs.setdefault(meetings.EXTEND_JOB, meeting_handlers.run_extension)
    jobs.setdefault(meetings.CHECKIN_CLOSE_JOB, meeting_handlers.run_checkin_close)


async def make_world(runtime, clock, names=NAMES) -> World:
    install_jobs(runtime)
    now = clock.now()
    async with transaction(runtime.sessions) as session:
        minji = await make_member(session, MINJI, "민지", now=now)
        org = await make_org(session, minji, now=now)
        people = {}
        for index, name in enumerate(names):
            person = await make_member(session, 5000 + index, name, now=now)
            await add_member(session, org, person, now=now)
            people[name] = person
    return World(org, minji, people)


async def create(runtime, clock, world, *, repeat="biweekly", start=FIRST, **changes) -> Meeting:
    draft = meetings.MeetingDraft(
        title=changes.pop("title", "운영위원회"),
        starts_at=start,
        duration_minutes=120,
        place="마을회관 2층",
        repeat=repeat,
        **changes,
    )
    async with transaction(runtime.sessions) as session:
        return await meetings.create_meeting(
            session,
            actor=world.minji,
            org=world.org,
            draft=draft,
            reminder_minutes=[1440, 60],
            now=clock.now(),
            ahead=4,
        )


async def occurrences(runtime, meeting_id) -> list[MeetingOccurrence]:
    async with transaction(runtime.sessions) as session:
        rows = await session.exec(
            sa.select(MeetingOccurrence)
            .where(MeetingOccurrence.meeting_id == meeting_id)
            .order_by(MeetingOccurrence.starts_at)
        )
        return list(rows.scalars().all())


async def answer(runtime, clock, member, occurrence, value: Answer) -> None:
    async with transaction(runtime.sessions) as session:
        await meetings.rsvp(
            session, member=member, occurrence_id=occurrence.id, answer=value, now=clock.now()
        )


async def open_checkin(runtime, world, occurrence, at: dt.datetime):
    async with transaction(runtime.sessions) as session:
        return await meetings.open_checkin(
            session,
            actor=world.minji,
            occurrence_id=occurrence.id,
            minutes=30,
            renderer=runtime.renderer,
            now=at,
        )


async def check_in(runtime, member, occurrence, at: dt.datetime) -> None:
    async with transaction(runtime.sessions) as session:
        await meetings.check_in(session, member=member, occurrence_id=occurrence.id, now=at)


async def deliveries(runtime, prefix: str = "") -> list[Delivery]:
    async with transaction(runtime.sessions) as session:
        rows = await session.exec(
            sa.select(Delivery).where(Delivery.batch.startswith(prefix)).order_by(Delivery.id)
        )
        return list(rows.scalars().all())


async def pending_jobs(runtime) -> dict[str, dt.datetime]:
    async with transaction(runtime.sessions) as session:
        rows = await session.exec(
            sa.select(ScheduledJob.key, ScheduledJob.due_at).where(
                ScheduledJob.status == JobStatus.PENDING
            )
        )
        return dict(rows.all())


async def test_a_series_keeps_a_few_occurrences_ahead_and_tops_up_as_they_pass(runtime, clock):
    world = await make_world(runtime, clock)
    meeting = await create(runtime, clock, world)
    rows = await occurrences(runtime, meeting.id)
    local = [recurrence.to_local(row.starts_at, SEOUL) for row in rows]
    assert [(d.month, d.day, d.hour, d.minute) for d in local] == [
        (12, 7, 19, 30),
        (12, 21, 19, 30),
        (1, 4, 19, 30),
        (1, 18, 19, 30),
    ]
    pending = await pending_jobs(runtime)
    assert pending["meeting-1-occ-20261207T1030Z-remind-1440"] == FIRST - dt.timedelta(days=1)
    assert pending["meeting-1-occ-20261207T1030Z-remind-60"] == FIRST - dt.timedelta(hours=1)
    assert pending["meeting-1-extend-20261207T1030Z"] == FIRST
    assert len(pending) == 4 * 2 + 1  # bounded: the next four occurrences, not the series

    clock.set(FIRST + dt.timedelta(minutes=1))
    assert await JobRunner(runtime).run_due() == 3  # two reminders (nobody to tell) and extend
    rows = await occurrences(runtime, meeting.id)
    assert len(rows) == 5
    assert recurrence.to_local(rows[-1].starts_at, SEOUL).date() == dt.date(2027, 2, 1)
    pending = await pending_jobs(runtime)
    assert pending["meeting-1-extend-20261221T1030Z"] == rows[1].starts_at
    assert len(pending) == 4 * 2 + 1


async def test_answers_are_counted_per_occurrence_and_a_new_answer_replaces_the_old(
    runtime, clock
):
    world = await make_world(runtime, clock)
    meeting = await create(runtime, clock, world)
    first, second, *_ = await occurrences(runtime, meeting.id)
    seojun, haeun = world.people["서준"], world.people["하은"]
    await answer(runtime, clock, seojun, first, Answer.YES)
    await answer(runtime, clock, haeun, first, Answer.MAYBE)
    await answer(runtime, clock, seojun, second, Answer.YES)
    await answer(runtime, clock, seojun, second, Answer.NO)  # changed their mind
    async with transaction(runtime.sessions) as session:
        assert await meetings.answer_counts(session, first.id) == {"yes": 1, "no": 0, "maybe": 1}
        assert await meetings.answer_counts(session, second.id) == {"yes": 0, "no": 1, "maybe": 0}
        rows = (await session.exec(sa.select(sa.func.count()).select_from(MeetingRsvp))).one()
    assert rows == (3,)


async def test_reminders_reach_their_audience_and_muted_members_who_said_yes(runtime, clock):
    world = await make_world(runtime, clock)
    meeting = await create(runtime, clock, world, repeat="")
    (occurrence,) = await occurrences(runtime, meeting.id)
    people = world.people
    await answer(runtime, clock, people["서준"], occurrence, Answer.YES)
    await answer(runtime, clock, people["하은"], occurrence, Answer.MAYBE)
    await answer(runtime, clock, people["지호"], occurrence, Answer.NO)
    await answer(runtime, clock, people["수아"], occurrence, Answer.YES)
    async with transaction(runtime.sessions) as session:
        for name in ("서준", "하은"):  # both muted announcements
            member = await session.get(Member, people[name].id)
            member.muted = True
        suah = await session.get(Member, people["수아"].id)
        suah.unreachable_since = clock.now()  # blocked the bot
    clock.set(FIRST - dt.timedelta(days=1))
    async with transaction(runtime.sessions) as session:
        sent = await meetings.send_reminder(
            session,
            occurrence_id=occurrence.id,
            minutes=1440,
            renderer=runtime.renderer,
            now=clock.now(),
        )
    assert sent == 1
    (delivery,) = await deliveries(runtime, "mtg-remind")
    assert delivery.member_id == people["서준"].id  # muted, but said yes
    assert "1일 뒤에 시작합니다" in delivery.payload["text"]
    assert "내 응답: 참석" in delivery.payload["text"]
    # Running the same reminder again queues nobody twice.
    async with transaction(runtime.sessions) as session:
        again = await meetings.send_reminder(
            session,
            occurrence_id=occurrence.id,
            minutes=1440,
            renderer=runtime.renderer,
            now=clock.now(),
        )
    assert again == 0
    # To the whole organisation: everyone reachable except "no", muted ones only if yes.
    async with transaction(runtime.sessions) as session:
        await meetings.set_reminders(
            session,
            actor=world.minji,
            meeting_id=meeting.id,
            audience=ReminderAudience.EVERYONE,
            now=clock.now(),
        )
        await meetings.send_reminder(
            session,
            occurrence_id=occurrence.id,
            minutes=60,
            renderer=runtime.renderer,
            now=FIRST - dt.timedelta(hours=1),
        )
    reminded = {d.member_id for d in await deliveries(runtime, f"mtg-remind:{occurrence.id}:60")}
    assert reminded == {world.minji.id, people["서준"].id, people["도윤"].id}


async def test_a_late_reminder_says_the_real_time_left_and_one_after_the_start_is_dropped(
    runtime, clock
):
    world = await make_world(runtime, clock)
    meeting = await create(runtime, clock, world, repeat="")
    (occurrence,) = await occurrences(runtime, meeting.id)
    await answer(runtime, clock, world.people["서준"], occurrence, Answer.YES)

    async def remind(minutes: int, at: dt.datetime) -> int:
        async with transaction(runtime.sessions) as session:
            return await meetings.send_reminder(
                session,
                occurrence_id=occurrence.id,
                minutes=minutes,
                renderer=runtime.renderer,
                now=at,
            )

    # Down for a while: the day-before reminder is overdue together with the hour-before one;
    # only the latest goes out, saying how long is really left.
    assert await remind(1440, FIRST - dt.timedelta(minutes=35)) == 0
    assert await remind(60, FIRST - dt.timedelta(minutes=35)) == 1
    (delivery,) = await deliveries(runtime, "mtg-remind")
    assert "35분 뒤에 시작합니다" in delivery.payload["text"]
    assert await remind(60, FIRST + dt.timedelta(minutes=1)) == 0  # the meeting has begun


async def test_two_instances_claim_the_same_due_reminders_and_each_member_gets_one(
    runtime, clock, config
):
    world = await make_world(runtime, clock, names=[f"회원{n}" for n in range(40)])
    series = [
        await create(runtime, clock, world, title=f"모임 {n}", start=FIRST + dt.timedelta(hours=n))
        for n in range(3)
    ]
    for meeting in series:
        first = (await occurrences(runtime, meeting.id))[0]
        for member in world.people.values():
            await answer(runtime, clock, member, first, Answer.YES)
    other = build_runtime(config, clock)  # a second instance over the same database
    install_jobs(other)
    try:
        clock.set(FIRST + dt.timedelta(hours=2) - dt.timedelta(days=1))  # three reminders due
        ran = await asyncio.gather(JobRunner(runtime).run_due(), JobRunner(other).run_due())
    finally:
        await other.engine.dispose()
    assert sum(ran) == 3
    rows = await deliveries(runtime, "mtg-remind")
    per_member = Counter((d.batch.split(":")[1], d.member_id) for d in rows)
    assert len(per_member) == 3 * 40
    assert set(per_member.values()) == {1}


async def test_a_reminder_run_that_dies_before_committing_is_run_again_in_full(runtime, clock):
    world = await make_world(runtime, clock)
    meeting = await create(runtime, clock, world, repeat="")
    (occurrence,) = await occurrences(runtime, meeting.id)
    for member in world.people.values():
        await answer(runtime, clock, member, occurrence, Answer.YES)
    crashed = []

    async def dies_after_queueing(job_context, job):
        await meeting_handlers.run_reminder(job_context, job)
        if not crashed:
            crashed.append(job.key)
            raise RuntimeError("process killed")  # nothing of this run may remain

    runtime.features.jobs[meetings.REMIND_JOB] = dies_after_queueing
    clock.set(FIRST - dt.timedelta(days=1))
    await JobRunner(runtime).run_due()
    assert crashed and await deliveries(runtime, "mtg-remind") == []
    clock.advance(minutes=1)  # the failed job is retried after a short backoff
    await JobRunner(runtime).run_due()
    rows = await deliveries(runtime, "mtg-remind")
    assert sorted(d.member_id for d in rows) == sorted(m.id for m in world.people.values())


async def test_reminder_offsets_must_fit_before_the_meeting(runtime, clock):
    world = await make_world(runtime, clock)
    soon = clock.now() + dt.timedelta(hours=3)
    one_off = await create(runtime, clock, world, repeat="", start=soon)
    async with transaction(runtime.sessions) as session:
        with pytest.raises(meetings.MeetingInvalid) as raised:
            await meetings.set_reminders(
                session, actor=world.minji, meeting_id=one_off.id, minutes=[1440], now=clock.now()
            )
    assert raised.value.params | {"minutes": 1440, "gap": 180} == raised.value.params
    pending = await pending_jobs(runtime)
    # Created 3 hours ahead: the day-before reminder was left out, the hour-before one is set.
    assert sorted(k for k in pending if k.startswith(f"meeting-{one_off.id}-occ-")) == [
        f"meeting-{one_off.id}-occ-{recurrence.token(soon)}-remind-60"
    ]
    weekly = await create(runtime, clock, world, repeat="weekly")
    async with transaction(runtime.sessions) as session:
        with pytest.raises(meetings.MeetingInvalid):
            await meetings.set_reminders(
                session, actor=world.minji, meeting_id=weekly.id, minutes=[10080], now=clock.now()
            )
        with pytest.raises(NotOrganizer):
            await meetings.set_reminders(
                session,
                actor=world.people["서준"],
                meeting_id=weekly.id,
                minutes=[30],
                now=clock.now(),
            )
    async with transaction(runtime.sessions) as session:
        changed = await meetings.set_reminders(
            session,
            actor=world.minji,
            meeting_id=weekly.id,
            minutes=[4320, 30],
            now=clock.now(),
        )
    assert changed.reminder_minutes == [4320, 30]
    keys = [k for k in await pending_jobs(runtime) if k.startswith(f"meeting-{weekly.id}-occ")]
    assert sorted({k.rsplit("-", 1)[1] for k in keys}) == ["30", "4320"]


async def test_moving_one_date_tells_yes_and_maybe_and_moves_its_reminders(runtime, clock):
    world = await make_world(runtime, clock)
    meeting = await create(runtime, clock, world)
    first, second, *_ = await occurrences(runtime, meeting.id)
    people = world.people
    await answer(runtime, clock, people["서준"], first, Answer.YES)
    await answer(runtime, clock, people["하은"], first, Answer.MAYBE)
    await answer(runtime, clock, people["지호"], first, Answer.NO)
    await answer(runtime, clock, people["도윤"], second, Answer.YES)
    new_start = FIRST + dt.timedelta(days=1, minutes=30)  # Tuesday 20:00
    async with transaction(runtime.sessions) as session:
        change = await meetings.move_occurrence(
            session,
            actor=world.minji,
            occurrence_id=first.id,
            new_start=new_start,
            renderer=runtime.renderer,
            now=clock.now(),
        )
    assert change.told == 2
    told = {d.member_id for d in await deliveries(runtime, f"mtg-{meeting.id}-")}
    assert told == {people["서준"].id, people["하은"].id}
    pending = await pending_jobs(runtime)
    assert pending[meetings.reminder_key(meeting.id, first.original_start, 60)] == (
        new_start - dt.timedelta(hours=1)
    )
    async with transaction(runtime.sessions) as session:
        change = await meetings.cancel_occurrence(
            session,
            actor=world.minji,
            occurrence_id=second.id,
            renderer=runtime.renderer,
            now=clock.now(),
        )
        with pytest.raises(meetings.OccurrenceCancelled):
            await meetings.rsvp(
                session,
                member=people["서준"],
                occurrence_id=second.id,
                answer=Answer.YES,
                now=clock.now(),
            )
    assert change.told == 1
    assert not [
        k for k in await pending_jobs(runtime) if recurrence.token(second.original_start) in k
    ]


async def test_moving_the_series_keeps_answers_with_their_dates(runtime, clock):
    world = await make_world(runtime, clock)
    meeting = await create(runtime, clock, world, repeat="weekly")
    rows = await occurrences(runtime, meeting.id)
    await answer(runtime, clock, world.people["서준"], rows[1], Answer.YES)
    for shift in (dt.timedelta(days=7), dt.timedelta(days=-6, minutes=-30)):
        async with transaction(runtime.sessions) as session:
            next_start = (await occurrences(runtime, meeting.id))[0].starts_at
            change = await meetings.move_series(
                session,
                actor=world.minji,
                meeting_id=meeting.id,
                new_start=next_start + shift,
                renderer=runtime.renderer,
                now=clock.now(),
                ahead=4,
            )
    # A week later, then back to Tuesday 19:00: every Tuesday from 8 December.
    moved = await occurrences(runtime, meeting.id)
    local = [recurrence.to_local(row.starts_at, SEOUL) for row in moved]
    assert [(d.month, d.day, d.hour) for d in local] == [
        (12, 8, 19),
        (12, 15, 19),
        (12, 22, 19),
        (12, 29, 19),
    ]
    assert [row.id for row in moved] == [row.id for row in rows]
    assert recurrence.describe(change.meeting.rrule).weekday == 1
    async with transaction(runtime.sessions) as session:
        kept = await meetings.answer_of(session, world.people["서준"].id, rows[1].id)
    assert kept == "yes"
    keys = sorted(k for k in await pending_jobs(runtime) if "-occ-" in k)
    assert keys[0] == "meeting-1-occ-20261208T1000Z-remind-1440"
    assert all("T1000Z" in key for key in keys)


async def test_check_in_by_code_or_button_only_while_open(runtime, clock):
    world = await make_world(runtime, clock)
    meeting = await create(runtime, clock, world, repeat="")
    (occurrence,) = await occurrences(runtime, meeting.id)
    seojun, haeun = world.people["서준"], world.people["하은"]

    with pytest.raises(meetings.CheckinWindow):
        await open_checkin(runtime, world, occurrence, FIRST - dt.timedelta(hours=3))
    opened, _, _ = await open_checkin(runtime, world, occurrence, FIRST - dt.timedelta(minutes=10))
    code = opened.checkin_code
    assert len(code) == 6 and code.isdigit()
    at = FIRST
    async with transaction(runtime.sessions) as session:
        *_, new = await meetings.check_in(
            session, member=seojun, code=code[:3] + " " + code[3:], method="code", now=at
        )
        *_, again = await meetings.check_in(
            session, member=seojun, occurrence_id=occurrence.id, now=at
        )
        *_, by_button = await meetings.check_in(
            session, member=haeun, occurrence_id=occurrence.id, now=at
        )
        with pytest.raises(meetings.WrongCheckinCode):
            await meetings.check_in(session, member=haeun, code="000000", now=at)
    assert (new, again, by_button) == (True, False, True)
    outsider = None
    async with transaction(runtime.sessions) as session:
        outsider = await make_member(session, 9999, "외부인", now=at)
    async with transaction(runtime.sessions) as session:
        with pytest.raises(meetings.NotOrgMember):
            await meetings.check_in(session, member=outsider, code=code, now=at)
    closes = FIRST + dt.timedelta(minutes=20)
    async with transaction(runtime.sessions) as session:
        with pytest.raises(meetings.CheckinClosed):
            await meetings.check_in(
                session, member=world.people["지호"], occurrence_id=occurrence.id, now=closes
            )
        meeting_id = await meetings.finish_checkin(
            session, occurrence_id=occurrence.id, renderer=runtime.renderer, now=closes
        )
        methods = (await session.exec(sa.select(MeetingAttendance.method))).scalars().all()
    assert meeting_id == meeting.id
    assert sorted(methods) == sorted([CheckinMethod.CODE, CheckinMethod.BUTTON])
    (notice,) = await deliveries(runtime, "mtg-checkin-closed")
    assert notice.member_id == world.minji.id and "출석: 2명" in notice.payload["text"]


async def test_minutes_reach_those_who_came_and_those_who_said_yes(runtime, clock):
    world = await make_world(runtime, clock)
    meeting = await create(runtime, clock, world, repeat="")
    (occurrence,) = await occurrences(runtime, meeting.id)
    people = world.people
    await answer(runtime, clock, people["서준"], occurrence, Answer.MAYBE)
    await answer(runtime, clock, people["하은"], occurrence, Answer.YES)
    await answer(runtime, clock, people["지호"], occurrence, Answer.NO)
    await open_checkin(runtime, world, occurrence, FIRST)
    await check_in(runtime, people["서준"], occurrence, FIRST)
    after = FIRST + dt.timedelta(hours=3)
    async with transaction(runtime.sessions) as session:
        with pytest.raises(meetings.MinutesTooEarly):
            await meetings.send_minutes(
                session,
                actor=world.minji,
                occurrence_id=occurrence.id,
                renderer=runtime.renderer,
                now=FIRST - dt.timedelta(hours=1),
                text="일찍",
            )
    async with transaction(runtime.sessions) as session:
        count = await meetings.send_minutes(
            session,
            actor=world.minji,
            occurrence_id=occurrence.id,
            renderer=runtime.renderer,
            now=after,
            file_id="BQACfile",
            filename="회의록.pdf",
        )
    assert count == 2
    rows = await deliveries(runtime, "mtg-minutes")
    assert {d.member_id for d in rows} == {people["서준"].id, people["하은"].id}
    assert {d.payload["method"] for d in rows} == {"send_document"}
    assert (
        rows[0].payload["file_id"] == "BQACfile"
        and "회의록: 운영위원회" in rows[0].payload["text"]
    )


async def test_forgetting_keeps_counts_but_not_the_person(runtime, clock):
    world = await make_world(runtime, clock)
    meeting = await create(runtime, clock, world)
    first, second, *_ = await occurrences(runtime, meeting.id)
    seojun = world.people["서준"]
    await answer(runtime, clock, seojun, first, Answer.YES)
    await answer(runtime, clock, seojun, second, Answer.MAYBE)
    await open_checkin(runtime, world, first, FIRST)
    await check_in(runtime, seojun, first, FIRST)
    later = FIRST + dt.timedelta(days=1)
    hook = privacy.PrivacyHook("meetings", meetings.export_member, meetings.erase_member)
    async with transaction(runtime.sessions) as session:
        member = await session.get(Member, seojun.id)
        exported = await privacy.export_member_data(session, member, hooks=[hook], now=later)
        await privacy.forget_member(session, member, hooks=[hook], now=later)
    mine = exported["meetings"]
    assert [a["answer"] for a in mine["answers"]] == ["yes", "maybe"]
    assert mine["attendance"][0]["method"] == "button"
    async with transaction(runtime.sessions) as session:
        assert await meetings.answer_counts(session, first.id) == {"yes": 1, "no": 0, "maybe": 0}
        assert await meetings.answer_counts(session, second.id) == {"yes": 0, "no": 0, "maybe": 0}
        assert await meetings.attendance_count(session, first.id) == 1
        linked = await session.exec(
            sa.select(sa.func.count())
            .select_from(MeetingRsvp)
            .where(MeetingRsvp.member_id == seojun.id)
        )
    assert linked.one() == (0,)


async def test_audiences_name_who_answered_what_for_the_next_date(runtime, clock):
    world = await make_world(runtime, clock)
    meeting = await create(runtime, clock, world)
    first, *_ = await occurrences(runtime, meeting.id)
    await answer(runtime, clock, world.people["서준"], first, Answer.YES)
    await answer(runtime, clock, world.people["하은"], first, Answer.MAYBE)
    async with transaction(runtime.sessions) as session:
        (item,) = await meetings.audience_items(session, world.org, now=clock.now())
        yes = (await session.exec(meetings.audience_member_ids(item.id, "yes"))).all()
        maybe = (await session.exec(meetings.audience_member_ids(item.id, "maybe"))).all()
    assert item.id == first.id and item.title == "운영위원회 (2026-12-07 19:30)"
    assert list(yes) == [world.people["서준"].id] and list(maybe) == [world.people["하은"].id]


async def test_the_attendance_sheet_lists_every_date_with_answers_and_check_ins(runtime, clock):
    world = await make_world(runtime, clock)
    meeting = await create(runtime, clock, world, repeat="")
    (occurrence,) = await occurrences(runtime, meeting.id)
    await answer(runtime, clock, world.people["서준"], occurrence, Answer.YES)
    await answer(runtime, clock, world.people["하은"], occurrence, Answer.NO)
    await open_checkin(runtime, world, occurrence, FIRST)
    await check_in(runtime, world.people["지호"], occurrence, FIRST)
    labels = dict(
        line.split("=", 1)
        for line in runtime.renderer.text("meetings/export_labels.html", "ko").splitlines()
    )
    headers = runtime.renderer.text("meetings/export_headers.html", "ko").splitlines()
    async with transaction(runtime.sessions) as session:
        _, data = await meetings.export_attendance(
            session,
            actor=world.minji,
            meeting_id=meeting.id,
            kind="csv",
            headers=headers,
            labels=labels,
            now=FIRST + dt.timedelta(hours=3),
        )
    rows = list(csv.reader(io.StringIO(data.decode("utf-8-sig"))))
    assert rows[0] == ["일시", "상태", "이름", "응답", "출석", "출석 시각", "출석 방법"]
    assert [row[2:5] for row in rows[1:]] == [
        ["지호", "아직 응답 안 함", "Y"],
        ["서준", "참석", "N"],
        ["하은", "불참", "N"],
    ]
    assert rows[1][0] == "2026-12-07 19:30" and rows[1][5] == "2026-12-07 19:30"

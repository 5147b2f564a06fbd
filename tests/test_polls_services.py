"""Polls' domain services over a real database (SQLite, and PostgreSQL when configured)."""

from __future__ import annotations

import asyncio
import datetime as dt

import pytest
import sqlalchemy as sa
from sqlmodel import select

import models
from bot.config import TiersConfig
from bot.db import transaction
from bot.services import jobs, organizations, polls, privacy
from bot.services.errors import InvalidInput, NotOrganizer, StaleButton
from models import (
    AuditLog,
    BallotKind,
    Eligibility,
    JobStatus,
    OrgKind,
    PollBallot,
    PollKind,
    PollVote,
    PollVoter,
    QuorumKind,
    Role,
    Tier,
    Weighting,
)
from tests.factories import HAEUN, JIHO, MINJI, SEOJUN, add_member, make_member, make_org

TIERS = TiersConfig(full_weight=2.0, supporter_weight=1.0)


async def setup(session, now):
    """민지 organises 새솔; 서준 is a full member, 하은 a supporter, 지호 registered only."""
    minji = await make_member(session, MINJI, "민지", now=now)
    org = await make_org(session, minji, now=now)
    seojun = await make_member(session, SEOJUN, "서준", now=now)
    haeun = await make_member(session, HAEUN, "하은", now=now)
    jiho = await make_member(session, JIHO, "지호", now=now)
    await add_member(session, org, seojun, tier=Tier.FULL, now=now)
    await add_member(session, org, haeun, tier=Tier.SUPPORTER, now=now)
    return org, minji, seojun, haeun, jiho


async def new_poll(session, org, creator, line: str, now):
    draft = polls.draft_from_line(line, now=now, timezone="Asia/Seoul")
    poll = await polls.create_poll(session, creator=creator, org=org, draft=draft, now=now)
    return await polls.load(session, poll.id)


async def vote(session, view, member, *positions, now):
    return await polls.cast_vote(
        session,
        poll_id=view.poll.id,
        member=member,
        positions=list(positions),
        tiers=TIERS,
        now=now,
    )


def test_one_line_grammar_reads_the_issue_example_and_settings(clock):
    now = clock.now()
    draft = polls.draft_from_line(
        "다음 모임 장소는? | 사무실 | 카페 | 온라인", now=now, timezone="Asia/Seoul"
    )
    assert draft.question == "다음 모임 장소는?"
    assert draft.options == ["사무실", "카페", "온라인"]
    assert (draft.kind, draft.ballot, draft.eligibility) == (
        PollKind.SINGLE,
        BallotKind.OPEN,
        Eligibility.ANYONE,
    )
    assert draft.results_live
    full = polls.draft_from_line(
        "회칙 개정안을 승인할까요? | 종류: 제안 | 투표: 비밀 | 자격: 정회원 | 가중치: 등급"
        " | 정족수: 50% | 마감: 12월 19일 18:00 | 알림: 1시간",
        now=now,
        timezone="Asia/Seoul",
    )
    assert full.kind == PollKind.PROPOSAL and full.options == []
    assert (full.ballot, full.eligibility, full.weighting) == (
        BallotKind.SECRET,
        Eligibility.FULL,
        Weighting.TIER,
    )
    assert (full.quorum_kind, full.quorum_value) == (QuorumKind.PERCENT, 50)
    assert full.closes_at == dt.datetime(2026, 12, 19, 9, 0, tzinfo=dt.UTC)
    assert full.nudge_minutes == 60 and not full.results_live  # secret: results after closing
    english = polls.draft_from_line(
        "Lunch? | Pizza | Bibimbap | Kimbap | kind: multiple 2 | quorum: 3 | results: after",
        now=now,
        timezone="Asia/Seoul",
    )
    assert (english.kind, english.max_choices, english.quorum_value) == (PollKind.MULTIPLE, 2, 3)
    # A colon inside an option is not a setting.
    timed = polls.draft_from_line("몇 시? | 오후 7:30 | 8:00", now=now, timezone="Asia/Seoul")
    assert timed.options == ["오후 7:30", "8:00"]


def test_settings_without_the_colon_are_read_as_settings_when_they_read_as_one(clock):
    """/new_campaign's labels need no colon; people write /new_poll's the same way."""
    now = clock.now()
    draft = polls.draft_from_line(
        "다음 모임 날짜는? | 토요일 | 일요일 | 자격 회원 | 마감 12월 19일 18:00 | 투표 비밀",
        now=now,
        timezone="Asia/Seoul",
    )
    assert draft.options == ["토요일", "일요일"]
    assert draft.eligibility == Eligibility.MEMBERS and draft.ballot == BallotKind.SECRET
    assert draft.closes_at == dt.datetime(2026, 12, 19, 9, 0, tzinfo=dt.UTC)
    # An option that only starts with a setting's word stays an option.
    options = polls.draft_from_line(
        "언제 정할까요? | 마감 후에 | 투표 안 함 | close to home", now=now, timezone="Asia/Seoul"
    )
    assert options.options == ["마감 후에", "투표 안 함", "close to home"]
    assert options.closes_at is None and options.ballot == BallotKind.OPEN
    # A time that has passed is refused, not turned into an option.
    with pytest.raises(InvalidInput) as caught:
        polls.draft_from_line(
            "지난 | a | b | 마감 2026-11-01 18:00", now=now, timezone="Asia/Seoul"
        )
    assert caught.value.params.get("reason") == "past"


@pytest.mark.parametrize(
    ("line", "field", "reason"),
    [
        ("질문만", "poll_options", "too_few"),
        ("중복? | 카페 | 카페", "poll_options", "duplicate"),
        ("많다 | " + " | ".join(str(n) for n in range(13)), "poll_options", "too_many"),
        ("제안 | 종류: 제안 | 찬성 | 반대", "poll_options", "proposal"),
        ("가중 | a | b | 가중치: 등급", "poll_weight", "needs_members"),
        ("알림 | a | b | 알림: 1시간", "poll_nudge", "no_close"),
        ("이상 | a | b | 투표: 몰라", "poll_setting", None),
        ("이상 | a | b | 정족수: 150%", "poll_quorum", None),
        ("너무 | a | b | 마감: 10분 | 알림: 1시간", None, None),
    ],
)
def test_one_line_grammar_refuses_what_it_cannot_use(clock, line, field, reason):
    with pytest.raises(InvalidInput) as caught:
        polls.draft_from_line(line, now=clock.now(), timezone="Asia/Seoul")
    if field:
        assert caught.value.params["field"] == field
    if reason:
        assert caught.value.params.get("reason") == reason


async def test_only_organisers_create_and_closing_is_scheduled(session, clock):
    now = clock.now()
    org, minji, seojun, *_ = await setup(session, now)
    with pytest.raises(NotOrganizer):
        await new_poll(session, org, seojun, "질문 | a | b", now)
    view = await new_poll(
        session, org, minji, "질문 | a | b | 마감: 내일 18:00 | 알림: 2시간", now
    )
    close = await jobs.by_key(session, f"poll-{view.poll.id}-close")
    nudge = await jobs.by_key(session, f"poll-{view.poll.id}-nudge")
    assert close.due_at == view.poll.closes_at
    assert nudge.due_at == view.poll.closes_at - dt.timedelta(hours=2)
    actions = (await session.exec(select(AuditLog.action))).all()
    assert "poll.create" in actions


async def test_open_single_vote_double_tap_and_change(session, clock):
    now = clock.now()
    org, minji, seojun, _haeun, jiho = await setup(session, now)
    view = await new_poll(session, org, minji, "장소? | 사무실 | 카페 | 온라인", now)
    first = await vote(session, view, seojun, 2, now=now)
    assert first.changed and [o.label for o in first.chosen] == ["카페"]
    again = await vote(session, view, seojun, 2, now=now)
    assert not again.changed
    moved = await vote(session, view, seojun, 3, now=now)
    assert moved.changed
    await vote(session, view, jiho, 3, now=now)  # anyone registered may vote here
    results = await polls.tally(session, view)
    assert [c.votes for c in results.options] == [0, 0, 2]
    assert results.voters == 2 and results.eligible == 3  # 민지, 서준, 하은 are members
    assert [c.option.label for c in results.leading] == ["온라인"]
    with pytest.raises(StaleButton):
        await vote(session, view, seojun, 9, now=now)
    with pytest.raises(StaleButton):
        await vote(session, view, seojun, 1, 2, now=now)


async def test_eligibility_and_tier_weights(session, clock):
    now = clock.now()
    org, minji, seojun, haeun, jiho = await setup(session, now)
    members_only = await new_poll(
        session, org, minji, "회원 | a | b | 자격: 회원 | 가중치: 등급", now
    )
    with pytest.raises(polls.NotEligible) as caught:
        await vote(session, members_only, jiho, 1, now=now)
    assert caught.value.params["need"] == "members"
    await vote(session, members_only, seojun, 1, now=now)  # full member: weight 2
    await vote(session, members_only, haeun, 2, now=now)  # supporter: weight 1
    results = await polls.tally(session, members_only)
    assert [(c.votes, c.weight) for c in results.options] == [(1, 2.0), (1, 1.0)]
    assert results.weighted and [c.option.label for c in results.leading] == ["a"]
    assert results.share(results.options[0]) == pytest.approx(2 / 3)
    full_only = await new_poll(session, org, minji, "정회원 | a | b | 자격: 정회원", now)
    with pytest.raises(polls.NotEligible) as caught:
        await vote(session, full_only, haeun, 1, now=now)
    assert caught.value.params["need"] == "full"
    full_results = await polls.tally(session, full_only)
    assert full_results.eligible == 2  # 민지 (admin, full) and 서준


async def test_a_networks_vote_counts_its_groups_members_per_group(session, clock):
    now = clock.now()
    minji = await make_member(session, MINJI, "민지", now=now)
    network = await make_org(
        session, minji, name="서울 연대", slug="seoul-net", kind=OrgKind.NETWORK, now=now
    )
    north = await make_org(session, minji, name="북쪽 모임", slug="north", now=now)
    south = await make_org(session, minji, name="남쪽 모임", slug="south", now=now)
    for group in (north, south):
        await organizations.add_to_network(
            session, actor=minji, network=network, group=group, now=now
        )
    people = []
    for n, group in enumerate([north, north, north, south, south]):
        person = await make_member(session, 5000 + n, f"회원{n}", now=now)
        await add_member(session, group, person, now=now)
        people.append(person)
    view = await new_poll(session, network, minji, "연대 | 예 | 아니오 | 자격: 회원", now)
    for person, choice in zip(people, [1, 1, 2, 2, 2], strict=True):
        await vote(session, view, person, choice, now=now)
    results = await polls.tally(session, view)
    assert results.eligible == 6  # five group members and 민지 (admin of all three)
    assert [c.votes for c in results.options] == [2, 3]
    by_group = {g.name: [c.votes for c in g.options] for g in results.groups}
    assert by_group == {"남쪽 모임": [0, 2], "북쪽 모임": [2, 1]}


async def test_secret_ballot_once_with_receipt_verified_after_close(session, clock):
    now = clock.now()
    org, minji, seojun, haeun, _jiho = await setup(session, now)
    view = await new_poll(session, org, minji, "비밀 | 찬성 | 반대 | 투표: 비밀 | 자격: 회원", now)
    cast = await vote(session, view, seojun, 1, now=now)
    assert cast.receipt and len(cast.receipt) == 8
    with pytest.raises(polls.AlreadyVoted):
        await vote(session, view, seojun, 2, now=now)
    await vote(session, view, haeun, 2, now=now)
    mine = await polls.my_vote(session, view, seojun)
    assert mine.secret_cast and mine.positions == []
    with pytest.raises(polls.VerifyNotYet):
        await polls.verify_receipt(session, cast.receipt)
    await polls.close_poll(session, poll_id=view.poll.id, actor=minji, now=now)
    typed = polls.show_receipt(cast.receipt).lower().replace("0", "o")
    [found] = await polls.verify_receipt(session, typed)
    assert [o.label for o in found.chosen] == ["찬성"]
    with pytest.raises(polls.ReceiptNotFound):
        await polls.verify_receipt(session, "ZZZZ-ZZZZ")
    results = await polls.tally(session, view)
    assert [c.votes for c in results.options] == [1, 1] and results.voters == 2


async def test_multiple_choice_limits_and_replaces(session, clock):
    now = clock.now()
    org, minji, seojun, *_ = await setup(session, now)
    view = await new_poll(
        session, org, minji, "점심 | 피자 | 비빔밥 | 김밥 | 라면 | 종류: 복수 2", now
    )
    with pytest.raises(StaleButton):
        await vote(session, view, seojun, 1, 2, 3, now=now)
    first = await vote(session, view, seojun, 3, 1, now=now)
    assert [o.position for o in first.chosen] == [1, 3]  # stored in option order
    assert not (await vote(session, view, seojun, 1, 3, now=now)).changed
    await vote(session, view, seojun, 2, 4, now=now)
    await vote(session, view, minji, 2, now=now)
    results = await polls.tally(session, view)
    assert [c.votes for c in results.options] == [0, 2, 0, 1]
    assert results.voters == 2 and results.share(results.options[1]) == 1.0


async def ranked(session, org, minji, options: str, ballots, now, first_id: int):
    view = await new_poll(session, org, minji, f"대표 | {options} | 종류: 순위", now)
    for n, ranking in enumerate(ballots):
        person = await make_member(session, first_id + n, f"p{n}", now=now)
        await vote(session, view, person, *ranking, now=now)
    return await polls.tally(session, view)


async def test_ranked_choice_runs_rounds(session, clock):
    now = clock.now()
    minji = await make_member(session, MINJI, "민지", now=now)
    org = await make_org(session, minji, now=now)
    ballots = [[1]] * 3 + [[2, 3]] * 2 + [[3, 2]] * 2 + [[4, 2]]
    results = await ranked(session, org, minji, "가 | 나 | 다 | 라", ballots, now, 7000)
    first, second, third = results.rounds
    assert [c.votes for c in first.counts] == [3, 2, 2, 1] and first.eliminated.label == "라"
    assert [c.votes for c in second.counts] == [3, 3, 2] and second.eliminated.label == "다"
    assert [c.votes for c in third.counts] == [3, 5] and third.eliminated is None
    assert results.winner.label == "나" and not results.tie_broken
    assert [c.votes for c in results.options] == [3, 2, 2, 1]  # first choices
    # A tie for fewest with equal earlier rounds: the option listed last goes out; a ballot
    # with no continuing choice left is exhausted.
    ballots = [[1, 2], [1, 2], [1], [2, 1], [2, 1], [3, 2], [3, 2]]
    tied = await ranked(session, org, minji, "가 | 나 | 다", ballots, now, 7100)
    assert [c.votes for c in tied.rounds[0].counts] == [3, 2, 2]
    assert tied.rounds[0].eliminated.label == "다" and tied.tie_broken
    assert [c.votes for c in tied.rounds[1].counts] == [3, 4] and tied.winner.label == "나"
    exhausting = await ranked(
        session, org, minji, "가 | 나 | 다", [[1], [1], [2], [2], [3, 2]], now, 7200
    )
    assert exhausting.rounds[0].eliminated.label == "다"
    assert [c.votes for c in exhausting.rounds[1].counts] == [2, 3]
    assert exhausting.winner.label == "나"


async def test_quorum_verdict_uses_the_membership_at_closing(session, clock):
    now = clock.now()
    org, minji, seojun, haeun, jiho = await setup(session, now)
    view = await new_poll(session, org, minji, "정족수 | a | b | 자격: 회원 | 정족수: 60%", now)
    await vote(session, view, seojun, 1, now=now)
    results = await polls.tally(session, view)
    assert (results.quorum_needed, results.quorum_met) == (2, False)  # 60% of 3 → 2
    await vote(session, view, haeun, 2, now=now)
    await polls.close_poll(session, poll_id=view.poll.id, actor=minji, now=now)
    # Someone joining later does not change a closed vote's verdict.
    await add_member(session, org, jiho, now=now)
    closed = await polls.tally(session, await polls.load(session, view.poll.id))
    assert (closed.eligible, closed.quorum_needed, closed.quorum_met) == (3, 2, True)


async def test_closing_happens_once_and_stops_votes(session, clock):
    now = clock.now()
    org, minji, seojun, *_ = await setup(session, now)
    view = await new_poll(session, org, minji, "마감 | a | b | 마감: 내일 18:00", now)
    with pytest.raises(NotOrganizer):
        await polls.close_poll(session, poll_id=view.poll.id, actor=seojun, now=now)
    await polls.close_poll(session, poll_id=view.poll.id, actor=None, now=now)
    with pytest.raises(polls.PollClosed):
        await polls.close_poll(session, poll_id=view.poll.id, actor=minji, now=now)
    with pytest.raises(polls.PollClosed):
        await vote(session, view, seojun, 1, now=now)
    job = await jobs.by_key(session, f"poll-{view.poll.id}-close")
    assert job.status == JobStatus.CANCELLED  # closed before its time: the job is off


async def test_deleting_removes_votes_and_hides_the_poll(session, clock):
    now = clock.now()
    org, minji, seojun, *_ = await setup(session, now)
    view = await new_poll(session, org, minji, "삭제 | a | b", now)
    await vote(session, view, seojun, 1, now=now)
    with pytest.raises(NotOrganizer):
        await polls.delete_poll(session, poll_id=view.poll.id, actor=seojun, now=now)
    await polls.delete_poll(session, poll_id=view.poll.id, actor=minji, now=now)
    with pytest.raises(polls.PollNotFound):
        await polls.load(session, view.poll.id)
    assert (await session.exec(select(sa.func.count()).select_from(PollVote))).one() == 0


async def test_reasons_me_audiences_and_nudge_recipients(session, clock):
    now = clock.now()
    org, minji, seojun, haeun, jiho = await setup(session, now)
    view = await new_poll(session, org, minji, "제안 | 종류: 제안 | 자격: 회원", now)
    assert [o.code for o in view.options] == ["agree", "abstain", "disagree", "block"]
    assert [p.id for p in await polls.open_polls_for(session, seojun)] == [view.poll.id]
    assert await polls.open_polls_for(session, jiho) == []  # not a member
    await vote(session, view, seojun, 4, now=now)
    await polls.set_reason(
        session, poll_id=view.poll.id, member=seojun, reason=" 너무 급해요 ", now=now
    )
    with pytest.raises(polls.NoReasonHere):
        await polls.set_reason(session, poll_id=view.poll.id, member=haeun, reason="왜", now=now)
    assert (await polls.my_vote(session, view, seojun)).reason == "너무 급해요"
    assert await polls.open_polls_for(session, seojun) == []
    voters = (await session.exec(polls.audience_query(view.poll.id, "voters"))).all()
    waiting = (await session.exec(polls.audience_query(view.poll.id, "non_voters"))).all()
    assert set(voters) == {seojun.id} and set(waiting) == {minji.id, haeun.id}
    haeun.muted = True
    session.add(haeun)
    recipients = await polls.nudge_recipients(session, view.poll.id)
    assert [r.telegram_user_id for r in recipients] == [MINJI]


async def test_mydata_and_forget_keep_counts_without_the_person(session, clock):
    now = clock.now()
    org, minji, seojun, _haeun, _jiho = await setup(session, now)
    open_view = await new_poll(session, org, minji, "제안 | 종류: 제안", now)
    secret_view = await new_poll(session, org, minji, "비밀 | a | b | 투표: 비밀", now)
    await vote(session, open_view, seojun, 1, now=now)
    await polls.set_reason(
        session, poll_id=open_view.poll.id, member=seojun, reason="좋아요", now=now
    )
    await vote(session, secret_view, seojun, 2, now=now)
    hook = privacy.PrivacyHook("polls", polls.export_member, polls.erase_member)
    document = await privacy.export_member_data(session, seojun, hooks=[hook], now=now)
    mine = document["polls"]
    assert [(v["option"], v["reason"]) for v in mine["open_votes"]] == [("agree", "좋아요")]
    assert [s["question"] for s in mine["secret_ballots_cast"]] == ["비밀"]
    await privacy.forget_member(session, seojun, hooks=[hook], now=now)
    row = (await session.exec(select(PollVote))).one()
    assert row.member_id == seojun.id and row.reason is None  # an anonymous tombstone now
    assert (await polls.tally(session, open_view)).voters == 1
    assert (await polls.tally(session, secret_view)).voters == 1


async def test_two_devices_racing_leave_one_vote(runtime, clock):
    """Real concurrent transactions (truly parallel on PostgreSQL): one vote per person."""
    now = clock.now()
    async with transaction(runtime.sessions) as session:
        org, minji, seojun, *_ = await setup(session, now)
        open_view = await new_poll(session, org, minji, "공개 | a | b | c", now)
        secret_view = await new_poll(session, org, minji, "비밀 | a | b | 투표: 비밀", now)
        ranked_view = await new_poll(session, org, minji, "순위 | a | b | c | 종류: 순위", now)

    async def tap(view, *positions):
        async with transaction(runtime.sessions) as session:
            member = await session.get(type(seojun), seojun.id)
            try:
                return await vote(session, view, member, *positions, now=now)
            except polls.AlreadyVoted:
                return None

    outcomes = await asyncio.gather(
        *(tap(open_view, 1 + n % 3) for n in range(12)),
        *(tap(secret_view, 1 + n % 2) for n in range(12)),
        *(tap(ranked_view, *([1, 2, 3] if n % 2 else [3, 1])) for n in range(12)),
    )
    assert sum(1 for o in outcomes[12:24] if o is not None) == 1  # one secret ballot only
    async with transaction(runtime.sessions) as session:
        for view in (open_view, secret_view, ranked_view):
            results = await polls.tally(session, await polls.load(session, view.poll.id))
            assert results.voters == 1
        assert (await session.exec(select(sa.func.count()).select_from(PollVoter))).one() == 1
        assert (await session.exec(select(sa.func.count()).select_from(PollBallot))).one() == 1
        ranks = (
            await session.exec(
                select(PollVote.rank).where(PollVote.poll_id == ranked_view.poll.id)
            )
        ).all()
        assert sorted(ranks) in ([1, 2], [1, 2, 3])


async def test_many_voters_at_once_are_each_counted_once(runtime, clock):
    now = clock.now()
    async with transaction(runtime.sessions) as session:
        minji = await make_member(session, MINJI, "민지", now=now)
        org = await make_org(session, minji, now=now)
        people = [await make_member(session, 9000 + n, f"p{n}", now=now) for n in range(60)]
        for person in people:
            await add_member(session, org, person, role=Role.MEMBER, now=now)
        open_view = await new_poll(session, org, minji, "공개 | a | b", now)
        secret_view = await new_poll(session, org, minji, "비밀 | a | b | 투표: 비밀", now)

    async def tap(view, person, position):
        async with transaction(runtime.sessions) as session:
            await vote(session, view, person, position, now=now)

    await asyncio.gather(
        *(tap(open_view, p, 1 + n % 2) for n, p in enumerate(people)),
        *(tap(secret_view, p, 1 + n % 2) for n, p in enumerate(people)),
        *(tap(open_view, p, 1 + n % 2) for n, p in enumerate(people)),  # double taps
    )
    async with transaction(runtime.sessions) as session:
        for view in (open_view, secret_view):
            results = await polls.tally(session, await polls.load(session, view.poll.id))
            assert [c.votes for c in results.options] == [30, 30]


async def test_a_tap_on_a_known_poll_is_one_statement(runtime, clock):
    """The hottest path: once a process has seen a poll, a vote is one SQL statement."""
    now = clock.now()
    async with transaction(runtime.sessions) as session:
        org, minji, seojun, _haeun, jiho = await setup(session, now)
        view = await new_poll(session, org, minji, "장소? | 사무실 | 카페 | 자격: 회원", now)
        await vote(session, view, minji, 1, now=now)  # the first tap loads the poll
    statements = []

    def count(conn, cursor, statement, *args):
        if not statement.lstrip().upper().startswith(("BEGIN", "COMMIT", "ROLLBACK")):
            statements.append(statement)

    sa.event.listen(runtime.engine.sync_engine, "before_cursor_execute", count)
    try:
        async with transaction(runtime.sessions) as session:
            outcome = await vote(session, view, seojun, 2, now=now)
        assert outcome.changed and len(statements) == 1
        statements.clear()
        async with transaction(runtime.sessions) as session:  # not a member: refused
            with pytest.raises(polls.NotEligible):
                await vote(session, view, jiho, 2, now=now)
    finally:
        sa.event.remove(runtime.engine.sync_engine, "before_cursor_execute", count)
    async with transaction(runtime.sessions) as session:
        results = await polls.tally(session, view)
    assert [c.votes for c in results.options] == [1, 1]


async def test_the_closing_time_holds_even_when_the_job_runs_late(session, clock):
    """Down for an hour at closing time: no vote gets in late, the reminder is not sent
    after the end, and the result is dated at the closing time."""
    now = clock.now()
    org, minji, seojun, haeun, _ = await setup(session, now)
    view = await new_poll(session, org, minji, "시간 | a | b | 마감: 18:00 | 알림: 1시간", now)
    await vote(session, view, seojun, 1, now=now)  # known to the fast path from here on
    late = view.poll.closes_at + dt.timedelta(hours=1)
    with pytest.raises(polls.PollClosed):
        await vote(session, view, haeun, 2, now=late)  # the fast path refuses it too
    with pytest.raises(polls.PollClosed):
        await vote(session, view, seojun, 2, now=late)
    assert await polls.take_nudge(session, view.poll.id, now=late) is None
    await polls.close_poll(session, poll_id=view.poll.id, actor=None, now=late)
    closed = await polls.load(session, view.poll.id)
    assert closed.poll.closed_at == view.poll.closes_at
    assert [c.votes for c in (await polls.tally(session, closed)).options] == [1, 0]


def test_guided_settings_switch_in_turn_and_keep_weights_for_members():
    draft = polls.PollDraft(question="q", options=["a", "b"])
    assert not polls.toggle_setting(draft, "results").results_live
    assert polls.toggle_setting(draft, "ballot").ballot == BallotKind.SECRET
    polls.toggle_setting(draft, "weight")  # tier weights: voting is for members then
    assert (draft.weighting, draft.eligibility) == (Weighting.TIER, Eligibility.MEMBERS)
    polls.toggle_setting(draft, "who")  # full members
    polls.toggle_setting(draft, "who")  # anyone again: weights go back to one each
    assert (draft.weighting, draft.eligibility) == (Weighting.EQUAL, Eligibility.ANYONE)


async def test_two_instances_close_a_poll_once(runtime, clock):
    """Two schedulers wake at the closing time together: one close, one notice per chat."""
    from bot.scheduler import JobRunner
    from handlers.polls import close_when_due, nudge_when_due
    from models import Delivery, PollStatus, PostedCard

    runtime.features.add_job(polls.CLOSE_JOB, close_when_due)
    runtime.features.add_job(polls.NUDGE_JOB, nudge_when_due)
    now = clock.now()
    async with transaction(runtime.sessions) as session:
        org, minji, seojun, *_ = await setup(session, now)
        view = await new_poll(session, org, minji, "마감 | a | b | 마감: 18:00 | 알림: 1시간", now)
        await vote(session, view, seojun, 1, now=now)
        session.add(
            PostedCard(
                kind="poll", item_id=view.poll.id, chat_id=-500, message_id=7, posted_at=now
            )
        )
    clock.set(view.poll.closes_at + dt.timedelta(seconds=1))
    first, second = JobRunner(runtime), JobRunner(runtime)
    await asyncio.gather(first.run_due(), second.run_due())
    assert first.ran + second.ran == 2  # the nudge (which sends nothing: too late) and the close
    async with transaction(runtime.sessions) as session:
        poll = await session.get(models.Poll, view.poll.id)
        notices = (await session.exec(select(Delivery.chat_id, Delivery.dedupe_key))).all()
        closes = (
            await session.exec(select(AuditLog).where(AuditLog.action == "poll.close"))
        ).all()
    assert poll.status == PollStatus.CLOSED and poll.closed_at == view.poll.closes_at
    assert notices == [(-500, f"poll-{view.poll.id}-closed--500")]
    assert len(closes) == 1

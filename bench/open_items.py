"""Open items of a big organisation, as its organisers and members would have left them.

Each item is created by the feature's own service function (so its row, options, occurrences,
scheduled jobs and audit entry are what the bot itself writes); what people did with it —
votes, sign-ups, RSVPs, signatures, cards posted in the group chats — is inserted in bulk,
in the shape the tap handlers write, because writing 200,000 taps one by one would take
minutes and measure nothing the footprint benchmark is about.

Every time lies hours to weeks ahead, so no job becomes due while the benchmark runs: the bot
starts with all of this waiting and then idles.
"""

from __future__ import annotations

import datetime as dt
import itertools
import random
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from sqlmodel.ext.asyncio.session import AsyncSession

from bot.runtime import Runtime
from bot.services import broadcasts, campaigns, meetings, petitions, polls, recurrence
from models import (
    Answer,
    BallotKind,
    Broadcast,
    BroadcastStatus,
    Campaign,
    CampaignStatus,
    Eligibility,
    Meeting,
    MeetingOccurrence,
    MeetingRsvp,
    Member,
    Organization,
    Petition,
    PetitionStatus,
    Poll,
    PollBallot,
    PollKind,
    PollOption,
    PollStatus,
    PollVote,
    PollVoter,
    PostedCard,
    QuorumKind,
    Signature,
    Signup,
    SignupStatus,
    Weighting,
)

CHUNK = 5000


@dataclass
class Network:
    """What every seeder shares: the organisation, its people, its group chats, the dice."""

    session: AsyncSession
    runtime: Runtime
    org: Organization
    organisers: list[Member]
    member_ids: list[int]
    full_member_ids: list[int]
    chat_ids: list[int]
    now: dt.datetime
    dice: random.Random = field(default_factory=lambda: random.Random(20261201))
    message_ids: itertools.count = field(default_factory=lambda: itertools.count(1000))
    cards: int = 0
    taps: int = 0  # votes, sign-ups, RSVPs and signatures

    def organiser(self) -> Member:
        """One of the organisers (items are spread over them)."""
        return self.dice.choice(self.organisers)

    def takers(self, pool: Sequence[int], low: float, high: float) -> list[int]:
        """Between ``low`` and ``high`` of the people in ``pool`` (shares), picked at random."""
        share = self.dice.uniform(low, high)
        return self.dice.sample(pool, max(1, round(len(pool) * share)))

    def local(self, days: int, hour: int, minute: int = 0) -> dt.datetime:
        """A wall-clock time in the organisation's zone, ``days`` from today, as UTC."""
        today = recurrence.to_local(self.now, self.org.timezone).date()
        moment = dt.datetime.combine(today + dt.timedelta(days=days), dt.time(hour, minute))
        return recurrence.from_local(moment, self.org.timezone)

    async def insert(self, table: Any, rows: list[dict[str, Any]]) -> None:
        """Rows in bulk, a chunk per statement."""
        for start in range(0, len(rows), CHUNK):
            await self.session.exec(sa.insert(table.__table__), params=rows[start : start + CHUNK])

    async def post_cards(self, kind: str, item_ids: list[int], by: Member) -> None:
        """Most items were posted as live cards into one to three of the group chats."""
        rows = []
        for item_id in item_ids:
            if self.dice.random() < 0.2:
                continue
            for chat_id in self.dice.sample(self.chat_ids, self.dice.randint(1, 3)):
                rows.append(
                    {
                        "kind": kind,
                        "item_id": item_id,
                        "chat_id": chat_id,
                        "message_id": next(self.message_ids),
                        "language": "ko",
                        "posted_by": by.id,
                        "posted_at": self.now,
                    }
                )
        await self.insert(PostedCard, rows)
        self.cards += len(rows)


Seeder = Callable[[Network, int], Awaitable[None]]

# --- polls ------------------------------------------------------------------------------------

TOPICS = (
    "정기총회 안건",
    "회비 인상",
    "올해 중점 사업",
    "연대 성명 참여",
    "교육 일정",
    "회칙 개정",
)
POLL_OPTIONS = (
    ["찬성", "반대", "기권"],
    ["1안: 현행 유지", "2안: 월 1만 원", "3안: 월 2만 원"],
    ["주거", "돌봄", "기후", "노동", "교육"],
    ["토요일 오전", "토요일 오후", "일요일 오후", "평일 저녁"],
)
POLL_SHAPES = (
    # kind, ballot, eligibility, weighting, quorum
    (PollKind.SINGLE, BallotKind.OPEN, Eligibility.MEMBERS, Weighting.EQUAL, QuorumKind.NONE),
    (PollKind.SINGLE, BallotKind.OPEN, Eligibility.ANYONE, Weighting.EQUAL, QuorumKind.NONE),
    (PollKind.MULTIPLE, BallotKind.OPEN, Eligibility.MEMBERS, Weighting.EQUAL, QuorumKind.NONE),
    (PollKind.PROPOSAL, BallotKind.OPEN, Eligibility.FULL, Weighting.EQUAL, QuorumKind.PERCENT),
    (PollKind.RANKED, BallotKind.OPEN, Eligibility.MEMBERS, Weighting.EQUAL, QuorumKind.NONE),
    (PollKind.SINGLE, BallotKind.SECRET, Eligibility.FULL, Weighting.TIER, QuorumKind.PERCENT),
    (PollKind.RANKED, BallotKind.SECRET, Eligibility.MEMBERS, Weighting.EQUAL, QuorumKind.COUNT),
)


async def seed_polls(network: Network, count: int) -> None:
    """Open polls of every kind, most closing within two weeks, each with some votes."""
    dice, tiers = network.dice, network.runtime.config.tiers
    full = set(network.full_member_ids)
    votes: list[dict[str, Any]] = []
    roll: list[dict[str, Any]] = []
    ballots: list[dict[str, Any]] = []
    created = []
    for n in range(count):
        kind, ballot, eligibility, weighting, quorum = POLL_SHAPES[n % len(POLL_SHAPES)]
        closes_at = network.local(dice.randint(2, 14), 22) if dice.random() < 0.85 else None
        draft = polls.PollDraft(
            question=f"{dice.choice(TOPICS)} #{n + 1}: 어떻게 할까요?",
            options=[] if kind == PollKind.PROPOSAL else list(dice.choice(POLL_OPTIONS)),
            kind=kind,
            max_choices=2 if kind == PollKind.MULTIPLE else 0,
            ballot=ballot,
            eligibility=eligibility,
            weighting=weighting,
            quorum_kind=quorum,
            quorum_value={QuorumKind.PERCENT: 10, QuorumKind.COUNT: 100}.get(quorum, 0),
            closes_at=closes_at,
            nudge_minutes=1440 if closes_at is not None and dice.random() < 0.5 else None,
        )
        author = network.organiser()
        poll = await polls.create_poll(
            network.session, creator=author, org=network.org, draft=draft, now=network.now
        )
        created.append(poll.id)
        options = (
            (
                await network.session.exec(
                    sa.select(PollOption.id)
                    .where(PollOption.poll_id == poll.id)
                    .order_by(PollOption.position)
                )
            )
            .scalars()
            .all()
        )
        pool = network.full_member_ids if eligibility == Eligibility.FULL else network.member_ids
        for voter in network.takers(pool, 0.0005, 0.005):
            chosen = _choices(dice, kind, list(options), draft.max_choices)
            weight = 1.0
            if weighting == Weighting.TIER:
                weight = tiers.full_weight if voter in full else tiers.supporter_weight
            if ballot == BallotKind.SECRET:
                roll.append({"poll_id": poll.id, "member_id": voter})
                receipt = polls.new_receipt()
                ballots += [
                    {
                        "id": polls.new_ballot_id(),
                        "poll_id": poll.id,
                        "receipt": receipt,
                        "option_id": option_id,
                        "rank": rank,
                        "weight": weight,
                        "organization_id": None,
                    }
                    for rank, option_id in enumerate(chosen, start=1)
                ]
            else:
                votes += [
                    {
                        "poll_id": poll.id,
                        "member_id": voter,
                        "rank": rank,
                        "option_id": option_id,
                        "weight": weight,
                        "organization_id": None,
                        "reason": None,
                        "voted_at": network.now,
                    }
                    for rank, option_id in enumerate(chosen, start=1)
                ]
    await network.insert(PollVote, votes)
    await network.insert(PollVoter, roll)
    await network.insert(PollBallot, ballots)
    network.taps += len({(row["poll_id"], row["member_id"]) for row in votes}) + len(roll)
    await network.post_cards("poll", created, network.organisers[0])


def _choices(dice: random.Random, kind: PollKind, options: list[int], most: int) -> list[int]:
    """What one voter chose, in rank order (multiple choice: in option order)."""
    if kind == PollKind.MULTIPLE:
        picked = set(dice.sample(options, dice.randint(1, most or len(options))))
        return [option for option in options if option in picked]
    if kind == PollKind.RANKED:
        return dice.sample(options, dice.randint(1, len(options)))
    return [dice.choice(options)]


# --- campaigns --------------------------------------------------------------------------------

EVENTS = ("다큐 상영회", "기후 행진", "주민 교육", "연대 집회", "텃밭 울력", "후원 주점")
PLACES = ("마을회관 2층", "시청 앞 광장", "온라인 https://meet.example.org/moim", "협동조합 카페")
QUESTIONS = (
    "티셔츠 크기? S / M / L / XL",
    "식사는? 일반 / 채식",
    "차량 지원이 필요하신가요? 예 / 아니오",
)


async def seed_campaigns(network: Network, count: int) -> None:
    """Open events with capacities, guests and questions; sign-ups up to and past capacity."""
    dice = network.dice
    signups: list[dict[str, Any]] = []
    created = []
    for n in range(count):
        starts_at = network.local(dice.randint(3, 40), dice.choice((10, 14, 19)))
        capacity = dice.choice((None, 30, 50, 100, 200, 500))
        questions = [
            campaigns.parse_question(q) for q in dice.sample(QUESTIONS, dice.randint(0, 2))
        ]
        draft = campaigns.CampaignDraft(
            organization_id=network.org.id,
            title=f"{dice.choice(EVENTS)} {n + 1}회차",
            description="함께해요. 자세한 안내는 신청하신 분께 따로 드립니다.",
            starts_at=starts_at,
            place=dice.choice(PLACES),
            capacity=capacity,
            max_guests=dice.choice((0, 0, 1, 2)),
            deadline=starts_at - dt.timedelta(days=1) if dice.random() < 0.5 else None,
            questions=questions,
            survey_after_minutes=dice.choice((None, 120, 1440)),
        )
        campaign = await campaigns.create_campaign(
            network.session,
            org=network.org,
            creator=network.organiser(),
            draft=draft,
            open_now=True,
            now=network.now,
        )
        created.append(campaign.id)
        for position, member_id in enumerate(network.takers(network.member_ids, 0.0005, 0.003), 1):
            guests = dice.randint(0, campaign.max_guests)
            seats = 1 + guests
            confirmed = capacity is None or campaign.confirmed_seats + seats <= capacity
            if confirmed:
                campaign.confirmed_seats += seats
                campaign.confirmed_people += 1
            else:
                campaign.waitlisted_people += 1
            signups.append(
                {
                    "campaign_id": campaign.id,
                    "member_id": member_id,
                    "status": SignupStatus.CONFIRMED if confirmed else SignupStatus.WAITLISTED,
                    "guests": guests,
                    "position": position,
                    "host_id": None,
                    "answers": _answers(dice, questions),
                    "signed_up_at": network.now,
                    "confirmed_at": network.now if confirmed else None,
                    "cancelled_at": None,
                }
            )
            campaign.arrivals = position
        # Organisers were told of each milestone as it was crossed.
        campaign.milestone = campaigns.reached_milestone(campaign) or campaign.milestone
        network.session.add(campaign)
    await network.session.flush()
    await network.insert(Signup, signups)
    network.taps += len(signups)
    await network.post_cards("campaign", created, network.organisers[0])


def _answers(dice: random.Random, questions: list[dict[str, Any]]) -> dict[str, str]:
    """Answers to the campaign's questions (as answer_question stores them); some left open."""
    answers = {}
    for index, question in enumerate(questions):
        if dice.random() < 0.8:
            answers[str(index)] = (
                dice.choice(question["choices"]) if question["kind"] == "choice" else "없음"
            )
    return answers


# --- meetings ---------------------------------------------------------------------------------

MEETINGS = ("운영위원회", "정기 모임", "지역 모임", "공부 모임", "기획단 회의")
REPEATS = ("", "", "", recurrence.WEEKLY, recurrence.BIWEEKLY, recurrence.MONTHLY)
ANSWERS = (Answer.YES, Answer.YES, Answer.YES, Answer.MAYBE, Answer.NO)


async def seed_meetings(network: Network, count: int) -> None:
    """One-off meetings and series a few occurrences ahead, with their reminder jobs; RSVPs."""
    dice, config = network.dice, network.runtime.config.meetings
    created = []
    for n in range(count):
        draft = meetings.MeetingDraft(
            title=f"{dice.choice(MEETINGS)} {n + 1}",
            starts_at=network.local(dice.randint(2, 30), dice.choice((10, 19, 20)), 30),
            duration_minutes=dice.choice((60, 90, 120)),
            place=dice.choice(PLACES[:2]),
            agenda="1. 지난 회의 확인\n2. 안건 논의\n3. 기타",
            repeat=dice.choice(REPEATS),
        )
        meeting = await meetings.create_meeting(
            network.session,
            actor=network.organiser(),
            org=network.org,
            draft=draft,
            reminder_minutes=config.reminder_minutes,
            now=network.now,
            ahead=config.scheduled_ahead,
        )
        created.append(meeting.id)
    # People answer for the next occurrence of each meeting (a few answer the one after, too).
    occurrences = (
        await network.session.exec(
            sa.select(MeetingOccurrence.id, MeetingOccurrence.meeting_id)
            .where(MeetingOccurrence.meeting_id.in_(created))
            .order_by(MeetingOccurrence.meeting_id, MeetingOccurrence.starts_at)
        )
    ).all()
    answered: dict[int, int] = {}
    rsvps = []
    for occurrence_id, meeting_id in occurrences:
        rank = answered[meeting_id] = answered.get(meeting_id, 0) + 1
        if rank > 2:
            continue
        share = (0.0002, 0.002) if rank == 1 else (0.0001, 0.0005)
        rsvps += [
            {
                "occurrence_id": occurrence_id,
                "member_id": member_id,
                "answer": dice.choice(ANSWERS),
                "answered_at": network.now,
            }
            for member_id in network.takers(network.member_ids, *share)
        ]
    await network.insert(MeetingRsvp, rsvps)
    network.taps += len(rsvps)
    await network.post_cards("meeting", created, network.organisers[0])


# --- petitions --------------------------------------------------------------------------------

DEMANDS = ("버스 노선 유지", "공공 돌봄 확대", "가로수 벌목 중단", "임대료 동결", "학교 급식 개선")
ADDRESSEES = ("시장", "구청장", "교육감", "국회 국토교통위원회")


async def seed_petitions(network: Network, count: int) -> None:
    """Open petitions, most with a closing date; signatures, a few public and commented."""
    dice = network.dice
    signatures: list[dict[str, Any]] = []
    created = []
    for n in range(count):
        petition = await petitions.create_petition(
            network.session,
            actor=network.organiser(),
            org=network.org,
            title=f"{dice.choice(DEMANDS)}를 요구합니다 ({n + 1})",
            addressee=dice.choice(ADDRESSEES),
            goal=dice.choice((500, 1000, 3000, 10000)),
            body="우리는 다음을 요구합니다.\n\n" + "주민의 삶을 지키는 결정을 내려 주십시오. " * 8,
            closes_at=network.local(dice.randint(7, 60), 23, 59) if dice.random() < 0.8 else None,
            notify_signers=dice.random() < 0.3,
            now=network.now,
        )
        created.append(petition.id)
        signers = network.takers(network.member_ids, 0.001, 0.006)
        signatures += [
            {
                "petition_id": petition.id,
                "member_id": member_id,
                "public": dice.random() < 0.4,
                "comment": "꼭 필요합니다." if dice.random() < 0.05 else None,
                "sponsor_org_id": network.org.id,
                "signed_at": network.now,
                "withdrawn_at": None,
            }
            for member_id in signers
        ]
        petition.signature_count = len(signers)
        petition.milestone_reached = petitions.milestone_level(len(signers), petition.goal)
        network.session.add(petition)
    await network.session.flush()
    await network.insert(Signature, signatures)
    network.taps += len(signatures)
    await network.post_cards("petition", created, network.organisers[0])


# --- announcements ----------------------------------------------------------------------------


async def seed_broadcasts(network: Network, count: int) -> None:
    """Announcements scheduled for the coming days, to everyone, a tier, or an item's people."""
    dice, runtime = network.dice, network.runtime
    registry = runtime.features.audiences
    choices: list[dict[str, Any]] = list(broadcasts.builtin_audiences(network.org))
    for key, audience in registry.items():
        items = await broadcasts.feature_items(network.session, network.org, audience)
        choices += [
            {"kind": "feature", "key": key, "item": item.id, "variant": audience.variants[0]}
            for item in items[:5]
        ]
    header = runtime.renderer.text("broadcasts/announcement.html", None, org=network.org)
    delivery = runtime.config.delivery
    for n in range(count):
        await broadcasts.create_broadcast(
            network.session,
            org=network.org,
            author=network.organiser(),
            source=f"<b>알림 {n + 1}</b>\n{{{{ name }}}}님, 이번 주 일정을 확인해 주세요.",
            header=header,
            media_kind="",
            media_file_id="",
            media_filename="",
            audience=dice.choice(choices),
            registry=registry,
            urgent=False,
            requested_at=network.local(dice.randint(1, 10), dice.choice((9, 12, 18))),
            rate=delivery.messages_per_second,
            quiet_start=delivery.quiet_hours_start,
            quiet_end=delivery.quiet_hours_end,
            now=network.now,
        )


# Features in the proportions a busy organisation has them open at once (weights).
SEEDERS: list[tuple[str, int, Seeder]] = [
    ("polls", 30, seed_polls),
    ("meetings", 25, seed_meetings),
    ("campaigns", 20, seed_campaigns),
    ("petitions", 20, seed_petitions),
    ("announcements", 5, seed_broadcasts),
]


def shares(total: int, weights: Sequence[int]) -> list[int]:
    """``total`` split by ``weights`` (largest remainders), summing to ``total`` exactly."""
    exact = [total * w / sum(weights) for w in weights]
    counts = [int(x) for x in exact]
    by_remainder = sorted(range(len(weights)), key=lambda i: exact[i] - counts[i], reverse=True)
    for i in by_remainder[: total - sum(counts)]:
        counts[i] += 1
    return counts


async def open_items(session: AsyncSession, org: Organization, now: dt.datetime) -> dict[str, int]:
    """What is open now, counted in the database the way each feature defines open."""
    counts = {
        "polls": sa.select(sa.func.count()).where(
            Poll.organization_id == org.id, Poll.status == PollStatus.OPEN
        ),
        "meetings": sa.select(sa.func.count()).where(
            Meeting.organization_id == org.id,
            Meeting.cancelled_at.is_(None),
            sa.exists().where(
                MeetingOccurrence.meeting_id == Meeting.id, MeetingOccurrence.starts_at > now
            ),
        ),
        "campaigns": sa.select(sa.func.count()).where(
            Campaign.organization_id == org.id, Campaign.status == CampaignStatus.OPEN
        ),
        "petitions": sa.select(sa.func.count()).where(
            Petition.organization_id == org.id, Petition.status == PetitionStatus.OPEN
        ),
        "announcements": sa.select(sa.func.count()).where(
            Broadcast.organization_id == org.id, Broadcast.status == BroadcastStatus.SCHEDULED
        ),
    }
    return {name: (await session.exec(query)).scalar_one() for name, query in counts.items()}

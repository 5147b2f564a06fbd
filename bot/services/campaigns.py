"""Campaigns and event sign-ups: create, open and close; sign up with guests, waitlist,
cancel and promote; questions; milestones; co-hosts; exports; announcements; surveys.

Every change to a campaign's seats happens while its row is locked (``_locked``): on
PostgreSQL with SELECT ... FOR UPDATE, on SQLite because write transactions are already
serialised (BEGIN IMMEDIATE over one connection). So a race for the last seats is decided in
arrival order, counters never drift, and a milestone is announced exactly once: it is recorded
on the row in the same transaction that queues the organisers' message.

Messages to other people (promotions, milestones, surveys, announcements) are rendered with
the injected ``renderer`` in each recipient's language and queued in the outbox in the same
transaction, so they go out once the change has committed, and never if it rolled back.
"""

from __future__ import annotations

import datetime as dt
import functools
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass, field, replace
from typing import Any
from zoneinfo import ZoneInfo

import sqlalchemy as sa
from sqlalchemy.orm.attributes import set_committed_value
from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession

from bot.render import Renderer
from bot.services import audit, exports, jobs, organizations, outbox
from bot.services.dialects import is_postgresql
from bot.services.errors import DomainError, NotOrganizer, SensitiveConsentRequired
from bot.services.timeparse import parse_duration, parse_when, require_future
from bot.sqlite_driver import WITH_NEXT
from models import (
    Campaign,
    CampaignStatus,
    Delivery,
    Member,
    Membership,
    NetworkMember,
    Organization,
    OrgKind,
    Role,
    Signup,
    SignupStatus,
    SurveyResponse,
)

MAX_TITLE = 200
MAX_DESCRIPTION = 2000
MAX_PLACE = 300
MAX_CAPACITY = 100_000
MAX_GUESTS = 5  # keeps the card's buttons on one row
MAX_QUESTIONS = 5
MAX_PROMPT = 200
MAX_CHOICES = 8
MAX_CHOICE_LENGTH = 30
TEXT_ANSWER_LIMIT = 200
MAX_COMMENT = 1000
MAX_NOTICE = 3000
MILESTONES = (50, 80, 100)
SURVEY_DELAYS = (120, 1440)  # the guided flow's buttons: 2 hours, the next day
DEADLINE_DEFAULT_TIME = dt.time(23, 59)  # "마감 12월 18일": the end of that day
PROMOTE_CHUNK = 50

JOB_DEADLINE = "campaign.deadline"
JOB_SURVEY = "campaign.survey"
ORGANIZER_ROLES = (Role.ORGANIZER, Role.ADMIN)


# --- errors ------------------------------------------------------------------------------------


class CampaignError(DomainError):
    """A campaign problem a person can cause; the text is in campaigns/errors.html."""

    feature = "campaigns"


class CampaignNotFound(CampaignError):
    """No campaign with that number."""

    code = "not_found"


class CampaignNotOpen(CampaignError):
    """The campaign is still a draft."""

    code = "not_open"


class CampaignClosed(CampaignError):
    """Sign-ups were closed by the organisers."""

    code = "closed"


class DeadlinePassed(CampaignError):
    """Too late to sign up or cancel (``action``); ``deadline`` says when it ended."""

    code = "deadline_passed"


class NotSignedUp(CampaignError):
    """The person has no sign-up (left) to act on."""

    code = "not_signed_up"


class TooManyGuests(CampaignError):
    """More guests than the organisers allow (``limit``)."""

    code = "too_many_guests"


class AnswerTooLong(CampaignError):
    """An answer longer than ``limit`` characters."""

    code = "answer_too_long"


class NotAttendee(CampaignError):
    """Only people confirmed for the event can rate it."""

    code = "not_attendee"


class InvalidCampaign(CampaignError):
    """Something in a new campaign cannot be used: ``field``, ``reason``, ``value``, ``limit``."""

    code = "invalid"


# --- drafts (the creation flows) --------------------------------------------------------------


@dataclass
class CampaignDraft:
    """A campaign being written (guided flow or one line), kept in the conversation state."""

    organization_id: int | None = None
    title: str = ""
    description: str = ""
    starts_at: dt.datetime | None = None
    place: str = ""
    capacity: int | None = None
    max_guests: int = 0
    deadline: dt.datetime | None = None
    questions: list[dict[str, Any]] = field(default_factory=list)
    survey_after_minutes: int | None = None

    def to_data(self) -> dict[str, Any]:
        """JSON-able form for ConversationState.data."""
        return {
            "organization_id": self.organization_id,
            "title": self.title,
            "description": self.description,
            "starts_at": self.starts_at.isoformat() if self.starts_at else None,
            "place": self.place,
            "capacity": self.capacity,
            "max_guests": self.max_guests,
            "deadline": self.deadline.isoformat() if self.deadline else None,
            "questions": list(self.questions),
            "survey_after_minutes": self.survey_after_minutes,
        }

    @classmethod
    def from_data(cls, data: dict[str, Any]) -> CampaignDraft:
        """Back from :meth:`to_data`."""

        def moment(value: str | None) -> dt.datetime | None:
            return dt.datetime.fromisoformat(value) if value else None

        return cls(
            organization_id=data.get("organization_id"),
            title=data.get("title", ""),
            description=data.get("description", ""),
            starts_at=moment(data.get("starts_at")),
            place=data.get("place", ""),
            capacity=data.get("capacity"),
            max_guests=data.get("max_guests", 0),
            deadline=moment(data.get("deadline")),
            questions=list(data.get("questions", [])),
            survey_after_minutes=data.get("survey_after_minutes"),
        )


def _one_line(text: str) -> str:
    return " ".join(text.split())


def clean_title(text: str) -> str:
    """A title as stored, or InvalidCampaign."""
    title = _one_line(text)
    if not title:
        raise InvalidCampaign(field="title", reason="empty")
    if len(title) > MAX_TITLE:
        raise InvalidCampaign(field="title", reason="too_long", limit=MAX_TITLE)
    return title


def clean_description(text: str) -> str:
    """A description (line breaks kept), or InvalidCampaign."""
    description = "\n".join(line.strip() for line in text.strip().splitlines()).strip()
    if len(description) > MAX_DESCRIPTION:
        raise InvalidCampaign(field="description", reason="too_long", limit=MAX_DESCRIPTION)
    return description


def clean_place(text: str) -> str:
    """A place or an online link, or InvalidCampaign."""
    place = _one_line(text)
    if len(place) > MAX_PLACE:
        raise InvalidCampaign(field="place", reason="too_long", limit=MAX_PLACE)
    return place


NO_LIMIT_WORDS = {"없음", "무제한", "제한없음", "none", "no", "unlimited", "-"}


def parse_capacity(text: str) -> int | None:
    """ "50", "50명", "정원 없음" → seats (None for no limit), or InvalidCampaign."""
    value = text.strip().lower().replace(",", "")
    if value.replace(" ", "") in NO_LIMIT_WORDS:
        return None
    match = re.fullmatch(r"(\d{1,7})\s*(?:명|석|자리|seats?|people)?", value)
    if not match or not 1 <= int(match.group(1)) <= MAX_CAPACITY:
        raise InvalidCampaign(field="capacity", value=text, limit=MAX_CAPACITY)
    return int(match.group(1))


def parse_guests(text: str) -> int:
    """ "2", "+2", "2명" → how many guests one person may bring, or InvalidCampaign."""
    value = text.strip().lower()
    if value in NO_LIMIT_WORDS - {"unlimited"} or value in ("0", "+0"):
        return 0
    match = re.fullmatch(r"\+?\s*(\d{1,2})\s*(?:명|guests?)?", value)
    if not match or int(match.group(1)) > MAX_GUESTS:
        raise InvalidCampaign(field="guests", value=text, limit=MAX_GUESTS)
    return int(match.group(1))


def parse_question(text: str) -> dict[str, Any]:
    """A question: "T-shirt size? S / M / L" is a choice; anything else a short text answer."""
    prompt = _one_line(text)
    if not prompt:
        raise InvalidCampaign(field="question", reason="empty")
    match = re.fullmatch(r"(?P<prompt>.+?[?？:：])\s*(?P<choices>[^?？:：]*/[^?？:：]*)", prompt)
    if match:
        choices = [_one_line(c) for c in match.group("choices").split("/") if c.strip()]
        prompt = match.group("prompt").rstrip(":：").strip()
        if not 2 <= len(choices) <= MAX_CHOICES:
            raise InvalidCampaign(field="question", reason="choices", limit=MAX_CHOICES)
        if any(len(choice) > MAX_CHOICE_LENGTH for choice in choices):
            raise InvalidCampaign(field="question", reason="choice_long", limit=MAX_CHOICE_LENGTH)
        if len(set(choices)) != len(choices):
            raise InvalidCampaign(field="question", reason="choice_twice")
        question: dict[str, Any] = {"kind": "choice", "prompt": prompt, "choices": choices}
    else:
        question = {"kind": "text", "prompt": prompt, "max_length": TEXT_ANSWER_LIMIT}
    if len(prompt) > MAX_PROMPT:
        raise InvalidCampaign(field="question", reason="too_long", limit=MAX_PROMPT)
    return question


def add_question(draft: CampaignDraft, text: str) -> CampaignDraft:
    """The draft with one more question (at most MAX_QUESTIONS)."""
    if len(draft.questions) >= MAX_QUESTIONS:
        raise InvalidCampaign(field="question", reason="too_many", limit=MAX_QUESTIONS)
    return replace(draft, questions=[*draft.questions, parse_question(text)])


def parse_survey_delay(text: str) -> int | None:
    """How long after the start the survey goes out ("3시간", "1d"); None for no survey."""
    if text.strip().lower().replace(" ", "") in NO_LIMIT_WORDS:
        return None
    delay = parse_duration(text)
    if delay > dt.timedelta(days=30):
        raise InvalidCampaign(field="survey", reason="too_late")
    return int(delay.total_seconds() // 60)


def parse_start(text: str, *, now: dt.datetime, timezone: str) -> dt.datetime:
    """When the event starts (a time of day is needed)."""
    return require_future(parse_when(text, now=now, timezone=timezone), now=now, text=text)


def parse_deadline(text: str, *, now: dt.datetime, timezone: str) -> dt.datetime:
    """When sign-ups end; a date alone means the end of that day."""
    moment = parse_when(text, now=now, timezone=timezone, default_time=DEADLINE_DEFAULT_TIME)
    return require_future(moment, now=now, text=text)


# The one-line form: /new_campaign TITLE | option | option ... (README: "One-line form").
ONE_LINE_LABELS = {
    "title": ("제목", "title"),
    "capacity": ("정원", "인원", "capacity", "seats"),
    "deadline": ("마감", "deadline"),
    "guests": ("동반", "guests"),
    "description": ("설명", "about", "description"),
    "question": ("질문", "question"),
    "survey": ("설문", "survey"),
    "org": ("단체", "org"),
    "place": ("장소", "place"),
    "when": ("일시", "when"),
}
_LABEL = re.compile(
    r"^(?P<label>"
    + "|".join(sorted((w for ws in ONE_LINE_LABELS.values() for w in ws), key=len, reverse=True))
    + r")(?:\s*[:：]\s*|\s+)(?P<value>.+)$",
    re.IGNORECASE,
)
_LOOKS_LIKE_WHEN = re.compile(
    r"\d\s*(?:월|일|시)|\d:\d\d|\d{4}[-./]\d|\d{1,2}/\d{1,2}|오늘|내일|모레|요일", re.IGNORECASE
)


def _labelled(part: str) -> tuple[str | None, str]:
    """("capacity", "50") for "정원 50"; (None, part) for an option without a label."""
    match = _LABEL.match(part)
    if not match:
        return None, part
    word = match.group("label").lower()
    label = next(key for key, words in ONE_LINE_LABELS.items() if word in words)
    return label, match.group("value").strip()


def _apply(
    draft: CampaignDraft, label: str, value: str, *, now: dt.datetime, timezone: str
) -> CampaignDraft:
    """The draft with one option ("capacity", "50") applied."""
    if label == "title":
        return replace(draft, title=clean_title(value))
    if label == "capacity":
        return replace(draft, capacity=parse_capacity(value))
    if label == "deadline":
        return replace(draft, deadline=parse_deadline(value, now=now, timezone=timezone))
    if label == "guests":
        return replace(draft, max_guests=parse_guests(value))
    if label == "description":
        return replace(draft, description=clean_description(value))
    if label == "question":
        return add_question(draft, value)
    if label == "survey":
        return replace(draft, survey_after_minutes=parse_survey_delay(value))
    if label == "when":
        return replace(draft, starts_at=parse_start(value, now=now, timezone=timezone))
    if label == "place":
        return replace(draft, place=clean_place(value))
    raise InvalidCampaign(field="option", value=value)


def parse_one_line(
    text: str, *, now: dt.datetime, timezone: str
) -> tuple[CampaignDraft, str | None]:
    """Read the one-line form into a draft; returns it and the organisation's slug if named.

    After the title, options are labelled ("정원 50") or not: the first unlabelled one that
    looks like a date is the start, the first other one the place.
    """
    parts = [part.strip() for part in text.split("|")]
    draft = CampaignDraft(title=clean_title(parts[0]))
    slug = None
    unlabelled: set[str] = set()
    for part in (p for p in parts[1:] if p):
        label, value = _labelled(part)
        if label is None:
            label = "when" if _LOOKS_LIKE_WHEN.search(part) else "place"
            if label in unlabelled:
                raise InvalidCampaign(field="option", value=part)
            unlabelled.add(label)
        if label == "org":
            slug = value.lower()
        else:
            draft = _apply(draft, label, value, now=now, timezone=timezone)
    check_draft(draft)
    return draft, slug


def named_org(text: str) -> str | None:
    """The organisation's short name in a one-line form ("단체 saesol"), if it names one."""
    for part in text.split("|")[1:]:
        match = _LABEL.match(part.strip())
        if match and match.group("label").lower() in ONE_LINE_LABELS["org"]:
            return match.group("value").strip().lower()
    return None


def check_draft(draft: CampaignDraft) -> None:
    """Rules that tie fields together (checked again when the campaign is created)."""
    clean_title(draft.title)
    if draft.deadline and draft.starts_at and draft.deadline > draft.starts_at:
        raise InvalidCampaign(field="deadline", reason="after_start")
    if draft.survey_after_minutes is not None and draft.starts_at is None:
        raise InvalidCampaign(field="survey", reason="no_start")
    if not 0 <= draft.max_guests <= MAX_GUESTS:
        raise InvalidCampaign(field="guests", value=str(draft.max_guests), limit=MAX_GUESTS)
    if draft.capacity is not None and not 1 <= draft.capacity <= MAX_CAPACITY:
        raise InvalidCampaign(field="capacity", value=str(draft.capacity), limit=MAX_CAPACITY)
    if len(draft.questions) > MAX_QUESTIONS:
        raise InvalidCampaign(field="question", reason="too_many", limit=MAX_QUESTIONS)


# The guided flow's steps, in order; "survey" is asked only when the event has a start.
STEPS = (
    "title",
    "description",
    "when",
    "place",
    "capacity",
    "guests",
    "deadline",
    "questions",
    "survey",
    "preview",
)


def next_step(draft: CampaignDraft, step: str) -> str:
    """The step after ``step`` for this draft."""
    index = STEPS.index(step) + 1
    following = STEPS[index] if index < len(STEPS) else "preview"
    if following == "survey" and draft.starts_at is None:
        return "preview"
    return following


def step_number(step: str) -> int:
    """1-based number of a step, for "(3/9)"."""
    return STEPS.index(step) + 1 if step in STEPS else len(STEPS)


def read_step(
    draft: CampaignDraft, step: str, text: str, *, now: dt.datetime, timezone: str
) -> CampaignDraft:
    """The draft after the organiser typed ``text`` at ``step`` (validated)."""
    if step not in STEPS or step == "preview":
        raise InvalidCampaign(field="step", reason="buttons")
    label = "question" if step == "questions" else step
    updated = _apply(draft, label, text, now=now, timezone=timezone)
    if step == "deadline":
        check_draft(updated)
    return updated


def choose_step(draft: CampaignDraft, step: str, choice: str) -> CampaignDraft:
    """The draft after a button at ``step``: "-" keeps the default (no date, no limit, no
    questions, no survey...), a number picks the guests allowed or the survey's time."""
    if choice == "-" and step != "title":
        return draft
    if step == "guests" and choice.isdigit():
        return replace(draft, max_guests=parse_guests(choice))
    if step == "survey" and choice.isdigit() and int(choice) in SURVEY_DELAYS:
        return replace(draft, survey_after_minutes=int(choice))
    raise InvalidCampaign(field="step", reason="buttons")


# --- reading campaigns ------------------------------------------------------------------------


async def get_campaign(session: AsyncSession, campaign_id: int) -> Campaign:
    """The campaign with this number, or CampaignNotFound."""
    campaign = await session.get(Campaign, campaign_id)
    if campaign is None:
        raise CampaignNotFound(campaign_id=campaign_id)
    return campaign


@functools.cache
def _lock_statements():
    """The statements of ``_lock``, built once: a sign-up tap costs less without building
    them again (their compiled form is cached by SQLAlchemy either way)."""
    campaign = (
        select(Campaign, Organization)
        .join(Organization, Organization.id == Campaign.organization_id)
        .where(Campaign.id == sa.bindparam("campaign_id"))
        .with_for_update(of=Campaign)
        .execution_options(populate_existing=True)
    )
    signup = (
        select(Signup)
        .where(
            Signup.campaign_id == sa.bindparam("campaign_id"),
            Signup.member_id == sa.bindparam("member_id"),
        )
        .execution_options(populate_existing=True)
    )
    together = (
        select(Campaign, Organization, Signup)
        .join(Organization, Organization.id == Campaign.organization_id)
        .outerjoin(
            Signup,
            sa.and_(
                Signup.campaign_id == Campaign.id,
                Signup.member_id == sa.bindparam("member_id"),
            ),
        )
        .where(Campaign.id == sa.bindparam("campaign_id"))
        .execution_options(populate_existing=True)
    )
    return campaign, signup, together


async def _lock(
    session: AsyncSession, campaign_id: int, member_id: int | None = None
) -> tuple[Campaign, Organization, Signup | None]:
    """The campaign locked for this transaction (PostgreSQL: FOR UPDATE; SQLite serialises
    write transactions), with its organisation, and ``member_id``'s sign-up.

    On PostgreSQL the sign-up is read by a second statement once the lock is held: under READ
    COMMITTED a statement sees the data as of its start, so reading it in the locking statement
    could miss a promotion committed while we waited for the lock. SQLite's transaction holds
    the write lock from its first statement, so one statement reads all three.
    """
    lock_campaign, find_signup, together = _lock_statements()
    params = {"campaign_id": campaign_id, "member_id": member_id}
    if member_id is not None and not is_postgresql(session):
        row = (await session.exec(together, params=params)).first()
        if row is None:
            raise CampaignNotFound(campaign_id=campaign_id)
        return tuple(row)
    row = (await session.exec(lock_campaign, params={"campaign_id": campaign_id})).first()
    if row is None:
        raise CampaignNotFound(campaign_id=campaign_id)
    campaign, org = row
    signup = None
    if member_id is not None:
        signup = (await session.exec(find_signup, params=params)).first()
    return campaign, org, signup


async def _locked(session: AsyncSession, campaign_id: int) -> Campaign:
    """The campaign, locked for this transaction."""
    campaign, _, _ = await _lock(session, campaign_id)
    return campaign


def closes_at(campaign: Campaign) -> dt.datetime | None:
    """When sign-ups and cancellations end: the deadline, or else the event's start."""
    return campaign.deadline or campaign.starts_at


def accepting(campaign: Campaign, now: dt.datetime) -> bool:
    """True while the campaign takes sign-ups."""
    end = closes_at(campaign)
    return campaign.status == CampaignStatus.OPEN and (end is None or now < end)


def free_seats(campaign: Campaign) -> int | None:
    """Seats left (None: no limit)."""
    if campaign.capacity is None:
        return None
    return max(0, campaign.capacity - campaign.confirmed_seats)


def cancellable(campaign: Campaign, now: dt.datetime) -> bool:
    """True while people may still cancel (also after closing early, until the deadline)."""
    end = closes_at(campaign)
    return campaign.status != CampaignStatus.DRAFT and (end is None or now < end)


def _require_open(campaign: Campaign, org: Organization, now: dt.datetime, *, action: str) -> None:
    if campaign.status == CampaignStatus.DRAFT:
        raise CampaignNotOpen(title=campaign.title)
    end = closes_at(campaign)
    if end is not None and now >= end:
        raise DeadlinePassed(
            title=campaign.title, deadline=end, timezone=org.timezone, action=action
        )
    if campaign.status == CampaignStatus.CLOSED and action == "sign_up":
        raise CampaignClosed(title=campaign.title)


@dataclass(frozen=True)
class CardView:
    """What a campaign card shows, for everyone or for one person."""

    campaign: Campaign
    org: Organization
    accepting: bool
    cancellable: bool
    closes_at: dt.datetime | None
    free_seats: int | None
    mine: Signup | None = None
    rank: int | None = None  # the person's place on the waitlist

    @property
    def unanswered(self) -> bool:
        """The person still has questions to answer."""
        return self.mine is not None and first_unanswered(self.campaign, self.mine) is not None


async def card_view(
    session: AsyncSession,
    campaign_id: int,
    *,
    now: dt.datetime,
    member: Member | None = None,
    drafts: bool = False,
) -> CardView:
    """The campaign as its card shows it (with ``member``'s own sign-up, if given)."""
    campaign = await get_campaign(session, campaign_id)
    if campaign.status == CampaignStatus.DRAFT and not drafts:
        raise CampaignNotOpen(title=campaign.title)
    org = await organizations.by_id(session, campaign.organization_id)
    mine = rank = None
    if member is not None:
        mine = await _signup_of(session, campaign.id, member.id)
        if mine is not None and mine.status == SignupStatus.CANCELLED:
            mine = None
        if mine is not None and mine.status == SignupStatus.WAITLISTED:
            rank = await waitlist_rank(session, mine)
    return _view(campaign, org, now, mine, rank)


def _view(campaign, org, now, mine=None, rank=None) -> CardView:
    return CardView(
        campaign=campaign,
        org=org,
        accepting=accepting(campaign, now),
        cancellable=cancellable(campaign, now),
        closes_at=closes_at(campaign),
        free_seats=free_seats(campaign),
        mine=mine,
        rank=rank,
    )


async def _signup_of(session: AsyncSession, campaign_id: int, member_id: int) -> Signup | None:
    return (
        await session.exec(
            select(Signup).where(Signup.campaign_id == campaign_id, Signup.member_id == member_id)
        )
    ).first()


async def waitlist_rank(session: AsyncSession, signup: Signup) -> int:
    """The sign-up's place on the waitlist (1 = next to get a seat)."""
    ahead = (
        await session.exec(
            select(sa.func.count())
            .select_from(Signup)
            .where(
                Signup.campaign_id == signup.campaign_id,
                Signup.status == SignupStatus.WAITLISTED,
                Signup.position < signup.position,
            )
        )
    ).one()
    return ahead + 1


def first_unanswered(campaign: Campaign, signup: Signup) -> int | None:
    """The index of the first question the person has not answered yet."""
    for index in range(len(campaign.questions)):
        if str(index) not in signup.answers:
            return index
    return None


# --- permissions ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Access:
    """What an organiser may see of a campaign: all of it, or one co-host group's people."""

    org: Organization
    host: Organization | None = None  # set for a co-host group's organisers

    @property
    def full(self) -> bool:
        """Organiser of the campaign's own organisation (or bot admin)."""
        return self.host is None


async def organizer_access(
    session: AsyncSession,
    *,
    campaign: Campaign,
    member: Member | None,
    now: dt.datetime,
    action: str,
    is_bot_admin: bool = False,
    full: bool = True,
) -> Access:
    """Check that ``member`` organises the campaign (or, unless ``full``, one of its co-hosts)."""
    org = await organizations.by_id(session, campaign.organization_id)
    try:
        await organizations.require_organizer(
            session, member=member, org=org, now=now, action=action, is_bot_admin=is_bot_admin
        )
        return Access(org=org)
    except NotOrganizer:
        if full or org.kind != OrgKind.NETWORK or member is None:
            raise
    host = (
        await session.exec(
            select(Organization)
            .join(Membership, Membership.organization_id == Organization.id)
            .join(NetworkMember, NetworkMember.group_id == Organization.id)
            .where(
                NetworkMember.network_id == org.id,
                Membership.member_id == member.id,
                Membership.role.in_(ORGANIZER_ROLES),
            )
            .order_by(Organization.name)
        )
    ).first()
    if host is None:
        raise NotOrganizer(org=org.name, action=action)
    return Access(org=org, host=host)


async def _as_organizer(
    session: AsyncSession,
    campaign_id: int,
    member: Member | None,
    *,
    now: dt.datetime,
    action: str,
    is_bot_admin: bool,
    full: bool = True,
    lock: bool = False,
) -> tuple[Campaign, Access]:
    """The campaign (locked, if asked) and what ``member`` may see of it as organiser."""
    campaign = await (_locked if lock else get_campaign)(session, campaign_id)
    access = await organizer_access(
        session,
        campaign=campaign,
        member=member,
        now=now,
        action=action,
        is_bot_admin=is_bot_admin,
        full=full,
    )
    return campaign, access


async def _audit(
    session: AsyncSession, campaign: Campaign, actor: Member, action: str, now, **details: Any
) -> None:
    await audit.record(
        session,
        action=action,
        now=now,
        actor_member_id=actor.id,
        organization_id=campaign.organization_id,
        target=f"campaign:{campaign.id}",
        details=details or None,
    )


# --- creating, opening, closing ---------------------------------------------------------------


async def create_campaign(
    session: AsyncSession,
    *,
    org: Organization,
    creator: Member,
    draft: CampaignDraft,
    open_now: bool,
    now: dt.datetime,
    is_bot_admin: bool = False,
) -> Campaign:
    """Create a campaign from a checked draft, as a draft or open for sign-ups at once."""
    await organizations.require_organizer(
        session,
        member=creator,
        org=org,
        now=now,
        action="campaign.create",
        is_bot_admin=is_bot_admin,
    )
    check_draft(draft)
    for moment in (draft.starts_at, draft.deadline):
        if moment is not None:
            require_future(moment, now=now)
    campaign = Campaign(
        organization_id=org.id,
        title=clean_title(draft.title),
        description=clean_description(draft.description),
        starts_at=draft.starts_at,
        place=clean_place(draft.place),
        capacity=draft.capacity,
        max_guests=draft.max_guests,
        deadline=draft.deadline,
        questions=list(draft.questions),
        survey_after_minutes=draft.survey_after_minutes,
        status=CampaignStatus.DRAFT,
        created_by=creator.id,
        created_at=now,
    )
    session.add(campaign)
    await session.flush()
    await _audit(session, campaign, creator, "campaign.create", now)
    if open_now:
        await _open(session, campaign, actor=creator, now=now)
    return campaign


async def open_campaign(
    session: AsyncSession,
    *,
    campaign_id: int,
    actor: Member,
    now: dt.datetime,
    is_bot_admin: bool = False,
) -> Campaign:
    """Open a draft (or reopen a closed campaign) for sign-ups."""
    campaign, _ = await _as_organizer(
        session,
        campaign_id,
        actor,
        now=now,
        action="campaign.open",
        is_bot_admin=is_bot_admin,
        lock=True,
    )
    if campaign.status != CampaignStatus.OPEN:
        await _open(session, campaign, actor=actor, now=now)
    return campaign


async def _open(session: AsyncSession, campaign: Campaign, *, actor: Member, now) -> None:
    end = closes_at(campaign)
    if end is not None and now >= end:
        org = await organizations.by_id(session, campaign.organization_id)
        raise DeadlinePassed(
            title=campaign.title, deadline=end, timezone=org.timezone, action="open"
        )
    campaign.status = CampaignStatus.OPEN
    campaign.opened_at = campaign.opened_at or now
    campaign.closed_at = None
    session.add(campaign)
    await _schedule(session, campaign, now=now)
    await _audit(session, campaign, actor, "campaign.open", now)
    await session.flush()


async def _schedule(session: AsyncSession, campaign: Campaign, *, now: dt.datetime) -> None:
    """The deadline and survey jobs as the campaign's times say (replacing earlier ones)."""
    end = closes_at(campaign)
    keys = (f"campaign-{campaign.id}-deadline", f"campaign-{campaign.id}-survey")
    if end is not None and campaign.status == CampaignStatus.OPEN:
        await jobs.schedule(
            session,
            kind=JOB_DEADLINE,
            key=keys[0],
            due_at=end,
            payload={"campaign_id": campaign.id},
            now=now,
        )
    else:
        await jobs.cancel(session, keys[0])
    if (
        campaign.starts_at is not None
        and campaign.survey_after_minutes is not None
        and campaign.status != CampaignStatus.DRAFT
    ):
        await jobs.schedule(
            session,
            kind=JOB_SURVEY,
            key=keys[1],
            due_at=campaign.starts_at + dt.timedelta(minutes=campaign.survey_after_minutes),
            payload={"campaign_id": campaign.id},
            now=now,
        )
    else:
        await jobs.cancel(session, keys[1])


EDITABLE = ("title", "description", "when", "place", "capacity", "guests", "deadline", "survey")


@dataclass(frozen=True)
class Edit:
    """What /edit_campaign changed."""

    campaign: Campaign
    changed: list[str]
    promoted: int


async def edit_campaign(
    session: AsyncSession,
    *,
    campaign_id: int,
    actor: Member,
    text: str,
    now: dt.datetime,
    renderer: Renderer,
    is_bot_admin: bool = False,
) -> Edit:
    """Change a campaign with labelled options ("정원 60 | 마감 12월 18일 18:00").

    More places go to the waiting people at once; fewer than those already confirmed are
    refused (nobody loses a confirmed place). The questions stay as they are, because answers
    were given to them.
    """
    campaign, access = await _as_organizer(
        session,
        campaign_id,
        actor,
        now=now,
        action="campaign.edit",
        is_bot_admin=is_bot_admin,
        lock=True,
    )
    parts = [part.strip() for part in text.split("|") if part.strip()]
    if not parts:
        raise InvalidCampaign(field="edit", reason="usage", number=campaign.id)
    draft = CampaignDraft(
        title=campaign.title,
        description=campaign.description,
        starts_at=campaign.starts_at,
        place=campaign.place,
        capacity=campaign.capacity,
        max_guests=campaign.max_guests,
        deadline=campaign.deadline,
        survey_after_minutes=campaign.survey_after_minutes,
    )
    changed = []
    for part in parts:
        label, value = _labelled(part)
        if label not in EDITABLE:
            raise InvalidCampaign(field="edit", value=part, number=campaign.id)
        draft = _apply(draft, label, value, now=now, timezone=access.org.timezone)
        changed.append(label)
    check_draft(draft)
    if draft.capacity is not None and draft.capacity < campaign.confirmed_seats:
        raise InvalidCampaign(
            field="capacity", reason="below_confirmed", limit=campaign.confirmed_seats
        )
    for name in (
        "title",
        "description",
        "starts_at",
        "place",
        "capacity",
        "max_guests",
        "deadline",
        "survey_after_minutes",
    ):
        setattr(campaign, name, getattr(draft, name))
    session.add(campaign)
    await _schedule(session, campaign, now=now)
    promoted = await _promote(session, campaign, access.org, now=now, renderer=renderer)
    await _announce_milestone(session, campaign, access.org, now=now, renderer=renderer)
    await _audit(session, campaign, actor, "campaign.edit", now, changed=changed)
    await session.flush()
    return Edit(campaign, changed, promoted)


async def close_campaign(
    session: AsyncSession,
    *,
    campaign_id: int,
    actor: Member,
    now: dt.datetime,
    is_bot_admin: bool = False,
) -> Campaign:
    """Close sign-ups early (the waitlist still moves up when someone cancels)."""
    campaign, _ = await _as_organizer(
        session,
        campaign_id,
        actor,
        now=now,
        action="campaign.close",
        is_bot_admin=is_bot_admin,
        lock=True,
    )
    if campaign.status == CampaignStatus.CLOSED:
        return campaign
    campaign.status = CampaignStatus.CLOSED
    campaign.closed_at = now
    session.add(campaign)
    await jobs.cancel(session, f"campaign-{campaign.id}-deadline")
    await _audit(session, campaign, actor, "campaign.close", now)
    await session.flush()
    return campaign


# --- signing up and cancelling ----------------------------------------------------------------


@dataclass(frozen=True)
class SignupOutcome:
    """What signing up (or cancelling) did: the person's card, and who else moved up."""

    view: CardView
    signup: Signup
    new: bool = True
    promoted: int = 0


async def sign_up(
    session: AsyncSession,
    *,
    campaign_id: int,
    member: Member,
    guests: int = 0,
    now: dt.datetime,
    renderer: Renderer,
) -> SignupOutcome:
    """Sign up (with guests): confirmed while seats are left, else on the waitlist.

    A second tap changes nothing and says where the person stands.
    """
    campaign, org, signup = await _lock(session, campaign_id, member.id)
    if signup is not None and signup.status != SignupStatus.CANCELLED:
        rank = await waitlist_rank(session, signup) if _waiting(signup) else None
        return SignupOutcome(_view(campaign, org, now, signup, rank), signup, new=False)
    _require_open(campaign, org, now, action="sign_up")
    if not 0 <= guests <= campaign.max_guests:
        raise TooManyGuests(limit=campaign.max_guests)
    if org.sensitive and await organizations.membership_of(session, member, org) is None:
        raise SensitiveConsentRequired(org=org.name, slug=org.slug)
    host_id = await _host_of(session, org, member) if org.kind == OrgKind.NETWORK else None
    seats = 1 + guests
    confirmed = campaign.capacity is None or seats <= (free_seats(campaign) or 0)
    status = SignupStatus.CONFIRMED if confirmed else SignupStatus.WAITLISTED
    counts = {
        "arrivals": campaign.arrivals + 1,
        "confirmed_seats": campaign.confirmed_seats + (seats if confirmed else 0),
        "confirmed_people": campaign.confirmed_people + int(confirmed),
        "waitlisted_people": campaign.waitlisted_people + int(not confirmed),
    }
    fields = {
        "status": status,
        "guests": guests,
        "position": counts["arrivals"],
        "host_id": host_id,
        "signed_up_at": now,
        "confirmed_at": now if confirmed else None,
        "cancelled_at": None,
    }
    if signup is None:
        # A first sign-up, the common tap: two Core statements instead of the ORM's flush,
        # which cost more CPU than the rest of the tap's database work (the row is locked).
        # The counts first: on SQLite their UPDATE goes with the INSERT, in one trip.
        await session.exec(_update_counts(), params={"campaign_id": campaign.id, **counts})
        row = {"campaign_id": campaign.id, "member_id": member.id, "answers": {}, **fields}
        signup_id = (await session.exec(_insert_signup(), params=row)).scalar_one()
        # Only read from here on (the card, the first question): no ORM state to set up.
        signup = Signup.model_construct(id=signup_id, **row)
        for key, value in counts.items():  # the loaded row as it is now, nothing to flush
            set_committed_value(campaign, key, value)
    else:  # signing up again after cancelling
        for key, value in fields.items():
            setattr(signup, key, value)
        for key, value in counts.items():
            setattr(campaign, key, value)
        session.add(signup)
        session.add(campaign)
    if confirmed:
        await _announce_milestone(session, campaign, org, now=now, renderer=renderer)
    await session.flush()
    # The newest arrival is last in line: its place is the length of the line.
    rank = None if confirmed else campaign.waitlisted_people
    return SignupOutcome(_view(campaign, org, now, signup, rank), signup)


@functools.cache
def _insert_signup():
    """A sign-up's INSERT, returning its id (built once)."""
    table = Signup.__table__
    return sa.insert(table).returning(table.c.id)


_COUNTS = ("arrivals", "confirmed_seats", "confirmed_people", "waitlisted_people")


@functools.cache
def _update_counts():
    """The campaign's counts after a sign-up (built once)."""
    table = Campaign.__table__
    return (
        sa.update(table)
        .prefix_with(WITH_NEXT, dialect="sqlite")
        .where(table.c.id == sa.bindparam("campaign_id"))
        .values({key: sa.bindparam(key) for key in _COUNTS})
    )


def _waiting(signup: Signup) -> bool:
    return signup.status == SignupStatus.WAITLISTED


async def _host_of(session: AsyncSession, network: Organization, member: Member) -> int | None:
    """The network's group the person belongs to (the one they joined first), if any."""
    return (
        await session.exec(
            select(Membership.organization_id)
            .join(NetworkMember, NetworkMember.group_id == Membership.organization_id)
            .where(NetworkMember.network_id == network.id, Membership.member_id == member.id)
            .order_by(Membership.joined_at, Membership.id)
            .limit(1)
        )
    ).first()


async def cancel_signup(
    session: AsyncSession,
    *,
    campaign_id: int,
    member: Member,
    now: dt.datetime,
    renderer: Renderer,
) -> SignupOutcome:
    """Cancel one's sign-up; freed seats go to the first waiting people who fit, who are told."""
    campaign, org, signup = await _lock(session, campaign_id, member.id)
    if signup is None or signup.status == SignupStatus.CANCELLED:
        raise NotSignedUp(title=campaign.title)
    _require_open(campaign, org, now, action="cancel")
    was_confirmed = signup.status == SignupStatus.CONFIRMED
    _leave(campaign, signup, now)
    session.add(signup)
    promoted = 0
    if was_confirmed:
        promoted = await _promote(session, campaign, org, now=now, renderer=renderer)
    session.add(campaign)
    await session.flush()
    return SignupOutcome(_view(campaign, org, now), signup, promoted=promoted)


async def before_cancelling(
    session: AsyncSession, *, campaign_id: int, member: Member, now: dt.datetime
) -> CardView:
    """The person's card before they confirm a cancellation (refused if it could not happen)."""
    view = await card_view(session, campaign_id, now=now, member=member)
    if view.mine is None:
        raise NotSignedUp(title=view.campaign.title)
    _require_open(view.campaign, view.org, now, action="cancel")
    return view


def _leave(campaign: Campaign, signup: Signup, now: dt.datetime) -> None:
    """Take a sign-up out of the counts (the campaign row must be locked)."""
    if signup.status == SignupStatus.CONFIRMED:
        campaign.confirmed_seats -= 1 + signup.guests
        campaign.confirmed_people -= 1
    elif signup.status == SignupStatus.WAITLISTED:
        campaign.waitlisted_people -= 1
    signup.status = SignupStatus.CANCELLED
    signup.cancelled_at = now


async def _promote(
    session: AsyncSession,
    campaign: Campaign,
    org: Organization,
    *,
    now: dt.datetime,
    renderer: Renderer,
) -> int:
    """Confirm the first waiting people who fit in the free seats, in arrival order; tell them."""
    if campaign.capacity is None:
        free = None
    else:
        free = campaign.capacity - campaign.confirmed_seats
        if free <= 0:
            return 0
    promoted: list[tuple[Signup, Member]] = []
    after = 0
    while campaign.waitlisted_people > 0 and (free is None or free > 0):
        query = (
            select(Signup, Member)
            .join(Member, Member.id == Signup.member_id)
            .where(
                Signup.campaign_id == campaign.id,
                Signup.status == SignupStatus.WAITLISTED,
                Signup.position > after,
            )
            .order_by(Signup.position)
            .limit(PROMOTE_CHUNK)
        )
        if free is not None:
            query = query.where(Signup.guests + 1 <= free)
        rows = (await session.exec(query)).all()
        if not rows:
            break
        for signup, member in rows:
            after = signup.position
            seats = 1 + signup.guests
            if free is not None and seats > free:
                continue
            signup.status = SignupStatus.CONFIRMED
            signup.confirmed_at = now
            session.add(signup)
            campaign.confirmed_seats += seats
            campaign.confirmed_people += 1
            campaign.waitlisted_people -= 1
            promoted.append((signup, member))
            if free is not None:
                free -= seats
                if free <= 0:
                    break
    await _queue_personal(
        session,
        [
            (member, f"camp:{campaign.id}:promoted:{signup.id}:{signup.position}", signup)
            for signup, member in promoted
        ],
        template="campaigns/promoted.html",
        batch=f"campaign:{campaign.id}:promoted",
        now=now,
        renderer=renderer,
        campaign=campaign,
        org=org,
    )
    if promoted:
        await _announce_milestone(session, campaign, org, now=now, renderer=renderer)
    return len(promoted)


async def _queue_personal(
    session: AsyncSession,
    recipients: list[tuple[Member, str, Any]],
    *,
    template: str,
    batch: str,
    now: dt.datetime,
    renderer: Renderer,
    not_before: dt.datetime | None = None,
    **values: Any,
) -> int:
    """Queue one message per (member, dedupe key, signup) in each person's language.

    Keys queued before are skipped, so a job that runs again sends nothing twice.
    """
    queued = await _queued_keys(session, [key for _, key, _ in recipients])
    rows = []
    for member, dedupe_key, signup in recipients:
        if member.telegram_user_id is None or member.unreachable_since is not None:
            continue
        if dedupe_key in queued:
            continue
        rendered = renderer.render(template, member.language, signup=signup, **values)
        rows.append(
            {
                "chat_id": member.telegram_user_id,
                "member_id": member.id,
                "payload": outbox.message_payload(rendered.to_payload()),
                "dedupe_key": dedupe_key,
            }
        )
    return await outbox.enqueue_many(session, rows, now=now, batch=batch, not_before=not_before)


async def _queued_keys(session: AsyncSession, keys: list[str]) -> set[str]:
    found: set[str] = set()
    for start in range(0, len(keys), 1000):
        result = await session.exec(
            select(Delivery.dedupe_key).where(Delivery.dedupe_key.in_(keys[start : start + 1000]))
        )
        found.update(result.all())
    return found


def reached_milestone(campaign: Campaign) -> int | None:
    """The highest milestone (50, 80, 100 % of capacity) reached and not yet announced."""
    if not campaign.capacity:
        return None
    reached = [m for m in MILESTONES if campaign.confirmed_seats * 100 >= m * campaign.capacity]
    if not reached or reached[-1] <= campaign.milestone:
        return None
    return reached[-1]


async def _announce_milestone(
    session: AsyncSession,
    campaign: Campaign,
    org: Organization,
    *,
    now: dt.datetime,
    renderer: Renderer,
) -> None:
    """Tell the organisers once per milestone; recorded on the (locked) row in this transaction."""
    milestone = reached_milestone(campaign)
    if milestone is None:
        return
    campaign.milestone = milestone
    session.add(campaign)
    organizers = await _organizers(session, org)
    await _queue_personal(
        session,
        [(m, f"camp:{campaign.id}:milestone:{milestone}:{m.id}", None) for m in organizers],
        template="campaigns/milestone.html",
        batch=f"campaign:{campaign.id}:milestone",
        now=now,
        renderer=renderer,
        campaign=campaign,
        org=org,
        percent=milestone,
    )


async def _organizers(session: AsyncSession, org: Organization) -> list[Member]:
    result = await session.exec(
        select(Member)
        .join(Membership, Membership.member_id == Member.id)
        .where(Membership.organization_id == org.id, Membership.role.in_(ORGANIZER_ROLES))
        .order_by(Member.id)
    )
    return list(result.all())


# --- questions --------------------------------------------------------------------------------


@dataclass(frozen=True)
class AnswerOutcome:
    """After an answer: the campaign, the sign-up, and the next question to ask (if any)."""

    campaign: Campaign
    signup: Signup
    next_index: int | None


async def answer_question(
    session: AsyncSession,
    *,
    campaign_id: int,
    member: Member,
    index: int,
    text: str | None = None,
    choice: int | None = None,
) -> AnswerOutcome:
    """Store the answer to question ``index`` (typed ``text``, or the ``choice``'s number)."""
    campaign = await get_campaign(session, campaign_id)
    signup = await _signup_of(session, campaign.id, member.id)
    if signup is None or signup.status == SignupStatus.CANCELLED:
        raise NotSignedUp(title=campaign.title)
    if not 0 <= index < len(campaign.questions):
        raise InvalidCampaign(field="answer", reason="stale")
    question = campaign.questions[index]
    if question["kind"] == "choice":
        if choice is None and text is not None:  # typed instead of tapped: take an exact match
            typed = _one_line(text).casefold()
            matches = [i for i, c in enumerate(question["choices"]) if c.casefold() == typed]
            choice = matches[0] if matches else None
        if choice is None or not 0 <= choice < len(question["choices"]):
            raise InvalidCampaign(field="answer", reason="use_buttons")
        value = question["choices"][choice]
    else:
        value = _one_line(text or "")
        limit = question.get("max_length", TEXT_ANSWER_LIMIT)
        if not value:
            raise InvalidCampaign(field="answer", reason="empty")
        if len(value) > limit:
            raise AnswerTooLong(limit=limit, length=len(value))
    signup.answers = {**signup.answers, str(index): value}  # a new dict: the JSON column sees it
    session.add(signup)
    await session.flush()
    return AnswerOutcome(campaign, signup, first_unanswered(campaign, signup))


# --- organisers' views ------------------------------------------------------------------------


@dataclass(frozen=True)
class HostCount:
    """A co-host group's part of a network campaign."""

    name: str
    confirmed_people: int
    confirmed_seats: int
    waitlisted: int


@dataclass(frozen=True)
class Overview:
    """What an organiser sees of a campaign: the card, the co-hosts' counts, the survey."""

    view: CardView
    access: Access
    hosts: list[HostCount]
    survey_count: int
    link_payload: str


async def overview(
    session: AsyncSession,
    *,
    campaign_id: int,
    member: Member,
    now: dt.datetime,
    is_bot_admin: bool = False,
) -> Overview:
    """The organiser's view of a campaign (co-host organisers see it too)."""
    campaign, access = await _as_organizer(
        session,
        campaign_id,
        member,
        now=now,
        action="campaign.view",
        is_bot_admin=is_bot_admin,
        full=False,
    )
    hosts = await host_counts(session, campaign, access.org)
    survey_count = (
        await session.exec(
            select(sa.func.count())
            .select_from(SurveyResponse)
            .where(SurveyResponse.campaign_id == campaign.id)
        )
    ).one()
    return Overview(
        view=_view(campaign, access.org, now),
        access=access,
        hosts=hosts,
        survey_count=survey_count,
        link_payload=f"camp_{campaign.id}",
    )


async def overview_or_card(
    session: AsyncSession,
    *,
    campaign_id: int,
    member: Member,
    now: dt.datetime,
    is_bot_admin: bool = False,
) -> Overview | CardView:
    """The organisers' overview for those who organise the campaign; the card for others."""
    try:
        return await overview(
            session, campaign_id=campaign_id, member=member, now=now, is_bot_admin=is_bot_admin
        )
    except NotOrganizer:
        return await card_view(session, campaign_id, now=now, member=member)


async def host_counts(
    session: AsyncSession, campaign: Campaign, org: Organization
) -> list[HostCount]:
    """Per co-host group counts for a network's campaign (empty for a group's campaign)."""
    if org.kind != OrgKind.NETWORK:
        return []
    groups = await organizations.network_groups(session, org)
    confirmed = sa.case((Signup.status == SignupStatus.CONFIRMED, 1), else_=0)
    result = await session.exec(
        select(
            Signup.host_id,
            sa.func.sum(confirmed),
            sa.func.sum(confirmed * (1 + Signup.guests)),
            sa.func.sum(sa.case((Signup.status == SignupStatus.WAITLISTED, 1), else_=0)),
        )
        .where(Signup.campaign_id == campaign.id, Signup.status != SignupStatus.CANCELLED)
        .group_by(Signup.host_id)
    )
    counts = {host: (int(p or 0), int(s or 0), int(w or 0)) for host, p, s, w in result.all()}
    rows = [HostCount(g.name, *counts.pop(g.id, (0, 0, 0))) for g in groups]
    others = [sum(values) for values in zip(*counts.values(), strict=True)] if counts else None
    if others:
        rows.append(HostCount("", *others))  # people in none of the groups (or a group that left)
    return rows


@dataclass(frozen=True)
class SignupRow:
    """One line of /signups: the sign-up, the person's name and their co-host group."""

    signup: Signup
    name: str
    host: str
    rank: int | None  # waitlist place


@dataclass(frozen=True)
class SignupPage:
    """A page of /signups."""

    overview: Overview
    rows: list[SignupRow]
    offset: int
    total: int


async def signups_page(
    session: AsyncSession,
    *,
    campaign_id: int,
    member: Member,
    now: dt.datetime,
    offset: int = 0,
    limit: int = 15,
    is_bot_admin: bool = False,
) -> SignupPage:
    """Confirmed people then the waitlist, in arrival order, with their answers (paged)."""
    summary = await overview(
        session, campaign_id=campaign_id, member=member, now=now, is_bot_admin=is_bot_admin
    )
    campaign = summary.view.campaign
    host_id = summary.access.host.id if summary.access.host else None
    base = _active(campaign.id, host_id)
    total = (await session.exec(select(sa.func.count()).select_from(Signup).where(*base))).one()
    host_org = sa.orm.aliased(Organization)
    result = await session.exec(
        select(Signup, Member.display_name, host_org.name)
        .join(Member, Member.id == Signup.member_id)
        .outerjoin(host_org, host_org.id == Signup.host_id)
        .where(*base)
        .order_by(_status_rank(), Signup.position)
        .offset(offset)
        .limit(limit)
    )
    rows = []
    next_rank = None  # the whole waitlist's ranks follow each other on a page
    for signup, name, host in result.all():
        rank = None
        if signup.status == SignupStatus.WAITLISTED:
            if next_rank is None or host_id is not None:
                next_rank = await waitlist_rank(session, signup)
            rank, next_rank = next_rank, next_rank + 1
        rows.append(SignupRow(signup, name, host or "", rank))
    return SignupPage(summary, rows, offset, total)


def _active(campaign_id: int, host_id: int | None) -> list[Any]:
    conditions = [Signup.campaign_id == campaign_id, Signup.status != SignupStatus.CANCELLED]
    if host_id is not None:
        conditions.append(Signup.host_id == host_id)
    return conditions


def _status_rank():
    return sa.case(
        (Signup.status == SignupStatus.CONFIRMED, 0),
        (Signup.status == SignupStatus.WAITLISTED, 1),
        else_=2,
    )


# --- exports ----------------------------------------------------------------------------------


EXPORT_COLUMNS = (
    "number",
    "name",
    "status",
    "waitlist",
    "guests",
    "seats",
    "group",
    "signed_up_at",
    "confirmed_at",
    "cancelled_at",
)


@dataclass(frozen=True)
class Export:
    """A spreadsheet file ready to send."""

    filename: str
    data: bytes


async def export_signups(
    session: AsyncSession,
    *,
    campaign_id: int,
    member: Member,
    fmt: str,
    labels: dict[str, str],
    now: dt.datetime,
    is_bot_admin: bool = False,
) -> Export:
    """Every sign-up (confirmed, waitlist, cancelled) with the answers, as CSV or XLSX.

    ``labels`` gives the column headers and status words in the organiser's language.
    Rows stream from the database into the file, so 100,000 sign-ups stay small in memory.
    """
    campaign, access = await _as_organizer(
        session,
        campaign_id,
        member,
        now=now,
        action="campaign.export",
        is_bot_admin=is_bot_admin,
        full=False,
    )
    host_id = access.host.id if access.host else None
    network = access.org.kind == OrgKind.NETWORK
    columns = [c for c in EXPORT_COLUMNS if network or c != "group"]
    headers = [labels[c] for c in columns] + [q["prompt"] for q in campaign.questions]
    rows = signup_rows(session, campaign, host_id=host_id, columns=columns, labels=labels)
    data = await _spreadsheet(fmt, headers, rows, title=campaign.title, tz=access.org.timezone)
    await _audit(session, campaign, member, "campaign.export", now, format=fmt)
    return Export(f"campaign-{campaign.id}-signups-{now:%Y%m%d}.{fmt}", data)


async def signup_rows(
    session: AsyncSession,
    campaign: Campaign,
    *,
    host_id: int | None,
    columns: list[str],
    labels: dict[str, str],
) -> AsyncIterator[list[Any]]:
    """The export's rows, streamed from the database in arrival order per status.

    Plain columns, not ORM objects: 100,000 rows stay cheap in time and memory.
    """
    host_org = sa.orm.aliased(Organization)
    conditions = [Signup.campaign_id == campaign.id]
    if host_id is not None:
        conditions.append(Signup.host_id == host_id)
    statement = (
        select(
            Signup.status,
            Signup.guests,
            Signup.signed_up_at,
            Signup.confirmed_at,
            Signup.cancelled_at,
            Signup.answers,
            Member.display_name,
            host_org.name,
        )
        .join(Member, Member.id == Signup.member_id)
        .outerjoin(host_org, host_org.id == Signup.host_id)
        .where(*conditions)
        .order_by(_status_rank(), Signup.position)
        .execution_options(yield_per=1000)
    )
    keys = [str(i) for i in range(len(campaign.questions))]
    waiting = 0
    number = 0
    async for (
        status,
        guests,
        signed_up,
        confirmed,
        cancelled,
        answers,
        name,
        host,
    ) in await session.stream(statement):
        number += 1
        rank = None
        if status == SignupStatus.WAITLISTED:
            waiting += 1
            rank = waiting
        values = {
            "number": number,
            "name": name or labels["deleted"],
            "status": labels[status],
            "waitlist": rank,
            "guests": guests,
            "seats": 1 + guests,
            "group": host or "",
            "signed_up_at": signed_up,
            "confirmed_at": confirmed,
            "cancelled_at": cancelled,
        }
        yield [values[c] for c in columns] + [answers.get(key, "") for key in keys]


async def _spreadsheet(fmt: str, headers, rows, *, title: str, tz: str) -> bytes:
    if fmt == "csv":
        return await exports.csv_bytes(headers, rows, timezone=tz)
    if fmt == "xlsx":
        return await exports.xlsx_bytes(headers, rows, sheet_title=title, timezone=tz)
    raise InvalidCampaign(field="format", value=fmt)


# --- announcements to the sign-ups ------------------------------------------------------------


@dataclass(frozen=True)
class Announcement:
    """An announcement queued to a campaign's sign-ups."""

    campaign: Campaign
    queued: int
    skipped: int  # muted, unreachable or deleted
    not_before: dt.datetime | None  # held back by the quiet hours until then


def clean_notice(text: str) -> str:
    """An announcement's text, or InvalidCampaign saying the limit."""
    notice = text.strip()
    if not notice:
        raise InvalidCampaign(field="notice", reason="empty")
    if len(notice) > MAX_NOTICE:
        raise InvalidCampaign(field="notice", reason="too_long", limit=MAX_NOTICE)
    return notice


async def notice_audience(
    session: AsyncSession,
    *,
    campaign_id: int,
    member: Member,
    now: dt.datetime,
    is_bot_admin: bool = False,
) -> tuple[Campaign, int, int]:
    """Before announcing: the campaign and how many confirmed and waitlisted people it has."""
    campaign, _ = await _as_organizer(
        session, campaign_id, member, now=now, action="campaign.notice", is_bot_admin=is_bot_admin
    )
    return campaign, campaign.confirmed_people, campaign.waitlisted_people


async def announce(
    session: AsyncSession,
    *,
    campaign_id: int,
    actor: Member,
    text: str,
    include_waitlisted: bool,
    now: dt.datetime,
    renderer: Renderer,
    quiet_hours: tuple[str, str] | None = None,
    is_bot_admin: bool = False,
) -> Announcement:
    """Queue an organiser's message to everyone confirmed (and, if asked, waitlisted).

    Like a broadcast it skips people who muted announcements or cannot be reached, and waits
    for the end of the quiet hours (in the organisation's time zone).
    """
    notice = clean_notice(text)
    campaign, access = await _as_organizer(
        session,
        campaign_id,
        actor,
        now=now,
        action="campaign.notice",
        is_bot_admin=is_bot_admin,
        lock=True,
    )
    statuses = [SignupStatus.CONFIRMED]
    if include_waitlisted:
        statuses.append(SignupStatus.WAITLISTED)
    result = await session.exec(
        select(Member.id, Member.telegram_user_id, Member.language, Member.muted)
        .join(Signup, Signup.member_id == Member.id)
        .where(
            Signup.campaign_id == campaign.id,
            Signup.status.in_(statuses),
            Member.deleted_at.is_(None),
        )
        .order_by(Signup.position)
    )
    campaign.notices += 1
    number = campaign.notices
    session.add(campaign)
    payloads: dict[str, dict[str, Any]] = {}
    rows, skipped = [], 0
    recipients = result.all()
    unreachable = await _unreachable_ids(session, [r[0] for r in recipients])
    for member_id, telegram_user_id, language, muted in recipients:
        if muted or telegram_user_id is None or member_id in unreachable:
            skipped += 1
            continue
        if language not in payloads:
            rendered = renderer.render(
                "campaigns/notice.html", language, campaign=campaign, org=access.org, text=notice
            )
            payloads[language] = outbox.message_payload(rendered.to_payload())
        rows.append(
            {
                "chat_id": telegram_user_id,
                "member_id": member_id,
                "payload": payloads[language],
                "dedupe_key": f"camp:{campaign.id}:notice:{number}:{member_id}",
            }
        )
    not_before = quiet_until(now, access.org.timezone, quiet_hours) if quiet_hours else None
    queued = await outbox.enqueue_many(
        session,
        rows,
        now=now,
        batch=f"campaign:{campaign.id}:notice:{number}",
        not_before=not_before,
    )
    await _audit(
        session,
        campaign,
        actor,
        "campaign.notice",
        now,
        queued=queued,
        skipped=skipped,
        waitlisted=include_waitlisted,
    )
    return Announcement(campaign, queued, skipped, not_before)


async def _unreachable_ids(session: AsyncSession, member_ids: list[int]) -> set[int]:
    ids: set[int] = set()
    for start in range(0, len(member_ids), 1000):
        chunk = member_ids[start : start + 1000]
        result = await session.exec(
            select(Member.id).where(Member.id.in_(chunk), Member.unreachable_since.is_not(None))
        )
        ids.update(result.all())
    return ids


def quiet_until(
    now: dt.datetime, timezone: str, quiet_hours: tuple[str, str]
) -> dt.datetime | None:
    """If ``now`` falls in the quiet hours ("22:00", "08:00") of the zone, when they end."""
    zone = ZoneInfo(timezone)
    local = now.astimezone(zone)
    start, end = (dt.time.fromisoformat(value) for value in quiet_hours)
    if start == end:
        return None
    moment = local.time()
    inside = start <= moment < end if start < end else moment >= start or moment < end
    if not inside:
        return None
    day = local.date() if moment < end else local.date() + dt.timedelta(days=1)
    return dt.datetime.combine(day, end, tzinfo=zone).astimezone(dt.UTC)


# --- scheduled: the deadline and the survey ---------------------------------------------------


async def deadline_reached(
    session: AsyncSession, *, campaign_id: int, now: dt.datetime, renderer: Renderer
) -> Campaign | None:
    """Sign-ups have ended: tell the organisers the final counts (the cards update too)."""
    campaign = await session.get(Campaign, campaign_id)
    if campaign is None or campaign.status != CampaignStatus.OPEN:
        return None
    org = await organizations.by_id(session, campaign.organization_id)
    organizers = await _organizers(session, org)
    await _queue_personal(
        session,
        [(m, f"camp:{campaign.id}:deadline:{m.id}", None) for m in organizers],
        template="campaigns/deadline_summary.html",
        batch=f"campaign:{campaign.id}:deadline",
        now=now,
        renderer=renderer,
        campaign=campaign,
        org=org,
    )
    return campaign


async def send_survey(
    session: AsyncSession,
    *,
    campaign_id: int,
    now: dt.datetime,
    renderer: Renderer,
    quiet_hours: tuple[str, str] | None = None,
) -> int:
    """After the event: everyone confirmed gets the 1–5 rating (after the quiet hours, if it
    is night in the organisation's zone); returns how many were queued."""
    campaign = await session.get(Campaign, campaign_id)
    if campaign is None or campaign.status == CampaignStatus.DRAFT:
        return 0
    org = await organizations.by_id(session, campaign.organization_id)
    not_before = quiet_until(now, org.timezone, quiet_hours) if quiet_hours else None
    result = await session.exec(
        select(Member)
        .join(Signup, Signup.member_id == Member.id)
        .where(Signup.campaign_id == campaign.id, Signup.status == SignupStatus.CONFIRMED)
        .order_by(Signup.position)
    )
    recipients = [(m, f"camp:{campaign.id}:survey:{m.id}", None) for m in result.all()]
    return await _queue_personal(
        session,
        recipients,
        template="campaigns/survey.html",
        batch=f"campaign:{campaign.id}:survey",
        now=now,
        renderer=renderer,
        not_before=not_before,
        campaign=campaign,
        org=org,
    )


async def rate(
    session: AsyncSession,
    *,
    campaign_id: int,
    member: Member,
    rating: int,
    now: dt.datetime,
) -> SurveyResponse:
    """A confirmed participant rates the event 1–5 (a new tap changes the rating)."""
    campaign = await get_campaign(session, campaign_id)
    if not 1 <= rating <= 5:
        raise InvalidCampaign(field="rating", reason="range")
    signup = await _signup_of(session, campaign.id, member.id)
    if signup is None or signup.status != SignupStatus.CONFIRMED:
        raise NotAttendee(title=campaign.title)
    response = await _response_of(session, campaign.id, member.id)
    if response is None:
        response = SurveyResponse(campaign_id=campaign.id, member_id=member.id, rating=rating)
    response.rating = rating
    response.answered_at = now
    session.add(response)
    await session.flush()
    return response


async def _response_of(
    session: AsyncSession, campaign_id: int, member_id: int
) -> SurveyResponse | None:
    return (
        await session.exec(
            select(SurveyResponse).where(
                SurveyResponse.campaign_id == campaign_id, SurveyResponse.member_id == member_id
            )
        )
    ).first()


async def comment(
    session: AsyncSession,
    *,
    campaign_id: int,
    member: Member,
    text: str,
    now: dt.datetime,
) -> SurveyResponse:
    """The optional comment after the rating (at most MAX_COMMENT characters)."""
    campaign = await get_campaign(session, campaign_id)
    response = await _response_of(session, campaign.id, member.id)
    if response is None:
        raise NotAttendee(title=campaign.title)
    value = text.strip()
    if not value:
        raise InvalidCampaign(field="comment", reason="empty")
    if len(value) > MAX_COMMENT:
        raise AnswerTooLong(limit=MAX_COMMENT, length=len(value))
    response.comment = value
    response.answered_at = now
    session.add(response)
    await session.flush()
    return response


@dataclass(frozen=True)
class SurveyResults:
    """The survey as organisers see it."""

    campaign: Campaign
    org: Organization
    count: int
    average: float | None
    distribution: dict[int, int]  # rating -> how many
    comments: list[SurveyResponse]  # the latest few
    comment_count: int


async def survey_results(
    session: AsyncSession,
    *,
    campaign_id: int,
    member: Member,
    now: dt.datetime,
    latest: int = 10,
    is_bot_admin: bool = False,
) -> SurveyResults:
    """Average, distribution and the latest comments (for organisers and co-hosts)."""
    campaign, access = await _as_organizer(
        session,
        campaign_id,
        member,
        now=now,
        action="campaign.survey",
        is_bot_admin=is_bot_admin,
        full=False,
    )
    result = await session.exec(
        select(SurveyResponse.rating, sa.func.count())
        .where(SurveyResponse.campaign_id == campaign.id)
        .group_by(SurveyResponse.rating)
    )
    distribution = {rating: 0 for rating in range(1, 6)}
    for rating, count in result.all():
        distribution[rating] = count
    count = sum(distribution.values())
    average = sum(r * c for r, c in distribution.items()) / count if count else None
    with_comment = [SurveyResponse.campaign_id == campaign.id, SurveyResponse.comment != ""]
    comments = (
        await session.exec(
            select(SurveyResponse)
            .where(*with_comment)
            .order_by(SurveyResponse.answered_at.desc(), SurveyResponse.id.desc())
            .limit(latest)
        )
    ).all()
    comment_count = (
        await session.exec(
            select(sa.func.count()).select_from(SurveyResponse).where(*with_comment)
        )
    ).one()
    return SurveyResults(
        campaign, access.org, count, average, distribution, list(comments), comment_count
    )


async def export_survey(
    session: AsyncSession,
    *,
    campaign_id: int,
    member: Member,
    fmt: str,
    labels: dict[str, str],
    now: dt.datetime,
    is_bot_admin: bool = False,
) -> Export:
    """The ratings and comments (without names) as CSV or XLSX."""
    results = await survey_results(
        session,
        campaign_id=campaign_id,
        member=member,
        now=now,
        latest=0,
        is_bot_admin=is_bot_admin,
    )
    campaign = results.campaign
    statement = (
        select(SurveyResponse.rating, SurveyResponse.comment, SurveyResponse.answered_at)
        .where(SurveyResponse.campaign_id == campaign.id)
        .order_by(SurveyResponse.answered_at, SurveyResponse.id)
    )

    async def rows() -> AsyncIterator[list[Any]]:
        async for rating, text, answered_at in await session.stream(statement):
            yield [rating, text, answered_at]

    headers = [labels["rating"], labels["comment"], labels["answered_at"]]
    data = await _spreadsheet(fmt, headers, rows(), title=campaign.title, tz=results.org.timezone)
    return Export(f"campaign-{campaign.id}-survey-{now:%Y%m%d}.{fmt}", data)


# --- lists, cards, audiences, /me -------------------------------------------------------------


async def org_campaigns(
    session: AsyncSession, org: Organization, *, offset: int = 0, limit: int = 10
) -> tuple[list[tuple[Campaign, bool]], int]:
    """The organisation's campaigns, newest first, with its networks' campaigns it co-hosts.

    Each item is (campaign, co_hosted).
    """
    networks = select(NetworkMember.network_id).where(NetworkMember.group_id == org.id)
    condition = sa.or_(
        Campaign.organization_id == org.id,
        sa.and_(Campaign.organization_id.in_(networks), Campaign.status != CampaignStatus.DRAFT),
    )
    total = (
        await session.exec(select(sa.func.count()).select_from(Campaign).where(condition))
    ).one()
    result = await session.exec(
        select(Campaign).where(condition).order_by(Campaign.id.desc()).offset(offset).limit(limit)
    )
    return [(c, c.organization_id != org.id) for c in result.all()], total


async def postable(session: AsyncSession, org: Organization) -> list[Campaign]:
    """Open campaigns of the organisation (for /post)."""
    result = await session.exec(
        select(Campaign)
        .where(Campaign.organization_id == org.id, Campaign.status == CampaignStatus.OPEN)
        .order_by(Campaign.id.desc())
    )
    return list(result.all())


async def owner(session: AsyncSession, campaign_id: int) -> int | None:
    """The organisation a campaign belongs to (for /post)."""
    campaign = await session.get(Campaign, campaign_id)
    return campaign.organization_id if campaign else None


async def announceable(session: AsyncSession, org: Organization) -> list[Campaign]:
    """Campaigns whose sign-ups can be addressed (every one but drafts), newest first."""
    result = await session.exec(
        select(Campaign)
        .where(Campaign.organization_id == org.id, Campaign.status != CampaignStatus.DRAFT)
        .order_by(Campaign.id.desc())
    )
    return list(result.all())


AUDIENCE_VARIANTS = ("confirmed", "waitlisted")


def audience_member_ids(campaign_id: int, variant: str):
    """A SELECT of the member ids confirmed (or waitlisted) for a campaign."""
    if variant not in AUDIENCE_VARIANTS:
        raise ValueError(f"unknown campaign audience {variant!r}")
    return select(Signup.member_id).where(
        Signup.campaign_id == campaign_id, Signup.status == SignupStatus(variant)
    )


@dataclass(frozen=True)
class MySignup:
    """One of a person's sign-ups for /me."""

    campaign: Campaign
    org: Organization
    signup: Signup
    rank: int | None


async def my_signups(
    session: AsyncSession, member: Member, *, now: dt.datetime, limit: int = 10
) -> list[MySignup]:
    """The person's current sign-ups (confirmed or waiting) for events not long past."""
    recent = now - dt.timedelta(days=1)
    result = await session.exec(
        select(Signup, Campaign, Organization)
        .join(Campaign, Campaign.id == Signup.campaign_id)
        .join(Organization, Organization.id == Campaign.organization_id)
        .where(
            Signup.member_id == member.id,
            Signup.status != SignupStatus.CANCELLED,
            sa.or_(Campaign.starts_at.is_(None), Campaign.starts_at >= recent),
        )
        .order_by(Campaign.starts_at.is_(None), Campaign.starts_at, Campaign.id)
        .limit(limit)
    )
    items = []
    for signup, campaign, org in result.all():
        rank = await waitlist_rank(session, signup) if _waiting(signup) else None
        items.append(MySignup(campaign, org, signup, rank))
    return items


# --- privacy (/mydata, /forget) ---------------------------------------------------------------


async def export_member(session: AsyncSession, member: Member) -> dict[str, Any]:
    """A person's sign-ups with their answers, and their survey responses."""
    signups = await session.exec(
        select(Signup, Campaign, Organization)
        .join(Campaign, Campaign.id == Signup.campaign_id)
        .join(Organization, Organization.id == Campaign.organization_id)
        .where(Signup.member_id == member.id)
        .order_by(Signup.id)
    )
    responses = await session.exec(
        select(SurveyResponse, Campaign)
        .join(Campaign, Campaign.id == SurveyResponse.campaign_id)
        .where(SurveyResponse.member_id == member.id)
        .order_by(SurveyResponse.id)
    )

    def iso(moment: dt.datetime | None) -> str | None:
        return moment.isoformat() if moment else None

    return {
        "signups": [
            {
                "campaign": campaign.title,
                "campaign_id": campaign.id,
                "organization": org.name,
                "status": str(signup.status),
                "guests": signup.guests,
                "signed_up_at": iso(signup.signed_up_at),
                "confirmed_at": iso(signup.confirmed_at),
                "cancelled_at": iso(signup.cancelled_at),
                "answers": _named_answers(campaign, signup),
            }
            for signup, campaign, org in signups.all()
        ],
        "survey_responses": [
            {
                "campaign": campaign.title,
                "rating": response.rating,
                "comment": response.comment,
                "answered_at": iso(response.answered_at),
            }
            for response, campaign in responses.all()
        ],
    }


def _named_answers(campaign: Campaign, signup: Signup) -> dict[str, str]:
    """Answers keyed by their question's text."""
    prompts = [q["prompt"] for q in campaign.questions]
    return {
        prompts[int(key)] if int(key) < len(prompts) else key: value
        for key, value in signup.answers.items()
    }


async def erase_member(session: AsyncSession, member: Member, now: dt.datetime) -> None:
    """Erase answers and comments; confirmed seats stay as anonymous counts.

    Waiting places are given up (a deleted person could not be told of a seat), and survey
    ratings stay without the link to the person.
    """
    waiting = await session.exec(
        select(Signup.campaign_id).where(
            Signup.member_id == member.id, Signup.status == SignupStatus.WAITLISTED
        )
    )
    for campaign_id in waiting.all():
        campaign, _, signup = await _lock(session, campaign_id, member.id)
        _leave(campaign, signup, now)
        session.add_all([campaign, signup])
    await session.flush()
    await session.exec(sa.update(Signup).where(Signup.member_id == member.id).values(answers={}))
    await session.exec(
        sa.update(SurveyResponse)
        .where(SurveyResponse.member_id == member.id)
        .values(comment="", member_id=None)
    )

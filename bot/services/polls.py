"""Polls and binding member votes: create, vote (open or secret), close, count, verify.

Counting never loads ballots into Python: totals, turnout, groups and every instant-runoff
round are SQL aggregates over one covering index.

Secret ballots. The voter roll (``PollVoter``: who voted) and the ballots (``PollBallot``: what
was chosen, under a random receipt code) are written in the same transaction, so a vote is
recorded exactly once or not at all. A ballot row carries no member id and no time, and its
key is random. What else could tie the two tables together, and what we do about it:

- *Row order.* SQLite keeps ballots in a WITHOUT ROWID table ordered by their random key, so
  there is no hidden rowid counting up. PostgreSQL stores rows in the order they were written
  (``ctid``): each new ballot is written together with up to ``MIX_SAMPLE`` other ballots of
  the same poll, which are taken out and written back with it in random key order, and at
  closing the whole ballot box is written again in random key order.
- *The writing transaction.* On PostgreSQL every row carries the id of the transaction that
  wrote it (``xmin``), and the roll row shares it with the ballot. Because of the mixing above,
  the ballot shares it with up to ``MIX_SAMPLE`` others (with every ballot while a poll has
  fewer than that), and after closing every ballot of the poll carries the same one.
- *Elsewhere.* Votes are not organiser actions and write no audit entry; the receipt goes to
  the voter in a direct reply, never through the outbox (which stores what it sends); the
  ranked and multiple-choice panels keep the voter's choices in the buttons of their own
  chat, never in a conversation state; nothing here logs a vote.
- *What a result shows anyway.* A ballot keeps its weight (for weighted counts) and, in a
  network's vote, the voter's group (for results per group). Where one voter is alone with a
  weight or in a group, the published result itself would show their choice; results per
  group are therefore shown only for groups with at least ``MIN_GROUP_RESULTS`` voters.
"""

from __future__ import annotations

import datetime as dt
import math
import re
import secrets
import weakref
from collections import defaultdict
from collections.abc import AsyncIterator, Sequence
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql
from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession

from bot.config import TiersConfig
from bot.services import audit, jobs, organizations
from bot.services.dialects import dialect_name, is_postgresql, upsert_insert
from bot.services.errors import DomainError, InvalidInput, PermissionDenied, StaleButton
from bot.services.timeparse import parse_duration, parse_when, require_future
from models import (
    BallotKind,
    Eligibility,
    Member,
    Membership,
    NetworkMember,
    Organization,
    OrgKind,
    Poll,
    PollBallot,
    PollKind,
    PollOption,
    PollStatus,
    PollVote,
    PollVoter,
    QuorumKind,
    Tier,
    Weighting,
)

MAX_QUESTION = 300
MAX_OPTION = 100
MAX_OPTIONS = 12
MIN_OPTIONS = 2
MAX_REASON = 500
PROPOSAL_CODES = ("agree", "abstain", "disagree", "block")
# Receipt codes: 8 characters of Crockford's base32 (no I, L, O, U): 40 bits, typed as XXXX-XXXX.
RECEIPT_ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
RECEIPT_LENGTH = 8
# Other ballots re-written with each new one on PostgreSQL (see the module docstring).
MIX_SAMPLE = 255
# Results per group of a secret network vote: smaller groups are shown together.
MIN_GROUP_RESULTS = 3
CLOSE_JOB = "poll.close"
NUDGE_JOB = "poll.nudge"


# --- errors -----------------------------------------------------------------------------------


class PollError(DomainError):
    """Base of the polls feature's errors (messages in polls/errors.html)."""

    feature = "polls"


class PollInputError(InvalidInput):
    """Input for a poll that cannot be used; ``params['field']`` says which (poll_*)."""

    feature = "polls"


class PollNotFound(PollError):
    """No such poll (or it was deleted)."""

    code = "not_found"


class PollClosed(PollError):
    """The poll no longer takes votes."""

    code = "closed"


class NotEligible(PollError):
    """This person may not vote in this poll."""

    code = "not_eligible"


class AlreadyVoted(PollError):
    """A secret ballot was already cast by this person; it cannot be changed."""

    code = "already_voted"


class ResultsHidden(PollError):
    """Results are shown only after closing (or to the poll's people)."""

    code = "results_hidden"


class ResultsForMembers(ResultsHidden, PermissionDenied):
    """A members-only poll's results asked for by someone outside it (a refusal, audited)."""


class ReceiptNotFound(PollError):
    """No ballot has this receipt code."""

    code = "receipt_not_found"


class VerifyNotYet(PollError):
    """Receipts can be checked only once the poll has closed."""

    code = "verify_not_yet"


class NoReasonHere(PollError):
    """Reasons are for open proposals one has voted in."""

    code = "no_reason"


# --- drafts: what a poll will be, before it exists --------------------------------------------


@dataclass
class PollDraft:
    """The settings of a poll being created (kept in the conversation state as JSON)."""

    question: str = ""
    options: list[str] = field(default_factory=list)
    kind: PollKind = PollKind.SINGLE
    max_choices: int = 0  # multiple choice: 0 means as many as there are options
    ballot: BallotKind = BallotKind.OPEN
    eligibility: Eligibility = Eligibility.ANYONE
    weighting: Weighting = Weighting.EQUAL
    quorum_kind: QuorumKind = QuorumKind.NONE
    quorum_value: int = 0
    live_results: bool | None = None  # None: live for open ballots, after closing for secret
    closes_at: dt.datetime | None = None
    nudge_minutes: int | None = None

    @property
    def results_live(self) -> bool:
        """Whether counts are shown while voting goes on."""
        if self.live_results is None:
            return self.ballot == BallotKind.OPEN
        return self.live_results

    @property
    def nudge_at(self) -> dt.datetime | None:
        """When the reminder to non-voters goes out."""
        if self.closes_at is None or not self.nudge_minutes:
            return None
        return self.closes_at - dt.timedelta(minutes=self.nudge_minutes)

    @property
    def choices_limit(self) -> int:
        """At most this many options in one multiple-choice vote."""
        return self.max_choices or len(self.options)

    def to_data(self) -> dict[str, Any]:
        """A JSON-able form."""
        data = asdict(self)
        data["closes_at"] = self.closes_at.isoformat() if self.closes_at else None
        return {
            key: str(value) if hasattr(value, "value") else value for key, value in data.items()
        }

    @classmethod
    def from_data(cls, data: dict[str, Any]) -> PollDraft:
        """Rebuild from :meth:`to_data`."""
        closes_at = data.get("closes_at")
        return cls(
            question=data.get("question", ""),
            options=list(data.get("options", [])),
            kind=PollKind(data.get("kind", PollKind.SINGLE)),
            max_choices=int(data.get("max_choices", 0)),
            ballot=BallotKind(data.get("ballot", BallotKind.OPEN)),
            eligibility=Eligibility(data.get("eligibility", Eligibility.ANYONE)),
            weighting=Weighting(data.get("weighting", Weighting.EQUAL)),
            quorum_kind=QuorumKind(data.get("quorum_kind", QuorumKind.NONE)),
            quorum_value=int(data.get("quorum_value", 0)),
            live_results=data.get("live_results"),
            closes_at=dt.datetime.fromisoformat(closes_at) if closes_at else None,
            nudge_minutes=data.get("nudge_minutes"),
        )


def clean_text(text: str) -> str:
    """Single spaces, no control characters."""
    return " ".join("".join(ch for ch in text if ch.isprintable() or ch == " ").split())


def check_question(text: str) -> str:
    """The question as stored, or InvalidInput."""
    question = clean_text(text)
    if not question:
        raise PollInputError(field="poll_question", reason="empty")
    if len(question) > MAX_QUESTION:
        raise PollInputError(field="poll_question", reason="too_long", limit=MAX_QUESTION)
    return question


def check_options(options: Sequence[str]) -> list[str]:
    """The options as stored (2–12, distinct, each at most 100 characters), or InvalidInput."""
    cleaned = [clean_text(option) for option in options]
    cleaned = [option for option in cleaned if option]
    if len(cleaned) < MIN_OPTIONS:
        raise PollInputError(field="poll_options", reason="too_few", limit=MIN_OPTIONS)
    if len(cleaned) > MAX_OPTIONS:
        raise PollInputError(field="poll_options", reason="too_many", limit=MAX_OPTIONS)
    for option in cleaned:
        if len(option) > MAX_OPTION:
            raise PollInputError(
                field="poll_options", reason="too_long", limit=MAX_OPTION, value=option[:30]
            )
    seen: set[str] = set()
    for option in cleaned:
        if option.casefold() in seen:
            raise PollInputError(field="poll_options", reason="duplicate", value=option)
        seen.add(option.casefold())
    return cleaned


def validate_draft(draft: PollDraft, *, now: dt.datetime) -> PollDraft:
    """Check a whole draft before it becomes a poll; InvalidInput names what is wrong."""
    draft.question = check_question(draft.question)
    if draft.kind == PollKind.PROPOSAL:
        if draft.options:
            raise PollInputError(field="poll_options", reason="proposal")
    else:
        draft.options = check_options(draft.options)
    if draft.kind == PollKind.MULTIPLE and not 0 <= draft.max_choices <= len(draft.options):
        raise PollInputError(field="poll_max", limit=len(draft.options))
    if draft.kind != PollKind.MULTIPLE:
        draft.max_choices = 0
    if draft.weighting == Weighting.TIER and draft.eligibility == Eligibility.ANYONE:
        raise PollInputError(field="poll_weight", reason="needs_members")
    if draft.quorum_kind == QuorumKind.PERCENT and not 1 <= draft.quorum_value <= 100:
        raise PollInputError(field="poll_quorum", value=f"{draft.quorum_value}%")
    if draft.quorum_kind == QuorumKind.COUNT and draft.quorum_value < 1:
        raise PollInputError(field="poll_quorum", value=str(draft.quorum_value))
    return check_timing(draft, now=now)


def check_timing(draft: PollDraft, *, now: dt.datetime) -> PollDraft:
    """The closing time is in the future, and the reminder before it is too."""
    if draft.closes_at is not None:
        require_future(draft.closes_at, now=now)
    if draft.nudge_minutes is not None:
        if draft.closes_at is None:
            raise PollInputError(field="poll_nudge", reason="no_close")
        if draft.closes_at - dt.timedelta(minutes=draft.nudge_minutes) <= now:
            raise PollInputError(field="poll_nudge", reason="too_late")
    return draft


# The one-line form: /new_poll QUESTION | OPTION | OPTION ... | KEY: VALUE ...
SETTING = re.compile(r"^(?P<key>[^\s:：]+)\s*[:：]\s*(?P<value>.*)$")
# "마감 내일 18:00" without the colon, as /new_campaign's labels are written.
BARE_SETTING = re.compile(r"^(?P<key>[^\s:：]+)\s+(?P<value>\S.*)$")
SETTING_KEYS = {
    "종류": "kind",
    "kind": "kind",
    "투표": "ballot",
    "ballot": "ballot",
    "자격": "who",
    "who": "who",
    "가중치": "weight",
    "weight": "weight",
    "정족수": "quorum",
    "quorum": "quorum",
    "결과": "results",
    "results": "results",
    "마감": "closes",
    "closes": "closes",
    "close": "closes",
    "알림": "remind",
    "remind": "remind",
}
KIND_WORDS = {
    "단일": PollKind.SINGLE,
    "single": PollKind.SINGLE,
    "복수": PollKind.MULTIPLE,
    "multiple": PollKind.MULTIPLE,
    "제안": PollKind.PROPOSAL,
    "proposal": PollKind.PROPOSAL,
    "순위": PollKind.RANKED,
    "ranked": PollKind.RANKED,
}
BALLOT_WORDS = {
    "공개": BallotKind.OPEN,
    "open": BallotKind.OPEN,
    "비밀": BallotKind.SECRET,
    "secret": BallotKind.SECRET,
}
WHO_WORDS = {
    "누구나": Eligibility.ANYONE,
    "anyone": Eligibility.ANYONE,
    "회원": Eligibility.MEMBERS,
    "members": Eligibility.MEMBERS,
    "정회원": Eligibility.FULL,
    "full": Eligibility.FULL,
}
WEIGHT_WORDS = {
    "1인1표": Weighting.EQUAL,
    "없음": Weighting.EQUAL,
    "equal": Weighting.EQUAL,
    "none": Weighting.EQUAL,
    "등급": Weighting.TIER,
    "등급별": Weighting.TIER,
    "tier": Weighting.TIER,
    "tiers": Weighting.TIER,
}
RESULT_WORDS = {
    "실시간": True,
    "live": True,
    "마감후": False,
    "after": False,
    "closed": False,
}
NONE_WORDS = {"없음", "none", "no", "-"}


def draft_from_line(text: str, *, now: dt.datetime, timezone: str) -> PollDraft:
    """Read the one-line form (see the README for the grammar) into a validated draft."""
    parts = [part.strip() for part in text.split("|")]
    draft = PollDraft(question=parts[0])
    for part in parts[1:]:
        if not part:
            continue
        match = SETTING.match(part)
        key = SETTING_KEYS.get(match.group("key").lower()) if match else None
        if key is not None:
            apply_setting(draft, key, match.group("value").strip(), now=now, timezone=timezone)
        elif not _bare_setting(draft, part, now=now, timezone=timezone):
            draft.options.append(part)
    return validate_draft(draft, now=now)


def _bare_setting(draft: PollDraft, part: str, *, now: dt.datetime, timezone: str) -> bool:
    """Apply a setting written without its colon ("마감 내일 18:00") if it reads as one.

    Without the colon an option may start with the same word ("마감 후에"), so a value that
    does not read as the setting leaves the part an option, as before.
    """
    match = BARE_SETTING.match(part)
    key = SETTING_KEYS.get(match.group("key").lower()) if match else None
    if key is None:
        return False
    trial = replace(draft, options=list(draft.options))
    try:
        apply_setting(trial, key, match.group("value").strip(), now=now, timezone=timezone)
    except DomainError as error:
        if error.params.get("reason") == "past":
            raise  # it read as a time, one that has passed: say so rather than list it
        return False
    for setting in fields(PollDraft):
        setattr(draft, setting.name, getattr(trial, setting.name))
    return True


def apply_setting(
    draft: PollDraft, key: str, value: str, *, now: dt.datetime, timezone: str
) -> PollDraft:
    """Set one setting from what a person typed (``복수 2``, ``50%``, ``내일 18:00``, ...)."""
    word = value.lower().replace(" ", "")
    invalid = PollInputError(field="poll_setting", value=f"{key}: {value}")
    if key == "kind":
        match = re.fullmatch(r"(?P<word>[^\d]+?)(?P<limit>\d+)?", word)
        kind = KIND_WORDS.get(match.group("word")) if match else None
        if kind is None:
            raise invalid
        draft.kind = kind
        if match.group("limit"):
            if kind != PollKind.MULTIPLE:
                raise invalid
            draft.max_choices = int(match.group("limit"))
    elif key == "ballot":
        if word not in BALLOT_WORDS:
            raise invalid
        draft.ballot = BALLOT_WORDS[word]
    elif key == "who":
        if word not in WHO_WORDS:
            raise invalid
        draft.eligibility = WHO_WORDS[word]
    elif key == "weight":
        if word not in WEIGHT_WORDS:
            raise invalid
        draft.weighting = WEIGHT_WORDS[word]
    elif key == "quorum":
        set_quorum(draft, value)
    elif key == "results":
        if word not in RESULT_WORDS:
            raise invalid
        draft.live_results = RESULT_WORDS[word]
    elif key == "closes":
        if word in NONE_WORDS:
            draft.closes_at, draft.nudge_minutes = None, None
        else:
            draft.closes_at = require_future(
                parse_when(value, now=now, timezone=timezone), now=now, text=value
            )
    elif key == "remind":
        draft.nudge_minutes = (
            None if word in NONE_WORDS else int(parse_duration(value).total_seconds() // 60)
        )
    return draft


TOGGLES = {
    "ballot": ("ballot", [BallotKind.OPEN, BallotKind.SECRET]),
    "who": ("eligibility", [Eligibility.ANYONE, Eligibility.MEMBERS, Eligibility.FULL]),
    "weight": ("weighting", [Weighting.EQUAL, Weighting.TIER]),
    "results": ("live_results", [True, False]),
}


def toggle_setting(draft: PollDraft, setting: str) -> PollDraft:
    """Move a setting of the guided flow to its next choice (a settings button)."""
    attribute, values = TOGGLES[setting]
    current = draft.results_live if setting == "results" else getattr(draft, attribute)
    setattr(draft, attribute, values[(values.index(current) + 1) % len(values)])
    if draft.weighting == Weighting.TIER and draft.eligibility == Eligibility.ANYONE:
        # Weights come from membership tiers: people outside the organisation have none.
        if setting == "weight":
            draft.eligibility = Eligibility.MEMBERS
        else:
            draft.weighting = Weighting.EQUAL
    return draft


def set_quorum(draft: PollDraft, text: str) -> PollDraft:
    """``20`` (voters), ``20명``, ``50%`` (of the eligible members), or ``없음``/``none``."""
    word = text.strip().lower().replace(" ", "")
    if word in NONE_WORDS or word == "0":
        draft.quorum_kind, draft.quorum_value = QuorumKind.NONE, 0
        return draft
    match = re.fullmatch(r"(\d{1,6})(%|명|people|voters)?", word)
    if not match:
        raise PollInputError(field="poll_quorum", value=text)
    number = int(match.group(1))
    if match.group(2) == "%":
        if not 1 <= number <= 100:
            raise PollInputError(field="poll_quorum", value=text)
        draft.quorum_kind, draft.quorum_value = QuorumKind.PERCENT, number
    else:
        draft.quorum_kind, draft.quorum_value = QuorumKind.COUNT, number
    return draft


# --- creating, finding, closing, deleting -----------------------------------------------------


async def create_poll(
    session: AsyncSession,
    *,
    creator: Member,
    org: Organization,
    draft: PollDraft,
    is_bot_admin: bool = False,
    now: dt.datetime,
) -> Poll:
    """An organiser publishes a poll: it opens at once; closing and the nudge are scheduled."""
    await organizations.require_organizer(
        session, member=creator, org=org, now=now, action="poll.create", is_bot_admin=is_bot_admin
    )
    draft = validate_draft(draft, now=now)
    poll = Poll(
        organization_id=org.id,
        created_by=creator.id,
        question=draft.question,
        kind=draft.kind,
        ballot=draft.ballot,
        eligibility=draft.eligibility,
        weighting=draft.weighting,
        max_choices=draft.choices_limit if draft.kind == PollKind.MULTIPLE else 1,
        quorum_kind=draft.quorum_kind,
        quorum_value=draft.quorum_value,
        live_results=draft.results_live,
        closes_at=draft.closes_at,
        nudge_minutes=draft.nudge_minutes,
        status=PollStatus.OPEN,
        created_at=now,
    )
    session.add(poll)
    await session.flush()
    if draft.kind == PollKind.PROPOSAL:
        options = [
            PollOption(poll_id=poll.id, position=n, code=code)
            for n, code in enumerate(PROPOSAL_CODES, start=1)
        ]
    else:
        options = [
            PollOption(poll_id=poll.id, position=n, label=label)
            for n, label in enumerate(draft.options, start=1)
        ]
    session.add_all(options)
    if poll.closes_at is not None:
        await jobs.schedule(
            session,
            kind=CLOSE_JOB,
            key=f"poll-{poll.id}-close",
            due_at=poll.closes_at,
            payload={"poll_id": poll.id},
            now=now,
        )
        if poll.nudge_minutes:
            await jobs.schedule(
                session,
                kind=NUDGE_JOB,
                key=f"poll-{poll.id}-nudge",
                due_at=poll.closes_at - dt.timedelta(minutes=poll.nudge_minutes),
                payload={"poll_id": poll.id},
                now=now,
            )
    await audit.record(
        session,
        action="poll.create",
        now=now,
        actor_member_id=creator.id,
        organization_id=org.id,
        target=f"poll:{poll.id}",
        details={"kind": str(poll.kind), "ballot": str(poll.ballot)},
    )
    await session.flush()
    return poll


@dataclass
class PollView:
    """A poll with its organisation and its options (in order)."""

    poll: Poll
    org: Organization
    options: list[PollOption]

    @property
    def network(self) -> bool:
        """The poll belongs to a network of groups (results per group)."""
        return self.org.kind == OrgKind.NETWORK

    def option_at(self, position: int) -> PollOption | None:
        """The option shown at ``position`` (1, 2, ...)."""
        return next((o for o in self.options if o.position == position), None)


async def load(session: AsyncSession, poll_id: int, *, for_vote: bool = False) -> PollView:
    """The poll with its organisation and options in one query; PollNotFound if deleted.

    ``for_vote`` takes a share lock on the poll row (PostgreSQL), so that closing waits for
    votes being recorded and votes after the close see it closed.
    """
    query = (
        select(Poll, Organization, PollOption)
        .join(Organization, Organization.id == Poll.organization_id)
        .join(PollOption, PollOption.poll_id == Poll.id)
        .where(Poll.id == poll_id)
        .order_by(PollOption.position)
    )
    if for_vote:
        query = query.with_for_update(read=True, of=Poll)
    rows = (await session.exec(query)).all()
    if not rows or rows[0][0].status == PollStatus.DELETED:
        raise PollNotFound(poll_id=poll_id)
    return PollView(poll=rows[0][0], org=rows[0][1], options=[row[2] for row in rows])


async def deleted_poll(session: AsyncSession, poll_id: int) -> Poll | None:
    """A poll that was deleted (its posted cards then say so), or None."""
    poll = await session.get(Poll, poll_id)
    return poll if poll is not None and poll.status == PollStatus.DELETED else None


async def organization_of(session: AsyncSession, poll_id: int) -> int | None:
    """The organisation a poll belongs to (None if there is no such poll)."""
    poll = await session.get(Poll, poll_id)
    return poll.organization_id if poll and poll.status != PollStatus.DELETED else None


async def require_poll_organizer(
    session: AsyncSession,
    view: PollView,
    member: Member | None,
    *,
    action: str,
    is_bot_admin: bool,
    now: dt.datetime,
) -> None:
    """NotOrganizer (audited by the handler) unless the member organises the poll's org."""
    await organizations.require_organizer(
        session, member=member, org=view.org, now=now, action=action, is_bot_admin=is_bot_admin
    )


async def is_poll_organizer(
    session: AsyncSession, view: PollView, member: Member | None, *, is_bot_admin: bool
) -> bool:
    """True if the member may act as organiser of this poll."""
    if is_bot_admin:
        return True
    if member is None:
        return False
    membership = await organizations.membership_of(session, member, view.org)
    return membership is not None and organizations.ROLE_RANK[membership.role] >= 1


async def close_poll(
    session: AsyncSession,
    *,
    poll_id: int,
    actor: Member | None,
    is_bot_admin: bool = False,
    now: dt.datetime,
) -> PollView:
    """Close a poll (an organiser, or the scheduled job with ``actor=None``), exactly once.

    PollClosed if it was closed already: a second closer (a double tap, another instance's
    job) changes nothing.
    """
    view = await load(session, poll_id)
    if actor is not None:
        await require_poll_organizer(
            session, view, actor, action="poll.close", is_bot_admin=is_bot_admin, now=now
        )
    # One atomic UPDATE decides who closes; on PostgreSQL it waits for votes in flight.
    eligible = eligible_count_query(poll_id)
    scheduled = view.poll.closes_at
    # The scheduled close is dated at the closing time, however late the job ran.
    closed_at = scheduled if actor is None and scheduled and scheduled < now else now
    result = await session.exec(
        sa.update(Poll)
        .where(Poll.id == poll_id, Poll.status == PollStatus.OPEN)
        .values(status=PollStatus.CLOSED, closed_at=closed_at, eligible_at_close=eligible)
        .returning(Poll.id)
    )
    if result.first() is None:
        raise PollClosed(question=view.poll.question)
    await session.refresh(view.poll)
    await jobs.cancel_prefix(session, f"poll-{poll_id}-")
    if view.poll.is_secret:
        await mix_ballot_box(session, poll_id)
    await audit.record(
        session,
        action="poll.close",
        now=now,
        actor_member_id=actor.id if actor else None,
        organization_id=view.org.id,
        target=f"poll:{poll_id}",
        details={"by": "organizer" if actor else "schedule"},
    )
    return view


async def delete_poll(
    session: AsyncSession,
    *,
    poll_id: int,
    actor: Member,
    is_bot_admin: bool = False,
    now: dt.datetime,
) -> PollView:
    """An organiser deletes a poll: it disappears from cards and lists; votes are removed."""
    view = await load(session, poll_id)
    await require_poll_organizer(
        session, view, actor, action="poll.delete", is_bot_admin=is_bot_admin, now=now
    )
    await jobs.cancel_prefix(session, f"poll-{poll_id}-")
    for table in (PollVote, PollVoter, PollBallot):
        await session.exec(sa.delete(table).where(table.poll_id == poll_id))
    view.poll.status = PollStatus.DELETED
    view.poll.closed_at = view.poll.closed_at or now
    session.add(view.poll)
    await audit.record(
        session,
        action="poll.delete",
        now=now,
        actor_member_id=actor.id,
        organization_id=view.org.id,
        target=f"poll:{poll_id}",
        details={"question_length": len(view.poll.question)},
    )
    await session.flush()
    return view


async def org_polls(session: AsyncSession, org: Organization, *, limit: int = 20) -> list[Poll]:
    """An organisation's open polls, then its latest closed ones."""
    order = sa.case((Poll.status == PollStatus.OPEN, 0), else_=1)
    result = await session.exec(
        select(Poll)
        .where(Poll.organization_id == org.id, Poll.status != PollStatus.DELETED)
        .order_by(order, Poll.id.desc())
        .limit(limit)
    )
    return list(result.all())


# --- who may vote, and with what weight -------------------------------------------------------


def _org_scope(organization_id: Any) -> sa.ColumnElement[bool]:
    """Memberships that count for a poll of this organisation (its own, and its groups')."""
    groups = select(NetworkMember.group_id).where(NetworkMember.network_id == organization_id)
    return sa.or_(
        Membership.organization_id == organization_id, Membership.organization_id.in_(groups)
    )


def _membership_scope(view: PollView) -> sa.ColumnElement[bool]:
    """Memberships that make someone one of the poll's people."""
    if view.network:
        return _org_scope(view.poll.organization_id)
    return Membership.organization_id == view.poll.organization_id


@dataclass(frozen=True)
class Standing:
    """What a voter's vote weighs and which group it is counted with."""

    weight: float
    group_id: int | None


async def standing(
    session: AsyncSession, view: PollView, member: Member, tiers: TiersConfig
) -> Standing:
    """The member's weight and group in this poll; NotEligible if they may not vote."""
    poll = view.poll
    needs_membership = poll.eligibility != Eligibility.ANYONE
    rows: Sequence[tuple[int, str]] = []
    if needs_membership or view.network or poll.weighting == Weighting.TIER:
        rows = (
            await session.exec(
                select(Membership.organization_id, Membership.tier).where(
                    Membership.member_id == member.id, _membership_scope(view)
                )
            )
        ).all()
    full = any(tier == Tier.FULL for _, tier in rows)
    if needs_membership and not rows:
        raise NotEligible(org=view.org.name, slug=view.org.slug, need="members")
    if poll.eligibility == Eligibility.FULL and not full:
        raise NotEligible(org=view.org.name, slug=view.org.slug, need="full")
    weight = 1.0
    if poll.weighting == Weighting.TIER:
        weight = tiers.full_weight if full else tiers.supporter_weight
    group_id = None
    if view.network:
        groups = sorted(org_id for org_id, _ in rows if org_id != poll.organization_id)
        group_id = groups[0] if groups else (poll.organization_id if rows else None)
    return Standing(weight=float(weight), group_id=group_id)


# --- voting -----------------------------------------------------------------------------------


@dataclass
class VoteOutcome:
    """What a vote recorded."""

    view: PollView
    chosen: list[PollOption]
    changed: bool  # False: exactly this vote was already recorded (a double tap)
    receipt: str | None = None  # secret ballots: the voter's receipt code


def takes_votes(poll: Poll, now: dt.datetime) -> bool:
    """Open, and its closing time (if any) has not come: a late closing job changes nothing
    about when voting ended."""
    return poll.is_open and (poll.closes_at is None or now < poll.closes_at)


def choices_for(view: PollView, positions: Sequence[int]) -> list[PollOption]:
    """The options at ``positions`` for this kind of poll; StaleButton for impossible ones.

    Positions come from callback data (client input): duplicates, unknown positions or too
    many choices mean tampered or outdated buttons.
    """
    poll = view.poll
    chosen = [view.option_at(position) for position in positions]
    if not chosen or any(o is None for o in chosen) or len(set(positions)) != len(positions):
        raise StaleButton()
    if poll.kind in (PollKind.SINGLE, PollKind.PROPOSAL) and len(chosen) != 1:
        raise StaleButton()
    if poll.kind == PollKind.MULTIPLE:
        if len(chosen) > poll.max_choices:
            raise StaleButton()
        chosen.sort(key=lambda o: o.position)  # the order of ticking says nothing
    return chosen  # type: ignore[return-value]


async def cast_vote(
    session: AsyncSession,
    *,
    poll_id: int,
    member: Member,
    positions: Sequence[int],
    tiers: TiersConfig,
    now: dt.datetime,
) -> VoteOutcome:
    """A person votes: recorded at once (open votes replace the previous one)."""
    facts = _facts_of(session).get(poll_id)
    if facts is not None and _one_tap(facts, positions):
        chosen = choices_for(facts, positions)
        if await _one_statement_vote(session, facts, member, chosen[0], tiers, now):
            return VoteOutcome(view=facts, chosen=chosen, changed=True)
        # Nothing written: unchanged, closed or not eligible — the full path says which.
    view = await load(session, poll_id, for_vote=True)
    remember_facts(session, view)
    if not takes_votes(view.poll, now):
        raise PollClosed(question=view.poll.question)
    chosen = choices_for(view, positions)
    who = await standing(session, view, member, tiers)
    if view.poll.is_secret:
        receipt = await _cast_secret(session, view, member, chosen, who)
        return VoteOutcome(view=view, chosen=chosen, changed=True, receipt=receipt)
    changed = await _record_open(session, view, member, chosen, who, now)
    return VoteOutcome(view=view, chosen=chosen, changed=changed)


# --- the one-tap fast path -------------------------------------------------------------------
#
# A tap on a group card is the hottest path in the product. What a published poll is — its
# question, options, organisation, kind and rules — never changes, so each process keeps a
# copy (by poll id); what does change (open or closed, who may vote, the vote itself) is
# checked and written by ONE statement: insert-or-change the vote if the poll is open and the
# member is eligible. When it writes nothing, the full path finds out why.

# Per database engine (tests and the sandbox run several in one process), per poll id.
_FACTS: weakref.WeakKeyDictionary[Any, dict[int, PollView]] = weakref.WeakKeyDictionary()
_FACTS_LIMIT = 1000


def _facts_of(session: AsyncSession) -> dict[int, PollView]:
    if session.bind is None:
        return {}
    return _FACTS.setdefault(session.bind, {})


def remember_facts(session: AsyncSession, view: PollView) -> None:
    """Keep a detached copy of a poll's unchanging parts for later taps (bounded)."""
    facts = _facts_of(session)
    if view.poll.id in facts or not view.poll.is_open:
        return
    if len(facts) >= _FACTS_LIMIT:
        facts.pop(next(iter(facts)))
    facts[view.poll.id] = PollView(
        poll=_copy(view.poll), org=_copy(view.org), options=[_copy(o) for o in view.options]
    )


def _copy(row: Any) -> Any:
    """A plain, session-less copy of a loaded row."""
    table = type(row)
    return table(**{column.name: getattr(row, column.name) for column in table.__table__.c})


def _one_tap(view: PollView, positions: Sequence[int]) -> bool:
    poll = view.poll
    return (
        not poll.is_secret
        and poll.kind in (PollKind.SINGLE, PollKind.PROPOSAL)
        and not view.network
        and len(positions) == 1
    )


_ONE_STATEMENT_VOTE = sa.text(
    """
    INSERT INTO pollvote (poll_id, member_id, rank, option_id, weight, organization_id, voted_at)
    SELECT p.id, :member, 1, :option,
        CASE WHEN p.weighting = 'tier' THEN (
            SELECT CASE WHEN m.tier = 'full' THEN :full_weight ELSE :supporter_weight END
            FROM membership AS m
            WHERE m.member_id = :member AND m.organization_id = p.organization_id
        ) ELSE 1.0 END,
        NULL, :now
    FROM poll AS p
    WHERE p.id = :poll AND p.status = 'open' AND (p.closes_at IS NULL OR p.closes_at > :now)
        AND (p.eligibility = 'anyone' OR EXISTS (
            SELECT 1 FROM membership AS m
            WHERE m.member_id = :member AND m.organization_id = p.organization_id
                AND (p.eligibility <> 'full' OR m.tier = 'full')))
    {lock}
    ON CONFLICT (poll_id, member_id, rank) DO UPDATE SET
        option_id = excluded.option_id, weight = excluded.weight, voted_at = excluded.voted_at,
        reason = NULL
    WHERE pollvote.option_id <> excluded.option_id
    RETURNING option_id
    """
)


def _vote_statement(lock: str) -> sa.TextClause:
    return sa.text(_ONE_STATEMENT_VOTE.text.replace("{lock}", lock)).bindparams(
        sa.bindparam("now", type_=Poll.__table__.c.created_at.type),
        sa.bindparam("full_weight", type_=sa.Float()),
        sa.bindparam("supporter_weight", type_=sa.Float()),
    )


# SQLite takes the write lock at BEGIN; PostgreSQL share-locks the poll row, so that closing
# waits for the votes being recorded (as load(for_vote=True) does on the full path).
_VOTE_STATEMENTS = {"sqlite": _vote_statement(""), "postgresql": _vote_statement("FOR SHARE OF p")}


async def _one_statement_vote(
    session: AsyncSession,
    view: PollView,
    member: Member,
    option: PollOption,
    tiers: TiersConfig,
    now: dt.datetime,
) -> bool:
    """Record a one-tap open vote in one statement; False if it wrote nothing."""
    dialect = dialect_name(session)
    result = await session.exec(
        _VOTE_STATEMENTS[dialect],
        params={
            "poll": view.poll.id,
            "member": member.id,
            "option": option.id,
            "now": now,
            "full_weight": float(tiers.full_weight),
            "supporter_weight": float(tiers.supporter_weight),
        },
    )
    return result.first() is not None


async def _record_open(
    session: AsyncSession,
    view: PollView,
    member: Member,
    chosen: list[PollOption],
    who: Standing,
    now: dt.datetime,
) -> bool:
    """Write an open vote; False if it was already exactly this."""
    poll_id = view.poll.id
    if len(chosen) > 1 or view.poll.kind in (PollKind.MULTIPLE, PollKind.RANKED):
        current = (
            await session.exec(
                select(PollVote.option_id)
                .where(PollVote.poll_id == poll_id, PollVote.member_id == member.id)
                .order_by(PollVote.rank)
            )
        ).all()
        if list(current) == [o.id for o in chosen]:
            return False
    first = _upsert_first_choice(session, poll_id, member.id, chosen[0], who, now)
    changed = (await session.exec(first)).first() is not None
    if len(chosen) == 1 and view.poll.kind in (PollKind.SINGLE, PollKind.PROPOSAL):
        return changed
    # Multiple and ranked: the first choice's row is locked now; replace the rest.
    await session.exec(
        sa.delete(PollVote).where(
            PollVote.poll_id == poll_id, PollVote.member_id == member.id, PollVote.rank > 1
        )
    )
    rest = [
        {
            "poll_id": poll_id,
            "member_id": member.id,
            "rank": rank,
            "option_id": option.id,
            "weight": who.weight,
            "organization_id": who.group_id,
            "voted_at": now,
        }
        for rank, option in enumerate(chosen[1:], start=2)
    ]
    if rest:
        await session.exec(sa.insert(PollVote), params=rest)
    return True


def _upsert_first_choice(
    session: AsyncSession,
    poll_id: int,
    member_id: int,
    option: PollOption,
    who: Standing,
    now: dt.datetime,
):
    """One statement: insert the rank-1 row, or change it if it differs (RETURNING if so)."""
    statement = upsert_insert(session, PollVote).values(
        poll_id=poll_id,
        member_id=member_id,
        rank=1,
        option_id=option.id,
        weight=who.weight,
        organization_id=who.group_id,
        voted_at=now,
    )
    return statement.on_conflict_do_update(
        index_elements=["poll_id", "member_id", "rank"],
        set_={
            "option_id": statement.excluded.option_id,
            "weight": statement.excluded.weight,
            "organization_id": statement.excluded.organization_id,
            "voted_at": statement.excluded.voted_at,
            "reason": None,
        },
        where=PollVote.option_id != statement.excluded.option_id,
    ).returning(PollVote.option_id)


def new_receipt() -> str:
    """A random receipt code (8 characters, shown as XXXX-XXXX)."""
    return "".join(secrets.choice(RECEIPT_ALPHABET) for _ in range(RECEIPT_LENGTH))


def show_receipt(code: str) -> str:
    """A receipt as people read it: ABCD-EFGH."""
    return f"{code[:4]}-{code[4:]}"


def normalise_receipt(text: str) -> str:
    """What someone typed as a receipt, in stored form (case, dashes, O/0 and I/L/1 forgiven)."""
    code = re.sub(r"[\s\-_.]", "", text.upper())
    return code.translate(str.maketrans({"O": "0", "I": "1", "L": "1"}))


def new_ballot_id() -> int:
    """A random positive 63-bit key: ballots sort by it, and it says nothing about time."""
    return secrets.randbits(63) or 1


async def _cast_secret(
    session: AsyncSession,
    view: PollView,
    member: Member,
    chosen: list[PollOption],
    who: Standing,
) -> str:
    """Put the member on the roll (once) and the ballot in the box; returns the receipt."""
    poll_id = view.poll.id
    roll = (
        upsert_insert(session, PollVoter)
        .values(poll_id=poll_id, member_id=member.id)
        .on_conflict_do_nothing()
        .returning(PollVoter.member_id)
    )
    if (await session.exec(roll)).first() is None:
        raise AlreadyVoted(question=view.poll.question)
    receipt = new_receipt()
    rows = [
        {
            "id": new_ballot_id(),
            "poll_id": poll_id,
            "receipt": receipt,
            "option_id": option.id,
            "rank": rank,
            "weight": who.weight,
            "organization_id": who.group_id,
        }
        for rank, option in enumerate(chosen, start=1)
    ]
    if is_postgresql(session):
        await _insert_mixed(session, poll_id, rows)
    else:
        await session.exec(sa.insert(PollBallot), params=rows)
    return receipt


_BALLOT_COLUMNS = "id, poll_id, receipt, option_id, rank, weight, organization_id"


async def _insert_mixed(session: AsyncSession, poll_id: int, rows: list[dict[str, Any]]) -> None:
    """PostgreSQL: write the new ballot rows together with up to MIX_SAMPLE others, all in
    random key order, so that neither ``ctid`` nor ``xmin`` singles the new ballot out.

    The sample starts at a random key; rows are locked in key order (no deadlocks between
    voters), taken out and written back with the new rows in one statement.
    """
    values = []
    params: dict[str, Any] = {"poll": poll_id, "start": new_ballot_id(), "k": MIX_SAMPLE}
    for n, row in enumerate(rows):
        values.append(
            f"(CAST(:id{n} AS BIGINT), CAST(:poll AS INTEGER), CAST(:receipt{n} AS VARCHAR),"
            f" CAST(:option{n} AS INTEGER), CAST(:rank{n} AS INTEGER),"
            f" CAST(:weight{n} AS DOUBLE PRECISION), CAST(:org{n} AS INTEGER))"
        )
        params.update(
            {
                f"id{n}": row["id"],
                f"receipt{n}": row["receipt"],
                f"option{n}": row["option_id"],
                f"rank{n}": row["rank"],
                f"weight{n}": row["weight"],
                f"org{n}": row["organization_id"],
            }
        )
    statement = sa.text(
        f"""
        WITH pick AS (
            (SELECT id FROM pollballot WHERE poll_id = :poll AND id >= :start
             ORDER BY id LIMIT :k)
            UNION ALL
            (SELECT id FROM pollballot WHERE poll_id = :poll AND id < :start
             ORDER BY id LIMIT :k)
        ), locked AS (
            SELECT id FROM pollballot WHERE id IN (SELECT id FROM pick LIMIT :k)
            ORDER BY id FOR UPDATE
        ), moved AS (
            DELETE FROM pollballot AS b USING locked WHERE b.id = locked.id
            RETURNING b.id, b.poll_id, b.receipt, b.option_id, b.rank, b.weight,
                b.organization_id
        ), box AS (
            SELECT {_BALLOT_COLUMNS} FROM moved
            UNION ALL
            SELECT {_BALLOT_COLUMNS} FROM (VALUES {", ".join(values)})
                AS fresh({_BALLOT_COLUMNS})
        )
        INSERT INTO pollballot ({_BALLOT_COLUMNS})
        SELECT {_BALLOT_COLUMNS} FROM box ORDER BY id
        """
    )
    await session.exec(statement, params=params)


async def mix_ballot_box(session: AsyncSession, poll_id: int) -> None:
    """Write a poll's whole ballot box again in random key order (PostgreSQL; at closing).

    Afterwards every ballot of the poll has the same writing transaction and a place in the
    table that follows its random key. SQLite needs nothing: its ballots have no rowid and
    are stored in key order.
    """
    if not is_postgresql(session):
        return
    await session.exec(
        sa.text(
            f"""
            WITH moved AS (DELETE FROM pollballot WHERE poll_id = :poll
                           RETURNING {_BALLOT_COLUMNS})
            INSERT INTO pollballot ({_BALLOT_COLUMNS})
            SELECT {_BALLOT_COLUMNS} FROM moved ORDER BY id
            """
        ),
        params={"poll": poll_id},
    )


async def set_reason(
    session: AsyncSession, *, poll_id: int, member: Member, reason: str, now: dt.datetime
) -> PollView:
    """Add (or replace) the reason for one's open vote on a proposal."""
    view = await load(session, poll_id)
    poll = view.poll
    if poll.kind != PollKind.PROPOSAL or poll.is_secret:
        raise NoReasonHere()
    if not takes_votes(poll, now):
        raise PollClosed(question=poll.question)
    text = clean_text(reason)
    if not text:
        raise PollInputError(field="poll_reason", reason="empty")
    if len(text) > MAX_REASON:
        raise PollInputError(field="poll_reason", reason="too_long", limit=MAX_REASON)
    result = await session.exec(
        sa.update(PollVote)
        .where(PollVote.poll_id == poll_id, PollVote.member_id == member.id, PollVote.rank == 1)
        .values(reason=text)
    )
    if not result.rowcount:
        raise NoReasonHere()
    return view


@dataclass
class MyVote:
    """What the member has recorded in a poll (for their own card)."""

    positions: list[int]  # open votes: the chosen options' positions, in rank order
    secret_cast: bool = False  # secret ballots: on the roll (the choice is not known)
    reason: str | None = None

    @property
    def voted(self) -> bool:
        """The member has voted."""
        return bool(self.positions) or self.secret_cast


async def my_vote(session: AsyncSession, view: PollView, member: Member | None) -> MyVote:
    """The member's current vote in the poll (a secret ballot shows only that it was cast)."""
    if member is None:
        return MyVote(positions=[])
    poll_id = view.poll.id
    if view.poll.is_secret:
        voted = await session.get(PollVoter, (poll_id, member.id))
        return MyVote(positions=[], secret_cast=voted is not None)
    rows = (
        await session.exec(
            select(PollVote.option_id, PollVote.reason)
            .where(PollVote.poll_id == poll_id, PollVote.member_id == member.id)
            .order_by(PollVote.rank)
        )
    ).all()
    by_id = {o.id: o.position for o in view.options}
    return MyVote(
        positions=[by_id[option_id] for option_id, _ in rows if option_id in by_id],
        reason=rows[0][1] if rows else None,
    )


# --- counting ---------------------------------------------------------------------------------


@dataclass
class OptionCount:
    """One option's count."""

    option: PollOption
    votes: int = 0
    weight: float = 0.0


@dataclass
class GroupCount:
    """A network's member group: its voters and counts per option."""

    name: str
    voters: int
    options: list[OptionCount]
    others: bool = False  # several small groups shown together (secret ballots)


@dataclass
class Round:
    """One instant-runoff round: each continuing option's votes; who goes out after it."""

    number: int
    counts: list[OptionCount]
    eliminated: PollOption | None
    exhausted: float  # weight of ballots with no continuing option left
    continuing: float  # weight of ballots still counting


@dataclass
class Results:
    """Everything /results and the card show about a poll's count."""

    view: PollView
    options: list[OptionCount]
    voters: int
    voters_weight: float
    eligible: int | None
    rounds: list[Round] = field(default_factory=list)
    winner: PollOption | None = None
    tie_broken: bool = False
    groups: list[GroupCount] = field(default_factory=list)

    @property
    def poll(self) -> Poll:
        """The poll counted."""
        return self.view.poll

    @property
    def weighted(self) -> bool:
        """Counts are weights, not heads."""
        return self.poll.weighting == Weighting.TIER

    def amount(self, count: OptionCount) -> float:
        """What counts for an option: its weight (weighted polls) or its votes."""
        return count.weight if self.weighted else float(count.votes)

    @property
    def base(self) -> float:
        """What shares are shares of: all choices (single, proposal), voters (multiple)."""
        if self.poll.kind == PollKind.MULTIPLE:
            return self.voters_weight if self.weighted else float(self.voters)
        return sum(self.amount(count) for count in self.options)

    def share(self, count: OptionCount) -> float:
        """An option's share, 0.0–1.0."""
        base = self.base
        return self.amount(count) / base if base else 0.0

    @property
    def leading(self) -> list[OptionCount]:
        """The options with the most (several when tied); empty without votes."""
        if self.poll.kind == PollKind.RANKED:
            return [c for c in self.options if self.winner and c.option.id == self.winner.id]
        top = max((self.amount(c) for c in self.options), default=0.0)
        if top <= 0:
            return []
        return [c for c in self.options if math.isclose(self.amount(c), top)]

    @property
    def against_eligible(self) -> bool:
        """Turnout is shown against the eligible members (not for polls open to anyone, where
        people outside the organisation vote too)."""
        return bool(self.eligible) and self.poll.eligibility != Eligibility.ANYONE

    @property
    def turnout(self) -> float | None:
        """Voters as a share of the eligible members (None when unknown)."""
        return self.voters / self.eligible if self.eligible else None

    @property
    def quorum_needed(self) -> int | None:
        """Voters needed for the result to count (None: no quorum)."""
        poll = self.poll
        if poll.quorum_kind == QuorumKind.COUNT:
            return poll.quorum_value
        if poll.quorum_kind == QuorumKind.PERCENT:
            return math.ceil((self.eligible or 0) * poll.quorum_value / 100)
        return None

    @property
    def quorum_met(self) -> bool | None:
        """Whether enough took part (None: no quorum)."""
        needed = self.quorum_needed
        return None if needed is None else self.voters >= needed

    def proposal_count(self, code: str) -> OptionCount | None:
        """A proposal's count for agree / abstain / disagree / block."""
        return next((c for c in self.options if c.option.code == code), None)


def _ballot_table(poll: Poll) -> tuple[Any, Any]:
    """The table a poll's choices are in, and the column that tells ballots apart."""
    if poll.is_secret:
        return PollBallot, PollBallot.receipt
    return PollVote, PollVote.member_id


def eligible_query(poll_id: Any) -> sa.Select:
    """SELECT of the ids of the members eligible in a poll (org members; full ones if so)."""
    poll = sa.alias(Poll.__table__, "eligible_poll")
    return (
        select(Membership.member_id)
        .join(poll, poll.c.id == poll_id)
        .where(
            _org_scope(poll.c.organization_id),
            sa.or_(poll.c.eligibility != Eligibility.FULL, Membership.tier == Tier.FULL),
        )
        .distinct()
    )


def eligible_count_query(poll_id: Any) -> sa.ScalarSelect:
    """How many members are eligible in a poll, as a scalar subquery."""
    return (
        select(sa.func.count()).select_from(eligible_query(poll_id).subquery()).scalar_subquery()
    )


def voters_query(poll_id: Any) -> sa.CompoundSelect:
    """SELECT of the ids of the members who have voted (open votes or the secret roll)."""
    return sa.union(
        select(PollVote.member_id).where(PollVote.poll_id == poll_id, PollVote.rank == 1),
        select(PollVoter.member_id).where(PollVoter.poll_id == poll_id),
    )


def non_voters_query(poll_id: Any) -> sa.Select:
    """SELECT of the ids of eligible members who have not voted yet."""
    voted = voters_query(poll_id).subquery()
    return eligible_query(poll_id).where(Membership.member_id.not_in(select(voted.c.member_id)))


async def tally(session: AsyncSession, view: PollView) -> Results:
    """Count a poll with SQL aggregates (never loading ballots); ranked polls by runoff."""
    poll = view.poll
    table, _ = _ballot_table(poll)
    first = sa.case((table.rank == 1, 1), else_=0)
    rows = (
        await session.exec(
            select(
                table.option_id,
                table.organization_id,
                sa.func.count(),
                sa.func.coalesce(sa.func.sum(table.weight), 0.0),
                sa.func.coalesce(sa.func.sum(first), 0),
                sa.func.coalesce(sa.func.sum(table.weight * first), 0.0),
            )
            .where(table.poll_id == poll.id)
            .group_by(table.option_id, table.organization_id)
        )
    ).all()
    counts = {o.id: OptionCount(option=o) for o in view.options}
    group_rows: dict[int | None, dict[int, tuple[int, float, int]]] = defaultdict(dict)
    voters, voters_weight = 0, 0.0
    for option_id, group_id, votes, weight, firsts, first_weight in rows:
        count = counts.get(option_id)
        if count is None:
            continue
        ranked = poll.kind == PollKind.RANKED
        count.votes += int(firsts if ranked else votes)
        count.weight += float(first_weight if ranked else weight)
        voters += int(firsts)
        voters_weight += float(first_weight)
        group_rows[group_id][option_id] = (int(firsts if ranked else votes), 0.0, int(firsts))
    if poll.eligible_at_close is not None and not poll.is_open:
        eligible = poll.eligible_at_close
    else:
        eligible = (await session.exec(select(eligible_count_query(poll.id)))).one()
    results = Results(
        view=view,
        options=[counts[o.id] for o in view.options],
        voters=voters,
        voters_weight=voters_weight,
        eligible=eligible or None,
    )
    if poll.kind == PollKind.RANKED and voters:
        await _runoff(session, results)
    if view.network:
        results.groups = await _groups(session, view, group_rows)
    return results


async def _first_preferences(
    session: AsyncSession, poll: Poll, eliminated: set[int]
) -> dict[int, tuple[int, float]]:
    """Each ballot's highest-ranked continuing option, counted per option (one SQL query,
    one pass over the ballots in ballot order)."""
    table, key = _ballot_table(poll)
    where = [table.poll_id == poll.id]
    if eliminated:
        where.append(table.option_id.not_in(sorted(eliminated)))
    if is_postgresql(session):
        first = (
            select(table.option_id.label("option_id"), table.weight.label("weight"))
            .where(*where)
            .order_by(key, table.rank)
        )
        # DISTINCT ON: the extension form since SQLAlchemy 2.1, distinct(key) before.
        if hasattr(postgresql, "distinct_on"):
            first = first.ext(postgresql.distinct_on(key))
        else:
            first = first.distinct(key)
    else:
        # SQLite: with min(), the other columns come from the row holding the minimum.
        first = (
            select(
                table.option_id.label("option_id"),
                table.weight.label("weight"),
                sa.func.min(table.rank),
            )
            .where(*where)
            .group_by(key)
        )
    ranked = first.subquery()
    rows = (
        await session.exec(
            select(ranked.c.option_id, sa.func.count(), sa.func.sum(ranked.c.weight)).group_by(
                ranked.c.option_id
            )
        )
    ).all()
    return {option_id: (int(votes), float(weight)) for option_id, votes, weight in rows}


async def _runoff(session: AsyncSession, results: Results) -> None:
    """Instant runoff: an option with more than half of the continuing ballots wins; else the
    option with the fewest goes out and its ballots count for their next choice.

    A tie for the fewest is broken by the earlier rounds (fewest there goes out), then by
    the order of the options (the one listed last goes out); ``tie_broken`` says so.
    """
    poll = results.poll
    options = results.view.options
    eliminated: set[int] = set()
    history: list[dict[int, float]] = []
    number = 0
    while True:
        number += 1
        firsts = await _first_preferences(session, poll, eliminated)
        continuing_options = [o for o in options if o.id not in eliminated]
        counts = [
            OptionCount(
                option=o,
                votes=firsts.get(o.id, (0, 0.0))[0],
                weight=firsts.get(o.id, (0, 0.0))[1],
            )
            for o in continuing_options
        ]
        amounts = {c.option.id: results.amount(c) for c in counts}
        continuing = sum(amounts.values())
        total = results.voters_weight if results.weighted else float(results.voters)
        history.append(amounts)
        top = max(amounts.values(), default=0.0)
        leaders = [o for o in continuing_options if math.isclose(amounts[o.id], top)]
        if continuing <= 0:
            results.rounds.append(Round(number, counts, None, total - continuing, continuing))
            return
        if top * 2 > continuing + 1e-9 or len(continuing_options) == 1:
            results.winner = leaders[0]
            results.rounds.append(Round(number, counts, None, total - continuing, continuing))
            return
        loser = _fewest(continuing_options, history)
        if loser is None:
            results.tie_broken = True
            loser = _last_listed(continuing_options, history)
        eliminated.add(loser.id)
        results.rounds.append(Round(number, counts, loser, total - continuing, continuing))


def _fewest(options: list[PollOption], history: list[dict[int, float]]) -> PollOption | None:
    """The one option with the fewest now, looking back through earlier rounds on ties."""
    tied = list(options)
    for amounts in reversed(history):
        low = min(amounts.get(o.id, 0.0) for o in tied)
        tied = [o for o in tied if math.isclose(amounts.get(o.id, 0.0), low)]
        if len(tied) == 1:
            return tied[0]
    return None


def _last_listed(options: list[PollOption], history: list[dict[int, float]]) -> PollOption:
    """Among the options tied for fewest in every round, the one listed last."""
    tied = list(options)
    for amounts in reversed(history):
        low = min(amounts.get(o.id, 0.0) for o in tied)
        tied = [o for o in tied if math.isclose(amounts.get(o.id, 0.0), low)]
    return max(tied, key=lambda o: o.position)


async def _groups(
    session: AsyncSession,
    view: PollView,
    group_rows: dict[int | None, dict[int, tuple[int, float, int]]],
) -> list[GroupCount]:
    """Counts per member group of a network (small groups together for secret ballots)."""
    ids = [group_id for group_id in group_rows if group_id is not None]
    names = {}
    if ids:
        names = dict(
            (
                await session.exec(
                    select(Organization.id, Organization.name).where(Organization.id.in_(ids))
                )
            ).all()
        )
    groups: list[GroupCount] = []
    merged: dict[int, int] = defaultdict(int)
    merged_voters = 0
    for group_id, per_option in sorted(
        group_rows.items(), key=lambda item: names.get(item[0], "")
    ):
        voters = sum(firsts for _, _, firsts in per_option.values())
        if group_id is None or (view.poll.is_secret and voters < MIN_GROUP_RESULTS):
            merged_voters += voters
            for option_id, (votes, _, _) in per_option.items():
                merged[option_id] += votes
            continue
        groups.append(
            GroupCount(
                name=names.get(group_id, "?"),
                voters=voters,
                options=[
                    OptionCount(option=o, votes=per_option.get(o.id, (0, 0.0, 0))[0])
                    for o in view.options
                ],
            )
        )
    if merged_voters:
        groups.append(
            GroupCount(
                name="",
                voters=merged_voters,
                options=[OptionCount(option=o, votes=merged.get(o.id, 0)) for o in view.options],
                others=True,
            )
        )
    return groups


async def results_for(
    session: AsyncSession,
    *,
    poll_id: int,
    member: Member | None,
    is_bot_admin: bool = False,
) -> tuple[Results, bool]:
    """A poll's results for this person, and whether they organise it.

    Counts are shown while voting only for live results; anyone who can vote, and the
    organisers, may ask. Otherwise ResultsForMembers (an audited refusal).
    """
    view = await load(session, poll_id)
    organizer = await is_poll_organizer(session, view, member, is_bot_admin=is_bot_admin)
    members_only = view.poll.eligibility != Eligibility.ANYONE
    if (
        not organizer
        and members_only
        and (member is None or not await _in_scope(session, view, member))
    ):
        raise ResultsForMembers(
            question=view.poll.question, reason="members", action="poll.results"
        )
    return await tally(session, view), organizer


async def _in_scope(session: AsyncSession, view: PollView, member: Member) -> bool:
    found = await session.exec(
        select(Membership.id)
        .where(Membership.member_id == member.id, _membership_scope(view))
        .limit(1)
    )
    return found.first() is not None


def counts_visible(poll: Poll) -> bool:
    """Whether counts per option may be shown now (else only turnout)."""
    return poll.live_results or not poll.is_open


# --- receipts ---------------------------------------------------------------------------------


@dataclass
class VerifiedBallot:
    """A receipt's ballot: the poll and the options it chose, in rank order."""

    view: PollView
    chosen: list[PollOption]
    receipt: str


async def verify_receipt(session: AsyncSession, code: str) -> list[VerifiedBallot]:
    """The ballots recorded under a receipt code in closed polls.

    VerifyNotYet while the poll is still open (a receipt must not let anyone follow a vote
    while it can still be influenced); ReceiptNotFound if no ballot has the code.
    """
    receipt = normalise_receipt(code)
    if len(receipt) != RECEIPT_LENGTH or any(ch not in RECEIPT_ALPHABET for ch in receipt):
        raise ReceiptNotFound(receipt=code.strip()[:20])
    rows = (
        await session.exec(
            select(PollBallot.poll_id, PollBallot.option_id)
            .where(PollBallot.receipt == receipt)
            .order_by(PollBallot.poll_id, PollBallot.rank)
        )
    ).all()
    if not rows:
        raise ReceiptNotFound(receipt=show_receipt(receipt))
    found: list[VerifiedBallot] = []
    waiting = False
    for poll_id in dict.fromkeys(poll_id for poll_id, _ in rows):
        view = await load(session, poll_id)
        if view.poll.is_open:
            waiting = True
            continue
        by_id = {o.id: o for o in view.options}
        chosen = [by_id[option_id] for pid, option_id in rows if pid == poll_id]
        found.append(VerifiedBallot(view=view, chosen=chosen, receipt=receipt))
    if not found and waiting:
        raise VerifyNotYet(receipt=show_receipt(receipt))
    return found


# --- exports ----------------------------------------------------------------------------------


async def ballot_rows(session: AsyncSession, view: PollView) -> AsyncIterator[tuple]:
    """Every recorded choice, streamed: open votes with names; secret ballots by receipt.

    Open: (voter, group, position, option, rank, weight, reason, voted_at).
    Secret: (receipt, group, position, option, rank, weight) — only after closing.
    """
    poll = view.poll
    by_id = {o.id: o for o in view.options}
    group = sa.alias(Organization.__table__, "voter_group")
    if poll.is_secret:
        query = (
            select(
                PollBallot.receipt,
                group.c.name,
                PollBallot.option_id,
                PollBallot.rank,
                PollBallot.weight,
            )
            .outerjoin(group, group.c.id == PollBallot.organization_id)
            .where(PollBallot.poll_id == poll.id)
            .order_by(PollBallot.receipt, PollBallot.rank)
        )
        async for receipt, group_name, option_id, rank, weight in await session.stream(query):
            option = by_id[option_id]
            yield (show_receipt(receipt), group_name or "", option.position, option, rank, weight)
        return
    query = (
        select(
            Member.display_name,
            group.c.name,
            PollVote.option_id,
            PollVote.rank,
            PollVote.weight,
            PollVote.reason,
            PollVote.voted_at,
            Member.id,
        )
        .join(Member, Member.id == PollVote.member_id)
        .outerjoin(group, group.c.id == PollVote.organization_id)
        .where(PollVote.poll_id == poll.id)
        .order_by(Member.display_name, Member.id, PollVote.rank)
    )
    async for (
        name,
        group_name,
        option_id,
        rank,
        weight,
        reason,
        voted_at,
        _,
    ) in await session.stream(query):
        option = by_id[option_id]
        yield (name, group_name or "", option.position, option, rank, weight, reason, voted_at)


async def record_export(
    session: AsyncSession,
    *,
    view: PollView,
    actor: Member,
    what: str,
    file_format: str,
    now: dt.datetime,
) -> None:
    """An organiser exported a poll's results or ballots (written to the audit log)."""
    await audit.record(
        session,
        action="poll.export",
        now=now,
        actor_member_id=actor.id,
        organization_id=view.org.id,
        target=f"poll:{view.poll.id}",
        details={"what": what, "format": file_format},
    )


def check_export(poll: Poll, what: str) -> None:
    """ResultsHidden unless this export may be made now.

    Secret ballots (receipt → choice) only after closing; counts only when they are shown.
    """
    if (what == "ballots" and poll.is_secret and poll.is_open) or (
        what == "results" and not counts_visible(poll)
    ):
        raise ResultsHidden(question=poll.question, reason="after_close")


# --- for /me, /post, audiences, nudges and privacy --------------------------------------------


AUDIENCE_VARIANTS = ("voters", "non_voters")


def audience_query(poll_id: int, variant: str) -> sa.Select:
    """SELECT of member ids: a poll's voters, or its eligible members who have not voted."""
    if variant == "voters":
        voted = voters_query(poll_id).subquery()
        return select(voted.c.member_id)
    if variant == "non_voters":
        return non_voters_query(poll_id)
    raise ValueError(f"unknown audience variant {variant!r}")


async def open_polls_for(session: AsyncSession, member: Member, *, limit: int = 10) -> list[Poll]:
    """Open polls of the member's organisations (and their networks) they can still vote in."""
    eligible = (
        select(Membership.id)
        .where(
            Membership.member_id == member.id,
            _org_scope(Poll.organization_id),
            sa.or_(Poll.eligibility != Eligibility.FULL, Membership.tier == Tier.FULL),
        )
        .exists()
    )
    voted = sa.or_(
        select(PollVote.poll_id)
        .where(PollVote.poll_id == Poll.id, PollVote.member_id == member.id)
        .exists(),
        select(PollVoter.poll_id)
        .where(PollVoter.poll_id == Poll.id, PollVoter.member_id == member.id)
        .exists(),
    )
    result = await session.exec(
        select(Poll)
        .where(Poll.status == PollStatus.OPEN, eligible, sa.not_(voted))
        .order_by(sa.func.coalesce(Poll.closes_at, Poll.created_at), Poll.id)
        .limit(limit)
    )
    return list(result.all())


async def postable(session: AsyncSession, org: Organization) -> list[Poll]:
    """Polls an organiser may post into a group: open ones, and recently closed (results)."""
    return await org_polls(session, org, limit=10)


@dataclass(frozen=True)
class NudgeRecipient:
    """An eligible member who has not voted, reachable in a private chat."""

    member_id: int
    telegram_user_id: int
    language: str


async def nudge_recipients(session: AsyncSession, poll_id: int) -> list[NudgeRecipient]:
    """Eligible members (organisation members for open-to-anyone polls) who have not voted
    and can be reached: registered, not muted, not blocking the bot."""
    pending = non_voters_query(poll_id).subquery()
    rows = (
        await session.exec(
            select(Member.id, Member.telegram_user_id, Member.language)
            .where(
                Member.id.in_(select(pending.c.member_id)),
                Member.telegram_user_id.is_not(None),
                Member.deleted_at.is_(None),
                Member.unreachable_since.is_(None),
                Member.muted.is_(False),
            )
            .order_by(Member.id)
        )
    ).all()
    return [NudgeRecipient(member_id, user_id, language) for member_id, user_id, language in rows]


async def take_nudge(session: AsyncSession, poll_id: int, *, now: dt.datetime) -> PollView | None:
    """The poll if its closing-soon nudge should go out now (it still takes votes), else
    None (closed, deleted, or the nudge is so late that voting has ended)."""
    try:
        view = await load(session, poll_id)
    except PollNotFound:
        return None
    return view if takes_votes(view.poll, now) else None


async def export_member(session: AsyncSession, member: Member) -> dict[str, Any]:
    """The member's part of /mydata: open votes, secret ballots cast (not their content),
    polls created."""
    org = sa.alias(Organization.__table__, "poll_org")
    votes = (
        await session.exec(
            select(
                Poll.id,
                Poll.question,
                org.c.name,
                PollOption.position,
                PollOption.label,
                PollOption.code,
                PollVote.rank,
                PollVote.weight,
                PollVote.reason,
                PollVote.voted_at,
            )
            .join(Poll, Poll.id == PollVote.poll_id)
            .join(org, org.c.id == Poll.organization_id)
            .join(PollOption, PollOption.id == PollVote.option_id)
            .where(PollVote.member_id == member.id, Poll.status != PollStatus.DELETED)
            .order_by(Poll.id, PollVote.rank)
        )
    ).all()
    secret = (
        await session.exec(
            select(Poll.id, Poll.question, org.c.name)
            .join(PollVoter, PollVoter.poll_id == Poll.id)
            .join(org, org.c.id == Poll.organization_id)
            .where(PollVoter.member_id == member.id, Poll.status != PollStatus.DELETED)
            .order_by(Poll.id)
        )
    ).all()
    created = (
        await session.exec(
            select(Poll.id, Poll.question, Poll.created_at)
            .where(Poll.created_by == member.id, Poll.status != PollStatus.DELETED)
            .order_by(Poll.id)
        )
    ).all()
    return {
        "open_votes": [
            {
                "poll_id": poll_id,
                "question": question,
                "organization": org_name,
                "option": label or code,
                "option_number": position,
                "rank": rank,
                "weight": weight,
                "reason": reason,
                "voted_at": voted_at.isoformat(),
            }
            for (
                poll_id,
                question,
                org_name,
                position,
                label,
                code,
                rank,
                weight,
                reason,
                voted_at,
            ) in votes
        ],
        # A secret ballot's content is not linked to anyone, the voter included.
        "secret_ballots_cast": [
            {"poll_id": poll_id, "question": question, "organization": org_name}
            for poll_id, question, org_name in secret
        ],
        "polls_created": [
            {"poll_id": poll_id, "question": question, "created_at": created_at.isoformat()}
            for poll_id, question, created_at in created
        ],
    }


async def erase_member(session: AsyncSession, member: Member, now: dt.datetime) -> None:
    """/forget: votes stay in the counts, without the person.

    The member row becomes an anonymous tombstone (no name, no Telegram id), so open votes
    keep counting — a closed binding vote must not change afterwards, and a running one keeps
    the vote that was cast — but the free-text reasons, which may say who wrote them, go.
    """
    await session.exec(
        sa.update(PollVote)
        .where(PollVote.member_id == member.id, PollVote.reason.is_not(None))
        .values(reason=None)
    )

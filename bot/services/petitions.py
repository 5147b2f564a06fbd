"""Petitions: create, sign once per person, withdraw, milestones, close, summaries and exports.

The count is trustworthy by construction: a signature is one row per (petition, person) under
a unique constraint, written with one upsert that only revives a withdrawn signature; the
petition's ``signature_count`` moves in the same transaction with one atomic UPDATE guarded by
``status = 'open'`` (so nothing is counted after closing). A milestone is claimed with a guarded
UPDATE of ``milestone_reached`` in the transaction whose signature crosses it, and its messages
go to the outbox in that same transaction: announced exactly once, whatever the races.
"""

from __future__ import annotations

import datetime as dt
import functools
import re
from collections import deque
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession

from bot.services import audit, conversations, exports, jobs, organizations, outbox, timeparse
from bot.services.dialects import dialect_name, is_postgresql
from bot.services.errors import DomainError, NotOrganizer
from models import (
    Delivery,
    DeliveryStatus,
    LinkedChat,
    Member,
    Membership,
    NetworkMember,
    Organization,
    OrgKind,
    Petition,
    PetitionStatus,
    Role,
    Signature,
)
from models.base import UTCDateTime

if TYPE_CHECKING:
    from bot.render import Rendered, Renderer

MAX_TITLE = 120
MAX_ADDRESSEE = 120
MAX_BODY = 20_000
MAX_COMMENT = 300
MAX_GOAL = 10_000_000
MILESTONES = (25, 50, 75, 100)
SUMMARY_LENGTH = 280
CLOSE_JOB = "petition.close"
COMMENT_FLOW = "petition_comment"
# A closing date without a time of day closes at the end of that day.
END_OF_DAY = dt.time(23, 59)
PUBLIC_WORDS = {"공개", "public", "이름공개", "실명"}
PRIVATE_WORDS = {"비공개", "private", "익명", "anonymous"}
NOTIFY_WORDS = {"알림", "notify"}


# --- errors -------------------------------------------------------------------------------------


class PetitionError(DomainError):
    """Base of the petitions feature's errors (messages in petitions/errors.html)."""

    feature = "petitions"


class PetitionNotFound(PetitionError):
    """No petition with that number."""

    code = "not_found"


class PetitionClosed(PetitionError):
    """The petition no longer takes (or gives back) signatures."""

    code = "closed"


class AlreadySigned(PetitionError):
    """A second signature by the same person: refused, the count stays."""

    code = "already_signed"


class NotSigned(PetitionError):
    """Withdrawing, commenting or choosing a name without an active signature."""

    code = "not_signed"


class TooManyTaps(PetitionError):
    """A flood of taps by one person on one petition."""

    code = "too_many_taps"


class TextSentRecently(PetitionError):
    """The full text was sent to this person a moment ago."""

    code = "text_sent"


class InvalidPetition(PetitionError):
    """Input for a petition that cannot be used; ``field`` and ``reason`` say why."""

    code = "invalid"


# --- flood control ------------------------------------------------------------------------------


class TapLimiter:
    """At most ``taps`` petition button presses per person and petition within ``window``.

    Kept in memory, per instance, on purpose: it only protects the instance's work and the
    person's chat from floods, it never decides what is counted (the unique constraint and the
    guarded UPDATEs do), and checking it costs no database statement — which is the point of
    refusing a flood. With several instances a person gets at most that many times the
    allowance; a restart forgets it. The full text is sent at most once per ``text_every``.
    """

    def __init__(
        self,
        taps: int = 8,
        window: dt.timedelta = dt.timedelta(seconds=30),
        text_every: dt.timedelta = dt.timedelta(seconds=60),
        max_keys: int = 50_000,
    ) -> None:
        self.taps = taps
        self.window = window
        self.text_every = text_every
        self.max_keys = max_keys
        self._presses: dict[tuple[int, int], deque[dt.datetime]] = {}
        self._texts: dict[tuple[int, int], dt.datetime] = {}

    def check(self, member_id: int, petition_id: int, now: dt.datetime) -> None:
        """Count a press; TooManyTaps (with the seconds to wait) past the allowance."""
        key = (member_id, petition_id)
        presses = self._presses.get(key)
        if presses is None:
            if len(self._presses) >= self.max_keys:
                self._prune(now)
            presses = self._presses[key] = deque()
        while presses and now - presses[0] >= self.window:
            presses.popleft()
        if len(presses) >= self.taps:
            wait = self.window - (now - presses[0])
            raise TooManyTaps(seconds=max(1, int(wait.total_seconds() + 0.999)))
        presses.append(now)

    def check_text(self, member_id: int, petition_id: int, now: dt.datetime) -> None:
        """Allow sending the full text again only after ``text_every``."""
        key = (member_id, petition_id)
        sent = self._texts.get(key)
        if sent is not None and now - sent < self.text_every:
            raise TextSentRecently()
        if len(self._texts) >= self.max_keys:
            self._texts = {k: t for k, t in self._texts.items() if now - t < self.text_every}
        self._texts[key] = now

    def _prune(self, now: dt.datetime) -> None:
        self._presses = {
            key: presses
            for key, presses in self._presses.items()
            if presses and now - presses[-1] < self.window
        }


# --- reading what people type -------------------------------------------------------------------


def _one_line(text: str) -> str:
    return " ".join("".join(ch for ch in text if ch.isprintable()).split())


def _within(field: str, value: str, limit: int) -> str:
    """The value, unless it is empty or longer than ``limit`` (the error names both)."""
    if not value:
        raise InvalidPetition(field=field, reason="empty")
    if len(value) > limit:
        raise InvalidPetition(field=field, reason="too_long", limit=limit, length=len(value))
    return value


def clean_title(text: str) -> str:
    """A title as stored: one line, not empty, within the limit."""
    return _within("title", _one_line(text), MAX_TITLE)


def clean_addressee(text: str) -> str:
    """Whom the petition is addressed to: one line, not empty, within the limit."""
    return _within("addressee", _one_line(text), MAX_ADDRESSEE)


def parse_goal(text: str) -> int:
    """A goal like "500", "1,000" or "500명"; a whole number from 1 to MAX_GOAL."""
    cleaned = text.strip().lower().replace(",", "").replace(" ", "")
    match = re.fullmatch(r"(\d{1,9})(명|people|signatures|sign)?", cleaned)
    if not match:
        raise InvalidPetition(field="goal", reason="number", value=text.strip()[:40])
    goal = int(match.group(1))
    if not 1 <= goal <= MAX_GOAL:
        raise InvalidPetition(field="goal", reason="range", limit=MAX_GOAL)
    return goal


def parse_closing(text: str, *, now: dt.datetime, timezone: str) -> dt.datetime:
    """A closing moment in the future; a date alone means the end of that day."""
    moment = timeparse.parse_when(text, now=now, timezone=timezone, default_time=END_OF_DAY)
    return timeparse.require_future(moment, now=now, text=text)


def clean_body(text: str) -> str:
    """The full text as stored: line breaks kept, control characters and outer blanks dropped."""
    lines = ["".join(ch for ch in line if ch.isprintable()).rstrip() for line in text.split("\n")]
    return _within("body", re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip(), MAX_BODY)


def clean_comment(text: str) -> str:
    """A signer's comment on one line: not empty, at most MAX_COMMENT characters."""
    return _within("comment", _one_line(text), MAX_COMMENT)


def summary_of(body: str, limit: int = SUMMARY_LENGTH) -> str:
    """The beginning of the full text, cut at a word, for cards (plain text, escaped later)."""
    flat = " ".join(body.split())
    if len(flat) <= limit:
        return flat
    cut = flat[:limit]
    space = cut.rfind(" ")
    if space > limit // 2:
        cut = cut[:space]
    return cut.rstrip(" ,.;:·") + "…"


def milestone_level(count: int, goal: int) -> int:
    """The highest milestone (percent of the goal) a count has reached; 0 for none."""
    level = 0
    for milestone in MILESTONES:
        if count * 100 >= milestone * goal:
            level = milestone
    return level


def close_job_key(petition_id: int) -> str:
    """The fixed key of a petition's closing job."""
    return f"petition-{petition_id}-close"


# --- creating -----------------------------------------------------------------------------------


@dataclass
class OneLine:
    """What the one-line form of /new_petition said."""

    title: str
    addressee: str
    goal: int
    closes_at: dt.datetime | None
    public_names: bool
    notify_signers: bool
    org: Organization
    body: str | None


async def parse_one_line(
    session: AsyncSession,
    *,
    member: Member,
    text: str,
    is_bot_admin: bool,
    now: dt.datetime,
) -> OneLine:
    """Read ``TITLE | TO WHOM | GOAL [| options]`` (full text on the following lines)."""
    first, _, rest = text.partition("\n")
    parts = [part.strip() for part in first.split("|")]
    if len(parts) < 3 or not all(parts[:3]):
        raise InvalidPetition(field="one_line", reason="usage")
    title, addressee, goal = clean_title(parts[0]), clean_addressee(parts[1]), parse_goal(parts[2])
    options = [part for part in parts[3:] if part]
    public_names, notify, org, dates = True, False, None, []
    for option in options:
        word = option.lower().replace(" ", "")
        if word in PUBLIC_WORDS:
            public_names = True
        elif word in PRIVATE_WORDS:
            public_names = False
        elif word in NOTIFY_WORDS:
            notify = True
        elif organizations.SLUG_PATTERN.match(word) and (
            found := (
                await session.exec(select(Organization).where(Organization.slug == word))
            ).first()
        ):
            org = found
        else:
            dates.append(option)
    if org is None:
        choices = await organizations.organizer_orgs(session, member, is_bot_admin=is_bot_admin)
        if not choices:
            raise NotOrganizer(org="", action="petition.create")
        if len(choices) > 1:
            raise InvalidPetition(
                field="org", reason="choose", slugs=", ".join(o.slug for o in choices)
            )
        org = choices[0]
    else:
        await organizations.require_organizer(
            session,
            member=member,
            org=org,
            now=now,
            action="petition.create",
            is_bot_admin=is_bot_admin,
        )
    if len(dates) > 1:
        raise InvalidPetition(field="one_line", reason="option", value=dates[1])
    closes_at = parse_closing(dates[0], now=now, timezone=org.timezone) if dates else None
    body = clean_body(rest) if rest.strip() else None
    return OneLine(title, addressee, goal, closes_at, public_names, notify, org, body)


async def create_petition(
    session: AsyncSession,
    *,
    actor: Member,
    org: Organization,
    title: str,
    addressee: str,
    goal: int,
    body: str,
    closes_at: dt.datetime | None = None,
    public_names: bool = True,
    notify_signers: bool = False,
    is_bot_admin: bool = False,
    now: dt.datetime,
) -> Petition:
    """An organiser starts a petition; its closing job is scheduled when it has a closing time."""
    await organizations.require_organizer(
        session,
        member=actor,
        org=org,
        now=now,
        action="petition.create",
        is_bot_admin=is_bot_admin,
    )
    title, addressee, body = clean_title(title), clean_addressee(addressee), clean_body(body)
    if not 1 <= goal <= MAX_GOAL:
        raise InvalidPetition(field="goal", reason="range", limit=MAX_GOAL)
    if closes_at is not None:
        timeparse.require_future(closes_at, now=now)
    petition = Petition(
        organization_id=org.id,
        title=title,
        addressee=addressee,
        body=body,
        goal=goal,
        closes_at=closes_at,
        public_names=public_names,
        notify_signers=notify_signers,
        network=org.kind == OrgKind.NETWORK,
        created_by=actor.id,
        created_at=now,
    )
    session.add(petition)
    await session.flush()
    if closes_at is not None:
        await jobs.schedule(
            session,
            kind=CLOSE_JOB,
            key=close_job_key(petition.id),
            due_at=closes_at,
            payload={"petition_id": petition.id},
            now=now,
        )
    await audit.record(
        session,
        action="petition.create",
        now=now,
        actor_member_id=actor.id,
        organization_id=org.id,
        target=f"petition:{petition.id}",
        details={"goal": goal, "public_names": public_names},
    )
    return petition


# --- reading ------------------------------------------------------------------------------------


@dataclass
class PetitionView:
    """A petition as one person sees it: with its organisation and their signature, if any."""

    petition: Petition
    org: Organization
    signature: Signature | None = None
    sponsor_id: int | None = None  # the co-sponsor a shared link came from

    @property
    def signed(self) -> bool:
        """True while the person's signature counts."""
        return self.signature is not None and self.signature.withdrawn_at is None


async def get_petition(session: AsyncSession, petition_id: int) -> Petition:
    """The petition with this number, or PetitionNotFound."""
    petition = await session.get(Petition, petition_id)
    if petition is None:
        raise PetitionNotFound(number=petition_id)
    return petition


async def with_org(session: AsyncSession, petition_id: int) -> tuple[Petition, Organization]:
    """The petition and its organisation in one query, or PetitionNotFound."""
    row = (
        await session.exec(
            select(Petition, Organization)
            .join(Organization, Organization.id == Petition.organization_id)
            .where(Petition.id == petition_id)
        )
    ).first()
    if row is None:
        raise PetitionNotFound(number=petition_id)
    return row[0], row[1]


async def view(session: AsyncSession, *, petition_id: int, member: Member | None) -> PetitionView:
    """A petition with its organisation and the person's signature."""
    petition, org = await with_org(session, petition_id)
    signature = None
    if member is not None:
        signature = (
            await session.exec(
                select(Signature).where(
                    Signature.petition_id == petition_id, Signature.member_id == member.id
                )
            )
        ).first()
    return PetitionView(petition=petition, org=org, signature=signature)


async def open_link(session: AsyncSession, *, arg: str, member: Member | None) -> PetitionView:
    """What a shared link ``pet_<id>`` or ``pet_<id>_<co-sponsor short name>`` points at."""
    number, _, slug = arg.partition("_")
    if not number.isdigit():
        raise PetitionNotFound(number=number[:12])
    shown = await view(session, petition_id=int(number), member=member)
    if slug and shown.petition.network:
        group = (
            await session.exec(
                select(Organization.id)
                .join(NetworkMember, NetworkMember.group_id == Organization.id)
                .where(
                    Organization.slug == slug.lower(),
                    NetworkMember.network_id == shown.petition.organization_id,
                )
            )
        ).first()
        shown.sponsor_id = group
    return shown


async def read_full_text(
    session: AsyncSession,
    *,
    member: Member,
    petition_id: int,
    now: dt.datetime,
    limiter: TapLimiter | None = None,
) -> PetitionView:
    """The petition to send in full (at most once a minute to the same person)."""
    if limiter is not None:
        limiter.check(member.id, petition_id, now)
        limiter.check_text(member.id, petition_id, now)
    return await view(session, petition_id=petition_id, member=member)


async def postable(session: AsyncSession, org: Organization) -> list[Petition]:
    """Open petitions of an organisation (for /post)."""
    result = await session.exec(
        select(Petition)
        .where(Petition.organization_id == org.id, Petition.status == PetitionStatus.OPEN)
        .order_by(Petition.id.desc())
        .limit(20)
    )
    return list(result.all())


async def owner(session: AsyncSession, petition_id: int) -> int | None:
    """The id of the organisation a petition belongs to."""
    return (
        await session.exec(select(Petition.organization_id).where(Petition.id == petition_id))
    ).first()


async def card(session: AsyncSession, petition_id: int) -> tuple[Petition, Organization] | None:
    """What a live card shows, or None if the petition is gone."""
    try:
        return await with_org(session, petition_id)
    except PetitionNotFound:
        return None


async def organizer_petitions(
    session: AsyncSession, member: Member, *, is_bot_admin: bool = False, limit: int = 20
) -> list[Petition]:
    """Recent petitions of the organisations this person organises, open ones first."""
    orgs = await organizations.organizer_orgs(session, member, is_bot_admin=is_bot_admin)
    if not orgs:
        raise NotOrganizer(org="", action="petition.list")
    result = await session.exec(
        select(Petition)
        .where(Petition.organization_id.in_([org.id for org in orgs]))
        .order_by(
            sa.case((Petition.status == PetitionStatus.OPEN, 0), else_=1), Petition.id.desc()
        )
        .limit(limit)
    )
    return list(result.all())


# --- signing ------------------------------------------------------------------------------------


@dataclass
class SignOutcome:
    """A signature that counts now, and the milestone it crossed (if any)."""

    petition: Petition
    milestone: int | None = None


# The statements of a tap are built once, with bound parameters: building and caching a
# statement costs more than running it (see members._by_telegram_id_statement).


@functools.cache
def _sign_statement(dialect: str):
    """Upsert one signature: written only for an open petition, and only a withdrawn
    signature is revived; RETURNING nothing means already signed (or not open)."""
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    statement = insert(Signature.__table__).from_select(
        ["petition_id", "member_id", "public", "sponsor_org_id", "signed_at"],
        sa.select(
            Petition.id,
            sa.bindparam("member_id", type_=sa.Integer),
            sa.false(),
            Petition.organization_id,
            sa.bindparam("now", type_=UTCDateTime()),
        ).where(
            Petition.id == sa.bindparam("petition_id"), Petition.status == PetitionStatus.OPEN
        ),
    )
    return statement.on_conflict_do_update(
        index_elements=["petition_id", "member_id"],
        set_={
            "signed_at": statement.excluded.signed_at,
            "sponsor_org_id": statement.excluded.sponsor_org_id,
            "withdrawn_at": None,
            "public": False,
            "comment": None,
        },
        where=Signature.withdrawn_at.is_not(None),
    ).returning(Signature.id)


@functools.cache
def _count_statement():
    """Move an open petition's count; RETURNING the petition as it is now."""
    table = Petition.__table__
    return (
        sa.update(table)
        .where(table.c.id == sa.bindparam("petition_id"), table.c.status == PetitionStatus.OPEN)
        .values(signature_count=table.c.signature_count + sa.bindparam("step"))
        .returning(*table.c)
    )


async def _count(session: AsyncSession, petition_id: int, step: int) -> Petition:
    """Move an open petition's count by ``step`` with one atomic UPDATE (which, on PostgreSQL,
    also queues concurrent signers of the petition behind each other until they commit)."""
    result = await session.exec(
        _count_statement(), params={"petition_id": petition_id, "step": step}
    )
    row = result.first()
    petition = Petition.model_construct(**row._mapping) if row is not None else None
    if petition is None:  # closed between our check and now: the caller's rollback undoes all
        existing = await get_petition(session, petition_id)
        raise PetitionClosed(title=existing.title, count=existing.signature_count)
    return petition


def _open(petition_id: int):
    return sa.exists().where(Petition.id == petition_id, Petition.status == PetitionStatus.OPEN)


async def _refusal(session: AsyncSession, petition_id: int, otherwise: type[PetitionError]):
    """Why nothing was written: no such petition, a closed one, or ``otherwise``."""
    petition = await get_petition(session, petition_id)
    if petition.status != PetitionStatus.OPEN:
        return PetitionClosed(title=petition.title, count=petition.signature_count)
    return otherwise(title=petition.title, count=petition.signature_count)


async def sign_petition(
    session: AsyncSession,
    *,
    member: Member,
    petition_id: int,
    now: dt.datetime,
    renderer: Renderer,
    limiter: TapLimiter | None = None,
    chat_id: int | None = None,
    sponsor_hint: int | None = None,
) -> SignOutcome:
    """Sign (or sign again after withdrawing); a second signature is refused, unwritten.

    Two statements in the usual case: the signature's upsert, which writes only for an open
    petition and only revives a withdrawn signature, then the count's UPDATE.
    """
    if limiter is not None:
        limiter.check(member.id, petition_id, now)
    signature_id = (
        await session.exec(
            _sign_statement(dialect_name(session)),
            params={"petition_id": petition_id, "member_id": member.id, "now": now},
        )
    ).scalar()
    if signature_id is None:
        raise await _refusal(session, petition_id, AlreadySigned)
    petition = await _count(session, petition_id, +1)
    if petition.network:
        sponsor = await _sponsor(session, petition, member, chat_id, sponsor_hint)
        if sponsor != petition.organization_id:
            await session.exec(
                sa.update(Signature)
                .where(Signature.id == signature_id)
                .values(sponsor_org_id=sponsor)
            )
    milestone = await _cross_milestone(session, petition, renderer=renderer, now=now)
    return SignOutcome(petition=petition, milestone=milestone)


async def _sponsor(
    session: AsyncSession,
    petition: Petition,
    member: Member,
    chat_id: int | None,
    hint: int | None,
) -> int:
    """The co-sponsor a signature counts for: the group chat it was tapped in, the group's
    link it came through, or the signer's own group in the network; else the organiser."""
    if not petition.network:
        return petition.organization_id
    groups = set(
        (
            await session.exec(
                select(NetworkMember.group_id).where(
                    NetworkMember.network_id == petition.organization_id
                )
            )
        ).all()
    )
    if chat_id is not None and chat_id < 0:
        linked = (
            await session.exec(
                select(LinkedChat.organization_id).where(LinkedChat.chat_id == chat_id)
            )
        ).first()
        if linked in groups:
            return linked
    if hint in groups:
        return hint
    if groups:
        own = (
            await session.exec(
                select(Membership.organization_id)
                .where(Membership.member_id == member.id, Membership.organization_id.in_(groups))
                .order_by(Membership.joined_at)
                .limit(1)
            )
        ).first()
        if own is not None:
            return own
    return petition.organization_id


async def _cross_milestone(
    session: AsyncSession, petition: Petition, *, renderer: Renderer, now: dt.datetime
) -> int | None:
    """Claim and announce the milestone this signature reached, if nobody announced it yet."""
    level = milestone_level(petition.signature_count, petition.goal)
    if level <= petition.milestone_reached:
        return None
    claimed = await session.exec(
        sa.update(Petition)
        .where(Petition.id == petition.id, Petition.milestone_reached < level)
        .values(milestone_reached=level)
    )
    if not claimed.rowcount:
        return None
    await _announce(
        session,
        petition,
        renderer=renderer,
        template="petitions/milestone.html",
        event=f"ms{level}",
        now=now,
        signers=petition.notify_signers,
        skip_muted=True,
        level=level,
    )
    return level


async def withdraw_signature(
    session: AsyncSession,
    *,
    member: Member,
    petition_id: int,
    now: dt.datetime,
    limiter: TapLimiter | None = None,
) -> Petition:
    """Take one's signature back while the petition is open; the count goes down by one."""
    if limiter is not None:
        limiter.check(member.id, petition_id, now)
    withdrawn = await session.exec(
        sa.update(Signature)
        .where(
            Signature.petition_id == petition_id,
            Signature.member_id == member.id,
            Signature.withdrawn_at.is_(None),
            _open(petition_id),
        )
        .values(withdrawn_at=now, public=False, comment=None)
        .returning(Signature.id)
    )
    if withdrawn.first() is None:
        raise await _refusal(session, petition_id, NotSigned)
    petition = await _count(session, petition_id, -1)
    return petition


async def _active_signature(
    session: AsyncSession, member: Member, petition_id: int
) -> tuple[Petition, Signature]:
    """The petition (open) and the person's active signature on it, or the reason why not."""
    petition = await get_petition(session, petition_id)
    if petition.status != PetitionStatus.OPEN:
        raise PetitionClosed(title=petition.title, count=petition.signature_count)
    signature = (
        await session.exec(
            select(Signature).where(
                Signature.petition_id == petition_id,
                Signature.member_id == member.id,
                Signature.withdrawn_at.is_(None),
            )
        )
    ).first()
    if signature is None:
        raise NotSigned(title=petition.title)
    return petition, signature


async def set_name_public(
    session: AsyncSession,
    *,
    member: Member,
    petition_id: int,
    public: bool,
    now: dt.datetime,
    limiter: TapLimiter | None = None,
) -> tuple[Petition, Signature]:
    """The signer's answer: may their name be shown on the list handed over?"""
    if limiter is not None:
        limiter.check(member.id, petition_id, now)
    petition, signature = await _active_signature(session, member, petition_id)
    if public and not petition.public_names:
        raise InvalidPetition(field="names", reason="not_public")
    signature.public = public
    session.add(signature)
    await session.flush()
    return petition, signature


async def start_comment(
    session: AsyncSession,
    *,
    member: Member,
    petition_id: int,
    chat_id: int,
    user_id: int,
    now: dt.datetime,
    limiter: TapLimiter | None = None,
) -> Petition:
    """The signer wants to add a comment: their next message in this chat is it."""
    if limiter is not None:
        limiter.check(member.id, petition_id, now)
    petition, _ = await _active_signature(session, member, petition_id)
    await conversations.begin(
        session,
        chat_id=chat_id,
        user_id=user_id,
        flow=COMMENT_FLOW,
        step="comment",
        data={"petition_id": petition_id},
        now=now,
    )
    return petition


async def add_comment(
    session: AsyncSession,
    *,
    member: Member,
    petition_id: int,
    text: str,
    chat_id: int,
    user_id: int,
) -> tuple[Petition, Signature]:
    """Save the signer's comment (replacing an earlier one) and end the comment step."""
    comment = clean_comment(text)
    petition, signature = await _active_signature(session, member, petition_id)
    signature.comment = comment
    session.add(signature)
    await conversations.finish(session, chat_id=chat_id, user_id=user_id)
    await session.flush()
    return petition, signature


# --- closing and announcing ---------------------------------------------------------------------


async def close_petition(
    session: AsyncSession,
    *,
    petition_id: int,
    now: dt.datetime,
    renderer: Renderer,
    actor: Member | None = None,
    is_bot_admin: bool = False,
) -> Petition | None:
    """Close a petition (by an organiser, or its closing job when ``actor`` is None).

    The guarded UPDATE makes closing happen once: the job finding it closed by hand (or the
    other way round) does nothing. Signers and organisers are told the final count.
    """
    if actor is not None:
        petition, org = await with_org(session, petition_id)
        await organizations.require_organizer(
            session,
            member=actor,
            org=org,
            now=now,
            action="petition.close",
            is_bot_admin=is_bot_admin,
        )
    closed = (
        (
            await session.exec(
                sa.update(Petition)
                .where(Petition.id == petition_id, Petition.status == PetitionStatus.OPEN)
                .values(
                    status=PetitionStatus.CLOSED,
                    closed_at=now,
                    closed_reason="hand" if actor is not None else "time",
                )
                .returning(Petition)
                .execution_options(populate_existing=True)
            )
        )
        .scalars()
        .first()
    )
    if closed is None:
        if actor is None:
            return None
        raise PetitionClosed(title=petition.title, count=petition.signature_count)
    if actor is not None:
        await jobs.cancel(session, close_job_key(petition_id))
        await audit.record(
            session,
            action="petition.close",
            now=now,
            actor_member_id=actor.id,
            organization_id=closed.organization_id,
            target=f"petition:{petition_id}",
            details={"count": closed.signature_count},
        )
    await _announce(
        session,
        closed,
        renderer=renderer,
        template="petitions/closed_notice.html",
        event="closed",
        now=now,
        signers=True,
        skip_muted=False,
        # Whoever closed it by hand sees the result already.
        exclude=actor.id if actor is not None else None,
    )
    return closed


async def set_notify_signers(
    session: AsyncSession,
    *,
    actor: Member,
    petition_id: int,
    notify: bool,
    is_bot_admin: bool = False,
    now: dt.datetime,
) -> Petition:
    """Switch telling signers about milestones on or off."""
    petition, org = await with_org(session, petition_id)
    await organizations.require_organizer(
        session,
        member=actor,
        org=org,
        now=now,
        action="petition.notify",
        is_bot_admin=is_bot_admin,
    )
    petition.notify_signers = notify
    session.add(petition)
    await audit.record(
        session,
        action="petition.notify",
        now=now,
        actor_member_id=actor.id,
        organization_id=org.id,
        target=f"petition:{petition_id}",
        details={"notify_signers": notify},
    )
    await session.flush()
    return petition


def _organisers(organization_id: int):
    return select(Membership.member_id).where(
        Membership.organization_id == organization_id,
        Membership.role.in_([Role.ORGANIZER, Role.ADMIN]),
    )


def _active_signers(petition_id: int):
    return select(Signature.member_id).where(
        Signature.petition_id == petition_id, Signature.withdrawn_at.is_(None)
    )


async def _announce(
    session: AsyncSession,
    petition: Petition,
    *,
    renderer: Renderer,
    template: str,
    event: str,
    now: dt.datetime,
    signers: bool,
    skip_muted: bool,
    exclude: int | None = None,
    **values: Any,
) -> None:
    """Queue a notice about ``petition`` for its organisers (and its signers)."""
    organisers = _organisers(petition.organization_id)
    if exclude is not None:
        organisers = organisers.where(Membership.member_id != exclude)
    audiences = [("o", organisers, True)]
    if signers:
        audiences.append(
            (
                "s",
                _active_signers(petition.id).where(
                    Signature.member_id.not_in(_organisers(petition.organization_id))
                ),
                False,
            )
        )
    for tag, member_ids, for_organizer in audiences:
        messages = {
            language: renderer.render(
                template, language, petition=petition, for_organizer=for_organizer, **values
            )
            for language in renderer.catalogs.languages
        }
        await enqueue_for_members(
            session,
            member_ids,
            messages,
            batch=f"petition:{petition.id}:{event}",
            dedupe=f"pet-{petition.id}-{event}-{tag}",
            now=now,
            skip_muted=skip_muted and not for_organizer,
        )


async def enqueue_for_members(
    session: AsyncSession,
    member_ids: Any,
    messages: dict[str, Rendered],
    *,
    batch: str,
    dedupe: str,
    now: dt.datetime,
    skip_muted: bool = False,
) -> None:
    """Queue a message (one rendering per language) for every reachable member of a SELECT,
    with one INSERT ... SELECT per language: thousands of signers cost no Python loop."""
    languages = list(messages)
    for language, rendered in messages.items():
        if language == languages[0]:
            in_language = Member.language.not_in(languages[1:])
        else:
            in_language = Member.language == language
        conditions = [
            Member.id.in_(member_ids),
            in_language,
            Member.telegram_user_id.is_not(None),
            Member.deleted_at.is_(None),
            Member.unreachable_since.is_(None),
        ]
        if skip_muted:
            conditions.append(Member.muted.is_(False))
        payload = outbox.message_payload(rendered.to_payload())
        rows = sa.select(
            sa.literal(batch, sa.String),
            Member.telegram_user_id,
            Member.id,
            sa.literal(payload, sa.JSON),
            sa.literal(dedupe + "-", sa.String) + sa.cast(Member.id, sa.String),
            sa.literal(0, sa.Integer),
            sa.literal(str(DeliveryStatus.PENDING), sa.String),
            sa.literal(0, sa.Integer),
            sa.literal(now, UTCDateTime()),
            sa.literal("", sa.String),
            sa.literal("", sa.String),
            sa.literal(now, UTCDateTime()),
        ).where(*conditions)
        await session.exec(
            sa.insert(Delivery).from_select(
                [
                    "batch",
                    "chat_id",
                    "member_id",
                    "payload",
                    "dedupe_key",
                    "priority",
                    "status",
                    "attempts",
                    "next_attempt_at",
                    "claimed_by",
                    "last_error",
                    "created_at",
                ],
                rows,
            )
        )
    session.info[outbox.ENQUEUED] = True


# --- organisers: summary and exports ------------------------------------------------------------


@dataclass
class Summary:
    """What /signatures shows an organiser."""

    petition: Petition
    org: Organization
    active: int = 0
    public: int = 0
    withdrawn: int = 0
    comments: int = 0
    per_day: list[tuple[dt.datetime, int]] = field(default_factory=list)  # noon of each day
    earlier_days: int = 0  # signatures on days older than those listed
    per_sponsor: list[tuple[str, int]] = field(default_factory=list)
    groups: list[Organization] = field(default_factory=list)  # co-sponsors of a network

    @property
    def private(self) -> int:
        """Signatures counted without a public name."""
        return self.active - self.public


async def organiser_petition(
    session: AsyncSession,
    *,
    actor: Member,
    petition_id: int,
    action: str,
    is_bot_admin: bool,
    now: dt.datetime,
) -> tuple[Petition, Organization]:
    """The petition and its organisation, after checking the actor organises it."""
    petition, org = await with_org(session, petition_id)
    await organizations.require_organizer(
        session, member=actor, org=org, now=now, action=action, is_bot_admin=is_bot_admin
    )
    return petition, org


def _hour_key(session: AsyncSession):
    """The UTC hour of a signature as text, the same way on both databases."""
    if is_postgresql(session):
        return sa.func.to_char(sa.func.timezone("UTC", Signature.signed_at), "YYYY-MM-DD HH24")
    return sa.func.strftime("%Y-%m-%d %H", Signature.signed_at)


async def summarise(
    session: AsyncSession,
    *,
    actor: Member,
    petition_id: int,
    is_bot_admin: bool = False,
    now: dt.datetime,
    days: int = 14,
) -> Summary:
    """Count, names shown or not, per day (organisation's time zone), per co-sponsor."""
    petition, org = await organiser_petition(
        session,
        actor=actor,
        petition_id=petition_id,
        action="petition.signatures",
        is_bot_admin=is_bot_admin,
        now=now,
    )
    active = Signature.withdrawn_at.is_(None)

    def how_many(condition):
        return sa.func.sum(sa.case((condition, 1), else_=0))

    totals = (
        await session.exec(
            select(
                how_many(active),
                how_many(sa.and_(active, Signature.public.is_(True))),
                how_many(Signature.withdrawn_at.is_not(None)),
                how_many(sa.and_(active, Signature.comment.is_not(None))),
            ).where(Signature.petition_id == petition_id)
        )
    ).one()
    summary = Summary(petition=petition, org=org)
    summary.active, summary.public, summary.withdrawn, summary.comments = (
        int(value or 0) for value in totals
    )
    # Hours are summed into local days here: exact for every zone with whole-hour offsets.
    hour = _hour_key(session)
    per_hour = await session.exec(
        select(hour, sa.func.count())
        .where(Signature.petition_id == petition_id, active)
        .group_by(hour)
    )
    zone = ZoneInfo(org.timezone)
    by_day: dict[dt.date, int] = {}
    for key, count in per_hour.all():
        moment = dt.datetime.strptime(key, "%Y-%m-%d %H").replace(tzinfo=dt.UTC)
        day = moment.astimezone(zone).date()
        by_day[day] = by_day.get(day, 0) + count
    ordered = [
        (dt.datetime.combine(day, dt.time(12), tzinfo=zone), count)
        for day, count in sorted(by_day.items())
    ]
    summary.per_day = ordered[-days:]
    summary.earlier_days = sum(count for _, count in ordered[:-days])
    if petition.network:
        summary.groups = await organizations.network_groups(session, org)
        counted = dict(
            (
                await session.exec(
                    select(Signature.sponsor_org_id, sa.func.count())
                    .where(Signature.petition_id == petition_id, active)
                    .group_by(Signature.sponsor_org_id)
                )
            ).all()
        )
        summary.per_sponsor = [(group.name, counted.pop(group.id, 0)) for group in summary.groups]
        summary.per_sponsor.append((org.name, sum(counted.values())))
    return summary


@dataclass
class SignatureRow:
    """One line of an export: private signers have no name."""

    number: int
    name: str | None
    sponsor: str
    signed_at: dt.datetime
    comment: str


async def signature_rows(session: AsyncSession, petition: Petition) -> AsyncIterator[SignatureRow]:
    """Active signatures in signing order, streamed; names only where the signer agreed."""
    result = await session.stream(
        select(
            Signature.signed_at,
            Signature.public,
            Signature.comment,
            Member.display_name,
            Organization.name,
        )
        .join(Member, Member.id == Signature.member_id)
        .outerjoin(Organization, Organization.id == Signature.sponsor_org_id)
        .where(Signature.petition_id == petition.id, Signature.withdrawn_at.is_(None))
        .order_by(Signature.signed_at, Signature.id)
        .execution_options(yield_per=500)
    )
    number = 0
    async for signed_at, public, comment, name, sponsor in result:
        number += 1
        shown = name if public and petition.public_names and name else None
        yield SignatureRow(number, shown, sponsor or "", signed_at, comment or "")


async def export_table(
    session: AsyncSession,
    *,
    actor: Member,
    petition_id: int,
    kind: str,
    headers: Sequence[str],
    private_label: str,
    is_bot_admin: bool = False,
    now: dt.datetime,
) -> tuple[Petition, str, bytes]:
    """The signature list as CSV (UTF-8 with BOM) or XLSX: (petition, file name, bytes)."""
    petition, org = await organiser_petition(
        session,
        actor=actor,
        petition_id=petition_id,
        action="petition.export",
        is_bot_admin=is_bot_admin,
        now=now,
    )

    async def rows():
        async for row in signature_rows(session, petition):
            yield (
                row.number,
                row.name or private_label,
                row.sponsor,
                row.signed_at,
                row.comment,
            )

    if kind == "xlsx":
        data = await exports.xlsx_bytes(
            headers, rows(), sheet_title=petition.title, timezone=org.timezone
        )
    else:
        data = await exports.csv_bytes(headers, rows(), timezone=org.timezone)
    await audit.record(
        session,
        action="petition.export",
        now=now,
        actor_member_id=actor.id,
        organization_id=org.id,
        target=f"petition:{petition_id}",
        details={"format": kind},
    )
    return petition, f"petition-{petition_id}-{now:%Y%m%d}.{kind}", data


@dataclass
class Printable:
    """What the page handed over shows: the text, public names, and how many signed privately."""

    petition: Petition
    org: Organization
    names: list[str]
    private: int
    groups: list[Organization]

    @property
    def total(self) -> int:
        """Every signature that counts."""
        return len(self.names) + self.private


async def printable(
    session: AsyncSession,
    *,
    actor: Member,
    petition_id: int,
    is_bot_admin: bool = False,
    now: dt.datetime,
) -> Printable:
    """The data of the printable page (names in signing order)."""
    petition, org = await organiser_petition(
        session,
        actor=actor,
        petition_id=petition_id,
        action="petition.export",
        is_bot_admin=is_bot_admin,
        now=now,
    )
    names: list[str] = []
    private = 0
    async for row in signature_rows(session, petition):
        if row.name:
            names.append(row.name)
        else:
            private += 1
    groups = await organizations.network_groups(session, org) if petition.network else []
    await audit.record(
        session,
        action="petition.export",
        now=now,
        actor_member_id=actor.id,
        organization_id=org.id,
        target=f"petition:{petition_id}",
        details={"format": "html"},
    )
    return Printable(petition=petition, org=org, names=names, private=private, groups=groups)


# --- a person's own signatures: /me, /mydata, /forget ------------------------------------------


async def signed_by(
    session: AsyncSession, member: Member, *, limit: int = 10
) -> tuple[list[tuple[Petition, Signature]], int]:
    """The person's signatures that count, newest first (at most ``limit``), and how many."""
    mine = (Signature.member_id == member.id, Signature.withdrawn_at.is_(None))
    total = (await session.exec(select(sa.func.count()).select_from(Signature).where(*mine))).one()
    if not total:
        return [], 0
    rows = await session.exec(
        select(Petition, Signature)
        .join(Signature, Signature.petition_id == Petition.id)
        .where(*mine)
        .order_by(Signature.signed_at.desc())
        .limit(limit)
    )
    return [(petition, signature) for petition, signature in rows.all()], total


def _iso(moment: dt.datetime | None) -> str | None:
    return moment.isoformat() if moment else None


async def export_member(session: AsyncSession, member: Member) -> list[dict[str, Any]]:
    """Every signature of the person (withdrawn ones too), for /mydata."""
    rows = await session.exec(
        select(Signature, Petition, Organization)
        .join(Petition, Petition.id == Signature.petition_id)
        .join(Organization, Organization.id == Petition.organization_id)
        .where(Signature.member_id == member.id)
        .order_by(Signature.id)
    )
    return [
        {
            "petition": petition.id,
            "title": petition.title,
            "organization": org.name,
            "signed_at": _iso(signature.signed_at),
            "withdrawn_at": _iso(signature.withdrawn_at),
            "name_shown_publicly": signature.public,
            "comment": signature.comment,
        }
        for signature, petition, org in rows.all()
    ]


async def erase_member(session: AsyncSession, member: Member, now: dt.datetime) -> None:
    """/forget: the person's comments go and their name is never shown again; each signature
    stays, counted without a name (the member row itself becomes an anonymous tombstone)."""
    await session.exec(
        sa.update(Signature)
        .where(Signature.member_id == member.id)
        .values(public=False, comment=None)
    )


# --- audiences ----------------------------------------------------------------------------------


async def audience_items(session: AsyncSession, org: Organization) -> list[Petition]:
    """The organisation's petitions to choose an audience from, newest first."""
    result = await session.exec(
        select(Petition)
        .where(Petition.organization_id == org.id)
        .order_by(Petition.id.desc())
        .limit(30)
    )
    return list(result.all())


def audience_member_ids(item_id: int, variant: str):
    """The members whose signature on the petition counts (variant "signers")."""
    if variant != "signers":
        return select(Signature.member_id).where(sa.false())
    return _active_signers(item_id)

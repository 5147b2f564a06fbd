"""Announcements: check the message, choose the audience, schedule, send once, report.

An announcement's text is Telegram HTML (the organiser's formatting kept) with variables such
as ``{{ name }}``. It is checked as a template before anything is stored: only plain
``{{ variable }}`` slots of the known names are allowed (no tags, filters, attribute access or
calls), rendered in Jinja2's sandbox with autoescape, so the text can do nothing but say
hello by name.

When it starts, every recipient gets one Delivery row in the outbox (batch
``broadcast:<id>``, one dedupe key per member) in the same transaction that marks it started;
the outbox sender does the rest, and ``finish_broadcast`` writes the totals once every row
has its outcome.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any
from zoneinfo import ZoneInfo

import jinja2
import sqlalchemy as sa
from jinja2 import nodes
from jinja2.sandbox import ImmutableSandboxedEnvironment
from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession

from bot.render import TELEGRAM_CAPTION_LIMIT, TELEGRAM_TEXT_LIMIT, visible_length
from bot.runtime import Audience
from bot.services import audit, jobs, organizations, outbox
from bot.services.errors import DomainError, StaleButton
from bot.services.timeparse import require_future
from models import (
    Broadcast,
    BroadcastStatus,
    DeliveryStatus,
    Member,
    Membership,
    Organization,
    OrgKind,
    Role,
    Tier,
)

BATCH_PREFIX = "broadcast"
JOB_KIND = "broadcast.send"
# Below other notifications (reminders, confirmations), so a long announcement never
# holds them up: the sender claims higher priorities first.
PRIORITY = -1
MEDIA_KINDS = ("", "photo", "document")
SEGMENTS = ("all", "full", "supporter", "organizers")
# Variables an announcement may use, with Korean names for Korean organisers.
VARIABLES = {"name": "name", "이름": "name", "org": "org", "단체": "org"}
# The longest value each variable can take, for checking the length before sending.
LONGEST = {"name": "W" * 64}


# --- errors -----------------------------------------------------------------------------------


class BroadcastError(DomainError):
    """Something about an announcement that cannot be done as asked."""

    feature = "broadcasts"


class EmptyMessage(BroadcastError):
    """No text (and no picture or file) to send."""

    code = "empty"


class MessageTooLong(BroadcastError):
    """Longer than Telegram allows (4,096 characters; 1,024 under a picture or file)."""

    code = "too_long"


class TemplateProblem(BroadcastError):
    """The variables in the text cannot be used: a typo, an unknown name, or template code."""

    code = "template"


class EmptyAudience(BroadcastError):
    """Nobody would receive it (everyone chosen is muted, unreachable, or there is nobody)."""

    code = "empty_audience"


class BroadcastNotFound(BroadcastError):
    """No such announcement in the person's organisations."""

    code = "not_found"


class AlreadySent(BroadcastError):
    """It has already gone out: it cannot be cancelled any more."""

    code = "already_sent"


class AlreadyCancelled(BroadcastError):
    """It was cancelled before."""

    code = "already_cancelled"


# --- the message ------------------------------------------------------------------------------


class _Environment(ImmutableSandboxedEnvironment):
    """The sandbox announcements render in: autoescaped, unknown variables are errors."""

    def __init__(self) -> None:
        super().__init__(autoescape=True, undefined=jinja2.StrictUndefined)


_ENVIRONMENT = _Environment()


@dataclass(frozen=True)
class Body:
    """An announcement's text, checked: renders with :meth:`render`."""

    source: str
    template: jinja2.Template

    def render(self, *, name: str, org: str) -> str:
        """The text for one recipient (Telegram HTML)."""
        values = {"name": name, "org": org}
        return self.template.render({alias: values[key] for alias, key in VARIABLES.items()})


def check_body(source: str) -> Body:
    """The text as a template, or TemplateProblem saying what is wrong and where."""
    try:
        tree = _ENVIRONMENT.parse(source)
    except jinja2.TemplateSyntaxError as error:
        raise TemplateProblem(reason="syntax", line=error.lineno or 1) from None
    _check_nodes(tree)
    return Body(source=source, template=_ENVIRONMENT.from_string(source))


def _check_nodes(node: nodes.Node) -> None:
    """Allow text and ``{{ known_variable }}`` only."""
    for child in node.iter_child_nodes():
        if isinstance(child, nodes.Name):
            if child.name not in VARIABLES:
                raise TemplateProblem(reason="unknown", name=child.name, line=child.lineno)
            continue
        if not isinstance(child, nodes.Output | nodes.TemplateData):
            raise TemplateProblem(reason="not_allowed", line=child.lineno)
        _check_nodes(child)


def compose(header: str, body: str) -> str:
    """The message as recipients see it: the line naming the organisation, then the text."""
    return f"{header}\n\n{body}" if body else header


def check_message(
    source: str, *, header: str, org_name: str, has_media: bool, media_kind: str = ""
) -> Body:
    """Check an announcement before it is stored: not empty, a valid template, within limits.

    The length is checked with the longest names the variables can take, so no recipient's
    copy can be too long.
    """
    if media_kind not in MEDIA_KINDS:
        raise StaleButton()
    if not source.strip() and not has_media:
        raise EmptyMessage()
    body = check_body(source)
    longest = compose(header, body.render(name=LONGEST["name"], org=org_name))
    limit = TELEGRAM_CAPTION_LIMIT if has_media else TELEGRAM_TEXT_LIMIT
    length = visible_length(longest)
    if length > limit:
        raise MessageTooLong(limit=limit, length=length, caption=has_media)
    return body


def message_payload(
    text: str, *, media_kind: str, file_id: str, filename: str, paid: bool
) -> dict[str, Any]:
    """The outbox payload of one recipient's copy."""
    extra: dict[str, Any] = {"paid": True} if paid else {}
    rendered = {"text": text, "buttons": []}
    if media_kind == "photo":
        return outbox.message_payload(rendered, method=outbox.SEND_PHOTO, file_id=file_id, **extra)
    if media_kind == "document":
        return outbox.message_payload(
            rendered, method=outbox.SEND_DOCUMENT, file_id=file_id, filename=filename, **extra
        )
    return outbox.message_payload(rendered, **extra)


# --- audiences --------------------------------------------------------------------------------


@dataclass(frozen=True)
class AudienceCount:
    """Who an audience reaches: recipients, and who is left out and why."""

    recipients: int
    muted: int
    unreachable: int

    @property
    def total(self) -> int:
        """Everyone in the audience."""
        return self.recipients + self.muted + self.unreachable


def builtin_audiences(org: Organization) -> list[dict[str, Any]]:
    """The organisation's own audiences: everyone, a tier, the organisers (network-wide for a
    network: each member of any of its groups once)."""
    kind = "network" if org.kind == OrgKind.NETWORK else "org"
    return [{"kind": kind, "segment": segment} for segment in SEGMENTS]


async def feature_items(session: AsyncSession, org: Organization, audience: Audience) -> list[Any]:
    """The items (campaigns, meetings, ...) of a feature audience this organisation can use."""
    return list(await audience.items(session, org))


async def resolve_audience(
    session: AsyncSession,
    org: Organization,
    choice: Mapping[str, Any],
    registry: Mapping[str, Audience],
    *,
    check_item: bool = True,
) -> tuple[dict[str, Any], sa.Select]:
    """Check an audience choice (it comes from a button) and return it with the SELECT of its
    member ids; StaleButton if it does not fit this organisation. ``check_item=False`` trusts
    an item checked when the announcement was confirmed (it may be closed by now)."""
    kind = choice.get("kind")
    if kind in ("org", "network"):
        segment = choice.get("segment")
        expected = "network" if org.kind == OrgKind.NETWORK else "org"
        if kind != expected or segment not in SEGMENTS:
            raise StaleButton()
        org_ids = [org.id]
        if kind == "network":
            org_ids += [group.id for group in await organizations.network_groups(session, org)]
        query = select(Membership.member_id).where(Membership.organization_id.in_(org_ids))
        if segment == "full":
            query = query.where(Membership.tier == Tier.FULL)
        elif segment == "supporter":
            query = query.where(Membership.tier == Tier.SUPPORTER)
        elif segment == "organizers":
            query = query.where(Membership.role.in_([Role.ORGANIZER, Role.ADMIN]))
        return {"kind": kind, "segment": segment}, query
    if kind == "feature":
        audience = registry.get(str(choice.get("key")))
        variant = choice.get("variant")
        item_id = choice.get("item")
        if audience is None or variant not in audience.variants or not isinstance(item_id, int):
            raise StaleButton()
        title = str(choice.get("title", ""))
        if check_item:
            items = await feature_items(session, org, audience)
            item = next((i for i in items if i.id == item_id), None)
            if item is None:
                raise StaleButton()
            title = str(getattr(item, "title", ""))[:120]
        clean = {
            "kind": "feature",
            "key": audience.key,
            "item": item_id,
            "variant": variant,
            "title": title,
        }
        return clean, audience.member_ids(item_id, variant)
    raise StaleButton()


def _members_of(member_ids: sa.Select):
    """Registered (not deleted) members among the ids."""
    return (
        Member.id.in_(member_ids.scalar_subquery()),
        Member.deleted_at.is_(None),
        Member.telegram_user_id.is_not(None),
    )


async def count_audience(session: AsyncSession, member_ids: sa.Select) -> AudienceCount:
    """How many of the audience receive it, are muted, or cannot be reached (one query)."""
    muted = sa.func.coalesce(sa.func.sum(sa.case((Member.muted, 1), else_=0)), 0)
    unreachable = sa.func.coalesce(
        sa.func.sum(
            sa.case((sa.and_(~Member.muted, Member.unreachable_since.is_not(None)), 1), else_=0)
        ),
        0,
    )
    total, muted_count, unreachable_count = (
        await session.exec(
            select(sa.func.count(), muted, unreachable).where(*_members_of(member_ids))
        )
    ).one()
    return AudienceCount(
        recipients=int(total) - int(muted_count) - int(unreachable_count),
        muted=int(muted_count),
        unreachable=int(unreachable_count),
    )


# --- when it goes out -------------------------------------------------------------------------


@dataclass(frozen=True)
class Timing:
    """When an announcement starts and about how long it takes."""

    send_at: dt.datetime
    quiet_delayed: bool  # it would have reached people in quiet hours: it waits
    seconds: int  # about how long sending takes


def _clock(text: str) -> dt.time:
    hours, minutes = text.split(":")
    return dt.time(int(hours), int(minutes))


def quiet_period(
    moment: dt.datetime, *, start: str, end: str, timezone: str
) -> tuple[dt.datetime, dt.datetime] | None:
    """The quiet period ``moment`` falls in, or else the next one after it (as UTC)."""
    quiet_start, quiet_end = _clock(start), _clock(end)
    if quiet_start == quiet_end:
        return None  # no quiet hours
    zone = ZoneInfo(timezone)
    local = moment.astimezone(zone)
    for offset in (-1, 0, 1):
        day = local.date() + dt.timedelta(days=offset)
        begins = dt.datetime.combine(day, quiet_start, tzinfo=zone)
        end_day = day if quiet_end > quiet_start else day + dt.timedelta(days=1)
        ends = dt.datetime.combine(end_day, quiet_end, tzinfo=zone)
        if ends > local:
            return begins.astimezone(dt.UTC), ends.astimezone(dt.UTC)
    return None  # pragma: no cover - one of three days always ends later


def estimate_seconds(recipients: int, rate: float) -> int:
    """About how long sending to ``recipients`` people takes at ``rate`` messages a second."""
    return math.ceil(recipients / rate) if recipients else 0


def plan_timing(
    *,
    recipients: int,
    start: dt.datetime,
    urgent: bool,
    rate: float,
    quiet_start: str,
    quiet_end: str,
    timezone: str,
) -> Timing:
    """When sending starts: at ``start``, or, if it would reach people in quiet hours and is
    not urgent, when they end."""
    seconds = estimate_seconds(recipients, rate)
    if urgent:
        return Timing(start, False, seconds)
    period = quiet_period(start, start=quiet_start, end=quiet_end, timezone=timezone)
    if period is not None:
        begins, ends = period
        if begins <= start + dt.timedelta(seconds=seconds) and start < ends:
            return Timing(ends, True, seconds)
    return Timing(start, False, seconds)


# --- creating, starting, cancelling, finishing ------------------------------------------------


def batch_of(broadcast_id: int) -> str:
    """The outbox batch of an announcement."""
    return f"{BATCH_PREFIX}:{broadcast_id}"


def job_key(broadcast_id: int) -> str:
    """The scheduled job that starts an announcement."""
    return f"broadcast-{broadcast_id}-send"


async def create_broadcast(
    session: AsyncSession,
    *,
    org: Organization,
    author: Member,
    source: str,
    header: str,
    media_kind: str,
    media_file_id: str,
    media_filename: str,
    audience: dict[str, Any],
    registry: Mapping[str, Audience],
    urgent: bool,
    requested_at: dt.datetime | None,
    rate: float,
    quiet_start: str,
    quiet_end: str,
    is_bot_admin: bool = False,
    now: dt.datetime,
) -> tuple[Broadcast, AudienceCount]:
    """An organiser confirms an announcement: checked again, stored, and scheduled for its time
    (now, the time asked for, or the end of quiet hours). The caller starts it if it is due.
    Returns it with the audience as counted now."""
    await organizations.require_organizer(
        session, member=author, org=org, now=now, action="broadcast", is_bot_admin=is_bot_admin
    )
    check_message(
        source,
        header=header,
        org_name=org.name,
        has_media=bool(media_kind),
        media_kind=media_kind,
    )
    audience, member_ids = await resolve_audience(session, org, audience, registry)
    count = await count_audience(session, member_ids)
    if count.recipients == 0:
        raise EmptyAudience(muted=count.muted, unreachable=count.unreachable)
    if requested_at is not None:
        require_future(requested_at, now=now)
    timing = plan_timing(
        recipients=count.recipients,
        start=requested_at or now,
        urgent=urgent,
        rate=rate,
        quiet_start=quiet_start,
        quiet_end=quiet_end,
        timezone=org.timezone,
    )
    broadcast = Broadcast(
        organization_id=org.id,
        author_member_id=author.id,
        body=source,
        media_kind=media_kind,
        media_file_id=media_file_id,
        media_filename=media_filename,
        audience=audience,
        urgent=urgent,
        status=BroadcastStatus.SCHEDULED,
        send_at=timing.send_at,
        requested_at=requested_at,
        created_at=now,
    )
    session.add(broadcast)
    await session.flush()
    if timing.send_at > now:
        await jobs.schedule(
            session,
            kind=JOB_KIND,
            key=job_key(broadcast.id),
            due_at=timing.send_at,
            payload={"broadcast_id": broadcast.id},
            now=now,
        )
    await audit.record(
        session,
        action="broadcast.create",
        now=now,
        actor_member_id=author.id,
        organization_id=org.id,
        target=f"broadcast:{broadcast.id}",
        details={"audience": audience, "recipients": count.recipients, "urgent": urgent},
    )
    return broadcast, count


async def start_broadcast(
    session: AsyncSession,
    broadcast_id: int,
    *,
    header: Callable[[Organization], str],
    registry: Mapping[str, Audience],
    paid: bool,
    now: dt.datetime,
) -> Broadcast | None:
    """Put one delivery per recipient in the outbox and mark it sending — once: None if it
    was cancelled or has started already."""
    started = await session.exec(
        sa.update(Broadcast)
        .where(Broadcast.id == broadcast_id, Broadcast.status == BroadcastStatus.SCHEDULED)
        .values(status=BroadcastStatus.SENDING, started_at=now)
    )
    if not started.rowcount:
        return None
    broadcast = await session.get(Broadcast, broadcast_id, populate_existing=True)
    org = await session.get(Organization, broadcast.organization_id)
    try:
        _audience, member_ids = await resolve_audience(
            session, org, broadcast.audience, registry, check_item=False
        )
    except StaleButton:
        # The feature that named these people is gone: nobody to send to.
        member_ids = select(Member.id).where(sa.false())
    body = check_body(broadcast.body)
    audience = await session.exec(
        select(
            Member.id,
            Member.telegram_user_id,
            Member.display_name,
            Member.muted,
            Member.unreachable_since,
        ).where(*_members_of(member_ids))
    )
    recipients, muted, unreachable = [], 0, 0
    for member_id, telegram_user_id, name, is_muted, unreachable_since in audience.all():
        if is_muted:
            muted += 1  # as count_audience counts them
        elif unreachable_since is not None:
            unreachable += 1
        else:
            recipients.append((member_id, telegram_user_id, name))
    batch = batch_of(broadcast.id)
    top = header(org)
    rows = [
        {
            "chat_id": telegram_user_id,
            "member_id": member_id,
            "dedupe_key": f"{batch}:{member_id}",
            "payload": message_payload(
                compose(top, body.render(name=name, org=org.name)),
                media_kind=broadcast.media_kind,
                file_id=broadcast.media_file_id,
                filename=broadcast.media_filename,
                paid=paid,
            ),
        }
        for member_id, telegram_user_id, name in recipients
    ]
    await outbox.enqueue_many(session, rows, now=now, batch=batch, priority=PRIORITY)
    broadcast.audience_size = len(rows) + muted + unreachable
    broadcast.skipped_muted = muted
    broadcast.skipped_unreachable = unreachable
    session.add(broadcast)
    await session.flush()
    if not rows:
        await finish_broadcast(session, batch, now=now)
    return broadcast


async def finish_broadcast(
    session: AsyncSession, batch: str, *, now: dt.datetime
) -> Broadcast | None:
    """Every delivery has its outcome: write the totals. Returns the announcement only to the
    one caller that finished it (several senders may notice at once)."""
    prefix, _, number = batch.partition(":")
    if prefix != BATCH_PREFIX or not number.isdigit():
        return None
    broadcast_id = int(number)
    counts = await outbox.batch_counts(session, batch)
    if counts[DeliveryStatus.PENDING] or counts[DeliveryStatus.SENDING]:
        return None
    finished = await session.exec(
        sa.update(Broadcast)
        .where(
            Broadcast.id == broadcast_id,
            Broadcast.finished_at.is_(None),
            Broadcast.started_at.is_not(None),
            Broadcast.status.in_([BroadcastStatus.SENDING, BroadcastStatus.CANCELLED]),
        )
        .values(
            status=sa.case(
                (Broadcast.status == BroadcastStatus.SENDING, BroadcastStatus.DONE.value),
                else_=Broadcast.status,
            ),
            finished_at=now,
            sent=counts[DeliveryStatus.SENT],
            failed=counts[DeliveryStatus.FAILED],
            unreachable=counts[DeliveryStatus.UNREACHABLE],
            not_sent=counts[DeliveryStatus.CANCELLED],
        )
    )
    if not finished.rowcount:
        return None
    return await session.get(Broadcast, broadcast_id, populate_existing=True)


async def get_for_organizer(
    session: AsyncSession,
    broadcast_id: int,
    *,
    member: Member,
    is_bot_admin: bool,
    now: dt.datetime,
    action: str,
) -> tuple[Broadcast, Organization]:
    """An announcement of an organisation the person organises."""
    broadcast = await session.get(Broadcast, broadcast_id)
    if broadcast is None:
        raise BroadcastNotFound()
    org = await organizations.by_id(session, broadcast.organization_id)
    await organizations.require_organizer(
        session, member=member, org=org, now=now, action=action, is_bot_admin=is_bot_admin
    )
    return broadcast, org


async def cancel_broadcast(
    session: AsyncSession,
    broadcast_id: int,
    *,
    actor: Member,
    is_bot_admin: bool = False,
    now: dt.datetime,
) -> tuple[Broadcast, int]:
    """Cancel a scheduled announcement, or stop one that is going out (what is not yet sent
    stays unsent). Returns it and how many messages were held back."""
    broadcast, org = await get_for_organizer(
        session,
        broadcast_id,
        member=actor,
        is_bot_admin=is_bot_admin,
        now=now,
        action="broadcast.cancel",
    )
    if broadcast.status == BroadcastStatus.DONE:
        raise AlreadySent()
    if broadcast.status == BroadcastStatus.CANCELLED:
        raise AlreadyCancelled()
    changed = await session.exec(
        sa.update(Broadcast)
        .where(
            Broadcast.id == broadcast.id,
            Broadcast.status.in_([BroadcastStatus.SCHEDULED, BroadcastStatus.SENDING]),
        )
        .values(status=BroadcastStatus.CANCELLED, cancelled_at=now)
    )
    if not changed.rowcount:
        raise AlreadySent()  # it finished a moment ago
    held_back = 0
    if broadcast.started_at is None:
        await jobs.cancel(session, job_key(broadcast.id))
    else:
        held_back = await outbox.cancel_batch(session, batch_of(broadcast.id))
        await finish_broadcast(session, batch_of(broadcast.id), now=now)
    await audit.record(
        session,
        action="broadcast.cancel",
        now=now,
        actor_member_id=actor.id,
        organization_id=org.id,
        target=f"broadcast:{broadcast.id}",
        details={"held_back": held_back},
    )
    await session.refresh(broadcast)
    return broadcast, held_back


@dataclass(frozen=True)
class BroadcastView:
    """One line of /broadcasts: the announcement, its organisation and its progress now."""

    broadcast: Broadcast
    organization: Organization
    sent: int
    failed: int
    unreachable: int  # blocked the bot: known before, or found out while sending
    not_sent: int  # held back: stopped by an organiser, or the person left meanwhile
    left: int  # still to go out

    @property
    def skipped(self) -> int:
        """Left out on purpose: muted announcements."""
        return self.broadcast.skipped_muted

    @property
    def total(self) -> int:
        """Everyone in the audience; sent + failed + unreachable + skipped + not sent + left."""
        return self.broadcast.audience_size

    @property
    def duration(self) -> int | None:
        """Seconds from start to finish."""
        b = self.broadcast
        if b.started_at is None or b.finished_at is None:
            return None
        return max(0, round((b.finished_at - b.started_at).total_seconds()))


async def view_of(session: AsyncSession, broadcast: Broadcast, org: Organization) -> BroadcastView:
    """An announcement with its progress now (counted in the outbox while it goes out)."""
    if broadcast.finished_at is None and broadcast.started_at is not None:
        counts = await outbox.batch_counts(session, batch_of(broadcast.id))
        sent, failed = counts[DeliveryStatus.SENT], counts[DeliveryStatus.FAILED]
        unreachable, not_sent = (
            counts[DeliveryStatus.UNREACHABLE],
            counts[DeliveryStatus.CANCELLED],
        )
        left = counts[DeliveryStatus.PENDING] + counts[DeliveryStatus.SENDING]
    else:
        sent, failed, unreachable = broadcast.sent, broadcast.failed, broadcast.unreachable
        not_sent, left = broadcast.not_sent, 0
    return BroadcastView(
        broadcast=broadcast,
        organization=org,
        sent=sent,
        failed=failed,
        unreachable=unreachable + broadcast.skipped_unreachable,
        not_sent=not_sent,
        left=left,
    )


async def recent_broadcasts(
    session: AsyncSession, orgs: list[Organization], *, limit: int = 10
) -> list[BroadcastView]:
    """The latest announcements of these organisations, newest first, with their progress."""
    if not orgs:
        return []
    by_id = {org.id: org for org in orgs}
    result = await session.exec(
        select(Broadcast)
        .where(Broadcast.organization_id.in_(list(by_id)))
        .order_by(Broadcast.created_at.desc(), Broadcast.id.desc())
        .limit(limit)
    )
    return [
        await view_of(session, broadcast, by_id[broadcast.organization_id])
        for broadcast in result.all()
    ]


async def report_for(
    session: AsyncSession, broadcast: Broadcast
) -> tuple[Member, BroadcastView] | None:
    """Who gets the report of a finished announcement (its author, if still registered), and
    its totals."""
    if broadcast.author_member_id is None:
        return None
    author = await session.get(Member, broadcast.author_member_id)
    if author is None or author.telegram_user_id is None or author.deleted_at is not None:
        return None
    org = await organizations.by_id(session, broadcast.organization_id)
    return author, await view_of(session, broadcast, org)


# --- privacy ----------------------------------------------------------------------------------


async def export_authored(session: AsyncSession, member: Member) -> list[dict[str, Any]]:
    """Announcements the member wrote (for /mydata)."""
    result = await session.exec(
        select(Broadcast, Organization)
        .join(Organization, Organization.id == Broadcast.organization_id)
        .where(Broadcast.author_member_id == member.id)
        .order_by(Broadcast.id)
    )
    return [
        {
            "organization": org.name,
            "created_at": broadcast.created_at.isoformat(),
            "status": str(broadcast.status),
            "text": broadcast.body,
            "audience": broadcast.audience,
            "sent": broadcast.sent,
        }
        for broadcast, org in result.all()
    ]


async def forget_author(session: AsyncSession, member: Member) -> None:
    """The member erased their data: the organisation keeps its announcements, unsigned."""
    await session.exec(
        sa.update(Broadcast)
        .where(Broadcast.author_member_id == member.id)
        .values(author_member_id=None)
    )

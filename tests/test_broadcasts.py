"""Announcements as services: templates, limits, quiet hours, audiences, start and finish."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import pytest
import sqlalchemy as sa
from sqlmodel import select

from bot.runtime import Audience
from bot.services import broadcasts, jobs, organizations, outbox
from bot.services.broadcasts import (
    AlreadyCancelled,
    AlreadySent,
    EmptyAudience,
    EmptyMessage,
    MessageTooLong,
    TemplateProblem,
)
from bot.services.errors import InvalidInput, NotOrganizer, StaleButton
from models import (
    Broadcast,
    BroadcastStatus,
    Delivery,
    DeliveryStatus,
    Member,
    OrgKind,
    Role,
    Tier,
)
from tests.factories import HAEUN, JIHO, MINJI, SEOJUN, add_member, make_member, make_org

HEADER = "📢 <b>새솔마을 주민회</b>"
SEOUL = "Asia/Seoul"


def kst(day: int, hour: int, minute: int = 0) -> dt.datetime:
    """A moment in December 2026, Seoul time, as UTC."""
    return dt.datetime(2026, 12, day, hour, minute, tzinfo=dt.timezone(dt.timedelta(hours=9)))


# --- the message ------------------------------------------------------------------------------


def test_variables_render_escaped_and_in_korean_too():
    body = broadcasts.check_body("<b>{{ name }}</b>님 · {{ 이름 }} · {{ org }} · {{ 단체 }}")
    text = body.render(name="<script>&", org="새솔")
    assert text == "<b>&lt;script&gt;&amp;</b>님 · &lt;script&gt;&amp; · 새솔 · 새솔"


@pytest.mark.parametrize(
    ("source", "reason"),
    [
        ("안녕하세요 {{ nmae }}님", "unknown"),
        ("{{ name.__class__ }}", "not_allowed"),
        ("{{ name|upper }}", "not_allowed"),
        ("{% for i in range(10**9) %}x{% endfor %}", "not_allowed"),
        ("{{ lipsum() }}", "not_allowed"),
        ("{{ name ", "syntax"),
        ("첫 줄\n{% if %}", "syntax"),
    ],
)
def test_only_plain_known_variables_are_allowed(source, reason):
    with pytest.raises(TemplateProblem) as caught:
        broadcasts.check_body(source)
    assert caught.value.params["reason"] == reason


def test_raw_braces_and_comments_are_plain_text():
    body = broadcasts.check_body("{% raw %}{{ name }}{% endraw %} 끝{# memo #}")
    assert body.render(name="서준", org="새솔") == "{{ name }} 끝"


def test_limits_count_the_header_and_the_longest_name():
    header_length = len("📢 새솔마을 주민회".encode("utf-16-le")) // 2 + 2
    fits = "가" * (4096 - header_length)
    broadcasts.check_message(fits, header=HEADER, org_name="새솔마을 주민회", has_media=False)
    with pytest.raises(MessageTooLong) as caught:
        broadcasts.check_message(
            fits + "가", header=HEADER, org_name="새솔마을 주민회", has_media=False
        )
    assert caught.value.params["limit"] == 4096 and not caught.value.params["caption"]
    # With {{ name }} the longest name (64) counts, not the author's.
    with pytest.raises(MessageTooLong):
        broadcasts.check_message(
            "가" * (4096 - header_length - 10) + "{{ name }}",
            header=HEADER,
            org_name="새솔마을 주민회",
            has_media=False,
        )
    with pytest.raises(MessageTooLong) as caught:
        broadcasts.check_message(
            "가" * 1020, header=HEADER, org_name="새솔", has_media=True, media_kind="photo"
        )
    assert caught.value.params["limit"] == 1024 and caught.value.params["caption"]
    with pytest.raises(EmptyMessage):
        broadcasts.check_message("  ", header=HEADER, org_name="새솔", has_media=False)
    photo_only = {"has_media": True, "media_kind": "photo"}
    broadcasts.check_message("", header=HEADER, org_name="새솔", **photo_only)


# --- quiet hours ------------------------------------------------------------------------------


def _timing(start, *, recipients=100, urgent=False, quiet=("22:00", "08:00"), rate=29.0):
    return broadcasts.plan_timing(
        recipients=recipients,
        start=start,
        urgent=urgent,
        rate=rate,
        quiet_start=quiet[0],
        quiet_end=quiet[1],
        timezone=SEOUL,
    )


def test_quiet_hours_postpone_to_the_morning_unless_urgent():
    assert _timing(kst(1, 12)) == broadcasts.Timing(kst(1, 12), False, 4)
    assert _timing(kst(1, 23, 30)).send_at == kst(2, 8)
    assert _timing(kst(2, 3)).send_at == kst(2, 8)
    assert _timing(kst(2, 7, 59)).quiet_delayed
    assert _timing(kst(2, 8)) == broadcasts.Timing(kst(2, 8), False, 4)
    # Starting before 22:00 but still sending at 22:00 would reach people then.
    assert _timing(kst(1, 21, 58), recipients=5000).send_at == kst(2, 8)  # about 3 minutes
    assert not _timing(kst(1, 21, 50), recipients=5000).quiet_delayed
    assert _timing(kst(1, 23), urgent=True) == broadcasts.Timing(kst(1, 23), False, 4)
    assert _timing(kst(1, 23), quiet=("00:00", "00:00")).send_at == kst(1, 23)
    # A window within one day.
    assert _timing(kst(1, 13), quiet=("12:00", "14:00")).send_at == kst(1, 14)
    assert not _timing(kst(1, 15), quiet=("12:00", "14:00")).quiet_delayed


# --- audiences ---------------------------------------------------------------------------------


@dataclass
class Cleanup:
    """An item of the audience registered by these tests (a clean-up day)."""

    id: int
    title: str


def cleanup_audience(came: list[int], missed: list[int]) -> Audience:
    """A feature audience as another feature would register it: who came, who missed it."""

    async def items(session, org):
        return [Cleanup(7, "하천 정화의 날")]

    def member_ids(item_id, variant):
        ids = came if variant == "came" else missed
        return select(Member.id).where(Member.id.in_(ids))

    return Audience(
        key="cleanup",
        variants=("came", "missed"),
        items=items,
        member_ids=member_ids,
        label_template="broadcasts/variant_label.html",
    )


async def _people(session, now):
    """민지 (admin of saesol), 서준 (supporter), 하은 (full), 지호 (organiser, muted)."""
    minji = await make_member(session, MINJI, "민지", now=now)
    org = await make_org(session, minji, now=now)
    seojun = await make_member(session, SEOJUN, "서준", now=now)
    haeun = await make_member(session, HAEUN, "하은", now=now)
    jiho = await make_member(session, JIHO, "지호", now=now)
    await add_member(session, org, seojun, now=now)
    await add_member(session, org, haeun, tier=Tier.FULL, now=now)
    await add_member(session, org, jiho, role=Role.ORGANIZER, now=now)
    jiho.muted = True
    session.add(jiho)
    await session.flush()
    return org, {"민지": minji, "서준": seojun, "하은": haeun, "지호": jiho}


async def _who(session, org, choice, registry=None):
    _clean, member_ids = await broadcasts.resolve_audience(session, org, choice, registry or {})
    names = await session.exec(
        select(Member.display_name).where(Member.id.in_(member_ids.scalar_subquery()))
    )
    return sorted(names.all()), await broadcasts.count_audience(session, member_ids)


async def test_each_audience_selects_the_right_people(session, clock):
    org, people = await _people(session, clock.now())
    everyone, count = await _who(session, org, {"kind": "org", "segment": "all"})
    assert everyone == ["민지", "서준", "지호", "하은"]
    assert (count.recipients, count.muted, count.unreachable) == (3, 1, 0)
    assert (await _who(session, org, {"kind": "org", "segment": "full"}))[0] == ["민지", "하은"]
    assert (await _who(session, org, {"kind": "org", "segment": "supporter"}))[0] == [
        "서준",
        "지호",
    ]
    assert (await _who(session, org, {"kind": "org", "segment": "organizers"}))[0] == [
        "민지",
        "지호",
    ]
    registry = {"cleanup": cleanup_audience([people["서준"].id, people["지호"].id], [])}
    choice = {"kind": "feature", "key": "cleanup", "item": 7, "variant": "came"}
    came, count = await _who(session, org, choice, registry)
    assert came == ["서준", "지호"] and (count.recipients, count.muted) == (1, 1)
    clean, _ = await broadcasts.resolve_audience(session, org, choice, registry)
    assert clean["title"] == "하천 정화의 날"
    for forged in (
        {**choice, "item": 8},
        {**choice, "variant": "all"},
        {**choice, "key": "poll"},
        {"kind": "network", "segment": "all"},
        {"kind": "org", "segment": "admins"},
        {"kind": "sql", "segment": "all"},
    ):
        with pytest.raises(StaleButton):
            await broadcasts.resolve_audience(session, org, forged, registry)


async def test_a_network_reaches_each_member_of_its_groups_once(session, clock):
    now = clock.now()
    org, people = await _people(session, now)
    other = await make_org(session, people["민지"], name="새솔 청년회", slug="youth", now=now)
    await add_member(session, other, people["서준"], now=now)
    network = await make_org(
        session, people["민지"], name="서울 연대", slug="seoul-net", kind=OrgKind.NETWORK, now=now
    )
    for group in (org, other):
        await organizations.add_to_network(
            session, actor=None, network=network, group=group, now=now
        )
    assert broadcasts.builtin_audiences(network)[0] == {"kind": "network", "segment": "all"}
    names, count = await _who(session, network, {"kind": "network", "segment": "all"})
    assert names == ["민지", "서준", "지호", "하은"] and count.total == 4
    with pytest.raises(StaleButton):  # a network has no "org only" audience
        await _who(session, network, {"kind": "org", "segment": "all"})


async def test_unreachable_and_forgotten_people_are_not_recipients(session, clock):
    org, people = await _people(session, clock.now())
    people["하은"].unreachable_since = clock.now()
    people["서준"].deleted_at = clock.now()
    people["서준"].telegram_user_id = None
    session.add_all([people["하은"], people["서준"]])
    await session.flush()
    _, count = await _who(session, org, {"kind": "org", "segment": "all"})
    assert (count.recipients, count.muted, count.unreachable) == (1, 1, 1)


# --- creating, starting, finishing ------------------------------------------------------------


async def _create(session, org, author, now, **changes):
    values = dict(
        org=org,
        author=author,
        source="{{ name }}님, 토요일에 만나요",
        header=HEADER,
        media_kind="",
        media_file_id="",
        media_filename="",
        audience={"kind": "org", "segment": "all"},
        registry={},
        urgent=False,
        requested_at=None,
        rate=29.0,
        quiet_start="22:00",
        quiet_end="08:00",
        now=now,
    )
    values.update(changes)
    return await broadcasts.create_broadcast(session, **values)


async def _start(session, broadcast_id, now, paid=False):
    return await broadcasts.start_broadcast(
        session,
        broadcast_id,
        header=lambda org: f"📢 <b>{org.name}</b>",
        registry={},
        paid=paid,
        now=now,
    )


async def test_starting_writes_one_delivery_per_recipient_once(session, clock):
    now = clock.now()
    org, people = await _people(session, now)
    broadcast, count = await _create(session, org, people["민지"], now)
    assert count.recipients == 3 and broadcast.send_at == now
    started = await _start(session, broadcast.id, now, paid=True)
    assert started.status == BroadcastStatus.SENDING
    assert (started.audience_size, started.skipped_muted) == (4, 1)
    assert await _start(session, broadcast.id, now) is None  # only once
    rows = (await session.exec(select(Delivery).order_by(Delivery.chat_id))).all()
    assert [row.chat_id for row in rows] == [MINJI, SEOJUN, HAEUN]
    assert {row.batch for row in rows} == {f"broadcast:{broadcast.id}"}
    assert rows[1].payload["text"] == "📢 <b>새솔마을 주민회</b>\n\n서준님, 토요일에 만나요"
    assert rows[1].payload["paid"] is True and rows[1].priority == broadcasts.PRIORITY
    assert await broadcasts.finish_broadcast(session, f"broadcast:{broadcast.id}", now=now) is None


async def test_finishing_counts_every_outcome_once(session, clock):
    now = clock.now()
    org, people = await _people(session, now)
    broadcast, _ = await _create(session, org, people["민지"], now)
    await _start(session, broadcast.id, now)
    batch = f"broadcast:{broadcast.id}"
    claimed = await outbox.claim_batch(
        session, worker="w", now=now, limit=10, lease=dt.timedelta(seconds=30)
    )
    statuses = [DeliveryStatus.SENT, DeliveryStatus.UNREACHABLE, DeliveryStatus.FAILED]
    pairs = zip(claimed, statuses, strict=True)
    await outbox.record_outcomes(
        session,
        [outbox.Outcome(d.id, s, telegram_message_id=1) for d, s in pairs],
        worker="w",
        now=now,
    )
    finished = await broadcasts.finish_broadcast(session, batch, now=now)
    assert finished.status == BroadcastStatus.DONE
    assert (finished.sent, finished.unreachable, finished.failed) == (1, 1, 1)
    assert await broadcasts.finish_broadcast(session, batch, now=now) is None
    view = await broadcasts.view_of(session, finished, org)
    assert view.sent + view.failed + view.unreachable + view.skipped + view.not_sent == view.total


async def test_refusals_before_anything_is_stored(session, clock):
    now = clock.now()
    org, people = await _people(session, now)
    with pytest.raises(NotOrganizer):
        await _create(session, org, people["서준"], now)
    with pytest.raises(InvalidInput) as caught:
        past = now - dt.timedelta(minutes=1)
        await _create(session, org, people["민지"], now, requested_at=past)
    assert caught.value.params["reason"] == "past"
    muted_only = {"kind": "org", "segment": "organizers"}
    people["민지"].muted = True
    session.add(people["민지"])
    with pytest.raises(EmptyAudience) as caught:
        await _create(session, org, people["민지"], now, audience=muted_only)
    assert caught.value.params["muted"] == 2
    with pytest.raises(TemplateProblem):
        await _create(session, org, people["민지"], now, source="{{ nmae }}")
    assert (await session.exec(select(sa.func.count()).select_from(Broadcast))).one() == 0


async def test_scheduled_then_cancelled_never_starts(session, clock):
    now = clock.now()
    org, people = await _people(session, now)
    later = now + dt.timedelta(hours=3)
    broadcast, _ = await _create(session, org, people["민지"], now, requested_at=later)
    assert broadcast.status == BroadcastStatus.SCHEDULED and broadcast.send_at == later
    job = await jobs.by_key(session, broadcasts.job_key(broadcast.id))
    assert job.due_at == later and job.kind == broadcasts.JOB_KIND
    with pytest.raises(NotOrganizer):
        await broadcasts.cancel_broadcast(session, broadcast.id, actor=people["서준"], now=now)
    cancelled, held = await broadcasts.cancel_broadcast(
        session, broadcast.id, actor=people["민지"], now=now
    )
    assert cancelled.status == BroadcastStatus.CANCELLED and held == 0
    assert (await jobs.by_key(session, broadcasts.job_key(broadcast.id))).status == "cancelled"
    assert await _start(session, broadcast.id, later) is None
    with pytest.raises(AlreadyCancelled):
        await broadcasts.cancel_broadcast(session, broadcast.id, actor=people["민지"], now=now)


async def test_stopping_holds_back_the_rest_and_a_done_one_cannot_be_cancelled(session, clock):
    now = clock.now()
    org, people = await _people(session, now)
    broadcast, _ = await _create(session, org, people["민지"], now)
    await _start(session, broadcast.id, now)
    stopped, held = await broadcasts.cancel_broadcast(
        session, broadcast.id, actor=people["민지"], now=now
    )
    assert held == 3 and stopped.finished_at is not None and stopped.not_sent == 3
    second, _ = await _create(session, org, people["민지"], now)
    await _start(session, second.id, now)
    claimed = await outbox.claim_batch(
        session, worker="w", now=now, limit=10, lease=dt.timedelta(seconds=30)
    )
    await outbox.record_outcomes(
        session,
        [outbox.Outcome(d.id, DeliveryStatus.SENT, telegram_message_id=1) for d in claimed],
        worker="w",
        now=now,
    )
    await broadcasts.finish_broadcast(session, f"broadcast:{second.id}", now=now)
    with pytest.raises(AlreadySent):
        await broadcasts.cancel_broadcast(session, second.id, actor=people["민지"], now=now)


async def test_authors_data_is_exported_and_unsigned_on_forget(session, clock):
    now = clock.now()
    org, people = await _people(session, now)
    await _create(session, org, people["민지"], now)
    exported = await broadcasts.export_authored(session, people["민지"])
    assert exported[0]["text"] == "{{ name }}님, 토요일에 만나요"
    await broadcasts.forget_author(session, people["민지"])
    remaining = (await session.exec(select(Broadcast.author_member_id))).all()
    assert remaining == [None]


async def test_a_scheduled_announcement_to_a_closed_item_still_reaches_its_people(session, clock):
    now = clock.now()
    org, people = await _people(session, now)
    audience = cleanup_audience([people["서준"].id, people["하은"].id], [])
    choice = {"kind": "feature", "key": "cleanup", "item": 7, "variant": "came"}
    later = now + dt.timedelta(hours=2)
    broadcast, count = await _create(
        session,
        org,
        people["민지"],
        now,
        audience=choice,
        registry={"cleanup": audience},
        requested_at=later,
    )
    assert count.recipients == 2 and broadcast.audience["title"] == "하천 정화의 날"

    async def closed(session, org):
        return []  # the clean-up day is over: nothing to choose any more

    closed_audience = Audience(**{**audience.__dict__, "items": closed})
    started = await broadcasts.start_broadcast(
        session,
        broadcast.id,
        header=lambda org: HEADER,
        registry={"cleanup": closed_audience},
        paid=False,
        now=later,
    )
    assert started.audience_size == 2
    rows = (await session.exec(select(Delivery.chat_id).order_by(Delivery.chat_id))).all()
    assert rows == [SEOJUN, HAEUN]

"""Meetings: reminders for a whole organisation at once, timer precision, a kill mid-run.

1. Reminder burst: N members, one reminder due for all at the same minute, the emulator's
   Telegram limits on. Delivery rate against the 30 messages/s limit (target ≥ 90 %), and
   whether every member got exactly one.
2. Timer precision: 100 reminders spread over a few minutes, limits off, the real clock.
   Lateness of each against its due time (target p99 ≤ 2 s).
3. Restart: a reminder run for N members, the bot SIGKILLed in the middle and started again.
   Members with no reminder (must be 0) and with two (target 0).

Data is prepared with moim's services on the bot's SQLite file before the bot starts (the
members themselves are inserted in bulk: registering 10,000 people one by one would measure
the preparation, not the reminders).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import statistics
import tempfile
import time
from collections import Counter
from pathlib import Path

import sqlalchemy as sa

from bench.harness import (
    UNLIMITED,
    Emulator,
    Figure,
    Settings,
    bot_process,
    open_chats,
    people,
    percentile,
    seed_organisation,
    watch_messages,
)
from bot.app import build_runtime
from bot.config import Config
from bot.db import migrate, transaction
from bot.services import meetings
from models import Answer, Member, Membership, ReminderAudience

NAME = "meetings"
TELEGRAM_RATE = 30.0
# A crashed instance's claimed batch is retried after this lease (production default: 120 s).
LEASE_SECONDS = {"full": 10, "quick": 4}


# Alembic's command API keeps global state: one preparation at a time in this process.
_PREPARING = asyncio.Lock()


def _utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _lead(settings: Settings) -> dt.timedelta:
    """Time for the bot to start before the first reminder is due (late ones still go out)."""
    return dt.timedelta(seconds=settings.size(20, 6))


async def prepare(
    database: str,
    telegram_ids: list[int],
    *,
    due: list[dt.datetime],
    everyone: bool,
) -> None:
    """An organisation of these people and one meeting per due time, its reminder due then.

    With ``everyone`` the reminder goes to the whole organisation; otherwise meeting i has
    one person who said yes (person i).
    """
    async with _PREPARING:
        await _prepare(database, telegram_ids, due=due, everyone=everyone)


async def _prepare(
    database: str, telegram_ids: list[int], *, due: list[dt.datetime], everyone: bool
) -> None:
    runtime = build_runtime(Config().replace(database={"url": database, "schema": ""}))
    try:
        await migrate(runtime.engine)
        now = _utc_now()
        async with transaction(runtime.sessions) as session:
            organiser, org = await seed_organisation(
                session,
                organiser_id=1,
                now=now,
                name="벤치 주민회",
                slug="bench",
                organiser_name="민지",
            )
            await _bulk_members(session, org.id, telegram_ids, now)
            ids = dict(
                (
                    await session.exec(
                        sa.select(Member.telegram_user_id, Member.id).where(
                            Member.telegram_user_id.in_(telegram_ids)
                        )
                    )
                ).all()
            )
            for index, moment in enumerate(due):
                meeting = await meetings.create_meeting(
                    session,
                    actor=organiser,
                    org=org,
                    draft=meetings.MeetingDraft(
                        title=f"bench-{index}", starts_at=moment + dt.timedelta(hours=1)
                    ),
                    reminder_minutes=[60],
                    now=now,
                    ahead=1,
                )
                if everyone:
                    await meetings.set_reminders(
                        session,
                        actor=organiser,
                        meeting_id=meeting.id,
                        audience=ReminderAudience.EVERYONE,
                        now=now,
                    )
                else:
                    occurrence = await meetings.next_occurrence(session, meeting.id, now=now)
                    person = await session.get(Member, ids[telegram_ids[index]])
                    await meetings.rsvp(
                        session,
                        member=person,
                        occurrence_id=occurrence.id,
                        answer=Answer.YES,
                        now=now,
                    )
    finally:
        await runtime.engine.dispose()


async def _bulk_members(session, organization_id: int, telegram_ids: list[int], now) -> None:
    rows = [
        {
            "telegram_user_id": telegram_id,
            "display_name": f"회원{n}",
            "language": "ko",
            "consent_version": 1,
            "consented_at": now,
            "age_confirmed_at": now,
            "muted": False,
            "last_seen_at": now,
            "created_at": now,
        }
        for n, telegram_id in enumerate(telegram_ids)
    ]
    await _insert_all(session, Member, rows)
    member_ids = (
        await session.exec(sa.select(Member.id).where(Member.telegram_user_id.in_(telegram_ids)))
    ).all()
    memberships = [
        {
            "member_id": member_id,
            "organization_id": organization_id,
            "role": "member",
            "tier": "supporter",
            "joined_at": now,
        }
        for (member_id,) in member_ids
    ]
    await _insert_all(session, Membership, memberships)


async def _insert_all(session, table, rows: list[dict]) -> None:
    for start in range(0, len(rows), 1000):
        await session.exec(sa.insert(table), params=rows[start : start + 1000])


async def _world(emulator: Emulator, count: int) -> list[int]:
    ids = await people(emulator.client, count, prefix="m")
    await open_chats(emulator, ids)
    return ids


async def reminder_burst(settings: Settings) -> list[Figure]:
    """Everyone's reminder due at the same moment, Telegram's limits on."""
    count = settings.size(10_000, 40)
    bench = "reminder burst"
    with tempfile.TemporaryDirectory() as scratch:
        database = f"sqlite+aiosqlite:///{Path(scratch) / 'bench.sqlite3'}"
        async with Emulator(limits=True, latency_ms=settings.latency_ms) as emulator:
            ids = await _world(emulator, count)
            due = _utc_now() + _lead(settings)
            await prepare(database, ids, due=[due], everyone=True)
            since = await emulator.client.seq()
            async with bot_process("moim", emulator, database_url=database):
                seen = await watch_messages(
                    emulator.client,
                    since_seq=since,
                    expected=count,
                    timeout=60 + count / 20,
                    interval=0.25,
                )
            stats = await emulator.client.stats()
    times = sorted(at for _, at in seen)
    rate = (len(times) - 1) / (times[-1] - times[0]) if len(times) > 1 else 0.0
    per_chat = Counter(record["chat_id"] for record, _ in seen)
    exactly_one = sum(1 for telegram_id in ids if per_chat.get(telegram_id) == 1)
    ratio = rate / TELEGRAM_RATE
    return [
        Figure(bench, f"delivery rate ({count} members)", round(rate, 1), "msg/s"),
        Figure(
            bench,
            "rate / Telegram's 30 msg/s",
            round(ratio * 100, 1),
            "%",
            target="≥ 90 %",
            met=ratio >= 0.9,
        ),
        Figure(
            bench,
            "members with exactly one reminder",
            exactly_one,
            f"of {count}",
            target=f"{count}",
            met=exactly_one == count,
        ),
        Figure(
            bench, "first message after the due time", round(times[0] - due.timestamp(), 2), "s"
        ),
        Figure(bench, "429 answers from the emulator", stats["rate_limited"], ""),
    ]


async def timer_precision(settings: Settings) -> list[Figure]:
    """100 reminders due at different moments over a few minutes, limits off."""
    count = settings.size(100, 10)
    spread = settings.size(180, 8)  # seconds
    bench = "reminder timing"
    with tempfile.TemporaryDirectory() as scratch:
        database = f"sqlite+aiosqlite:///{Path(scratch) / 'bench.sqlite3'}"
        async with Emulator(limits=False, latency_ms=settings.latency_ms) as emulator:
            ids = await _world(emulator, count)
            start = _utc_now() + _lead(settings)
            due = [start + dt.timedelta(seconds=spread * n / count) for n in range(count)]
            await prepare(database, ids, due=due, everyone=False)
            since = await emulator.client.seq()
            async with bot_process("moim", emulator, database_url=database, environment=UNLIMITED):
                seen = await watch_messages(
                    emulator.client, since_seq=since, expected=count, timeout=spread + 120
                )
    due_of = {
        telegram_id: moment.timestamp() for telegram_id, moment in zip(ids, due, strict=True)
    }
    lateness = [at - due_of[record["chat_id"]] for record, at in seen]
    p99 = percentile(lateness, 0.99)
    return [
        Figure(
            bench, f"lateness p50 ({count} reminders)", round(statistics.median(lateness), 3), "s"
        ),
        Figure(bench, "lateness p99", round(p99, 3), "s", target="≤ 2 s", met=p99 <= 2.0),
        Figure(bench, "lateness max", round(max(lateness), 3), "s"),
        Figure(bench, "early (negative lateness)", sum(1 for x in lateness if x < 0), "reminders"),
    ]


async def restart_mid_run(settings: Settings) -> list[Figure]:
    """SIGKILL the bot while it sends a reminder run; start it again; count per member."""
    count = settings.size(2_000, 60)
    bench = "reminder restart"
    lease = LEASE_SECONDS["quick" if settings.quick else "full"]
    environment = {"MOIM_DELIVERY_CLAIM_SECONDS": str(lease)}
    with tempfile.TemporaryDirectory() as scratch:
        database = f"sqlite+aiosqlite:///{Path(scratch) / 'bench.sqlite3'}"
        async with Emulator(limits=True, latency_ms=settings.latency_ms) as emulator:
            ids = await _world(emulator, count)
            due = _utc_now() + _lead(settings)
            await prepare(database, ids, due=[due], everyone=True)
            since = await emulator.client.seq()
            async with bot_process(
                "moim", emulator, database_url=database, environment=environment
            ) as process:
                await watch_messages(
                    emulator.client,
                    since_seq=since,
                    expected=count,
                    stop_at=count // 3,
                    timeout=60 + count / 20,
                )
                process.kill()  # SIGKILL: no shutdown, whatever was in flight is lost
                await process.wait()
            killed_at = await emulator.client.seq()
            restarted = time.monotonic()
            async with bot_process(
                "moim", emulator, database_url=database, environment=environment
            ):
                await _wait_for_everyone(emulator, ids, since, timeout=120 + count / 20)
            recovery = time.monotonic() - restarted
            records = await emulator.client.all_bot_messages(since, token=None)
    per_chat = Counter(record["chat_id"] for record in records)
    zero = sum(1 for telegram_id in ids if per_chat.get(telegram_id, 0) == 0)
    two = sum(1 for telegram_id in ids if per_chat.get(telegram_id, 0) >= 2)
    sent_before_kill = sum(1 for record in records if record["seq"] <= killed_at)
    return [
        Figure(bench, f"sent before the kill ({count} members)", sent_before_kill, "messages"),
        Figure(bench, "members with no reminder", zero, "", target="0", met=zero == 0),
        Figure(bench, "members with two reminders", two, "", target="0", met=two == 0),
        Figure(
            bench,
            "restart to last reminder",
            round(recovery, 1),
            "s",
            note=f"claim lease {lease} s",
        ),
    ]


async def _wait_for_everyone(emulator: Emulator, ids: list[int], since: int, timeout: float):  # noqa: ASYNC109
    wanted = set(ids)
    deadline = time.monotonic() + timeout
    while True:
        records = await emulator.client.all_bot_messages(since, token=None)
        if wanted <= {record["chat_id"] for record in records}:
            return
        if time.monotonic() > deadline:
            raise TimeoutError("not every member got the reminder after the restart")
        await asyncio.sleep(0.5)


async def run(settings: Settings) -> list[Figure]:
    """The three reminder benchmarks (side by side in a quick run, which only checks they run)."""
    benchmarks = (reminder_burst, timer_precision, restart_mid_run)
    if settings.quick:
        results = await asyncio.gather(*(benchmark(settings) for benchmark in benchmarks))
        return [figure for figures in results for figure in figures]
    figures = []
    for benchmark in benchmarks:
        figures.extend(await benchmark(settings))
    return figures

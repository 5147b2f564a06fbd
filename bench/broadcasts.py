"""Announcements: throughput within Telegram's limits, paid broadcasts, SIGKILL, network faults.

Each run prepares an SQLite database (an organisation with N members who have opened a chat
with the bot, and a confirmed announcement to everyone: N deliveries in the outbox), then
starts ``moim run`` against the emulator in its own process and watches the emulator:
messages per second, 429 answers, and how many copies each recipient got.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import random
import signal
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import sqlalchemy as sa
from telegram.ext import ExtBot

from bench.harness import TOKEN, Emulator, Figure, Settings, bot_process, people, wait_until
from bot.app import build_runtime
from bot.config import Config
from bot.db import migrate, transaction
from bot.http import BotApiRequest
from bot.services import broadcasts, organizations
from models import Broadcast, BroadcastStatus, Delivery, DeliveryStatus, Member, Membership

NAME = "broadcasts"
TEXT = (
    "<b>{{ name }}님</b>, 토요일 10시 <i>구청 앞</i> 집회가 "
    "<a href='https://example.org'>장소를 옮겨</a> 열립니다."
)


@dataclass
class Prepared:
    """A database with one announcement waiting in the outbox."""

    database_url: str
    author: int
    recipients: list[int]
    broadcast_id: int


async def prepare(emulator: Emulator, directory: Path, count: int, *, paid: bool) -> Prepared:
    """N people with an open chat, members of one organisation; an announcement to them all."""
    client = emulator.client
    author = (await client.create_user("민지"))["id"]
    recipients = await people(client, count, prefix="회원")
    await client.open_chats(TOKEN, [author, *recipients])
    database_url = f"sqlite+aiosqlite:///{directory / 'bench.sqlite3'}"
    config = Config().replace(database={"url": database_url})
    runtime = build_runtime(config)
    now = dt.datetime.now(dt.UTC)
    try:
        await migrate(runtime.engine)
        async with transaction(runtime.sessions) as session:
            minji = Member(
                telegram_user_id=author,
                display_name="민지",
                consent_version=1,
                consented_at=now,
                created_at=now,
            )
            session.add(minji)
            await session.flush()
            # The author is a bot administrator outside the organisation, so the audience is
            # exactly the N members.
            org = await organizations.create_organization(
                session, creator=None, name="새솔마을 주민회", slug="saesol", now=now
            )
            await session.exec(
                sa.insert(Member),
                params=[
                    {
                        "telegram_user_id": user_id,
                        "display_name": f"회원{number}",
                        "language": "ko",
                        "consent_version": 1,
                        "consented_at": now,
                        "muted": False,
                        "created_at": now,
                    }
                    for number, user_id in enumerate(recipients)
                ],
            )
            ids = (await session.exec(sa.select(Member.id).where(Member.id != minji.id))).scalars()
            await session.exec(
                sa.insert(Membership),
                params=[
                    {
                        "member_id": member_id,
                        "organization_id": org.id,
                        "role": "member",
                        "tier": "supporter",
                        "joined_at": now,
                    }
                    for member_id in ids
                ],
            )
            header = runtime.renderer.text("broadcasts/announcement.html", "ko", org=org)
            broadcast, _ = await broadcasts.create_broadcast(
                session,
                org=org,
                author=minji,
                source=TEXT,
                header=header,
                media_kind="",
                media_file_id="",
                media_filename="",
                audience={"kind": "org", "segment": "all"},
                registry={},
                urgent=True,
                requested_at=None,
                rate=29.0,
                quiet_start="22:00",
                quiet_end="08:00",
                is_bot_admin=True,
                now=now,
            )
            await broadcasts.start_broadcast(
                session,
                broadcast.id,
                header=lambda _org: header,
                registry={},
                paid=paid,
                now=now,
            )
    finally:
        await runtime.engine.dispose()
    return Prepared(database_url, author, recipients, broadcast.id)


async def broadcast_row(database_url: str, broadcast_id: int) -> Broadcast | None:
    """The announcement as moim's database has it now."""
    runtime = build_runtime(Config().replace(database={"url": database_url}))
    try:
        async with transaction(runtime.sessions) as session:
            return await session.get(Broadcast, broadcast_id)
    finally:
        await runtime.engine.dispose()


async def open_deliveries(database_url: str) -> int:
    """Deliveries claimed and not yet recorded (what a killed sender had in hand)."""
    runtime = build_runtime(Config().replace(database={"url": database_url}))
    try:
        async with transaction(runtime.sessions) as session:
            result = await session.exec(
                sa.select(sa.func.count())
                .select_from(Delivery)
                .where(Delivery.status == DeliveryStatus.SENDING)
            )
            return result.scalar_one()
    finally:
        await runtime.engine.dispose()


async def finished(database_url: str, broadcast_id: int) -> bool:
    """True once the announcement is done (every delivery has its outcome, report queued)."""
    row = await broadcast_row(database_url, broadcast_id)
    return row is not None and row.status == BroadcastStatus.DONE


async def copies(emulator: Emulator, prepared: Prepared) -> tuple[int, int, int]:
    """Recipients with no copy, with exactly one, with two or more."""
    per_chat = (await emulator.client.stats())["messages_per_chat"]
    counts = [per_chat.get(str(user_id), 0) for user_id in prepared.recipients]
    return counts.count(0), counts.count(1), sum(1 for c in counts if c > 1)


async def watch(emulator: Emulator, count: int, *, seconds: float) -> tuple[float, float]:
    """Wait until ``count`` more bot messages exist; (first, last) as monotonic times."""
    client = emulator.client
    start = await client.seq()
    first = None
    deadline = time.monotonic() + seconds
    while True:
        seq = await client.seq()
        now = time.monotonic()
        if first is None and seq > start:
            first = now
        if seq - start >= count:
            return first or now, now
        if now > deadline:
            raise TimeoutError(f"only {seq - start} of {count} messages within {seconds} s")
        await asyncio.sleep(0.05)


def copy_figures(label: str, missing: int, once: int, twice: int, note: str = "") -> list[Figure]:
    """Recipients with no copy and with two or more (each should have exactly one)."""
    note = note or f"exactly one: {once:,}"
    return [
        Figure(NAME, f"{label} recipients with no copy", missing, "", "0", missing == 0, note),
        Figure(NAME, f"{label} recipients with 2+ copies", twice, "", "0", twice == 0),
    ]


def moim_environment(*, paid: bool, extra: dict | None = None) -> dict:
    """Environment for moim: Telegram's limits (moim's limiter on), paid broadcast or not."""
    environment = {"MOIM_DELIVERY_PAID_BROADCAST": "true" if paid else "false"}
    environment.update(extra or {})
    return environment


# --- the runs -----------------------------------------------------------------------------------


async def throughput(settings: Settings, *, paid: bool) -> list[Figure]:
    """N recipients with the emulator's limits on: messages/s, 429s, copies per recipient."""
    count = settings.size(10_000, 60)
    label = "paid broadcast" if paid else "free (30/s limit)"
    with tempfile.TemporaryDirectory() as scratch:
        async with Emulator(limits=True, latency_ms=settings.latency_ms) as emulator:
            prepared = await prepare(emulator, Path(scratch), count, paid=paid)
            # Watching starts before moim does: it sends from the moment it is up.
            watcher = asyncio.create_task(watch(emulator, count, seconds=count / 20 + 180))
            async with bot_process(
                "moim",
                emulator,
                database_url=prepared.database_url,
                environment=moim_environment(paid=paid),
            ):
                first, last = await watcher
                await wait_until(
                    lambda: finished(prepared.database_url, prepared.broadcast_id),
                    timeout=120,
                    interval=0.2,
                )
            stats = await emulator.client.stats()
            missing, once, twice = await copies(emulator, prepared)
            row = await broadcast_row(prepared.database_url, prepared.broadcast_id)
    rate = (count - 1) / max(last - first, 1e-6)
    figures = [
        Figure(NAME, f"{label}: messages/s ({count:,} recipients)", round(rate, 1), "msg/s")
    ]
    if paid:
        figures.append(
            Figure(NAME, f"{label}: messages/s", round(rate, 1), "msg/s", "≥ 500", rate >= 500)
        )
    else:
        share = rate / 30.0
        figures.append(
            Figure(
                NAME,
                f"{label}: share of Telegram's 30/s",
                round(share * 100, 1),
                "%",
                "≥ 95 %",
                share >= 0.95,
            )
        )
    figures += [
        Figure(NAME, f"{label}: 429 answers received", stats["rate_limited"], "answers"),
        *copy_figures(f"{label}:", missing, once, twice),
        Figure(
            NAME,
            f"{label}: report adds up (sent as recorded)",
            row.sent if row else 0,
            "sent",
            f"= {count:,}",
            row is not None and row.sent == count,
        ),
    ]
    return figures


async def kill_and_resume(settings: Settings) -> list[Figure]:
    """SIGKILL at a random point of a broadcast, start again: missing and doubled copies."""
    count = settings.size(5_000, 60)
    extra = {"MOIM_DELIVERY_CLAIM_SECONDS": "3"} if settings.quick else {}
    with tempfile.TemporaryDirectory() as scratch:
        async with Emulator(limits=True, latency_ms=settings.latency_ms) as emulator:
            prepared = await prepare(emulator, Path(scratch), count, paid=False)
            kill_at = random.randint(count // 10, count * 9 // 10)
            environment = moim_environment(paid=False, extra=extra)
            watcher = asyncio.create_task(watch(emulator, kill_at, seconds=count / 20 + 180))
            async with bot_process(
                "moim", emulator, database_url=prepared.database_url, environment=environment
            ) as process:
                await watcher
                process.send_signal(signal.SIGKILL)
                await process.wait()
            in_hand = await open_deliveries(prepared.database_url)
            killed_at = time.monotonic()
            async with bot_process(
                "moim", emulator, database_url=prepared.database_url, environment=environment
            ):
                await wait_until(
                    lambda: finished(prepared.database_url, prepared.broadcast_id),
                    timeout=count / 20 + 300,
                    interval=0.5,
                )
                resumed_in = time.monotonic() - killed_at
            missing, once, twice = await copies(emulator, prepared)
    return [
        Figure(
            NAME,
            f"SIGKILL after {kill_at:,} of {count:,}: recipients with 0 copies",
            missing,
            "",
            "0",
            missing == 0,
        ),
        Figure(
            NAME,
            "SIGKILL: recipients with 2 copies",
            twice,
            "",
            f"≤ {in_hand} claimed, unrecorded",
            twice <= in_hand,
            note=f"exactly one: {once}",
        ),
        Figure(NAME, "SIGKILL: restart to finished", round(resumed_in, 1), "s"),
    ]


async def faults(settings: Settings) -> list[Figure]:
    """5 % of sends answer 500, 1 % time out (half of those after delivering): copies each.

    Run three ways: (1) the stalled answer comes back within moim's answer_timeout, so the
    late answer says what happened; (2) it never comes back in time (truly unknown), moim
    resends; (3) the same, with resend_uncertain off.
    """
    count = settings.size(3_000, 30)
    stall, short = (20.0, 10.0) if not settings.quick else (1.0, 0.5)
    variants = [
        ("late answer within answer_timeout", stall, {}),
        (
            "no answer, resend (default)",
            stall * 3,
            {"MOIM_DELIVERY_ANSWER_TIMEOUT": str(short)},
        ),
        (
            "no answer, resend_uncertain = false",
            stall * 3,
            {"MOIM_DELIVERY_ANSWER_TIMEOUT": str(short), "MOIM_DELIVERY_RESEND_UNCERTAIN": "0"},
        ),
    ]
    figures = []
    for label, timeout_seconds, extra in variants[:1] if settings.quick else variants:
        with tempfile.TemporaryDirectory() as scratch:
            async with Emulator(limits=True, latency_ms=settings.latency_ms) as emulator:
                prepared = await prepare(emulator, Path(scratch), count, paid=True)
                await emulator.client.set_faults(
                    error_rate=0.05, timeout_rate=0.01, timeout_seconds=timeout_seconds, seed=7
                )
                async with bot_process(
                    "moim",
                    emulator,
                    database_url=prepared.database_url,
                    environment=moim_environment(paid=True, extra=extra),
                ):
                    await wait_until(
                        lambda prepared=prepared: finished(
                            prepared.database_url, prepared.broadcast_id
                        ),
                        timeout=600,
                        interval=0.5,
                    )
                stats = await emulator.client.stats()
                missing, once, twice = await copies(emulator, prepared)
        injected = stats["faults"]
        figures += copy_figures(
            f"faults, {label}:",
            missing,
            once,
            twice,
            note=(
                f"injected: {injected.get('error', 0)} × 500, "
                f"{injected.get('timeout_delivered', 0)} timeouts after delivering, "
                f"{injected.get('timeout_dropped', 0)} before"
            ),
        )
    return figures


async def baseline(settings: Settings) -> list[Figure]:
    """The ceiling on this machine: a bare PTB loop over the same HTTP client, with no
    database and no limits (Telegram's paid limit, 1,000/s, would be the ceiling otherwise)."""
    count = settings.size(10_000, 60)
    async with Emulator(limits=False, latency_ms=settings.latency_ms) as emulator:
        recipients = await people(emulator.client, count)
        await emulator.client.open_chats(TOKEN, recipients)
        bot = ExtBot(
            TOKEN, base_url=emulator.base_url, request=BotApiRequest(connection_pool_size=16)
        )
        await bot.initialize()
        gate = asyncio.Semaphore(16)

        async def send(user_id: int) -> None:
            async with gate:
                await bot.send_message(
                    user_id, "<b>안녕하세요</b>", parse_mode="HTML", allow_paid_broadcast=True
                )

        started = time.monotonic()
        await asyncio.gather(*(send(user_id) for user_id in recipients))
        seconds = time.monotonic() - started
        await bot.shutdown()
    return [
        Figure(
            NAME,
            f"bare PTB loop, no limits, no database ({count:,}): messages/s",
            round(count / seconds, 1),
            "msg/s",
        )
    ]


async def run(settings: Settings) -> list[Figure]:
    """Every announcement benchmark, one after another."""
    only = os.environ.get("MOIM_BENCH_BROADCASTS", "baseline,paid,free,kill,faults").split(",")
    figures = []
    if "baseline" in only:
        figures += await baseline(settings)
    if "paid" in only:
        figures += await throughput(settings, paid=True)
    if "free" in only and not settings.quick:  # the same path as paid, only slower
        figures += await throughput(settings, paid=False)
    if "kill" in only:
        figures += await kill_and_resume(settings)
    if "faults" in only:
        figures += await faults(settings)
    return figures

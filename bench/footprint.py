"""Start-up time to the first update handled, and idle memory with a big membership."""

from __future__ import annotations

import asyncio
import datetime as dt
import tempfile
import time
from pathlib import Path

import sqlalchemy as sa

from bench.harness import TOKEN, UNLIMITED, Emulator, Figure, Settings, bot_process, people
from bot.app import build_runtime
from bot.config import Config
from bot.db import migrate, transaction
from models import Member, Membership, Organization, OrgKind, Role, Tier

NAME = "footprint"
# Functions that add open items (polls, campaigns, ...) to the seeded organisation:
# async fn(session, organization_id, count, now) — features add theirs here.
OPEN_ITEM_SEEDERS: list = []


async def seed(database_url: str, members: int, open_items: int) -> None:
    """An organisation with ``members`` members and ``open_items`` open items."""
    runtime = build_runtime(Config().replace(database={"url": database_url}))
    await migrate(runtime.engine)
    now = dt.datetime.now(dt.UTC)
    async with transaction(runtime.sessions) as session:
        org = Organization(slug="big", name="큰 연대", kind=OrgKind.GROUP, created_at=now)
        session.add(org)
        await session.flush()
        for start in range(0, members, 5000):
            rows = [
                {
                    "telegram_user_id": 10_000_000 + n,
                    "display_name": f"회원{n}",
                    "language": "ko",
                    "consent_version": 1,
                    "consented_at": now,
                    "age_confirmed_at": now,
                    "muted": False,
                    "created_at": now,
                    "last_seen_at": now,
                }
                for n in range(start, min(members, start + 5000))
            ]
            await session.exec(sa.insert(Member), params=rows)
        ids = (await session.exec(sa.select(Member.id))).scalars().all()
        for start in range(0, len(ids), 5000):
            await session.exec(
                sa.insert(Membership),
                params=[
                    {
                        "member_id": i,
                        "organization_id": org.id,
                        "role": Role.MEMBER,
                        "tier": Tier.FULL if i % 3 == 0 else Tier.SUPPORTER,
                        "joined_at": now,
                    }
                    for i in ids[start : start + 5000]
                ],
            )
        per_kind = open_items // max(1, len(OPEN_ITEM_SEEDERS)) if OPEN_ITEM_SEEDERS else 0
        for seeder in OPEN_ITEM_SEEDERS:
            await seeder(session, org.id, per_kind, now)
    await runtime.engine.dispose()


def rss_megabytes(pid: int) -> float:
    """Resident memory of a process, in MB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


async def run(settings: Settings) -> list[Figure]:
    """Seed, start moim, time its first answer, then read its idle memory."""
    members = settings.size(100_000, 2_000)
    open_items = settings.size(1_000, 20)
    with tempfile.TemporaryDirectory() as scratch:
        database = f"sqlite+aiosqlite:///{Path(scratch) / 'bench.sqlite3'}"
        await seed(database, members, open_items)
        async with Emulator() as emulator:
            [person] = await people(emulator.client, 1)
            started = time.monotonic()
            async with bot_process(
                "moim", emulator, database_url=database, environment=UNLIMITED
            ) as process:
                await emulator.client.send_text(TOKEN, person, "/start")
                await emulator.client.wait_for_message(person, timeout=60)
                first_answer = time.monotonic() - started
                await asyncio.sleep(settings.size(5, 1))
                rss = rss_megabytes(process.pid)
    seeded = len(OPEN_ITEM_SEEDERS) and open_items
    return [
        Figure(
            NAME,
            "start-up to the first update answered (SQLite)",
            round(first_answer, 2),
            "s",
            target="≤ 2 s",
            met=first_answer <= 2.0,
        ),
        Figure(
            NAME,
            f"idle memory, {members:,} members, {seeded:,} open items",
            round(rss, 1),
            "MB RSS",
            target="≤ 150 MB",
            met=rss <= 150,
        ),
    ]

"""Start-up time to the first update handled, and idle memory, with a big organisation.

100,000 members and 1,000 open items spread over the features (see bench.open_items), with
what people did with them and their scheduled jobs; the bot starts on that database, answers
a first /start, and idles.
"""

from __future__ import annotations

import asyncio
import compileall
import datetime as dt
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import sqlalchemy as sa

from bench.harness import (
    ROOT,
    TOKEN,
    UNLIMITED,
    Emulator,
    Figure,
    Settings,
    bot_process,
    people,
    process_cpu_seconds,
)
from bench.open_items import SEEDERS, Network, open_items, shares
from bot.app import build_application
from bot.config import Config
from bot.db import migrate, transaction
from bot.services import organizations
from models import Member, Membership, OrgKind, Role, ScheduledJob, Tier

NAME = "footprint"
ORGANISERS = 12
GROUP_CHATS = 30


@dataclass
class Seeded:
    """What the database holds once seeded, counted there."""

    members: int
    open_items: dict[str, int]
    pending_jobs: int
    posted_cards: int
    taps: int  # votes, sign-ups, RSVPs and signatures
    seconds: float

    @property
    def items(self) -> int:
        """Open items of every kind."""
        return sum(self.open_items.values())

    def describe(self) -> str:
        """The open items by kind (e.g. "300 polls, 250 meetings"), for the figures."""
        return ", ".join(f"{count:,} {kind}" for kind, count in self.open_items.items())


async def seed(
    database_url: str, members: int, items: int, *, now: dt.datetime | None = None
) -> Seeded:
    """An organisation with ``members`` members, ``items`` open items spread over the features,
    ``GROUP_CHATS`` linked group chats with the items' live cards, and what people did."""
    started = time.monotonic()
    # The whole application, for its feature registry (announcement audiences) and config.
    application = build_application(Config().replace(database={"url": database_url}))
    runtime = application.runtime
    await migrate(runtime.engine)
    now = now or dt.datetime.now(dt.UTC)
    async with transaction(runtime.sessions) as session:
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
            await session.exec(sa.insert(Member.__table__), params=rows)
        ids = (await session.exec(sa.select(Member.id).order_by(Member.id))).scalars().all()
        founder = await session.get(Member, ids[0])
        org = await organizations.create_organization(
            session, creator=founder, name="큰 연대", slug="big", kind=OrgKind.GROUP, now=now
        )
        tiers = {i: Tier.FULL if i % 3 == 0 else Tier.SUPPORTER for i in ids[1:]}
        for start in range(1, len(ids), 5000):
            await session.exec(
                sa.insert(Membership.__table__),
                params=[
                    {
                        "member_id": i,
                        "organization_id": org.id,
                        "role": Role.ORGANIZER if n < ORGANISERS else Role.MEMBER,
                        "tier": tiers[i],
                        "joined_at": now,
                    }
                    for n, i in enumerate(ids[start : start + 5000], start=start)
                ],
            )
        organisers = [founder] + [await session.get(Member, i) for i in ids[1:ORGANISERS]]
        chat_ids = [-1_000_000_000_000 - n for n in range(GROUP_CHATS)]
        for n, chat_id in enumerate(chat_ids):
            await organizations.link_chat(
                session,
                actor=founder,
                org=org,
                chat_id=chat_id,
                title=f"큰 연대 {n + 1}지회",
                now=now,
            )
        network = Network(
            session=session,
            runtime=runtime,
            org=org,
            organisers=organisers,
            member_ids=list(ids),
            full_member_ids=[ids[0]] + [i for i, tier in tiers.items() if tier == Tier.FULL],
            chat_ids=chat_ids,
            now=now,
        )
        for (_, _, seeder), count in zip(
            SEEDERS, shares(items, [weight for _, weight, _ in SEEDERS]), strict=True
        ):
            await seeder(network, count)
        counted = await open_items(session, org, now)
        jobs = (
            await session.exec(sa.select(sa.func.count()).where(ScheduledJob.status == "pending"))
        ).scalar_one()
    await runtime.engine.dispose()
    return Seeded(
        members=members,
        open_items=counted,
        pending_jobs=jobs,
        posted_cards=network.cards,
        taps=network.taps,
        seconds=time.monotonic() - started,
    )


def compile_bytecode() -> None:
    """Compile moim's modules as installing it does, so the start is not timed compiling them.

    (With PYTHONDONTWRITEBYTECODE set, as in some sandboxes, a source checkout would otherwise
    compile every module again at each start; an installed moim never does.)
    """
    for package in ("bot", "handlers", "models"):
        compileall.compile_dir(ROOT / package, quiet=1)


def rss_megabytes(pid: int) -> float:
    """Resident memory of a process, in MB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


async def run(settings: Settings) -> list[Figure]:
    """Seed, start moim, time its first answer, then read its idle memory."""
    members = settings.size(100_000, 2_000)
    items = settings.size(1_000, 20)
    with tempfile.TemporaryDirectory() as scratch:
        database = f"sqlite+aiosqlite:///{Path(scratch) / 'bench.sqlite3'}"
        seeded = await seed(database, members, items)
        compile_bytecode()
        async with Emulator() as emulator:
            [person] = await people(emulator.client, 1)
            started = time.monotonic()
            async with bot_process(
                "moim", emulator, database_url=database, environment=UNLIMITED
            ) as process:
                await emulator.client.send_text(TOKEN, person, "/start")
                await emulator.client.wait_for_message(person, timeout=60)
                first_answer = time.monotonic() - started
                await asyncio.sleep(1)  # the answer's follow-ups, the scheduler's first tick
                cpu_before = process_cpu_seconds(process.pid)
                idle = settings.size(10, 1)
                await asyncio.sleep(idle)
                idle_cpu = (process_cpu_seconds(process.pid) - cpu_before) / idle
                rss = rss_megabytes(process.pid)
                sent = (await emulator.client.stats())["messages_sent"]
    what = f"{seeded.members:,} members, {seeded.items:,} open items"
    return [
        Figure(
            NAME,
            f"seeding {what} ({seeded.describe()}), {seeded.taps:,} votes/sign-ups/RSVPs/"
            f"signatures, {seeded.posted_cards:,} posted cards, {seeded.pending_jobs:,} pending "
            "jobs",
            round(seeded.seconds, 1),
            "s",
        ),
        Figure(
            NAME,
            f"start-up to the first update answered (SQLite; {what})",
            round(first_answer, 2),
            "s",
            target="≤ 2 s",
            met=first_answer <= 2.0,
            note="from starting the process; moim's bytecode compiled, as an install has it",
        ),
        Figure(
            NAME,
            f"idle memory ({what})",
            round(rss, 1),
            "MB RSS",
            target="≤ 150 MB",
            met=rss <= 150,
            note=f"idle CPU {idle_cpu * 100:.1f} % of a core; {sent} message(s) sent in all",
        ),
    ]

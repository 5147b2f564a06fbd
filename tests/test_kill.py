"""SIGKILL of a real `moim run` process in the middle of its work, on PostgreSQL.

The emulator runs in its own process; two `moim run` instances in webhook mode share one
database schema and get the updates round-robin. One is killed with SIGKILL while it sends an
announcement or a meeting reminder to a few hundred people. The other instance (or the killed
one, started again) finishes once the dead one's claims run out. The documented bound
(README, "A crash"): nobody misses the message, nobody gets it three times, and the copies
that arrive twice are at most the deliveries the killed instance had claimed and not yet
recorded, and only those; that set is read from the database the moment the process is dead.
An instance killed inside the reminder job itself leaves nothing behind: another runs it whole.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import os
import secrets
import signal
import socket
import sys
import time
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker, create_async_engine
from sqlmodel.ext.asyncio.session import AsyncSession

from bench.harness import TOKEN, Emulator, people, stop_process
from bot.db import make_engine, make_sessionmaker, migrate, transaction
from bot.emulator.client import EmulatorClient
from bot.services import meetings, organizations
from models import (
    Broadcast,
    BroadcastStatus,
    Delivery,
    DeliveryStatus,
    JobStatus,
    MeetingOccurrence,
    MeetingRsvp,
    Member,
    Membership,
    ScheduledJob,
)
from tests.conftest import POSTGRES_URL

pytestmark = pytest.mark.skipif(
    not POSTGRES_URL,
    reason="instances sharing a database need PostgreSQL: set MOIM_TEST_DATABASE_URL",
)

MEMBERS = 300
# Every Bot API call takes this long, so sends are in flight when the kill comes and the
# whole run lasts a few seconds.
LATENCY = 0.25
CLAIM_SECONDS = 3
SECRET = "kill-test-webhook-secret"
OPEN = (DeliveryStatus.PENDING, DeliveryStatus.SENDING)


@dataclass
class Instance:
    """One `moim run` process serving webhooks on its own port."""

    port: int
    process: asyncio.subprocess.Process | None = None
    instance_id: str = ""

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/telegram"


@dataclass
class World:
    """The emulator, the database schema and the instances of one test."""

    emulator: Emulator
    schema: str
    engine: AsyncEngine
    sessions: async_sessionmaker[AsyncSession]
    directory: Path
    instances: list[Instance] = field(default_factory=list)

    @property
    def client(self) -> EmulatorClient:
        return self.emulator.client

    def environment(self, instance: Instance) -> dict[str, str]:
        """Configuration of one instance, all through MOIM_* variables."""
        inherited = {k: v for k, v in os.environ.items() if not k.startswith("MOIM_")}
        return {
            **inherited,
            "MOIM_TELEGRAM_TOKEN": TOKEN,
            "MOIM_TELEGRAM_BASE_URL": self.emulator.base_url,
            "MOIM_TELEGRAM_MODE": "webhook",
            "MOIM_TELEGRAM_WEBHOOK_URL": instance.url,
            "MOIM_TELEGRAM_WEBHOOK_SECRET": SECRET,
            "MOIM_TELEGRAM_LISTEN_PORT": str(instance.port),
            "MOIM_DATABASE_URL": POSTGRES_URL,
            "MOIM_DATABASE_SCHEMA": self.schema,
            "MOIM_DATABASE_POOL_SIZE": "4",
            "MOIM_DELIVERY_CLAIM_SECONDS": str(CLAIM_SECONDS),
            # The real clock decides: announcements must not wait for the morning.
            "MOIM_DELIVERY_QUIET_HOURS_START": "00:00",
            "MOIM_DELIVERY_QUIET_HOURS_END": "00:00",
            "MOIM_LOG_LEVEL": "WARNING",
        }

    async def start(self, instance: Instance) -> None:
        """Start `moim run` and wait until its webhook server answers."""
        instance.process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "bot.cli",
            "run",
            cwd=self.directory,
            env=self.environment(instance),
        )
        deadline = time.monotonic() + 30
        async with httpx.AsyncClient(timeout=2) as http:
            while True:
                if instance.process.returncode is not None:
                    raise RuntimeError(f"moim run exited with {instance.process.returncode}")
                with contextlib.suppress(httpx.HTTPError):
                    health = await http.get(f"http://127.0.0.1:{instance.port}/healthz")
                    if health.status_code == 200:
                        instance.instance_id = health.json()["instance"]
                        return
                if time.monotonic() > deadline:
                    raise TimeoutError("moim run did not start within 30 s")
                await asyncio.sleep(0.1)

    async def start_cluster(self, count: int = 2) -> None:
        """Start the instances; the emulator then delivers updates round-robin over them."""
        self.instances = [Instance(free_port()) for _ in range(count)]
        await asyncio.gather(*(self.start(instance) for instance in self.instances))
        await self.client.set_webhook_targets(TOKEN, [i.url for i in self.instances])

    async def kill(self, instance: Instance) -> None:
        """SIGKILL: no clean-up of any kind runs in the process."""
        os.kill(instance.process.pid, signal.SIGKILL)
        await instance.process.wait()

    async def stop(self) -> None:
        for instance in self.instances:
            await stop_process(instance.process)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture
async def world(tmp_path: Path) -> AsyncIterator[World]:
    """The emulator in its own process and a fresh PostgreSQL schema, dropped afterwards."""
    schema = "kill_" + secrets.token_hex(6)
    engine = make_engine(POSTGRES_URL, schema=schema, pool_size=2)
    try:
        await migrate(engine)
        async with Emulator(limits=False) as emulator:
            running = World(emulator, schema, engine, make_sessionmaker(engine), tmp_path)
            try:
                yield running
            finally:
                await running.stop()
    finally:
        await engine.dispose()
        plain = create_async_engine(POSTGRES_URL)
        async with plain.begin() as connection:
            await connection.execute(sa.text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
        await plain.dispose()


# --- preparing -----------------------------------------------------------------------------------


@dataclass
class Organisation:
    """Who is in 새솔마을 주민회: 민지, its admin, and the members (Telegram ids)."""

    organiser: int
    organiser_member_id: int
    members: list[int]


async def seed(world: World, count: int = MEMBERS) -> Organisation:
    """An organisation with ``count`` registered members who have opened a chat with the bot."""
    organiser = (await world.client.create_user("민지"))["id"]
    members = await people(world.client, count, prefix="회원")
    await world.client.open_chats(TOKEN, [organiser, *members])
    now = dt.datetime.now(dt.UTC)
    registered = {"consent_version": 1, "consented_at": now, "age_confirmed_at": now}
    async with transaction(world.sessions) as session:
        minji = Member(
            telegram_user_id=organiser, display_name="민지", created_at=now, **registered
        )
        session.add(minji)
        await session.flush()
        org = await organizations.create_organization(
            session, creator=minji, name="새솔마을 주민회", slug="saesol", now=now
        )
        rows = [
            {
                "telegram_user_id": user_id,
                "display_name": f"회원{number}",
                "language": "ko",
                "muted": False,
                "created_at": now,
                **registered,
            }
            for number, user_id in enumerate(members)
        ]
        await session.exec(sa.insert(Member), params=rows)
        ids = await session.exec(sa.select(Member.id).where(Member.id != minji.id))
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
                for member_id in ids.scalars()
            ],
        )
    return Organisation(organiser, minji.id, members)


async def meeting_soon(world: World, org: Organisation) -> None:
    """정기 운영위원회 a minute and two seconds from now, every member said 참석, reminded one
    minute before: the reminder job falls due two seconds from now on the instances' clocks."""
    now = dt.datetime.now(dt.UTC)
    async with transaction(world.sessions) as session:
        minji = await session.get(Member, org.organiser_member_id)
        organisation = await organizations.by_slug(session, "saesol")
        meeting = await meetings.create_meeting(
            session,
            actor=minji,
            org=organisation,
            draft=meetings.MeetingDraft(
                title="정기 운영위원회", starts_at=now + dt.timedelta(minutes=1, seconds=2)
            ),
            reminder_minutes=[1],
            now=now,
            ahead=4,
        )
        occurrence = (
            await session.exec(
                sa.select(MeetingOccurrence.id).where(MeetingOccurrence.meeting_id == meeting.id)
            )
        ).scalar_one()
        member_ids = (
            await session.exec(
                sa.select(Member.id).where(Member.telegram_user_id.in_(org.members))
            )
        ).scalars()
        await session.exec(
            sa.insert(MeetingRsvp),
            params=[
                {"occurrence_id": occurrence, "member_id": m, "answer": "yes", "answered_at": now}
                for m in member_ids.all()
            ],
        )


# --- watching ------------------------------------------------------------------------------------


class Arrivals:
    """Copies of one message (recognised by a text) per chat, as the emulator received them."""

    def __init__(self, client: EmulatorClient, mark: str, since_seq: int) -> None:
        self.client = client
        self.mark = mark
        self.seq = since_seq
        self.per_chat: Counter[int] = Counter()

    async def poll(self) -> None:
        for record in await self.client.all_bot_messages(self.seq, token=TOKEN):
            self.seq = max(self.seq, record["seq"])
            if self.mark in (record["text"] or ""):
                self.per_chat[record["chat_id"]] += 1

    async def wait_for(self, count: int, timeout: float = 20) -> None:  # noqa: ASYNC109
        """Until ``count`` chats have at least one copy."""
        deadline = time.monotonic() + timeout
        while True:
            await self.poll()
            if len(self.per_chat) >= count:
                return
            if time.monotonic() > deadline:
                raise TimeoutError(f"{len(self.per_chat)} of {count} chats reached")
            await asyncio.sleep(0.02)


async def open_claims(world: World) -> dict[str, dict[int, int]]:
    """Deliveries claimed and not yet recorded, per instance: {delivery id: chat id}."""
    async with transaction(world.sessions) as session:
        rows = await session.exec(
            sa.select(Delivery.claimed_by, Delivery.id, Delivery.chat_id).where(
                Delivery.status == DeliveryStatus.SENDING
            )
        )
        claims: dict[str, dict[int, int]] = {}
        for worker, delivery_id, chat_id in rows.all():
            claims.setdefault(worker, {})[delivery_id] = chat_id
        return claims


async def all_handled(world: World, batch_prefix: str) -> bool:
    """True when no delivery of these batches is waiting or being sent (or stuck claimed)."""
    async with transaction(world.sessions) as session:
        left = await session.exec(
            sa.select(sa.func.count())
            .select_from(Delivery)
            .where(Delivery.batch.startswith(batch_prefix), Delivery.status.in_(OPEN))
        )
        return left.scalar_one() == 0


async def job_waiting_for(world: World, statement: str) -> bool:
    """True while one of the instances' statements waits for a lock (our LOCK TABLE)."""
    async with world.engine.connect() as connection:
        waiting = await connection.execute(
            sa.text(
                "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                "AND application_name = :name AND query LIKE :statement"
            ),
            {"name": f"moim:{world.schema}", "statement": statement + "%"},
        )
        return waiting.scalar_one() > 0


async def until(condition, timeout: float = 25) -> None:  # noqa: ASYNC109
    """Poll an async condition until it holds."""
    deadline = time.monotonic() + timeout
    while not await condition():
        if time.monotonic() > deadline:
            raise TimeoutError("the work was not finished in time")
        await asyncio.sleep(0.1)


async def kill_the_busiest(world: World) -> tuple[Instance, dict[int, int]]:
    """SIGKILL the instance holding the most claims; what it held, read after its death."""
    claims = await open_claims(world)
    victim = max(world.instances, key=lambda i: len(claims.get(i.instance_id, {})))
    await world.kill(victim)
    # Nothing of the dead process can be recorded any more: what is still claimed by it now is
    # exactly what it had claimed and not recorded.
    in_hand = (await open_claims(world)).get(victim.instance_id, {})
    return victim, in_hand


def check_copies(arrivals: Arrivals, recipients: list[int], in_hand: dict[int, int]) -> None:
    """Nobody missed it, nobody got it three times, and only what the dead instance held
    (claimed, not recorded) came twice."""
    counts = [arrivals.per_chat[chat] for chat in recipients]
    doubled = {chat for chat in recipients if arrivals.per_chat[chat] > 1}
    extra = sum(counts) - len(counts)
    assert counts.count(0) == 0, f"{counts.count(0)} recipients got nothing"
    assert max(counts) <= 2
    assert doubled <= set(in_hand.values())
    assert extra <= len(in_hand)


# --- the tests -----------------------------------------------------------------------------------


async def press(client: EmulatorClient, user: int, label: str, since_seq: int) -> int:
    """Wait for a bot message (after ``since_seq``) with a button labelled ``label``, press it;
    returns the emulator's seq before the press."""
    deadline = time.monotonic() + 15
    while True:
        for message in reversed(await client.messages(user, token=TOKEN)):
            if message["last_seq"] <= since_seq:
                continue
            for row in (message["reply_markup"] or {}).get("inline_keyboard", []):
                for button in row:
                    if button["text"].startswith(label) and "callback_data" in button:
                        seq = await client.seq()
                        await client.press(
                            TOKEN, user, user, message["message_id"], button["callback_data"]
                        )
                        return seq
        if time.monotonic() > deadline:
            raise TimeoutError(f"no button {label!r}")
        await asyncio.sleep(0.05)


async def test_an_instance_killed_mid_announcement_loses_nothing_and_doubles_only_its_claims(
    world,
):
    org, _ = await asyncio.gather(seed(world), world.start_cluster())
    client = world.client
    minji = org.organiser
    # 민지 writes the announcement in her private chat; her updates alternate between instances.
    seq = await client.seq()
    await client.send_text(TOKEN, minji, "/broadcast")
    await client.wait_for_message(minji, since_seq=seq, timeout=15, token=TOKEN)
    seq = await client.seq()
    await client.send_text(TOKEN, minji, "{{ 이름 }}님, 정전 대비 공지입니다")
    seq = await press(client, minji, f"모두 · {MEMBERS + 1}", seq)
    arrivals = Arrivals(client, "정전 대비 공지입니다", await client.seq())
    await client.set_faults(latency=LATENCY)
    await press(client, minji, "지금 보내기", seq)

    await arrivals.wait_for(MEMBERS // 3)
    _, in_hand = await kill_the_busiest(world)
    assert in_hand, "the instance was killed in the middle of sending"

    async def finished() -> bool:
        async with transaction(world.sessions) as session:
            status = (await session.exec(sa.select(Broadcast.status))).scalar_one()
        return status == BroadcastStatus.DONE

    await until(finished)
    await arrivals.poll()
    check_copies(arrivals, org.members, in_hand)
    assert await all_handled(world, "broadcast:")
    async with transaction(world.sessions) as session:
        row = (await session.exec(sa.select(Broadcast))).scalar_one()
    assert row.sent == MEMBERS + 1 and row.failed == 0
    report = await client.wait_for_message(
        minji, text_contains="발송을 마쳤습니다", timeout=10, token=TOKEN
    )
    assert f"보냄: {MEMBERS + 1}" in report["text"]


async def test_an_instance_killed_mid_reminder_run_is_finished_by_the_others(world):
    org, _ = await asyncio.gather(seed(world), world.start_cluster())
    client = world.client
    arrivals = Arrivals(client, "정기 운영위원회", await client.seq())
    await client.set_faults(latency=LATENCY)
    await meeting_soon(world, org)

    await arrivals.wait_for(MEMBERS // 3)
    victim, in_hand = await kill_the_busiest(world)
    assert in_hand, "the instance was killed in the middle of sending"
    # The killed instance comes back (as a supervisor would restart it) and shares the rest.
    await world.start(victim)

    await until(lambda: all_handled(world, "mtg-remind:"))
    await arrivals.poll()
    check_copies(arrivals, org.members, in_hand)
    async with transaction(world.sessions) as session:
        queued = (
            await session.exec(
                sa.select(Delivery.status, sa.func.count())
                .where(Delivery.batch.startswith("mtg-remind:"))
                .group_by(Delivery.status)
            )
        ).all()
        job = (
            await session.exec(
                sa.select(ScheduledJob.status).where(ScheduledJob.kind == meetings.REMIND_JOB)
            )
        ).scalar_one()
    assert dict(queued) == {DeliveryStatus.SENT: MEMBERS}  # queued once, all sent
    assert job == JobStatus.DONE


async def test_an_instance_killed_inside_the_reminder_job_leaves_it_whole_to_another(world):
    # One instance runs when the reminder falls due, so it is the one that takes the job.
    org, _ = await asyncio.gather(seed(world, 60), world.start_cluster(count=1))
    first = world.instances[0]
    arrivals = Arrivals(world.client, "정기 운영위원회", await world.client.seq())
    async with world.engine.connect() as blocker:
        await blocker.begin()
        # The job queues one delivery per member inside its own transaction, which holds the
        # job's row; this lock keeps that transaction open until the kill.
        await blocker.execute(sa.text("LOCK TABLE delivery IN EXCLUSIVE MODE"))
        await meeting_soon(world, org)
        await until(lambda: job_waiting_for(world, "INSERT INTO delivery"))
        second = Instance(free_port())
        world.instances.append(second)
        await world.start(second)
        await world.kill(first)
        await blocker.rollback()

    await arrivals.wait_for(len(org.members))
    await until(lambda: all_handled(world, "mtg-remind:"))
    await arrivals.poll()
    assert [arrivals.per_chat[chat] for chat in org.members] == [1] * len(org.members)
    async with transaction(world.sessions) as session:
        job = (
            await session.exec(
                sa.select(ScheduledJob).where(ScheduledJob.kind == meetings.REMIND_JOB)
            )
        ).scalar_one()
    # The killed run left nothing behind, not even its claim's attempt.
    assert (job.status, job.attempts) == (JobStatus.DONE, 1)

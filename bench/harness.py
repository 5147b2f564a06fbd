"""Running benchmarks: the emulator and each bot under test in their own processes."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import secrets
import signal
import statistics
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import httpx
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import create_async_engine

from bot.config import Config
from bot.emulator.client import EmulatorClient

ROOT = Path(__file__).resolve().parent.parent
TOKEN = "7000000001:BENCH-moim-emulated-bot-token"
# With the emulator's limits off, moim's own limiter is lifted too, so both bots are measured
# on CPU alone (the echo bot has no limiter). Telegram-limited runs leave these out.
UNLIMITED = {
    "MOIM_DELIVERY_MESSAGES_PER_SECOND": "100000",
    "MOIM_DELIVERY_PRIVATE_CHAT_PER_SECOND": "1000",
    "MOIM_DELIVERY_GROUP_PER_MINUTE": "60000",
}


@dataclass
class Figure:
    """One measured figure and its target."""

    benchmark: str
    measure: str
    value: float
    unit: str
    target: str = ""
    met: bool | None = None
    note: str = ""

    def as_dict(self) -> dict[str, Any]:
        """JSON-able form."""
        return asdict(self)


@dataclass(frozen=True)
class BenchDatabase:
    """Where moim keeps one run's data: a fresh SQLite file, or a fresh PostgreSQL schema."""

    label: str
    url: str
    schema: str = ""

    def config(self) -> Config:
        """moim's configuration for this database (for seeding and checking in-process)."""
        return Config().replace(database={"url": self.url, "schema": self.schema})

    def environment(self) -> dict[str, str]:
        """The same for a `moim run` process."""
        return {"MOIM_DATABASE_URL": self.url, "MOIM_DATABASE_SCHEMA": self.schema}


def postgres_url() -> str:
    """The PostgreSQL the benchmarks may use (MOIM_BENCH_DATABASE_URL, else the tests' one)."""
    return os.environ.get("MOIM_BENCH_DATABASE_URL") or os.environ.get(
        "MOIM_TEST_DATABASE_URL", ""
    )


def database_labels(latency_ms: float = 0.0) -> list[str]:
    """Where moim keeps its data in a burst: SQLite always; PostgreSQL too when one is
    configured, at latency 0 (with Bot API latency, waiting hides the database)."""
    return ["SQLite", "PostgreSQL"] if postgres_url() and not latency_ms else ["SQLite"]


@contextlib.asynccontextmanager
async def fresh_database(label: str) -> AsyncIterator[BenchDatabase]:
    """A database nobody used before, gone afterwards."""
    if label == "SQLite":
        with tempfile.TemporaryDirectory() as scratch:
            yield BenchDatabase(label, f"sqlite+aiosqlite:///{Path(scratch) / 'bench.sqlite3'}")
        return
    database = BenchDatabase(label, postgres_url(), "bench_" + secrets.token_hex(4))
    try:
        yield database  # moim creates the schema on its first connection
    finally:
        engine = create_async_engine(database.url)
        try:
            async with engine.begin() as connection:
                await connection.execute(
                    sa.text(f'DROP SCHEMA IF EXISTS "{database.schema}" CASCADE')
                )
        finally:
            await engine.dispose()


@dataclass
class Settings:
    """What the whole run uses: sizes (quick runs for the smoke test) and latency."""

    quick: bool = False
    latency_ms: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)

    def size(self, full: int, quick: int) -> int:
        """The workload size for this run."""
        return quick if self.quick else full


def die_with_parent() -> None:
    """In a child before exec: be killed when the benchmark dies (a timed-out or killed run
    must not leave bots and emulators running on the machine)."""
    if sys.platform == "linux":
        import ctypes

        pr_set_pdeathsig = 1
        ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGKILL)


class Emulator:
    """`python -m bot.emulator` in its own process, and a control client for it."""

    def __init__(self, *, limits: bool = False, latency_ms: float = 0.0) -> None:
        self.limits = limits
        self.latency_ms = latency_ms
        self.process: asyncio.subprocess.Process | None = None
        self.base_url = ""
        self.control_url = ""
        self.client: EmulatorClient | None = None

    async def __aenter__(self) -> Emulator:
        arguments = [
            sys.executable,
            "-m",
            "bot.emulator",
            "--port",
            "0",
            "--token",
            TOKEN,
            "--latency-ms",
            str(self.latency_ms),
        ]
        if not self.limits:
            arguments.append("--no-limits")
        self.process = await asyncio.create_subprocess_exec(
            *arguments, stdout=asyncio.subprocess.PIPE, cwd=ROOT, preexec_fn=die_with_parent
        )
        line = (await asyncio.wait_for(self.process.stdout.readline(), 30)).decode()
        self.base_url = re.search(r"base_url=(\S+)", line).group(1)
        self.control_url = re.search(r"control_url=(\S+)", line).group(1)
        self.client = EmulatorClient(self.control_url, timeout=300)
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        if self.client is not None:
            await self.client.close()
        await stop_process(self.process)


async def stop_process(process: asyncio.subprocess.Process | None) -> None:
    """SIGTERM, then SIGKILL if it does not stop within 10 s."""
    if process is None or process.returncode is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        await asyncio.wait_for(process.wait(), 10)
    except TimeoutError:
        process.kill()
        await process.wait()


@contextlib.asynccontextmanager
async def bot_process(
    kind: str,
    emulator: Emulator,
    *,
    database_url: str = "",
    environment: dict | None = None,
    concurrency: int = 0,
) -> AsyncIterator[asyncio.subprocess.Process]:
    """Start the echo bot or moim against the emulator; yield once it polls for updates."""
    before = (await emulator.client.stats())["requests"].get("getUpdates", 0)
    env = {**os.environ, **(environment or {})}
    if kind == "echo":
        arguments = [
            sys.executable,
            "-m",
            "bench.echo_bot",
            "--token",
            TOKEN,
            "--base-url",
            emulator.base_url,
        ]
        if concurrency:
            arguments += ["--concurrency", str(concurrency)]
    else:
        arguments = [sys.executable, "-m", "bot.cli", "run"]
        env.update(
            MOIM_TELEGRAM_TOKEN=TOKEN,
            MOIM_TELEGRAM_BASE_URL=emulator.base_url,
            MOIM_DATABASE_URL=database_url,
            MOIM_LOG_LEVEL="WARNING",
        )
        if concurrency:
            env["MOIM_TELEGRAM_CONCURRENCY"] = str(concurrency)
    process = await asyncio.create_subprocess_exec(
        *arguments, cwd=ROOT, env=env, preexec_fn=die_with_parent
    )
    try:
        deadline = time.monotonic() + 60
        while (await emulator.client.stats())["requests"].get("getUpdates", 0) <= before:
            if process.returncode is not None or time.monotonic() > deadline:
                raise RuntimeError(f"{kind} bot did not start")
            await asyncio.sleep(0.05)
        yield process
    finally:
        await stop_process(process)


async def wait_until(condition, *, timeout: float, interval: float = 0.02) -> float:  # noqa: ASYNC109
    """Poll an async condition until true; returns when it became true (monotonic)."""
    deadline = time.monotonic() + timeout
    while not await condition():
        if time.monotonic() > deadline:
            raise TimeoutError("benchmark workload did not finish in time")
        await asyncio.sleep(interval)
    return time.monotonic()


def process_cpu_seconds(pid: int) -> float:
    """CPU time (user + system) a process has used so far (Linux /proc; 0.0 elsewhere).

    Unlike rates, CPU per update holds still when other work shares the machine.
    """
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def percentile(values: list[float], share: float) -> float:
    """The value below which ``share`` of the values lie."""
    if not values:
        return float("nan")
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[round(share * 100) - 1]


async def people(client: EmulatorClient, count: int, prefix: str = "p") -> list[int]:
    """Create ``count`` Telegram users who have opened a chat with the bot; their ids."""
    ids = []
    for start in range(0, count, 500):
        created = await asyncio.gather(
            *(client.create_user(f"{prefix}{n}") for n in range(start, min(count, start + 500)))
        )
        ids.extend(user["id"] for user in created)
    return ids


async def text_burst(
    emulator: Emulator,
    senders: list[int],
    text: str,
    *,
    timeout: float = 600,  # noqa: ASYNC109
) -> float:
    """Everyone sends ``text`` at once; seconds until the bot has answered each once."""
    client = emulator.client
    before = (await client.stats())["messages_sent"]
    started = time.monotonic()
    await client.send_many(TOKEN, [{"user_id": s, "text": text} for s in senders])

    async def done() -> bool:
        return (await client.stats())["messages_sent"] >= before + len(senders)

    finished = await wait_until(done, timeout=timeout)
    return finished - started


async def open_chats(emulator: Emulator, user_ids: list[int]) -> None:
    """These people open their private chat with the bot (so it may write to them first).

    Their /start updates are confirmed here, so the bot under test starts with none waiting.
    """
    client = emulator.client
    last = None
    for start in range(0, len(user_ids), 2000):
        chunk = user_ids[start : start + 2000]
        ids = await client.send_many(TOKEN, [{"user_id": u, "text": "/start"} for u in chunk])
        last = max([i for i in ids if i is not None] + ([last] if last is not None else []))
    if last is not None:
        async with httpx.AsyncClient(timeout=60) as http:
            await http.post(
                f"{emulator.base_url}{TOKEN}/getUpdates", json={"offset": last + 1, "timeout": 0}
            )


async def watch_messages(
    client: EmulatorClient,
    *,
    since_seq: int,
    expected: int,
    timeout: float,  # noqa: ASYNC109
    stop_at: int | None = None,
    interval: float = 0.05,
) -> list[tuple[dict[str, Any], float]]:
    """The bot's new messages with the wall-clock time each was first seen (time.time()).

    Polls the emulator every ``interval`` until ``expected`` messages arrived (or ``stop_at``,
    to act in the middle of a run); raises TimeoutError after ``timeout`` seconds.
    """
    seen: list[tuple[dict[str, Any], float]] = []
    deadline = time.monotonic() + timeout
    target = stop_at if stop_at is not None else expected
    while len(seen) < target:
        if time.monotonic() > deadline:
            raise TimeoutError(f"only {len(seen)} of {target} messages within {timeout} s")
        records = await client.all_bot_messages(since_seq, token=TOKEN)
        now = time.time()
        for record in records:
            record.pop("message", None)
            seen.append((record, now))
            since_seq = max(since_seq, record["seq"])
        await asyncio.sleep(interval)
    return seen


async def add_members(client: EmulatorClient, chat_id: int, user_ids: list[int]) -> None:
    """Put people into a group quietly (no service messages), 500 requests at a time."""
    for start in range(0, len(user_ids), 500):
        await asyncio.gather(
            *(
                client.add_member(chat_id, user_id, announce=False)
                for user_id in user_ids[start : start + 500]
            )
        )


async def seed_members(sessions, telegram_ids: list[int], now, *, language: str = "ko") -> None:
    """Registered members (consent given) for these Telegram ids, in one bulk INSERT, so a
    benchmark measures what people do next rather than the registration."""
    import sqlalchemy as sa

    from bot.db import transaction
    from models import Member

    rows = [
        {
            "telegram_user_id": telegram_id,
            "display_name": f"p{n}",
            "language": language,
            "consent_version": 1,
            "consented_at": now,
            "age_confirmed_at": now,
            "muted": False,
            "last_seen_at": now,
            "created_at": now,
        }
        for n, telegram_id in enumerate(telegram_ids)
    ]
    async with transaction(sessions) as session:
        for start in range(0, len(rows), 2000):
            await session.exec(sa.insert(Member), params=rows[start : start + 2000])


async def seed_organisation(
    session,
    *,
    organiser_id: int,
    now,
    name: str = "새솔마을 주민회",
    slug: str = "saesol",
    chat_id: int | None = None,
    chat_title: str = "새솔 단톡방",
    organiser_name: str = "운영자",
):
    """A registered organiser, their organisation and (given a chat) its linked group,
    written through the services as the bot would: (organiser, organisation)."""
    from bot.services import members, organizations

    organiser = await members.register(
        session,
        telegram_user_id=organiser_id,
        display_name=organiser_name,
        language="ko",
        notice_version=1,
        now=now,
    )
    org = await organizations.create_organization(
        session, creator=organiser, name=name, slug=slug, now=now
    )
    if chat_id is not None:
        await organizations.link_chat(
            session, actor=organiser, org=org, chat_id=chat_id, title=chat_title, now=now
        )
    return organiser, org

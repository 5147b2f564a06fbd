"""Campaigns: a crowd signs up for one campaign (moim beside echo), and big exports.

1. N distinct people open the campaign's link (/start camp_1) and then all tap "Sign up" on
   their card at once; capacity is a fifth of N. Figures: sign-ups per second end to end
   (every tap answered) for moim and for the echo bot answering the same taps, and whether
   exactly capacity were confirmed and the rest waitlisted in arrival order.
2. Exporting 100,000 sign-ups to XLSX and CSV, each in a fresh process: seconds and the
   process's peak resident memory (VmHWM; ru_maxrss where /proc is missing).

python -m bench.campaigns export --database URL --campaign 1 --format xlsx  (used by 2.)
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import resource
import sys
import tempfile
import time
from pathlib import Path

import sqlalchemy as sa

from bench.harness import (
    ROOT,
    TOKEN,
    UNLIMITED,
    BenchDatabase,
    Emulator,
    Figure,
    Settings,
    bot_process,
    database_labels,
    die_with_parent,
    fresh_database,
    people,
    process_cpu_seconds,
    text_burst,
    wait_until,
)
from bot.app import build_runtime
from bot.db import migrate, transaction
from bot.services import campaigns, organizations
from bot.services.campaigns import CampaignDraft
from models import Member, Signup, SignupStatus

NAME = "campaign sign-ups"
EXPORT_NAME = "campaign export"
NOW = dt.datetime.now(dt.UTC).replace(microsecond=0)  # moim runs on the real clock
ORGANISER_ID = 999_000_001


def _runtime(database: BenchDatabase | str):
    """A runtime on the benchmark's database (a bare URL is an SQLite file)."""
    if isinstance(database, str):
        database = BenchDatabase("SQLite", database)
    return build_runtime(database.config())


async def prepare_campaign(database: BenchDatabase, telegram_ids: list[int], capacity: int) -> int:
    """A migrated database: an organisation, an open campaign, and everyone registered."""
    runtime = _runtime(database)
    try:
        await migrate(runtime.engine)
        async with transaction(runtime.sessions) as session:
            organiser = Member(
                telegram_user_id=ORGANISER_ID,
                display_name="운영진",
                consent_version=1,
                consented_at=NOW,
                created_at=NOW,
                last_seen_at=NOW,
            )
            session.add(organiser)
            await session.flush()
            org = await organizations.create_organization(
                session, creator=organiser, name="새솔마을 주민회", slug="saesol", now=NOW
            )
            campaign = await campaigns.create_campaign(
                session,
                org=org,
                creator=organiser,
                draft=CampaignDraft(title="12월 정기 상영회", capacity=capacity),
                open_now=True,
                now=NOW,
            )
            await _bulk_members(session, telegram_ids)
            return campaign.id
    finally:
        await runtime.engine.dispose()


async def _bulk_members(session, telegram_ids: list[int], prefix: str = "주민") -> None:
    rows = [
        {
            "telegram_user_id": telegram_id,
            "display_name": f"{prefix}{n}",
            "language": "ko",
            "consent_version": 1,
            "consented_at": NOW,
            "age_confirmed_at": NOW,
            "muted": False,
            "created_at": NOW,
            "last_seen_at": NOW + dt.timedelta(days=30),  # no "seen" update during the run
        }
        for n, telegram_id in enumerate(telegram_ids)
    ]
    for start in range(0, len(rows), 5000):
        await session.exec(sa.insert(Member), params=rows[start : start + 5000])


async def check_order(
    database: BenchDatabase, campaign_id: int, capacity: int
) -> tuple[int, int, bool]:
    """Confirmed and waitlisted counts, and whether statuses follow arrival order."""
    runtime = _runtime(database)
    try:
        async with transaction(runtime.sessions) as session:
            rows = (
                await session.exec(
                    sa.select(Signup.position, Signup.status)
                    .where(Signup.campaign_id == campaign_id)
                    .order_by(Signup.position)
                )
            ).all()
    finally:
        await runtime.engine.dispose()
    statuses = [status for _, status in rows]
    confirmed = statuses.count(SignupStatus.CONFIRMED)
    waitlisted = statuses.count(SignupStatus.WAITLISTED)
    expected = [SignupStatus.CONFIRMED] * confirmed + [SignupStatus.WAITLISTED] * waitlisted
    in_order = statuses == expected and [p for p, _ in rows] == list(range(1, len(rows) + 1))
    return confirmed, waitlisted, in_order and confirmed == capacity


async def tap_all(emulator: Emulator, presses: list[dict]) -> float:
    """Everyone taps at once; seconds from the first tap to the last answer."""
    client = emulator.client
    query_ids = await client.press_many(TOKEN, presses)

    async def answered() -> bool:
        return (await client.answer_report(query_ids))["answered"] >= len(query_ids)

    await wait_until(answered, timeout=1800, interval=0.2)
    return (await client.answer_report(query_ids))["span"]


async def run(settings: Settings) -> list[Figure]:
    """Sign-ups/s for moim (on SQLite; on PostgreSQL too at latency 0 when one is configured)
    and echo in the same run; at latency 0 also the export."""
    figures: list[Figure] = []
    for label in database_labels(settings.latency_ms):
        figures += await signups_on(settings, label)
    if not settings.latency_ms:
        figures += await run_export(settings)
    return figures


async def signups_on(settings: Settings, label: str) -> list[Figure]:
    """Everyone opens the campaign's link, then taps sign-up at once; echo beside moim."""
    # At 50 ms the echo bot handles one update per ~60 ms: 1,000 people keep the run to minutes.
    count = settings.size(1000 if settings.latency_ms else 5000, 60)
    capacity = count // 5
    name = f"{NAME} ({label})"
    figures: list[Figure] = []
    rates = {}
    for kind in ("echo", "moim"):
        async with fresh_database(label) as database:
            async with Emulator(latency_ms=settings.latency_ms) as emulator:
                senders = await people(emulator.client, count)
                campaign_id = await prepare_campaign(database, senders, capacity)
                async with bot_process(
                    kind,
                    emulator,
                    database_url=database.url,
                    environment={**UNLIMITED, **database.environment()},
                ) as process:
                    opened = await text_burst(emulator, senders, f"/start camp_{campaign_id}")
                    cards = await _cards(emulator, senders)
                    presses = [
                        {
                            "user_id": sender,
                            "chat_id": sender,
                            "message_id": cards.get(sender, 1),
                            "callback_data": f"v1:camp:join:{campaign_id}:0",
                            "forge": kind == "echo",  # the echo bot sent no card to tap
                        }
                        for sender in senders
                    ]
                    cpu = process_cpu_seconds(process.pid)
                    seconds = await tap_all(emulator, presses)
                    cpu = process_cpu_seconds(process.pid) - cpu
                if kind == "moim":
                    confirmed, waitlisted, in_order = await check_order(
                        database, campaign_id, capacity
                    )
            rates[kind] = count / seconds
            figures.append(
                Figure(
                    name,
                    f"{kind}: campaign link opened per second ({count} people)",
                    round(count / opened, 1),
                    "updates/s",
                )
            )
            figures.append(
                Figure(
                    name,
                    f"{kind}: sign-up taps answered per second ({count} people)",
                    round(rates[kind], 1),
                    "sign-ups/s",
                )
            )
            figures.append(
                Figure(
                    name,
                    f"{kind}: CPU of the bot's process per sign-up tap",
                    round(cpu * 1000 / count, 2),
                    "ms",
                    note="steadier than rates on a busy machine",
                )
            )
    ratio = rates["moim"] / rates["echo"]
    figures += [
        Figure(name, "moim / echo", round(ratio * 100, 1), "%", target="≥ 50 %", met=ratio >= 0.5),
        Figure(
            name,
            f"confirmed (capacity {capacity})",
            confirmed,
            "people",
            target=f"= {capacity}",
            met=confirmed == capacity,
        ),
        Figure(
            name,
            "waitlisted",
            waitlisted,
            "people",
            target=f"= {count - capacity}",
            met=waitlisted == count - capacity,
        ),
        Figure(
            name,
            "confirmed first, then the waitlist, in arrival order",
            int(in_order),
            "(1 = yes)",
            target="1",
            met=in_order,
        ),
    ]
    return figures


async def _cards(emulator: Emulator, senders: list[int]) -> dict[int, int]:
    """The message id of the card each person got."""
    messages = await emulator.client.all_bot_messages(0, token=TOKEN)
    return {m["chat_id"]: m["message_id"] for m in messages if m["chat_id"] in set(senders)}


# --- exporting 100,000 sign-ups ----------------------------------------------------------------


async def prepare_export(database: str, count: int) -> int:
    """A campaign with ``count`` sign-ups (a fifth confirmed) and two answered questions."""
    runtime = _runtime(database)
    try:
        await migrate(runtime.engine)
        async with transaction(runtime.sessions) as session:
            organiser = Member(
                telegram_user_id=ORGANISER_ID, display_name="운영진", created_at=NOW
            )
            session.add(organiser)
            await session.flush()
            org = await organizations.create_organization(
                session, creator=organiser, name="새솔마을 주민회", slug="saesol", now=NOW
            )
            campaign = await campaigns.create_campaign(
                session,
                org=org,
                creator=organiser,
                draft=CampaignDraft(
                    title="대규모 집회",
                    capacity=count // 5,
                    questions=[
                        campaigns.parse_question("티셔츠 사이즈? S / M / L / XL"),
                        campaigns.parse_question("하고 싶은 말?"),
                    ],
                ),
                open_now=True,
                now=NOW,
            )
            await _bulk_members(session, list(range(1, count + 1)), prefix="참가자")
            first = (
                await session.exec(sa.select(sa.func.min(Member.id)).where(Member.id > 1))
            ).one()[0]
            rows = [
                {
                    "campaign_id": campaign.id,
                    "member_id": first + n,
                    "status": SignupStatus.CONFIRMED
                    if n < count // 5
                    else SignupStatus.WAITLISTED,
                    "guests": 0,
                    "position": n + 1,
                    "answers": {"0": "L", "1": f"함께해요, 정말 기대됩니다 #{n}"},
                    "signed_up_at": NOW + dt.timedelta(seconds=n),
                    "confirmed_at": NOW if n < count // 5 else None,
                }
                for n in range(count)
            ]
            for start in range(0, count, 5000):
                await session.exec(sa.insert(Signup), params=rows[start : start + 5000])
            return campaign.id
    finally:
        await runtime.engine.dispose()


async def run_export(settings: Settings) -> list[Figure]:
    """Each format exported in its own fresh process: seconds and peak memory."""
    count = settings.size(100_000, 2_000)
    figures = []
    with tempfile.TemporaryDirectory() as scratch:
        database = f"sqlite+aiosqlite:///{Path(scratch) / 'export.sqlite3'}"
        campaign_id = await prepare_export(database, count)
        for fmt in ("xlsx", "csv"):
            process = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "bench.campaigns",
                "export",
                "--database",
                database,
                "--campaign",
                str(campaign_id),
                "--format",
                fmt,
                cwd=ROOT,
                preexec_fn=die_with_parent,
                stdout=asyncio.subprocess.PIPE,
            )
            output, _ = await process.communicate()
            result = json.loads(output.decode().strip().splitlines()[-1])
            label = f"{fmt.upper()}, {count:,} sign-ups"
            figures += [
                Figure(EXPORT_NAME, f"{label}: time", result["seconds"], "s"),
                Figure(
                    EXPORT_NAME,
                    f"{label}: peak memory of the process",
                    result["peak_mb"],
                    "MB",
                    target="< 200 MB",
                    met=result["peak_mb"] < 200,
                    note=f"{result['baseline_mb']} MB before exporting, "
                    f"file {result['file_mb']} MB",
                ),
            ]
    return figures


async def export_once(database: str, campaign_id: int, fmt: str) -> dict:
    """Export like the organiser's button does, measuring this process."""
    runtime = _runtime(database)
    baseline = _peak_mb()
    try:
        async with transaction(runtime.sessions) as session:
            organiser = (
                await session.exec(
                    sa.select(Member).where(Member.telegram_user_id == ORGANISER_ID)
                )
            ).one()[0]
            started = time.perf_counter()
            export = await campaigns.export_signups(
                session,
                campaign_id=campaign_id,
                member=organiser,
                fmt=fmt,
                labels=_labels(),
                now=NOW,
            )
            seconds = time.perf_counter() - started
    finally:
        await runtime.engine.dispose()
    return {
        "seconds": round(seconds, 2),
        "peak_mb": _peak_mb(),
        "baseline_mb": baseline,
        "file_mb": round(len(export.data) / 1e6, 1),
    }


def _labels() -> dict[str, str]:
    from bot.render import Renderer

    text = Renderer().text("campaigns/export_labels.txt", "ko")
    return dict(line.split("=", 1) for line in text.splitlines() if "=" in line)


def _peak_mb() -> float:
    """This process's peak resident memory in MB.

    Linux's ru_maxrss keeps the high-water mark of the forked parent across exec, so the
    figure would include the benchmark's own memory; VmHWM belongs to this program alone.
    """
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        pass
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def main() -> None:
    """``python -m bench.campaigns export ...``: one export, its figures as JSON."""
    parser = argparse.ArgumentParser(prog="python -m bench.campaigns")
    parser.add_argument("command", choices=["export"])
    parser.add_argument("--database", required=True)
    parser.add_argument("--campaign", type=int, required=True)
    parser.add_argument("--format", choices=["csv", "xlsx"], required=True)
    args = parser.parse_args()
    print(json.dumps(asyncio.run(export_once(args.database, args.campaign, args.format))))


if __name__ == "__main__":
    main()

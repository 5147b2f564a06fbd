"""The benchmarks still run (tiny workloads); their figures are printed, never asserted."""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import sys
from pathlib import Path

from sqlmodel import select

from bench import footprint
from bot.app import BuildOptions, build_application
from bot.clock import FakeClock
from bot.config import Config
from bot.db import transaction
from bot.runtime import CardRequest
from bot.scheduler import JobRunner
from models import JobStatus, PostedCard, ScheduledJob

ROOT = Path(__file__).resolve().parent.parent


def test_quick_benchmark_run_prints_a_table_and_writes_json(tmp_path):
    output = tmp_path / "bench.json"
    result = subprocess.run(
        [sys.executable, "-m", "bench", "--quick", "--json", str(output)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "| benchmark | measure | figure | target | met |" in result.stdout
    figures = json.loads(output.read_text())["figures"]
    assert {f["benchmark"] for f in figures} >= {"start burst", "reminder burst"}
    # Counts of what must not happen (copies missing, reminders missing, 429s) are rightly 0;
    # rates are not.
    assert all(f["value"] >= 0 for f in figures)
    assert all(f["value"] > 0 for f in figures if "/s" in f["unit"])


async def test_footprint_open_items_are_ones_moim_shows_and_carries_to_their_end(tmp_path):
    """What the footprint benchmark seeds is what the features write: every posted card
    renders, and every scheduled job (closing, reminders, deadlines, announcements) runs
    without an error when its time comes."""
    now = dt.datetime(2026, 12, 1, 3, tzinfo=dt.UTC)
    url = f"sqlite+aiosqlite:///{tmp_path / 'footprint.sqlite3'}"
    seeded = await footprint.seed(url, 300, 20, now=now)
    assert seeded.items == 20 and all(seeded.open_items.values()), seeded.open_items
    clock = FakeClock(now)
    config = Config().replace(database={"url": url})
    runtime = build_application(config, BuildOptions(clock=clock)).runtime
    try:
        async with transaction(runtime.sessions) as session:
            cards = (await session.exec(select(PostedCard))).all()
            for card in cards:
                request = CardRequest(
                    session=session,
                    runtime=runtime,
                    item_id=card.item_id,
                    language=card.language,
                    chat_id=card.chat_id,
                    now=now,
                )
                assert await runtime.features.cards[card.kind].render(request) is not None
        assert {card.kind for card in cards} == {"poll", "meeting", "campaign", "petition"}
        runner = JobRunner(runtime)
        for _ in range(140):  # 70 days, half a day at a time
            clock.advance(hours=12)
            await runner.run_due()
        async with transaction(runtime.sessions) as session:
            jobs = (await session.exec(select(ScheduledJob))).all()
        assert [(job.key, job.last_error) for job in jobs if job.last_error] == []
        assert {job.kind for job in jobs if job.status == JobStatus.DONE} >= {
            "poll.close",
            "poll.nudge",
            "meetings.remind",
            "meetings.extend",
            "campaign.deadline",
            "petition.close",
            "broadcast.send",
        }
    finally:
        await runtime.engine.dispose()

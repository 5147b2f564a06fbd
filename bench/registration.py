"""Foundation: a crowd opens the bot at once (/start → the privacy notice), moim beside echo."""

from __future__ import annotations

import tempfile
from pathlib import Path

from bench.harness import (
    UNLIMITED,
    Emulator,
    Figure,
    Settings,
    bot_process,
    people,
    text_burst,
)

NAME = "start burst"


async def run(settings: Settings) -> list[Figure]:
    """N distinct people send /start at the same moment; updates/s for moim and for echo."""
    count = settings.size(1000, 40)
    figures = []
    rates = {}
    for kind in ("echo", "moim"):
        with tempfile.TemporaryDirectory() as scratch:
            database = f"sqlite+aiosqlite:///{Path(scratch) / 'bench.sqlite3'}"
            async with Emulator(latency_ms=settings.latency_ms) as emulator:
                senders = await people(emulator.client, count)
                async with bot_process(
                    kind, emulator, database_url=database, environment=UNLIMITED
                ):
                    seconds = await text_burst(emulator, senders, "/start")
            rates[kind] = count / seconds
            figures.append(
                Figure(
                    NAME,
                    f"{kind}: /start answered per second ({count} people)",
                    round(rates[kind], 1),
                    "updates/s",
                )
            )
    ratio = rates["moim"] / rates["echo"]
    figures.append(
        Figure(NAME, "moim / echo", round(ratio * 100, 1), "%", target="≥ 50 %", met=ratio >= 0.5)
    )
    return figures

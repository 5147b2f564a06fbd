"""Petitions: 10,000 distinct people tap "Sign" on one petition's card in their group chat.

moim (its own process, SQLite) against the bare echo bot in the same run. For moim a signature
is done end to end when its tap is answered (after the commit) and the signer's private
confirmation (with the "may your name be shown?" question) has been delivered. Afterwards the
database must hold exactly N signatures and the organiser must have been told of each milestone
(25/50/75/100 %) exactly once.
"""

from __future__ import annotations

import time

import sqlalchemy as sa

from bench.harness import (
    TOKEN,
    UNLIMITED,
    BenchDatabase,
    Emulator,
    Figure,
    Settings,
    add_members,
    bot_process,
    database_labels,
    fresh_database,
    people,
    process_cpu_seconds,
    seed_members,
    seed_organisation,
    text_burst,
    wait_until,
)

NAME = "petition signing"
MILESTONES = (25, 50, 75, 100)


async def run(settings: Settings) -> list[Figure]:
    """The signing burst with moim on SQLite, and on PostgreSQL (at latency 0) when one is
    configured."""
    figures = []
    for label in database_labels(settings.latency_ms):
        figures += await signing_on(settings, label)
    return figures


async def signing_on(settings: Settings, label: str) -> list[Figure]:
    """N people sign at once; signatures/s for moim, presses answered/s for echo."""
    # At 50 ms the echo bot handles one update per ~60 ms: 1,000 people keep the run to minutes.
    count = settings.size(1_000 if settings.latency_ms else 10_000, 40)
    name = f"{NAME} ({label})"
    rates, cpu_ms, checks = await _measure(settings, count, label)
    echo, moim = rates["echo"], rates["moim"]
    ratio = moim / echo
    counted, rows, milestone_batches, milestone_messages = checks
    exact = counted == rows == count
    once = milestone_batches == dict.fromkeys(MILESTONES, 1) and milestone_messages == 4
    return [
        Figure(
            name,
            f"echo: button presses answered per second ({count} people)",
            round(echo, 1),
            "presses/s",
        ),
        Figure(
            name,
            f"moim: signatures per second, end to end ({count} people)",
            round(moim, 1),
            "signatures/s",
        ),
        *(
            Figure(
                name,
                f"{kind}: CPU of the bot's process per press",
                round(cpu_ms[kind], 2),
                "ms",
                note="steadier than rates on a busy machine",
            )
            for kind in ("echo", "moim")
        ),
        Figure(name, "moim / echo", round(ratio * 100, 1), "%", target="≥ 50 %", met=ratio >= 0.5),
        Figure(
            name,
            "signatures counted (stored count = signature rows)",
            counted,
            "",
            target=f"= {count}",
            met=exact,
            note=f"rows: {rows}",
        ),
        Figure(
            name,
            "milestone messages to the organiser",
            milestone_messages,
            "",
            target="4, each milestone once",
            met=once,
            note=f"outbox rows per milestone: {milestone_batches}",
        ),
    ]


async def _press_all(client, signers, chat_id, message_id, data, *, forge, messages) -> float:
    """Everyone presses at once; seconds until every press is answered (and ``messages`` more
    messages were sent)."""
    before = await client.stats()
    answered = before["requests"].get("answerCallbackQuery", 0)
    started = time.monotonic()
    await client.press_many(
        TOKEN,
        [
            {
                "user_id": signer,
                "chat_id": chat_id,
                "message_id": message_id,
                "callback_data": data,
                "forge": forge,
            }
            for signer in signers
        ],
    )

    async def done() -> bool:
        stats = await client.stats()
        return (
            stats["requests"].get("answerCallbackQuery", 0) >= answered + len(signers)
            and stats["messages_sent"] >= before["messages_sent"] + messages
        )

    finished = await wait_until(done, timeout=3600, interval=0.2)
    return finished - started


async def _measure(settings: Settings, count: int, label: str):
    """One emulator: the echo bot first, then moim, over the same people and group."""
    async with fresh_database(label) as database:
        async with Emulator(latency_ms=settings.latency_ms) as emulator:
            client = emulator.client
            signers = await people(client, count)
            organiser = (await client.create_user("운영자"))["id"]
            group = (
                await client.create_group("새솔 단톡방", supergroup=True, creator_id=organiser)
            )["id"]
            await add_members(client, group, signers)
            await client.add_bot_to_group(TOKEN, group, by_user_id=organiser)
            async with bot_process("echo", emulator) as process:
                # Registered people have written to the bot before; this opens their chats
                # (the echo bot answers), so the bot may write to them privately.
                await text_burst(emulator, [*signers, organiser], "/start")
                # The echo bot cannot post a card: its presses name a message it never sent.
                cpu = process_cpu_seconds(process.pid)
                echo_seconds = await _press_all(
                    client, signers, group, 1, "v1:pet:sign:1:0:g", forge=True, messages=0
                )
                echo_cpu = process_cpu_seconds(process.pid) - cpu

                async def confirmed() -> bool:
                    return await client.pending_updates(TOKEN) == 0

                await wait_until(confirmed, timeout=60)
            petition_id = await _prepare(database, organiser, signers, group, goal=count)
            async with bot_process(
                "moim",
                emulator,
                database_url=database.url,
                environment={**UNLIMITED, **database.environment()},
            ) as process:
                since = await client.seq()
                await client.send_text(
                    TOKEN, organiser, f"/post petition {petition_id}", chat_id=group
                )
                card = await client.wait_for_message(
                    group, since_seq=since, text_contains="청원 대상", timeout=60
                )
                sign = card["reply_markup"]["inline_keyboard"][0][1]["callback_data"]
                cpu = process_cpu_seconds(process.pid)
                moim_seconds = await _press_all(
                    client, signers, group, card["message_id"], sign, forge=False, messages=count
                )
                moim_cpu = process_cpu_seconds(process.pid) - cpu

                async def told() -> bool:
                    return len(await _milestone_texts(client, organiser)) >= len(MILESTONES)

                await wait_until(told, timeout=60, interval=0.2)
                messages = len(await _milestone_texts(client, organiser))
        checks = await _verify(database, petition_id)
    rates = {"echo": count / echo_seconds, "moim": count / moim_seconds}
    cpu_ms = {"echo": echo_cpu * 1000 / count, "moim": moim_cpu * 1000 / count}
    return rates, cpu_ms, (*checks, messages)


async def _milestone_texts(client, organiser: int) -> list[str]:
    return [
        m["text"]
        for m in await client.messages(organiser)
        if "도달했습니다" in (m["text"] or "") or "달성했습니다" in (m["text"] or "")
    ]


async def _prepare(
    database: BenchDatabase, organiser: int, signers: list[int], group: int, *, goal: int
):
    """The organisation, its linked group, the petition, and N registered people."""
    from bot.app import build_runtime
    from bot.db import migrate, transaction
    from bot.services import petitions

    runtime = build_runtime(database.config())
    try:
        await migrate(runtime.engine)
        now = runtime.now()
        await seed_members(runtime.sessions, signers, now)
        async with transaction(runtime.sessions) as session:
            admin, org = await seed_organisation(
                session, organiser_id=organiser, now=now, chat_id=group
            )
            petition = await petitions.create_petition(
                session,
                actor=admin,
                org=org,
                title="마을버스 증차 요청",
                addressee="구청장",
                goal=goal,
                body="7번 마을버스는 출퇴근 때 30분을 기다립니다. 증차를 요청합니다.",
                now=now,
            )
            return petition.id
    finally:
        await runtime.engine.dispose()


async def _verify(database: BenchDatabase, petition_id: int):
    """The stored count, the signature rows, and outbox rows per milestone."""
    from bot.app import build_runtime
    from bot.db import transaction
    from models import Delivery, Petition, Signature

    runtime = build_runtime(database.config())
    try:
        async with transaction(runtime.sessions) as session:
            petition = await session.get(Petition, petition_id)
            rows = (
                await session.exec(
                    sa.select(sa.func.count())
                    .select_from(Signature)
                    .where(Signature.petition_id == petition_id, Signature.withdrawn_at.is_(None))
                )
            ).scalar()
            batches = {
                level: (
                    await session.exec(
                        sa.select(sa.func.count())
                        .select_from(Delivery)
                        .where(Delivery.batch == f"petition:{petition_id}:ms{level}")
                    )
                ).scalar()
                for level in MILESTONES
            }
        return petition.signature_count, rows, batches
    finally:
        await runtime.engine.dispose()

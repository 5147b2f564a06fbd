"""Live cards: /post into a linked group, edits that follow changes, coalesced per chat."""

from __future__ import annotations

import datetime as dt
import time
from dataclasses import dataclass

import sqlalchemy as sa

from bot.cards import CardRefresher
from bot.db import transaction
from bot.render import Rendered
from bot.runtime import CardKind
from bot.services import privacy
from models import Member, PostedCard
from tests.e2e import Person, register
from tests.test_e2e_organizations import admin


@dataclass
class Counter:
    """A stand-in item: something with a title and a count, belonging to one organisation."""

    id: int
    title: str
    organization_id: int
    count: int = 0


def install_counter_cards(local, counters: dict[int, Counter]) -> None:
    async def postable(session, org):
        return [c for c in counters.values() if c.organization_id == org.id]

    async def owner(session, item_id):
        counter = counters.get(item_id)
        return counter.organization_id if counter else None

    async def render(request):
        counter = counters.get(request.item_id)
        return Rendered(text=f"<b>{counter.title}</b>: {counter.count}") if counter else None

    local.runtime.features.cards["counter"] = CardKind(
        kind="counter",
        postable=postable,
        owner=owner,
        render=render,
        label_template="orgs/not_joined.html",
    )


async def setup_group(local):
    minji = admin(local)
    await register(minji)
    await minji.say("/new_org 새솔마을 주민회 | saesol")
    group = local.emulator.create_group("새솔 단톡방")
    local.emulator.add_member(group["id"], minji.id)
    local.emulator.add_bot_to_group(local.token, group["id"], by_user_id=minji.id)
    await local.settle()
    await minji.say("/link_group", chat_id=group["id"])
    return minji, group


async def test_post_a_card_and_it_follows_changes(local):
    minji, group = await setup_group(local)
    counters = {7: Counter(7, "참석 인원", organization_id=1)}
    install_counter_cards(local, counters)
    await minji.say("/post")
    await minji.tap("가입하지 않았습니다")  # the label template used by the stand-in kind
    assert "방에 올렸습니다" in minji.last()["text"]
    card = minji.last(group["id"])
    assert card["text"] == "참석 인원: 0"
    counters[7].count = 3
    local.runtime.cards.touch("counter", 7)
    await local.settle()
    assert minji.last(group["id"])["text"] == "참석 인원: 3"
    async with transaction(local.runtime.sessions) as session:
        stored = (await session.exec(sa.select(PostedCard))).scalars().one()
    assert (stored.chat_id, stored.kind, stored.item_id) == (group["id"], "counter", 7)


async def test_post_is_for_organisers_only(local):
    minji, group = await setup_group(local)
    install_counter_cards(local, {7: Counter(7, "참석 인원", organization_id=1)})
    stranger = Person(local, "서준")
    await register(stranger)
    reply = (await stranger.say("/post counter 7"))[-1]
    assert "운영진만" in reply["text"]
    assert len(minji.inbox(group["id"])) == 2  # the bot's hello and the link confirmation


async def test_a_burst_of_changes_becomes_few_edits_per_group(local):
    _, group = await setup_group(local)
    counters = {7: Counter(7, "투표", organization_id=1)}
    install_counter_cards(local, counters)
    async with transaction(local.runtime.sessions) as session:
        session.add(
            PostedCard(
                kind="counter",
                item_id=7,
                chat_id=group["id"],
                message_id=local.emulator.messages(group["id"])[-1]["message_id"],
                language="ko",
                posted_at=local.runtime.now(),
            )
        )
    refresher = CardRefresher(local.runtime, local.application.bot)
    edits_before = local.stats()["edits"]
    started = time.monotonic()
    for n in range(1, 101):  # a hundred changes within a moment
        counters[7].count = n
        refresher.touch("counter", 7)
        await refresher.refresh_due()
    elapsed = time.monotonic() - started
    pacing = local.runtime.config.delivery.card_edit_group_seconds
    assert refresher.pending == 1  # the latest state still waits for its turn
    assert refresher.edits <= 1 + int(elapsed / pacing)
    assert local.stats()["edits"] - edits_before == refresher.edits
    await refresher.refresh_due(force=True)
    assert local.emulator.messages(group["id"])[-1]["text"] == "투표: 100"


async def test_people_inactive_past_retention_are_erased(runtime, clock):
    from tests.factories import SEOJUN, make_member

    async with transaction(runtime.sessions) as session:
        await make_member(session, SEOJUN, "서준", now=clock.now())
    later = clock.now() + dt.timedelta(days=366)
    async with transaction(runtime.sessions) as session:
        erased = await privacy.erase_inactive(
            session, retention=dt.timedelta(days=365), hooks=[], now=later
        )
    assert erased == 1
    async with transaction(runtime.sessions) as session:
        member = (await session.exec(sa.select(Member))).scalars().one()
    assert member.telegram_user_id is None and member.deleted_at == later

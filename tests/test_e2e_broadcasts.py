"""Announcements end to end: write, choose who, preview, send or schedule, report, refusals."""

from __future__ import annotations

import sqlalchemy as sa

from bot.db import transaction
from models import Broadcast, Delivery
from tests.e2e import Person, buttons, register
from tests.test_e2e_organizations import admin


async def _org_with_people(local):
    """민지 (admin) with 새솔마을 주민회 and four members: 서준, 하은 (full member), 지호 (muted),
    도윤 (blocked the bot)."""
    minji = admin(local)
    await register(minji)
    await minji.say("/new_org 새솔마을 주민회 | saesol")
    people = {}
    for name in ("서준", "하은", "지호", "도윤"):
        person = Person(local, name)
        await register(person, "org_saesol")
        await person.tap("가입하기")
        people[name] = person
    await minji.say("/members")
    await minji.tap("하은")
    await minji.tap("정회원으로 바꾸기")
    await people["지호"].say("/mute")
    local.emulator.block_bot(local.token, people["도윤"].id)
    await local.settle()
    return minji, people


def _utf16(text: str, part: str) -> int:
    """Where ``part`` starts in ``text``, counted as Telegram counts (UTF-16 code units)."""
    return len(text[: text.index(part)].encode("utf-16-le")) // 2


def _received(person: Person, text: str) -> list[dict]:
    return [m for m in person.inbox() if text in (m["text"] or "")]


async def test_announcement_to_everyone_keeps_formatting_skips_muted_and_blocked(local):
    minji, people = await _org_with_people(local)
    asked = (await minji.say("/broadcast"))[-1]
    assert "새솔마을 주민회" in asked["text"] and "{{ name }}" in asked["text"]
    text = "안녕하세요 {{ 이름 }}님, 토요일 모임이 있어요"
    bold = text.index("토요일")
    choose = (await minji.say(text, entities=[{"type": "bold", "offset": bold, "length": 3}]))[-1]
    assert "누구에게" in choose["text"]
    assert "모두 · 5" in buttons(choose)
    await minji.tap("모두 · 5")
    copy, preview = minji.inbox()[-2:]
    assert copy["text"] == "📢 새솔마을 주민회\n\n안녕하세요 민지님, 토요일 모임이 있어요"
    assert {"type": "bold", "offset": _utf16(copy["text"], "토요일"), "length": 3} in copy[
        "entities"
    ]
    assert "받는 사람: 3명" in preview["text"]
    assert "공지를 끈 사람(/mute): 1명" in preview["text"]
    assert "받을 수 없는 사람" in preview["text"]
    await minji.tap("지금 보내기")
    await local.settle()
    seojun = _received(people["서준"], "토요일 모임")
    assert [m["text"] for m in seojun] == [
        "📢 새솔마을 주민회\n\n안녕하세요 서준님, 토요일 모임이 있어요"
    ]
    assert len(_received(people["하은"], "토요일 모임")) == 1
    assert _received(people["지호"], "토요일 모임") == []
    report = minji.last()
    assert "발송" in report["text"], report["text"]
    for line in ("보냄: 3", "실패: 0", "받을 수 없음", "건너뜀"):
        assert line in report["text"], report["text"]
    async with transaction(local.runtime.sessions) as session:
        broadcast = (await session.exec(sa.select(Broadcast))).scalars().one()
        deliveries = (await session.exec(sa.select(sa.func.count()).select_from(Delivery))).one()
    assert broadcast.status == "done" and broadcast.audience_size == 5
    assert (broadcast.sent, broadcast.skipped_muted, broadcast.skipped_unreachable) == (3, 1, 1)
    assert deliveries[0] >= 4  # three announcements and the report

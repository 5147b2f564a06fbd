"""Organisations end to end: creating, joining by link, tiers and roles, groups, refusals."""

from __future__ import annotations

import sqlalchemy as sa

from bot.db import transaction
from models import AuditLog, LinkedChat, Membership, Organization
from tests.e2e import Person, buttons, document_json, register, url_buttons


def admin(local, language: str = "ko") -> Person:
    """A person named as bot administrator in the configuration (as `bot.admins` would)."""
    person = Person(local, "민지", language=language)
    runtime = local.runtime
    runtime.config = runtime.config.replace(bot={"admins": [person.id]})
    return person


async def test_done_when_story_in_korean(local):
    """Register, create an org, a second person joins by link, gets promoted, exports, forgets."""
    minji = admin(local)
    await register(minji)
    await minji.say("/new_org")
    assert "단체 이름을 보내 주세요" in minji.last()["text"]
    await minji.say("새솔마을 주민회")
    await minji.tap("회원이 있는 단체")
    await minji.tap("아니요, 일반 단체입니다")
    assert "moim-1" in minji.last()["text"]
    await minji.say("saesol")
    preview = minji.last()
    assert "이름: 새솔마을 주민회" in preview["text"] and "start=org_saesol" in preview["text"]
    await minji.tap("만들기")
    created = minji.last()
    assert "‘새솔마을 주민회’ 단체를 만들었습니다" in created["text"]
    assert any("t.me/share/url" in url for url in url_buttons(created))

    invite = (await minji.say("/invite"))[-1]
    assert "https://t.me/moim_bot?start=org_saesol" in invite["text"]

    seojun = Person(local, "서준")
    await register(seojun, "org_saesol")
    card = seojun.last()
    assert "새솔마을 주민회" in card["text"] and "가입하기" in buttons(card)
    await seojun.tap("가입하기")
    assert "가입했습니다" in seojun.last()["text"]

    members = (await minji.say("/members"))[-1]
    assert "회원 2명" in members["text"]
    await minji.tap("서준")
    await minji.tap("정회원으로 바꾸기")
    detail = minji.last()
    assert "등급: 정회원" in detail["text"]
    await minji.tap("운영진으로 지정")
    assert "역할: 운영진" in minji.last()["text"]

    profile = (await seojun.say("/me"))[-1]
    assert "새솔마을 주민회 — 정회원 · 운영진" in profile["text"]
    data = document_json((await seojun.say("/mydata"))[-1])
    assert data["memberships"] == [
        {**data["memberships"][0], "slug": "saesol", "tier": "full", "role": "organizer"}
    ]
    await seojun.say("/forget")
    await seojun.tap("네, 삭제합니다")
    async with transaction(local.runtime.sessions) as session:
        count = (await session.exec(sa.select(sa.func.count()).select_from(Membership))).one()
        actions = (await session.exec(sa.select(AuditLog.action))).scalars().all()
    assert count == (1,)  # only the admin's membership is left
    assert actions == ["org.create", "members.tier", "members.role"]


async def test_done_when_story_in_english_with_one_line_creation(local):
    minji = admin(local, language="en")
    await register(minji)
    created = (await minji.say("/new_org Seoul Climate Network | network"))[-1]
    assert "“Seoul Climate Network” has been created." in created["text"]
    alex = Person(local, "Alex", language="en")
    await register(alex, "org_seoul-climate-network")
    await alex.tap("Join")
    assert "You have joined Seoul Climate Network." in alex.last()["text"]
    await minji.say("/members")
    await minji.tap("Alex")
    await minji.tap("Make full member")
    assert "Tier: full member" in minji.last()["text"]
    assert "Seoul Climate Network — full member" in (await alex.say("/me"))[-1]["text"]


async def test_sensitive_org_asks_separate_consent(local):
    minji = admin(local)
    await register(minji)
    await minji.say("/new_org 공공운수노조 지부 | union | 민감")
    worker = Person(local, "도윤")
    await register(worker, "org_union")
    card = worker.last()
    assert "민감정보 처리에 대한 별도 동의" in card["text"]
    assert "제23조" in card["text"]
    assert buttons(card) == ["동의하고 가입하기", "다음에 하기"]
    # A forged plain join (without the consent flag) is refused and stores nothing.
    organization_id = card["reply_markup"]["inline_keyboard"][0][0]["callback_data"].split(":")[3]
    answer = await worker.press(card, f"v1:org:join:{organization_id}", forge=True)
    assert "별도 동의" in answer["text"]
    await worker.tap("동의하고 가입하기")
    async with transaction(local.runtime.sessions) as session:
        rows = (await session.exec(sa.select(Membership))).scalars().all()
    assert [r.sensitive_consent_at is not None for r in rows] == [True, True]


async def test_organiser_commands_are_refused_for_others_and_audited(local):
    minji = admin(local)
    await register(minji)
    await minji.say("/new_org 새솔마을 주민회 | saesol")
    seojun = Person(local, "서준")
    await register(seojun, "org_saesol")
    await seojun.tap("가입하기")
    before = await _snapshot(local)
    for command in (
        "/new_org 가짜 모임",
        "/members",
        "/invite saesol",
        "/network_add saesol saesol",
    ):
        reply = (await seojun.say(command))[-1]
        assert "아무것도 바뀌지 않았습니다" in reply["text"]
    # Pressing an organiser's button by forging its data is refused too.
    members_message = (await minji.say("/members"))[-1]
    data = members_message["reply_markup"]["inline_keyboard"][0][0]["callback_data"]
    ms_id = data.split(":")[4]
    forged = f"v1:org:set:{data.split(':')[3]}:{ms_id}:r:a"
    seojun_chat_message = seojun.last()
    answer = await seojun.press(seojun_chat_message, forged, forge=True)
    assert "운영진만" in answer["text"]
    assert await _snapshot(local) == before
    async with transaction(local.runtime.sessions) as session:
        refused = (
            (await session.exec(sa.select(AuditLog).where(AuditLog.outcome == "refused")))
            .scalars()
            .all()
        )
    assert len(refused) >= 3


async def _snapshot(local):
    async with transaction(local.runtime.sessions) as session:
        orgs = (await session.exec(sa.select(Organization.slug))).scalars().all()
        ms = (await session.exec(sa.select(Membership.role, Membership.tier))).all()
    return sorted(orgs), sorted(map(tuple, ms))


async def test_link_group_and_supergroup_migration(local):
    minji = admin(local)
    await register(minji)
    await minji.say("/new_org 새솔마을 주민회 | saesol")
    group = local.emulator.create_group("새솔 단톡방")
    local.emulator.add_member(group["id"], minji.id)
    local.emulator.add_bot_to_group(local.token, group["id"], by_user_id=minji.id)
    await local.settle()
    assert "/link_group" in minji.last(group["id"])["text"]
    reply = (await minji.say("/link_group", chat_id=group["id"]))[-1]
    assert "새솔마을 주민회 단체방으로 연결했습니다" in reply["text"]
    new_id = local.emulator.migrate_to_supergroup(group["id"])
    await local.settle()
    async with transaction(local.runtime.sessions) as session:
        linked = (await session.exec(sa.select(LinkedChat.chat_id))).scalars().all()
    assert linked == [new_id]


async def test_a_stranger_cannot_link_a_group(local):
    stranger = Person(local, "낯선이")
    await register(stranger)
    group = local.emulator.create_group("남의 방")
    local.emulator.add_member(group["id"], stranger.id)
    local.emulator.add_bot_to_group(local.token, group["id"], by_user_id=stranger.id)
    await local.settle()
    reply = (await stranger.say("/link_group", chat_id=group["id"]))[-1]
    assert "운영진만" in reply["text"]


async def test_unexpected_error_apologises_with_reference_and_rolls_back(local, caplog):
    from handlers import members as members_handlers

    person = Person(local, "서준")
    await register(person)
    original = members_handlers.members.rename

    async def broken(session, member, name):
        member.display_name = "반쯤 저장된 이름"
        session.add(member)
        await session.flush()
        raise RuntimeError("disk on fire")

    members_handlers.members.rename = broken
    try:
        reply = (await person.say("/name 새 이름"))[-1]
    finally:
        members_handlers.members.rename = original
    assert "아무것도 저장하지 않았습니다" in reply["text"]
    reference = reply["text"].rsplit(":", 1)[-1].strip()
    assert len(reference) == 6
    assert any(reference in record.getMessage() for record in caplog.records)
    assert not any("새 이름" in record.getMessage() for record in caplog.records)
    assert "이름: 서준" in (await person.say("/me"))[-1]["text"]


async def test_members_list_shows_tier_and_role(local):
    minji = admin(local)
    await register(minji)
    await minji.say("/new_org 새솔마을 주민회 | saesol")
    text = (await minji.say("/members"))[-1]["text"]
    assert "1. 민지 — 정회원 · 관리자" in text

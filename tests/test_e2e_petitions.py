"""Petitions end to end: the real bot against the emulator, as people would use it."""

from __future__ import annotations

import csv
import datetime as dt
import io

import sqlalchemy as sa
from openpyxl import load_workbook

from bot.db import transaction
from models import Delivery, Petition, Signature
from tests.e2e import Person, buttons, document_json, register, url_buttons
from tests.test_e2e_organizations import admin


async def organiser_with_group(local):
    """민지 (bot admin) with 새솔마을 주민회 and its linked group chat."""
    minji = admin(local)
    await register(minji)
    await minji.say("/new_org 새솔마을 주민회 | saesol")
    group = local.emulator.create_group("새솔 단톡방")
    local.emulator.add_member(group["id"], minji.id)
    local.emulator.add_bot_to_group(local.token, group["id"], by_user_id=minji.id)
    await local.settle()
    await minji.say("/link_group", chat_id=group["id"])
    return minji, group["id"]


def texts(person: Person, chat_id: int | None = None) -> list[str]:
    return [message["text"] or "" for message in person.inbox(chat_id)]


def count(person: Person, fragment: str) -> int:
    return sum(fragment in text for text in texts(person))


def document(person: Person, suffix: str) -> bytes:
    found = [
        m
        for m in person.inbox()
        if (m.get("document") or {}).get("file_name", "").endswith(suffix)
    ]
    assert found, f"no {suffix} document"
    return found[-1]["document"]["data"]


async def test_done_when_goal_four_link_card_milestones_closing_exports(local, clock):
    minji, group = await organiser_with_group(local)

    # Creating, step by step, with a preview.
    await minji.say("/new_petition")
    assert "청원 제목은 무엇인가요?" in minji.last()["text"]
    await minji.say("마을버스 증차 요청")
    await minji.say("구청장")
    await minji.say("4")
    await minji.say("12월 3일")
    assert "12월 3일 (목) 23:59에 마감" in minji.last()["text"]
    await minji.tap("이름 공개 가능")
    await minji.say(
        "7번 마을버스는 출퇴근 때 30분을 기다립니다. <b>증차</b> & 배차 간격 단축을 요청합니다."
    )
    assert "받았습니다" in minji.last()["text"]
    await minji.tap("다 보냈어요")
    preview = minji.last()["text"]
    assert "미리보기" in preview and "서명 0명 / 목표 4명 (0%)" in preview
    assert "<b>증차</b> & 배차" in preview  # typed markup is shown as typed
    await minji.tap("청원 시작하기")
    created = minji.last()
    assert "청원 #1 ‘마을버스 증차 요청’ 서명을 받기 시작했습니다" in created["text"]
    assert "https://t.me/moim_bot?start=pet_1" in created["text"]
    assert any("t.me/share/url" in url for url in url_buttons(created))

    # The live card in the group chat.
    await minji.say("/post petition 1")
    card = minji.last(group)
    assert "마을버스 증차 요청" in card["text"] and "청원 대상: 구청장" in card["text"]
    assert "서명 0명 / 목표 4명 (0%)" in card["text"] and "▱▱▱▱▱▱▱▱▱▱" in card["text"]
    assert buttons(card) == ["📄 전문 보기", "✍️ 서명하기"]

    # 서준 comes through the shared link, consents, and signs with one tap.
    seojun = Person(local, "서준")
    await register(seojun, "pet_1")
    view = seojun.last()
    assert "마을버스 증차 요청" in view["text"] and "✍️ 서명하기" in buttons(view)
    await seojun.tap("서명하기")
    signed = seojun.last()
    assert signed["message_id"] == view["message_id"]  # the petition became the confirmation
    assert "서명했습니다" in signed["text"] and "서명 1명 / 목표 4명 (25%)" in signed["text"]
    assert "명단에 이름을 실어도 될까요?" in signed["text"]
    await seojun.tap("이름 공개하기")
    assert "전달할 명단에 이름(서준)이 실립니다" in seojun.last()["text"]

    # 하은 (registered before) signs from the group card: a short notice there, details privately.
    haeun = Person(local, "하은")
    await register(haeun)
    local.emulator.add_member(group, haeun.id)
    local.emulator.add_member(group, seojun.id)
    answer = await haeun.tap("서명하기", chat_id=group)
    assert "서명했습니다! 지금까지 2명이 서명했습니다" in answer["text"]
    assert "명단에 이름을 실어도 될까요?" in haeun.last()["text"]
    await haeun.tap("비공개로 두기")
    await haeun.tap("한마디 남기기")
    too_long = (await haeun.say("가" * 301))[-1]
    assert "300자까지" in too_long["text"] and "301자" in too_long["text"]
    saved = (await haeun.say("<b>꼭</b> 필요합니다 & 빨리요"))[-1]
    assert "<b>꼭</b> 필요합니다 & 빨리요" in saved["text"]

    # 서준 taps the group card too: already signed, the count stays.
    answer = await seojun.tap("서명하기", chat_id=group)
    assert "이미 서명하셨습니다" in answer["text"] and answer["show_alert"]

    # 지호 signs through the link, withdraws, and signs again.
    jiho = Person(local, "지호")
    await register(jiho, "pet_1")
    await jiho.tap("서명하기")
    await jiho.tap("서명 철회")
    assert "서명을 철회했습니다" in jiho.last()["text"] and "서명 2명" in jiho.last()["text"]
    await jiho.tap("다시 서명하기")
    assert "서명 3명 / 목표 4명 (75%)" in jiho.last()["text"]

    # Alex, in English, is the fourth.
    alex = Person(local, "Alex", language="en")
    await register(alex, "pet_1")
    await alex.tap("Sign")
    assert "4 of 4 signatures (100%)" in alex.last()["text"]
    await alex.tap("Show my name")

    card = minji.last(group)
    assert "서명 4명 / 목표 4명 (100%)" in card["text"] and "▰▰▰▰▰▰▰▰▰▰" in card["text"]

    # Each milestone was told to the organiser exactly once; signers were not asked to hear.
    assert count(minji, "목표의 25%에 도달했습니다") == 1
    assert count(minji, "목표의 50%에 도달했습니다") == 1
    assert count(minji, "목표의 75%에 도달했습니다") == 1
    assert count(minji, "목표한 서명 4명을 달성했습니다") == 1
    assert count(seojun, "도달했습니다") == 0

    profile = (await seojun.say("/me"))[-1]["text"]
    assert "내가 서명한 청원" in profile and "마을버스 증차 요청 — 4명 / 목표 4명" in profile

    # The closing job fires once at 3 Dec 23:59 (Seoul), not before.
    clock.set(dt.datetime(2026, 12, 3, 14, 58, tzinfo=dt.UTC))
    assert await local.run_due_jobs() == 0
    clock.set(dt.datetime(2026, 12, 3, 15, 0, tzinfo=dt.UTC))
    assert await local.run_due_jobs() == 1
    assert await local.run_due_jobs() == 0
    for person in (seojun, haeun, jiho):
        assert count(person, "청원이 마감되었습니다") == 1
        assert "최종 서명: 4명 (목표 4명)" in person.last()["text"]
    assert count(alex, "is closed") == 1 and count(minji, "청원이 마감되었습니다") == 1
    assert "마감되었습니다" in minji.last(group)["text"]
    assert buttons(minji.last(group)) == ["📄 전문 보기"]
    answer = await haeun.tap("서명 철회")
    assert "마감되어" in answer["text"]

    # The organiser's summary and the exports.
    summary = (await minji.say("/signatures 1"))[-1]
    assert "이름 공개: 2명 · 이름 비공개: 2명" in summary["text"]
    assert "12월 1일 (화) — 4명" in summary["text"] and "철회" not in summary["text"]
    await minji.tap("CSV")
    rows = list(csv.reader(io.StringIO(document(minji, ".csv").decode("utf-8-sig"))))
    assert document(minji, ".csv").startswith(b"\xef\xbb\xbf")
    assert rows[0] == ["번호", "이름", "단체", "서명 일시", "한마디"]
    assert [row[1] for row in rows[1:]] == ["서준", "(비공개)", "(비공개)", "Alex"]
    assert rows[2][4] == "<b>꼭</b> 필요합니다 & 빨리요"
    await minji.tap("엑셀")
    sheet = load_workbook(io.BytesIO(document(minji, ".xlsx"))).active
    assert [cell.value for cell in sheet["B"]][1:] == ["서준", "(비공개)", "(비공개)", "Alex"]
    await minji.tap("전달용 페이지")
    page = document(minji, ".html").decode("utf-8")
    assert "<li>서준</li>" in page and "<li>Alex</li>" in page
    assert "하은" not in page and "지호" not in page
    assert "모두 4명이 서명했습니다" in page and "2명은 이름 없이 수만 셉니다" in page
    assert "&lt;b&gt;증차&lt;/b&gt; &amp; 배차" in page

    # Exactly four signatures, one per person; every outbox message went out once.
    async with transaction(local.runtime.sessions) as session:
        petition = await session.get(Petition, 1)
        rows = (await session.exec(sa.select(sa.func.count()).select_from(Signature))).one()
        dedupe = (
            (
                await session.exec(
                    sa.select(Delivery.dedupe_key).where(Delivery.dedupe_key.is_not(None))
                )
            )
            .scalars()
            .all()
        )
    assert (petition.signature_count, petition.milestone_reached, rows) == (4, 100, (4,))
    assert len(dedupe) == len(set(dedupe))


async def test_one_line_form_long_text_in_parts_and_privacy(local):
    minji, _ = await organiser_with_group(local)
    reply = (await minji.say("/new_petition 기후 조례 제정 | 서울시의회 | 500 | 비공개"))[-1]
    assert "청원 전문을 보내 주세요" in reply["text"]
    unit = "탄소 <중립> & 조례 &amp; <b>굵게</b> 1 < 2 ; "
    parts = [(unit * 200)[:3500] for _ in range(3)]
    for part in parts:
        await minji.say(part)
    assert "받았습니다: 10,502자" in minji.last()["text"]
    await minji.tap("다 보냈어요")
    assert "이름: 공개하지 않고 서명 수만 셉니다" in minji.last()["text"]
    await minji.tap("청원 시작하기")

    citizen = Person(local, "서준")
    await register(citizen, "pet_1")
    before = len(citizen.inbox())
    await citizen.tap("전문 보기")
    sent = citizen.inbox()[before:]
    assert len(sent) >= 3
    assert all(len(message["text"]) <= 4096 for message in sent)
    joined = "".join(message["text"] for message in sent)
    assert "".join(joined.split()) == "".join(
        ("📄 기후 조례 제정청원 대상: 서울시의회" + "\n".join(parts)).split()
    )
    assert buttons(sent[-1]) == ["✍️ 서명하기"]
    # Asking again within a minute does not resend it.
    answer = await citizen.tap("전문 보기", message=citizen.inbox()[before - 1])
    assert "방금 전문을 보내 드렸습니다" in answer["text"]
    assert len(citizen.inbox()) == before + len(sent)

    await citizen.tap("서명하기", message=sent[-1])
    signed = citizen.last()
    assert "서명 1명" in signed["text"] and "이름을 실어도" not in signed["text"]
    assert "이름 공개하기" not in buttons(signed)
    data = document_json((await citizen.say("/mydata"))[-1])
    assert data["petitions"][0]["title"] == "기후 조례 제정"
    await citizen.say("/forget")
    await citizen.tap("네, 삭제합니다")
    summary = (await minji.say("/signatures 1"))[-1]["text"]
    assert "서명 1명 / 목표 500명" in summary


async def test_refusals_stale_buttons_floods_and_strangers(local):
    minji, group = await organiser_with_group(local)
    await minji.say("/new_petition 마을버스 증차 요청 | 구청장 | 100\n전문입니다.")
    assert "서명을 받기 시작했습니다" in minji.last()["text"]
    listed = (await minji.say("/post"))[-1]
    assert buttons(listed) == ["청원 #1: 마을버스 증차 요청"]
    await minji.tap("청원 #1")
    card = minji.last(group)
    assert "서명 0명 / 목표 100명" in card["text"]

    # Someone who never registered is sent to the bot through the petition's link.
    stranger = Person(local, "낯선이")
    local.emulator.add_member(group, stranger.id)
    answer = await stranger.tap("서명하기", chat_id=group)
    assert answer["url"] == "https://t.me/moim_bot?start=pet_1"

    seojun = Person(local, "서준")
    await register(seojun)
    local.emulator.add_member(group, seojun.id)
    # A tampered or stale button: unknown petition, malformed data.
    answer = await seojun.press(card, "v1:pet:sign:999", forge=True)
    assert "999번 청원을 찾을 수 없습니다" in answer["text"]
    answer = await seojun.press(card, "v1:pet:sign:x1", forge=True)
    assert "이 버튼은 더 이상 쓸 수 없습니다" in answer["text"]

    # A flood of taps: the first signs, then "already signed", then a clear slow-down.
    answers = [await seojun.tap("서명하기", chat_id=group) for _ in range(10)]
    assert "서명했습니다!" in answers[0]["text"]
    assert all("이미 서명하셨습니다" in a["text"] for a in answers[1:8])
    assert all("너무 많이 누르셨습니다" in a["text"] for a in answers[8:])
    async with transaction(local.runtime.sessions) as session:
        assert (await session.get(Petition, 1)).signature_count == 1

    # Organiser actions by someone else: refused, nothing changes.
    for command in (
        "/signatures 1",
        "/close_petition 1",
        "/new_petition 가짜 | 누군가 | 5\n본문",
        "/new_petition 가짜 | 누군가 | 5 | saesol",
        "/new_petition",
    ):
        reply = (await seojun.say(command))[-1]
        assert "운영진만" in reply["text"], command
    mine = seojun.last()
    for data in ("v1:pet:exp:1:csv", "v1:pet:closeyes:1", "v1:pet:notify:1:1"):
        answer = await seojun.press(mine, data, forge=True)
        assert "운영진만" in answer["text"], data
    assert not [m for m in seojun.inbox() if m.get("document")]
    async with transaction(local.runtime.sessions) as session:
        petition = await session.get(Petition, 1)
        count = (await session.exec(sa.select(sa.func.count()).select_from(Petition))).one()
    assert (petition.status, petition.notify_signers, count) == ("open", False, (1,))

    # The organiser switches milestone news to signers on, from the summary.
    await minji.say("/signatures 1")
    await minji.tap("서명자에게도 목표 달성 알리기")
    assert "🔕 목표 달성 알림은 운영진에게만" in buttons(minji.last())
    async with transaction(local.runtime.sessions) as session:
        assert (await session.get(Petition, 1)).notify_signers

    # Closing by hand: confirmation first; then signing is refused.
    await minji.say("/close_petition 1")
    await minji.tap("지금 마감하기")
    assert "청원을 마감했습니다" in minji.last()["text"]
    assert count_of_closed(seojun) == 1
    haeun = Person(local, "하은")
    await register(haeun)
    local.emulator.add_member(group, haeun.id)
    answer = await haeun.press(
        card, card["reply_markup"]["inline_keyboard"][0][1]["callback_data"], forge=True
    )
    assert "마감되어" in answer["text"]


def count_of_closed(person: Person) -> int:
    return count(person, "청원이 마감되었습니다")


async def test_bad_one_line_input_explains_the_grammar(local):
    minji, _ = await organiser_with_group(local)
    reply = (await minji.say("/new_petition 제목만"))[-1]["text"]
    assert "/new_petition 제목 | 청원 대상 | 목표" in reply
    reply = (await minji.say("/new_petition 제목 | 구청장 | 많이"))[-1]["text"]
    assert "숫자로 적어 주세요" in reply
    reply = (await minji.say("/new_petition 제목 | 구청장 | 10 | 어제쯤"))[-1]["text"]
    assert "‘어제쯤’을(를) 날짜와 시각으로 읽지 못했습니다" in reply
    async with transaction(local.runtime.sessions) as session:
        assert (await session.exec(sa.select(sa.func.count()).select_from(Petition))).one() == (0,)


async def test_network_petition_card_goes_to_member_groups_chats_and_counts_there(local):
    """A network co-sponsors its petition with its member groups: the card can be posted in a
    member group's chat, and signatures tapped there count for that group."""
    minji, saesol_chat = await organiser_with_group(local)
    await minji.say("/new_org 서울 기후 연대 | seoul-net | network")
    await minji.say("/network_add seoul-net saesol")
    await minji.say("/new_org 하늘 협동조합 | haneul")
    haneul_chat = local.emulator.create_group("하늘 조합원방")["id"]
    local.emulator.add_member(haneul_chat, minji.id)
    local.emulator.add_bot_to_group(local.token, haneul_chat, by_user_id=minji.id)
    await local.settle()
    await minji.say("/link_group haneul", chat_id=haneul_chat)
    created = await minji.say(
        "/new_petition 기후 조례 제정 | 서울시의회 | 10 | seoul-net\n조례를 만들어 주세요."
    )
    assert "청원 #1" in created[-1]["text"]

    # The network has no chat of its own: its one member group's chat is where the card goes.
    await minji.say("/post petition 1")
    card = minji.last(saesol_chat)
    assert "기후 조례 제정" in card["text"] and "✍️ 서명하기" in buttons(card)
    assert "새솔" in minji.last()["text"]  # told where it went
    # A number that names nothing gets an answer about the command, not about a button.
    missing = (await minji.say("/post petition 99"))[-1]["text"]
    assert "‘/post petition 99’에 해당하는 항목이 없습니다" in missing
    # Inside the chat of a group outside the network it is refused, and nothing is posted.
    refused = (await minji.say("/post petition 1", chat_id=haneul_chat))[-1]
    assert "단체방이 아닙니다" in refused["text"]
    assert not any("기후 조례 제정" in text for text in texts(minji, haneul_chat))

    # 서준, not a member of any group, signs from the card in 새솔's chat: it counts for 새솔.
    seojun = Person(local, "서준")
    await register(seojun)
    local.emulator.add_member(saesol_chat, seojun.id)
    answer = await seojun.tap("서명하기", chat_id=saesol_chat)
    assert "서명했습니다" in answer["text"]
    summary = (await minji.say("/signatures 1"))[-1]["text"]
    assert "새솔마을 주민회 — 1" in summary and "서울 기후 연대 — 0" in summary

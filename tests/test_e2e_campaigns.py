"""Campaigns end to end: the real bot against the emulator, as organisers and residents use it."""

from __future__ import annotations

import asyncio
import csv
import datetime as dt
import io
import re

import sqlalchemy as sa
from openpyxl import load_workbook

from bot.db import transaction
from models import AuditLog, Campaign, Signup, SignupStatus
from tests.e2e import Person, buttons, register, url_buttons
from tests.test_e2e_organizations import admin


def texts(messages) -> str:
    return "\n".join(m["text"] or m.get("caption") or "" for m in messages)


async def organiser_with_org(local, language: str = "ko") -> Person:
    minji = admin(local, language)
    await register(minji)
    await minji.say("/new_org 새솔마을 주민회 | saesol")
    return minji


async def quick_campaign(minji: Person, options: str = "정원 2") -> None:
    await minji.say(f"/new_campaign 12월 정기 상영회 | 12월 19일 19:00 | 마을회관 | {options}")
    await minji.tap("지금 신청 받기")


async def signed_up(local) -> dict[str, str]:
    async with transaction(local.runtime.sessions) as session:
        rows = (await session.exec(sa.select(Signup.member_id, Signup.status))).all()
    return {member_id: status for member_id, status in rows}


async def test_done_when_story(local, clock):
    """Capacity 2 and a question; three sign up by link; the third waits, moves up when one
    cancels, is told; the deadline refuses late sign-ups; the export opens with Korean intact;
    the survey goes out after the event."""
    minji = await organiser_with_org(local)
    ask = (await minji.say("/new_campaign"))[-1]
    assert "제목을 보내 주세요" in ask["text"]
    await minji.say("12월 정기 상영회")
    await minji.tap("건너뛰기")  # no description
    assert "언제 시작하나요?" in minji.last()["text"]
    reply = (await minji.say("12월 32일 19:00"))[-1]  # a typo: explained, step kept
    assert "날짜와 시각으로 읽지 못했습니다" in reply["text"]
    await minji.say("12월 19일 19:00")
    await minji.say("마을회관 2층")
    reply = (await minji.say("두 명"))[-1]
    assert "1부터 100000 사이의 숫자" in reply["text"]
    await minji.say("2")
    await minji.tap("동반 없음")
    await minji.say("12월 18일 18:00")
    await minji.say("티셔츠 사이즈? S / M / L")
    assert "1. 티셔츠 사이즈? — 선택형: S / M / L" in minji.last()["text"]
    await minji.tap("다 했어요")
    await minji.tap("시작 2시간 뒤")
    preview = minji.last()["text"]
    for part in (
        "미리보기",
        "12월 19일 (토) 19:00",
        "마을회관 2층",
        "정원: 2명",
        "신청 마감: 12월 18일 (금) 18:00",
        "만족도 조사: 시작 2시간 뒤",
    ):
        assert part in preview
    await minji.tap("지금 신청 받기")
    created = minji.last()
    assert "https://t.me/moim_bot?start=camp_1" in created["text"]
    assert any("t.me/share/url" in url for url in url_buttons(created))

    residents = [Person(local, name) for name in ("서준", "하은", "지호")]
    for person in residents:
        await register(person, "camp_1")
        card = person.last()
        assert "12월 정기 상영회" in card["text"] and "참가 신청" in buttons(card)
        answer = await person.tap("참가 신청")
        if person is residents[2]:
            assert "대기 1번" in answer["text"]
            waiting = person.inbox()[-2]["text"]
            assert "대기 1번입니다" in waiting and "참가 확정 2명 / 정원 2명" in waiting
        else:
            assert "참가 신청이 완료되었습니다" in answer["text"]
        assert "질문 1/1" in person.last()["text"]  # waiting people answer too
        await person.tap("L" if person is residents[2] else "M")
        assert "마지막 질문이었습니다" in person.last()["text"]
    organiser_news = texts(minji.inbox())
    assert "정원의 50%에 이르렀습니다" in organiser_news and "정원이 찼습니다" in organiser_news

    listing = (await minji.say("/signups 1"))[-1]["text"]
    assert "1. ✅ 서준 · M" in listing and "3. ⏳1 지호" in listing

    confirm = (await residents[0].tap("신청 취소"))["messages"][-1]
    assert "참가 신청을 취소할까요?" in confirm["text"]
    await residents[0].tap("네, 취소합니다", message=confirm)
    told = residents[2].last()
    assert "자리가 나서 ‘12월 정기 상영회’ 참가가 확정되었습니다" in told["text"]
    assert "신청 취소" in buttons(told)
    assert "참가 확정" in (await residents[2].say("/me"))[-1]["text"]

    late = Person(local, "도윤")
    await register(late, "camp_1")
    card = late.last()  # opened before the deadline ...
    clock.set(dt.datetime(2026, 12, 18, 9, 1, tzinfo=dt.UTC))  # 18:01 in Seoul
    await local.run_due_jobs()
    assert "신청이 마감되었습니다" in minji.last()["text"]  # the organisers' summary
    answer = await late.tap("참가 신청", message=card)  # ... tapped after it
    assert "12월 18일 (금) 18:00에 마감되었습니다" in answer["text"]
    answer = await residents[1].tap("신청 취소")
    assert "취소할 수 없습니다" in answer["text"]
    assert len([s for s in (await signed_up(local)).values() if s == "confirmed"]) == 2

    manage = (await minji.say("/campaign 1"))[-1]
    await minji.tap("엑셀 파일", message=manage)
    document = minji.last()
    assert document["document"]["file_name"] == "campaign-1-signups-20261218.xlsx"
    sheet = load_workbook(io.BytesIO(document["document"]["data"])).active
    rows = [[cell.value for cell in row] for row in sheet.iter_rows()]
    assert rows[0][:3] == ["번호", "이름", "상태"] and rows[0][-1] == "티셔츠 사이즈?"
    assert [(r[1], r[2], r[-1]) for r in rows[1:]] == [
        ("하은", "참가 확정", "M"),
        ("지호", "참가 확정", "L"),
        ("서준", "취소", "M"),
    ]
    await minji.tap("CSV 파일", message=manage)
    data = minji.last()["document"]["data"]
    assert data.startswith("\ufeff".encode())
    assert list(csv.reader(io.StringIO(data.decode("utf-8-sig"))))[1][1] == "하은"

    clock.set(dt.datetime(2026, 12, 19, 12, 0, tzinfo=dt.UTC))  # 21:00, two hours after
    await local.run_due_jobs()
    survey = residents[1].last()
    assert "‘12월 정기 상영회’ 어떠셨나요?" in survey["text"]
    assert buttons(survey) == ["1 ★", "2 ★", "3 ★", "4 ★", "5 ★"]
    assert "어떠셨나요" in residents[2].last()["text"]
    assert "어떠셨나요" not in residents[0].last()["text"]  # cancelled: no survey
    await residents[1].tap("5 ★")
    assert "5점을 주셨습니다" in residents[1].last()["text"]
    reply = (await residents[1].say("자막이 잘 보였어요"))[-1]
    assert "의견을 운영진에게 전달했습니다" in reply["text"]
    await residents[2].tap("3 ★")
    await residents[2].tap("의견 없음")
    await minji.say("/campaign 1")
    await minji.tap("만족도 조사 결과")
    results = minji.last()
    assert "응답 2건, 평균 4점" in results["text"] and "“자막이 잘 보였어요”" in results["text"]
    await minji.tap("CSV 파일", message=results)
    survey_file = minji.last()["document"]
    assert survey_file["file_name"] == "campaign-1-survey-20261219.csv"
    lines = survey_file["data"].decode("utf-8-sig").splitlines()
    assert lines[0] == "점수 (1~5),의견,응답 시각" and lines[1].startswith("5,자막이 잘 보였어요,")


async def test_the_card_in_the_group_chat_takes_sign_ups_and_stays_live(local):
    minji = await organiser_with_org(local)
    group = local.emulator.create_group("새솔 단톡방")
    local.emulator.add_member(group["id"], minji.id)
    local.emulator.add_bot_to_group(local.token, group["id"], by_user_id=minji.id)
    await local.settle()
    await minji.say("/link_group", chat_id=group["id"])
    await quick_campaign(minji, "정원 10 | 동반 2")
    await minji.tap("단체방에 올리기")
    card = minji.last(group["id"])
    assert "12월 정기 상영회" in card["text"] and "참가 확정 0명 / 정원 10명" in card["text"]
    assert buttons(card) == [
        "참가 신청",
        "동반 1명과 함께 신청",
        "동반 2명과 함께 신청",
        "신청 취소",
    ]
    seojun = Person(local, "서준")
    await register(seojun)
    local.emulator.add_member(group["id"], seojun.id)
    answer = await seojun.tap("동반 2명과 함께 신청", chat_id=group["id"])
    assert answer["show_alert"] and "참가 신청이 완료되었습니다" in answer["text"]
    mine = seojun.last()
    assert "참가 신청이 완료되었습니다. (동반 2명)" in mine["text"]
    assert minji.last(group["id"])["text"].count("참가 확정 3명 / 정원 10명") == 1
    again = await seojun.tap("참가 신청", chat_id=group["id"])  # a double tap
    assert "이미 되어 있습니다" in again["text"]
    # Someone who never talked to the bot is sent to register, then straight to the campaign.
    haeun = Person(local, "하은")
    local.emulator.add_member(group["id"], haeun.id)
    answer = await haeun.tap("참가 신청", chat_id=group["id"])
    assert answer["url"] == "https://t.me/moim_bot?start=camp_1"
    # Cancelling from the group asks for confirmation in private.
    answer = await seojun.tap("신청 취소", chat_id=group["id"])
    assert "1:1 대화방에서 취소를 확인" in answer["text"]
    await seojun.tap("네, 취소합니다")
    assert "참가 확정 0명 / 정원 10명" in minji.last(group["id"])["text"]
    card = minji.last(group["id"])["text"]
    assert "서준" not in card  # the card never lists people


async def test_people_racing_for_the_last_places_through_the_bot(local):
    """Forty people tap at the same moment for ten places: ten confirmed, thirty waiting."""
    minji = await organiser_with_org(local)
    await quick_campaign(minji, "정원 10")
    crowd = [Person(local, f"주민{n}") for n in range(40)]
    local.emulator.send_many(
        local.token, [{"user_id": p.id, "text": "/start camp_1"} for p in crowd]
    )
    await local.settle()
    for person in crowd:  # consent and age check, then the card
        await person.tap("동의합니다")
        await person.tap("14세 이상")
    cards = [person.last() for person in crowd]
    local.emulator.press_many(
        local.token,
        [
            {
                "user_id": person.id,
                "chat_id": card["chat_id"],
                "message_id": card["message_id"],
                "callback_data": "v1:camp:join:1:0",
            }
            for person, card in zip(crowd, cards, strict=True)
        ],
    )
    await local.settle()
    statuses = list((await signed_up(local)).values())
    assert statuses.count("confirmed") == 10 and statuses.count("waitlisted") == 30
    shown = [person.last()["text"] for person in crowd]
    assert sum("참가 신청이 완료되었습니다" in text for text in shown) == 10
    ranks = sorted(int(m) for text in shown for m in re.findall(r"대기 (\d+)번입니다", text))
    assert ranks == list(range(1, 31))


async def test_refusals_change_nothing(local):
    minji = await organiser_with_org(local)
    await quick_campaign(minji, "정원 5 | 질문 하고 싶은 말?")
    seojun = Person(local, "서준")
    await register(seojun, "camp_1")
    card = seojun.last()
    before = await signed_up(local)
    for command in ("/signups 1", "/campaigns saesol"):
        assert "운영진만" in (await seojun.say(command))[-1]["text"]
    shown = (await seojun.say("/campaign 1"))[-1]  # not an organiser: the card
    assert "참가 신청" in buttons(shown)
    for forged in ("v1:camp:close:1", "v1:camp:closeok:1", "v1:camp:export:1:csv"):
        answer = await seojun.press(card, forged, forge=True)
        assert "운영진만" in answer["text"]
    answer = await seojun.press(card, "v1:camp:join:1:3", forge=True)  # guests not allowed
    assert "본인만 신청할 수 있습니다" in answer["text"]
    answer = await seojun.press(card, "v1:camp:join:x", forge=True)
    assert "이 버튼은 더 이상 쓸 수 없습니다" in answer["text"]
    answer = await seojun.press(card, "v1:camp:cancelok:1", forge=True)
    assert "참가 신청 내역이 없습니다" in answer["text"]
    assert await signed_up(local) == before
    assert "찾을 수 없습니다" in (await seojun.say("/start camp_999"))[-1]["text"]
    assert "번호를 붙여 주세요" in (await minji.say("/signups"))[-1]["text"]

    await seojun.tap("참가 신청", message=card)
    reply = (await seojun.say("가" * 201))[-1]
    assert "201자입니다. 200자 이내로" in reply["text"]
    async with transaction(local.runtime.sessions) as session:
        signup = (await session.exec(sa.select(Signup))).scalars().one()
        refused = (
            (await session.exec(sa.select(AuditLog).where(AuditLog.outcome == "refused")))
            .scalars()
            .all()
        )
        campaign = await session.get(Campaign, 1)
    assert signup.answers == {} and campaign.status == "open"
    assert len(refused) >= 4
    reply = (await seojun.say("반가워요"))[-1]
    assert "답변을 저장했습니다" in reply["text"]


async def test_organisers_message_everyone_signed_up(local):
    minji = await organiser_with_org(local)
    await quick_campaign(minji, "정원 2")
    crowd = [Person(local, name) for name in ("서준", "하은", "지호")]
    for person in crowd:
        await register(person, "camp_1")
        await person.tap("참가 신청")
    await crowd[1].say("/mute")
    await minji.say("/campaign 1")
    await minji.tap("신청자 전체에게 메시지")
    preview = (await minji.say("내일은 우산을 꼭 챙겨 오세요 ☔"))[-1]
    assert "미리보기" in preview["text"] and "우산" in preview["text"]
    assert buttons(preview) == ["참가 확정자 2명", "확정자와 대기자 3명", "취소"]
    await minji.tap("확정자와 대기자 3명")
    assert "2명에게 메시지를 보내고 있습니다" in minji.last()["text"]
    assert "1명은 빠졌습니다" in minji.last()["text"]
    assert "우산" in crowd[0].last()["text"] and "우산" in crowd[2].last()["text"]
    assert "우산" not in crowd[1].last()["text"]  # muted


async def test_one_line_in_english_and_a_draft_opened_later(local):
    minji = await organiser_with_org(local, "en")
    preview = (
        await minji.say(
            "/new_campaign Climate march | Dec 20 14:00 | City Hall | capacity 100 | guests 1"
        )
    )[-1]
    assert "Places: 100" in preview["text"] and "Guests: up to 1 per person" in preview["text"]
    await minji.tap("Save as draft")
    assert "saved as a draft" in minji.last()["text"]
    alex = Person(local, "Alex", language="en")
    await register(alex, "camp_1")
    assert "are not open yet" in alex.last()["text"]
    await minji.tap("Open sign-ups")
    assert "Status: open" in minji.last()["text"]
    await alex.say("/start camp_1")
    await alex.tap("With 1 guest")
    assert "You are signed up. (with 1 guest)" in alex.last()["text"]
    listing = (await minji.say("/campaigns"))[-1]["text"]
    assert "#1 Climate march — open · 2/100" in listing
    me = (await alex.say("/me"))[-1]["text"]
    assert "My sign-ups" in me and "Climate march" in me and "confirmed +1" in me


async def test_a_whole_concurrent_crowd_keeps_each_chat_consistent(local):
    """Sign-ups and cancellations from many chats at once leave the counts right."""
    minji = await organiser_with_org(local)
    await quick_campaign(minji, "정원 5")
    crowd = [Person(local, f"사람{n}") for n in range(12)]
    for person in crowd:
        await register(person, "camp_1")
    await asyncio.gather(*(person.tap("참가 신청") for person in crowd[:8]))
    async with transaction(local.runtime.sessions) as session:
        campaign = await session.get(Campaign, 1)
        statuses = (await session.exec(sa.select(Signup.status))).scalars().all()
    assert (campaign.confirmed_seats, campaign.waitlisted_people) == (5, 3)
    assert sorted(statuses) == sorted([SignupStatus.CONFIRMED] * 5 + [SignupStatus.WAITLISTED] * 3)


async def test_organisers_change_a_campaign_and_more_places_go_to_the_waitlist(local):
    minji = await organiser_with_org(local)
    await quick_campaign(minji, "정원 1")
    crowd = [Person(local, name) for name in ("서준", "하은", "지호")]
    for person in crowd:
        await register(person, "camp_1")
        await person.tap("참가 신청")
    reply = (await minji.say("/edit_campaign 1 | 정원 2 | 장소 마을회관 2층"))[-1]["text"]
    assert "바꿨습니다: 정원, 장소." in reply
    assert "대기자 1명의 참가가 확정되었고" in reply and "📍 마을회관 2층" in reply
    assert "참가가 확정되었습니다" in crowd[1].last()["text"]
    assert "대기 1번" in (await crowd[2].say("/start camp_1"))[-1]["text"]
    refused = (await minji.say("/edit_campaign 1 | 정원 1"))[-1]["text"]
    assert "이미 2자리가 확정되어 있어서" in refused
    assert "번호 뒤에 바꿀 내용을" in (await minji.say("/edit_campaign 1"))[-1]["text"]
    assert (
        "이렇게 바꿀 수 없습니다"
        in (await minji.say("/edit_campaign 1 | 질문 사이즈?"))[-1]["text"]
    )
    assert "운영진만" in (await crowd[0].say("/edit_campaign 1 | 정원 99"))[-1]["text"]
    async with transaction(local.runtime.sessions) as session:
        campaign = await session.get(Campaign, 1)
    assert (campaign.capacity, campaign.place) == (2, "마을회관 2층")

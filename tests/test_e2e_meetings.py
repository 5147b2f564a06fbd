"""Meetings end to end: the real bot against the emulator, people tapping, the clock moved."""

from __future__ import annotations

import asyncio
import datetime as dt
import io
import re

import icalendar
import png
import qrcode
import sqlalchemy as sa
from openpyxl import load_workbook

from bot.app import build_runtime
from bot.db import transaction
from bot.delivery import OutboxSender
from bot.scheduler import JobRunner
from models import AuditLog, MeetingRsvp
from tests.e2e import Person, buttons, document_json, register
from tests.test_e2e_organizations import admin

SERIES = (
    "/new_meeting 운영위원회 | 다음주 월요일 19:30 | 2시간 | 마을회관 2층 | 격주 | 2027년 6월까지"
)
FIRST = dt.datetime(2026, 12, 7, 10, 30, tzinfo=dt.UTC)  # Monday 7 December, 19:30 in Seoul


async def organisation(local, *, with_group: bool = False):
    """민지, bot admin, with 새솔마을 주민회 (and its linked group chat)."""
    minji = admin(local)
    await register(minji)
    await minji.say("/new_org 새솔마을 주민회 | saesol")
    group = None
    if with_group:
        group = local.emulator.create_group("새솔 단톡방")
        local.emulator.add_member(group["id"], minji.id)
        local.emulator.add_bot_to_group(local.token, group["id"], by_user_id=minji.id)
        await local.settle()
        await minji.say("/link_group", chat_id=group["id"])
    return minji, group


async def member(local, name: str, *, group=None, language: str = "ko") -> Person:
    """Someone who registers through the invitation link and joins."""
    person = Person(local, name, language=language)
    await register(person, "org_saesol")
    await person.tap("가입하기" if language == "ko" else "Join")
    if group is not None:
        local.emulator.add_member(group["id"], person.id)
    return person


async def answer_all(people: dict[str, Person], answers: dict[str, str]) -> None:
    """Each named person opens meeting 1 by its link and taps their answer."""
    for name, label in answers.items():
        await people[name].say("/start meet_1")
        await people[name].tap(label)


def texts(person: Person, chat_id=None) -> list[str]:
    return [m["text"] or "" for m in person.inbox(chat_id)]


def reminders(person: Person) -> list[str]:
    return [t for t in texts(person) if t.startswith("⏰ 모임 알림")]


async def test_guided_creation_then_answers_in_the_group_card_per_date(local):
    minji, group = await organisation(local, with_group=True)
    seojun = await member(local, "서준", group=group)
    haeun = await member(local, "하은", group=group)

    await minji.say("/new_meeting")
    assert "모임 이름을 보내 주세요" in minji.last()["text"]
    await minji.say("운영위원회")
    assert "(2/7)" in minji.last()["text"]
    past = (await minji.say("오늘 08:00"))[-1]["text"]
    assert "이미 지났습니다" in past and "예:" in past
    unreadable = (await minji.say("언젠가 저녁"))[-1]["text"]
    assert "읽지 못했습니다" in unreadable and "12월 19일 18:00" in unreadable
    await minji.say("다음주 월요일 19:30")
    assert buttons(minji.last())[:4] == ["1시간", "1시간 30분", "2시간", "3시간"]
    await minji.tap("2시간")
    await minji.say("마을회관 2층")
    assert buttons(minji.last())[:4] == [
        "한 번만",
        "매주 월요일",
        "격주 월요일",
        "매월 첫째 주 월요일",
    ]
    await minji.tap("격주 월요일")
    await minji.say("2027년 6월까지")
    await minji.tap("건너뛰기")
    preview = minji.last()["text"]
    assert "🕒 2026년 12월 7일 (월) 19:30 (2시간)" in preview
    assert "🔁 격주 월요일 · 2027년 6월 30일 (수)까지" in preview
    assert "알림: 1일, 1시간 전" in preview
    await minji.tap("만들기")
    assert "‘운영위원회’ 모임을 만들었습니다" in minji.inbox()[-2]["text"]

    await minji.say("/post")
    await minji.tap("📅 운영위원회")
    card = minji.last(group["id"])
    assert "참석 0 · 미정 0 · 불참 0" in card["text"]
    assert buttons(card) == ["참석", "불참", "미정", "📅 캘린더에 추가"]
    answer = await seojun.tap("참석", chat_id=group["id"])
    assert answer["text"] == "‘운영위원회’ 12월 7일 (월) 19:30: 참석"
    await haeun.tap("미정", chat_id=group["id"])
    assert "참석 1 · 미정 1 · 불참 0" in minji.last(group["id"])["text"]

    # Someone in the group who never registered is sent to the bot, back to this meeting.
    stranger = Person(local, "낯선이")
    local.emulator.add_member(group["id"], stranger.id)
    answer = await stranger.tap("참석", chat_id=group["id"])
    assert answer["url"] == "https://t.me/moim_bot?start=meet_1"

    listed = (await seojun.say("/meetings"))[-1]["text"]
    assert "1. 12월 7일 (월) 19:30 운영위원회 — 참석" in listed
    assert "2. 12월 21일 (월) 19:30 운영위원회 — 아직 응답 안 함" in listed
    await seojun.tap("2")
    assert "🕒 12월 21일 (월) 19:30–21:30" in seojun.last()["text"]
    await seojun.tap("불참")
    assert "내 응답: 불참" in seojun.last()["text"]
    assert "참석 0 · 미정 0 · 불참 1" in seojun.last()["text"]
    assert "참석 1 · 미정 1 · 불참 0" in minji.last(group["id"])["text"]  # still the 7th


async def test_reminders_go_out_at_their_offsets_once_across_a_restart_and_two_senders(
    local, clock, config
):
    minji, _ = await organisation(local)
    await minji.say(SERIES)
    people = {name: await member(local, name) for name in ("서준", "하은", "지호", "도윤")}
    await answer_all(people, {"서준": "참석", "하은": "미정", "지호": "불참"})
    await people["서준"].say("/mute")  # muted, but said yes: still reminded

    clock.set(FIRST - dt.timedelta(days=1))
    await local.run_due_jobs()
    assert [len(reminders(people[n])) for n in ("서준", "하은", "지호", "도윤")] == [1, 1, 0, 0]
    day_before = reminders(people["서준"])[0]
    assert "1일 뒤에 시작합니다" in day_before and "📍 마을회관 2층" in day_before
    assert "내 응답: 참석" in day_before

    # A restarted instance (a new runner and sender over the same database) sends nothing twice,
    # and neither do two senders draining the hour-before reminders at the same time.
    other = build_runtime(config, clock)
    try:
        other.features = local.runtime.features
        assert await JobRunner(other).run_due() == 0
        clock.set(FIRST - dt.timedelta(minutes=60))
        assert await JobRunner(other).run_due() == 1
        second_sender = OutboxSender(other, local.application.bot)
        await asyncio.gather(second_sender.drain(), local.runtime.sender.drain())
        await local.settle()
    finally:
        await other.engine.dispose()
    counts = [len(reminders(people[n])) for n in ("서준", "하은", "지호", "도윤")]
    assert counts == [2, 2, 0, 0]
    assert "1시간 뒤에 시작합니다" in reminders(people["하은"])[-1]

    # The reminder's own buttons change the answer, and the reminder shows it.
    await people["하은"].tap("불참")
    assert "내 응답: 불참" in people["하은"].last()["text"]
    clock.set(FIRST + dt.timedelta(minutes=5))
    await local.run_due_jobs()
    answer = await people["서준"].tap("불참")  # the meeting has begun
    assert "이미 시작되어" in answer["text"]


async def test_cancelling_a_date_tells_yes_and_maybe_and_others_cannot(local):
    minji, _ = await organisation(local)
    await minji.say(SERIES)
    people = {name: await member(local, name) for name in ("서준", "하은", "지호", "도윤")}
    await answer_all(people, {"서준": "참석", "하은": "미정", "지호": "불참"})
    stale_card = people["서준"].last()

    # A member forging an organiser's button is refused, and it is written down.
    forged = await people["도윤"].press(people["도윤"].last(), "v1:mtg:cancel:s:1:ok", forge=True)
    assert "운영진만" in forged["text"]
    async with transaction(local.runtime.sessions) as session:
        refused = (
            await session.exec(sa.select(AuditLog.action).where(AuditLog.outcome == "refused"))
        ).all()
    assert refused

    await minji.say("/meetings")
    await minji.tap("1")
    await minji.tap("⚙ 관리")
    await minji.tap("✖ 이 회차 취소")
    assert "모임을 취소할까요?" in minji.last()["text"]
    await minji.tap("네, 취소합니다")
    done = minji.last()["text"]
    assert "그다음 모임은 예정대로" in done and "2명에게 알리는 중" in done
    for name, told in (("서준", True), ("하은", True), ("지호", False), ("도윤", False)):
        notices = [t for t in texts(people[name]) if t.startswith("❌ 모임 취소: 운영위원회")]
        assert len(notices) == (1 if told else 0), name
    assert "12월 7일 (월) 19:30 모임은 열리지 않습니다" in people["서준"].last()["text"]

    answer = await people["서준"].tap("불참", message=stale_card)
    assert "취소되어" in answer["text"]
    answer = await people["서준"].press(stale_card, "v1:mtg:rsvp:999:y:c", forge=True)
    assert "더 이상 쓸 수 없습니다" in answer["text"]
    async with transaction(local.runtime.sessions) as session:
        answers = (await session.exec(sa.select(MeetingRsvp.answer))).scalars().all()
    assert sorted(answers) == ["maybe", "no", "yes"]  # nothing changed by the refused taps
    # The card now shows the next date.
    card = (await people["서준"].say("/start meet_1"))[-1]["text"]
    assert "🕒 12월 21일 (월) 19:30–21:30" in card


async def test_moving_a_date_with_a_typo_first(local):
    minji, _ = await organisation(local)
    await minji.say(SERIES)
    seojun = await member(local, "서준")
    await seojun.say("/start meet_1")
    await seojun.tap("참석")
    await minji.say("/start meet_1")
    await minji.tap("⚙ 관리")
    await minji.tap("🕒 이 회차 일정 변경")
    assert "새 날짜와 시간을 보내 주세요" in minji.last()["text"]
    assert "읽지 못했습니다" in (await minji.say("화요일 저녁쯤"))[-1]["text"]
    done = (await minji.say("12월 8일 20:00"))[-1]["text"]
    assert "12월 7일 (월) 19:30에서 12월 8일 (화) 20:00(으)로 옮겼습니다" in done
    notice = seojun.last()["text"]
    assert notice.startswith("🕒 일정 변경: 운영위원회")
    assert "12월 8일 (화) 20:00–22:00" in notice
    card = (await seojun.say("/start meet_1"))[-1]["text"]
    assert "(일정 변경: 원래 12월 7일 (월) 19:30)" in card and "내 응답: 참석" in card


def qr_holds(image: bytes, link: str) -> bool:
    """True if the PNG is the QR code of ``link`` (module by module, as a scanner reads it)."""
    width, _, rows, _ = png.Reader(bytes=image).read()
    pixels = [list(row) for row in rows]
    code = qrcode.QRCode(error_correction=qrcode.constants.ERROR_CORRECT_M, border=4)
    code.add_data(link)
    code.make(fit=True)
    matrix = code.get_matrix()
    box = width // len(matrix)
    return all(
        (pixels[y * box + box // 2][x * box + box // 2] == 0) == dark
        for y, line in enumerate(matrix)
        for x, dark in enumerate(line)
    )


async def test_check_in_by_code_qr_and_button_then_minutes_and_attendance(local, clock):
    minji, _ = await organisation(local)
    await minji.say("/new_meeting 정기총회 | 오늘 19:30 | 2시간 | 구민회관")
    people = {name: await member(local, name) for name in ("서준", "하은", "지호", "도윤")}
    await answer_all(people, {"서준": "참석", "하은": "미정", "도윤": "불참"})

    await minji.say("/start meet_1")
    await minji.tap("⚙ 관리")
    assert "✅ 출석 체크 시작" not in buttons(minji.last())  # too early in the morning
    clock.set(dt.datetime(2026, 12, 1, 10, 25, tzinfo=dt.UTC))  # 19:25 in Seoul
    await minji.say("/start meet_1")
    await minji.tap("⚙ 관리")
    await minji.tap("✅ 출석 체크 시작")
    opened = minji.last()
    code = re.search(r"현장에서 불러 줄 번호: (\d{3}) (\d{3})", opened["text"])
    code = code.group(1) + code.group(2)
    link = f"https://t.me/moim_bot?start=checkin_{code}"
    assert link in opened["text"]
    assert qr_holds(opened["photo"], link)
    assert "출석 체크가 시작되었습니다" in people["서준"].last()["text"]
    assert "출석 체크가 시작되었습니다" not in people["도윤"].last()["text"]

    typed = (await people["서준"].say(f"{code[:3]} {code[3:]}"))[-1]["text"]
    assert "출석이 확인되었습니다" in typed
    scanned = (await people["하은"].say(f"/start checkin_{code}"))[-1]["text"]
    assert "출석이 확인되었습니다" in scanned
    await people["지호"].say("/start meet_1")
    await people["지호"].tap("✅ 출석했어요")
    assert "출석이 확인되었습니다" in people["지호"].last()["text"]
    wrong = (await people["도윤"].say("/checkin 000 000"))[-1]["text"]
    assert "번호와 맞지 않습니다" in wrong

    clock.set(dt.datetime(2026, 12, 1, 10, 56, tzinfo=dt.UTC))  # 30 minutes after opening
    await local.run_due_jobs()
    assert "출석 체크를 마감했습니다. 출석: 3명" in minji.last()["text"]
    late = (await people["도윤"].say(f"/checkin {code}"))[-1]["text"]
    assert "번호와 맞지 않습니다" in late
    assert "출석 1회" in (await people["서준"].say("/me"))[-1]["text"]

    await minji.say("/start meet_1")
    await minji.tap("⚙ 관리")
    await minji.tap("📝 12월 1일 (화) 회의록 보내기")
    await minji.say("1. 예산안 승인\n2. 다음 총회는 3월")
    assert "회의록 미리 보기" in minji.last()["text"]
    await minji.tap("보내기")
    assert "3명에게 보내는 중" in minji.last()["text"]
    for name, gets in (("서준", True), ("하은", True), ("지호", True), ("도윤", False)):
        minutes = [t for t in texts(people[name]) if t.startswith("📝 회의록: 정기총회")]
        assert len(minutes) == (1 if gets else 0), name
    assert "2. 다음 총회는 3월" in people["서준"].last()["text"]

    # Minutes as a document: the file goes on by its Telegram file id.
    await minji.tap("⚙ 관리", message=[m for m in minji.inbox() if "⚙ 관리" in buttons(m)][-1])
    await minji.tap("📝 12월 1일 (화) 회의록 보내기")
    local.emulator.send_document(local.token, minji.id, "회의록.hwp", b"HWP minutes")
    await local.settle()
    assert "📎 회의록.hwp" in minji.last()["text"]
    await minji.tap("보내기")
    document = people["하은"].last()["document"]
    assert document["file_name"] == "회의록.hwp" and document["data"] == b"HWP minutes"

    await minji.tap("⚙ 관리", message=[m for m in minji.inbox() if "⚙ 관리" in buttons(m)][-1])
    await minji.tap("📊 출석부 (엑셀)")
    sheet = load_workbook(io.BytesIO(minji.last()["document"]["data"])).active
    rows = [[cell.value for cell in row] for row in sheet.iter_rows()]
    assert rows[0] == ["일시", "상태", "이름", "응답", "출석", "출석 시각", "출석 방법"]
    assert sorted((r[2], r[3], r[4], r[6]) for r in rows[1:]) == [
        ("도윤", "불참", "N", None),
        ("서준", "참석", "Y", "번호 입력"),
        ("지호", "아직 응답 안 함", "Y", "버튼"),
        ("하은", "미정", "Y", "QR 코드"),
    ]


async def test_calendar_files_parse_and_cards_offer_their_own(local):
    minji, group = await organisation(local, with_group=True)
    await minji.say(SERIES)
    await minji.say("/new_meeting 워크숍 | 12월 19일 14:00 | 90분 | https://meet.example.org/ws")
    seojun = await member(local, "서준", group=group)
    await seojun.say("/calendar")
    document = seojun.last()["document"]
    assert document["file_name"] == "moim-meetings.ics"
    calendar = icalendar.Calendar.from_ical(document["data"])
    events = {str(e["summary"]): e for e in calendar.walk("VEVENT")}
    assert set(events) == {"운영위원회", "워크숍"}
    assert events["운영위원회"]["rrule"]["INTERVAL"] == [2]
    assert str(events["워크숍"]["location"]) == "https://meet.example.org/ws"
    start = events["워크숍"].decoded("dtstart")
    assert (start.hour, start.minute, str(start.tzinfo)) == (14, 0, "Asia/Seoul")

    await minji.say("/post")
    await minji.tap("📅 운영위원회")
    answer = await seojun.tap("📅 캘린더에 추가", chat_id=group["id"])
    assert "개인 대화방으로" in answer["text"]
    own = seojun.last()["document"]
    assert own["file_name"] == "moim-meeting-1.ics"
    (event,) = icalendar.Calendar.from_ical(own["data"]).walk("VEVENT")
    assert str(event["uid"]) == "meeting-1@moim_bot.t.me"


async def test_reminder_settings_refuse_what_cannot_work(local):
    minji, _ = await organisation(local)
    await minji.say("/new_meeting 번개 모임 | 오늘 12:00 | 1시간 | 카페")  # three hours away
    await minji.say("/start meet_1")
    await minji.tap("⚙ 관리")
    await minji.tap("⏰ 알림 설정")
    settings = minji.last()
    assert "✓ 1시간 전" in buttons(settings) and "✓ 1일 전" in buttons(settings)
    answer = await minji.tap("3일 전")
    assert "3시간 뒤에 시작해서 3일 전 알림은 보낼 수 없습니다" in answer["text"]
    await minji.tap("✓ 1일 전")  # off
    await minji.tap("30분 전")  # on
    assert {"✓ 1시간 전", "✓ 30분 전"} <= set(buttons(minji.last()))
    await minji.tap("단체 전체")
    assert "받는 분: 단체 회원 전체" in minji.last()["text"]


async def test_the_one_line_form_in_english_and_muted_reminders(local, clock):
    minji, _ = await organisation(local)
    alex = await member(local, "Alex", language="en")
    created = await minji.say(
        "/new_meeting Climate circle | 12월 3일 18:00 | 1h | https://meet.example.org/c | weekly"
    )
    assert "‘Climate circle’ 모임을 만들었습니다" in created[0]["text"]
    card = (await alex.say("/start meet_1"))[-1]
    assert "every Thursday" in card["text"] and "💻 Join online" in buttons(card)
    await alex.tap("Maybe")
    await alex.say("/mute")  # maybe + muted: no reminders
    clock.set(dt.datetime(2026, 12, 3, 8, 0, tzinfo=dt.UTC))
    await local.run_due_jobs()
    assert not [t for t in texts(alex) if t.startswith("⏰")]
    await alex.say("/unmute")
    clock.set(dt.datetime(2026, 12, 10, 8, 0, tzinfo=dt.UTC))
    await alex.say("/start meet_1")
    await alex.tap("Attending")  # the next Thursday
    clock.set(dt.datetime(2026, 12, 10, 8, 1, tzinfo=dt.UTC))
    await local.run_due_jobs()
    (reminder,) = [t for t in texts(alex) if t.startswith("⏰")]
    assert (
        reminder.startswith("⏰ Reminder: Climate circle")
        and "It starts in 59 minutes" in reminder
    )
    help_text = (await minji.say("/help"))[-1]["text"]
    assert "/new_meeting" in help_text and "/calendar" in help_text


async def test_a_newcomer_opens_the_meeting_link_and_joins_with_the_same_tap(local):
    minji, _ = await organisation(local)
    await minji.say(SERIES)
    neighbour = Person(local, "순자")
    await register(neighbour, "meet_1")  # consent, age check, then the link's meeting
    card = neighbour.last()
    assert "가입과 응답이 한 번에 됩니다" in card["text"] and "내 응답" not in card["text"]
    assert buttons(card)[:2] == ["가입하고 참석", "가입하고 미정"]
    await neighbour.tap("가입하고 참석")
    after = neighbour.last()["text"]
    assert "내 응답: 참석" in after and "참석 1 · 미정 0 · 불참 0" in after
    assert "새솔마을 주민회 — 후원회원" in (await neighbour.say("/me"))[-1]["text"]
    mine = document_json((await neighbour.say("/mydata"))[-1])["meetings"]
    assert [(a["meeting"], a["answer"]) for a in mine["answers"]] == [("운영위원회", "yes")]
    # A sensitive organisation (a union) still asks its separate consent: nothing is stored.
    await minji.say("/new_org 공공운수노조 지부 | union | 민감")
    await minji.say("/new_meeting 조합원 총회 | 12월 19일 14:00")
    await minji.tap("공공운수노조 지부")  # minji organises two organisations now
    assert "‘조합원 총회’ 모임을 만들었습니다" in minji.inbox()[-2]["text"]
    worker = Person(local, "도윤")
    await register(worker, "meet_2")
    answer = await worker.tap("가입하고 참석")
    assert "별도 동의" in answer["text"]
    async with transaction(local.runtime.sessions) as session:
        answers = (await session.exec(sa.select(sa.func.count()).select_from(MeetingRsvp))).one()
    assert answers == (1,)  # only 순자's

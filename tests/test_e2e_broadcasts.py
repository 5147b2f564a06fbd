"""Announcements end to end: write, choose who, preview, send or schedule, report, refusals,
and delivery that survives restarts, a second instance, a killed sender and network faults."""

from __future__ import annotations

import asyncio
import datetime as dt
from dataclasses import dataclass

import sqlalchemy as sa
from sqlmodel import select

from bot.app import build_runtime
from bot.db import transaction
from bot.delivery import OutboxSender
from bot.emulator.limits import Faults
from bot.runtime import Audience
from bot.scheduler import JobRunner
from bot.services import organizations, outbox
from models import Broadcast, Delivery, Member, Tier
from tests.e2e import Person, buttons, register
from tests.factories import add_member, make_member
from tests.test_e2e_organizations import admin

KST = dt.timezone(dt.timedelta(hours=9))


def _utf16(text: str, part: str) -> int:
    """Where ``part`` starts in ``text``, counted as Telegram counts (UTF-16 code units)."""
    return len(text[: text.index(part)].encode("utf-16-le")) // 2


def _received(person: Person, text: str) -> list[dict]:
    """The announcements containing ``text`` that reached the person."""
    return [m for m in person.inbox() if (m["text"] or "").startswith("📢") and text in m["text"]]


async def _say_unsent(local, person: Person, text: str) -> list[dict]:
    """Say something and wait for the answer, without draining the outbox (quiet_local)."""
    since = local.emulator.seq
    local.emulator.send_text(local.token, person.id, text)
    await local._updates_handled()
    return person.since(since)


async def _organiser(local) -> Person:
    """민지, bot administrator, with 새솔마을 주민회 (saesol)."""
    minji = admin(local)
    await register(minji)
    await minji.say("/new_org 새솔마을 주민회 | saesol")
    return minji


async def _members(local, names: dict[str, Tier], *, slug: str = "saesol") -> dict[str, Person]:
    """People who registered earlier and joined the organisation (prepared directly)."""
    people = {name: Person(local, name) for name in names}
    local.emulator.open_chats(local.token, [p.id for p in people.values()])
    async with transaction(local.runtime.sessions) as session:
        org = await organizations.by_slug(session, slug)
        for name, person in people.items():
            member = await make_member(session, person.id, name, now=local.runtime.now())
            await add_member(session, org, member, tier=names[name], now=local.runtime.now())
    return people


async def _compose(person: Person, text: str = "{{ 이름 }}님, 토요일에 만나요") -> None:
    await person.say("/broadcast")
    await person.say(text)


async def _member_ids(local, people: list[Person]) -> list[int]:
    async with transaction(local.runtime.sessions) as session:
        result = await session.exec(
            select(Member.id).where(Member.telegram_user_id.in_([p.id for p in people]))
        )
        return list(result.all())


async def _deliveries(local) -> int:
    async with transaction(local.runtime.sessions) as session:
        result = await session.exec(
            select(sa.func.count()).select_from(Delivery).where(Delivery.batch.like("broadcast:%"))
        )
        return result.one()


@dataclass
class Item:
    """An item of the audience these tests register, as another feature would."""

    id: int
    title: str


def rsvp_audience(answers: dict[str, list[int]]) -> Audience:
    """A feature audience: who answered yes or no to one meeting."""

    async def items(session, org):
        return [Item(5, "12월 정기총회")]

    def member_ids(item_id, variant):
        return select(Member.id).where(Member.id.in_(answers[variant]))

    return Audience(
        key="meeting",
        variants=("yes", "no"),
        items=items,
        member_ids=member_ids,
        label_template="broadcasts/variant_label.html",
    )


# --- writing and sending ----------------------------------------------------------------------


async def test_announcement_to_everyone_keeps_formatting_skips_muted_and_blocked(local):
    minji = await _organiser(local)
    people = {}
    for name in ("서준", "하은", "지호", "도윤"):
        person = Person(local, name)
        await register(person, "org_saesol")
        await person.tap("가입하기")
        people[name] = person
    await people["지호"].say("/mute")
    local.emulator.block_bot(local.token, people["도윤"].id)
    await local.settle()

    asked = (await minji.say("/broadcast"))[-1]
    assert "새솔마을 주민회" in asked["text"] and "{{ name }}" in asked["text"]
    text = "안녕하세요 {{ 이름 }}님, 토요일 모임이 있어요"
    bold = {"type": "bold", "offset": text.index("토요일"), "length": 3}
    choose = (await minji.say(text, entities=[bold]))[-1]
    assert "누구에게 보낼까요?" in choose["text"]
    assert buttons(choose)[:4] == ["모두 · 5", "정회원 · 1", "후원회원 · 4", "운영진 · 1"]
    await minji.tap("모두 · 5")
    copy, preview = minji.inbox()[-2:]
    assert copy["text"] == "📢 새솔마을 주민회\n\n안녕하세요 민지님, 토요일 모임이 있어요"
    assert {**bold, "offset": _utf16(copy["text"], "토요일")} in copy["entities"]
    for line in ("받는 사람: 3명", "공지를 끈 사람(/mute): 1명", "받을 수 없는 사람: 1명"):
        assert line in preview["text"]
    await minji.tap("지금 보내기")
    assert [m["text"] for m in _received(people["서준"], "토요일 모임")] == [
        "📢 새솔마을 주민회\n\n안녕하세요 서준님, 토요일 모임이 있어요"
    ]
    assert len(_received(people["하은"], "토요일 모임")) == 1
    assert _received(people["지호"], "토요일 모임") == []
    report = minji.last()["text"]
    assert "공지 #1 발송을 마쳤습니다" in report and "받는 대상: 모두, 5명" in report
    for line in ("보냄: 3", "실패: 0", "받을 수 없음(봇 차단): 1", "건너뜀(공지 끔): 1"):
        assert line in report
    listed = (await minji.say("/broadcasts"))[-1]["text"]
    assert "#1 · 모두" in listed and "보냄 3 · 실패 0 · 받을 수 없음 1 · 건너뜀 1" in listed


async def test_tier_and_feature_audiences_reach_exactly_their_people(local):
    minji = await _organiser(local)
    tiers = {"서준": Tier.SUPPORTER, "하은": Tier.FULL, "지호": Tier.FULL, "도윤": Tier.SUPPORTER}
    people = await _members(local, tiers)
    yes = await _member_ids(local, [people["서준"], people["하은"]])
    local.runtime.features.audiences["meeting"] = rsvp_audience({"yes": yes, "no": []})
    await _compose(minji, "정회원 총회 안내")
    await minji.tap("정회원 · 3")
    await minji.tap("지금 보내기")
    assert [len(_received(people[n], "정회원 총회 안내")) for n in people] == [0, 1, 1, 0]

    await _compose(minji, "{{ 이름 }}님, 총회에서 뵙겠습니다")
    await minji.tap("회의 …")
    await minji.tap("12월 정기총회")
    variants = minji.last()
    assert buttons(variants) == ["참석 · 2", "불참 · 0", "◀ 뒤로"]
    answer = await minji.tap("불참 · 0")
    assert "받을 사람이 없습니다" in answer["text"]
    await minji.tap("참석 · 2", message=variants)
    assert "받는 대상: 회의: ‘12월 정기총회’ — 참석" in minji.last()["text"]
    await minji.tap("지금 보내기")
    assert [len(_received(people[n], "총회에서 뵙겠습니다")) for n in people] == [1, 1, 0, 0]
    assert _received(people["하은"], "총회에서")[0]["text"].endswith("하은님, 총회에서 뵙겠습니다")


async def test_a_photo_or_a_file_goes_out_with_its_caption(local):
    minji = await _organiser(local)
    people = await _members(local, {"서준": Tier.SUPPORTER})
    await minji.say("/broadcast")
    await minji.send_photo(b"\xff\xd8 poster", caption="{{ 이름 }}님, 포스터입니다")
    await minji.tap("모두 · 2")
    copy = minji.inbox()[-2]
    assert copy["photo"] and copy["caption"] == "📢 새솔마을 주민회\n\n민지님, 포스터입니다"
    await minji.tap("지금 보내기")
    photo = people["서준"].last()
    assert photo["photo"] and photo["caption"].endswith("서준님, 포스터입니다")

    await minji.say("/broadcast")
    await minji.send_file("회의록.pdf", b"%PDF minutes", caption="12월 회의록")
    await minji.tap("모두 · 2")
    await minji.tap("지금 보내기")
    document = people["서준"].last()
    assert document["document"]["file_name"] == "회의록.pdf"
    assert document["document"]["data"] == b"%PDF minutes"
    assert document["caption"].endswith("12월 회의록")


async def test_bad_input_gets_a_clear_answer_and_nothing_is_sent(local):
    minji = await _organiser(local)
    people = await _members(local, {"서준": Tier.SUPPORTER})
    seojun = people["서준"]
    refused = (await seojun.say("/broadcast"))[-1]["text"]
    assert "권한이 없습니다" in refused
    await minji.say("/broadcast")
    for text, expected in (
        ("안녕하세요 {{ nmae }}님", "모르는 변수입니다: {{ nmae }}"),
        ("{% for x in range(9) %}스팸{% endfor %}", "쓸 수 없는 템플릿 코드"),
        ("{{ name }", "중괄호를 읽을 수 없습니다"),
        ("가" * 4100, "공지는 최대 4,096자"),
    ):
        answer = (await minji.say(text))[-1]["text"]
        assert expected in answer, answer
    answer = (await minji.send_photo(b"img", caption="가" * 1020))[-1]["text"]
    assert "최대 1,024자" in answer
    # Still waiting for the message: a good one goes on.
    local.runtime.features.audiences["meeting"] = rsvp_audience({"yes": [], "no": []})
    await minji.say("괜찮은 공지")
    await minji.tap("회의 …")
    await minji.tap("12월 정기총회")
    answer = await minji.tap("참석 · 0")
    assert "받을 사람이 없습니다" in answer["text"]
    await minji.tap("◀ 뒤로")
    await minji.tap("모두 · 2")
    await minji.tap("시간 예약하기")
    past = (await minji.say("2026-11-30 10:00"))[-1]["text"]
    assert "그 시각은 이미 지났습니다" in past
    nonsense = (await minji.say("언젠가"))[-1]["text"]
    assert "‘언젠가’" in nonsense
    await minji.tap("◀ 미리보기로 돌아가기")
    await minji.tap("버리기")
    assert "아무것도 보내지 않았습니다" in minji.last()["text"]
    assert await _deliveries(local) == 0
    assert _received(seojun, "괜찮은 공지") == []
    # A stale or forged button does nothing either.
    answer = await minji.press(minji.last(), "v1:bc:do:send", forge=True)
    assert "이 버튼은 더 이상 쓸 수 없습니다" in answer["text"]
    assert await _deliveries(local) == 0


# --- scheduling, quiet hours, cancelling ------------------------------------------------------


async def test_scheduled_announcement_goes_out_once_across_a_restart_and_two_instances(
    local, clock, config
):
    minji = await _organiser(local)
    people = await _members(local, {"서준": Tier.SUPPORTER, "하은": Tier.FULL})
    await _compose(minji, "{{ 이름 }}님, 저녁 7시 모임입니다")
    await minji.tap("모두 · 3")
    await minji.tap("시간 예약하기")
    await minji.say("오늘 18:00")
    preview = minji.last()
    assert "12월 1일 (화) 18:00에 보내기 시작합니다" in preview["text"]
    await minji.tap("12월 1일 (화) 18:00에 보내기")
    assert "18:00에 보냅니다" in minji.last()["text"]
    assert "예약" in (await minji.say("/broadcasts"))[-1]["text"]
    assert await local.run_due_jobs() == 0
    assert await _deliveries(local) == 0

    # Restart: a new process over the same database, and a second instance beside it.
    clock.set(dt.datetime(2026, 12, 1, 18, 0, tzinfo=KST))
    second = build_runtime(local.runtime.config, clock)
    second.features = local.runtime.features
    try:
        ran = await asyncio.gather(JobRunner(second).run_due(), local.runtime.scheduler.run_due())
        assert sorted(ran) == [0, 1]
        other_sender = OutboxSender(second, local.application.bot)
        await asyncio.gather(other_sender.drain(), local.runtime.sender.drain())
        await local.settle()
    finally:
        await second.engine.dispose()
    for name in ("서준", "하은"):
        assert len(_received(people[name], "저녁 7시 모임입니다")) == 1
    assert len(_received(minji, "저녁 7시 모임입니다")) == 2  # the preview and the real one
    assert len([m for m in minji.inbox() if "발송을 마쳤습니다" in (m["text"] or "")]) == 1
    clock.advance(hours=1)
    assert await local.run_due_jobs() == 0


async def test_quiet_hours_wait_for_the_morning_unless_urgent(local, clock):
    clock.set(dt.datetime(2026, 12, 1, 23, 0, tzinfo=KST))
    minji = await _organiser(local)
    people = await _members(local, {"서준": Tier.SUPPORTER})
    await _compose(minji, "내일 일정 안내")
    await minji.tap("모두 · 2")
    preview = minji.last()["text"]
    assert "방해 금지 시간(22:00–08:00)에 걸리므로" in preview and "12월 2일 (수) 08:00" in preview
    await minji.tap("12월 2일 (수) 08:00에 보내기")
    assert await _deliveries(local) == 0
    await _compose(minji, "단수 긴급 안내")
    await minji.tap("모두 · 2")
    await minji.tap("긴급: 방해 금지 시간에도 보내기")
    assert "긴급 공지" in minji.last()["text"]
    await minji.tap("지금 보내기")
    assert len(_received(people["서준"], "단수 긴급 안내")) == 1
    assert _received(people["서준"], "내일 일정 안내") == []
    clock.set(dt.datetime(2026, 12, 2, 8, 0, tzinfo=KST))
    await local.run_due_jobs()
    assert len(_received(people["서준"], "내일 일정 안내")) == 1


async def test_cancel_until_it_goes_out_and_refusals_after(local, clock):
    minji = await _organiser(local)
    people = await _members(local, {"서준": Tier.SUPPORTER})
    await _compose(minji, "취소될 공지")
    await minji.tap("모두 · 2")
    await minji.tap("시간 예약하기")
    await minji.say("내일 10:00")
    await minji.tap("에 보내기")
    scheduled = minji.last()
    await people["서준"].say("/help")
    forged = await people["서준"].press(people["서준"].last(), "v1:bc:cancel:1", forge=True)
    assert "운영진만" in forged["text"]
    await minji.tap("예약 취소", message=scheduled)
    assert "예약을 취소했습니다" in minji.last()["text"]
    again = await minji.tap("예약 취소", message=scheduled)
    assert "이미 취소되었습니다" in again["text"]
    clock.advance(days=1)
    await local.run_due_jobs()
    assert _received(people["서준"], "취소될 공지") == []

    await _compose(minji, "이미 보낸 공지")
    await minji.tap("모두 · 2")
    await minji.tap("지금 보내기")
    sent = await minji.press(minji.last(), "v1:bc:cancel:2", forge=True)
    assert "이미 다 보냈기 때문에" in sent["text"]
    listed = (await minji.say("/broadcasts"))[-1]["text"]
    assert "보내기 전에 취소됨" in listed and "보냄 2" in listed


async def test_organiser_of_two_organisations_chooses_one(local):
    minji = await _organiser(local)
    await minji.say("/new_org 새솔 청년회 | youth")
    await _members(local, {"서준": Tier.SUPPORTER}, slug="youth")
    choice = (await minji.say("/broadcast"))[-1]
    assert buttons(choice) == ["새솔 청년회", "새솔마을 주민회"]
    await minji.tap("새솔 청년회")
    assert "새솔 청년회 새 공지" in minji.last()["text"]
    await minji.say("청년회 공지")
    assert "모두 · 2" in buttons(minji.last())


# --- delivery that survives -------------------------------------------------------------------


async def _announce_now(local, minji: Person, text: str, button: str) -> None:
    await _compose(minji, text)
    await minji.tap(button)
    # Confirm without letting settle() drain the outbox: the test decides who sends.
    message = minji.last()
    data = next(
        b["callback_data"]
        for row in message["reply_markup"]["inline_keyboard"]
        for b in row
        if b["text"] == "지금 보내기"
    )
    local.emulator.press(local.token, minji.id, message["chat_id"], message["message_id"], data)
    await local._updates_handled()


async def test_a_killed_sender_is_resumed_by_another_without_loss(quiet_local, clock):
    local = quiet_local
    minji = await _organiser(local)
    people = await _members(local, {f"회원{n}": Tier.SUPPORTER for n in range(12)})
    await _announce_now(local, minji, "중단 없이 도착해야 할 공지", "모두 · 13")
    # An instance claimed the first ten and died before recording anything.
    async with transaction(local.runtime.sessions) as session:
        dead = await outbox.claim_batch(
            session, worker="i-dead", now=clock.now(), limit=10, lease=dt.timedelta(seconds=30)
        )
    assert len(dead) == 10
    assert await local.runtime.sender.drain() == 3  # the rest; the dead one's are still leased
    clock.advance(seconds=31)
    restarted = OutboxSender(local.runtime, local.application.bot)
    assert await restarted.drain() >= 11  # the ten and the report
    await local._updates_handled()
    counts = [len(_received(p, "중단 없이 도착해야 할 공지")) for p in people.values()]
    assert counts == [1] * 12
    reports = [m for m in minji.inbox() if "발송을 마쳤습니다" in (m["text"] or "")]
    assert len(reports) == 1 and "보냄: 13" in reports[0]["text"]
    async with transaction(local.runtime.sessions) as session:
        row = (await session.exec(select(Broadcast))).one()
    assert (row.sent, row.failed, row.unreachable, row.audience_size) == (13, 0, 0, 13)


async def test_stopping_an_announcement_while_it_goes_out(quiet_local):
    local = quiet_local
    minji = await _organiser(local)
    people = await _members(local, {f"회원{n}": Tier.SUPPORTER for n in range(5)})
    await _announce_now(local, minji, "멈출 공지", "모두 · 6")
    listed = (await _say_unsent(local, minji, "/broadcasts"))[-1]
    assert "보내는 중: 0건 보냄, 6건 남음" in listed["text"]
    local.emulator.press(
        local.token,
        minji.id,
        listed["chat_id"],
        listed["message_id"],
        next(b["callback_data"] for row in listed["reply_markup"]["inline_keyboard"] for b in row),
    )
    await local._updates_handled()
    await local.runtime.sender.drain()
    await local._updates_handled()
    assert all(_received(p, "멈출 공지") == [] for p in people.values())
    texts = [m["text"] or "" for m in minji.inbox()]
    assert any("6건은 보내지 않았습니다" in t for t in texts)
    report = next(t for t in texts if t.startswith("📊"))
    assert "보냄: 0" in report and "보내지 않음(발송 멈춤 또는 그사이 탈퇴): 6" in report


async def test_slow_answers_are_awaited_and_only_unknown_outcomes_are_resent(local, clock):
    minji = await _organiser(local)
    people = await _members(local, {f"회원{n}": Tier.SUPPORTER for n in range(6)})
    local.runtime.sender.patience = 0.05
    # Every send stalls 0.3 s (half of them arrive first); the answer still comes in time.
    await _compose(minji, "늦은 답도 기다립니다")
    await minji.tap("모두 · 7")
    local.emulator.set_faults(Faults(timeout_rate=1.0, timeout_seconds=0.3, seed=1))
    await minji.tap("지금 보내기")
    local.emulator.set_faults(Faults())
    for _ in range(3):
        clock.advance(minutes=1)
        await local.settle()
    assert [len(_received(p, "늦은 답도 기다립니다")) for p in people.values()] == [1] * 6

    # Now no answer comes within answer_timeout: nobody knows, so it is sent again.
    local.runtime.config = local.runtime.config.replace(delivery={"answer_timeout": 0.1})
    await _compose(minji, "모르면 다시 보냅니다")
    await minji.tap("모두 · 7")
    before = local.stats()["faults"].get("timeout_delivered", 0)
    local.emulator.set_faults(Faults(timeout_rate=1.0, timeout_seconds=0.5, seed=3))
    await minji.tap("지금 보내기")
    local.emulator.set_faults(Faults())
    for _ in range(3):
        clock.advance(minutes=1)
        await local.settle()
    arrived_unanswered = local.stats()["faults"].get("timeout_delivered", 0) - before
    counts = [len(_received(p, "모르면 다시 보냅니다")) for p in people.values()]
    assert min(counts) == 1 and max(counts) <= 2  # nobody missed it
    assert arrived_unanswered > 0
    # Every send whose answer never came was sent again, and only those.
    assert sum(counts) - len(counts) == arrived_unanswered

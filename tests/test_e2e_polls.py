"""Polls end to end: the real bot against the emulator, as organisers and voters use it."""

from __future__ import annotations

import datetime as dt

import sqlalchemy as sa

from bot.db import transaction
from models import AuditLog, Delivery, PollBallot, PollVote, PollVoter
from tests.e2e import Person, buttons, document_json, register, url_buttons
from tests.test_cards import setup_group
from tests.test_e2e_organizations import admin


async def organisation_with_group(local, *, members: int = 0):
    """민지 (admin) with 새솔마을 주민회, its linked group, and registered members in both."""
    minji, group = await setup_group(local)
    people = []
    for name in ["서준", "하은", "지호", "도윤", "수아"][:members]:
        person = Person(local, name)
        await register(person, "org_saesol")
        await person.tap("가입하기")
        local.emulator.add_member(group["id"], person.id)
        people.append(person)
    return minji, group, people


def card_in(person: Person, chat_id: int) -> dict:
    """The latest poll card in a chat."""
    return next(m for m in reversed(person.inbox(chat_id)) if "📊" in (m["text"] or ""))


async def post_to_group(minji: Person, poll_id: int, group: dict) -> dict:
    await minji.say(f"/post poll {poll_id}")
    return card_in(minji, group["id"])


async def test_quick_poll_in_a_group_story(local, clock):
    """One line → card in the group → taps (double, changed, unregistered) → close → result."""
    minji, group, (seojun, haeun) = await organisation_with_group(local, members=2)
    created = await minji.say("/new_poll 다음 모임 장소는? | 사무실 | 카페 | 온라인")
    assert "투표를 열었습니다: #1" in created[0]["text"]
    private_card = created[-1]
    assert "다음 모임 장소는?" in private_card["text"]
    assert "단체방에 올리기" in buttons(private_card)
    await minji.tap("단체방에 올리기", message=private_card)
    card = card_in(minji, group["id"])
    assert buttons(card) == ["1. 사무실", "2. 카페", "3. 온라인"]

    answer = await seojun.tap("2. 카페", chat_id=group["id"])
    assert "카페" in answer["text"] and "기록" in answer["text"]
    again = await seojun.tap("2. 카페", chat_id=group["id"])
    assert "이미" in again["text"]
    await haeun.tap("3. 온라인", chat_id=group["id"])
    changed = await haeun.tap("2. 카페", chat_id=group["id"])
    assert "카페" in changed["text"]
    card = card_in(minji, group["id"])
    assert "2. 카페" in card["text"] and "2표" in card["text"]
    assert "2명 참여" in card["text"]

    # Someone in the group who never registered is sent to the bot and comes back to the poll.
    stranger = Person(local, "낯선이")
    local.emulator.add_member(group["id"], stranger.id)
    answer = await stranger.tap("1. 사무실", chat_id=group["id"])
    assert answer["url"] == "https://t.me/moim_bot?start=poll_1"
    after = await register(stranger, "poll_1")
    assert any("다음 모임 장소는?" in m["text"] for m in after)
    await stranger.tap("1. 사무실")
    assert "1표" in card_in(minji, group["id"])["text"]

    await minji.say("/close_poll 1")
    closing = await minji.tap("네, 지금 마감합니다")
    texts = [m.get("text") or "" for m in closing["messages"]]
    assert any("가장 많은 표: 카페" in t for t in texts)
    photos = [m for m in minji.inbox() if m.get("photo")]
    assert photos and photos[-1]["photo"][:8] == b"\x89PNG\r\n\x1a\n"
    assert "1. 사무실" in photos[-1]["caption"]
    group_texts = [m["text"] for m in minji.inbox(group["id"])]
    assert any("투표가 마감되었습니다" in t for t in group_texts)
    card = card_in(minji, group["id"])
    assert "마감" in card["text"] and buttons(card) == ["전체 결과"]

    # The old buttons still exist in people's screens: pressing one changes nothing.
    stale = await seojun.press(card, "v1:poll:vote:1:1", forge=True)
    assert "마감" in stale["text"]
    async with transaction(local.runtime.sessions) as session:
        rows = (await session.exec(sa.select(PollVote.option_id))).scalars().all()
    assert sorted(rows) == [1, 2, 2]


async def test_ineligible_and_tampered_presses_change_nothing(local):
    minji, group, (seojun,) = await organisation_with_group(local, members=1)
    await minji.say("/new_poll 정회원 안건 | 찬성 | 반대 | 자격: 정회원")
    await post_to_group(minji, 1, group)
    answer = await seojun.tap("1. 찬성", chat_id=group["id"])
    assert answer["show_alert"] and "정회원만" in answer["text"]
    card = card_in(minji, group["id"])
    for forged in ("v1:poll:vote:1:9", "v1:poll:vote:99:1", "v1:poll:vote:1:x", "v1:poll:vote"):
        reply = await seojun.press(card, forged, forge=True)
        assert reply["text"], forged
    async with transaction(local.runtime.sessions) as session:
        assert (await session.exec(sa.select(sa.func.count()).select_from(PollVote))).one() == (0,)
    # Organiser-only buttons pressed by someone else are refused and audited.
    for forged in ("v1:poll:closeok:1", "v1:poll:delok:1", "v1:poll:exp:1:b:csv"):
        reply = await seojun.press(seojun.last(), forged, forge=True)
        assert "운영진만" in reply["text"], forged
    async with transaction(local.runtime.sessions) as session:
        refused = (
            (await session.exec(sa.select(AuditLog.action).where(AuditLog.outcome == "refused")))
            .scalars()
            .all()
        )
    assert {"poll.close", "poll.delete", "poll.export"} <= set(refused)
    assert "진행 중" in (await minji.say("/results 1"))[0]["text"]


async def test_secret_binding_vote_with_schedule_nudge_quorum_and_receipts(local, clock):
    minji, group, people = await organisation_with_group(local, members=4)
    seojun, haeun, jiho, doyun = people
    await minji.say("/members")
    for name in ("서준", "하은", "지호"):
        await minji.tap(name)
        await minji.tap("정회원으로 바꾸기")
        await minji.say("/members")
    created = await minji.say(
        "/new_poll 회칙 개정안을 승인할까요? | 종류: 제안 | 투표: 비밀 | 자격: 정회원"
        " | 정족수: 50% | 마감: 12월 2일 18:00 | 알림: 1시간"
    )
    assert "비밀 투표" in created[-1]["text"]
    card = await post_to_group(minji, 1, group)
    assert "바꿀 수 없고" in card["text"]
    assert buttons(card) == ["찬성", "기권", "반대", "거부"]

    answer = await seojun.tap("찬성", chat_id=group["id"])
    assert "비밀 투표" in answer["text"]
    receipt_message = seojun.last()
    assert "영수증 코드" in receipt_message["text"]
    code = receipt_message["text"].split("영수증 코드:")[1].split()[0]
    again = await seojun.tap("반대", chat_id=group["id"])
    assert "바꿀 수 없습니다" in again["text"]
    answer = await doyun.tap("반대", chat_id=group["id"])  # a supporter: not eligible
    assert "정회원만" in answer["text"]
    await haeun.tap("반대", chat_id=group["id"])
    verify_early = (await seojun.say(f"/verify {code}"))[-1]
    assert "아직 진행 중" in verify_early["text"]

    # An hour before closing: only the eligible members who have not voted are reminded.
    clock.set(dt.datetime(2026, 12, 2, 8, 0, tzinfo=dt.UTC))  # 17:00 in Seoul
    await local.run_due_jobs()
    nudged = [p.name for p in (minji, seojun, haeun, jiho, doyun) if "곧 마감" in p.last()["text"]]
    assert sorted(nudged) == sorted(["민지", "지호"])
    nudge = jiho.last()
    assert buttons(nudge) == ["찬성", "기권", "반대", "거부"]
    await jiho.tap("기권", message=nudge)

    clock.set(dt.datetime(2026, 12, 2, 9, 0, tzinfo=dt.UTC))  # 18:00: the scheduled close
    await local.run_due_jobs()
    await local.run_due_jobs()  # a second run finds nothing left to do
    closed = [m["text"] for m in minji.inbox(group["id"]) if "마감되었습니다" in m["text"]]
    assert len(closed) == 1 and "정족수를 채웠습니다" in closed[0]
    assert "찬성 — 1표" in closed[0] and "반대 — 1표" in closed[0]
    private = [m for m in minji.inbox() if "마감되었습니다" in (m["text"] or "")]
    assert len(private) == 1
    await minji.tap("결과와 차트", message=private[0])
    assert minji.last().get("photo")

    verified = (await seojun.say(f"/verify {code.lower()}"))[-1]
    assert "기록된 선택: 찬성" in verified["text"]
    async with transaction(local.runtime.sessions) as session:
        roll = (await session.exec(sa.select(sa.func.count()).select_from(PollVoter))).one()
        ballots = (await session.exec(sa.select(sa.func.count()).select_from(PollBallot))).one()
        receipts_in_outbox = (
            await session.exec(
                sa.select(sa.func.count())
                .select_from(Delivery)
                .where(sa.cast(Delivery.payload, sa.String).contains(code.replace("-", "")))
            )
        ).one()
    assert roll == (3,) and ballots == (3,) and receipts_in_outbox == (0,)


async def test_guided_creation_ranked_panel_and_results(local):
    minji, group, (seojun, haeun) = await organisation_with_group(local, members=2)
    await minji.say("/new_poll")
    assert "질문을 보내 주세요" in minji.last()["text"]
    await minji.say("대표 메뉴를 정해요")
    await minji.say("김밥\n떡볶이\n순대")
    await minji.tap("순위 매기기")
    settings = minji.last()
    assert "설정" in settings["text"]
    await minji.tap("투표 방식: 공개")
    assert "투표 방식: 비밀 투표" in buttons(minji.last())
    await minji.tap("마감 시간")
    await minji.say("오늘 08:00")
    assert "이미 지났습니다" in minji.last()["text"]
    await minji.say("내일 18:00")
    await minji.tap("미리 보기")
    preview = minji.last()
    assert "순위" in preview["text"] and "1. 김밥" in preview["text"]
    await minji.tap("게시하기")
    card = await post_to_group(minji, 1, group)
    assert url_buttons(card) == ["https://t.me/moim_bot?start=poll_1"]

    await seojun.say("/start poll_1")
    panel = seojun.last()
    assert "원하는 순서대로" in panel["text"]
    await seojun.tap("1순위: 순대")
    await seojun.tap("2순위: 김밥")
    await seojun.tap("되돌리기")
    await seojun.tap("2순위: 떡볶이")
    assert "1. 순대\n2. 떡볶이" in seojun.last()["text"]
    done = await seojun.tap("투표하기")
    assert "순대" in done["text"]
    assert "영수증 코드" in seojun.last()["text"]
    await haeun.say("/start poll_1")
    await haeun.tap("1순위: 김밥")
    await haeun.tap("투표하기")
    await minji.say("/close_poll 1")
    await minji.tap("네, 지금 마감합니다")
    results = [m for m in minji.inbox() if "즉시 결선" in (m["text"] or "")]
    assert results and "1라운드" in results[-1]["text"]


async def test_multiple_choice_panel_reason_exports_me_and_mydata(local):
    minji, _group, (seojun, haeun) = await organisation_with_group(local, members=2)
    await minji.say(
        "/new_poll 점심 메뉴 | 김밥 | 떡볶이 | 순대 | 라면 | 종류: 복수 2 | 자격: 회원"
    )
    await minji.say("/new_poll 회비 인상안 | 종류: 제안 | 자격: 회원")
    me = (await seojun.say("/me"))[-1]
    assert "내 투표를 기다리는 투표" in me["text"] and "점심 메뉴" in me["text"]

    await seojun.say("/start poll_1")
    panel = seojun.last()
    assert buttons(panel) == ["☐ 김밥", "☐ 떡볶이", "☐ 순대", "☐ 라면"]
    await seojun.tap("☐ 순대")
    await seojun.tap("☐ 김밥")
    too_many = await seojun.tap("☐ 라면")
    assert too_many["show_alert"] and "최대 2개" in too_many["text"]
    assert "☑ 김밥" in buttons(seojun.last()) and "투표하기 (2개 선택)" in buttons(seojun.last())
    done = await seojun.tap("투표하기 (2개 선택)")
    assert "김밥, 순대" in done["text"]
    # A forged panel state (three options ticked) is refused and records nothing new.
    forged = await seojun.press(seojun.last(), "v1:poll:mcv:1:7", forge=True)
    assert "이 버튼은 더 이상 쓸 수 없습니다" in forged["text"]

    await haeun.say("/start poll_2")
    await haeun.tap("반대")
    await haeun.tap("의견 남기기")
    await haeun.say("회비가 이미 부담스럽습니다")
    assert "의견을 저장했습니다" in haeun.last()["text"]
    card = (await haeun.say("/start poll_2"))[0]
    assert "내 의견: 회비가 이미 부담스럽습니다" in card["text"]

    await minji.say("/results 2")
    csv_message = (await minji.tap("투표 내역 (CSV)"))["messages"][-1]
    data = csv_message["document"]["data"]
    assert data.startswith("\ufeff".encode())
    text = data.decode("utf-8-sig")
    assert text.splitlines()[0] == "이름,단체,번호,선택지,순위,가중치,의견,투표 시각"
    assert "하은" in text and "반대" in text and "회비가 이미 부담스럽습니다" in text
    xlsx = (await minji.tap("결과 엑셀"))["messages"][-1]
    assert xlsx["document"]["data"][:2] == b"PK"  # a zip: an XLSX workbook

    mydata = document_json((await haeun.say("/mydata"))[-1])
    assert mydata["polls"]["open_votes"][0]["reason"] == "회비가 이미 부담스럽습니다"
    await haeun.say("/forget")
    await haeun.tap("네, 삭제합니다")
    async with transaction(local.runtime.sessions) as session:
        reasons = (await session.exec(sa.select(PollVote.reason))).scalars().all()
    assert reasons == [None, None, None]  # 서준's two choices and 하은's anonymous vote

    await minji.say("/polls")
    await minji.tap("#1 점심 메뉴")
    await minji.tap("삭제")
    await minji.tap("네, 삭제합니다")
    assert "삭제되었습니다" in minji.last()["text"]
    gone = (await seojun.say("/results 1"))[-1]
    assert "없거나 삭제되었습니다" in gone["text"]


async def test_a_networks_vote_shows_each_group(local):
    minji = admin(local)
    await register(minji)
    await minji.say("/new_org 서울 기후 연대 | seoul-net | 연대")
    voters = []
    for slug, names in (("north", ["서준", "하은", "지호"]), ("south", ["도윤", "수아"])):
        await minji.say(f"/new_org {slug} 모임 | {slug}")
        await minji.say(f"/network_add seoul-net {slug}")
        for name in names:
            person = Person(local, name)
            await register(person, f"org_{slug}")
            await person.tap("가입하기")
            voters.append(person)
    asked = await minji.say("/new_poll 공동 행동 날짜 | 토요일 | 일요일 | 자격: 회원")
    assert "어느 단체" in asked[-1]["text"]  # 민지 organises three: the line waits for a choice
    await minji.tap("서울 기후 연대")
    choices = {
        "서준": "1. 토요일",
        "하은": "1. 토요일",
        "지호": "2. 일요일",
        "도윤": "2. 일요일",
        "수아": "2. 일요일",
    }
    for person in voters:
        await person.say("/start poll_1")
        await person.tap(choices[person.name])
    text = (await minji.say("/results 1"))[0]["text"]
    assert "회원 단체별" in text
    assert "north 모임 — 3명: 1. 2 · 2. 1" in text and "south 모임 — 2명: 1. 0 · 2. 2" in text


async def test_an_english_speaker_votes_and_verifies(local):
    minji, _group, _ = await organisation_with_group(local)
    alex = Person(local, "Alex", language="en")
    await register(alex, "org_saesol")
    await alex.tap("Join")
    await minji.say("/new_poll 대표 선출 | 김 | 이 | 박 | 투표: 비밀 | 자격: 회원")
    card = (await alex.say("/start poll_1"))[0]
    assert "Secret ballot" in card["text"] and "cannot be changed once cast" in card["text"]
    answer = await alex.tap("2. 이")
    assert answer["text"].startswith("🔒 Secret ballot cast: 이")
    receipt = alex.last()["text"].split("Receipt code:")[1].split()[0]
    await minji.say("/close_poll 1")
    await minji.tap("네, 지금 마감합니다")
    verified = (await alex.say(f"/verify {receipt}"))[-1]
    assert "Recorded choice: 이" in verified["text"]
    unknown = (await alex.say("/verify 0000-0000"))[-1]
    assert "No ballot has the receipt code 0000-0000" in unknown["text"]


async def test_deleting_a_posted_poll_says_so_on_its_group_card(local):
    """The card in the group tells members the poll is gone; its old buttons change nothing."""
    minji, group, (seojun,) = await organisation_with_group(local, members=1)
    await minji.say("/new_poll 봄 소풍 장소 | 한강 | 북한산")
    card = await post_to_group(minji, 1, group)
    await minji.say("/polls")
    await minji.tap("#1 봄 소풍 장소")
    await minji.tap("삭제")
    await minji.tap("네, 삭제합니다")
    await local.settle()
    gone = next(m for m in minji.inbox(group["id"]) if m["message_id"] == card["message_id"])
    assert "‘봄 소풍 장소’ 투표는 삭제되었습니다" in gone["text"]
    assert buttons(gone) == []
    stale = await seojun.press(card, "v1:poll:vote:1:1", forge=True)
    assert "없거나 삭제되었습니다" in stale["text"]
    async with transaction(local.runtime.sessions) as session:
        assert (await session.exec(sa.select(sa.func.count()).select_from(PollVote))).one() == (0,)

"""Members end to end: the real bot against the emulator, people typing and tapping."""

from __future__ import annotations

import sqlalchemy as sa

from bot.db import transaction
from models import Member
from tests.e2e import Person, buttons, document_json, register


async def test_register_me_mydata_forget_in_korean(local):
    minji = Person(local, "민지", language="ko")
    replies = await minji.say("/start")
    notice = replies[-1]
    assert "개인정보 수집·이용 동의" in notice["text"]
    assert buttons(notice)[:2] == ["동의합니다", "동의하지 않습니다"]
    async with transaction(local.runtime.sessions) as session:  # nothing stored before consent
        assert (await session.exec(sa.select(sa.func.count()).select_from(Member))).one() == (0,)

    await minji.tap("동의합니다")
    assert "만 14세 이상이신가요?" in minji.last()["text"]
    await minji.tap("네, 만 14세 이상입니다")
    assert "민지님, 환영합니다!" in minji.last()["text"]

    profile = (await minji.say("/me"))[-1]
    assert "이름: 민지" in profile["text"] and "언어: 한국어" in profile["text"]

    export = (await minji.say("/mydata"))[-1]
    data = document_json(export)
    assert data["profile"]["display_name"] == "민지"
    assert data["profile"]["consent_version"] == 1
    assert export["document"]["file_name"].startswith("moim-mydata-")

    await minji.say("/forget")
    assert buttons(minji.last()) == ["네, 삭제합니다", "아니요, 그대로 둡니다"]
    await minji.tap("네, 삭제합니다")
    assert "삭제했습니다" in minji.last()["text"]
    after = (await minji.say("/me"))[-1]
    assert "먼저 가입해 주세요" in after["text"]


async def test_english_speaker_gets_english_and_can_switch(local):
    alex = Person(local, "Alex", language="en-US")
    notice = (await alex.say("/start"))[-1]
    assert "Consent to the collection and use of personal information" in notice["text"]
    await alex.tap("I agree")
    await alex.tap("Yes, I am 14 or older")
    assert "Welcome, Alex!" in alex.last()["text"]
    await alex.say("/lang")
    answer = await alex.tap("한국어")
    assert answer["messages"][-1]["text"] == "이제부터 한국어로 안내해 드리겠습니다."
    assert "내 정보" in (await alex.say("/me"))[-1]["text"]


async def test_declining_or_being_under_14_stores_nothing(local):
    young = Person(local, "어린이")
    await young.say("/start")
    await young.tap("동의하지 않습니다")
    assert "아무것도 저장하지 않았습니다" in young.last()["text"]
    await young.say("/start")
    await young.tap("동의합니다")
    await young.tap("아니요")
    assert "만 14세 미만은" in young.last()["text"]
    async with transaction(local.runtime.sessions) as session:
        assert (await session.exec(sa.select(sa.func.count()).select_from(Member))).one() == (0,)


async def test_typing_the_consent_instead_of_tapping_points_to_the_button(local):
    soonja = Person(local, "순자")
    await soonja.say("/start")
    hint = (await soonja.say("동의합니다"))[-1]["text"]
    assert "‘동의합니다’ 버튼을 눌러" in hint  # not "send /start" again, as if nothing happened
    async with transaction(local.runtime.sessions) as session:  # typing is not consenting
        assert (await session.exec(sa.select(sa.func.count()).select_from(Member))).one() == (0,)
    tapped = await soonja.tap("동의합니다")  # the notice's buttons still work
    assert any("만 14세 이상이신가요?" in m["text"] for m in tapped["messages"])


async def test_notice_language_can_be_switched_before_consenting(local):
    person = Person(local, "Sam", language="ko")
    await person.say("/start")
    await person.tap("English")
    assert "Consent to the collection" in person.last()["text"]
    await person.tap("I agree")
    await person.tap("Yes, I am 14 or older")
    profile = (await person.say("/me"))[-1]
    assert "Language: English" in profile["text"]


async def test_new_notice_version_asks_again(local, config):
    seojun = Person(local, "서준")
    await register(seojun)
    local.runtime.config = config.replace(bot={"privacy_notice_version": 2})
    reply = (await seojun.say("/me"))[-1]
    assert "개인정보 처리 안내가 바뀌었습니다" in reply["text"]
    await seojun.tap("동의합니다")
    await seojun.tap("14세 이상")
    async with transaction(local.runtime.sessions) as session:
        member = (await session.exec(sa.select(Member))).scalars().one()
        assert member.consent_version == 2


async def test_blocking_marks_unreachable_and_unblocking_clears(local):
    haeun = Person(local, "하은")
    await register(haeun)
    local.emulator.block_bot(local.token, haeun.id)
    await local.settle()
    async with transaction(local.runtime.sessions) as session:
        member = (await session.exec(sa.select(Member))).scalars().one()
        assert member.unreachable_since is not None
    local.emulator.unblock_bot(local.token, haeun.id)
    await local.settle()
    async with transaction(local.runtime.sessions) as session:
        member = (await session.exec(sa.select(Member))).scalars().one()
        assert member.unreachable_since is None


async def test_unknown_things_get_friendly_answers(local):
    person = Person(local, "지호")
    assert "/start" in (await person.say("안녕하세요"))[-1]["text"]
    await register(person)
    assert "/help" in (await person.say("/nonsense"))[-1]["text"]
    assert "/help" in (await person.say("그냥 하는 말"))[-1]["text"]
    help_text = (await person.say("/help"))[-1]["text"]
    assert "/mydata" in help_text and "/invite" not in help_text


async def test_a_mistyped_command_gets_the_one_probably_meant(local):
    person = Person(local, "영수")
    await register(person)
    for typed in ("/newpoll 점심? | 국밥 | 냉면", "/new poll", "/new_pol", "/Newpoll@moim_bot"):
        reply = (await person.say(typed))[-1]["text"]
        assert reply.startswith("혹시 /new_poll 명령을 찾으셨나요?"), typed
    reply = (await person.say("/xyzzy"))[-1]["text"]
    assert "모르는 명령입니다" in reply and "혹시" not in reply
    alex = Person(local, "Alex", language="en")
    await register(alex)
    assert (await alex.say("/mydta"))[-1]["text"].startswith("Did you mean /mydata?")


async def test_a_link_to_something_gone_still_registers_the_newcomer(local):
    person = Person(local, "서준")
    messages = await register(person, "org_nosuch")
    assert "찾을 수 없습니다" in messages[-1]["text"]
    assert "내 정보" in (await person.say("/me"))[-1]["text"]  # registered, not rolled back


async def test_a_file_or_picture_nobody_asked_for_gets_a_friendly_answer(local):
    person = Person(local, "지호")
    await register(person)
    reply = (await person.send_file("사진.pdf", b"%PDF"))[-1]
    assert "공지를 쓰거나 회의록을 보낼 때만" in reply["text"]
    await person.say("/name")  # no flow open either way
    reply = (await person.send_photo(b"\xff\xd8 picture"))[-1]
    assert "공지를 쓰거나 회의록을 보낼 때만" in reply["text"]

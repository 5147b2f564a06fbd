"""The README's petition tour in the sandbox, typed as a newcomer would."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

from tests.test_sandbox import typed_as_minji

# 민지 registers, creates the organisation and links its group chat; back in her private chat.
MINJI_WITH_A_GROUP = (
    ("/start", "[1] 동의합니다"),
    ("1", "만 14세 이상이신가요?"),
    ("1", "민지님, 환영합니다!"),
    ("/new_org 새솔마을 주민회 | saesol", "start=org_saesol"),
    ("/group 새솔 단톡방", "/link_group"),
    ("/link_group", "단체방으로 연결했습니다"),
    ("/private", "민지 ▸"),
)


def test_sandbox_petition_tour(tmp_path):
    screen = typed_as_minji(
        tmp_path,
        (
            *MINJI_WITH_A_GROUP,
            ("/new_petition 마을버스 증차 요청 | 구청장 | 4명 | 내일 | 공개", "전문을 보내"),
            ("7번 마을버스는 출퇴근 때 30분을 기다립니다. 증차를 요청합니다.", "받았습니다: 37자"),
            ("1", "미리보기"),
            ("1", "start=pet_1"),
            ("/group 새솔 단톡방", "민지 @ 새솔 단톡방 ▸"),
            ("/post petition 1", "[2] ✍️ 서명하기"),
            ("/as 하은", "하은 ▸"),
            ("https://t.me/moim_bot?start=pet_1", "[1] 동의합니다"),
            ("1", "만 14세 이상이신가요?"),
            ("1", "[2] ✍️ 서명하기"),
            ("2", "명단에 이름을 실어도 될까요?"),
            ("1", "전달할 명단에 이름(하은)이 실립니다"),
            ("/as 지호", "지호 ▸"),
            ("/start", "[1] 동의합니다"),
            ("1", "만 14세 이상이신가요?"),
            ("1", "지호님, 환영합니다!"),
            ("/group 새솔 단톡방", "지호 @ 새솔 단톡방 ▸"),
            ("2", "지금까지 2명이 서명했습니다"),
            ("2", "이미 서명하셨습니다"),
            ("/as 민지", "민지 ▸"),
            ("/signatures 1", "이름 공개: 1명 · 이름 비공개: 1명"),
            ("3", "petition-1-"),
            ("/skip 2d", "청원이 마감되었습니다"),
            ("/quit", "▸"),
        ),
    )
    assert "목표의 50%에 도달했습니다" in screen


def test_a_newcomer_tapping_sign_in_the_group_is_taken_to_the_bot_as_in_telegram(tmp_path):
    screen = typed_as_minji(
        tmp_path,
        (
            *MINJI_WITH_A_GROUP,
            ("/new_petition 마을버스 증차 | 구청장 | 10 | 2주 뒤 | 공개", "전문을 보내"),
            ("증차를 요청합니다.", "받았습니다"),
            ("1", "미리보기"),
            ("1", "start=pet_1"),
            ("/group 새솔 단톡방", "민지 @ 새솔 단톡방 ▸"),
            ("/post petition 1", "[2] ✍️ 서명하기"),
            ("/as 순자", "순자 ▸"),
            ("/group 새솔 단톡방", "순자 @ 새솔 단톡방 ▸"),
            # Not registered: the tap opens the bot's chat, as Telegram does with such an answer.
            ("2", "[1] 동의합니다"),
            ("1", "만 14세 이상이신가요?"),
            ("1", "[2] ✍️ 서명하기"),
            ("2", "명단에 이름을 실어도 될까요?"),
            ("1", "서명 1명 / 목표 10명"),
            ("/quit", "▸"),
        ),
    )
    due = (dt.datetime.now(ZoneInfo("Asia/Seoul")) + dt.timedelta(weeks=2)).date()
    weekday = "월화수목금토일"[due.weekday()]
    assert f"{due.month}월 {due.day}일 ({weekday}) 23:59까지" in screen  # "2주 뒤"

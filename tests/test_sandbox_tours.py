"""The README's sandbox tours for polls, meetings and announcements, and the rest of the first
tour (profile, data export, erasure, English), typed as a newcomer would."""

from __future__ import annotations

import re

from tests.test_sandbox import typed_as_minji

REGISTER_AND_JOIN = (
    ("/start", "[1] 동의합니다"),
    ("1", "만 14세 이상이신가요?"),
    ("1", "민지님, 환영합니다!"),
    ("/new_org 새솔마을 주민회 | saesol", "start=org_saesol"),
    ("/as 서준", "서준 ▸"),
    ("https://t.me/moim_bot?start=org_saesol", "[1] 동의합니다"),
    ("1", "만 14세 이상이신가요?"),
    ("1", "[1] 가입하기"),
    ("1", "새솔마을 주민회에 가입했습니다."),
)


def tour(tmp_path, steps) -> str:
    """The first tour's start, then ``steps``, then /quit; the whole screen at the end."""
    return typed_as_minji(tmp_path, (*REGISTER_AND_JOIN, *steps, ("/quit", "▸")))


def test_sandbox_profile_data_export_erasure_and_english(tmp_path):
    screen = tour(
        tmp_path,
        (
            ("/me", "• 새솔마을 주민회 — 후원회원"),
            ("/mydata", "moim-mydata-"),
            ("/forget", "[1] 네, 삭제합니다"),
            ("1", "회원님의 정보를 삭제했습니다"),
            ("/me", "/start"),
            ("/as Alex en", "Alex ▸"),
            ("/start", "[1] I agree"),
            ("1", "Are you 14 or older?"),
            ("1", "Welcome, Alex!"),
            ("/me", "Language: English"),
        ),
    )
    assert "모임 봇에 저장된 회원님의 정보 전체입니다" in screen


def test_sandbox_poll_tour(tmp_path):
    screen = tour(
        tmp_path,
        (
            ("/as 민지", "민지 ▸"),
            ("/group 새솔 단톡방", "/link_group"),
            ("/link_group", "단체방으로 연결했습니다"),
            ("/private", "민지 ▸"),
            ("/new_poll 다음 모임 장소는? | 사무실 | 카페 | 온라인", "투표를 열었습니다: #1"),
            ("/post poll 1", "민지 ▸"),
            ("/as 서준", "서준 ▸"),
            ("/group 새솔 단톡방", "[2] 2. 카페"),
            ("2", "▰▰▰▰▰▰▰▰▰▰ 1표 · 100%"),
            ("/as 민지", "민지 ▸"),
            (
                "/new_poll 회칙 개정 | 종류: 제안 | 투표: 비밀 | 자격: 회원 | 마감: 내일 18:00"
                " | 알림: 1시간",
                "start=poll_2",
            ),
            ("/as 서준", "서준 ▸"),
            ("/start poll_2", "[1] 찬성"),
            ("1", "영수증 코드:"),
            ("/skip 2d", "투표가 마감되었습니다"),
        ),
    )
    assert re.search(r"영수증 코드: [0-9A-Z]{4}-[0-9A-Z]{4}", screen)
    # The bot's hello on joining the group is shown once, not again as "what is there".
    assert screen.count("안녕하세요, 단체 활동을 돕는 모임 봇입니다") == 1


def test_sandbox_meeting_tour(tmp_path):
    tour(
        tmp_path,
        (
            ("/as 민지", "민지 ▸"),
            ("/new_meeting 운영위원회 | 모레 19:30 | 2시간 | 마을회관 2층 | 격주", "start=meet_1"),
            ("/as 하은", "하은 ▸"),
            ("https://t.me/moim_bot?start=meet_1", "[1] 동의합니다"),
            ("1", "만 14세 이상이신가요?"),
            ("1", "[1] 가입하고 참석"),
            ("1", "내 응답: 참석"),
            ("/skip 44h", "⏰ 모임 알림: 운영위원회"),
            ("/as 민지", "민지 ▸"),
            ("/meetings", "운영위원회"),
            ("1", "⚙ 관리"),
        ),
    )


def test_sandbox_announcement_tour(tmp_path):
    screen = tour(
        tmp_path,
        (
            ("/as 민지", "민지 ▸"),
            ("/broadcast", "새솔마을 주민회 새 공지"),
            ("{{ 이름 }}님, 토요일 10시 정기모임에 꼭 와 주세요!", "[1] 모두 · 2"),
            ("1", "받는 사람: 2명"),
            ("1", "공지 #1"),
            ("/broadcasts", "#1 · 모두"),
            ("/skip 10h", "⏱ 걸린 시간"),
        ),
    )
    # Others' messages show as one line each: 서준 got his copy.
    assert "(서준에게) 📢 새솔마을 주민회" in screen
    assert "공지 #1 발송을 마쳤습니다" in screen and "✅ 보냄: 2" in screen

"""The README's campaign tour in the sandbox, typed into a pseudo-terminal."""

from __future__ import annotations

from tests.test_sandbox import Terminal


def test_sandbox_campaign_tour(tmp_path, monkeypatch):
    # The sandbox runs on the real clock; without quiet hours the survey goes out at any hour.
    monkeypatch.setenv("MOIM_DELIVERY_QUIET_HOURS_START", "00:00")
    monkeypatch.setenv("MOIM_DELIVERY_QUIET_HOURS_END", "00:00")
    term = Terminal("--name", "민지", cwd=tmp_path)

    def join(name: str, answer: str, expect: str) -> None:
        term.type(f"/as {name}")
        term.expect(f"{name} ▸")
        term.type("https://t.me/moim_bot?start=camp_1")
        term.expect("[1] 동의합니다")
        term.type("1")
        term.expect("14세")
        term.type("1")
        term.expect("[1] 참가 신청")
        term.type("1")
        term.expect(expect)
        term.expect("질문 1/1")
        term.type(answer)
        term.expect("마지막 질문이었습니다")

    try:
        term.expect("민지 ▸")
        for line, shown in (("/start", "[1] 동의합니다"), ("1", "14세"), ("1", "환영합니다")):
            term.type(line)
            term.expect(shown)
        term.type("/new_org 새솔마을 주민회 | saesol")
        term.expect("org_saesol")
        term.type(
            "/new_campaign 정기 상영회 | 내일 19:00 | 마을회관 | 정원 2"
            " | 질문 티셔츠 사이즈? S / M / L | 설문 2시간"
        )
        term.expect("[1] 지금 신청 받기")
        term.type("1")
        term.expect("start=camp_1")
        join("하은", "2", "참가 신청이 완료되었습니다")
        join("지호", "1", "참가 신청이 완료되었습니다")
        join("도윤", "3", "대기 1번")
        term.type("/as 지호")
        term.type("https://t.me/moim_bot?start=camp_1")
        term.expect("[1] 신청 취소")
        term.type("1")
        term.expect("[1] 네, 취소합니다")
        term.type("1")
        term.expect("(도윤에게) 🎉")
        term.type("/as 민지")
        term.type("/signups 1")
        term.expect("2. ✅ 도윤 · L")
        term.type("/skip 2d")
        term.expect("(하은에게) ⭐")
        term.type("/quit")
        assert term.close() == 0
    finally:
        if term.process.poll() is None:
            term.process.kill()

"""The sandbox, driven through a pseudo-terminal as a newcomer would use it."""

from __future__ import annotations

import os
import pty
import select
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


class Terminal:
    """`moim sandbox` in a pty: type lines, wait for text to appear."""

    def __init__(self, *args: str, cwd: Path) -> None:
        self.master, slave = pty.openpty()
        environment = {**os.environ, "PYTHONUNBUFFERED": "1", "MOIM_TELEGRAM_TOKEN": ""}
        self.process = subprocess.Popen(
            [sys.executable, "-m", "bot.cli", "sandbox", *args],
            stdin=slave,
            stdout=slave,
            stderr=slave,
            cwd=cwd,
            env=environment,
        )
        os.close(slave)
        self.screen = ""

    def type(self, line: str) -> None:
        os.write(self.master, (line + "\n").encode())

    def expect(self, text: str, timeout: float = 20.0) -> str:
        """Read output until ``text`` appears (a deadline for a live process, not a clock)."""
        deadline = time.monotonic() + timeout
        while text not in self.screen:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"{text!r} did not appear; screen:\n{self.screen[-3000:]}")
            ready, _, _ = select.select([self.master], [], [], remaining)
            if ready:
                try:
                    chunk = os.read(self.master, 65536)
                except OSError:
                    break
                self.screen += chunk.decode("utf-8", "replace")
        return self.screen

    def close(self) -> int:
        try:
            return self.process.wait(timeout=20)
        finally:
            os.close(self.master)


def typed_as_minji(tmp_path, steps) -> str:
    """Type each line in a sandbox started as 민지, waiting for what it shows; the screen."""
    term = Terminal("--name", "민지", cwd=tmp_path)
    try:
        term.expect("민지 ▸")
        for line, shows in steps:
            term.type(line)
            term.expect(shows)
        assert term.close() == 0
        return term.screen
    finally:
        if term.process.poll() is None:
            term.process.kill()


def test_sandbox_tour_register_create_join_promote(tmp_path):
    term = Terminal("--name", "민지", cwd=tmp_path)
    try:
        term.expect("민지 ▸")
        term.type("/start")
        term.expect("[1] 동의합니다")
        term.type("1")
        term.expect("만 14세 이상이신가요?")
        term.type("1")
        term.expect("민지님, 환영합니다!")
        term.type("/new_org 새솔마을 주민회 | saesol")
        term.expect("https://t.me/moim_bot?start=org_saesol")
        term.type("/as 서준")
        term.expect("서준 ▸")
        term.type("https://t.me/moim_bot?start=org_saesol")
        term.expect("[1] 동의합니다")
        term.type("1")
        term.type("1")
        term.expect("[1] 가입하기")
        term.type("1")
        term.expect("새솔마을 주민회에 가입했습니다.")
        term.type("/as 민지")
        term.type("/members")
        term.expect("회원 2명")
        term.type("2")  # the second name button: 서준
        term.expect("정회원으로 바꾸기")
        term.type("1")
        term.expect("등급: 정회원")
        term.type("/as Alex en")
        term.expect("Alex ▸")
        term.type("/start")
        term.expect("I agree")
        term.type("/quit")
        assert term.close() == 0
    finally:
        if term.process.poll() is None:
            term.process.kill()

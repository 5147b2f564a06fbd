"""On SQLite, updates that arrive together share one transaction, each in its own savepoint:
what one of them breaks or is refused changes nothing of the others."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.exc import DBAPIError

from bot.db import transaction
from bot.services.errors import InvalidInput
from handlers import members as members_handlers
from models import Member
from tests.e2e import Person, register
from tests.test_robustness import _update

APOLOGY = "아무것도 저장하지"


@pytest.fixture
def backend() -> str:
    """Only SQLite shares transactions (PostgreSQL gives each update its own connection)."""
    return "sqlite"


@contextmanager
def counting_commits(local) -> Iterator[list[int]]:
    """Every COMMIT the bot's database engine makes inside the block."""
    made: list[int] = []
    engine = local.runtime.engine.sync_engine

    def count(_connection) -> None:
        made.append(1)

    event.listen(engine, "commit", count)
    try:
        yield made
    finally:
        event.remove(engine, "commit", count)


async def _people(local, names: list[str]) -> list[Person]:
    people = [Person(local, name) for name in names]
    for person in people:
        await register(person)
    return people


async def _all_at_once(local, texts: dict[Person, str]) -> int:
    """Each person's message arrives in the same moment, as in one batch from Telegram;
    how many commits handling them took."""
    app = local.application
    processor = app.update_processor
    batch = [
        _update(local, person, text, 700_000 + n) for n, (person, text) in enumerate(texts.items())
    ]
    with counting_commits(local) as commits:
        await asyncio.gather(*(processor.process_update(u, app.process_update(u)) for u in batch))
    await local.settle()
    return len(commits)


async def _names(local) -> dict[int, str]:
    async with transaction(local.runtime.sessions) as session:
        rows = await session.exec(sa.select(Member.telegram_user_id, Member.display_name))
        return dict(rows.all())


def _said(person: Person) -> list[str]:
    return [m["text"] or "" for m in person.inbox()]


async def test_messages_arriving_together_are_committed_together_and_each_answered(local):
    people = await _people(local, ["서준", "지우", "하윤", "도윤"])
    commits = await _all_at_once(local, {p: f"/name 새 {p.name}" for p in people})
    names = await _names(local)
    for person in people:
        assert names[person.id] == f"새 {person.name}"
        assert _said(person)[-1] == f"바꿨습니다. 이제 이름은 ‘새 {person.name}’입니다."
    assert commits == 1  # four updates, one transaction


async def test_a_refused_and_a_broken_update_undo_only_their_own_writes(local):
    seojun, jiwoo, hayun = await _people(local, ["서준", "지우", "하윤"])
    original = members_handlers.members.rename

    async def rename(session, member, name):
        renamed = await original(session, member, name)
        await session.flush()  # the write has reached the database when it goes wrong
        if member.telegram_user_id == jiwoo.id:
            raise InvalidInput(field="name", reason="too_long", limit=40)
        if member.telegram_user_id == hayun.id:
            raise RuntimeError("a bug after writing")
        return renamed

    members_handlers.members.rename = rename
    try:
        commits = await _all_at_once(
            local, {seojun: "/name 김서준", jiwoo: "/name 이지우", hayun: "/name 박하윤"}
        )
    finally:
        members_handlers.members.rename = original
    names = await _names(local)
    assert names[seojun.id] == "김서준"
    assert names[jiwoo.id] == "지우"  # refused: back to before
    assert names[hayun.id] == "하윤"  # broken: back to before
    assert _said(seojun)[-1] == "바꿨습니다. 이제 이름은 ‘김서준’입니다."
    assert "40" in _said(jiwoo)[-1] and "바꿨습니다" not in _said(jiwoo)[-1]
    assert APOLOGY in _said(hayun)[-1]
    assert not any(APOLOGY in text for text in _said(seojun) + _said(jiwoo))
    assert commits == 1


async def test_losing_the_database_midway_runs_every_update_again_alone(local, caplog):
    people = await _people(local, ["서준", "지우", "하윤"])
    original = members_handlers.members.rename
    failed = False

    async def rename(session, member, name):
        nonlocal failed
        if member.telegram_user_id == people[1].id and not failed:
            failed = True
            raise DBAPIError(
                "UPDATE", {}, ConnectionResetError("disk gone"), connection_invalidated=True
            )
        return await original(session, member, name)

    members_handlers.members.rename = rename
    try:
        await _all_at_once(local, {p: f"/name 새 {p.name}" for p in people})
    finally:
        members_handlers.members.rename = original
    names = await _names(local)
    for person in people:
        assert names[person.id] == f"새 {person.name}"
        replies = [t for t in _said(person) if t.startswith("바꿨습니다")]
        assert replies == [f"바꿨습니다. 이제 이름은 ‘새 {person.name}’입니다."]  # once
        assert not any(APOLOGY in t for t in _said(person))
    assert any("each runs again alone" in r.getMessage() for r in caplog.records)


async def test_a_write_that_breaks_a_constraint_spoils_only_its_own_update(local):
    """SQLAlchemy wants the whole transaction rolled back after a failed flush: the updates
    run again alone, so the others keep their effects and only the breaking one apologises."""
    seojun, jiwoo, hayun = await _people(local, ["서준", "지우", "하윤"])
    original = members_handlers.members.rename

    async def rename(session, member, name):
        renamed = await original(session, member, name)
        if member.telegram_user_id == jiwoo.id:  # a second member with 서준's Telegram id
            session.add(Member(telegram_user_id=seojun.id, display_name="복제", language="ko"))
        return renamed

    members_handlers.members.rename = rename
    try:
        await _all_at_once(
            local, {seojun: "/name 김서준", jiwoo: "/name 이지우", hayun: "/name 박하윤"}
        )
    finally:
        members_handlers.members.rename = original
    names = await _names(local)
    assert names[seojun.id] == "김서준"
    assert names[jiwoo.id] == "지우"
    assert names[hayun.id] == "박하윤"
    assert [t for t in _said(seojun) if t.startswith("바꿨습니다")] == [
        "바꿨습니다. 이제 이름은 ‘김서준’입니다."
    ]
    assert [t for t in _said(hayun) if t.startswith("바꿨습니다")] == [
        "바꿨습니다. 이제 이름은 ‘박하윤’입니다."
    ]
    assert APOLOGY in _said(jiwoo)[-1]
    assert sum(APOLOGY in t for t in _said(jiwoo)) == 1
    assert not any(APOLOGY in text for text in _said(seojun) + _said(hayun))

"""Secret ballots: nothing any query can see ties a ballot to the person who cast it.

What a database holds about a secret vote is the voter roll (who voted) and the ballot box
(what was chosen, by receipt). These tests take the attacker's side — someone with full SQL
access, after the fact — and try every link between the two that the database offers:
columns, keys, the order rows are stored in, the transaction that wrote them (PostgreSQL's
xmin and ctid), and every other table. Each vote is its own transaction, as in the bot.
"""

from __future__ import annotations

import re

import pytest
import sqlalchemy as sa
from sqlalchemy.exc import OperationalError, ProgrammingError
from sqlmodel import SQLModel, select

import models
from bot.config import TiersConfig
from bot.db import transaction
from bot.services import polls
from models import Member, PollBallot, PollVoter, Tier
from tests.factories import MINJI, add_member, make_member, make_org

TIERS = TiersConfig()
VOTERS = 40
OPTIONS = 4


def choice_of(n: int) -> int:
    """Voter n's choice: a pattern an attacker would spot if any link survived."""
    return 1 + n % OPTIONS


async def secret_poll(runtime, clock, *, voters: int = VOTERS, shift: int = 0):
    """A secret poll where voter n chooses choice_of(n + shift); returns (view, members,
    receipts by member id)."""
    now = clock.now()
    async with transaction(runtime.sessions) as session:
        minji = await make_member(session, MINJI, "민지", now=now)
        org = await make_org(session, minji, now=now)
        people = []
        for n in range(voters):
            person = await make_member(session, 20_000 + n, f"voter{n}", now=now)
            await add_member(session, org, person, tier=Tier.FULL, now=now)
            people.append(person)
        draft = polls.draft_from_line(
            "비밀 안건 | 가 | 나 | 다 | 라 | 투표: 비밀 | 자격: 회원",
            now=now,
            timezone="Asia/Seoul",
        )
        poll = await polls.create_poll(session, creator=minji, org=org, draft=draft, now=now)
    receipts = {}
    for n, person in enumerate(people):
        async with transaction(runtime.sessions) as session:
            outcome = await polls.cast_vote(
                session,
                poll_id=poll.id,
                member=person,
                positions=[choice_of(n + shift)],
                tiers=TIERS,
                now=now,
            )
            receipts[person.id] = outcome.receipt
    async with transaction(runtime.sessions) as session:
        view = await polls.load(session, poll.id)
    return view, people, receipts


def is_postgresql(runtime) -> bool:
    return runtime.engine.dialect.name == "postgresql"


async def stored_ballots(runtime, poll_id: int) -> list[dict]:
    """Ballot rows in the order the database stores them, with what it says about each."""
    async with runtime.engine.connect() as connection:
        if is_postgresql(runtime):
            rows = await connection.execute(
                sa.text(
                    "SELECT id, option_id, xmin::text AS xmin, ctid::text AS ctid "
                    "FROM pollballot WHERE poll_id = :poll"
                ),
                {"poll": poll_id},
            )
            found = [dict(row._mapping) for row in rows]
            return sorted(found, key=lambda r: tuple(map(int, r["ctid"].strip("()").split(","))))
        # SELECT * scans the table itself, in its storage order (indexes are ordered by
        # poll and option, or by receipt, which say nothing about time either).
        rows = await connection.execute(sa.text("SELECT * FROM pollballot"))
        return [dict(row._mapping) for row in rows if row.poll_id == poll_id]


async def stored_roll(runtime, poll_id: int) -> list[dict]:
    """Roll rows in the order of voting as the database can tell it (xmin on PostgreSQL)."""
    async with runtime.engine.connect() as connection:
        if is_postgresql(runtime):
            rows = await connection.execute(
                sa.text(
                    "SELECT member_id, xmin::text AS xmin FROM pollvoter WHERE poll_id = :poll"
                ),
                {"poll": poll_id},
            )
            return sorted((dict(r._mapping) for r in rows), key=lambda r: int(r["xmin"]))
        rows = await connection.execute(
            sa.text("SELECT member_id, rowid FROM pollvoter WHERE poll_id = :poll ORDER BY rowid"),
            {"poll": poll_id},
        )
        return [dict(r._mapping) for r in rows]


def test_the_tables_hold_nothing_that_points_from_a_ballot_to_a_person():
    ballot = PollBallot.__table__
    roll = PollVoter.__table__
    assert set(ballot.c.keys()) == {
        "id",
        "poll_id",
        "receipt",
        "option_id",
        "rank",
        "weight",
        "organization_id",
    }
    assert set(roll.c.keys()) == {"poll_id", "member_id"}
    # No reference to a member, no time, no counter.
    assert {fk.column.table.name for fk in ballot.foreign_keys} == {"poll", "polloption"}
    assert not any(isinstance(c.type, sa.DateTime) for c in ballot.c)
    assert [c.name for c in ballot.primary_key] == ["id"] and not ballot.c.id.autoincrement
    assert ballot.dialect_options["sqlite"]["with_rowid"] is False
    # The only columns the two share are the poll's.
    assert set(ballot.c.keys()) & set(roll.c.keys()) == {"poll_id"}


async def test_the_ballot_table_has_no_hidden_row_counter(runtime, clock):
    """SQLite numbers rows of ordinary tables in insertion order (rowid); PostgreSQL has no
    such column since version 12 (oid). Neither exists for the ballot box."""
    await secret_poll(runtime, clock, voters=3)
    hidden = "oid" if is_postgresql(runtime) else "rowid"
    async with runtime.engine.connect() as connection:
        with pytest.raises((OperationalError, ProgrammingError)):
            await connection.execute(sa.text(f"SELECT {hidden} FROM pollballot"))


async def test_ballot_keys_and_receipts_are_random_and_say_nothing_about_order(runtime, clock):
    view, people, receipts = await secret_poll(runtime, clock)
    ballots = await stored_ballots(runtime, view.poll.id)
    assert len(ballots) == VOTERS
    ids = [b["id"] for b in ballots]
    # Stored in the order of their random keys, whatever the order of voting was.
    assert ids == sorted(ids)
    async with transaction(runtime.sessions) as session:
        by_receipt = dict((await session.exec(select(PollBallot.receipt, PollBallot.id))).all())
    in_voting_order = [by_receipt[receipts[p.id]] for p in people]
    assert in_voting_order != sorted(in_voting_order)  # 1 in 40! that random keys fall so
    assert len(set(receipts.values())) == VOTERS
    assert all(re.fullmatch(r"[0-9A-HJKMNP-TV-Z]{8}", r) for r in receipts.values())


async def linkage_attack(runtime, view, people, shift: int = 0) -> int:
    """The attack: pair the k-th voter (in the order the database records votes) with the
    k-th ballot (by writing transaction, then storage order); count pairs that match."""
    roll = await stored_roll(runtime, view.poll.id)
    ballots = await stored_ballots(runtime, view.poll.id)
    if is_postgresql(runtime):
        ballots.sort(key=lambda b: int(b["xmin"]))  # stable: storage order within a txn
    position = {o.id: o.position for o in view.options}
    index = {p.id: n for n, p in enumerate(people)}
    return sum(
        1
        for voter, ballot in zip(roll, ballots, strict=True)
        if choice_of(index[voter["member_id"]] + shift) == position[ballot["option_id"]]
    )


def first_option(ballots) -> int:
    return min(b["option_id"] for b in ballots)


async def test_storage_order_and_transactions_do_not_link_a_ballot_to_its_voter(runtime, clock):
    """Voter n chose option 1 + n % 4. With any surviving link, pairing rows in storage or
    transaction order would recover nearly all 40; by chance it recovers about 10."""
    view, people, _ = await secret_poll(runtime, clock)
    if is_postgresql(runtime):
        roll = await stored_roll(runtime, view.poll.id)
        ballots = await stored_ballots(runtime, view.poll.id)
        # Every vote was written in its own transaction, and the roll shows that order...
        assert len({r["xmin"] for r in roll}) == VOTERS
        # ...but the ballot box was rewritten with each vote: one transaction, key order.
        assert len({b["xmin"] for b in ballots}) == 1
        assert ballots[0]["xmin"] == roll[-1]["xmin"]
    during = await linkage_attack(runtime, view, people)
    assert during < 25
    async with transaction(runtime.sessions) as session:
        minji = (await session.exec(select(Member).where(Member.telegram_user_id == MINJI))).one()
        await polls.close_poll(session, poll_id=view.poll.id, actor=minji, now=clock.now())
    if is_postgresql(runtime):
        ballots = await stored_ballots(runtime, view.poll.id)
        roll = await stored_roll(runtime, view.poll.id)
        assert len({b["xmin"] for b in ballots}) == 1
        assert ballots[0]["xmin"] not in {r["xmin"] for r in roll}  # written at closing
        assert [b["id"] for b in ballots] == sorted(b["id"] for b in ballots)
    after = await linkage_attack(runtime, view, people)
    assert after < 25


async def test_whoever_chose_what_the_database_looks_the_same(runtime, clock, database):
    """Two worlds: the same people vote in the same order, but who chose what is swapped.
    Everything a query sees — the roll, the ballots' contents, the order they are stored
    in relative to their random keys, the transactions that wrote them — is the same."""

    async def observe(shift: int) -> dict:
        view, people, _ = await secret_poll(runtime, clock, shift=shift)
        roll = await stored_roll(runtime, view.poll.id)
        ballots = await stored_ballots(runtime, view.poll.id)
        names = {p.id: p.display_name for p in people}
        observed = {
            "roll": [names[r["member_id"]] for r in roll],
            "choices": sorted(b["option_id"] - first_option(ballots) for b in ballots),
            "stored_in_key_order": [b["id"] for b in ballots] == sorted(b["id"] for b in ballots),
        }
        if is_postgresql(runtime):
            roll_xmins = [r["xmin"] for r in roll]
            observed["ballot_transactions"] = sorted(
                roll_xmins.index(b["xmin"]) if b["xmin"] in roll_xmins else -1 for b in ballots
            )
        async with runtime.engine.begin() as connection:
            for table in reversed(SQLModel.metadata.sorted_tables):
                await connection.execute(table.delete())
        return observed

    world_a = await observe(shift=0)
    world_b = await observe(shift=1)  # everyone chose the next option instead
    assert world_a == world_b
    assert world_a["stored_in_key_order"]


def _points_at(table: sa.Table, target: str) -> bool:
    return any(fk.column.table.name == target for fk in table.foreign_keys)


def test_only_open_votes_put_a_person_and_a_choice_in_one_row():
    """Which tables could hold a person next to a choice: only PollVote (open ballots)."""
    person_columns = {"member_id", "actor_member_id", "telegram_user_id", "user_id", "chat_id"}
    both = [
        table.name
        for table in SQLModel.metadata.sorted_tables
        if (_points_at(table, "member") or person_columns & set(table.c.keys()))
        and (_points_at(table, "polloption") or "receipt" in table.c)
    ]
    assert both == ["pollvote"]


async def test_no_other_table_holds_a_receipt_or_a_secret_choice(runtime, clock):
    """Receipts live only in the ballot box; no audit entry, outbox message or conversation
    state records a secret vote."""
    _, _, receipts = await secret_poll(runtime, clock, voters=6)
    async with runtime.engine.connect() as connection:
        for table in SQLModel.metadata.sorted_tables:
            if table.name == "pollballot":
                continue
            for row in (await connection.execute(sa.select(table))).all():
                text = " ".join(str(value) for value in row)
                assert not any(receipt in text for receipt in receipts.values()), table.name
    async with transaction(runtime.sessions) as session:
        actions = (await session.exec(select(models.AuditLog.action))).all()
        states = (await session.exec(select(models.ConversationState))).all()
        deliveries = (await session.exec(select(models.Delivery))).all()
        votes = (await session.exec(select(models.PollVote))).all()
    assert actions == ["org.create", "poll.create"]
    assert states == [] and deliveries == [] and votes == []

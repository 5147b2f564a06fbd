"""Our instant-runoff count (SQL, one query per round) against an independent one: pyrankvote.

Random elections of 2–6 options and up to 40 ballots, each ranking some of the options.
Where the rules leave room for choice — ties for fewest votes (pyrankvote then looks at
later preferences, and in the end draws lots), and a candidate with exactly half (pyrankvote
elects at half, we keep counting) — the example is skipped; everywhere else both must elect
the same option, and agree on the first round.
"""

from __future__ import annotations

import math
import random
import secrets

import pyrankvote
import sqlalchemy as sa
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from pyrankvote import Ballot, Candidate

from bot.services import polls
from models import (
    BallotKind,
    Eligibility,
    Poll,
    PollBallot,
    PollKind,
    PollOption,
    PollStatus,
    PollVote,
    Weighting,
)
from tests.factories import MINJI, make_member, make_org


@st.composite
def elections(draw):
    options = draw(st.integers(min_value=2, max_value=6))
    ranking = st.permutations(range(1, options + 1)).flatmap(
        lambda order: st.integers(min_value=1, max_value=options).map(lambda k: order[:k])
    )
    ballots = draw(st.lists(ranking, min_size=1, max_size=40))
    secret = draw(st.booleans())
    return options, ballots, secret


def reference_winner(options: int, ballots: list[list[int]]) -> str | None:
    """pyrankvote's winner, or None when its result depends on drawing lots."""
    candidates = [Candidate(str(n)) for n in range(1, options + 1)]
    winners = set()
    for seed in range(4):
        random.seed(seed)
        result = pyrankvote.instant_runoff_voting(
            candidates,
            [Ballot(ranked_candidates=[candidates[n - 1] for n in b]) for b in ballots],
        )
        winners.add(result.get_winners()[0].name)
    random.seed()
    return winners.pop() if len(winners) == 1 else None


async def count(session, org, people, options: int, ballots, secret: bool) -> polls.Results:
    poll = Poll(
        organization_id=org.id,
        question="irv",
        kind=PollKind.RANKED,
        ballot=BallotKind.SECRET if secret else BallotKind.OPEN,
        eligibility=Eligibility.ANYONE,
        weighting=Weighting.EQUAL,
        status=PollStatus.CLOSED,
        created_at=people[0].created_at,
    )
    session.add(poll)
    await session.flush()
    option_rows = [PollOption(poll_id=poll.id, position=n) for n in range(1, options + 1)]
    session.add_all(option_rows)
    await session.flush()
    ids = {o.position: o.id for o in option_rows}
    rows = []
    for person, ranking in zip(people, ballots, strict=False):
        receipt = polls.new_receipt() + secrets.token_hex(2)
        for rank, position in enumerate(ranking, start=1):
            row = {"poll_id": poll.id, "option_id": ids[position], "rank": rank, "weight": 1.0}
            if secret:
                row.update(id=polls.new_ballot_id(), receipt=receipt)
            else:
                row.update(member_id=person.id, voted_at=person.created_at)
            rows.append(row)
    await session.exec(sa.insert(PollBallot if secret else PollVote), params=rows)
    return await polls.tally(session, await polls.load(session, poll.id))


def decided_without_ties(results: polls.Results) -> bool:
    """No tie for fewest and never exactly half: where IRV rule sets may differ."""
    if results.tie_broken:
        return False
    for round_ in results.rounds:
        amounts = [results.amount(c) for c in round_.counts]
        if any(math.isclose(a * 2, round_.continuing) for a in amounts):
            return False
        low = min(amounts)
        if round_.eliminated is not None and sum(math.isclose(a, low) for a in amounts) > 1:
            return False
    return True


_PEOPLE: dict[int, tuple] = {}


async def voters(session, clock):
    """An organisation and 40 people, made once per test (hypothesis reuses the session)."""
    if id(session) not in _PEOPLE:
        now = clock.now()
        minji = await make_member(session, MINJI, "민지", now=now)
        org = await make_org(session, minji, now=now)
        people = [await make_member(session, 30_000 + n, f"v{n}", now=now) for n in range(40)]
        _PEOPLE.clear()
        _PEOPLE[id(session)] = (org, people)
    return _PEOPLE[id(session)]


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(election=elections())
async def test_instant_runoff_agrees_with_pyrankvote(session, clock, election):
    options, ballots, secret = election
    org, people = await voters(session, clock)
    results = await count(session, org, people, options, ballots, secret)
    first = [c.votes for c in results.rounds[0].counts]
    assert first == [sum(1 for b in ballots if b[0] == n) for n in range(1, options + 1)]
    assert results.voters == len(ballots)
    reference = reference_winner(options, ballots)
    assume(reference is not None and decided_without_ties(results))
    assert results.winner is not None
    assert str(results.winner.position) == reference

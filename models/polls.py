"""Polls and binding member votes: polls, options, open votes, and secret ballots.

Open votes (``PollVote``) name the voter: organisers may see who chose what, and a voter may
change the vote until the poll closes. Secret ballots are split in two tables that share
nothing but the poll: ``PollVoter`` (the voter roll: who has voted) and ``PollBallot`` (what
was chosen, under a random receipt code). A ballot row has no member id, no time, and no
ordering that follows the order of voting: its key is random, the table has no hidden rowid
on SQLite (WITHOUT ROWID), and on PostgreSQL the rows are re-written in random key order as
votes come in and once more at closing (see ``bot.services.polls``), so neither row order nor
the writing transaction links a ballot to the roll.
"""

from __future__ import annotations

import datetime as dt

import sqlalchemy as sa
from sqlmodel import Field, SQLModel

from models.base import StrEnum, enum_field, when


class PollKind(StrEnum):
    """How people answer."""

    SINGLE = "single"  # one option
    MULTIPLE = "multiple"  # up to max_choices options
    PROPOSAL = "proposal"  # agree / abstain / disagree / block
    RANKED = "ranked"  # options in order of preference; counted by instant runoff


class BallotKind(StrEnum):
    """Who can see who chose what."""

    OPEN = "open"  # organisers see names; a vote can be changed until closing
    SECRET = "secret"  # nobody can link a person to a choice; a ballot is final


class Eligibility(StrEnum):
    """Who may vote."""

    ANYONE = "anyone"  # every registered person who taps
    MEMBERS = "members"  # members of the organisation (and of a network's groups)
    FULL = "full"  # full members only


class Weighting(StrEnum):
    """What a vote weighs."""

    EQUAL = "equal"  # one person, one vote
    TIER = "tier"  # the tier's weight from the configuration (tiers.full_weight, ...)


class QuorumKind(StrEnum):
    """How many must take part for the result to count."""

    NONE = "none"
    COUNT = "count"  # at least quorum_value voters
    PERCENT = "percent"  # at least quorum_value % of the eligible members


class PollStatus(StrEnum):
    """Life of a poll."""

    OPEN = "open"
    CLOSED = "closed"
    DELETED = "deleted"


class Poll(SQLModel, table=True):
    """A question put to an organisation's members (or to everyone who taps)."""

    __table_args__ = (sa.Index("ix_poll_org_status", "organization_id", "status"),)

    id: int | None = Field(default=None, primary_key=True)
    organization_id: int = Field(foreign_key="organization.id", ondelete="CASCADE")
    created_by: int | None = Field(default=None, foreign_key="member.id", ondelete="SET NULL")
    question: str = Field(max_length=300)
    kind: PollKind = enum_field(PollKind.SINGLE)
    ballot: BallotKind = enum_field(BallotKind.OPEN)
    eligibility: Eligibility = enum_field(Eligibility.ANYONE)
    weighting: Weighting = enum_field(Weighting.EQUAL)
    max_choices: int = Field(default=1)  # multiple choice: at most this many
    quorum_kind: QuorumKind = enum_field(QuorumKind.NONE)
    quorum_value: int = Field(default=0)
    live_results: bool = Field(default=True)  # False: counts only after closing
    closes_at: dt.datetime | None = when()
    nudge_minutes: int | None = Field(default=None)  # remind non-voters this long before
    status: PollStatus = enum_field(PollStatus.OPEN)
    created_at: dt.datetime = when(nullable=False)
    closed_at: dt.datetime | None = when()
    # Eligible members when the poll closed: turnout and quorum stay as they were decided.
    eligible_at_close: int | None = Field(default=None)

    @property
    def title(self) -> str:
        """What lists and /post call the poll."""
        return self.question

    @property
    def is_open(self) -> bool:
        """Votes are still taken."""
        return self.status == PollStatus.OPEN

    @property
    def is_secret(self) -> bool:
        """A secret ballot."""
        return self.ballot == BallotKind.SECRET


class PollOption(SQLModel, table=True):
    """One answer of a poll, shown at ``position`` (1, 2, ...)."""

    __table_args__ = (sa.UniqueConstraint("poll_id", "position"),)

    id: int | None = Field(default=None, primary_key=True)
    poll_id: int = Field(foreign_key="poll.id", ondelete="CASCADE")
    position: int
    label: str = Field(default="", max_length=100)
    # Proposals: agree / abstain / disagree / block (labels come from the translations).
    code: str | None = Field(default=None, max_length=16)


class PollVote(SQLModel, table=True):
    """One choice of an open vote; ``rank`` 1 is the first (or only) choice.

    Single choice and proposals have one row per voter; multiple choice one per chosen option
    (rank 1, 2, ... in option order); ranked choice one per ranked option (rank = preference).
    """

    __table_args__ = (
        # Counting reads only this index: votes and weight per option, per group.
        sa.Index("ix_pollvote_tally", "poll_id", "option_id", "organization_id", "rank", "weight"),
        # SQLite: the rows themselves in ballot order (runoff rounds read them in one pass).
        {"sqlite_with_rowid": False},
    )

    poll_id: int = Field(foreign_key="poll.id", ondelete="CASCADE", primary_key=True)
    member_id: int = Field(foreign_key="member.id", ondelete="CASCADE", primary_key=True)
    rank: int = Field(default=1, primary_key=True)
    option_id: int = Field(foreign_key="polloption.id", ondelete="CASCADE")
    weight: float = Field(default=1.0)
    # The voter's group when a network votes (results per member organisation).
    organization_id: int | None = Field(default=None)
    reason: str | None = Field(default=None, max_length=500)  # proposals: why
    voted_at: dt.datetime = when(nullable=False)


class PollVoter(SQLModel, table=True):
    """The voter roll of a secret ballot: this member has voted (and nothing about how)."""

    poll_id: int = Field(foreign_key="poll.id", ondelete="CASCADE", primary_key=True)
    member_id: int = Field(foreign_key="member.id", ondelete="CASCADE", primary_key=True)


class PollBallot(SQLModel, table=True):
    """One choice of a secret ballot, under the ballot's receipt code.

    No member id, no time, and a random key: nothing here points back at the voter roll.
    """

    __table_args__ = (
        sa.UniqueConstraint("poll_id", "receipt", "rank"),
        sa.Index(
            "ix_pollballot_tally", "poll_id", "option_id", "organization_id", "rank", "weight"
        ),
        sa.Index("ix_pollballot_receipt", "receipt"),
        # Runoff rounds read each ballot's choices in rank order from this index alone.
        sa.Index("ix_pollballot_ballot", "poll_id", "receipt", "rank", "option_id", "weight"),
        # SQLite would otherwise keep a hidden rowid that counts up in the order of voting.
        {"sqlite_with_rowid": False},
    )

    # Random 63-bit key (bot.services.polls.new_ballot_id): its order says nothing.
    id: int = Field(
        sa_type=sa.BigInteger(), primary_key=True, sa_column_kwargs={"autoincrement": False}
    )
    poll_id: int = Field(foreign_key="poll.id", ondelete="CASCADE")
    receipt: str = Field(max_length=16)
    option_id: int = Field(foreign_key="polloption.id", ondelete="CASCADE")
    rank: int = Field(default=1)
    weight: float = Field(default=1.0)
    # The voter's group when a network votes; empty otherwise (less to link by).
    organization_id: int | None = Field(default=None)

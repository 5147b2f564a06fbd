"""All tables; importing this package registers every table on SQLModel.metadata."""

from models.cards import PostedCard
from models.members import BotAdmin, Member
from models.organizations import (
    LinkedChat,
    Membership,
    NetworkMember,
    Organization,
    OrgKind,
    Role,
    Tier,
)
from models.polls import (
    BallotKind,
    Eligibility,
    Poll,
    PollBallot,
    PollKind,
    PollOption,
    PollStatus,
    PollVote,
    PollVoter,
    QuorumKind,
    Weighting,
)
from models.system import (
    AuditLog,
    ConversationState,
    Delivery,
    DeliveryStatus,
    JobStatus,
    ProcessedUpdate,
    ScheduledJob,
)

__all__ = [
    "AuditLog",
    "BallotKind",
    "BotAdmin",
    "ConversationState",
    "Delivery",
    "DeliveryStatus",
    "Eligibility",
    "JobStatus",
    "LinkedChat",
    "Member",
    "Membership",
    "NetworkMember",
    "OrgKind",
    "Organization",
    "Poll",
    "PollBallot",
    "PollKind",
    "PollOption",
    "PollStatus",
    "PollVote",
    "PollVoter",
    "PostedCard",
    "ProcessedUpdate",
    "QuorumKind",
    "Role",
    "ScheduledJob",
    "Tier",
    "Weighting",
]

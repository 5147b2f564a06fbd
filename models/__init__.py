"""All tables; importing this package registers every table on SQLModel.metadata."""

from models.broadcasts import Broadcast, BroadcastStatus
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
    "BotAdmin",
    "Broadcast",
    "BroadcastStatus",
    "ConversationState",
    "Delivery",
    "DeliveryStatus",
    "JobStatus",
    "LinkedChat",
    "Member",
    "Membership",
    "NetworkMember",
    "OrgKind",
    "Organization",
    "PostedCard",
    "ProcessedUpdate",
    "Role",
    "ScheduledJob",
    "Tier",
]

"""All tables; importing this package registers every table on SQLModel.metadata."""

from models.campaigns import Campaign, CampaignStatus, Signup, SignupStatus, SurveyResponse
from models.cards import PostedCard
from models.meetings import (
    Answer,
    CheckinMethod,
    Meeting,
    MeetingAttendance,
    MeetingOccurrence,
    MeetingRsvp,
    ReminderAudience,
)
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
    "Answer",
    "AuditLog",
    "BotAdmin",
    "Campaign",
    "CampaignStatus",
    "CheckinMethod",
    "ConversationState",
    "Delivery",
    "DeliveryStatus",
    "JobStatus",
    "LinkedChat",
    "Meeting",
    "MeetingAttendance",
    "MeetingOccurrence",
    "MeetingRsvp",
    "Member",
    "Membership",
    "NetworkMember",
    "OrgKind",
    "Organization",
    "PostedCard",
    "ProcessedUpdate",
    "ReminderAudience",
    "Role",
    "ScheduledJob",
    "Signup",
    "SignupStatus",
    "SurveyResponse",
    "Tier",
]

"""Domain errors: what went wrong, in words a handler turns into a friendly message.

Each error names a ``feature`` and a ``code``; the message lives in the template
``<feature>/errors.html`` under that code. Services raise them *before* writing anything;
handlers roll back whatever happened anyway.
"""

from __future__ import annotations

from typing import Any, ClassVar


class DomainError(Exception):
    """Base class of every expected failure a person can cause."""

    feature: ClassVar[str] = "common"
    code: ClassVar[str] = "error"

    def __init__(self, **params: Any) -> None:
        super().__init__(self.code)
        self.params = params


class PermissionDenied(DomainError):
    """Someone tried something their role does not allow; written to the audit log."""

    code = "not_allowed"


class NotRegistered(DomainError):
    """The person has not consented yet (or deleted their data)."""

    code = "not_registered"


class NotAdmin(PermissionDenied):
    """Only the bot's administrators may do this."""

    code = "not_admin"


class NotOrganizer(PermissionDenied):
    """Only an organisation's organisers may do this."""

    code = "not_organizer"


class OrganizationNotFound(DomainError):
    """No organisation with that name/slug (or the person is not in it)."""

    code = "org_not_found"


class InvalidInput(DomainError):
    """Input that cannot be used; ``params['field']`` says which and ``params`` how."""

    code = "invalid_input"


class SlugTaken(DomainError):
    """Another organisation already uses this short name."""

    code = "slug_taken"


class SensitiveConsentRequired(DomainError):
    """Joining this organisation needs the separate consent for sensitive information."""

    code = "sensitive_consent_required"


class ChooseOrganization(DomainError):
    """The person is an organiser of several organisations: they must say which."""

    code = "choose_org"


class StaleButton(DomainError):
    """A button whose data no longer matches anything (old, tampered, or for someone else)."""

    code = "stale_button"


class TooYoung(DomainError):
    """Under the minimum age: cannot register."""

    code = "too_young"

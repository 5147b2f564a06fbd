"""Telegram handlers, one module per feature; each module's ``register(app)`` wires it in."""

from handlers import (
    broadcasts,
    campaigns,
    cards,
    errors,
    meetings,
    members,
    organizations,
    petitions,
    polls,
)

# Order matters only for handlers in the same group: earlier features win.
FEATURES = (
    members,
    organizations,
    cards,
    polls,
    meetings,
    campaigns,
    petitions,
    broadcasts,
)


def register_all(app) -> None:
    """Add every feature's handlers and the error handler to the application."""
    for feature in FEATURES:
        feature.register(app)
    members.register_fallbacks(app)
    errors.register(app)

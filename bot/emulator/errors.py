"""Errors raised inside the emulator: Bot API answers and misuse of the injection API."""

from __future__ import annotations

from typing import Any


class ApiError(Exception):
    """A Bot API error answer, turned into `{"ok": false, ...}` by the server."""

    def __init__(self, code: int, description: str, parameters: dict[str, Any] | None = None):
        super().__init__(description)
        self.code = code
        self.description = description
        self.parameters = parameters

    def to_body(self) -> dict[str, Any]:
        """Return the JSON body Telegram would send for this error."""
        body: dict[str, Any] = {
            "ok": False,
            "error_code": self.code,
            "description": self.description,
        }
        if self.parameters:
            body["parameters"] = self.parameters
        return body


class EmulatorError(Exception):
    """A test or the sandbox asked the emulator for something a real client could not do."""


def bad_request(description: str, parameters: dict[str, Any] | None = None) -> ApiError:
    """Return a 400 error with Telegram's "Bad Request: " prefix."""
    return ApiError(400, "Bad Request: " + description, parameters)


def forbidden(description: str) -> ApiError:
    """Return a 403 error with Telegram's "Forbidden: " prefix."""
    return ApiError(403, "Forbidden: " + description)


def not_found() -> ApiError:
    """Return the 404 Telegram gives for an unknown method."""
    return ApiError(404, "Not Found")


def unauthorized() -> ApiError:
    """Return the 401 Telegram gives for an unknown token."""
    return ApiError(401, "Unauthorized")

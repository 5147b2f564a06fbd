"""The Bot API as data: which methods exist and what their parameters must look like.

`spec.json` (MIT, see LICENSE-spec) lists every method and type with field names, types and
whether each is required. This module turns a request's raw parameters into typed values and
rejects what does not fit, with Telegram-like descriptions.
"""

from __future__ import annotations

import functools
import json
import re
from dataclasses import dataclass
from importlib import resources
from typing import Any

from bot.emulator.errors import bad_request

SCALARS = frozenset({"Integer", "String", "Boolean", "Float", "InputFile"})

# PTB's `Defaults` inject these into every method built on `Bot._send_message`, also into
# methods that do not take them (editMessageText gets disable_notification, ...). Telegram
# ignores unknown parameters, so rejecting these would fail a test where Telegram would not.
PTB_INJECTED_PARAMS = frozenset({"disable_notification", "protect_content", "parse_mode"})

# setWebhook(url="") is Telegram's documented way to remove a webhook.
_KEEP_EMPTY = frozenset({("setWebhook", "url")})
_INT_RE = re.compile(r"[+-]?\d+\Z")
_FLOAT_RE = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?\Z")
_TRUE = frozenset({"true", "1"})
_FALSE = frozenset({"false", "0"})

# Telegram names the object it failed to parse in its own words for a few types.
_HUMAN_NAMES = {
    "InlineKeyboardButton": "inline keyboard button",
    "KeyboardButton": "keyboard button",
}


@dataclass(frozen=True, slots=True)
class Upload:
    """A file part of a multipart request."""

    filename: str
    data: bytes
    content_type: str


@dataclass(frozen=True, slots=True)
class FieldSpec:
    """One parameter of a method: its name, allowed types and whether it is required."""

    name: str
    types: tuple[str, ...]
    required: bool
    kind: str


@dataclass(frozen=True, slots=True)
class MethodSpec:
    """One Bot API method with its parameters."""

    name: str
    fields: dict[str, FieldSpec]
    required: tuple[str, ...]
    returns: tuple[str, ...]


class _InvalidError(Exception):
    """A nested value did not fit; carries the path and what was expected."""

    def __init__(self, path: str, message: str, owner: str | None = None):
        super().__init__(f'Field "{path}" {message}' if path else message)
        self.path = path
        self.message = message
        self.owner = owner


def _field_kind(types: tuple[str, ...]) -> str:
    """Classify a parameter by how its form-encoded string must be converted."""
    kinds = set(types)
    if kinds == {"String"}:
        return "string"
    if kinds == {"Integer"}:
        return "int"
    if kinds == {"Float"}:
        return "float"
    if kinds == {"Boolean"}:
        return "bool"
    if kinds == {"Integer", "String"}:
        return "int_or_string"
    if kinds == {"InputFile"}:
        return "file"
    if kinds == {"InputFile", "String"}:
        return "file_or_string"
    return "json"


def _describe(types: tuple[str, ...]) -> str:
    return " or ".join(types)


class Spec:
    """The parsed spec: method lookup and parameter validation."""

    def __init__(self, raw: dict[str, Any]):
        self.version: str = raw.get("bot_api_version", "")
        self.types: dict[str, dict[str, Any]] = raw["types"]
        self.methods: dict[str, MethodSpec] = {}
        self._by_lower: dict[str, str] = {}
        for name, body in raw["methods"].items():
            fields = {
                f["name"]: FieldSpec(
                    f["name"],
                    tuple(f["types"]),
                    bool(f["required"]),
                    _field_kind(tuple(f["types"])),
                )
                for f in body["fields"]
            }
            required = tuple(n for n, f in fields.items() if f.required)
            self.methods[name] = MethodSpec(name, fields, required, tuple(body["returns"]))
            self._by_lower[name.lower()] = name
        self._type_fields: dict[str, dict[str, tuple[tuple[str, ...], bool]]] = {}
        self._discriminators: dict[str, dict[str, str]] = {}
        self._type_required: dict[str, tuple[str, ...]] = {}

    def method(self, name: str) -> MethodSpec | None:
        """Return the method spec; Telegram matches method names case-insensitively."""
        canonical = self._by_lower.get(name.lower())
        return self.methods[canonical] if canonical else None

    # -- request parameters ------------------------------------------------------------------

    def parse_params(
        self,
        method: MethodSpec,
        params: dict[str, Any],
        files: dict[str, Upload] | None = None,
    ) -> dict[str, Any]:
        """Convert and validate a call's parameters; raise ApiError(400) if they don't fit.

        String values follow the form-encoding rules (PTB sends every non-string value as a
        JSON string); other values come from a JSON body and are checked as JSON.
        """
        files = files or {}
        out: dict[str, Any] = {}
        fields = method.fields
        for key, raw in params.items():
            spec = fields.get(key)
            if spec is None:
                if key in PTB_INJECTED_PARAMS:
                    continue
                raise bad_request(f'unknown parameter "{key}" in method {method.name}')
            if raw is None or (raw == "" and (method.name, key) not in _KEEP_EMPTY):
                # Telegram treats an empty value as an absent one.
                continue
            out[key] = self._convert(spec, raw, files)
        for key, upload in files.items():
            spec = fields.get(key)
            if spec is not None and key not in out and spec.kind in ("file", "file_or_string"):
                out[key] = upload
        for key in method.required:
            if key not in out:
                raise _missing(method.name, key)
        return out

    def _convert(self, spec: FieldSpec, raw: Any, files: dict[str, Upload]) -> Any:
        kind = spec.kind
        if not isinstance(raw, str):
            if kind == "json":
                return self._check_top_json(spec, raw, files)
            if isinstance(raw, dict | list):
                expected = _describe(spec.types)
                raise bad_request(f'parameter "{spec.name}" must be of type {expected}')
            # A JSON body's numbers and booleans reach Telegram as their JSON text.
            raw = json.dumps(raw)
        if kind == "string":
            return raw
        if kind == "int":
            if _INT_RE.match(raw):
                return int(raw)
            raise bad_request(f'parameter "{spec.name}" must be of type Integer')
        if kind == "int_or_string":
            return int(raw) if _INT_RE.match(raw) else raw
        if kind == "bool":
            low = raw.lower()
            if low in _TRUE:
                return True
            if low in _FALSE:
                return False
            raise bad_request(f'parameter "{spec.name}" must be of type Boolean')
        if kind == "float":
            if _FLOAT_RE.match(raw):
                return float(raw)
            raise bad_request(f'parameter "{spec.name}" must be of type Float')
        if kind in ("file", "file_or_string"):
            if raw.startswith("attach://"):
                upload = files.get(raw[9:])
                if upload is None:
                    raise bad_request(f'file "{raw[9:]}" to attach is not found')
                return upload
            if kind == "file":
                raise bad_request(f'parameter "{spec.name}" must be of type InputFile')
            return raw
        try:
            value = json.loads(raw)
        except ValueError:
            raise bad_request(f"can't parse {spec.name} JSON object") from None
        return self._check_top_json(spec, value, files)

    def _check_top_json(self, spec: FieldSpec, value: Any, files: dict[str, Upload]) -> Any:
        try:
            return self.check(spec.types, value, "", files)
        except _InvalidError as err:
            where = _HUMAN_NAMES.get(err.owner or "") or spec.name
            field = err.path.rsplit(".", 1)[-1] if err.owner in _HUMAN_NAMES else err.path
            if field:
                message = f'Field "{field}" {err.message}'
                raise bad_request(f"can't parse {where}: {message}") from None
            raise bad_request(f"can't parse {where}: {err.message}") from None

    # -- JSON values -------------------------------------------------------------------------

    def check(
        self,
        types: tuple[str, ...],
        value: Any,
        path: str = "",
        files: dict[str, Upload] | None = None,
    ) -> Any:
        """Check a JSON value against a union of spec types; return it or raise _InvalidError."""
        if len(types) == 1:
            return self._check_one(types[0], value, path, files)
        objects = [t for t in types if t not in SCALARS and not t.startswith("Array of ")]
        if isinstance(value, dict) and objects:
            return self._check_candidates(objects, value, path, files)
        first_error: _InvalidError | None = None
        for type_name in types:
            if type_name in objects:
                continue
            try:
                return self._check_one(type_name, value, path, files)
            except _InvalidError as err:
                first_error = first_error or err
        raise _InvalidError(path, f"must be of type {_describe(types)}") from first_error

    def _check_one(
        self, type_name: str, value: Any, path: str, files: dict[str, Upload] | None
    ) -> Any:
        if type_name.startswith("Array of "):
            if not isinstance(value, list):
                raise _InvalidError(path, "must be an Array")
            item = type_name[9:]
            return [
                self._check_one(item, element, f"{path}[{index}]", files)
                for index, element in enumerate(value)
            ]
        if type_name == "String":
            if isinstance(value, str):
                return value
        elif type_name == "Integer":
            if isinstance(value, int) and not isinstance(value, bool):
                return value
        elif type_name == "Boolean":
            if isinstance(value, bool):
                return value
        elif type_name == "Float":
            if isinstance(value, int | float) and not isinstance(value, bool):
                return value
        elif type_name == "InputFile":
            attached = value[9:] if isinstance(value, str) and value[:9] == "attach://" else None
            if attached is not None and files is not None and attached in files:
                return files[attached]
        else:
            return self._check_object(type_name, value, path, files)
        raise _InvalidError(path, f"must be of type {type_name}")

    def _check_object(
        self, type_name: str, value: Any, path: str, files: dict[str, Upload] | None
    ) -> Any:
        body = self.types.get(type_name)
        if body is None:
            raise _InvalidError(path, f"has unknown type {type_name}")
        if not body["fields"] and body["subtypes"]:
            subtypes = tuple(body["subtypes"])
            if isinstance(value, dict):
                tagged = self._tagged_subtype(type_name, subtypes, value)
                if tagged is not None:
                    return self._check_object(tagged, value, path, files)
                objects = [s for s in subtypes if s not in SCALARS and not s.startswith("Array")]
                return self._check_candidates(objects, value, path, files)
            return self.check(subtypes, value, path, files)
        if not isinstance(value, dict):
            raise _InvalidError(path, f"must be of type {type_name}", type_name)
        fields = self._fields(type_name)
        prefix = f"{path}." if path else ""
        out: dict[str, Any] = {}
        for key, item in value.items():
            field = fields.get(key)
            if field is None:
                if not fields:
                    # Placeholder types (CallbackGame, ...) hold no information.
                    continue
                raise _InvalidError(prefix + key, "is not a known field", type_name)
            try:
                out[key] = self.check(field[0], item, prefix + key, files)
            except _InvalidError as err:
                if err.owner is None:
                    err.owner = type_name
                raise
        for key in self._required(type_name):
            if key not in value:
                raise _InvalidError(prefix + key, "is required", type_name)
        return out

    def _fields(self, type_name: str) -> dict[str, tuple[tuple[str, ...], bool]]:
        cached = self._type_fields.get(type_name)
        if cached is None:
            cached = {
                f["name"]: (tuple(f["types"]), bool(f["required"]))
                for f in self.types[type_name]["fields"]
            }
            self._type_fields[type_name] = cached
        return cached

    def _required(self, type_name: str) -> tuple[str, ...]:
        cached = self._type_required.get(type_name)
        if cached is None:
            cached = tuple(k for k, (_t, req) in self._fields(type_name).items() if req)
            self._type_required[type_name] = cached
        return cached

    def _check_candidates(
        self,
        candidates: list[str],
        value: dict[str, Any],
        path: str,
        files: dict[str, Upload] | None,
    ) -> Any:
        """Check against the object alternatives whose required fields the value has.

        The first that fits wins; if none does, the first candidate's error is reported.
        """
        fitting = [
            name
            for name in candidates
            if name in self.types and all(key in value for key in self._required(name))
        ]
        first_error: _InvalidError | None = None
        for name in fitting or candidates[:1]:
            try:
                return self._check_object(name, value, path, files)
            except _InvalidError as err:
                first_error = first_error or err
        assert first_error is not None
        raise first_error

    def _tagged_subtype(
        self, parent: str, subtypes: tuple[str, ...], value: dict[str, Any]
    ) -> str | None:
        """The subtype named by the value's "type" (MenuButtonWebApp for "web_app", ...)."""
        tag = value.get("type")
        if not isinstance(tag, str):
            return None
        table = self._discriminators.get(parent)
        if table is None:
            table = {_snake(s[len(parent) :]): s for s in subtypes if s.startswith(parent)}
            self._discriminators[parent] = table
        return table.get(tag)


def _snake(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


def _missing(method: str, key: str) -> Exception:
    # Telegram's own words for the parameters every sender forgets.
    if key == "text" and method in ("sendMessage", "editMessageText"):
        return bad_request("message text is empty")
    if key == "chat_id":
        return bad_request("chat_id is empty")
    return bad_request(f'parameter "{key}" is required')


@functools.cache
def load_spec() -> Spec:
    """Load the bundled spec.json once, on first use."""
    raw = resources.files("bot.emulator").joinpath("spec.json").read_text(encoding="utf-8")
    return Spec(json.loads(raw))

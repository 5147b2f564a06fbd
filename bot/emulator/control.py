"""The HTTP control API under /_emulator/: the injection and read methods as JSON calls."""

from __future__ import annotations

import base64
import dataclasses
import inspect
from typing import Any

from bot.emulator.emulator import CallbackPress, Emulator
from bot.emulator.errors import EmulatorError
from bot.emulator.limits import Faults

# Methods reachable over HTTP; each takes and returns JSON-able values (bytes travel as
# {"$bytes": base64}).
CONTROL_METHODS = frozenset(
    {
        "create_bot",
        "create_user",
        "create_group",
        "create_channel",
        "add_member",
        "remove_member",
        "add_bot_to_group",
        "promote",
        "migrate_to_supergroup",
        "send_text",
        "send_document",
        "send_photo",
        "open_chats",
        "edit_text",
        "press",
        "press_many",
        "send_many",
        "answer_report",
        "wait_for_answer",
        "callback_answer",
        "block_bot",
        "unblock_bot",
        "channel_post",
        "messages",
        "all_bot_messages",
        "wait_for_message",
        "history",
        "pending_updates",
        "webhook_deliveries",
        "commands",
        "chat_info",
        "chat_action",
        "set_webhook_targets",
        "redeliver",
        "reset_rate_limits",
        "reset_stats",
        "stats",
        "seq",
        "get_limits",
        "set_limits",
        "get_faults",
        "set_faults",
    }
)


def encode(value: Any) -> Any:
    """Make a value JSON-able: bytes become {"$bytes": base64}, dataclasses dicts."""
    if isinstance(value, bytes):
        return {"$bytes": base64.b64encode(value).decode("ascii")}
    if isinstance(value, dict):
        return {str(k): encode(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [encode(v) for v in value]
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return encode(dataclasses.asdict(value))
    return value


def decode(value: Any) -> Any:
    """Undo `encode`: {"$bytes": ...} back to bytes."""
    if isinstance(value, dict):
        if len(value) == 1 and "$bytes" in value:
            return base64.b64decode(value["$bytes"])
        return {k: decode(v) for k, v in value.items()}
    if isinstance(value, list):
        return [decode(v) for v in value]
    return value


async def handle_control(emulator: Emulator, name: str, args: Any) -> tuple[int, dict[str, Any]]:
    """Run one control call; return (HTTP status, JSON body)."""
    if name not in CONTROL_METHODS:
        return 404, {"ok": False, "error": f"unknown control method {name!r}", "type": "NotFound"}
    if not isinstance(args, dict):
        return 400, {"ok": False, "error": "JSON object expected", "type": "TypeError"}
    args = decode(args)
    try:
        result = await _run(emulator, name, args)
    except EmulatorError as exc:
        return 400, {"ok": False, "error": str(exc), "type": "EmulatorError"}
    except TimeoutError as exc:
        return 408, {"ok": False, "error": str(exc), "type": "TimeoutError"}
    except (TypeError, ValueError, KeyError) as exc:
        return 400, {"ok": False, "error": f"{type(exc).__name__}: {exc}", "type": "TypeError"}
    return 200, {"ok": True, "result": encode(result)}


async def _run(emulator: Emulator, name: str, args: dict[str, Any]) -> Any:
    if name == "stats":
        return emulator.stats.as_dict()
    if name == "seq":
        return emulator.seq
    if name == "get_limits":
        return dataclasses.asdict(emulator.limits)
    if name == "set_limits":
        known = {f.name for f in dataclasses.fields(emulator.limits)}
        for key, value in args.items():
            if key not in known:
                raise TypeError(f"unknown limit {key!r}")
            setattr(emulator.limits, key, value)
        return dataclasses.asdict(emulator.limits)
    if name == "get_faults":
        return dataclasses.asdict(emulator.faults)
    if name == "set_faults":
        emulator.set_faults(Faults(**args))
        return dataclasses.asdict(emulator.faults)
    if name == "wait_for_message":
        contains = args.pop("text_contains", None)
        if contains is not None:
            args["predicate"] = lambda record: contains in (record.get("text") or "")
    result = getattr(emulator, name)(**args)
    if inspect.isawaitable(result):
        result = await result
    if isinstance(result, CallbackPress):
        return dataclasses.asdict(result)
    return result

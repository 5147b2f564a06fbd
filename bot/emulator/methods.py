"""The Bot API methods the emulator implements, with Telegram's result shapes and errors."""

from __future__ import annotations

import asyncio
import contextlib
import json
import mimetypes
import re
import time
from collections.abc import Awaitable, Callable
from typing import Any

from bot.emulator.content import (
    MAX_CALLBACK_ANSWER,
    check_bot_command,
    check_caption,
    check_inline_keyboard,
    check_reply_keyboard,
    check_text,
    format_text,
    image_size,
)
from bot.emulator.core import EmulatorCore
from bot.emulator.errors import ApiError, bad_request
from bot.emulator.spec import Upload
from bot.emulator.state import (
    DEFAULT_UPDATE_KINDS,
    BotState,
    Chat,
    FileRecord,
    StoredMessage,
    WebhookConfig,
)

Handler = Callable[[BotState, dict[str, Any]], Awaitable[Any]]

# Faults hit what travels to a chat; getUpdates and the rest are never faulted.
_FAULTABLE = frozenset(
    {
        "sendMessage",
        "sendDocument",
        "sendPhoto",
        "sendChatAction",
        "copyMessage",
        "forwardMessage",
        "editMessageText",
        "editMessageCaption",
        "editMessageReplyMarkup",
    }
)
_CHAT_ACTIONS = frozenset(
    {
        "typing",
        "upload_photo",
        "record_video",
        "upload_video",
        "record_voice",
        "upload_voice",
        "upload_document",
        "choose_sticker",
        "find_location",
        "record_video_note",
        "upload_video_note",
    }
)
_SECRET_TOKEN = re.compile(r"[A-Za-z0-9_-]{1,256}\Z")
_MAX_UPLOAD = 50 * 1024 * 1024
_MAX_PHOTO = 10 * 1024 * 1024
_MAX_DOWNLOAD = 20 * 1024 * 1024
_DELETE_WINDOW = 48 * 3600
_COPYABLE = ("text", "entities", "document", "photo", "caption", "caption_entities")
_NOT_MODIFIED = (
    "message is not modified: specified new message content and reply markup are exactly the "
    "same as a current content and reply markup of the message"
)
_QUERY_TOO_OLD = "query is too old and response timeout expired or query ID is invalid"
_ADMIN_RIGHTS = {
    "can_be_edited": False,
    "is_anonymous": False,
    "can_manage_chat": True,
    "can_delete_messages": True,
    "can_manage_video_chats": True,
    "can_restrict_members": True,
    "can_promote_members": False,
    "can_change_info": True,
    "can_invite_users": True,
    "can_post_stories": False,
    "can_edit_stories": False,
    "can_delete_stories": False,
    "can_pin_messages": True,
}


class BotApiMethods(EmulatorCore):
    """Dispatch of Bot API calls to handlers, plus the handlers themselves."""

    def __init__(self, **kwargs: Any):
        super().__init__(**kwargs)
        self._closing = asyncio.Event()
        self._handlers: dict[str, Handler] = {
            "getMe": self._get_me,
            "getUpdates": self._get_updates,
            "setWebhook": self._set_webhook,
            "deleteWebhook": self._delete_webhook,
            "getWebhookInfo": self._get_webhook_info,
            "sendMessage": self._send_message,
            "sendDocument": self._send_document,
            "sendPhoto": self._send_photo,
            "sendChatAction": self._send_chat_action,
            "copyMessage": self._copy_message,
            "forwardMessage": self._forward_message,
            "editMessageText": self._edit_message_text,
            "editMessageCaption": self._edit_message_caption,
            "editMessageReplyMarkup": self._edit_message_reply_markup,
            "deleteMessage": self._delete_message,
            "answerCallbackQuery": self._answer_callback_query,
            "setMyCommands": self._set_my_commands,
            "getMyCommands": self._get_my_commands,
            "deleteMyCommands": self._delete_my_commands,
            "setChatMenuButton": self._set_chat_menu_button,
            "getChatMenuButton": self._get_chat_menu_button,
            "getChat": self._get_chat,
            "getChatMember": self._get_chat_member,
            "getChatAdministrators": self._get_chat_administrators,
            "getChatMemberCount": self._get_chat_member_count,
            "leaveChat": self._leave_chat,
            "getFile": self._get_file,
        }

    # -- dispatch -------------------------------------------------------------------------

    async def call(
        self,
        token: str,
        method: str,
        params: dict[str, Any],
        files: dict[str, Upload] | None = None,
    ) -> tuple[int, dict[str, Any]]:
        """Handle one Bot API request; return (HTTP status, JSON body)."""
        latency = self.faults.latency
        if latency > 0:
            await asyncio.sleep(latency)
        bot = self.bots.get(token)
        if bot is None:
            self.stats.errors[401] += 1
            return 401, {"ok": False, "error_code": 401, "description": "Unauthorized"}
        spec = self.spec.method(method)
        if spec is None:
            self.stats.errors[404] += 1
            return 404, {"ok": False, "error_code": 404, "description": "Not Found"}
        name = spec.name
        self.stats.requests[name] += 1
        try:
            values = self.spec.parse_params(spec, params, files)
            handler = self._handlers.get(name)
            if handler is None:
                raise bad_request("method not supported by the emulator")
            if name in _FAULTABLE:
                fault = self._draw_fault()
                if fault is not None:
                    return await self._faulted(fault, handler, bot, values)
            result = await handler(bot, values)
        except ApiError as err:
            self.stats.errors[err.code] += 1
            return err.code, err.to_body()
        finally:
            # every call may change what a wait_for predicate looks at (stats included)
            self._notify()
        return 200, {"ok": True, "result": result}

    async def _faulted(
        self, fault: str, handler: Handler, bot: BotState, values: dict[str, Any]
    ) -> tuple[int, dict[str, Any]]:
        self.stats.faults[fault] += 1
        self._notify()
        if fault == "error":
            return 500, {"ok": False, "error_code": 500, "description": "Internal Server Error"}
        if fault == "flood":
            wait = self.faults.flood_retry_after
            return 429, ApiError(
                429, f"Too Many Requests: retry after {wait}", {"retry_after": wait}
            ).to_body()
        status, body = 504, {"ok": False, "error_code": 504, "description": "Gateway Timeout"}
        if fault == "timeout_delivered":
            # The call takes effect, but its answer is lost: the client can't tell.
            try:
                status, body = 200, {"ok": True, "result": await handler(bot, values)}
            except ApiError as err:
                status, body = err.code, err.to_body()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._closing.wait(), self.faults.timeout_seconds)
        return status, body

    # -- shared pieces --------------------------------------------------------------------

    def _format(
        self, raw: str, parse_mode: str | None, entities: list[dict[str, Any]] | None
    ) -> tuple[str, list[dict[str, Any]]]:
        text, ents = format_text(raw, parse_mode, entities, strict_html=self.strict_html)
        for entity in ents:
            if entity["type"] == "text_mention" and "first_name" not in entity["user"]:
                account = self._account(entity["user"]["id"])
                if account is None:
                    entity["type"] = "text_link"
                    entity["url"] = f"tg://user?id={entity.pop('user')['id']}"
                else:
                    entity["user"] = account.to_api()
        return text, ents

    @staticmethod
    def _markup(
        markup: dict[str, Any] | None,
    ) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
        """Return (markup as sent, markup as the Message echoes it: inline keyboards only)."""
        if markup is None:
            return None, None
        if "inline_keyboard" in markup:
            clean = check_inline_keyboard(markup)
            return clean, clean
        if "keyboard" in markup:
            check_reply_keyboard(markup)
        return markup, None

    def _caption(self, p: dict[str, Any], content: dict[str, Any]) -> None:
        if "caption" not in p:
            return
        caption, entities = self._format(
            p["caption"], p.get("parse_mode"), p.get("caption_entities")
        )
        check_caption(caption)
        if caption:
            content["caption"] = caption
            if entities:
                content["caption_entities"] = entities

    def _reply_to(self, chat: Chat, p: dict[str, Any], content: dict[str, Any]) -> None:
        reply = p.get("reply_parameters")
        if not reply:
            return
        target_chat = chat
        if "chat_id" in reply and reply["chat_id"] != chat.id:
            target_chat = self._chat_by_ref(reply["chat_id"])
        original = target_chat.messages.get(reply["message_id"])
        if original is None or original.deleted:
            if reply.get("allow_sending_without_reply"):
                return
            raise bad_request("message to be replied not found")
        if target_chat is chat:
            quoted = dict(original.api)
            quoted.pop("reply_to_message", None)
            content["reply_to_message"] = quoted

    def _deliver(
        self,
        bot: BotState,
        chat: Chat,
        p: dict[str, Any],
        content: dict[str, Any],
        *,
        raw: str | None = None,
        file_id: str | None = None,
        markup: dict[str, Any] | None = None,
    ) -> StoredMessage:
        """Finish a send: reply, protection, rate limits, then store the message."""
        self._reply_to(chat, p, content)
        if p.get("protect_content"):
            content["has_protected_content"] = True
        paid = bool(p.get("allow_paid_broadcast"))
        self._rate_limit(bot, chat, send=True, paid=paid)
        if paid:
            self.stats.paid_messages += 1
        return self._new_message(
            chat,
            bot.user,
            content,
            bot_id=bot.user.id,
            from_bot=True,
            html=raw,
            parse_mode=p.get("parse_mode"),
            file_id=file_id,
            markup=markup,
        )

    def _input_file(self, value: Upload | str, kind: str) -> FileRecord:
        if isinstance(value, Upload):
            data = value.data
            if not data:
                raise bad_request("file must be non-empty")
            if len(data) > _MAX_UPLOAD:
                raise ApiError(413, "Request Entity Too Large")
            if kind == "photo":
                if len(data) > _MAX_PHOTO:
                    raise bad_request("PHOTO_SAVE_FILE_INVALID")
                size = image_size(data)
                if size is None:
                    raise bad_request("IMAGE_PROCESS_FAILED")
                if size[0] + size[1] > 10000 or min(size) < 1 or max(size) > 20 * min(size):
                    raise bad_request("PHOTO_INVALID_DIMENSIONS")
                return self._store_file("photo", data, value.filename, "image/jpeg", size=size)
            mime = value.content_type
            if not mime or mime == "application/octet-stream":
                mime = mimetypes.guess_type(value.filename)[0] or "application/octet-stream"
            return self._store_file("document", data, value.filename or "document", mime)
        existing = self.files.get(value)
        if existing is not None:
            if existing.kind != kind:
                raise bad_request(
                    f"can't use file of type {existing.kind.title()} as {kind.title()}"
                )
            return existing
        if value.startswith(("http://", "https://")):
            # No internet here: keep the link, with no bytes behind it.
            name = value.rsplit("/", 1)[-1].split("?", 1)[0] or "file"
            size = (1, 1) if kind == "photo" else None
            mime = "image/jpeg" if kind == "photo" else mimetypes.guess_type(name)[0]
            return self._store_file(kind, b"", name, mime, size=size, url=value)
        raise bad_request("wrong file identifier/HTTP URL specified")

    def _editable(self, bot: BotState, p: dict[str, Any]) -> tuple[Chat, StoredMessage]:
        if "inline_message_id" in p:
            raise bad_request("inline messages are not supported by the emulator")
        if "chat_id" not in p:
            raise bad_request("chat_id is empty")
        if "message_id" not in p:
            raise bad_request("message identifier is not specified")
        chat = self._chat_for_bot(bot, p["chat_id"])
        message = chat.messages.get(p["message_id"])
        if message is None or message.deleted or not self._visible(bot, chat, message):
            raise bad_request("message to edit not found")
        if message.sender_id != bot.user.id:
            raise bad_request("message can't be edited")
        return chat, message

    @staticmethod
    def _visible(bot: BotState, chat: Chat, message: StoredMessage) -> bool:
        # A private chat id is the person's id, shared by all bots they talk to.
        return chat.type != "private" or message.bot_id == bot.user.id

    def _apply_edit(
        self,
        message: StoredMessage,
        api: dict[str, Any],
        *,
        raw: str | None = None,
        parse_mode: str | None = None,
        markup: dict[str, Any] | None = None,
        keep_raw: bool = False,
    ) -> dict[str, Any]:
        api["edit_date"] = self.now()
        message.api = api
        message.edits += 1
        message.markup = markup
        if not keep_raw:
            message.html = raw
            message.parse_mode = parse_mode
        self.stats.edits += 1
        self._changed(message, "edit")
        return api

    @staticmethod
    def _set_or_pop(api: dict[str, Any], key: str, value: Any) -> None:
        if value:
            api[key] = value
        else:
            api.pop(key, None)

    def _member_api(self, chat: Chat, user_id: int) -> dict[str, Any]:
        account = self._account(user_id)
        if account is None:
            raise bad_request("user not found")
        status = "member" if chat.type == "private" else chat.status_of(user_id)
        out: dict[str, Any] = {"status": status, "user": account.to_api()}
        if status == "creator":
            out["is_anonymous"] = False
        elif status == "administrator":
            out.update(_ADMIN_RIGHTS)
            if chat.type == "channel":
                out.update(can_post_messages=True, can_edit_messages=True)
        elif status == "kicked":
            out["until_date"] = 0
        return out

    def _check_commands_scope(self, p: dict[str, Any]) -> str:
        scope = p.get("scope") or {"type": "default"}
        return json.dumps(scope, sort_keys=True)

    # -- getMe, updates, webhooks ---------------------------------------------------------

    async def _get_me(self, bot: BotState, p: dict[str, Any]) -> dict[str, Any]:
        out = bot.user.to_api()
        out.update(
            can_join_groups=True,
            can_read_all_group_messages=not bot.privacy_mode,
            supports_inline_queries=False,
            can_connect_to_business=False,
            has_main_web_app=False,
        )
        return out

    async def _get_updates(self, bot: BotState, p: dict[str, Any]) -> list[dict[str, Any]]:
        if bot.webhook is not None:
            raise ApiError(
                409,
                "Conflict: can't use getUpdates method while webhook is active; use "
                "deleteWebhook to delete the webhook first",
            )
        # Telegram clamps limit and timeout rather than rejecting them.
        limit = min(max(p.get("limit", 100), 1), 100)
        timeout = max(p.get("timeout", 0), 0)
        if "allowed_updates" in p:
            bot.allowed_updates = frozenset(p["allowed_updates"]) or DEFAULT_UPDATE_KINDS
        self._confirm(bot, p.get("offset"))
        previous = bot.poller
        if previous is not None and not previous.done():
            previous.set_result("conflict")
        if not bot.queue and timeout > 0 and not self._closing.is_set():
            loop = asyncio.get_running_loop()
            poller: asyncio.Future[str] = loop.create_future()
            bot.poller = poller
            timer = loop.call_later(timeout, _resolve, poller, "timeout")
            self._notify()
            try:
                reason = await poller
            finally:
                timer.cancel()
                if bot.poller is poller:
                    bot.poller = None
            if reason == "conflict":
                raise ApiError(
                    409,
                    "Conflict: terminated by other getUpdates request; make sure that only one "
                    "bot instance is running",
                )
            if reason == "webhook":
                raise ApiError(409, "Conflict: terminated by setWebhook request")
        out = []
        for update in bot.queue:
            if len(out) >= limit:
                break
            out.append(update.payload)
        return out

    def _confirm(self, bot: BotState, offset: int | None) -> None:
        queue = bot.queue
        if offset is None or not queue:
            return
        if offset < 0:
            # a negative offset keeps only the last -offset updates
            while len(queue) > -offset:
                queue.popleft()
            return
        while queue and queue[0].update_id < offset:
            queue.popleft()

    async def _set_webhook(self, bot: BotState, p: dict[str, Any]) -> bool:
        url = p.get("url", "")
        if not url:
            return await self._delete_webhook(bot, p)
        if not url.startswith(("https://", "http://")):
            raise bad_request("bad webhook: An HTTPS URL must be provided for webhook")
        secret = p.get("secret_token")
        if secret is not None and not _SECRET_TOKEN.match(secret):
            raise bad_request("secret token contains unallowed characters")
        if "allowed_updates" in p:
            bot.allowed_updates = frozenset(p["allowed_updates"]) or DEFAULT_UPDATE_KINDS
        if p.get("drop_pending_updates"):
            bot.queue.clear()
        bot.webhook = WebhookConfig(
            url=url,
            secret_token=secret,
            max_connections=min(max(p.get("max_connections", 40), 1), 100),
            allowed_updates=p.get("allowed_updates"),
            ip_address=p.get("ip_address"),
        )
        if bot.poller is not None and not bot.poller.done():
            bot.poller.set_result("webhook")
        self._webhook_changed(bot)
        return True

    async def _delete_webhook(self, bot: BotState, p: dict[str, Any]) -> bool:
        if p.get("drop_pending_updates"):
            bot.queue.clear()
        if bot.webhook is not None:
            bot.webhook = None
            # updates delivered to a webhook are gone; the rest wait for getUpdates
            while bot.queue and bot.queue[0].delivered:
                bot.queue.popleft()
            for update in bot.queue:
                update.in_flight = False
            self._webhook_changed(bot)
        return True

    def _webhook_changed(self, bot: BotState) -> None:
        """Hook: start or stop the webhook dispatcher (the Emulator implements it)."""

    async def _get_webhook_info(self, bot: BotState, p: dict[str, Any]) -> dict[str, Any]:
        webhook = bot.webhook
        pending = sum(1 for update in bot.queue if not update.delivered)
        if webhook is None:
            return {"url": "", "has_custom_certificate": False, "pending_update_count": pending}
        out: dict[str, Any] = {
            "url": webhook.url,
            "has_custom_certificate": False,
            "pending_update_count": pending,
            "max_connections": webhook.max_connections,
        }
        if webhook.ip_address:
            out["ip_address"] = webhook.ip_address
        if webhook.allowed_updates:
            out["allowed_updates"] = webhook.allowed_updates
        if webhook.last_error_date:
            out["last_error_date"] = webhook.last_error_date
            out["last_error_message"] = webhook.last_error_message or ""
        return out

    # -- sending --------------------------------------------------------------------------

    async def _send_message(self, bot: BotState, p: dict[str, Any]) -> dict[str, Any]:
        chat = self._chat_for_bot(bot, p["chat_id"])
        text, entities = self._format(p["text"], p.get("parse_mode"), p.get("entities"))
        check_text(text)
        markup, echoed = self._markup(p.get("reply_markup"))
        content: dict[str, Any] = {"text": text}
        if entities:
            content["entities"] = entities
        if echoed:
            content["reply_markup"] = echoed
        message = self._deliver(bot, chat, p, content, raw=p["text"], markup=markup)
        return message.api

    async def _send_document(self, bot: BotState, p: dict[str, Any]) -> dict[str, Any]:
        chat = self._chat_for_bot(bot, p["chat_id"])
        content: dict[str, Any] = {}
        self._caption(p, content)
        markup, echoed = self._markup(p.get("reply_markup"))
        file = self._input_file(p["document"], "document")
        content = {"document": self._file_api(file), **content}
        if echoed:
            content["reply_markup"] = echoed
        message = self._deliver(
            bot, chat, p, content, raw=p.get("caption"), file_id=file.file_id, markup=markup
        )
        return message.api

    async def _send_photo(self, bot: BotState, p: dict[str, Any]) -> dict[str, Any]:
        chat = self._chat_for_bot(bot, p["chat_id"])
        content: dict[str, Any] = {}
        self._caption(p, content)
        markup, echoed = self._markup(p.get("reply_markup"))
        file = self._input_file(p["photo"], "photo")
        content = {"photo": [self._file_api(file)], **content}
        if echoed:
            content["reply_markup"] = echoed
        message = self._deliver(
            bot, chat, p, content, raw=p.get("caption"), file_id=file.file_id, markup=markup
        )
        return message.api

    async def _send_chat_action(self, bot: BotState, p: dict[str, Any]) -> bool:
        chat = self._chat_for_bot(bot, p["chat_id"])
        action = p["action"]
        if action not in _CHAT_ACTIONS:
            raise bad_request("wrong parameter action in request")
        bot.chat_actions[chat.id] = action
        if self._listeners:
            self._emit("chat_action", {"chat_id": chat.id, "action": action})
        return True

    def _source(self, bot: BotState, p: dict[str, Any], verb: str) -> StoredMessage:
        chat = self._chat_for_bot(bot, p["from_chat_id"], write=False)
        message = chat.messages.get(p["message_id"])
        if message is None or message.deleted or not self._visible(bot, chat, message):
            raise bad_request(f"message to {verb} not found")
        if not any(key in message.api for key in ("text", "document", "photo")):
            raise bad_request(
                "message can't be copied" if verb == "copy" else "message can't be forwarded"
            )
        if message.api.get("has_protected_content"):
            raise bad_request("message has protected content and can't be forwarded")
        return message

    async def _copy_message(self, bot: BotState, p: dict[str, Any]) -> dict[str, Any]:
        source = self._source(bot, p, "copy")
        chat = self._chat_for_bot(bot, p["chat_id"])
        content = {key: source.api[key] for key in _COPYABLE if key in source.api}
        raw = source.html
        if "caption" in p and "text" not in content:
            content.pop("caption", None)
            content.pop("caption_entities", None)
            self._caption(p, content)
            raw = p["caption"]
        markup, echoed = self._markup(p.get("reply_markup"))
        if echoed:
            content["reply_markup"] = echoed
        message = self._deliver(
            bot, chat, p, content, raw=raw, file_id=source.file_id, markup=markup
        )
        return {"message_id": message.message_id}

    async def _forward_message(self, bot: BotState, p: dict[str, Any]) -> dict[str, Any]:
        source = self._source(bot, p, "forward")
        chat = self._chat_for_bot(bot, p["chat_id"])
        api = source.api
        origin = api.get("forward_origin")
        if origin is None:
            if "sender_chat" in api and api["chat"]["type"] == "channel":
                origin = {
                    "type": "channel",
                    "date": api["date"],
                    "chat": api["sender_chat"],
                    "message_id": api["message_id"],
                }
            else:
                origin = {"type": "user", "date": api["date"], "sender_user": api["from"]}
        content: dict[str, Any] = {"forward_origin": origin}
        content.update((key, api[key]) for key in _COPYABLE if key in api)
        message = self._deliver(bot, chat, p, content, raw=source.html, file_id=source.file_id)
        return message.api

    # -- editing and deleting -------------------------------------------------------------

    async def _edit_message_text(self, bot: BotState, p: dict[str, Any]) -> dict[str, Any]:
        chat, message = self._editable(bot, p)
        api = message.api
        if "text" not in api:
            raise bad_request("there is no text in the message to edit")
        if "text" not in p:
            raise bad_request("message text is empty")
        text, entities = self._format(p["text"], p.get("parse_mode"), p.get("entities"))
        check_text(text)
        markup, echoed = self._markup(p.get("reply_markup"))
        if (
            text == api["text"]
            and entities == api.get("entities", [])
            and echoed == api.get("reply_markup")
        ):
            raise bad_request(_NOT_MODIFIED)
        self._rate_limit(bot, chat, send=False)
        new = dict(api)
        new["text"] = text
        self._set_or_pop(new, "entities", entities)
        self._set_or_pop(new, "reply_markup", echoed)
        return self._apply_edit(
            message, new, raw=p["text"], parse_mode=p.get("parse_mode"), markup=markup
        )

    async def _edit_message_caption(self, bot: BotState, p: dict[str, Any]) -> dict[str, Any]:
        chat, message = self._editable(bot, p)
        api = message.api
        if "document" not in api and "photo" not in api:
            raise bad_request("there is no caption in the message to edit")
        content: dict[str, Any] = {}
        self._caption(p, content)
        markup, echoed = self._markup(p.get("reply_markup"))
        if (
            content.get("caption") == api.get("caption")
            and content.get("caption_entities") == api.get("caption_entities")
            and echoed == api.get("reply_markup")
        ):
            raise bad_request(_NOT_MODIFIED)
        self._rate_limit(bot, chat, send=False)
        new = dict(api)
        self._set_or_pop(new, "caption", content.get("caption"))
        self._set_or_pop(new, "caption_entities", content.get("caption_entities"))
        self._set_or_pop(new, "reply_markup", echoed)
        return self._apply_edit(
            message, new, raw=p.get("caption"), parse_mode=p.get("parse_mode"), markup=markup
        )

    async def _edit_message_reply_markup(self, bot: BotState, p: dict[str, Any]) -> dict[str, Any]:
        chat, message = self._editable(bot, p)
        api = message.api
        markup, echoed = self._markup(p.get("reply_markup"))
        if echoed == api.get("reply_markup"):
            raise bad_request(_NOT_MODIFIED)
        self._rate_limit(bot, chat, send=False)
        new = dict(api)
        self._set_or_pop(new, "reply_markup", echoed)
        return self._apply_edit(message, new, markup=markup, keep_raw=True)

    async def _delete_message(self, bot: BotState, p: dict[str, Any]) -> bool:
        chat = self._chat_for_bot(bot, p["chat_id"])
        message = chat.messages.get(p["message_id"])
        if message is None or message.deleted or not self._visible(bot, chat, message):
            raise bad_request("message to delete not found")
        own = message.sender_id == bot.user.id
        if (
            chat.type != "private"
            and not own
            and chat.status_of(bot.user.id) not in ("creator", "administrator")
        ):
            raise bad_request("message can't be deleted")
        if self.now() - message.api["date"] > _DELETE_WINDOW:
            raise bad_request("message can't be deleted for everyone")
        message.deleted = True
        self._changed(message, "delete")
        return True

    # -- callback queries -----------------------------------------------------------------

    async def _answer_callback_query(self, bot: BotState, p: dict[str, Any]) -> bool:
        record = bot.callbacks.get(p["callback_query_id"])
        if record is None or record.answered:
            raise bad_request(_QUERY_TOO_OLD)
        text = p.get("text")
        if text is not None and len(text) > MAX_CALLBACK_ANSWER:
            raise bad_request("MESSAGE_TOO_LONG")
        record.answered = True
        record.answered_at = time.monotonic()
        record.answer = {
            "text": text,
            "show_alert": bool(p.get("show_alert", False)),
            "url": p.get("url"),
            "cache_time": p.get("cache_time", 0),
        }
        for waiter in record.waiters:
            if not waiter.done():
                waiter.set_result(record.answer)
        if self._listeners:
            self._emit("answer", {"query_id": record.query_id, **record.answer})
        self._notify()
        return True

    # -- commands and menu ----------------------------------------------------------------

    async def _set_my_commands(self, bot: BotState, p: dict[str, Any]) -> bool:
        commands = p["commands"]
        if len(commands) > 100:
            raise bad_request("too many commands specified")
        for command in commands:
            check_bot_command(command)
        key = (self._check_commands_scope(p), p.get("language_code", ""))
        if commands:
            bot.commands[key] = [dict(c) for c in commands]
        else:
            bot.commands.pop(key, None)
        return True

    async def _get_my_commands(self, bot: BotState, p: dict[str, Any]) -> list[dict[str, Any]]:
        key = (self._check_commands_scope(p), p.get("language_code", ""))
        return list(bot.commands.get(key, []))

    async def _delete_my_commands(self, bot: BotState, p: dict[str, Any]) -> bool:
        bot.commands.pop((self._check_commands_scope(p), p.get("language_code", "")), None)
        return True

    async def _set_chat_menu_button(self, bot: BotState, p: dict[str, Any]) -> bool:
        chat_id = p.get("chat_id")
        if chat_id is not None:
            self._chat_for_bot(bot, chat_id, write=False)
        bot.menu_buttons[chat_id] = p.get("menu_button") or {"type": "default"}
        return True

    async def _get_chat_menu_button(self, bot: BotState, p: dict[str, Any]) -> dict[str, Any]:
        chat_id = p.get("chat_id")
        button = bot.menu_buttons.get(chat_id) if chat_id is not None else None
        if button is None or button.get("type") == "default":
            button = bot.menu_buttons.get(None) or {"type": "commands"}
        return button

    # -- chats and members ----------------------------------------------------------------

    async def _get_chat(self, bot: BotState, p: dict[str, Any]) -> dict[str, Any]:
        chat = self._chat_for_bot(bot, p["chat_id"], write=False)
        out = dict(chat.to_api())
        out.update(
            accent_color_id=0,
            max_reaction_count=11,
            accepted_gift_types={
                "unlimited_gifts": False,
                "limited_gifts": False,
                "unique_gifts": False,
                "premium_subscription": False,
                "gifts_from_channels": False,
            },
        )
        if chat.type in ("group", "supergroup"):
            out["permissions"] = {"can_send_messages": True}
        return out

    async def _get_chat_member(self, bot: BotState, p: dict[str, Any]) -> dict[str, Any]:
        chat = self._chat_for_bot(bot, p["chat_id"], write=False)
        user_id = p["user_id"]
        if chat.type == "private" and user_id not in (chat.id, bot.user.id):
            raise bad_request("user not found")
        return self._member_api(chat, user_id)

    async def _get_chat_administrators(
        self, bot: BotState, p: dict[str, Any]
    ) -> list[dict[str, Any]]:
        chat = self._chat_for_bot(bot, p["chat_id"], write=False)
        if chat.type == "private":
            raise bad_request("there are no administrators in the private chat")
        return [
            self._member_api(chat, user_id)
            for user_id, status in chat.members.items()
            if status in ("creator", "administrator")
        ]

    async def _get_chat_member_count(self, bot: BotState, p: dict[str, Any]) -> int:
        chat = self._chat_for_bot(bot, p["chat_id"], write=False)
        if chat.type == "private":
            return 2
        return sum(1 for user_id in chat.members if chat.is_member(user_id))

    async def _leave_chat(self, bot: BotState, p: dict[str, Any]) -> bool:
        chat = self._chat_for_bot(bot, p["chat_id"], write=False)
        if chat.type == "private":
            raise bad_request("chat member status can't be changed in private chats")
        old = self._member_api(chat, bot.user.id)
        chat.members[bot.user.id] = "left"
        self._member_update(bot, chat, bot.user.id, old)
        return True

    def _member_update(
        self, bot: BotState, chat: Chat, actor_id: int, old: dict[str, Any]
    ) -> int | None:
        """Queue a my_chat_member update for the bot's own status change."""
        actor = self._account(actor_id)
        assert actor is not None
        payload = {
            "chat": chat.to_api(),
            "from": actor.to_api(),
            "date": self.now(),
            "old_chat_member": old,
            "new_chat_member": self._member_api(chat, bot.user.id),
        }
        return self._enqueue(bot, "my_chat_member", payload)

    # -- files ----------------------------------------------------------------------------

    async def _get_file(self, bot: BotState, p: dict[str, Any]) -> dict[str, Any]:
        file = self.files.get(p["file_id"])
        if file is None:
            raise bad_request("invalid file_id")
        if len(file.data) > _MAX_DOWNLOAD:
            raise bad_request("file is too big")
        return {
            "file_id": file.file_id,
            "file_unique_id": file.file_unique_id,
            "file_size": len(file.data),
            "file_path": file.file_path,
        }


def _resolve(future: asyncio.Future[str], value: str) -> None:
    if not future.done():
        future.set_result(value)

"""Every result and update the emulator produces fits the Bot API spec's types."""

from __future__ import annotations

import json
from typing import Any

from bot.emulator import Emulator
from bot.emulator.spec import load_spec

TOKEN = "777:SHAPES"
PNG = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x04\x00\x00\x00\x04\x08\x06" + bytes(20)


async def ok(emulator: Emulator, method: str, **params: Any) -> Any:
    """Call a method, require success, and check the result against its return type."""
    spec = load_spec()
    status, body = await emulator.call(TOKEN, method, params)
    assert status == 200, body
    found = spec.method(method)
    assert found is not None
    spec.check(found.returns, body["result"])
    return body["result"]


async def test_results_and_updates_fit_the_spec() -> None:
    emulator = Emulator()
    emulator.limits.enabled = False
    emulator.create_bot(TOKEN, "shape_bot")
    person = emulator.create_user("Kim", "Minsu", "minsu")
    other = emulator.create_user("Lee")
    emulator.send_text(TOKEN, person["id"], "/start")
    group = emulator.create_group("Group", creator_id=person["id"])
    emulator.add_member(group["id"], other["id"])
    emulator.add_bot_to_group(TOKEN, group["id"], person["id"], admin=True)
    emulator.add_member(group["id"], emulator.create_user("Park")["id"])
    channel = emulator.create_channel("News", "news_shapes", creator_id=person["id"])
    emulator.add_bot_to_group(TOKEN, channel["id"], person["id"])
    emulator.channel_post(TOKEN, channel["id"], "post")
    keyboard = json.dumps({"inline_keyboard": [[{"text": "a", "callback_data": "a"}]]})

    await ok(emulator, "getMe")
    sent = await ok(
        emulator,
        "sendMessage",
        chat_id=person["id"],
        text='<b>x</b> <a href="tg://user?id=' + str(other["id"]) + '">Lee</a>',
        parse_mode="HTML",
        reply_markup=keyboard,
        protect_content="true",
    )
    assert sent["entities"][1]["type"] == "text_mention"
    reply = await ok(
        emulator,
        "sendMessage",
        chat_id=person["id"],
        text="re",
        reply_parameters=json.dumps({"message_id": sent["message_id"]}),
        reply_markup='{"keyboard": [[{"text": "yes"}]], "one_time_keyboard": true}',
    )
    assert "reply_markup" not in reply  # reply keyboards are not echoed
    doc = await ok(
        emulator,
        "sendDocument",
        chat_id=group["id"],
        document="https://example.org/report.pdf",
        caption="c",
    )
    await ok(emulator, "sendPhoto", chat_id=group["id"], photo="https://example.org/p.jpg")
    await ok(
        emulator,
        "copyMessage",
        chat_id=group["id"],
        from_chat_id=group["id"],
        message_id=doc["message_id"],
        caption="copy",
    )
    await ok(
        emulator, "forwardMessage", chat_id=person["id"], from_chat_id=channel["id"], message_id=1
    )
    await ok(
        emulator,
        "editMessageText",
        chat_id=person["id"],
        message_id=sent["message_id"],
        text="y",
        reply_markup=keyboard,
    )
    await ok(
        emulator,
        "editMessageCaption",
        chat_id=group["id"],
        message_id=doc["message_id"],
        caption="new",
    )
    emulator.press(TOKEN, person["id"], person["id"], sent["message_id"], "a")
    await ok(
        emulator, "editMessageReplyMarkup", chat_id=person["id"], message_id=sent["message_id"]
    )
    for chat_id in (person["id"], group["id"], channel["id"]):
        await ok(emulator, "getChat", chat_id=chat_id)
    for user_id in (person["id"], other["id"], 777):
        await ok(emulator, "getChatMember", chat_id=group["id"], user_id=user_id)
    status, body = await emulator.call(
        TOKEN, "getChatMember", {"chat_id": group["id"], "user_id": 5}
    )
    assert (status, body["description"]) == (400, "Bad Request: user not found")
    emulator.promote(group["id"], other["id"], "kicked")
    await ok(emulator, "getChatMember", chat_id=group["id"], user_id=other["id"])
    await ok(emulator, "getChatAdministrators", chat_id=group["id"])
    await ok(emulator, "getChatMemberCount", chat_id=group["id"])
    await ok(emulator, "getWebhookInfo")
    await ok(emulator, "setMyCommands", commands='[{"command": "start", "description": "go"}]')
    await ok(emulator, "getMyCommands")
    await ok(
        emulator,
        "setChatMenuButton",
        chat_id=person["id"],
        menu_button='{"type": "web_app", "text": "open", "web_app": {"url": "https://x.y"}}',
    )
    await ok(emulator, "getChatMenuButton", chat_id=person["id"])
    await ok(emulator, "getChatMenuButton")
    file_id = doc["document"]["file_id"]
    await ok(emulator, "getFile", file_id=file_id)
    emulator.edit_text(TOKEN, person["id"], person["id"], 1, "/start again")
    emulator.block_bot(TOKEN, person["id"])
    emulator.migrate_to_supergroup(group["id"])

    updates = await ok(
        emulator,
        "getUpdates",
        allowed_updates='["message", "edited_message", '
        '"callback_query", "my_chat_member", "chat_member", "channel_post"]',
    )
    kinds = {next(k for k in update if k != "update_id") for update in updates}
    assert kinds >= {
        "message",
        "edited_message",
        "callback_query",
        "my_chat_member",
        "channel_post",
    }
    await ok(emulator, "setWebhook", url="https://example.org/hook", secret_token="abc")
    info = await ok(emulator, "getWebhookInfo")
    assert info["url"] == "https://example.org/hook"
    await ok(emulator, "deleteWebhook")
    await emulator.close()

"""Chats as Telegram has them: who may be written to, groups, privacy mode, blocks, migration."""

from __future__ import annotations

from typing import Any

import pytest
from telegram import Bot, Update
from telegram.error import BadRequest, ChatMigrated, Forbidden
from telegram.ext import CommandHandler, ContextTypes

from bot.emulator import Emulator, EmulatorError, EmulatorServer

from .conftest import BOT_USERNAME, TOKEN, assert_shape, build_app, polling

pytestmark = pytest.mark.filterwarnings("ignore::telegram.warnings.PTBDeprecationWarning")


async def drain(bot: Bot) -> list[Update]:
    """Fetch and confirm every queued update."""
    updates = list(await bot.get_updates(timeout=0))
    if updates:
        await bot.get_updates(offset=updates[-1].update_id + 1, timeout=0)
    return updates


def group_with_bot(emulator: Emulator, *, supergroup: bool = False) -> tuple[int, int]:
    """A group whose creator added the bot; returns (group id, creator id)."""
    creator = emulator.create_user("Creator")
    group = emulator.create_group("마을 모임", supergroup, creator_id=creator["id"])
    emulator.add_bot_to_group(TOKEN, group["id"], creator["id"])
    return group["id"], creator["id"]


async def test_who_the_bot_may_write_to(emulator: Emulator, bot: Bot) -> None:
    stranger = emulator.create_user("Stranger")
    with pytest.raises(Forbidden, match=r"(?i)bot can't initiate conversation with a user"):
        await bot.send_message(stranger["id"], "hi")
    with pytest.raises(BadRequest, match=r"(?i)chat not found"):
        await bot.send_message(424242, "hi")
    with pytest.raises(BadRequest, match=r"(?i)chat not found"):
        await bot.send_message("@nobody_here", "hi")
    emulator.send_text(TOKEN, stranger["id"], "hello")
    await bot.send_message(stranger["id"], "now we talk")


async def test_block_and_unblock(emulator: Emulator, bot: Bot, citizen: dict[str, Any]) -> None:
    await drain(bot)
    update_id = emulator.block_bot(TOKEN, citizen["id"])
    [update] = await drain(bot)
    assert update.update_id == update_id
    assert update.my_chat_member is not None
    assert update.my_chat_member.new_chat_member.status == "kicked"
    assert update.my_chat_member.old_chat_member.status == "member"
    with pytest.raises(Forbidden, match=r"(?i)bot was blocked by the user"):
        await bot.send_message(citizen["id"], "are you there?")
    with pytest.raises(EmulatorError, match=r"unblock_bot first"):
        emulator.send_text(TOKEN, citizen["id"], "hi")
    emulator.unblock_bot(TOKEN, citizen["id"])
    [update] = await drain(bot)
    assert update.my_chat_member.new_chat_member.status == "member"
    await bot.send_message(citizen["id"], "welcome back")


async def test_bot_joins_a_group(emulator: Emulator, bot: Bot) -> None:
    creator = emulator.create_user("Creator")
    group = emulator.create_group("협동조합", creator_id=creator["id"])
    with pytest.raises(Forbidden, match=r"(?i)bot is not a member of the group chat"):
        await bot.send_message(group["id"], "hi")
    result = emulator.add_bot_to_group(TOKEN, group["id"], creator["id"])
    updates = await drain(bot)
    assert [u.update_id for u in updates] == [
        result["my_chat_member_update_id"],
        result["message_update_id"],
    ]
    joined = updates[0].my_chat_member
    assert (joined.old_chat_member.status, joined.new_chat_member.status) == ("left", "member")
    assert joined.from_user.id == creator["id"]
    assert [u.username for u in updates[1].message.new_chat_members] == [BOT_USERNAME]
    sent = await bot.send_message(group["id"], "안녕하세요")
    assert sent.chat.type == "group"
    admins = await bot.get_chat_administrators(group["id"])
    assert [(a.user.id, a.status) for a in admins] == [(creator["id"], "creator")]
    assert (await bot.get_chat_member(group["id"], 123456)).status == "member"
    assert await bot.get_chat_member_count(group["id"]) == 2
    assert_shape("ChatFullInfo", (await bot.get_chat(group["id"])).to_dict())


async def test_privacy_mode_filters_group_messages(emulator: Emulator, bot: Bot) -> None:
    group_id, _creator_id = group_with_bot(emulator, supergroup=True)
    await drain(bot)
    member = emulator.create_user("Member")
    emulator.add_member(group_id, member["id"])
    sent = await bot.send_message(group_id, "bot says")
    seen = [
        emulator.send_text(TOKEN, member["id"], "just chatting", group_id)[0],
        emulator.send_text(TOKEN, member["id"], "/poll", group_id)[0],
        emulator.send_text(TOKEN, member["id"], f"/poll@{BOT_USERNAME} now", group_id)[0],
        emulator.send_text(TOKEN, member["id"], "/poll@other_bot", group_id)[0],
        emulator.send_text(TOKEN, member["id"], "reply", group_id, reply_to=sent.message_id)[0],
    ]
    assert [update_id is not None for update_id in seen] == [False, True, True, False, True]
    texts = [u.message.text for u in await drain(bot) if u.message and u.message.text]
    assert texts == ["/poll", f"/poll@{BOT_USERNAME} now", "reply"]
    emulator.promote(group_id, 123456)  # an admin bot sees everything
    assert emulator.send_text(TOKEN, member["id"], "hello all", group_id)[0] is not None


async def test_group_command_through_the_app(emulator: Emulator, server: EmulatorServer) -> None:
    async def hello(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        await update.effective_message.reply_text(f"hello {update.effective_chat.title}")

    group_id, creator_id = group_with_bot(emulator, supergroup=True)
    app = build_app(server)
    app.add_handler(CommandHandler("hello", hello))
    async with polling(app):
        emulator.send_text(TOKEN, creator_id, f"/hello@{BOT_USERNAME}", group_id)
        reply = await emulator.wait_for_message(group_id, timeout=10)
    assert reply["text"] == "hello 마을 모임"
    assert reply["message"]["chat"]["type"] == "supergroup"


async def test_migration_to_supergroup(emulator: Emulator, bot: Bot) -> None:
    group_id, _creator = group_with_bot(emulator)
    await drain(bot)
    new_id = emulator.migrate_to_supergroup(group_id)
    assert str(new_id).startswith("-100")
    updates = await drain(bot)
    assert [(u.message.chat.id, u.message.migrate_to_chat_id) for u in updates[:1]] == [
        (group_id, new_id)
    ]
    assert [(u.message.chat.id, u.message.migrate_from_chat_id) for u in updates[1:]] == [
        (new_id, group_id)
    ]
    with pytest.raises(ChatMigrated) as caught:
        await bot.send_message(group_id, "old id")
    assert caught.value.new_chat_id == new_id
    sent = await bot.send_message(new_id, "new id")
    assert sent.chat.type == "supergroup"


async def test_leaving_and_being_kicked(emulator: Emulator, bot: Bot) -> None:
    group_id, creator_id = group_with_bot(emulator)
    await drain(bot)
    assert await bot.leave_chat(group_id)
    [update] = await drain(bot)
    assert update.my_chat_member.new_chat_member.status == "left"
    with pytest.raises(Forbidden, match=r"(?i)bot is not a member of the group chat"):
        await bot.send_message(group_id, "hi")
    emulator.add_bot_to_group(TOKEN, group_id, creator_id)
    emulator.promote(group_id, 123456, "kicked")
    with pytest.raises(Forbidden, match=r"(?i)bot was kicked from the group chat"):
        await bot.send_message(group_id, "hi")


async def test_channel_posts_reach_admin_bots(emulator: Emulator, bot: Bot) -> None:
    owner = emulator.create_user("Owner")
    channel = emulator.create_channel("모임 소식", "moim_news", creator_id=owner["id"])
    emulator.add_bot_to_group(TOKEN, channel["id"], owner["id"])
    await drain(bot)
    update_id, _ = emulator.channel_post(TOKEN, channel["id"], "새 소식")
    [update] = await drain(bot)
    assert update.update_id == update_id
    assert update.channel_post.text == "새 소식"
    sent = await bot.send_message("@moim_news", "봇이 올린 글")
    assert sent.sender_chat.id == channel["id"]


async def test_deleting_others_messages_needs_admin(emulator: Emulator, bot: Bot) -> None:
    group_id, creator_id = group_with_bot(emulator, supergroup=True)
    _, message = emulator.send_text(TOKEN, creator_id, "/spam", group_id)
    with pytest.raises(BadRequest, match=r"(?i)message can't be deleted"):
        await bot.delete_message(group_id, message["message_id"])
    emulator.promote(group_id, 123456)
    assert await bot.delete_message(group_id, message["message_id"])


async def test_people_edit_and_send_files(emulator: Emulator, bot: Bot) -> None:
    person = emulator.create_user("Seo")
    _, message = emulator.send_text(TOKEN, person["id"], "/sign 3")
    update_id, edited = emulator.edit_text(
        TOKEN, person["id"], person["id"], message["message_id"], "/sign 4"
    )
    assert edited["edit_date"] >= edited["date"]
    update_id2, _doc = emulator.send_document(TOKEN, person["id"], "명단.xlsx", b"PK\x03\x04")
    updates = await drain(bot)
    assert updates[1].edited_message.text == "/sign 4"
    assert updates[2].message.document.file_name == "명단.xlsx"
    file = await bot.get_file(updates[2].message.document.file_id)
    assert bytes(await file.download_as_bytearray()) == b"PK\x03\x04"
    assert (update_id, update_id2) == (updates[1].update_id, updates[2].update_id)

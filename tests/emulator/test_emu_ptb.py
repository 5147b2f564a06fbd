"""The real python-telegram-bot against the emulator over HTTP: what works, what fails."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest
from telegram import Bot, InlineKeyboardButton, InlineKeyboardMarkup, MessageEntity, Update
from telegram.constants import ParseMode
from telegram.error import BadRequest, EndPointNotFound, InvalidToken
from telegram.ext import CallbackQueryHandler, CommandHandler, ContextTypes, Defaults

from bot.emulator import Emulator, EmulatorServer

from .conftest import BOT_USERNAME, TOKEN, assert_shape, build_app, polling

pytestmark = [
    pytest.mark.filterwarnings("ignore::telegram.warnings.PTBDeprecationWarning"),
    pytest.mark.filterwarnings("ignore::telegram.warnings.PTBUserWarning"),
]


async def test_get_me(bot: Bot) -> None:
    me = await bot.get_me()
    assert me.id == 123456
    assert me.username == BOT_USERNAME
    assert me.is_bot


async def test_wrong_token_is_unauthorized(server: EmulatorServer) -> None:
    with pytest.raises(InvalidToken):
        async with Bot("999:nope", base_url=server.base_url):
            pass


async def test_command_reaches_the_app_and_the_reply_lands(
    emulator: Emulator, server: EmulatorServer
) -> None:
    async def start(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        assert update.effective_message is not None
        await update.effective_message.reply_html(
            f"<b>안녕하세요</b>, {update.effective_user.first_name}!"
        )

    app = build_app(server)
    app.add_handler(CommandHandler("start", start))
    person = emulator.create_user("Minji")
    async with polling(app):
        update_id, sent = emulator.send_text(TOKEN, person["id"], "/start")
        assert update_id is not None
        assert sent["entities"] == [{"type": "bot_command", "offset": 0, "length": 6}]
        reply = await emulator.wait_for_message(person["id"], timeout=10)
    assert reply["text"] == "안녕하세요, Minji!"
    assert reply["html"] == "<b>안녕하세요</b>, Minji!"
    assert reply["entities"] == [{"type": "bold", "offset": 0, "length": 5}]
    assert emulator.pending_updates(TOKEN) == 0
    assert_shape("Message", reply["message"])


async def test_button_press_is_answered(emulator: Emulator, server: EmulatorServer) -> None:
    async def ask(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        keyboard = InlineKeyboardMarkup(
            [[InlineKeyboardButton("찬성", callback_data="v1:poll:vote:7:1")]]
        )
        await update.effective_message.reply_text("투표하세요", reply_markup=keyboard)

    async def vote(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        query = update.callback_query
        assert query is not None and query.message is not None
        await query.answer(f"투표 완료: {query.data}", show_alert=True)
        await query.edit_message_text("투표했습니다")

    app = build_app(server)
    app.add_handler(CommandHandler("poll", ask))
    app.add_handler(CallbackQueryHandler(vote))
    person = emulator.create_user("Jun")
    async with polling(app):
        emulator.send_text(TOKEN, person["id"], "/poll")
        question = await emulator.wait_for_message(person["id"], timeout=10)
        mark = emulator.seq
        press = emulator.press(
            TOKEN, person["id"], person["id"], question["message_id"], "v1:poll:vote:7:1"
        )
        answer = await press.answer(timeout=10)
        edited = await emulator.wait_for_message(person["id"], since_seq=mark, timeout=10)
    assert answer == {
        "text": "투표 완료: v1:poll:vote:7:1",
        "show_alert": True,
        "url": None,
        "cache_time": 0,
    }
    assert press.callback_query["message"]["message_id"] == question["message_id"]
    assert_shape("CallbackQuery", press.callback_query)
    assert edited["text"] == "투표했습니다"
    assert edited["edited"] == 1
    assert edited["reply_markup"] is None  # editMessageText without markup drops the keyboard


async def test_pressing_a_button_that_is_not_there_needs_forge(
    emulator: Emulator, bot: Bot, citizen: dict[str, Any]
) -> None:
    from bot.emulator import EmulatorError

    keyboard = InlineKeyboardMarkup([[InlineKeyboardButton("a", callback_data="ok")]])
    sent = await bot.send_message(citizen["id"], "x", reply_markup=keyboard)
    with pytest.raises(EmulatorError, match=r"(?i)no button"):
        emulator.press(TOKEN, citizen["id"], citizen["id"], sent.message_id, "v1:admin:nuke")
    forged = emulator.press(
        TOKEN, citizen["id"], citizen["id"], sent.message_id, "v1:admin:nuke", forge=True
    )
    assert forged.callback_query["data"] == "v1:admin:nuke"
    await bot.answer_callback_query(forged.query_id)
    with pytest.raises(BadRequest, match=r"(?i)query is too old"):
        await bot.answer_callback_query(forged.query_id)
    with pytest.raises(BadRequest, match=r"(?i)query is too old"):
        await bot.answer_callback_query("123")


async def test_edit_and_not_modified(
    emulator: Emulator, bot: Bot, citizen: dict[str, Any]
) -> None:
    keyboard = InlineKeyboardMarkup([[InlineKeyboardButton("a", callback_data="a")]])
    sent = await bot.send_message(citizen["id"], "<i>one</i>", parse_mode="HTML")
    edited = await bot.edit_message_text(
        "two", citizen["id"], sent.message_id, reply_markup=keyboard
    )
    assert edited.text == "two"
    assert edited.edit_date is not None
    with pytest.raises(BadRequest, match=r"(?i)message is not modified: specified new message"):
        await bot.edit_message_text("two", citizen["id"], sent.message_id, reply_markup=keyboard)
    await bot.edit_message_reply_markup(citizen["id"], sent.message_id, reply_markup=None)
    with pytest.raises(BadRequest, match=r"(?i)Message to edit not found"):
        await bot.edit_message_text("x", citizen["id"], 9999)
    user_message_id = emulator.history(citizen["id"])[0]["message_id"]
    with pytest.raises(BadRequest, match=r"(?i)Message can't be edited"):
        await bot.edit_message_text("x", citizen["id"], user_message_id)
    [record] = emulator.messages(citizen["id"])
    assert record["text"] == "two"
    assert record["edited"] == 2
    assert record["reply_markup"] is None


async def test_ptb_defaults_are_accepted(server: EmulatorServer, citizen: dict[str, Any]) -> None:
    app = build_app(
        server,
        defaults=Defaults(
            parse_mode=ParseMode.HTML, disable_notification=True, protect_content=True
        ),
    )
    keyboard = InlineKeyboardMarkup([[InlineKeyboardButton("a", callback_data="a")]])
    async with app:
        sent = await app.bot.send_message(citizen["id"], "<b>x</b>", reply_markup=keyboard)
        await app.bot.edit_message_text(
            "<i>y</i>", citizen["id"], sent.message_id, reply_markup=keyboard
        )
        await app.bot.edit_message_reply_markup(citizen["id"], sent.message_id, reply_markup=None)


async def test_send_document_stores_the_bytes(
    emulator: Emulator, bot: Bot, citizen: dict[str, Any], server: EmulatorServer
) -> None:
    data = "이름,참석\n김지민,예\n".encode("utf-8-sig")
    sent = await bot.send_document(
        citizen["id"], data, filename="참석자.csv", caption="<b>명단</b>", parse_mode="HTML"
    )
    assert sent.document is not None
    assert sent.document.file_name == "참석자.csv"
    assert sent.document.mime_type == "text/csv"
    assert sent.caption == "명단"
    [record] = emulator.messages(citizen["id"])
    assert record["document"]["data"] == data
    assert record["caption"] == "명단"
    file = await bot.get_file(sent.document.file_id)
    assert bytes(await file.download_as_bytearray()) == data
    again = await bot.send_document(citizen["id"], sent.document.file_id)
    assert again.document.file_unique_id == sent.document.file_unique_id
    with pytest.raises(BadRequest, match=r"(?i)Wrong file identifier"):
        await bot.send_document(citizen["id"], "no-such-file")
    assert_shape("Message", record["message"])


async def test_send_photo_needs_an_image(bot: Bot, citizen: dict[str, Any]) -> None:
    png = (
        b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x02\x00\x00\x00\x03\x08\x06\x00\x00\x00"
    )
    sent = await bot.send_photo(citizen["id"], png + b"\x00" * 16)
    assert (sent.photo[-1].width, sent.photo[-1].height) == (2, 3)
    with pytest.raises(BadRequest, match=r"(?i)Image_process_failed"):
        await bot.send_photo(citizen["id"], b"not an image")


async def test_unknown_method_is_404(bot: Bot) -> None:
    with pytest.raises(EndPointNotFound):
        await bot.do_api_request("sendTelepathy", api_kwargs={"chat_id": 1})


async def test_spec_method_the_emulator_lacks_is_400(bot: Bot) -> None:
    with pytest.raises(BadRequest, match=r"(?i)method not supported by the emulator"):
        await bot.do_api_request("sendDice", api_kwargs={"chat_id": 1})


async def test_parameter_errors_are_400(server: EmulatorServer, citizen: dict[str, Any]) -> None:
    async with httpx.AsyncClient(base_url=f"{server.base_url}{TOKEN}/") as client:
        missing = await client.post("sendMessage", data={"chat_id": citizen["id"]})
        wrong = await client.post(
            "sendMessage", data={"chat_id": citizen["id"], "text": "x", "message_thread_id": "x"}
        )
        unknown = await client.post(
            "sendMessage", data={"chat_id": citizen["id"], "text": "x", "colour": "red"}
        )
        as_json = await client.post("sendMessage", json={"chat_id": citizen["id"], "text": "ok"})
        as_query = await client.get("getMe?")
    assert missing.status_code == 400
    assert missing.json() == {
        "ok": False,
        "error_code": 400,
        "description": "Bad Request: message text is empty",
    }
    assert wrong.status_code == 400
    assert "must be of type Integer" in wrong.json()["description"]
    assert unknown.status_code == 400
    assert 'unknown parameter "colour"' in unknown.json()["description"]
    assert as_json.json()["ok"] is True
    assert as_query.json()["result"]["username"] == BOT_USERNAME


async def test_unknown_parameter_through_ptb(bot: Bot, citizen: dict[str, Any]) -> None:
    with pytest.raises(BadRequest, match=r"(?i)unknown parameter"):
        await bot.send_message(citizen["id"], "x", api_kwargs={"colour": "red"})


async def test_text_length_counts_utf16_after_parsing(bot: Bot, citizen: dict[str, Any]) -> None:
    await bot.send_message(citizen["id"], "가" * 4096)
    await bot.send_message(citizen["id"], "😀" * 2048)
    await bot.send_message(citizen["id"], "<b>" + "a" * 4096 + "</b>", parse_mode="HTML")
    with pytest.raises(BadRequest, match=r"(?i)Message is too long"):
        await bot.send_message(citizen["id"], "a" * 4097)
    with pytest.raises(BadRequest, match=r"(?i)Message is too long"):
        await bot.send_message(citizen["id"], "😀" * 2048 + "a")
    with pytest.raises(BadRequest, match=r"(?i)Message text is empty"):
        await bot.send_message(citizen["id"], "  \n ")
    with pytest.raises(BadRequest, match=r"(?i)Message text is empty"):
        await bot.send_message(citizen["id"], "<b></b>", parse_mode="HTML")


async def test_text_is_trimmed_like_telegram(
    emulator: Emulator, bot: Bot, citizen: dict[str, Any]
) -> None:
    sent = await bot.send_message(citizen["id"], "\n  <b> hi</b>  \n", parse_mode="HTML")
    assert sent.text == "hi"
    assert sent.entities == (MessageEntity("bold", 0, 2),)


async def test_caption_limit(bot: Bot, citizen: dict[str, Any]) -> None:
    await bot.send_document(citizen["id"], b"x", filename="a.txt", caption="c" * 1024)
    with pytest.raises(BadRequest, match=r"(?i)Message caption is too long"):
        await bot.send_document(citizen["id"], b"x", filename="a.txt", caption="c" * 1025)


async def test_keyboard_rules(bot: Bot, citizen: dict[str, Any]) -> None:
    def keyboard(*buttons: InlineKeyboardButton) -> InlineKeyboardMarkup:
        return InlineKeyboardMarkup([list(buttons)])

    await bot.send_message(
        citizen["id"],
        "x",
        reply_markup=keyboard(InlineKeyboardButton("a", callback_data="d" * 64)),
    )
    await bot.send_message(
        citizen["id"],
        "x",
        reply_markup=keyboard(InlineKeyboardButton("a", callback_data="가" * 21)),
    )
    with pytest.raises(BadRequest, match=r"(?i)Button_data_invalid"):
        await bot.send_message(
            citizen["id"],
            "x",
            reply_markup=keyboard(InlineKeyboardButton("a", callback_data="d" * 65)),
        )
    with pytest.raises(BadRequest, match=r"(?i)Button_data_invalid"):
        await bot.send_message(
            citizen["id"],
            "x",
            reply_markup=keyboard(InlineKeyboardButton("a", callback_data="가" * 22)),
        )
    with pytest.raises(BadRequest, match=r"(?i)must be non-empty"):
        await bot.send_message(
            citizen["id"], "x", reply_markup=keyboard(InlineKeyboardButton("", callback_data="a"))
        )
    many = InlineKeyboardMarkup(
        [[InlineKeyboardButton(str(i), callback_data=str(i)) for i in range(8)]] * 13
    )
    with pytest.raises(BadRequest, match=r"(?i)Reply markup is too long"):
        await bot.send_message(citizen["id"], "x", reply_markup=many)
    with pytest.raises(BadRequest, match=r"(?i)Text buttons are unallowed"):
        await bot.do_api_request(
            "sendMessage",
            api_kwargs={
                "chat_id": citizen["id"],
                "text": "x",
                "reply_markup": {"inline_keyboard": [[{"text": "a"}]]},
            },
        )


async def test_answer_text_limit(emulator: Emulator, bot: Bot, citizen: dict[str, Any]) -> None:
    keyboard = InlineKeyboardMarkup([[InlineKeyboardButton("a", callback_data="a")]])
    sent = await bot.send_message(citizen["id"], "x", reply_markup=keyboard)
    press = emulator.press(TOKEN, citizen["id"], citizen["id"], sent.message_id, "a")
    with pytest.raises(BadRequest, match=r"(?i)Message_too_long"):
        await bot.answer_callback_query(press.query_id, text="가" * 201)
    await bot.answer_callback_query(press.query_id, text="가" * 200)


@pytest.mark.parametrize(
    "bad",
    [
        "<blink>x</blink>",
        "<b>unclosed",
        "1 < 2",
        "Tom & Jerry",
        "<b><i>x</b></i>",
        '<span class="big">x</span>',
    ],
)
async def test_bad_html_is_rejected(bot: Bot, citizen: dict[str, Any], bad: str) -> None:
    with pytest.raises(BadRequest, match=r"(?i)Can't parse entities"):
        await bot.send_message(citizen["id"], bad, parse_mode="HTML")


async def test_good_html_gives_entities(bot: Bot, citizen: dict[str, Any]) -> None:
    sent = await bot.send_message(
        citizen["id"],
        '<b>모임 <i>공지</i></b> &lt;3 &amp; <a href="https://moim.kr/e/1">신청</a> '
        "<u>u</u><s>s</s><tg-spoiler>x</tg-spoiler><code>c</code>"
        '<pre><code class="language-sql">select 1</code></pre>'
        "<blockquote>인용</blockquote>",
        parse_mode="HTML",
    )
    assert sent.text == "모임 공지 <3 & 신청 usxcselect 1인용"
    assert [(e.type, e.offset, e.length) for e in sent.entities] == [
        ("bold", 0, 5),
        ("italic", 3, 2),
        ("text_link", 11, 2),
        ("underline", 14, 1),
        ("strikethrough", 15, 1),
        ("spoiler", 16, 1),
        ("code", 17, 1),
        ("pre", 18, 8),
        ("blockquote", 26, 2),
    ]
    assert sent.entities[2].url == "https://moim.kr/e/1"
    assert sent.entities[7].language == "sql"
    assert sent.parse_entities()[sent.entities[1]] == "공지"


async def test_markdown_is_not_supported(bot: Bot, citizen: dict[str, Any]) -> None:
    with pytest.raises(BadRequest, match=r"(?i)unsupported parse mode in emulator"):
        await bot.send_message(citizen["id"], "*x*", parse_mode="MarkdownV2")


async def test_replies_copies_forwards_and_deletes(
    emulator: Emulator, bot: Bot, citizen: dict[str, Any]
) -> None:
    first = await bot.send_message(citizen["id"], "원본")
    reply = await bot.send_message(citizen["id"], "답장", reply_to_message_id=first.message_id)
    assert reply.reply_to_message is not None
    assert reply.reply_to_message.text == "원본"
    with pytest.raises(BadRequest, match=r"(?i)Message to be replied not found"):
        await bot.send_message(citizen["id"], "x", reply_to_message_id=999)
    copied = await bot.copy_message(citizen["id"], citizen["id"], first.message_id)
    forwarded = await bot.forward_message(citizen["id"], citizen["id"], first.message_id)
    assert forwarded.forward_origin is not None
    assert forwarded.text == "원본"
    assert await bot.delete_message(citizen["id"], copied.message_id)
    with pytest.raises(BadRequest, match=r"(?i)Message to delete not found"):
        await bot.delete_message(citizen["id"], copied.message_id)
    texts = [m["text"] for m in emulator.messages(citizen["id"])]
    assert texts == ["원본", "답장", "원본"]
    assert_shape("Message", forwarded.to_dict())


async def test_commands_menu_chat_and_members(
    emulator: Emulator, bot: Bot, citizen: dict[str, Any]
) -> None:
    from telegram import BotCommand, BotCommandScopeAllPrivateChats, MenuButtonCommands

    scope = BotCommandScopeAllPrivateChats()
    assert await bot.set_my_commands([BotCommand("start", "시작"), ("poll", "투표")], scope=scope)
    assert [c.command for c in await bot.get_my_commands(scope=scope)] == ["start", "poll"]
    assert await bot.get_my_commands() == ()
    assert emulator.commands(TOKEN, {"type": "all_private_chats"})[1]["description"] == "투표"
    with pytest.raises(BadRequest, match=r"(?i)Bot_command_invalid"):
        await bot.set_my_commands([BotCommand("Start", "x")])
    assert await bot.delete_my_commands(scope=scope)
    assert await bot.set_chat_menu_button(citizen["id"], MenuButtonCommands())
    chat = await bot.get_chat(citizen["id"])
    assert chat.first_name == "지민"
    member = await bot.get_chat_member(citizen["id"], citizen["id"])
    assert member.status == "member"
    assert await bot.send_chat_action(citizen["id"], "typing")
    assert emulator.chat_action(TOKEN, citizen["id"]) == "typing"
    with pytest.raises(BadRequest, match=r"(?i)Wrong parameter action"):
        await bot.send_chat_action(citizen["id"], "dancing")


async def test_clock_is_injectable(citizen: dict[str, Any]) -> None:
    import datetime as dt

    moment = dt.datetime(2026, 3, 2, 10, 30, tzinfo=dt.UTC)
    emu = Emulator(clock=lambda: moment)
    emu.create_bot(TOKEN, BOT_USERNAME)
    person = emu.create_user("A")
    _, message = emu.send_text(TOKEN, person["id"], "hi")
    assert message["date"] == int(moment.timestamp())


async def test_long_poll_waits_for_an_update(
    emulator: Emulator, bot: Bot, citizen: dict[str, Any]
) -> None:
    first = await bot.get_updates(timeout=0)
    offset = first[-1].update_id + 1
    assert len(await bot.get_updates(offset=offset, timeout=0)) == 0
    poll = asyncio.create_task(bot.get_updates(offset=offset, timeout=10))
    await emulator.wait_for(lambda: emulator.bots[TOKEN].poller is not None, timeout=5)
    update_id, _ = emulator.send_text(TOKEN, citizen["id"], "hello")
    updates = await asyncio.wait_for(poll, 5)
    assert [u.update_id for u in updates] == [update_id]
    assert updates[0].message.text == "hello"
    assert emulator.pending_updates(TOKEN) == 1
    await bot.get_updates(offset=update_id + 1, timeout=0)
    assert emulator.pending_updates(TOKEN) == 0


async def test_limit_and_allowed_updates(
    emulator: Emulator, bot: Bot, citizen: dict[str, Any]
) -> None:
    for i in range(5):
        emulator.send_text(TOKEN, citizen["id"], f"m{i}")
    assert len(await bot.get_updates(limit=2)) == 2
    assert len(await bot.get_updates(limit=500)) == 6
    updates = await bot.get_updates(allowed_updates=["callback_query"])
    await bot.get_updates(offset=updates[-1].update_id + 1)
    emulator.send_text(TOKEN, citizen["id"], "filtered out")
    assert emulator.pending_updates(TOKEN) == 0


async def test_second_poller_conflicts(
    emulator: Emulator, bot: Bot, server: EmulatorServer
) -> None:
    from telegram.error import Conflict

    first = asyncio.create_task(bot.get_updates(timeout=10))
    await emulator.wait_for(lambda: emulator.bots[TOKEN].poller is not None, timeout=5)
    # a second instance of the same bot, as when two deployments poll by mistake
    async with Bot(TOKEN, base_url=server.base_url) as other:
        second = asyncio.create_task(other.get_updates(timeout=1))
        with pytest.raises(Conflict, match=r"(?i)terminated by other getUpdates request"):
            await asyncio.wait_for(first, 5)
        await asyncio.wait_for(second, 5)

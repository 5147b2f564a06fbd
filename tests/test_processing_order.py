"""Which updates wait for each other: messages per chat, button presses per person."""

from __future__ import annotations

import datetime as dt

from telegram import CallbackQuery, Chat, Message, Update, User

from bot.processing import order_key

GROUP = Chat(-100, Chat.GROUP, title="새솔 단톡방")


def person(user_id: int) -> User:
    return User(user_id, f"p{user_id}", is_bot=False)


def message(user_id: int, chat: Chat, update_id: int = 1) -> Update:
    sent = Message(1, dt.datetime(2026, 12, 1, tzinfo=dt.UTC), chat, from_user=person(user_id))
    return Update(update_id, message=sent)


def press(user_id: int, chat: Chat, update_id: int = 1) -> Update:
    card = Message(7, dt.datetime(2026, 12, 1, tzinfo=dt.UTC), chat)
    query = CallbackQuery(str(update_id), person(user_id), "ci", message=card, data="v1:x")
    return Update(update_id, callback_query=query)


def test_presses_in_a_group_wait_only_for_the_same_persons_presses():
    assert order_key(press(1, GROUP)) != order_key(press(2, GROUP))
    assert order_key(press(1, GROUP, 1)) == order_key(press(1, GROUP, 2))


def test_messages_keep_their_chat_order_and_private_presses_their_chat():
    assert order_key(message(1, GROUP)) == order_key(message(2, GROUP))
    private = Chat(5, Chat.PRIVATE)
    assert order_key(press(5, private)) == order_key(message(5, private))

"""Parameter validation against the bundled Bot API spec, as PTB sends parameters."""

from __future__ import annotations

import json

import pytest

from bot.emulator.errors import ApiError
from bot.emulator.spec import Upload, load_spec


def parse(method: str, **params: object) -> dict:
    """Validate a call's parameters as the server does."""
    spec = load_spec()
    found = spec.method(method)
    assert found is not None
    return spec.parse_params(found, dict(params))


def rejected(method: str, **params: object) -> str:
    """The 400 description for a call that must fail."""
    with pytest.raises(ApiError) as caught:
        parse(method, **params)
    assert caught.value.code == 400
    return caught.value.description


def test_spec_is_bundled_and_complete() -> None:
    spec = load_spec()
    assert spec.version.startswith("Bot API")
    assert len(spec.methods) > 150
    assert spec.method("SENDMESSAGE") is spec.method("sendMessage")
    assert spec.method("noSuchMethod") is None


def test_form_strings_become_typed_values() -> None:
    keyboard = {"inline_keyboard": [[{"text": "예", "callback_data": "v1:poll:1"}]]}
    values = parse(
        "sendMessage",
        chat_id="-1001234567890",
        text="hi",
        disable_notification="true",
        protect_content="False",
        reply_markup=json.dumps(keyboard),
    )
    assert values == {
        "chat_id": -1001234567890,
        "text": "hi",
        "disable_notification": True,
        "protect_content": False,
        "reply_markup": keyboard,
    }


def test_chat_id_may_be_a_username() -> None:
    assert parse("sendMessage", chat_id="@moim_channel", text="x")["chat_id"] == "@moim_channel"


def test_json_body_values_are_checked_as_json() -> None:
    values = parse("sendMessage", chat_id=5, text="x", reply_parameters={"message_id": 3})
    assert values["reply_parameters"] == {"message_id": 3}
    assert parse("getUpdates", timeout=10, limit=5) == {"timeout": 10, "limit": 5}


def test_empty_values_count_as_absent() -> None:
    assert rejected("sendMessage", chat_id="1", text="") == "Bad Request: message text is empty"
    assert parse("getUpdates", offset="") == {}


def test_missing_required_parameter() -> None:
    assert rejected("sendMessage", text="x") == "Bad Request: chat_id is empty"
    assert rejected("answerCallbackQuery") == (
        'Bad Request: parameter "callback_query_id" is required'
    )


def test_unknown_parameter() -> None:
    assert rejected("sendMessage", chat_id="1", text="x", colour="red") == (
        'Bad Request: unknown parameter "colour" in method sendMessage'
    )


def test_parameters_ptb_defaults_inject_are_tolerated() -> None:
    # PTB's Defaults add these to editMessageText & co.; Telegram ignores them there.
    values = parse(
        "editMessageReplyMarkup",
        chat_id="1",
        message_id="2",
        disable_notification="true",
        protect_content="true",
        parse_mode="HTML",
    )
    assert values == {"chat_id": 1, "message_id": 2}


@pytest.mark.parametrize(
    ("params", "description"),
    [
        ({"chat_id": "1", "text": "x", "message_thread_id": "1.5"}, "must be of type Integer"),
        ({"chat_id": "1", "text": "x", "disable_notification": "yes"}, "of type Boolean"),
        ({"chat_id": "1", "text": "x", "reply_markup": "{nope"}, "can't parse reply_markup"),
        ({"chat_id": [1], "text": "x"}, 'parameter "chat_id" must be of type Integer or String'),
    ],
)
def test_wrong_types(params: dict, description: str) -> None:
    assert description in rejected("sendMessage", **params)


def test_nested_objects_are_validated_recursively() -> None:
    def markup(button: dict) -> str:
        return json.dumps({"inline_keyboard": [[button]]})

    assert rejected("sendMessage", chat_id=1, text="x", reply_markup=markup({"text": 1})) == (
        'Bad Request: can\'t parse inline keyboard button: Field "text" must be of type String'
    )
    assert 'Field "url" must be of type String' in rejected(
        "sendMessage", chat_id=1, text="x", reply_markup=markup({"text": "a", "url": None})
    )
    assert 'Field "colour" is not a known field' in rejected(
        "sendMessage",
        chat_id=1,
        text="x",
        reply_markup=markup({"text": "a", "callback_data": "b", "colour": "red"}),
    )
    assert 'Field "text" is required' in rejected(
        "sendMessage", chat_id=1, text="x", reply_markup=markup({"callback_data": "b"})
    )
    assert 'Field "inline_keyboard" must be an Array' in rejected(
        "sendMessage", chat_id=1, text="x", reply_markup=json.dumps({"inline_keyboard": {}})
    )


def test_unions_pick_the_alternative_the_object_fits() -> None:
    removal = parse("sendMessage", chat_id=1, text="x", reply_markup='{"remove_keyboard": true}')
    assert removal["reply_markup"] == {"remove_keyboard": True}
    reply = parse(
        "sendMessage",
        chat_id=1,
        text="x",
        reply_markup='{"keyboard": [[{"text": "a"}]], "resize_keyboard": true}',
    )
    assert reply["reply_markup"]["keyboard"] == [[{"text": "a"}]]


def test_abstract_types_dispatch_on_their_type_field() -> None:
    assert parse("setChatMenuButton", menu_button='{"type": "commands"}')
    assert "is not a known field" in rejected(
        "setChatMenuButton", menu_button='{"type": "commands", "text": "x"}'
    )
    scope = parse("setMyCommands", commands="[]", scope='{"type": "chat", "chat_id": 5}')
    assert scope["scope"] == {"type": "chat", "chat_id": 5}
    assert 'Field "chat_id" is required' in rejected(
        "setMyCommands", commands="[]", scope='{"type": "chat"}'
    )


def test_files_come_from_multipart_parts() -> None:
    spec = load_spec()
    method = spec.method("sendDocument")
    assert method is not None
    upload = Upload("a.csv", b"1,2", "text/csv")
    values = spec.parse_params(method, {"chat_id": "1"}, {"document": upload})
    assert values["document"] is upload
    attached = spec.parse_params(
        method, {"chat_id": "1", "document": "attach://file0"}, {"file0": upload}
    )
    assert attached["document"] is upload
    by_id = spec.parse_params(method, {"chat_id": "1", "document": "BQACAAx"}, {})
    assert by_id["document"] == "BQACAAx"

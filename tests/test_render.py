"""Templates, translations and Telegram-safe text."""

from __future__ import annotations

import datetime as dt
import re

import pytest
from babel.messages.checkers import python_format
from babel.messages.pofile import read_po
from hypothesis import given
from hypothesis import strategies as st

from bot.callbacks import decode, encode
from bot.clock import UTC
from bot.emulator.html import parse_html
from bot.i18n import LOCALE_DIR, negotiate_language
from bot.i18n_tools import missing
from bot.render import Renderer, split_html, visible_length


@pytest.fixture(scope="module")
def renderer() -> Renderer:
    return Renderer()


def test_every_message_has_a_korean_translation():
    assert missing() == []


def test_translations_keep_their_placeholders():
    for path in LOCALE_DIR.glob("ko/LC_MESSAGES/*.po"):
        with path.open("rb") as handle:
            catalog = read_po(handle, locale="ko")
        for message in catalog:
            if message.id and message.python_format:
                python_format(catalog, message)  # raises TranslationError on a mismatch


def test_language_from_telegram_code():
    assert negotiate_language("en-GB") == "en"
    assert negotiate_language("ko") == "ko"
    assert negotiate_language("ja") == "ko"
    assert negotiate_language(None) == "ko"


def test_dates_read_naturally_in_each_language(renderer):
    moment = dt.datetime(2026, 12, 19, 9, 0, tzinfo=UTC)  # 18:00 in Seoul
    assert renderer.format_moment(moment, "ko", None, "datetime") == "12월 19일 (토) 18:00"
    assert renderer.format_moment(moment, "en", None, "datetime") == "Sat, Dec 19, 18:00"
    assert renderer.format_moment(moment, "ko", "Europe/Berlin", "time") == "10:00"


def test_user_text_is_escaped_and_buttons_stay_plain(renderer):
    class Org:
        id = 7
        name = "<b>Tom & Jerry</b> {{ 7*7 }}"
        slug = "tj"
        sensitive = False

    rendered = renderer.render("orgs/join_card.html", "en", org=Org(), membership=None)
    assert "&lt;b&gt;Tom &amp; Jerry&lt;/b&gt; {{ 7*7 }}" in rendered.text
    parse_html(rendered.text)  # Telegram would accept it
    assert [b.text for b in rendered.buttons[0]] == ["Join", "Not now"]
    assert rendered.buttons[0][0].callback_data == "v1:org:join:7"


def test_korean_template_renders_in_korean(renderer):
    rendered = renderer.render("members/forget_confirm.html", "ko")
    assert "삭제" in rendered.text
    assert rendered.buttons[0][0].text == "네, 삭제합니다"


@pytest.mark.parametrize("language", ["ko", "en"])
def test_privacy_notice_names_purpose_items_retention_and_refusal(renderer, language):
    text = renderer.render(
        "members/notice.html",
        language,
        version=3,
        retention_days=365,
        minimum_age=14,
        operator_name="새솔마을 주민회",
        operator_contact="privacy@example.org",
        payload="",
        shown_language=language,
        renewed=False,
    ).text
    words = {
        "ko": ["목적", "수집 항목", "보유 기간", "거부", "만 14세", "제3판"],
        "en": ["Purpose", "What is collected", "How long", "refuse", "14", "version 3"],
    }[language]
    for word in words:
        assert word in text
    parse_html(text)


def test_each_template_line_is_one_line_of_the_message(renderer):
    text = renderer.render(
        "members/notice.html",
        "ko",
        version=1,
        retention_days=365,
        minimum_age=14,
        operator_name="",
        operator_contact="",
        payload="",
        shown_language="ko",
        renewed=False,
    ).text
    lines = text.splitlines()
    bullets = [line for line in lines if line.startswith("•")]
    assert len(bullets) == 5  # purpose, items, retention, refusal, age: one line each
    assert lines[0] == "<b>모임 봇에 오신 것을 환영합니다!</b>"
    assert "" in lines  # paragraphs stay apart
    assert not any(line.count("•") > 1 for line in lines)


def test_long_html_is_split_at_line_breaks_and_tags_stay_balanced():
    paragraph = "<b>제목</b>\n" + "\n".join(f"<i>{i}번째 줄 &amp; 내용</i>" for i in range(600))
    parts = split_html(paragraph, limit=4096)
    assert len(parts) > 1
    for part in parts:
        assert visible_length(part) <= 4096
        parse_html(part)  # balanced tags, no broken entities
    joined = re.sub(r"\s+", "", "".join(parse_html(p)[0] for p in parts))
    assert joined == re.sub(r"\s+", "", parse_html(paragraph)[0])


@given(
    st.lists(
        st.tuples(
            st.sampled_from(["", "b", "i", "code"]),
            st.text(alphabet="가나다abc <>&\n", min_size=0, max_size=300),
        ),
        max_size=40,
    )
)
def test_splitting_never_breaks_html(pieces):
    import html

    html_text = "".join(
        f"<{tag}>{html.escape(text)}</{tag}>" if tag else html.escape(text) for tag, text in pieces
    )
    for part in split_html(html_text, limit=200):
        assert visible_length(part) <= 200
        parse_html(part)


def test_callback_data_round_trip_and_limits():
    data = encode("poll:vote", 42, 3)
    assert data == "v1:poll:vote:42:3"
    parsed = decode(data)
    assert (parsed.action, parsed.int_arg(0), parsed.int_arg(1)) == ("poll:vote", 42, 3)
    assert decode("v0:poll:vote:1") is None  # an old version
    assert decode("v1:poll") is None
    assert decode("v1:poll:vote:1;DROP") is None
    assert decode("x" * 65) is None
    with pytest.raises(ValueError):
        encode("poll:vote", "a" * 70)


def test_an_unreadable_date_is_answered_with_examples_the_parser_reads_in_the_persons_language(
    renderer,
):
    from bot.services.timeparse import parse_when

    answers = {
        language: renderer.text(
            "common/errors.html", language, code="invalid_input", field="when", value="언젠가"
        )
        for language in ("ko", "en")
    }
    assert "2주 뒤 18:00" in answers["ko"] and "in 2 weeks 6pm" in answers["en"]
    now = dt.datetime(2026, 12, 1, tzinfo=UTC)
    for language, answer in answers.items():
        examples = answer.split(":", 1)[1] if language == "ko" else answer.split("like", 1)[1]
        for example in re.split(r",| or ", examples.strip(" .")):
            parse_when(example.strip(), now=now, timezone="Asia/Seoul")  # every one is readable


def test_english_prompts_give_english_examples():
    """Examples in English messages are ones an English speaker would type (the parsers read
    both); only command lines keep moim's Korean labels."""
    from bot.i18n_tools import extract, features

    prompts = [
        message.id
        for feature in features()
        for message in extract(feature)
        if isinstance(message.id, str) and re.search(r"\b(e\.g\.|E\.g\.|For example)", message.id)
        if "/" not in message.id
    ]
    assert len(prompts) >= 15
    assert [p for p in prompts if re.search(r"[가-힣]", p)] == []

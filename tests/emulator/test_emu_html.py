"""Telegram's HTML parse mode: what it accepts, what it rejects, and the entities it yields."""

from __future__ import annotations

import html as std_html

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bot.emulator.errors import ApiError
from bot.emulator.html import parse_html, utf16_len


def entities_of(source: str) -> list[dict]:
    """The entities parse_html finds."""
    return parse_html(source)[1]


def test_plain_text_passes_through() -> None:
    assert parse_html("hello, world > you") == ("hello, world > you", [])


@pytest.mark.parametrize(
    ("tag", "kind"),
    [
        ("b", "bold"),
        ("strong", "bold"),
        ("i", "italic"),
        ("em", "italic"),
        ("u", "underline"),
        ("ins", "underline"),
        ("s", "strikethrough"),
        ("strike", "strikethrough"),
        ("del", "strikethrough"),
        ("tg-spoiler", "spoiler"),
        ("code", "code"),
        ("pre", "pre"),
        ("blockquote", "blockquote"),
    ],
)
def test_each_simple_tag(tag: str, kind: str) -> None:
    text, entities = parse_html(f"a <{tag}>bc</{tag}> d")
    assert text == "a bc d"
    assert entities == [{"type": kind, "offset": 2, "length": 2}]


def test_spoiler_span_link_emoji_pre_language_and_expandable_quote() -> None:
    source = (
        '<span class="tg-spoiler">s</span> <a href="https://moim.kr/x?a=1&amp;b=2">link</a> '
        '<tg-emoji emoji-id="5368324170671202286">👍</tg-emoji> '
        '<pre><code class="language-python">x = 1</code></pre>'
        "<blockquote expandable>q</blockquote>"
    )
    text, entities = parse_html(source)
    assert text == "s link 👍 x = 1q"
    assert entities == [
        {"type": "spoiler", "offset": 0, "length": 1},
        {"type": "text_link", "offset": 2, "length": 4, "url": "https://moim.kr/x?a=1&b=2"},
        {
            "type": "custom_emoji",
            "offset": 7,
            "length": 2,
            "custom_emoji_id": "5368324170671202286",
        },
        {"type": "pre", "offset": 10, "length": 5, "language": "python"},
        {"type": "expandable_blockquote", "offset": 15, "length": 1},
    ]


def test_nested_entities_are_sorted_like_telegram() -> None:
    text, entities = parse_html("<b>bold <i>both</i></b><u><s>us</s></u>")
    assert text == "bold bothus"
    assert entities == [
        {"type": "bold", "offset": 0, "length": 9},
        {"type": "italic", "offset": 5, "length": 4},
        {"type": "underline", "offset": 9, "length": 2},
        {"type": "strikethrough", "offset": 9, "length": 2},
    ]


def test_entities_and_offsets_count_utf16_units() -> None:
    text, entities = parse_html("😀 &lt;<b>굵게 &#128512;&#x41;&quot;</b> &gt;&amp;")
    assert text == '😀 <굵게 😀A" >&'
    assert entities == [{"type": "bold", "offset": 4, "length": 7}]
    assert utf16_len(text) == 14


def test_tags_are_case_insensitive_and_empty_end_tag_closes() -> None:
    assert entities_of("<B>x</>") == [{"type": "bold", "offset": 0, "length": 1}]


def test_empty_elements_make_no_entity() -> None:
    assert parse_html("a<b></b>c") == ("ac", [])


def test_code_outside_pre_drops_language() -> None:
    assert entities_of('<code class="language-py">x</code>') == [
        {"type": "code", "offset": 0, "length": 1}
    ]


def test_link_without_href_uses_its_text() -> None:
    assert entities_of("<a>https://moim.kr</a>") == [
        {"type": "text_link", "offset": 0, "length": 15, "url": "https://moim.kr/"}
    ]


def test_user_link_becomes_text_mention() -> None:
    assert entities_of('<a href="tg://user?id=42">Kim</a>') == [
        {"type": "text_mention", "offset": 0, "length": 3, "user": {"id": 42}}
    ]


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ("<x>a</x>", 'Unsupported start tag "x" at byte offset 0'),
        ("<br/>", 'Unsupported start tag "br/" at byte offset 0'),
        ("<b>a", 'Can\'t find end tag corresponding to start tag "b"'),
        ("<b>a</i>", 'Unmatched end tag at byte offset 4, expected "</b>", found "</i>"'),
        ("a</b>", "Unexpected end tag at byte offset 1"),
        ("1 < 2", 'Unsupported start tag "" at byte offset 2'),
        ("ends with <", "Unclosed start tag at byte offset 10"),
        ("<b", "Unclosed start tag at byte offset 0"),
        ("<span>x</span>", 'Tag "span" must have class "tg-spoiler" at byte offset 0'),
        ('<a href="x>y</a>', "Unclosed start tag at byte offset 0"),
        ("<b>x</b", "Unclosed end tag at byte offset 4"),
        ("<tg-emoji emoji-id=abc>x</tg-emoji>", "Invalid custom emoji identifier specified"),
        ("한글 <z>", 'Unsupported start tag "z" at byte offset 7'),
    ],
)
def test_rejected_like_telegram(source: str, message: str) -> None:
    with pytest.raises(ApiError) as caught:
        parse_html(source)
    assert caught.value.code == 400
    assert caught.value.description == f"Bad Request: can't parse entities: {message}"


@pytest.mark.parametrize("source", ["AT&T", "a & b", "&nbsp;", "&lt without semicolon", "&#;"])
def test_bare_ampersand_is_rejected_by_default(source: str) -> None:
    with pytest.raises(ApiError, match='Unescaped "&"'):
        parse_html(source)


def test_bare_ampersand_is_text_when_not_strict_as_on_telegram() -> None:
    assert parse_html("AT&T &nbsp; &lt", strict=False) == ("AT&T &nbsp; <", [])


_SAFE_TEXT = st.text(st.characters(blacklist_categories=("Cs",)), max_size=60)
_TAGS = ["b", "i", "u", "s", "code", "tg-spoiler", "blockquote", "em", "del"]
_KINDS = {
    "b": "bold",
    "em": "italic",
    "i": "italic",
    "u": "underline",
    "s": "strikethrough",
    "del": "strikethrough",
    "code": "code",
    "tg-spoiler": "spoiler",
    "blockquote": "blockquote",
}


@settings(max_examples=200, deadline=None)
@given(_SAFE_TEXT)
def test_escaped_text_round_trips(text: str) -> None:
    assert parse_html(std_html.escape(text)) == (text, [])


@st.composite
def marked_up(draw: st.DrawFn, depth: int = 0) -> tuple[str, str, list[dict]]:
    """Random nested markup with the plain text and entities it must parse to."""
    pieces = draw(st.lists(st.one_of(_SAFE_TEXT, st.just("")), min_size=1, max_size=3))
    source, plain, entities = "", "", []
    for piece in pieces:
        if depth < 3 and draw(st.booleans()):
            tag = draw(st.sampled_from(_TAGS))
            inner_source, inner_plain, inner_entities = draw(marked_up(depth + 1))
            offset = utf16_len(plain)
            for entity in inner_entities:
                entities.append({**entity, "offset": entity["offset"] + offset})
            if inner_plain:
                entities.append(
                    {"type": _KINDS[tag], "offset": offset, "length": utf16_len(inner_plain)}
                )
            source += f"<{tag}>{inner_source}</{tag}>"
            plain += inner_plain
        else:
            source += std_html.escape(piece)
            plain += piece
    return source, plain, entities


def _key(entity: dict) -> tuple:
    return entity["offset"], entity["length"], entity["type"]


@settings(max_examples=300, deadline=None)
@given(marked_up())
def test_nested_markup_gives_the_right_entities(case: tuple[str, str, list[dict]]) -> None:
    source, plain, expected = case
    text, entities = parse_html(source)
    assert text == plain
    assert sorted(entities, key=_key) == sorted(expected, key=_key)
    # Telegram's order: by offset, longer first
    assert [(e["offset"], -e["length"]) for e in entities] == sorted(
        (e["offset"], -e["length"]) for e in entities
    )


@settings(max_examples=500, deadline=None)
@given(st.text(alphabet=st.sampled_from(list("<>/&;#x0aAbiu=\"' -spanclg")), max_size=40))
def test_garbage_is_parsed_or_rejected_never_crashes(source: str) -> None:
    try:
        text, entities = parse_html(source)
    except ApiError as err:
        assert err.code == 400
        assert err.description.startswith("Bad Request: can't parse entities: ")
        return
    total = utf16_len(text)
    for entity in entities:
        assert entity["length"] > 0
        assert entity["offset"] >= 0
        assert entity["offset"] + entity["length"] <= total

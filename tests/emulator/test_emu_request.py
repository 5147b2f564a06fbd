"""Reading request bodies: form encoding, JSON, multipart, as httpx and PTB write them."""

from __future__ import annotations

from urllib.parse import parse_qsl, urlencode

import httpx
from hypothesis import given, settings
from hypothesis import strategies as st

from bot.emulator.request import parse_form, parse_request

_TEXT = st.text(st.characters(blacklist_categories=("Cs",)), max_size=30)


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(_TEXT.filter(bool), _TEXT, max_size=5))
def test_form_decoding_matches_urllib(fields: dict[str, str]) -> None:
    body = urlencode(fields).encode()
    assert parse_form(body) == fields


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=st.sampled_from(list("ab=&%+25FfzZ\\x가")), max_size=30))
def test_malformed_forms_decode_like_urllib(raw: str) -> None:
    expected = dict(parse_qsl(raw, keep_blank_values=True))
    assert parse_form(raw.encode()) == expected


def test_multipart_as_httpx_writes_it() -> None:
    request = httpx.Request(
        "POST",
        "http://x/",
        data={"chat_id": "5", "caption": '명단 "최종"'},
        files={"document": ('참석자 "A".csv', b"a,b\r\n--x\r\n", "text/csv")},
    )
    body = request.read()
    params, files = parse_request(request.headers["content-type"], body, b"")
    assert params == {"chat_id": "5", "caption": '명단 "최종"'}
    upload = files["document"]
    assert (upload.filename, upload.data, upload.content_type) == (
        '참석자 "A".csv',
        b"a,b\r\n--x\r\n",
        "text/csv",
    )


def test_json_and_query_string() -> None:
    params, _ = parse_request("application/json; charset=utf-8", b'{"chat_id": 5}', b"text=hi")
    assert params == {"text": "hi", "chat_id": 5}

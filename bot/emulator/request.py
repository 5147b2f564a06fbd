"""Reading a Bot API request's parameters: query string, form, JSON or multipart body."""

from __future__ import annotations

import codecs
import json
import re
from typing import Any
from urllib.parse import unquote, unquote_to_bytes

from bot.emulator.errors import bad_request
from bot.emulator.spec import Upload

_PARAM = re.compile(r';\s*([a-zA-Z0-9_*-]+)="((?:[^"\\]|\\.)*)"')
_TOKEN_PARAM = re.compile(r";\s*([a-zA-Z0-9_*-]+)=([^;\s\"]+)")


def parse_request(
    content_type: str, body: bytes, query: bytes
) -> tuple[dict[str, Any], dict[str, Upload]]:
    """Return (parameters, uploaded files); string values keep their form-encoded meaning."""
    params: dict[str, Any] = {}
    files: dict[str, Upload] = {}
    if query:
        params.update(parse_form(query))
    if not body:
        return params, files
    media_type = content_type.split(";", 1)[0].strip().lower()
    if media_type == "application/x-www-form-urlencoded":
        params.update(parse_form(body))
    elif media_type == "application/json":
        try:
            decoded = json.loads(body)
        except ValueError:
            raise bad_request("can't parse JSON encoded request") from None
        if not isinstance(decoded, dict):
            raise bad_request("JSON object expected")
        params.update(decoded)
    elif media_type == "multipart/form-data":
        boundary = _header_params(content_type).get("boundary")
        if not boundary:
            raise bad_request("can't parse multipart/form-data request: no boundary")
        fields, files = parse_multipart(body, boundary.encode("latin-1"))
        params.update(fields)
    return params, files


def parse_form(raw: bytes) -> dict[str, str]:
    """Decode application/x-www-form-urlencoded bytes (later duplicates win)."""
    out: dict[str, str] = {}
    for pair in raw.split(b"&"):
        if pair:
            key, _, value = pair.partition(b"=")
            out[_unquote(key)] = _unquote(value)
    return out


def _unquote(raw: bytes) -> str:
    if b"+" in raw:
        raw = raw.replace(b"+", b" ")
    if b"%" in raw:
        # urllib's unquote is pure Python and dominated the cost of a Korean text with a
        # keyboard; %XX -> \xXX and the C escape decoder give the same bytes 6x faster.
        try:
            raw = codecs.escape_decode(raw.replace(b"\\", b"\\\\").replace(b"%", b"\\x"))[0]
        except ValueError:  # a malformed %-sequence: let urllib keep it as text
            raw = unquote_to_bytes(raw)
    return raw.decode("utf-8", "replace")


def _header_params(value: str) -> dict[str, str]:
    found = {k.lower(): v for k, v in _TOKEN_PARAM.findall(value)}
    found.update((k.lower(), v.replace('\\"', '"')) for k, v in _PARAM.findall(value))
    return found


def parse_multipart(body: bytes, boundary: bytes) -> tuple[dict[str, str], dict[str, Upload]]:
    """Split a multipart/form-data body into text fields and file parts."""
    fields: dict[str, str] = {}
    files: dict[str, Upload] = {}
    delimiter = b"--" + boundary
    for part in body.split(delimiter)[1:]:
        if part.startswith(b"--"):
            break
        if part.startswith(b"\r\n"):
            part = part[2:]
        head, separator, content = part.partition(b"\r\n\r\n")
        if not separator:
            raise bad_request("can't parse multipart/form-data request")
        if content.endswith(b"\r\n"):
            content = content[:-2]
        name = filename = None
        part_type = "application/octet-stream"
        for line in head.decode("utf-8", "replace").split("\r\n"):
            key, _, value = line.partition(":")
            key = key.strip().lower()
            if key == "content-disposition":
                params = _header_params(value)
                name = params.get("name")
                filename = params.get("filename")
                if "filename*" in params and params["filename*"].lower().startswith("utf-8''"):
                    filename = unquote(params["filename*"][7:])
            elif key == "content-type":
                part_type = value.strip()
        if name is None:
            continue
        # httpx writes a double quote inside a name as %22 (the HTML5 form rule)
        name = name.replace("%22", '"')
        if filename is not None:
            files[name] = Upload(filename.replace("%22", '"'), content, part_type)
        else:
            fields[name] = content.decode("utf-8", "replace")
    return fields, files

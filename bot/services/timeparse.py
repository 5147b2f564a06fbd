"""Dates, times and durations as people type them, in Korean or English.

    parse_when("12월 19일 18:00", now=..., timezone="Asia/Seoul")
    parse_when("다음주 월요일 오후 7시 30분", ...), parse_when("내일 19:30", ...)
    parse_when("2026-12-19 18:00", ...), parse_when("fri 6pm", ...), parse_when("Dec 19 18:00")
    parse_when("2주 뒤 18:00", ...), parse_when("한 달 후", ...), parse_when("in 2 weeks 6pm", ...)
    parse_duration("1시간 30분"), parse_duration("1d"), parse_duration("90 minutes")

Times are read in the organisation's time zone and returned as aware UTC datetimes. Anything
that cannot be read raises InvalidInput(field="when" / "duration") with the text, so the
handler can answer with what is expected and an example.
"""

from __future__ import annotations

import datetime as dt
import re
from zoneinfo import ZoneInfo

from dateutil import parser as dateutil_parser
from dateutil.relativedelta import relativedelta

from bot.services.errors import InvalidInput

UTC = dt.UTC
WEEKDAYS = {
    "월": 0,
    "화": 1,
    "수": 2,
    "목": 3,
    "금": 4,
    "토": 5,
    "일": 6,
    "mon": 0,
    "tue": 1,
    "wed": 2,
    "thu": 3,
    "fri": 4,
    "sat": 5,
    "sun": 6,
}
MONTHS = {
    name: number
    for number, names in enumerate(
        [
            ("jan", "january"),
            ("feb", "february"),
            ("mar", "march"),
            ("apr", "april"),
            ("may",),
            ("jun", "june"),
            ("jul", "july"),
            ("aug", "august"),
            ("sep", "sept", "september"),
            ("oct", "october"),
            ("nov", "november"),
            ("dec", "december"),
        ],
        start=1,
    )
    for name in names
}
_WEEKDAY_WORD = r"(?P<wd>[월화수목금토일])(?:요일)?|(?P<wd_en>mon|tue|wed|thu|fri|sat|sun)[a-z]*"
# "2주 뒤", "한 달 후", "일주일 뒤", "열흘 후"; "in 2 weeks", "3 days from now", "a month later".
_DAY_WORDS = {
    "하루": 1,
    "이틀": 2,
    "사흘": 3,
    "나흘": 4,
    "닷새": 5,
    "엿새": 6,
    "일주일": 7,
    "열흘": 10,
    "보름": 15,
}
_COUNTS = {
    **dict.fromkeys(("한", "a", "an", "one"), 1),
    **dict.fromkeys(("두", "two"), 2),
    **dict.fromkeys(("세", "three"), 3),
    **dict.fromkeys(("네", "four"), 4),
    **dict.fromkeys(("다섯", "five"), 5),
    **dict.fromkeys(("여섯", "six"), 6),
    **dict.fromkeys(("일곱", "seven"), 7),
    **dict.fromkeys(("여덟", "eight"), 8),
    **dict.fromkeys(("아홉", "nine"), 9),
    **dict.fromkeys(("열", "ten"), 10),
}
_LATER_UNITS = {
    **dict.fromkeys(("일", "day", "days"), "days"),
    **dict.fromkeys(("주", "주일", "week", "weeks"), "weeks"),
    **dict.fromkeys(("달", "개월", "month", "months"), "months"),
}
_COUNT = r"(?P<n>\d{1,3}|" + "|".join(sorted(_COUNTS, key=len, reverse=True)) + ")"
_LATER = [
    rf"^(?:{_COUNT}\s*(?P<unit>주일|주|개월|달|일)|(?P<days>{'|'.join(_DAY_WORDS)}))\s*(?:뒤|후)에?",
    rf"^in\s+{_COUNT}\s+(?P<unit>days?|weeks?|months?)\b",
    rf"^{_COUNT}\s+(?P<unit>days?|weeks?|months?)\s+(?:from\s+now|later)\b",
]


def _invalid(text: str) -> InvalidInput:
    return InvalidInput(field="when", value=text)


def parse_when(
    text: str,
    *,
    now: dt.datetime,
    timezone: str,
    default_time: dt.time | None = None,
) -> dt.datetime:
    """Read a moment like "12월 19일 18:00" or "내일 19:30" (aware UTC); InvalidInput if not."""
    zone = ZoneInfo(timezone)
    local_now = now.astimezone(zone)
    cleaned = _normalise(text)
    if not cleaned:
        raise _invalid(text)
    date_part, rest = _take_date(cleaned, local_now)
    time_part, rest = _take_time(rest)
    if rest.strip():
        return _fallback(text, local_now, zone, default_time)
    if date_part is None and time_part is None:
        raise _invalid(text)
    if time_part is None:
        if default_time is None:
            raise InvalidInput(field="when", value=text, reason="no_time")
        time_part = default_time
    if date_part is None:
        # A time alone: the next time the clock shows it.
        candidate = dt.datetime.combine(local_now.date(), time_part, tzinfo=zone)
        if candidate <= local_now:
            candidate += dt.timedelta(days=1)
        return candidate.astimezone(UTC)
    return dt.datetime.combine(date_part, time_part, tzinfo=zone).astimezone(UTC)


def _normalise(text: str) -> str:
    text = text.strip().lower()
    text = re.sub(r"\((?:[월화수목금토일]|[a-z]{3})\)", " ", text)  # "(금)", "(fri)"
    text = text.replace(",", " ").replace("  ", " ")
    return re.sub(r"\s+", " ", text).strip()


def _take_date(text: str, now: dt.datetime) -> tuple[dt.date | None, str]:
    """Find a date at the start of the text; return it and what is left."""
    today = now.date()
    patterns = [
        (r"^(?P<y>\d{4})[-./](?P<m>\d{1,2})[-./](?P<d>\d{1,2})(?:t|\b)", "ymd"),
        (r"^(?:(?P<y>\d{4})년\s*)?(?P<m>\d{1,2})월\s*(?P<d>\d{1,2})일", "ymd"),
        (r"^(?P<m>\d{1,2})[/.](?P<d>\d{1,2})\b", "md"),
        (r"^(?P<mon>[a-z]{3,9})\.?\s+(?P<d>\d{1,2})(?:st|nd|rd|th)?(?:\s+(?P<y>\d{4}))?\b", "mon"),
        (r"^(?P<d>\d{1,2})(?:st|nd|rd|th)?\s+(?P<mon>[a-z]{3,9})\.?(?:\s+(?P<y>\d{4}))?\b", "mon"),
    ]
    for pattern, kind in patterns:
        match = re.match(pattern, text)
        if not match:
            continue
        if kind == "mon":
            month = MONTHS.get(match.group("mon"))
            if month is None:
                continue
        else:
            month = int(match.group("m"))
        day = int(match.group("d"))
        year_text = match.groupdict().get("y")
        year = int(year_text) if year_text else None
        try:
            date = dt.date(year or today.year, month, day)
        except ValueError:
            raise _invalid(text) from None
        if year is None and date < today - dt.timedelta(days=1):
            date = date.replace(year=today.year + 1)  # "1월 5일" in December: next year
        return date, text[match.end() :].strip()
    later = _take_later_date(text, today)
    if later[0] is not None:
        return later
    words = {"오늘": 0, "today": 0, "내일": 1, "tomorrow": 1, "모레": 2}
    for word, days in words.items():
        if text.startswith(word):
            return today + dt.timedelta(days=days), text[len(word) :].strip()
    match = re.match(
        rf"^(?P<rel>다음\s*주|이번\s*주|다다음\s*주|next|this)?\s*(?:{_WEEKDAY_WORD})\b", text
    )
    if match:
        weekday = WEEKDAYS[match.group("wd") or match.group("wd_en")]
        relative = (match.group("rel") or "").replace(" ", "")
        ahead = (weekday - today.weekday()) % 7
        if relative in ("다음주", "next"):
            # "다음주 월요일": the given day of next week (weeks start on Monday).
            start_next_week = today + dt.timedelta(days=7 - today.weekday())
            date = start_next_week + dt.timedelta(days=weekday)
        elif relative == "다다음주":
            date = today + dt.timedelta(days=14 - today.weekday() + weekday)
        else:
            date = today + dt.timedelta(days=ahead)
        return date, text[match.end() :].strip()
    return None, text


def _take_later_date(text: str, today: dt.date) -> tuple[dt.date | None, str]:
    """A date counted from today at the start of the text ("2주 뒤", "in 3 days")."""
    for pattern in _LATER:
        match = re.match(pattern, text)
        if not match:
            continue
        found = match.groupdict()
        if found.get("days"):
            count, unit = _DAY_WORDS[found["days"]], "days"
        else:
            count = int(found["n"]) if found["n"].isdigit() else _COUNTS[found["n"]]
            unit = _LATER_UNITS[found["unit"]]
        if count == 0:
            raise _invalid(text)
        return today + relativedelta(**{unit: count}), text[match.end() :].strip()
    return None, text


def _take_time(text: str) -> tuple[dt.time | None, str]:
    """Find a time of day at the start of the text; return it and what is left."""
    text = text.strip()
    if not text:
        return None, ""
    for word, value in (
        ("정오", dt.time(12, 0)),
        ("noon", dt.time(12, 0)),
        ("자정", dt.time(0, 0)),
        ("midnight", dt.time(0, 0)),
    ):
        if text.startswith(word):
            return value, text[len(word) :].strip()
    match = re.match(
        r"^(?:(?P<ampm_ko>오전|오후|아침|저녁|밤)\s*)?(?P<h>\d{1,2})"
        r"(?:(?P<half>시\s*반)|(?::|시\s*)(?P<m>\d{1,2})?(?:분)?)?"
        r"\s*(?P<ampm>am|pm|a\.m\.|p\.m\.)?(?=\s|$)",
        text,
    )
    if not match or (
        match.group("m") is None
        and not match.group("half")
        and "시" not in match.group(0)
        and ":" not in match.group(0)
        and not match.group("ampm")
    ):
        return None, text
    hour = int(match.group("h"))
    minute = 30 if match.group("half") else int(match.group("m") or 0)
    marker = match.group("ampm_ko") or match.group("ampm") or ""
    if marker in ("오후", "저녁", "밤", "pm", "p.m.") and hour < 12:
        hour += 12
    if marker in ("오전", "am", "a.m.") and hour == 12:
        hour = 0
    if not (0 <= hour <= 23 and 0 <= minute <= 59):
        raise _invalid(text)
    return dt.time(hour, minute), text[match.end() :].strip()


def _fallback(
    text: str, now: dt.datetime, zone: ZoneInfo, default_time: dt.time | None
) -> dt.datetime:
    """English forms our patterns do not cover ("19 December 2026 6:30 pm")."""
    if re.search(r"[가-힣]", text):
        raise _invalid(text)
    default = now.replace(
        hour=(default_time or dt.time(0)).hour,
        minute=(default_time or dt.time(0)).minute,
        second=0,
        microsecond=0,
    )
    try:
        parsed = dateutil_parser.parse(text, default=default.replace(tzinfo=None))
    except (ValueError, OverflowError):
        raise _invalid(text) from None
    return parsed.replace(tzinfo=zone).astimezone(UTC)


_DURATION_UNITS = {
    "d": "days",
    "day": "days",
    "days": "days",
    "일": "days",
    "h": "hours",
    "hr": "hours",
    "hour": "hours",
    "hours": "hours",
    "시간": "hours",
    "m": "minutes",
    "min": "minutes",
    "mins": "minutes",
    "minute": "minutes",
    "minutes": "minutes",
    "분": "minutes",
    "w": "weeks",
    "week": "weeks",
    "weeks": "weeks",
    "주": "weeks",
    "주일": "weeks",
}


def parse_duration(text: str) -> dt.timedelta:
    """Read a duration like "1d", "2시간", "1시간 30분", "90 minutes"; InvalidInput if not."""
    cleaned = text.strip().lower().replace(",", " ")
    parts = re.findall(r"(\d+)\s*([a-z가-힣]+)", cleaned)
    leftover = re.sub(r"(\d+)\s*([a-z가-힣]+)", "", cleaned).strip()
    if not parts or leftover:
        raise InvalidInput(field="duration", value=text)
    total = dt.timedelta()
    for amount, unit in parts:
        name = _DURATION_UNITS.get(unit)
        if name is None:
            raise InvalidInput(field="duration", value=text)
        total += dt.timedelta(**{name: int(amount)})
    if total <= dt.timedelta():
        raise InvalidInput(field="duration", value=text)
    return total


def require_future(moment: dt.datetime, *, now: dt.datetime, text: str = "") -> dt.datetime:
    """The moment, or InvalidInput(reason="past") if it has already passed."""
    if moment <= now:
        raise InvalidInput(field="when", value=text, reason="past")
    return moment

"""Reading typed dates and durations; spreadsheet exports that Excel opens."""

from __future__ import annotations

import csv
import datetime as dt
import io

import pytest
from openpyxl import load_workbook

from bot.clock import UTC
from bot.services.errors import InvalidInput
from bot.services.exports import csv_bytes, xlsx_bytes
from bot.services.timeparse import parse_duration, parse_when, require_future

# Tuesday 1 December 2026, 09:00 in Seoul.
NOW = dt.datetime(2026, 12, 1, 0, 0, tzinfo=UTC)
SEOUL = "Asia/Seoul"


def seoul(text: str, **kwargs) -> str:
    moment = parse_when(text, now=NOW, timezone=SEOUL, **kwargs)
    return moment.astimezone(dt.timezone(dt.timedelta(hours=9))).strftime("%Y-%m-%d %H:%M")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-12-19 18:00", "2026-12-19 18:00"),
        ("2026.12.19 18:00", "2026-12-19 18:00"),
        ("12월 19일 18:00", "2026-12-19 18:00"),
        ("12월 19일 (토) 18:00", "2026-12-19 18:00"),
        ("2027년 1월 5일 오후 7시 30분", "2027-01-05 19:30"),
        ("1월 5일 19:00", "2027-01-05 19:00"),  # January, seen in December: next year
        ("12/19 6:30pm", "2026-12-19 18:30"),
        ("내일 19:30", "2026-12-02 19:30"),
        ("오늘 오후 6시", "2026-12-01 18:00"),
        ("모레 오전 10시 반", "2026-12-03 10:30"),
        ("금요일 18:00", "2026-12-04 18:00"),
        ("다음주 월요일 19:30", "2026-12-07 19:30"),
        ("월요일 19:30", "2026-12-07 19:30"),
        ("18:00", "2026-12-01 18:00"),
        ("08:00", "2026-12-02 08:00"),  # already past today: tomorrow
        ("tomorrow 7pm", "2026-12-02 19:00"),
        ("fri 6pm", "2026-12-04 18:00"),
        ("Dec 19 18:00", "2026-12-19 18:00"),
        ("19 December 2026 6:30 pm", "2026-12-19 18:30"),
        ("정오", "2026-12-01 12:00"),
        ("2주 뒤 18:00", "2026-12-15 18:00"),
        ("3일 뒤에 오후 7시", "2026-12-04 19:00"),
        ("일주일 후 19:30", "2026-12-08 19:30"),
        ("열흘 뒤 10:00", "2026-12-11 10:00"),
        ("한 달 후 18:00", "2027-01-01 18:00"),
        ("in 2 weeks 6pm", "2026-12-15 18:00"),
        ("3 days from now 18:00", "2026-12-04 18:00"),
        ("a month later 9am", "2027-01-01 09:00"),
    ],
)
def test_moments_people_type(text, expected):
    assert seoul(text) == expected


def test_a_date_without_time_uses_the_default_or_asks():
    assert seoul("12월 24일", default_time=dt.time(23, 59)) == "2026-12-24 23:59"
    assert seoul("2주 뒤", default_time=dt.time(23, 59)) == "2026-12-15 23:59"
    with pytest.raises(InvalidInput) as caught:
        seoul("12월 24일")
    assert caught.value.params["reason"] == "no_time"


@pytest.mark.parametrize(
    "text",
    ["", "언젠가", "13월 40일 18:00", "25:00", "내일 저녁쯤", "asdf", "0일 뒤 18:00", "2주 18:00"],
)
def test_unreadable_moments_are_refused_with_the_text(text):
    with pytest.raises(InvalidInput) as caught:
        seoul(text)
    assert caught.value.params["field"] == "when"


def test_times_are_read_in_the_organisations_zone():
    berlin = parse_when("2026-12-19 18:00", now=NOW, timezone="Europe/Berlin")
    assert berlin == dt.datetime(2026, 12, 19, 17, 0, tzinfo=UTC)


def test_past_moments_can_be_refused():
    with pytest.raises(InvalidInput) as caught:
        require_future(NOW - dt.timedelta(minutes=1), now=NOW, text="어제")
    assert caught.value.params["reason"] == "past"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("1d", dt.timedelta(days=1)),
        ("2시간", dt.timedelta(hours=2)),
        ("1시간 30분", dt.timedelta(minutes=90)),
        ("90 minutes", dt.timedelta(minutes=90)),
        ("1일", dt.timedelta(days=1)),
        ("2 weeks", dt.timedelta(weeks=2)),
    ],
)
def test_durations(text, expected):
    assert parse_duration(text) == expected


@pytest.mark.parametrize("text", ["", "soon", "0h", "1 fortnight", "-1h"])
def test_bad_durations(text):
    with pytest.raises(InvalidInput):
        parse_duration(text)


async def test_csv_has_a_bom_korean_intact_and_no_formulas():
    moment = dt.datetime(2026, 12, 19, 9, 0, tzinfo=UTC)
    data = await csv_bytes(["이름", "시각", "메모"], [["김민지", moment, "=HYPERLINK(1)"]])
    assert data.startswith(b"\xef\xbb\xbf")
    rows = list(csv.reader(io.StringIO(data.decode("utf-8-sig"))))
    assert rows == [["이름", "시각", "메모"], ["김민지", "2026-12-19 18:00", "'=HYPERLINK(1)"]]


async def test_xlsx_streams_rows_and_opens_with_korean():
    async def rows():
        for n in range(1000):
            yield [f"참가자{n}", n, dt.datetime(2026, 12, 19, 9, 0, tzinfo=UTC)]

    data = await xlsx_bytes(["이름", "번호", "시각"], rows(), sheet_title="신청자 [목록]")
    sheet = load_workbook(io.BytesIO(data), read_only=True).active
    values = list(sheet.iter_rows(values_only=True))
    assert values[0] == ("이름", "번호", "시각")
    assert values[1] == ("참가자0", 0, dt.datetime(2026, 12, 19, 18, 0))
    assert len(values) == 1001
    assert sheet.title == "신청자 _목록_"

"""Meetings without a database: recurrence rules in time zones, the one-line form, .ics files."""

from __future__ import annotations

import datetime as dt

import icalendar
import pytest

from bot.services import ics, meetings, recurrence
from bot.services.errors import InvalidInput
from models import Meeting, MeetingOccurrence

UTC = dt.UTC
SEOUL = "Asia/Seoul"
NOW = dt.datetime(2026, 12, 1, 0, 0, tzinfo=UTC)  # Tuesday 1 December 2026, 09:00 in Seoul


def seoul(*args: int) -> dt.datetime:
    return recurrence.from_local(dt.datetime(*args), SEOUL)


def test_biweekly_monday_1930_expands_across_months_in_seoul():
    first = seoul(2026, 12, 7, 19, 30)
    rule = recurrence.build_rule(
        "biweekly", start=first, timezone=SEOUL, until=seoul(2027, 3, 31, 23, 59, 59)
    )
    assert rule == "FREQ=WEEKLY;INTERVAL=2;BYDAY=MO;UNTIL=20270331T145959Z"
    starts = recurrence.occurrences(rule, first=first, timezone=SEOUL, limit=50)
    local = [recurrence.to_local(start, SEOUL) for start in starts]
    assert [(d.month, d.day) for d in local] == [
        (12, 7),
        (12, 21),
        (1, 4),
        (1, 18),
        (2, 1),
        (2, 15),
        (3, 1),
        (3, 15),
        (3, 29),
    ]
    assert {(d.weekday(), d.hour, d.minute) for d in local} == {(0, 19, 30)}
    assert {start.astimezone(UTC).time() for start in starts} == {dt.time(10, 30)}
    # Continuing after a given occurrence gives the next ones, across the year's end.
    after = recurrence.occurrences(rule, first=first, timezone=SEOUL, after=starts[1], limit=2)
    assert after == starts[2:4]


def test_weekly_series_keeps_its_wall_clock_time_across_daylight_saving():
    berlin = "Europe/Berlin"
    first = recurrence.from_local(dt.datetime(2027, 3, 15, 19, 30), berlin)
    rule = recurrence.build_rule("weekly", start=first, timezone=berlin)
    starts = recurrence.occurrences(rule, first=first, timezone=berlin, limit=4)
    assert [s.strftime("%m-%d %H:%M") for s in starts] == [
        "03-15 18:30",  # CET, UTC+1
        "03-22 18:30",
        "03-29 17:30",  # CEST from 28 March: still 19:30 in Berlin
        "04-05 17:30",
    ]
    new_york = "America/New_York"
    first = recurrence.from_local(dt.datetime(2026, 10, 26, 18, 0), new_york)
    rule = recurrence.build_rule("weekly", start=first, timezone=new_york)
    local = [
        recurrence.to_local(s, new_york)
        for s in recurrence.occurrences(rule, first=first, timezone=new_york, limit=3)
    ]
    assert {d.hour for d in local} == {18}


def test_monthly_on_the_nth_weekday_and_on_the_last():
    first = seoul(2026, 12, 7, 19, 0)  # the first Monday of December
    rule = recurrence.build_rule("monthly", start=first, timezone=SEOUL)
    assert rule == "FREQ=MONTHLY;BYDAY=1MO"
    days = [
        recurrence.to_local(s, SEOUL).date()
        for s in recurrence.occurrences(rule, first=first, timezone=SEOUL, limit=3)
    ]
    assert days == [dt.date(2026, 12, 7), dt.date(2027, 1, 4), dt.date(2027, 2, 1)]
    fifth = seoul(2026, 12, 29, 19, 0)  # a fifth Tuesday: "the last Tuesday" every month
    rule = recurrence.build_rule("monthly", start=fifth, timezone=SEOUL)
    described = recurrence.describe(rule)
    assert (described.kind, described.ordinal, described.weekday) == ("monthly", -1, 1)
    days = [
        recurrence.to_local(s, SEOUL).date()
        for s in recurrence.occurrences(rule, first=fifth, timezone=SEOUL, limit=3)
    ]
    assert days == [dt.date(2026, 12, 29), dt.date(2027, 1, 26), dt.date(2027, 2, 23)]


def test_the_one_line_form_of_the_issue():
    draft = meetings.parse_one_line(
        "운영위원회 | 다음주 월요일 19:30 | 2시간 | 마을회관 2층 | 격주 | 2027년 6월까지",
        now=NOW,
        timezone=SEOUL,
    )
    assert draft.title == "운영위원회"
    assert draft.starts_at == seoul(2026, 12, 7, 19, 30)
    assert draft.duration_minutes == 120
    assert (draft.place, draft.link) == ("마을회관 2층", "")
    assert draft.repeat == "biweekly"
    assert draft.until == seoul(2027, 6, 30, 23, 59, 59)
    assert draft.rule(SEOUL) == "FREQ=WEEKLY;INTERVAL=2;BYDAY=MO;UNTIL=20270630T145959Z"


def test_one_line_parts_after_the_time_come_in_any_order():
    draft = meetings.parse_one_line(
        "Monthly review | 2026-12-03 19:00 | https://meet.example.org/abc | monthly | 90m "
        "| Bring the budget draft | until 2027-05-31",
        now=NOW,
        timezone=SEOUL,
    )
    assert draft.link == "https://meet.example.org/abc"
    assert draft.place == "Bring the budget draft"
    assert (draft.repeat, draft.duration_minutes) == ("monthly", 90)
    assert recurrence.to_local(draft.until, SEOUL).date() == dt.date(2027, 5, 31)
    two_free = meetings.parse_one_line(
        "총회 | 12월 19일 14:00 | 구민회관 | 안건: 예산, 임원 선출", now=NOW, timezone=SEOUL
    )
    assert (two_free.place, two_free.agenda) == ("구민회관", "안건: 예산, 임원 선출")


@pytest.mark.parametrize(
    ("line", "error", "field", "reason"),
    [
        ("운영위원회", meetings.MeetingInvalid, "one_line", "usage"),
        ("운영위원회 | 어제 19:30", InvalidInput, "when", None),
        ("운영위원회 | 11월 30일 19:30", InvalidInput, "when", "past"),
        ("운영위원회 | 언젠가 저녁", InvalidInput, "when", None),
        (
            "운영위원회 | 다음주 월요일 19:30 | 매주 화요일",
            meetings.MeetingInvalid,
            "repeat",
            "weekday",
        ),
        (
            "운영위원회 | 다음주 월요일 19:30 | 2027년 6월까지",
            meetings.MeetingInvalid,
            "until",
            "no_repeat",
        ),
        (
            "운영위원회 | 다음주 월요일 19:30 | 매주 | 2026년 11월까지",
            meetings.MeetingInvalid,
            "until",
            "before_start",
        ),
        (
            "운영위원회 | 다음주 월요일 19:30 | 48시간",
            meetings.MeetingInvalid,
            "duration",
            "range",
        ),
        (
            "운영위원회 | 다음주 월요일 19:30 | 가 | 나 | 다",
            meetings.MeetingInvalid,
            "one_line_option",
            None,
        ),
    ],
)
def test_bad_one_line_input_names_what_is_wrong(line, error, field, reason):
    with pytest.raises(error) as raised:
        meetings.parse_one_line(line, now=NOW, timezone=SEOUL)
    assert raised.value.params.get("field") == field
    if reason:
        assert raised.value.params.get("reason") == reason


@pytest.mark.parametrize(
    ("text", "day"),
    [
        ("2027년 6월까지", dt.date(2027, 6, 30)),
        ("2027-02", dt.date(2027, 2, 28)),
        ("3월", dt.date(2027, 3, 31)),
        ("2027-06-15", dt.date(2027, 6, 15)),
        ("until Jan 10 2027", dt.date(2027, 1, 10)),
    ],
)
def test_the_end_of_a_series_as_people_write_it(text, day):
    until = meetings.read_until(text, now=NOW, timezone=SEOUL, start=seoul(2026, 12, 7, 19, 30))
    assert recurrence.to_local(until, SEOUL) == dt.datetime.combine(day, dt.time(23, 59, 59))


def _series() -> tuple[Meeting, list[MeetingOccurrence]]:
    first = seoul(2026, 12, 7, 19, 30)
    meeting = Meeting(
        id=42,
        organization_id=1,
        title="운영위원회",
        starts_at=first,
        duration_minutes=120,
        place="마을회관 2층",
        agenda="예산 검토",
        rrule=recurrence.build_rule("biweekly", start=first, timezone=SEOUL),
        reminder_minutes=[1440, 60],
        created_at=NOW,
        revision=3,
    )
    starts = recurrence.occurrences(meeting.rrule, first=first, timezone=SEOUL, limit=3)
    rows = [
        MeetingOccurrence(
            id=index + 1,
            meeting_id=42,
            original_start=start,
            starts_at=start,
            duration_minutes=120,
        )
        for index, start in enumerate(starts)
    ]
    rows[1].cancelled_at = NOW
    rows[2].starts_at = rows[2].original_start + dt.timedelta(days=1)
    return meeting, rows


def test_the_ics_of_a_series_parses_back_with_its_exceptions():
    meeting, rows = _series()
    data = ics.calendar(
        [ics.CalendarEntry(meeting, rows, SEOUL, "새솔마을 주민회")],
        now=NOW,
        domain="moim_bot.t.me",
    )
    calendar = icalendar.Calendar.from_ical(data)
    events = list(calendar.walk("VEVENT"))
    assert len(events) == 2
    main, moved = events
    assert str(main["uid"]) == str(moved["uid"]) == "meeting-42@moim_bot.t.me"
    assert str(main["summary"]) == "운영위원회" and str(main["location"]) == "마을회관 2층"
    start = main.decoded("dtstart")
    assert start == dt.datetime(2026, 12, 7, 19, 30, tzinfo=start.tzinfo)
    assert main["dtstart"].params["TZID"] == SEOUL
    assert main.decoded("dtend") - start == dt.timedelta(hours=2)
    rule = main["rrule"]
    assert rule["FREQ"] == ["WEEKLY"] and rule["INTERVAL"] == [2] and rule["BYDAY"] == ["MO"]
    excluded = main["exdate"]
    excluded = excluded if isinstance(excluded, list) else [excluded]
    assert [d.dt for e in excluded for d in e.dts] == [rows[1].original_start]
    assert moved.decoded("recurrence-id") == rows[2].original_start
    assert moved.decoded("dtstart") == rows[2].starts_at
    assert int(main["sequence"]) == 3
    assert [tz["tzid"] for tz in calendar.walk("VTIMEZONE")] == [SEOUL]


def test_the_ics_of_a_cancelled_one_off_meeting_says_so():
    meeting = Meeting(
        id=7,
        organization_id=1,
        title="Workshop",
        starts_at=seoul(2026, 12, 19, 14, 0),
        duration_minutes=90,
        link="https://meet.example.org/x",
        created_at=NOW,
        cancelled_at=NOW,
    )
    data = ics.calendar([ics.CalendarEntry(meeting, [], SEOUL, "")], now=NOW, domain="d")
    (event,) = icalendar.Calendar.from_ical(data).walk("VEVENT")
    assert str(event["status"]) == "CANCELLED"
    assert str(event["url"]) == "https://meet.example.org/x"
    assert "rrule" not in event

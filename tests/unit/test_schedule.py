"""Wall-clock scheduling (API.md, Notifications `local_time`; Preferences
quiet hours): the next occurrence of a local time, DST changes included,
and daily quiet windows, including those that cross midnight."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from clarion.domain.schedule import next_local_time, quiet_hours_end, zone
from clarion.domain.targeting import Spec, delivery_window

NEW_YORK = ZoneInfo("America/New_York")
BERLIN = ZoneInfo("Europe/Berlin")
TOKYO = ZoneInfo("Asia/Tokyo")
ZONES = [
    "UTC",
    "America/New_York",
    "Europe/Berlin",
    "Asia/Tokyo",
    "Australia/Lord_Howe",
    "Asia/Kolkata",
    "America/St_Johns",
    "Pacific/Chatham",
    "America/Sao_Paulo",
]


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)  # type: ignore[misc]


# -- zone ----------------------------------------------------------------------------------


def test_zone_takes_the_first_valid_name_else_utc() -> None:
    assert zone(None, "Asia/Tokyo") == TOKYO
    assert zone("Europe/Berlin", "Asia/Tokyo") == BERLIN
    assert zone("Not/AZone", "", "Asia/Tokyo") == TOKYO
    assert zone("../etc/passwd") == ZoneInfo("UTC")
    assert zone() == ZoneInfo("UTC")


# -- local_time: next occurrence ---------------------------------------------------------------


def test_later_today() -> None:
    # 08:00 in Tokyo is 23:00 UTC the day before
    assert next_local_time(utc(2026, 5, 1, 22, 0), "08:00", TOKYO) == utc(2026, 5, 1, 23, 0)


def test_already_past_today_is_tomorrow() -> None:
    assert next_local_time(utc(2026, 5, 1, 23, 30), "08:00", TOKYO) == utc(2026, 5, 2, 23, 0)


def test_exactly_now_is_now() -> None:
    assert next_local_time(utc(2026, 5, 1, 9, 0), "09:00", ZoneInfo("UTC")) == utc(2026, 5, 1, 9, 0)


def test_across_the_date_line_from_utc() -> None:
    """It is already the 2nd in Tokyo at 20:00 UTC on the 1st: 06:00 there is 21:00 UTC."""
    assert next_local_time(utc(2026, 5, 1, 20, 0), "06:00", TOKYO) == utc(2026, 5, 1, 21, 0)


def test_spring_forward_keeps_the_wall_clock() -> None:
    """Berlin moves from UTC+1 to UTC+2 on 2026-03-29: 09:00 local is 08:00 UTC
    the day before and 07:00 UTC that day."""
    assert next_local_time(utc(2026, 3, 28, 9, 0), "09:00", BERLIN) == utc(2026, 3, 29, 7, 0)
    assert next_local_time(utc(2026, 3, 27, 12, 0), "09:00", BERLIN) == utc(2026, 3, 28, 8, 0)


def test_fall_back_keeps_the_wall_clock() -> None:
    """Berlin moves back to UTC+1 on 2026-10-25."""
    assert next_local_time(utc(2026, 10, 24, 12, 0), "09:00", BERLIN) == utc(2026, 10, 25, 8, 0)


def test_time_skipped_by_spring_forward() -> None:
    """02:30 does not exist in New York on 2024-03-10 (02:00 → 03:00): it maps
    to 03:30 EDT, the same minutes past the jump, that day."""
    found = next_local_time(utc(2024, 3, 10, 5, 0), "02:30", NEW_YORK)
    assert found == utc(2024, 3, 10, 7, 30)
    assert found.astimezone(NEW_YORK).strftime("%H:%M") == "03:30"


def test_time_repeated_by_fall_back() -> None:
    """01:30 happens twice in New York on 2024-11-03 (EDT, then EST): the
    first after `after` is chosen, never one before it."""
    assert next_local_time(utc(2024, 11, 3, 5, 0), "01:30", NEW_YORK) == utc(2024, 11, 3, 5, 30)
    # 01:45 EDT: the first 01:30 has passed, the second (EST) comes 45 minutes later
    assert next_local_time(utc(2024, 11, 3, 5, 45), "01:30", NEW_YORK) == utc(2024, 11, 3, 6, 30)
    # 01:15 EST, in the repeated hour: 01:30 EST, not 01:30 EDT an hour ago
    assert next_local_time(utc(2024, 11, 3, 6, 15), "01:30", NEW_YORK) == utc(2024, 11, 3, 6, 30)
    # after both: tomorrow
    assert next_local_time(utc(2024, 11, 3, 6, 45), "01:30", NEW_YORK) == utc(2024, 11, 4, 6, 30)


@given(
    after=st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2040, 1, 1), timezones=st.just(UTC)),
    hour=st.integers(0, 23),
    minute=st.integers(0, 59),
    name=st.sampled_from(ZONES),
)
def test_next_local_time_properties(after: datetime, hour: int, minute: int, name: str) -> None:
    """Never before `after`, within a day (and a DST hour), and it reads the
    wanted wall clock unless a DST jump skipped it."""
    tz, hhmm = ZoneInfo(name), f"{hour:02d}:{minute:02d}"
    found = next_local_time(after, hhmm, tz)
    assert found.tzinfo == UTC
    assert after <= found < after + timedelta(hours=26)
    local = found.astimezone(tz)
    if (local.hour, local.minute) != (hour, minute):
        day = local.date()
        assert not _exists(day, hour, minute, tz) or not _exists(day - timedelta(days=1), hour, minute, tz)


def _exists(day: date, hour: int, minute: int, tz: ZoneInfo) -> bool:
    """Whether that wall clock happens in `tz` that day (a DST jump may skip it)."""
    naive = datetime(day.year, day.month, day.day, hour, minute)
    return naive.replace(tzinfo=tz).astimezone(UTC).astimezone(tz).replace(tzinfo=None) == naive


def test_delivery_window_moves_due_and_ttl_to_the_local_time() -> None:
    base = utc(2026, 5, 1, 12, 0)
    spec = Spec("alert", None, base, 3600, "09:00")
    due, expires = delivery_window(spec, "Asia/Tokyo", "Europe/Berlin")  # the user's zone wins
    assert due == utc(2026, 5, 2, 0, 0) and expires == due + timedelta(hours=1)
    due, _ = delivery_window(spec, None, "Europe/Berlin")  # then the device's
    assert due == utc(2026, 5, 2, 7, 0)
    due, _ = delivery_window(spec, None, None)  # then UTC
    assert due == utc(2026, 5, 2, 9, 0)
    assert delivery_window(Spec("alert", None, base, 60), "Asia/Tokyo", None) == (base, base + timedelta(seconds=60))


# -- quiet hours ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("local", "expected_end"),
    [
        ("2026-05-01 21:59", None),
        ("2026-05-01 22:00", "2026-05-02 07:00"),  # start inclusive
        ("2026-05-01 23:30", "2026-05-02 07:00"),  # before midnight: ends tomorrow
        ("2026-05-02 00:00", "2026-05-02 07:00"),
        ("2026-05-02 03:00", "2026-05-02 07:00"),  # after midnight: ends today
        ("2026-05-02 06:59", "2026-05-02 07:00"),
        ("2026-05-02 07:00", None),  # end exclusive
        ("2026-05-02 12:00", None),
    ],
)
def test_quiet_window_crossing_midnight(local: str, expected_end: str | None) -> None:
    at = datetime.fromisoformat(local).replace(tzinfo=TOKYO).astimezone(UTC)
    end = quiet_hours_end(at, "22:00", "07:00", TOKYO)
    if expected_end is None:
        assert end is None
    else:
        assert end == datetime.fromisoformat(expected_end).replace(tzinfo=TOKYO).astimezone(UTC)


@pytest.mark.parametrize(
    ("local", "inside"),
    [("08:59", False), ("09:00", True), ("12:00", True), ("16:59", True), ("17:00", False), ("23:00", False)],
)
def test_quiet_window_within_a_day(local: str, inside: bool) -> None:
    at = datetime.fromisoformat(f"2026-05-01 {local}").replace(tzinfo=BERLIN)
    end = quiet_hours_end(at, "09:00", "17:00", BERLIN)
    assert (end == datetime(2026, 5, 1, 17, 0, tzinfo=BERLIN)) if inside else end is None


def test_empty_window_holds_nothing() -> None:
    assert quiet_hours_end(utc(2026, 5, 1, 12, 0), "10:00", "10:00", ZoneInfo("UTC")) is None


def test_quiet_window_is_in_the_users_zone() -> None:
    """23:00 UTC is 08:00 in Tokyo and 19:00 in New York (outside 22–07), 01:00 in Berlin (inside)."""
    at = utc(2026, 5, 1, 23, 0)
    assert quiet_hours_end(at, "22:00", "07:00", TOKYO) is None
    assert quiet_hours_end(at, "22:00", "07:00", NEW_YORK) is None
    assert quiet_hours_end(at, "22:00", "07:00", BERLIN) == utc(2026, 5, 2, 5, 0)


def test_quiet_window_ending_across_a_dst_change() -> None:
    """22:00–07:00 over Berlin's spring-forward night ends at 07:00 CEST (05:00 UTC)."""
    assert quiet_hours_end(utc(2026, 3, 28, 23, 0), "22:00", "07:00", BERLIN) == utc(2026, 3, 29, 5, 0)


def test_quiet_window_ending_in_a_repeated_hour_is_never_past() -> None:
    """00:00–01:30 in New York on 2024-11-03: at 01:15 EST (the repeated hour)
    the window ends at 01:30 EST, not at 01:30 EDT, which has passed."""
    assert quiet_hours_end(utc(2024, 11, 3, 6, 15), "00:00", "01:30", NEW_YORK) == utc(2024, 11, 3, 6, 30)
    assert quiet_hours_end(utc(2024, 11, 3, 5, 15), "00:00", "01:30", NEW_YORK) == utc(2024, 11, 3, 5, 30)

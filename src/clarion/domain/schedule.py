"""Wall-clock times in a user's timezone: `local_time`, quiet hours, expiry."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError


def zone(*names: str | None) -> ZoneInfo:
    """The first valid IANA zone among `names` (user's, then device's), else UTC."""
    for name in names:
        if not name:
            continue
        try:
            return ZoneInfo(name)
        except (ZoneInfoNotFoundError, ValueError):
            continue
    return ZoneInfo("UTC")


def parse_hhmm(text: str) -> time:
    hours, minutes = text.split(":")
    return time(int(hours), int(minutes))


def next_local_time(after: datetime, hhmm: str, tz: ZoneInfo) -> datetime:
    """The first instant at or after `after` whose wall clock in `tz` reads `hhmm` (UTC).

    Compared in UTC, not as wall clocks (aware datetimes sharing a tzinfo
    compare naively), and both folds are tried, so a time in the hour a
    DST change repeats is found twice, never before `after`. A time the
    change skips maps to the instant as many minutes past the jump."""
    day, wanted = after.astimezone(tz).date(), parse_hhmm(hhmm)
    for on in (day, day + timedelta(days=1)):
        for fold in (0, 1):
            candidate = _instant(on, wanted, tz, fold)
            if candidate >= after:
                return candidate
    raise AssertionError("a wall-clock time occurs within any two days")  # pragma: no cover


def _instant(day: date, at: time, tz: ZoneInfo, fold: int = 0) -> datetime:
    """The UTC instant of a wall-clock time in `tz` (`fold` 1: the second of a repeated one)."""
    return datetime.combine(day, at, tzinfo=tz).replace(fold=fold).astimezone(UTC)


def quiet_hours_end(at: datetime, start: str, end: str, tz: ZoneInfo) -> datetime | None:
    """If `at` falls inside the daily quiet window [start, end) in `tz`, the
    instant the window ends (UTC); else None. Windows may cross midnight."""
    begin, finish = parse_hhmm(start), parse_hhmm(end)
    if begin == finish:
        return None
    local = at.astimezone(tz)
    now = local.time().replace(tzinfo=None)
    if begin < finish:
        inside = begin <= now < finish
        end_day = local.date()
    else:
        inside = now >= begin or now < finish
        end_day = local.date() + timedelta(days=1) if now >= begin else local.date()
    if not inside:
        return None
    # In a repeated (DST) hour the first reading may already be past: take the second.
    until = _instant(end_day, finish, tz)
    return until if until >= at else _instant(end_day, finish, tz, 1)


def expires_at(base: datetime, ttl_seconds: int) -> datetime:
    return base + timedelta(seconds=ttl_seconds)

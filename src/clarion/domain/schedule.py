"""Wall-clock times in a user's timezone: `local_time`, quiet hours, expiry."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
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
    """The first instant at or after `after` whose wall clock in `tz` reads `hhmm` (UTC)."""
    local = after.astimezone(tz)
    wanted = parse_hhmm(hhmm)
    candidate = datetime.combine(local.date(), wanted, tzinfo=tz)
    if candidate < local:
        candidate = datetime.combine(local.date() + timedelta(days=1), wanted, tzinfo=tz)
    return candidate.astimezone(UTC)


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
    return datetime.combine(end_day, finish, tzinfo=tz).astimezone(UTC)


def expires_at(base: datetime, ttl_seconds: int) -> datetime:
    return base + timedelta(seconds=ttl_seconds)

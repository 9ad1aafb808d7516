"""What becomes of one user in a notification's audience: one planned
delivery per active device (or one `no_active_device` skip), each queued
for a time or skipped with a reason. Pure: no I/O."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from clarion.constants import (
    EXPIRED,
    FREQUENCY_CAPPED,
    NO_ACTIVE_DEVICE,
    QUEUED,
    QUIET_HOURS_EXPIRED,
    SKIPPED,
)
from clarion.domain.preferences import Preferences, held_by_quiet_hours, opt_out_reason
from clarion.domain.schedule import next_local_time, quiet_hours_end, zone


@dataclass(frozen=True, slots=True)
class Spec:
    """The parts of a notification that decide who gets it and when."""

    type: str
    category: str | None
    base: datetime  # send_at, else the time it was accepted
    ttl: int
    local_time: str | None = None


@dataclass(frozen=True, slots=True)
class Device:
    pk: int
    id: str
    platform: str
    timezone: str | None = None


@dataclass(frozen=True, slots=True)
class User:
    pk: int | None
    user_id: str | None
    timezone: str | None = None


@dataclass(frozen=True, slots=True)
class Planned:
    device: Device | None
    status: str
    reason: str | None = None
    not_before: datetime | None = None


def delivery_window(spec: Spec, user_tz: str | None, device_tz: str | None) -> tuple[datetime, datetime]:
    """(due, expires): `local_time` moves the due time to the next such wall
    clock in the user's zone (else the device's, else UTC); ttl counts from it."""
    due = spec.base
    if spec.local_time:
        due = next_local_time(spec.base, spec.local_time, zone(user_tz, device_tz))
    return due, due + timedelta(seconds=spec.ttl)


def plan_user(
    spec: Spec, user: User, devices: Sequence[Device], prefs: Preferences, capped: bool, now: datetime
) -> list[Planned]:
    """Planned deliveries for one user (API.md, Preferences and Notifications)."""
    if not devices:
        return [Planned(None, SKIPPED, NO_ACTIVE_DEVICE)]
    reason = opt_out_reason(prefs, spec.type, spec.category) or (FREQUENCY_CAPPED if capped else None)
    if reason:
        return [Planned(device, SKIPPED, reason) for device in devices]
    return [_plan_device(spec, user, device, prefs, now) for device in devices]


def _plan_device(spec: Spec, user: User, device: Device, prefs: Preferences, now: datetime) -> Planned:
    due, expires = delivery_window(spec, user.timezone, device.timezone)
    if now >= expires:
        return Planned(device, SKIPPED, EXPIRED)
    if held_by_quiet_hours(prefs, spec.type):
        tz = zone(user.timezone, device.timezone)
        held_until = quiet_hours_end(max(due, now), prefs.quiet_start or "", prefs.quiet_end or "", tz)
        if held_until is not None and held_until >= expires:
            return Planned(device, SKIPPED, QUIET_HOURS_EXPIRED)
        due = held_until or due
    return Planned(device, QUEUED, None, due if due > now else None)

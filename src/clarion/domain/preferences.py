"""Who may receive what (API.md, Preferences): opt-outs and frequency caps."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from clarion.constants import OPTED_OUT


@dataclass(frozen=True, slots=True)
class Preferences:
    opt_out_all: bool = False
    types: Mapping[str, bool] = field(default_factory=dict)
    categories: Mapping[str, bool] = field(default_factory=dict)
    quiet_start: str | None = None
    quiet_end: str | None = None


NO_PREFERENCES = Preferences()


def opt_out_reason(prefs: Preferences, notification_type: str, category: str | None) -> str | None:
    """None when the user may receive it; else the skip reason. Unset means opted in."""
    if prefs.opt_out_all:
        return OPTED_OUT
    if prefs.types.get(notification_type) is False:
        return OPTED_OUT
    if category is not None and prefs.categories.get(category) is False:
        return OPTED_OUT
    return None


def held_by_quiet_hours(prefs: Preferences, notification_type: str) -> bool:
    """Quiet hours hold only promotional notifications."""
    return notification_type == "promotional" and bool(prefs.quiet_start and prefs.quiet_end)


@dataclass(frozen=True, slots=True)
class Cap:
    """At most `max` notifications whose `field` ("type"|"category") is `value` per window."""

    field: str
    value: str
    max: int
    per_seconds: int


def applicable_caps(caps: Mapping[str, Any], notification_type: str, category: str | None) -> list[Cap]:
    """The app's caps that name this notification's type or category."""
    found = []
    for key, field_name in ((notification_type, "type"), (category, "category")):
        spec = caps.get(key) if key else None
        if spec:
            found.append(Cap(field_name, key, int(spec["max"]), int(spec["per_seconds"])))  # type: ignore[arg-type]
    return found

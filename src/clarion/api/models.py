"""Request and response models shared by several routers."""

from __future__ import annotations

import math
import re
from datetime import datetime
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from fastapi import Path
from pydantic import AfterValidator, BaseModel, ConfigDict, Field

BCP47 = re.compile(r"^[A-Za-z]{2,3}(-[A-Za-z0-9]{1,8})*$")

UserIdPath = Annotated[str, Path(min_length=1, max_length=128)]
UserId = Annotated[str, Field(min_length=1, max_length=128)]
Platform = Literal["ios", "android", "web"]


def _timezone(value: str) -> str:
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ValueError(f"{value!r} is not an IANA time zone name such as Europe/Berlin") from exc
    return value


def _locale(value: str) -> str:
    if not BCP47.match(value):
        raise ValueError(f"{value!r} is not a BCP 47 language tag such as de or de-AT")
    return value


def _storable_json(value: Any) -> Any:
    """What both databases can store and query: no NaN/Infinity, no NUL character."""
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError("numbers must be finite (no NaN or Infinity)")
    if isinstance(value, str) and "\x00" in value:
        raise ValueError("strings may not contain the NUL character")
    if isinstance(value, dict):
        for key, item in value.items():
            _storable_json(key)
            _storable_json(item)
    elif isinstance(value, list):
        for item in value:
            _storable_json(item)
    return value


StorableJson = Annotated[Any, AfterValidator(_storable_json)]
Timezone = Annotated[str, Field(max_length=64), AfterValidator(_timezone)]
Locale = Annotated[str, Field(max_length=35), AfterValidator(_locale)]


class Strict(BaseModel):
    """Input models reject unknown fields: a typo is an error, not a silent no-op."""

    model_config = ConfigDict(extra="forbid")


class Location(Strict):
    lat: Annotated[float, Field(ge=-90, le=90)]
    lon: Annotated[float, Field(ge=-180, le=180)]


class UserView(BaseModel):
    user_id: str
    attributes: dict[str, Any]
    timezone: str | None
    locale: str | None
    location: Location | None
    email: str | None
    phone: str | None
    created_at: datetime
    updated_at: datetime


class DeviceView(BaseModel):
    id: str
    user_id: str
    platform: Platform
    active: bool
    deactivated_reason: str | None
    locale: str | None
    timezone: str | None
    app_version: str | None
    created_at: datetime
    last_seen_at: datetime


def user_view(row: Any) -> UserView:
    location = Location(lat=row.lat, lon=row.lon) if row.lat is not None and row.lon is not None else None
    return UserView(
        user_id=row.user_id,
        attributes=row.attributes or {},
        timezone=row.timezone,
        locale=row.locale,
        location=location,
        email=row.email,
        phone=row.phone,
        created_at=row.created_at,
        updated_at=row.updated_at,
    )


def device_view(row: Any) -> DeviceView:
    return DeviceView(
        id=row.id,
        user_id=row.user_id,
        platform=row.platform,
        active=row.active,
        deactivated_reason=row.deactivated_reason,
        locale=row.locale,
        timezone=row.timezone,
        app_version=row.app_version,
        created_at=row.created_at,
        last_seen_at=row.last_seen_at,
    )

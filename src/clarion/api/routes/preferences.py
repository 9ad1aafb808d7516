"""Preferences: what a user agreed to receive (secret key; publishable may PUT)."""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from fastapi import APIRouter
from pydantic import AfterValidator, BaseModel, Field

from clarion.api.deps import AnyAppKey, RuntimeDep, SecretApp
from clarion.api.errors import Problem, problem_responses
from clarion.api.models import Strict, UserIdPath
from clarion.store import users as store

router = APIRouter(tags=["preferences"], responses=problem_responses(401, 403, 404, 422))

HHMM = re.compile(r"^([01]\d|2[0-3]):[0-5]\d$")
NotificationType = Literal["alert", "promotional", "transactional"]


def _hhmm(value: str) -> str:
    if not HHMM.match(value):
        raise ValueError("times are 24-hour HH:MM, e.g. 22:00")
    return value


class QuietHours(Strict):
    start: Annotated[str, AfterValidator(_hhmm)]
    end: Annotated[str, AfterValidator(_hhmm)]


class PreferencesPut(Strict):
    opt_out_all: bool | None = None
    types: dict[NotificationType, bool] | None = None
    categories: dict[Annotated[str, Field(min_length=1, max_length=200)], bool] | None = None
    quiet_hours: QuietHours | None = None


class Preferences(BaseModel):
    opt_out_all: bool = False
    types: dict[str, bool] = {}
    categories: dict[str, bool] = {}
    quiet_hours: QuietHours | None = None


def preferences_view(row: Any) -> Preferences:
    if row is None:
        return Preferences()
    quiet = QuietHours(start=row.quiet_start, end=row.quiet_end) if row.quiet_start else None
    return Preferences(
        opt_out_all=row.opt_out_all, types=row.types or {}, categories=row.categories or {}, quiet_hours=quiet
    )


def _columns(body: PreferencesPut) -> dict[str, Any]:
    """Only what the body names changes; `quiet_hours: null` clears the window.
    `types`/`categories` merge into what is stored, so one toggle is one call."""
    values: dict[str, Any] = {}
    if body.opt_out_all is not None:
        values["opt_out_all"] = body.opt_out_all
    if "quiet_hours" in body.model_fields_set:
        values["quiet_start"] = body.quiet_hours.start if body.quiet_hours else None
        values["quiet_end"] = body.quiet_hours.end if body.quiet_hours else None
    return values


@router.put("/v1/users/{user_id}/preferences", response_model=Preferences)
async def put_preferences(
    user_id: UserIdPath, body: PreferencesPut, runtime: RuntimeDep, principal: AnyAppKey
) -> Preferences:
    assert principal.app_pk is not None
    async with runtime.engine.begin() as conn:
        # An app may record a choice before its server has created the user.
        user_pk, _ = await store.upsert_user(conn, principal.app_pk, user_id, {})
        current = preferences_view(await store.get_preferences(conn, user_pk))
        values = _columns(body)
        if body.types is not None:
            values["types"] = {**current.types, **body.types}
        if body.categories is not None:
            values["categories"] = {**current.categories, **body.categories}
        await store.put_preferences(conn, user_pk, values)
        return preferences_view(await store.get_preferences(conn, user_pk))


@router.get("/v1/users/{user_id}/preferences", response_model=Preferences)
async def get_preferences(user_id: UserIdPath, runtime: RuntimeDep, principal: SecretApp) -> Preferences:
    assert principal.app_pk is not None
    async with runtime.engine.connect() as conn:
        user = await store.find_user(conn, principal.app_pk, user_id)
        if user is None:
            raise Problem(404, f"no user {user_id}")
        return preferences_view(await store.get_preferences(conn, user.pk))

"""Users (secret key): upsert, read, GDPR erase and export, their devices and topics."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from clarion.api.deps import RuntimeDep, SecretApp
from clarion.api.errors import Problem, problem_responses
from clarion.api.models import (
    DeviceView,
    Locale,
    Location,
    StorableJson,
    Strict,
    Timezone,
    UserIdPath,
    UserView,
    device_view,
    user_view,
)
from clarion.api.pagination import CursorQuery, LimitQuery, Page, decode_cursor, next_cursor
from clarion.api.routes.preferences import preferences_view
from clarion.runtime import Runtime
from clarion.store import devices as device_store
from clarion.store import users as store

router = APIRouter(tags=["users"], responses=problem_responses(401, 403, 404, 422))


class UserUpsert(Strict):
    attributes: (
        Annotated[dict[Annotated[str, Field(min_length=1, max_length=128)], StorableJson], Field(max_length=500)]
        | None
    ) = None
    timezone: Timezone | None = None
    locale: Locale | None = None
    location: Location | None = None
    email: Annotated[str, Field(pattern=r"^[^@\s]+@[^@\s]+$", max_length=320)] | None = None
    phone: Annotated[str, Field(pattern=r"^\+?[0-9 ()\-]{3,32}$")] | None = None


class TopicList(BaseModel):
    topics: list[str]


class UserExport(BaseModel):
    user: UserView
    devices: list[DeviceView]
    preferences: dict[str, Any]
    topics: list[str]
    deliveries: list[dict[str, Any]]


def _columns(body: UserUpsert) -> dict[str, Any]:
    values = body.model_dump(exclude_unset=True)
    location = values.pop("location", None)
    if "location" in body.model_fields_set:
        values["lat"] = location["lat"] if location else None
        values["lon"] = location["lon"] if location else None
    return values


async def load_user(runtime: Runtime, app_pk: int, user_id: str) -> Any:
    async with runtime.engine.connect() as conn:
        user = await store.find_user(conn, app_pk, user_id)
    if user is None:
        raise Problem(404, f"no user {user_id}")
    return user


@router.put("/v1/users/{user_id}", response_model=UserView, responses={201: {"model": UserView}})
async def put_user(user_id: UserIdPath, body: UserUpsert, runtime: RuntimeDep, principal: SecretApp) -> JSONResponse:
    assert principal.app_pk is not None
    async with runtime.engine.begin() as conn:
        _, created = await store.upsert_user(conn, principal.app_pk, user_id, _columns(body))
        user = await store.find_user(conn, principal.app_pk, user_id)
    return JSONResponse(user_view(user).model_dump(mode="json"), status_code=201 if created else 200)


@router.get("/v1/users/{user_id}", response_model=UserView)
async def get_user(user_id: UserIdPath, runtime: RuntimeDep, principal: SecretApp) -> UserView:
    assert principal.app_pk is not None
    return user_view(await load_user(runtime, principal.app_pk, user_id))


@router.delete("/v1/users/{user_id}", status_code=204, response_class=Response)
async def erase_user(user_id: UserIdPath, runtime: RuntimeDep, principal: SecretApp) -> Response:
    assert principal.app_pk is not None
    user = await load_user(runtime, principal.app_pk, user_id)
    async with runtime.engine.begin() as conn:
        await store.erase_user(conn, user)
    async with runtime.engine.connect() as conn:
        await store.compact_after_erasure(conn)
    return Response(status_code=204)


@router.get("/v1/users/{user_id}/export", response_model=UserExport)
async def export_user(user_id: UserIdPath, runtime: RuntimeDep, principal: SecretApp) -> UserExport:
    assert principal.app_pk is not None
    user = await load_user(runtime, principal.app_pk, user_id)
    async with runtime.engine.connect() as conn:
        data = await store.export_user(conn, user)
    return UserExport(
        user=user_view(user),
        devices=[device_view(row) for row in data["devices"]],
        preferences=preferences_view(data["preferences"]).model_dump(),
        topics=data["topics"],
        deliveries=[_delivery_export(row) for row in data["deliveries"]],
    )


def _delivery_export(row: Any) -> dict[str, Any]:
    fields = (
        "id",
        "device_id",
        "platform",
        "status",
        "reason",
        "attempts",
        "queued_at",
        "sent_at",
        "delivered_at",
        "opened_at",
        "rendered",
    )
    record = {name: getattr(row, name) for name in fields}
    record["notification_id"] = row.notification_id
    return record


@router.get("/v1/users/{user_id}/devices", response_model=Page[DeviceView], tags=["devices"])
async def user_devices(
    user_id: UserIdPath,
    runtime: RuntimeDep,
    principal: SecretApp,
    limit: LimitQuery = 50,
    cursor: CursorQuery = None,
) -> Page[DeviceView]:
    assert principal.app_pk is not None
    user = await load_user(runtime, principal.app_pk, user_id)
    async with runtime.engine.connect() as conn:
        rows = await device_store.devices_of_user(conn, user.pk, decode_cursor(cursor), limit)
    return Page(items=[device_view(r) for r in rows], next_cursor=next_cursor([r.pk for r in rows], limit))


@router.get("/v1/users/{user_id}/topics", response_model=TopicList, tags=["topics"])
async def user_topics(user_id: UserIdPath, runtime: RuntimeDep, principal: SecretApp) -> TopicList:
    assert principal.app_pk is not None
    user = await load_user(runtime, principal.app_pk, user_id)
    async with runtime.engine.connect() as conn:
        return TopicList(topics=await store.topics_of(conn, user.pk))

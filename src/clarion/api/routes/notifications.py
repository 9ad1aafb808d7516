"""Notifications (secret key): send, read with counts, list deliveries, cancel."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Header, Query, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field, model_validator

from clarion import constants as c
from clarion.api.deps import RuntimeDep, SecretApp, rate_limited
from clarion.api.errors import Problem, problem_responses
from clarion.api.models import Strict
from clarion.api.pagination import CursorQuery, LimitQuery, decode_cursor, next_cursor
from clarion.domain.filters import FilterError, parse_filter
from clarion.security import new_id
from clarion.store import idempotency
from clarion.store import notifications as records
from clarion.store.tables import apps

router = APIRouter(tags=["notifications"], responses=problem_responses(401, 403, 404, 422))
ROUTE = "POST /v1/notifications"
MAX_LISTED = 10_000
HHMM = r"^([01]\d|2[0-3]):[0-5]\d$"
Text = Annotated[str, Field(max_length=4096)]


class Audience(Strict):
    """Exactly one of the keys."""

    user_ids: (
        Annotated[
            list[Annotated[str, Field(min_length=1, max_length=128)]],
            Field(min_length=1, max_length=MAX_LISTED),
        ]
        | None
    ) = None
    device_ids: (
        Annotated[
            list[Annotated[str, Field(min_length=1, max_length=40)]],
            Field(min_length=1, max_length=MAX_LISTED),
        ]
        | None
    ) = None
    topic: Annotated[str, Field(min_length=1, max_length=200)] | None = None
    segment: Annotated[str, Field(min_length=1, max_length=200)] | None = None
    filter: dict[str, Any] | None = None
    all: Literal[True] | None = None

    @model_validator(mode="after")
    def _exactly_one(self) -> Audience:
        given = [name for name, value in self if value is not None]
        if len(given) != 1:
            raise ValueError(
                "audience takes exactly one of user_ids, device_ids, topic, segment, filter, all"
            )
        return self


class Action(Strict):
    id: Annotated[str, Field(min_length=1, max_length=64)]
    title: Annotated[str, Field(min_length=1, max_length=256)]


class ContentIn(Strict):
    title: Text | None = None
    body: Text | None = None
    image_url: Annotated[str, Field(max_length=2048)] | None = None
    url: Annotated[str, Field(max_length=2048)] | None = None
    data: dict[str, Text] | None = None
    actions: Annotated[list[Action], Field(max_length=10)] | None = None
    sound: Annotated[str, Field(max_length=256)] | None = None
    badge: Annotated[int, Field(ge=0)] | None = None


class LocalizedText(Strict):
    title: Text | None = None
    body: Text | None = None


class PlatformOverrides(Strict):
    ios: dict[str, Any] | None = None
    android: dict[str, Any] | None = None
    web: dict[str, Any] | None = None


class NotificationIn(Strict):
    type: Literal["alert", "promotional", "transactional"]
    category: Annotated[str, Field(min_length=1, max_length=200)] | None = None
    audience: Audience
    content: ContentIn
    localized: (
        dict[Annotated[str, Field(pattern=r"^[A-Za-z]{2,3}(-[A-Za-z0-9]{1,8})*$")], LocalizedText] | None
    ) = None
    platforms: PlatformOverrides | None = None
    priority: Literal["high", "normal"] | None = None
    ttl: Annotated[int, Field(ge=0, le=28 * 86400)] | None = None
    collapse_key: Annotated[str, Field(min_length=1, max_length=64)] | None = None
    send_at: datetime | None = None
    local_time: Annotated[str, Field(pattern=HHMM)] | None = None


class Accepted(BaseModel):
    id: str
    status: str


class Counts(BaseModel):
    targeted: int
    queued: int
    sent: int
    delivered: int
    opened: int
    failed: int
    dead: int
    skipped: int
    canceled: int


class NotificationView(BaseModel):
    id: str
    status: str
    type: str
    category: str | None
    created_at: datetime
    send_at: datetime | None
    completed_at: datetime | None
    counts: Counts


class NotificationPage(BaseModel):
    items: list[NotificationView]
    next_cursor: str | None


class DeliveryView(BaseModel):
    id: str
    device_id: str | None
    user_id: str | None
    platform: str | None
    status: str
    reason: str | None
    attempts: int
    error: str | None
    queued_at: datetime | None
    sent_at: datetime | None
    delivered_at: datetime | None
    opened_at: datetime | None


class DeliveryPage(BaseModel):
    items: list[DeliveryView]
    next_cursor: str | None


StatusQuery = Annotated[
    Literal["queued", "sent", "delivered", "opened", "failed", "dead", "skipped", "canceled"] | None, Query()
]
IdempotencyKey = Annotated[str | None, Header(alias="Idempotency-Key", max_length=255)]


@router.post(
    "/v1/notifications",
    status_code=202,
    response_model=Accepted,
    responses=problem_responses(400, 409, 413, 429),
    dependencies=[rate_limited("notifications")],
)
async def send_notification(
    body: NotificationIn,
    request: Request,
    runtime: RuntimeDep,
    principal: SecretApp,
    key: IdempotencyKey = None,
) -> JSONResponse:
    assert principal.app_pk is not None
    _check_request(body)
    raw = body.model_dump(mode="json", exclude_none=True)
    if key is not None:
        replay = await _reserve(runtime, principal.app_pk, key, idempotency.body_hash(raw))
        if replay is not None:
            return JSONResponse(replay.response, status_code=replay.status_code)
    try:
        answer = await _create(runtime, principal.app_pk, body, raw, key)
    except BaseException:
        if key is not None:
            await idempotency.release(runtime.engine, principal.app_pk, ROUTE, key)
        raise
    if runtime.pipeline is not None:
        runtime.pipeline.wake()
    return JSONResponse(answer, status_code=202)


async def _reserve(runtime: Any, app_pk: int, key: str, digest: str) -> idempotency.Replay | None:
    try:
        return await idempotency.reserve(runtime.engine, app_pk, ROUTE, key, digest)
    except idempotency.KeyConflict as exc:
        headers = {"Retry-After": "1"} if exc.in_progress else None
        raise Problem(409, str(exc), headers=headers) from exc


async def _create(
    runtime: Any, app_pk: int, body: NotificationIn, raw: dict[str, Any], key: str | None
) -> dict[str, Any]:
    now = datetime.now(UTC)
    notification_id = new_id("ntf_")
    scheduled = body.send_at is not None and body.send_at > now
    status = c.SCHEDULED if scheduled else c.ACCEPTED
    async with runtime.engine.begin() as conn:
        default_ttl = (
            await conn.execute(apps.select().with_only_columns(apps.c.default_ttl).where(apps.c.pk == app_pk))
        ).scalar()
        stored = {**raw, "ttl": body.ttl if body.ttl is not None else int(default_ttl or 86400)}
        await records.insert_notification(
            conn,
            {
                "id": notification_id,
                "app_pk": app_pk,
                "type": body.type,
                "category": body.category,
                "request": stored,
                "status": status,
                "send_at": body.send_at,
                "fanout_cursor": None,
                "fanout_done": False,
                "created_at": now,
            },
        )
        answer = {"id": notification_id, "status": status}
        if key is not None:
            await idempotency.complete(conn, app_pk, ROUTE, key, 202, answer)
    return answer


def _check_request(body: NotificationIn) -> None:
    """422 for a bad filter or template, 413 for a payload no platform takes."""
    if body.audience.filter is not None:
        try:
            parse_filter(body.audience.filter)
        except FilterError as exc:
            errors = [{"loc": ["body", "audience", "filter", *e["loc"]], "msg": e["msg"]} for e in exc.errors]
            raise Problem(422, "the filter is not valid: " + errors[0]["msg"], errors=errors) from exc
    from clarion.dispatch.checks import payload_problem, template_problems

    errors = template_problems(body.model_dump(exclude_none=True))
    if errors:
        raise Problem(422, "a template is not valid: " + errors[0]["msg"], errors=errors)
    too_large = payload_problem(body.model_dump(exclude_none=True), str(uuid.uuid4()))
    if too_large:
        raise Problem(413, too_large)


def notification_view(row: Any, counts: dict[str, int]) -> NotificationView:
    return NotificationView(
        id=row.id,
        status=row.status,
        type=row.type,
        category=row.category,
        created_at=row.created_at,
        send_at=row.send_at,
        completed_at=row.completed_at,
        counts=Counts(**counts),
    )


async def _find(conn: Any, app_pk: int, notification_id: str) -> Any:
    row = await records.find_notification(conn, app_pk, notification_id)
    if row is None:
        raise Problem(404, f"no notification {notification_id}")
    return row


@router.get("/v1/notifications", response_model=NotificationPage)
async def list_notifications(
    runtime: RuntimeDep, principal: SecretApp, limit: LimitQuery = 50, cursor: CursorQuery = None
) -> NotificationPage:
    assert principal.app_pk is not None
    async with runtime.engine.connect() as conn:
        rows = await records.list_notifications(conn, principal.app_pk, decode_cursor(cursor), limit)
        items = [notification_view(row, await records.counts(conn, row.pk)) for row in rows]
    return NotificationPage(items=items, next_cursor=next_cursor([r.pk for r in rows], limit))


@router.get("/v1/notifications/{notification_id}", response_model=NotificationView)
async def get_notification(
    notification_id: str, runtime: RuntimeDep, principal: SecretApp
) -> NotificationView:
    assert principal.app_pk is not None
    return await _current_view(runtime, principal.app_pk, notification_id)


@router.get("/v1/notifications/{notification_id}/deliveries", response_model=DeliveryPage)
async def list_deliveries(
    notification_id: str,
    runtime: RuntimeDep,
    principal: SecretApp,
    status: StatusQuery = None,
    limit: LimitQuery = 50,
    cursor: CursorQuery = None,
) -> DeliveryPage:
    assert principal.app_pk is not None
    async with runtime.engine.connect() as conn:
        row = await _find(conn, principal.app_pk, notification_id)
        found = await records.list_deliveries(conn, row.pk, status, decode_cursor(cursor), limit)
    items = [DeliveryView.model_validate(d, from_attributes=True) for d in found]
    return DeliveryPage(items=items, next_cursor=next_cursor([d.pk for d in found], limit))


@router.post("/v1/notifications/{notification_id}/cancel", response_model=NotificationView)
async def cancel_notification(
    notification_id: str, runtime: RuntimeDep, principal: SecretApp
) -> NotificationView:
    assert principal.app_pk is not None
    async with runtime.engine.begin() as conn:
        row = await _find(conn, principal.app_pk, notification_id)
        await records.cancel(conn, row.pk)
    return await _current_view(runtime, principal.app_pk, notification_id)


async def _current_view(runtime: Any, app_pk: int, notification_id: str) -> NotificationView:
    """The notification as stored now, with its counts (404 when not this app's)."""
    async with runtime.engine.connect() as conn:
        row = await _find(conn, app_pk, notification_id)
        return notification_view(row, await records.counts(conn, row.pk))

"""Devices (secret or publishable key to register and delete; secret to read)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Response
from fastapi.responses import JSONResponse
from pydantic import Field, model_validator

from clarion.api.deps import AnyAppKey, RuntimeDep, SecretApp, rate_limited
from clarion.api.errors import Problem, problem_responses
from clarion.api.models import DeviceView, Locale, Platform, Strict, Timezone, UserId, device_view
from clarion.domain import devices as rules
from clarion.store import devices as store
from clarion.store import users as user_store

router = APIRouter(tags=["devices"], responses=problem_responses(401, 403, 404, 422))


class SubscriptionKeys(Strict):
    p256dh: Annotated[str, Field(min_length=1, max_length=200)]
    auth: Annotated[str, Field(min_length=1, max_length=100)]


class Subscription(Strict):
    endpoint: Annotated[str, Field(min_length=1, max_length=2048)]
    keys: SubscriptionKeys
    # Browsers' PushSubscription.toJSON() includes it; accepted and ignored.
    expirationTime: int | float | None = None


class DeviceRegister(Strict):
    user_id: UserId
    platform: Platform
    token: Annotated[str, Field(min_length=1, max_length=4096)] | None = None
    subscription: Subscription | None = None
    locale: Locale | None = None
    timezone: Timezone | None = None
    app_version: Annotated[str, Field(max_length=64)] | None = None

    @model_validator(mode="after")
    def _platform_rules(self) -> DeviceRegister:
        if self.platform == "web":
            if self.subscription is None or self.token is not None:
                raise ValueError("a web device has a `subscription` {endpoint, keys: {p256dh, auth}} and no `token`")
            rules.check_p256dh(self.subscription.keys.p256dh)
            rules.check_auth_secret(self.subscription.keys.auth)
        else:
            if self.token is None or self.subscription is not None:
                raise ValueError(f"an {self.platform} device has a `token` and no `subscription`")
            if self.platform == "ios":
                self.token = rules.normalize_apns_token(self.token)
            else:
                rules.check_fcm_token(self.token)
        return self


def _check_endpoint(body: DeviceRegister, allow_local: bool) -> None:
    if body.subscription is None:
        return
    try:
        rules.check_endpoint(body.subscription.endpoint, allow_local)
    except ValueError as exc:
        raise Problem(422, str(exc), errors=[{"loc": ["body", "subscription", "endpoint"], "msg": str(exc)}]) from exc


@router.post(
    "/v1/devices",
    status_code=201,
    response_model=DeviceView,
    responses={200: {"model": DeviceView}, **problem_responses(413, 429)},
    dependencies=[rate_limited("devices")],
)
async def register_device(body: DeviceRegister, runtime: RuntimeDep, principal: AnyAppKey) -> JSONResponse:
    assert principal.app_pk is not None
    _check_endpoint(body, runtime.settings.allow_local_endpoints)
    subscription = body.subscription.model_dump(exclude={"expirationTime"}) if body.subscription else None
    address, secret = store.device_address(body.platform, body.token, subscription)
    metadata: dict[str, Any] = body.model_dump(include={"locale", "timezone", "app_version"}, exclude_unset=True)
    async with runtime.engine.begin() as conn:
        user_pk, _ = await user_store.upsert_user(conn, principal.app_pk, body.user_id, {})
        device_id, created = await store.register_device(
            conn, runtime.box, principal.app_pk, user_pk, body.platform, address, secret, metadata
        )
        row = await store.find_device(conn, principal.app_pk, device_id)
    return JSONResponse(device_view(row).model_dump(mode="json"), status_code=201 if created else 200)


@router.get("/v1/devices/{device_id}", response_model=DeviceView)
async def get_device(device_id: str, runtime: RuntimeDep, principal: SecretApp) -> DeviceView:
    assert principal.app_pk is not None
    async with runtime.engine.connect() as conn:
        row = await store.find_device(conn, principal.app_pk, device_id)
    if row is None:
        raise Problem(404, f"no device {device_id}")
    return device_view(row)


@router.delete("/v1/devices/{device_id}", status_code=204, response_class=Response)
async def delete_device(device_id: str, runtime: RuntimeDep, principal: AnyAppKey) -> Response:
    assert principal.app_pk is not None
    async with runtime.engine.begin() as conn:
        if not await store.delete_device(conn, principal.app_pk, device_id):
            raise Problem(404, f"no device {device_id}")
    return Response(status_code=204)

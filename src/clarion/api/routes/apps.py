"""Apps, keys and provider credentials (admin token, some also the secret key)."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from fastapi import APIRouter, Response
from pydantic import BaseModel, ConfigDict, Field, field_validator

from clarion.api.auth import Principal
from clarion.api.deps import AdminOnly, AdminOrSecret, AnyAppKey, RuntimeDep
from clarion.api.errors import Problem, problem_responses
from clarion.domain.vapid import new_vapid_keypair, parse_vapid_private_key
from clarion.runtime import Runtime
from clarion.store import apps as store

router = APIRouter(tags=["apps"], responses=problem_responses(401, 403, 404, 422))


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class AppCreate(Strict):
    name: Annotated[str, Field(min_length=1, max_length=200)]


class AppCreated(BaseModel):
    id: str
    name: str
    secret_key: str
    publishable_key: str
    key_id: str
    vapid_public_key: str


class FrequencyCap(Strict):
    max: Annotated[int, Field(ge=1)]
    per_seconds: Annotated[int, Field(ge=1, le=366 * 86400)]


class AppPatch(Strict):
    name: Annotated[str, Field(min_length=1, max_length=200)] | None = None
    default_ttl: Annotated[int, Field(ge=0, le=28 * 86400)] | None = None
    frequency_caps: dict[Annotated[str, Field(min_length=1, max_length=200)], FrequencyCap] | None = None


class AppView(BaseModel):
    id: str
    name: str
    default_ttl: int
    frequency_caps: dict[str, FrequencyCap]
    vapid_public_key: str
    credentials: dict[str, Any] = Field(description="which providers are configured; never a secret")
    created_at: datetime


class KeyCreate(Strict):
    kind: Literal["secret", "publishable"]


class KeyCreated(BaseModel):
    id: str
    kind: str
    key: str


class ApnsCredentials(Strict):
    team_id: Annotated[str, Field(pattern=r"^[A-Z0-9]{10}$")]
    key_id: Annotated[str, Field(pattern=r"^[A-Z0-9]{10}$")]
    private_key: Annotated[str, Field(min_length=1, max_length=10_000)]
    topic: Annotated[str, Field(min_length=1, max_length=255)]
    environment: Literal["production", "sandbox"]

    @field_validator("private_key")
    @classmethod
    def _p256(cls, value: str) -> str:
        try:
            key = serialization.load_pem_private_key(value.encode(), password=None)
        except (ValueError, TypeError) as exc:
            raise ValueError("private_key must be the PEM of the .p8 key from Apple") from exc
        if not isinstance(key, ec.EllipticCurvePrivateKey) or key.curve.name != "secp256r1":
            raise ValueError("private_key must be a P-256 EC key (Apple's .p8)")
        return value


class FcmCredentials(Strict):
    service_account: dict[str, Any]

    @field_validator("service_account")
    @classmethod
    def _service_account(cls, value: dict[str, Any]) -> dict[str, Any]:
        for name in ("project_id", "private_key", "client_email", "token_uri"):
            if not isinstance(value.get(name), str) or not value[name]:
                raise ValueError(f"service_account.{name} is missing: paste the whole service-account JSON")
        if not re.match(r"^https?://", value["token_uri"]):
            raise ValueError("service_account.token_uri must be an http(s) URL")
        try:
            key = serialization.load_pem_private_key(value["private_key"].encode(), password=None)
        except (ValueError, TypeError) as exc:
            raise ValueError("service_account.private_key is not a PEM private key") from exc
        if not isinstance(key, rsa.RSAPrivateKey):
            raise ValueError("service_account.private_key must be an RSA key")
        return value


class WebPushCredentials(Strict):
    subject: Annotated[str, Field(pattern=r"^(mailto:[^@\s]+@[^@\s]+|https://\S+)$", max_length=300)]
    vapid_private_key: Annotated[str, Field(min_length=1, max_length=10_000)] | None = None

    @field_validator("subject")
    @classmethod
    def _contact_url(cls, value: str) -> str:
        """RFC 8292: a mailto: or https: URI the push service can use to reach you."""
        if value.startswith("https://"):
            try:
                host = urlsplit(value).hostname
            except ValueError as exc:
                raise ValueError("subject is not a valid https:// URL") from exc
            if not host:
                raise ValueError("subject needs a host, e.g. https://example.com/contact")
        return value


class VapidPublicKey(BaseModel):
    public_key: str


async def _app_for(runtime: Runtime, principal: Principal, app_id: str) -> Any:
    """The app, if the caller may see it: admin sees all, a key its own only."""
    if principal.kind != "admin" and principal.app_id != app_id:
        raise Problem(404, f"no app {app_id}")
    async with runtime.engine.connect() as conn:
        app = await store.find_app(conn, app_id)
    if app is None:
        raise Problem(404, f"no app {app_id}")
    return app


def _view(runtime: Runtime, app: Any) -> AppView:
    apns = store.read_credentials(runtime.box, app, "apns")
    fcm = store.read_credentials(runtime.box, app, "fcm")
    problems = app.credential_problems or {}
    credentials = {
        "apns": {k: apns[k] for k in ("team_id", "key_id", "topic", "environment")} if apns else None,
        "fcm": {"project_id": fcm["service_account"]["project_id"]} if fcm else None,
        "webpush": {"subject": app.webpush_subject},
        "problems": problems,
    }
    return AppView(
        id=app.id,
        name=app.name,
        default_ttl=app.default_ttl,
        frequency_caps=app.frequency_caps or {},
        vapid_public_key=app.vapid_public_key,
        credentials=credentials,
        created_at=app.created_at,
    )


@router.post("/v1/apps", status_code=201, response_model=AppCreated)
async def create_app(body: AppCreate, runtime: RuntimeDep, _: AdminOnly) -> AppCreated:
    private, public = new_vapid_keypair()
    async with runtime.engine.begin() as conn:
        created = await store.create_app(conn, runtime.box, body.name, private, public)
    return AppCreated(**created)


@router.get("/v1/apps/{app_id}", response_model=AppView)
async def get_app(app_id: str, runtime: RuntimeDep, principal: AdminOrSecret) -> AppView:
    return _view(runtime, await _app_for(runtime, principal, app_id))


@router.patch("/v1/apps/{app_id}", response_model=AppView)
async def patch_app(app_id: str, body: AppPatch, runtime: RuntimeDep, principal: AdminOrSecret) -> AppView:
    app = await _app_for(runtime, principal, app_id)
    values = body.model_dump(exclude_unset=True, exclude_none=True)
    async with runtime.engine.begin() as conn:
        await store.update_app(conn, app.pk, values)
        app = await store.find_app(conn, app_id)
    return _view(runtime, app)


@router.delete("/v1/apps/{app_id}", status_code=204, response_class=Response)
async def delete_app(app_id: str, runtime: RuntimeDep, principal: AdminOnly) -> Response:
    app = await _app_for(runtime, principal, app_id)
    async with runtime.engine.begin() as conn:
        await store.delete_app(conn, app.pk)
    return Response(status_code=204)


@router.post("/v1/apps/{app_id}/keys", status_code=201, response_model=KeyCreated)
async def create_key(app_id: str, body: KeyCreate, runtime: RuntimeDep, principal: AdminOrSecret) -> KeyCreated:
    app = await _app_for(runtime, principal, app_id)
    async with runtime.engine.begin() as conn:
        key_id, key = await store.create_key(conn, app.pk, body.kind)
    return KeyCreated(id=key_id, kind=body.kind, key=key)


@router.delete("/v1/apps/{app_id}/keys/{key_id}", status_code=204, response_class=Response)
async def revoke_key(app_id: str, key_id: str, runtime: RuntimeDep, principal: AdminOrSecret) -> Response:
    app = await _app_for(runtime, principal, app_id)
    async with runtime.engine.begin() as conn:
        if not await store.revoke_key(conn, app.pk, key_id):
            raise Problem(404, f"no active key {key_id} in app {app_id}")
    return Response(status_code=204)


@router.put("/v1/apps/{app_id}/credentials/apns", response_model=AppView)
async def put_apns(app_id: str, body: ApnsCredentials, runtime: RuntimeDep, principal: AdminOrSecret) -> AppView:
    return await _store_credentials(runtime, principal, app_id, "apns", body.model_dump())


@router.put("/v1/apps/{app_id}/credentials/fcm", response_model=AppView)
async def put_fcm(app_id: str, body: FcmCredentials, runtime: RuntimeDep, principal: AdminOrSecret) -> AppView:
    return await _store_credentials(runtime, principal, app_id, "fcm", body.model_dump())


@router.put("/v1/apps/{app_id}/credentials/webpush", response_model=AppView)
async def put_webpush(
    app_id: str, body: WebPushCredentials, runtime: RuntimeDep, principal: AdminOrSecret
) -> AppView:
    app = await _app_for(runtime, principal, app_id)
    private = public = None
    if body.vapid_private_key is not None:
        try:
            private, public = parse_vapid_private_key(body.vapid_private_key)
        except ValueError as exc:
            raise Problem(422, str(exc), errors=[{"loc": ["body", "vapid_private_key"], "msg": str(exc)}]) from exc
    async with runtime.engine.begin() as conn:
        await store.store_vapid(conn, runtime.box, app, body.subject, private, public)
        app = await store.find_app(conn, app_id)
    return _view(runtime, app)


async def _store_credentials(
    runtime: Runtime, principal: Principal, app_id: str, provider: str, credentials: dict[str, Any]
) -> AppView:
    app = await _app_for(runtime, principal, app_id)
    async with runtime.engine.begin() as conn:
        await store.store_credentials(conn, runtime.box, app, provider, credentials)
        app = await store.find_app(conn, app_id)
    return _view(runtime, app)


@router.get("/v1/webpush/vapid-public-key", response_model=VapidPublicKey, tags=["web push"])
async def vapid_public_key(runtime: RuntimeDep, principal: AnyAppKey) -> VapidPublicKey:
    async with runtime.engine.connect() as conn:
        app = await store.find_app(conn, principal.app_id or "")
    if app is None:
        raise Problem(404, "the key's app no longer exists")
    return VapidPublicKey(public_key=app.vapid_public_key)

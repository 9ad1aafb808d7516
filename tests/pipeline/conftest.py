"""Pipeline fixtures: the API with the notification routes, a running
pipeline, and helpers that seed users and devices through the API.

PostgreSQL runs in this suite's own database (`clarion_pipeline`), so it
does not collide with the API suite. A missing service fails, never skips."""

from __future__ import annotations

import asyncio
import secrets
import shutil
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from clarion.api.app import create_app
from clarion.api.routes import dead_letters, notifications
from clarion.config import Settings
from clarion.dispatch.providers import stored_provider_factory
from clarion.dispatch.service import Pipeline
from clarion.domain.retry import RetryPolicy
from clarion.runtime import Runtime, build_runtime
from tests.conftest import ADMIN, make_settings, postgres_database_url, reset_postgres, truncate_postgres
from tests.fakes.apns import FakeAPNs
from tests.fakes.fcm import FakeFCM
from tests.fakes.webpush import FakeWebPush
from tests.rabbitmq import own_vhost

# Its own database, so it does not collide with the API suite's truncation of `test`.
PIPELINE_PG_URL = postgres_database_url("clarion_pipeline")
@pytest.fixture(scope="session")
def amqp_url() -> Iterator[str]:
    """This session's own RabbitMQ vhost."""
    with own_vhost("clarion_pipeline") as url:
        yield url


TERMINAL = ("sent", "delivered", "opened", "failed", "dead", "skipped", "canceled")


@pytest.fixture(scope="session")
def postgres_migrated() -> str:
    """This suite's own database, emptied and migrated once per session."""
    return reset_postgres(PIPELINE_PG_URL)


def build_app(runtime: Runtime) -> Any:
    app = create_app(runtime)
    paths = {getattr(r, "path", "") for r in app.routes}
    for module in (notifications, dead_letters):
        if not any(p.startswith(str(module.router.routes[0].path)) for p in paths):  # type: ignore[attr-defined]
            app.include_router(module.router)
    return app


@dataclass
class Fakes:
    apns: FakeAPNs
    fcm: FakeFCM
    webpush: FakeWebPush


@pytest.fixture
async def fakes() -> AsyncIterator[Fakes]:
    async with FakeAPNs() as apns, FakeFCM() as fcm, FakeWebPush() as webpush:
        yield Fakes(apns, fcm, webpush)


def fake_settings(data_dir: Path, database_url: str | None, fakes: Fakes) -> Settings:
    return make_settings(
        data_dir, database_url, apns_url=fakes.apns.url, fcm_url=fakes.fcm.url,
        ca_file=fakes.apns.ca_pem_path, allow_local_endpoints=True,
    )


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
async def runtime(
    request: pytest.FixtureRequest, tmp_path: Path, sqlite_template: Path, fakes: Fakes
) -> AsyncIterator[Runtime]:
    """A Runtime on a fresh database whose providers point at the fakes."""
    if request.param == "sqlite":
        shutil.copy(sqlite_template, tmp_path / "clarion.db")
        rt = build_runtime(fake_settings(tmp_path, None, fakes), announce=False)
    else:
        rt = build_runtime(fake_settings(tmp_path, request.getfixturevalue("postgres_migrated"), fakes), announce=False)
        await truncate_postgres(rt)
    yield rt
    await rt.aclose()


@pytest.fixture
def factory(runtime: Runtime) -> Any:
    """Real provider clients from the stored credentials, talking to the fakes."""
    return stored_provider_factory(runtime)


@pytest.fixture
def policy() -> RetryPolicy:
    return RetryPolicy(max_attempts=3, base_seconds=0.05, max_seconds=0.2)


@pytest.fixture
async def pipeline(runtime: Runtime, factory: Any, policy: RetryPolicy) -> AsyncIterator[Pipeline]:
    pipe = Pipeline(runtime, provider_factory=factory, policy=policy)
    runtime.pipeline = pipe
    await pipe.start()
    yield pipe
    await pipe.stop()
    runtime.pipeline = None


@pytest.fixture
async def api(runtime: Runtime, pipeline: Pipeline) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=build_app(runtime))
    async with httpx.AsyncClient(transport=transport, base_url="http://clarion.test") as http:
        yield http


@pytest.fixture
def keys(api: httpx.AsyncClient, fakes: Fakes) -> Callable[..., Awaitable[dict[str, str]]]:
    """Creates an app with credentials for the three fakes; returns its secret-key header."""

    async def make(**patch: Any) -> dict[str, str]:
        response = await api.post("/v1/apps", json={"name": "pipeline"}, headers=ADMIN)
        assert response.status_code == 201, response.text
        app_id = response.json()["id"]
        auth = {"Authorization": f"Bearer {response.json()['secret_key']}"}
        for provider, body in (
            ("apns", fakes.apns.credentials()),
            ("fcm", {"service_account": fakes.fcm.service_account()}),
            ("webpush", {"subject": "mailto:ops@example.com"}),
        ):
            put = await api.put(f"/v1/apps/{app_id}/credentials/{provider}", json=body, headers=auth)
            assert put.status_code == 200, put.text
        if patch:
            assert (await api.patch(f"/v1/apps/{app_id}", json=patch, headers=auth)).status_code == 200
        return auth

    return make


async def add_device(
    api: httpx.AsyncClient, auth: dict[str, str], user_id: str, platform: str = "android",
    fakes: Fakes | None = None, **extra: Any,
) -> str:
    body: dict[str, Any] = {"user_id": user_id, "platform": platform, **extra}
    if platform == "ios":
        body.setdefault("token", secrets.token_hex(32))
    elif platform == "android":
        body.setdefault("token", "fcm-" + secrets.token_urlsafe(40))
    elif "subscription" not in body:
        assert fakes is not None, "a web device needs the fake push service"
        endpoint, web_keys = fakes.webpush.subscribe()
        body["subscription"] = {"endpoint": endpoint, "keys": {"p256dh": web_keys.p256dh, "auth": web_keys.auth}}
    response = await api.post("/v1/devices", json=body, headers=auth)
    assert response.status_code in (200, 201), response.text
    return str(response.json()["id"])


async def wait_done(api: httpx.AsyncClient, auth: dict[str, str], notification_id: str, timeout: float = 20) -> dict[str, Any]:
    """Poll until the notification is completed/canceled; returns its view."""
    deadline = time.monotonic() + timeout
    while True:
        view = (await api.get(f"/v1/notifications/{notification_id}", headers=auth)).json()
        if view["status"] in ("completed", "canceled") or time.monotonic() > deadline:
            return view  # type: ignore[no-any-return]
        await asyncio.sleep(0.05)


async def deliveries(api: httpx.AsyncClient, auth: dict[str, str], notification_id: str, status: str | None = None) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    cursor = None
    while True:
        params: dict[str, Any] = {"limit": 1000}
        if status:
            params["status"] = status
        if cursor:
            params["cursor"] = cursor
        page = (await api.get(f"/v1/notifications/{notification_id}/deliveries", params=params, headers=auth)).json()
        items += page["items"]
        cursor = page["next_cursor"]
        if not cursor:
            return items

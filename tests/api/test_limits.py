"""Rate limits per key (in process and shared through Redis) and body limits."""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from clarion.api.app import create_app
from clarion.runtime import build_runtime
from tests.conftest import ADMIN, make_settings
from tests.server import running_clarion

REDIS_URL = "redis://127.0.0.1:6379/0"


def device(n: int) -> dict[str, str]:
    return {"user_id": f"u{n}", "platform": "ios", "token": f"{n:064x}"}


@pytest.fixture
async def limited(tmp_path: Path, sqlite_template: Path) -> AsyncIterator[httpx.AsyncClient]:
    """An API whose device budget is 1 request/s (a burst of 2)."""
    shutil.copy(sqlite_template, tmp_path / "clarion.db")
    runtime = build_runtime(make_settings(tmp_path, None, rate_limit_devices=1), announce=False)
    transport = httpx.ASGITransport(app=create_app(runtime))
    async with httpx.AsyncClient(transport=transport, base_url="http://clarion.test") as client:
        yield client
    await runtime.aclose()


async def _secret(client: httpx.AsyncClient) -> dict[str, str]:
    app = (await client.post("/v1/apps", json={"name": "limits"}, headers=ADMIN)).json()
    return {"Authorization": f"Bearer {app['secret_key']}"}


async def test_device_registration_is_rate_limited_per_key(limited: httpx.AsyncClient) -> None:
    """A burst of twice the rate passes; the next is a 429 with Retry-After; other keys are unaffected."""
    secret = await _secret(limited)
    answers = [await limited.post("/v1/devices", json=device(n), headers=secret) for n in range(3)]
    assert [a.status_code for a in answers] == [201, 201, 429]
    assert answers[0].headers["RateLimit-Limit"] == "2"
    assert answers[1].headers["RateLimit-Remaining"] == "0"
    refused = answers[2]
    assert int(refused.headers["Retry-After"]) >= 1
    assert refused.headers["content-type"] == "application/problem+json"
    assert (await limited.get("/v1/users/u2", headers=secret)).status_code == 404  # changed nothing
    other = await _secret(limited)
    assert (await limited.post("/v1/devices", json=device(9), headers=other)).status_code == 201


async def test_unauthenticated_requests_take_no_tokens(limited: httpx.AsyncClient) -> None:
    secret = await _secret(limited)
    for _ in range(5):
        assert (await limited.post("/v1/devices", json=device(1))).status_code == 401
    assert (await limited.post("/v1/devices", json=device(1), headers=secret)).status_code == 201


async def test_body_over_the_limit_is_413_before_parsing(limited: httpx.AsyncClient) -> None:
    secret = await _secret(limited)
    huge = b'{"user_id": "' + b"x" * (1024 * 1024 + 10) + b'"}'
    response = await limited.post("/v1/devices", content=huge,
                                  headers={**secret, "Content-Type": "application/json"})
    assert response.status_code == 413
    assert response.headers["content-type"] == "application/problem+json"

    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(20):
            yield b" " * 65536  # no Content-Length: counted as it streams

    streamed = await limited.post("/v1/devices", content=chunks(),
                                  headers={**secret, "Content-Type": "application/json"})
    assert streamed.status_code == 413


@pytest.mark.redis
def test_redis_budget_is_shared_by_two_api_processes(tmp_path: Path) -> None:
    """Two `clarion api` processes with one Redis enforce one budget, not two."""
    env = {"CLARION_REDIS_URL": REDIS_URL, "CLARION_RATE_LIMIT_DEVICES": "0.5"}  # burst of 1
    with running_clarion("api", tmp_path, **env) as one, running_clarion("api", tmp_path, **env) as two:
        app = httpx.post(f"{one.url}/v1/apps", json={"name": "shared"}, headers=ADMIN).json()
        secret = {"Authorization": f"Bearer {app['secret_key']}"}
        statuses = [
            httpx.post(f"{server.url}/v1/devices", json=device(n), headers=secret).status_code
            for n, server in enumerate([one, two, one, two])
        ]
    # One token in the shared bucket (refilling at 0.5/s): in-process buckets would allow two.
    assert statuses.count(201) == 1, statuses
    assert statuses.count(429) == 3, statuses

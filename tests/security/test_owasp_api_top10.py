"""The OWASP API Security Top 10 (2023), case by case, as it applies here.

API1 (object-level authorization) and API5 (function-level authorization)
are walked route by route in tests/api/test_auth_matrix.py; the cases here
cover the rest."""

from __future__ import annotations

import time

import httpx
import jwt
import pytest

from clarion.api.auth import JWT_AUDIENCE
from clarion.runtime import Runtime
from tests.api.test_apps import p8_key
from tests.conftest import ADMIN, AppKeys

IOS_TOKEN = "c3" * 32


async def _token(client: httpx.AsyncClient, keys: AppKeys) -> str:
    form = {"grant_type": "client_credentials", "client_id": keys.key_id, "client_secret": keys.secret_key}
    return str((await client.post("/oauth/token", data=form)).json()["access_token"])


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


# API2: broken authentication --------------------------------------------------------------

async def test_expired_jwt_is_401(client: httpx.AsyncClient, app_keys: AppKeys, runtime: Runtime) -> None:
    now = int(time.time())
    expired = jwt.encode({"sub": app_keys.key_id, "aud": JWT_AUDIENCE, "iat": now - 7200, "exp": now - 3600},
                         runtime.jwt_key, algorithm="HS256")
    assert (await client.get("/v1/users/x", headers=_bearer(expired))).status_code == 401


async def test_tampered_jwt_is_401(client: httpx.AsyncClient, make_app) -> None:  # type: ignore[no-untyped-def]
    """Swapping the subject for another app's key breaks the signature."""
    one, two = await make_app("one"), await make_app("two")
    token = await _token(client, one)
    header, _payload, signature = token.split(".")
    claims = jwt.decode(token, options={"verify_signature": False})
    forged_payload = jwt.utils.base64url_encode(
        jwt.api_jws.json.dumps({**claims, "sub": two.key_id}).encode()
    ).decode()
    forged = f"{header}.{forged_payload}.{signature}"
    assert (await client.get("/v1/users/x", headers=_bearer(forged))).status_code == 401


async def test_alg_none_and_wrong_key_jwts_are_401(client: httpx.AsyncClient, app_keys: AppKeys) -> None:
    now = int(time.time())
    claims = {"sub": app_keys.key_id, "aud": JWT_AUDIENCE, "iat": now, "exp": now + 600}
    unsigned = jwt.encode(claims, key=None, algorithm="none")
    wrong_key = jwt.encode(claims, "a-guessed-secret-of-thirty-two-bytes!", algorithm="HS256")
    assert (await client.get("/v1/users/x", headers=_bearer(unsigned))).status_code == 401
    assert (await client.get("/v1/users/x", headers=_bearer(wrong_key))).status_code == 401


async def test_revoked_key_and_its_jwts_are_401(client: httpx.AsyncClient, app_keys: AppKeys) -> None:
    token = await _token(client, app_keys)
    await client.delete(f"/v1/apps/{app_keys.id}/keys/{app_keys.key_id}", headers=ADMIN)
    assert (await client.get("/v1/users/x", headers=app_keys.secret)).status_code == 401
    assert (await client.get("/v1/users/x", headers=_bearer(token))).status_code == 401


async def test_publishable_key_cannot_mint_a_secret_token(client: httpx.AsyncClient, app_keys: AppKeys) -> None:
    """A JWT has exactly its key's rights: one minted from a publishable key stays publishable."""
    new = (await client.post(f"/v1/apps/{app_keys.id}/keys", json={"kind": "publishable"},
                             headers=app_keys.secret)).json()
    form = {"grant_type": "client_credentials", "client_id": new["id"], "client_secret": new["key"]}
    token = (await client.post("/oauth/token", data=form)).json()["access_token"]
    assert (await client.get("/v1/users/x", headers=_bearer(token))).status_code == 403


# API3: broken object property level authorization ----------------------------------------

async def test_no_secret_in_any_response(client: httpx.AsyncClient, app_keys: AppKeys) -> None:
    """After creation, neither keys, device tokens nor VAPID private keys come back."""
    await client.post("/v1/devices", json={"user_id": "u", "platform": "ios", "token": IOS_TOKEN},
                      headers=app_keys.secret)
    apns = {"team_id": "TEAM123456", "key_id": "KEY1234567", "private_key": p8_key(), "topic": "com.example",
            "environment": "production"}
    put = await client.put(f"/v1/apps/{app_keys.id}/credentials/apns", json=apns, headers=app_keys.secret)
    reads = [
        put,
        await client.get(f"/v1/apps/{app_keys.id}", headers=ADMIN),
        await client.get("/v1/users/u", headers=app_keys.secret),
        await client.get("/v1/users/u/devices", headers=app_keys.secret),
        await client.get("/v1/users/u/export", headers=app_keys.secret),
        await client.get("/openapi.json"),
    ]
    for response in reads:
        for secret in (app_keys.secret_key, app_keys.publishable_key, IOS_TOKEN):
            assert secret not in response.text
        assert "PRIVATE KEY" not in response.text
        assert "token_enc" not in response.text and "key_hash" not in response.text


@pytest.mark.parametrize(
    "path,body",
    [
        ("/v1/users/u", {"locale": "en", "app_pk": 1}),
        ("/v1/users/u/preferences", {"opt_out_all": False, "user_pk": 2}),
    ],
)
async def test_unknown_fields_are_rejected(client: httpx.AsyncClient, app_keys: AppKeys, path: str,
                                           body: dict) -> None:
    """Mass assignment: a field the API does not define is a 422, never stored."""
    assert (await client.put(path, json=body, headers=app_keys.secret)).status_code == 422


async def test_device_cannot_be_registered_as_active_false_or_into_another_app(
    client: httpx.AsyncClient, app_keys: AppKeys
) -> None:
    body = {"user_id": "u", "platform": "ios", "token": IOS_TOKEN, "active": False}
    assert (await client.post("/v1/devices", json=body, headers=app_keys.secret)).status_code == 422
    body = {"user_id": "u", "platform": "ios", "token": IOS_TOKEN, "app_id": "app_other"}
    assert (await client.post("/v1/devices", json=body, headers=app_keys.secret)).status_code == 422


# API4: unrestricted resource consumption --------------------------------------------------

async def test_list_limits_are_capped(client: httpx.AsyncClient, app_keys: AppKeys) -> None:
    await client.put("/v1/users/u", json={}, headers=app_keys.secret)
    assert (await client.get("/v1/users/u/devices?limit=1001", headers=app_keys.secret)).status_code == 422
    assert (await client.get("/v1/users/u/devices?limit=1000", headers=app_keys.secret)).status_code == 200


async def test_topic_subscription_batch_is_capped(client: httpx.AsyncClient, app_keys: AppKeys) -> None:
    body = {"user_ids": [f"u{n}" for n in range(1001)]}
    response = await client.put("/v1/topics/t/subscribers", json=body, headers=app_keys.secret)
    assert response.status_code == 422


# API7: server-side request forgery ---------------------------------------------------------

@pytest.mark.parametrize(
    "endpoint",
    ["https://127.0.0.1/p", "https://10.1.2.3/p", "https://172.16.0.1/p", "https://192.168.0.1/p",
     "https://169.254.169.254/latest", "https://0.0.0.0/p", "https://[::1]/p", "https://[::]/p",
     "https://[fc00::1]/p", "https://[fe80::1]/p", "https://[::ffff:127.0.0.1]/p", "http://push.example.com/p"],
)
async def test_web_push_endpoint_ssrf_refused(client: httpx.AsyncClient, app_keys: AppKeys, endpoint: str) -> None:
    from tests.api.test_users_devices import web_subscription

    body = {"user_id": "u", "platform": "web", "subscription": web_subscription(endpoint)}
    response = await client.post("/v1/devices", json=body, headers=app_keys.publishable)
    assert response.status_code == 422, endpoint


# API8: security misconfiguration -----------------------------------------------------------

async def test_errors_do_not_leak_internals(client: httpx.AsyncClient, app_keys: AppKeys) -> None:
    response = await client.get("/v1/nope", headers=app_keys.secret)
    assert response.status_code == 404
    assert response.headers["content-type"] == "application/problem+json"
    assert "Traceback" not in response.text

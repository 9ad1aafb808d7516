"""Apps, keys, credentials and OAuth tokens."""

from __future__ import annotations

import httpx
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from tests.conftest import ADMIN, AppKeys


def p8_key() -> str:
    key = ec.generate_private_key(ec.SECP256R1())
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()


def service_account() -> dict[str, str]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    return {
        "type": "service_account",
        "project_id": "demo-project",
        "private_key_id": "abc",
        "private_key": pem.decode(),
        "client_email": "clarion@demo-project.iam.gserviceaccount.com",
        "token_uri": "https://oauth2.googleapis.com/token",
    }


async def test_create_app_returns_keys_once(client: httpx.AsyncClient) -> None:
    """Creating an app answers 201 with keys; reading it back never shows them."""
    response = await client.post("/v1/apps", json={"name": "Shop"}, headers=ADMIN)
    assert response.status_code == 201
    body = response.json()
    assert body["secret_key"].startswith("sk_") and body["publishable_key"].startswith("pk_")
    assert set(body) == {"id", "name", "secret_key", "publishable_key", "key_id", "vapid_public_key"}
    again = await client.get(f"/v1/apps/{body['id']}", headers=ADMIN)
    assert again.status_code == 200
    assert body["secret_key"] not in again.text and body["publishable_key"] not in again.text


async def test_app_creation_needs_admin(client: httpx.AsyncClient, app_keys: AppKeys) -> None:
    """A secret key cannot create apps; no credential is a 401 problem."""
    assert (await client.post("/v1/apps", json={"name": "x"}, headers=app_keys.secret)).status_code == 403
    missing = await client.post("/v1/apps", json={"name": "x"})
    assert missing.status_code == 401
    assert missing.headers["content-type"] == "application/problem+json"
    assert missing.json()["status"] == 401


async def test_patch_app_frequency_caps(client: httpx.AsyncClient, app_keys: AppKeys) -> None:
    """The secret key may set caps and the default ttl on its own app."""
    caps = {"promotional": {"max": 2, "per_seconds": 3600}}
    response = await client.patch(
        f"/v1/apps/{app_keys.id}", json={"frequency_caps": caps, "default_ttl": 600}, headers=app_keys.secret
    )
    assert response.status_code == 200
    assert response.json()["frequency_caps"] == caps and response.json()["default_ttl"] == 600


async def test_patch_rejects_bad_caps_and_changes_nothing(client: httpx.AsyncClient, app_keys: AppKeys) -> None:
    bad = await client.patch(
        f"/v1/apps/{app_keys.id}", json={"name": "new", "frequency_caps": {"x": {"max": 0}}}, headers=app_keys.secret
    )
    assert bad.status_code == 422
    assert bad.json()["errors"]
    assert (await client.get(f"/v1/apps/{app_keys.id}", headers=ADMIN)).json()["name"] == "test app"


async def test_other_apps_are_404(client: httpx.AsyncClient, make_app) -> None:  # type: ignore[no-untyped-def]
    one, two = await make_app("one"), await make_app("two")
    assert (await client.get(f"/v1/apps/{two.id}", headers=one.secret)).status_code == 404
    assert (await client.delete(f"/v1/apps/{two.id}/keys/{two.key_id}", headers=one.secret)).status_code == 404


async def test_revoked_key_stops_working_at_once(client: httpx.AsyncClient, app_keys: AppKeys) -> None:
    new = await client.post(f"/v1/apps/{app_keys.id}/keys", json={"kind": "secret"}, headers=app_keys.secret)
    assert new.status_code == 201
    key = new.json()
    headers = {"Authorization": f"Bearer {key['key']}"}
    assert (await client.get(f"/v1/apps/{app_keys.id}", headers=headers)).status_code == 200
    revoke = await client.delete(f"/v1/apps/{app_keys.id}/keys/{key['id']}", headers=app_keys.secret)
    assert revoke.status_code == 204
    assert (await client.get(f"/v1/apps/{app_keys.id}", headers=headers)).status_code == 401


async def test_oauth_client_credentials(client: httpx.AsyncClient, app_keys: AppKeys) -> None:
    """A key id and its key buy a JWT with the key's rights, until the key is revoked."""
    form = {"grant_type": "client_credentials", "client_id": app_keys.key_id, "client_secret": app_keys.secret_key}
    response = await client.post("/oauth/token", data=form)
    assert response.status_code == 200
    token = response.json()
    assert token["token_type"] == "Bearer" and token["expires_in"] > 0
    headers = {"Authorization": f"Bearer {token['access_token']}"}
    assert (await client.get(f"/v1/apps/{app_keys.id}", headers=headers)).status_code == 200
    await client.delete(f"/v1/apps/{app_keys.id}/keys/{app_keys.key_id}", headers=ADMIN)
    assert (await client.get(f"/v1/apps/{app_keys.id}", headers=headers)).status_code == 401


async def test_oauth_bad_client(client: httpx.AsyncClient, app_keys: AppKeys) -> None:
    form = {"grant_type": "client_credentials", "client_id": app_keys.key_id, "client_secret": "sk_wrong"}
    response = await client.post("/oauth/token", data=form)
    assert response.status_code == 401
    assert response.json()["error"] == "invalid_client"


async def test_credentials_are_write_only(client: httpx.AsyncClient, app_keys: AppKeys) -> None:
    """Provider secrets are accepted, summarised, and never returned."""
    pem = p8_key()
    apns = {"team_id": "TEAM123456", "key_id": "KEY1234567", "private_key": pem, "topic": "com.example.app",
            "environment": "sandbox"}
    put = await client.put(f"/v1/apps/{app_keys.id}/credentials/apns", json=apns, headers=app_keys.secret)
    assert put.status_code == 200, put.text
    account = service_account()
    put = await client.put(
        f"/v1/apps/{app_keys.id}/credentials/fcm", json={"service_account": account}, headers=app_keys.secret
    )
    assert put.status_code == 200, put.text
    view = (await client.get(f"/v1/apps/{app_keys.id}", headers=ADMIN)).text
    assert "PRIVATE KEY" not in view and "TEAM123456" in view and "demo-project" in view


async def test_bad_apns_key_is_422(client: httpx.AsyncClient, app_keys: AppKeys) -> None:
    apns = {"team_id": "TEAM123456", "key_id": "KEY1234567", "private_key": "nope", "topic": "t",
            "environment": "sandbox"}
    put = await client.put(f"/v1/apps/{app_keys.id}/credentials/apns", json=apns, headers=app_keys.secret)
    assert put.status_code == 422
    assert put.json()["errors"][0]["loc"][-1] == "private_key"


async def test_webpush_key_replacement(client: httpx.AsyncClient, app_keys: AppKeys) -> None:
    """A given VAPID key replaces the pair; none keeps the current one."""
    url = f"/v1/apps/{app_keys.id}/credentials/webpush"
    keep = await client.put(url, json={"subject": "mailto:ops@example.com"}, headers=app_keys.secret)
    assert keep.json()["vapid_public_key"] == app_keys.vapid_public_key
    pem = p8_key()
    replaced = await client.put(url, json={"subject": "https://example.com", "vapid_private_key": pem},
                                headers=app_keys.secret)
    assert replaced.status_code == 200
    new_public = replaced.json()["vapid_public_key"]
    assert new_public != app_keys.vapid_public_key
    public = await client.get("/v1/webpush/vapid-public-key", headers=app_keys.publishable)
    assert public.json() == {"public_key": new_public}


async def test_malformed_json_is_400(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/v1/apps", content=b"{not json", headers={**ADMIN, "Content-Type": "application/json"}
    )
    assert response.status_code == 400
    assert response.headers["content-type"] == "application/problem+json"


async def test_delete_app_removes_it(client: httpx.AsyncClient, app_keys: AppKeys) -> None:
    assert (await client.delete(f"/v1/apps/{app_keys.id}", headers=ADMIN)).status_code == 204
    assert (await client.get(f"/v1/apps/{app_keys.id}", headers=ADMIN)).status_code == 404
    assert (await client.get("/v1/webpush/vapid-public-key", headers=app_keys.publishable)).status_code == 401

"""Users, devices, preferences and topics, as API.md describes them."""

from __future__ import annotations

import base64
import shutil
from pathlib import Path

import httpx
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from clarion.api.app import create_app
from clarion.runtime import build_runtime
from tests.conftest import ADMIN, AppKeys, make_settings

IOS_TOKEN = "a1" * 32


def web_subscription(endpoint: str = "https://push.example.com/send/abc") -> dict[str, object]:
    key = ec.generate_private_key(ec.SECP256R1()).public_key()
    point = key.public_bytes(serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint)
    b64 = lambda raw: base64.urlsafe_b64encode(raw).decode().rstrip("=")  # noqa: E731
    return {"endpoint": endpoint, "keys": {"p256dh": b64(point), "auth": b64(b"0123456789abcdef")}}


async def test_put_user_creates_then_updates(client: httpx.AsyncClient, app_keys: AppKeys) -> None:
    body = {"attributes": {"plan": "pro", "age": 31}, "timezone": "Europe/Berlin", "locale": "de-DE",
            "location": {"lat": 52.5, "lon": 13.4}, "email": "a@example.com"}
    created = await client.put("/v1/users/alice", json=body, headers=app_keys.secret)
    assert created.status_code == 201
    updated = await client.put("/v1/users/alice", json={"locale": "de-AT"}, headers=app_keys.secret)
    assert updated.status_code == 200
    user = (await client.get("/v1/users/alice", headers=app_keys.secret)).json()
    assert user["locale"] == "de-AT" and user["attributes"] == {"plan": "pro", "age": 31}
    assert user["location"] == {"lat": 52.5, "lon": 13.4}


@pytest.mark.parametrize(
    "body",
    [{"timezone": "Mars/Olympus"}, {"locale": "not a tag"}, {"location": {"lat": 91, "lon": 0}}, {"unknown": 1},
     {"email": "nope"}],
)
async def test_bad_user_is_422_and_changes_nothing(client: httpx.AsyncClient, app_keys: AppKeys, body: dict) -> None:
    response = await client.put("/v1/users/bob", json=body, headers=app_keys.secret)
    assert response.status_code == 422
    assert response.json()["errors"]
    assert (await client.get("/v1/users/bob", headers=app_keys.secret)).status_code == 404


async def test_register_device_and_move_it(client: httpx.AsyncClient, app_keys: AppKeys) -> None:
    """The same token again answers 200 and moves the device to the new user."""
    first = await client.post("/v1/devices", json={"user_id": "alice", "platform": "ios", "token": IOS_TOKEN},
                              headers=app_keys.publishable)
    assert first.status_code == 201
    device = first.json()
    assert device["user_id"] == "alice" and device["active"] is True and IOS_TOKEN not in first.text
    again = await client.post("/v1/devices", json={"user_id": "bob", "platform": "ios", "token": IOS_TOKEN.upper()},
                              headers=app_keys.publishable)
    assert again.status_code == 200 and again.json()["id"] == device["id"]
    got = (await client.get(f"/v1/devices/{device['id']}", headers=app_keys.secret)).json()
    assert got["user_id"] == "bob"
    alice = (await client.get("/v1/users/alice/devices", headers=app_keys.secret)).json()
    assert alice == {"items": [], "next_cursor": None}


@pytest.mark.parametrize(
    "body",
    [
        {"platform": "ios", "token": "abc"},
        {"platform": "ios", "token": "zz" * 32},
        {"platform": "android", "token": "bad token with spaces"},
        {"platform": "web", "subscription": {"endpoint": "http://push.example.com/x",
                                             "keys": web_subscription()["keys"]}},
        {"platform": "web", "subscription": {"endpoint": "https://127.0.0.1/x", "keys": web_subscription()["keys"]}},
        {"platform": "web", "subscription": {"endpoint": "https://[::ffff:10.0.0.1]/x",
                                             "keys": web_subscription()["keys"]}},
        {"platform": "web", "subscription": {"endpoint": "https://192.168.1.4/x", "keys": web_subscription()["keys"]}},
        {"platform": "web", "subscription": {"endpoint": "https://push.example.com/x",
                                             "keys": {"p256dh": "AAAA", "auth": "AAAA"}}},
        {"platform": "web", "token": IOS_TOKEN},
        {"platform": "pager", "token": IOS_TOKEN},
    ],
)
async def test_invalid_devices_are_422(client: httpx.AsyncClient, app_keys: AppKeys, body: dict) -> None:
    response = await client.post("/v1/devices", json={"user_id": "alice", **body}, headers=app_keys.secret)
    assert response.status_code == 422, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert (await client.get("/v1/users/alice", headers=app_keys.secret)).status_code == 404


async def test_web_device_and_android_device(client: httpx.AsyncClient, app_keys: AppKeys) -> None:
    web = await client.post("/v1/devices", json={"user_id": "carol", "platform": "web",
                                                 "subscription": web_subscription()}, headers=app_keys.secret)
    assert web.status_code == 201, web.text
    android = await client.post("/v1/devices", json={"user_id": "carol", "platform": "android",
                                                     "token": "fcm:" + "x" * 140}, headers=app_keys.secret)
    assert android.status_code == 201
    listing = (await client.get("/v1/users/carol/devices?limit=1", headers=app_keys.secret)).json()
    assert len(listing["items"]) == 1 and listing["next_cursor"]
    rest = (await client.get(f"/v1/users/carol/devices?limit=1&cursor={listing['next_cursor']}",
                             headers=app_keys.secret)).json()
    assert {listing["items"][0]["platform"], rest["items"][0]["platform"]} == {"web", "android"}


async def test_delete_device(client: httpx.AsyncClient, app_keys: AppKeys) -> None:
    device = (await client.post("/v1/devices", json={"user_id": "a", "platform": "ios", "token": IOS_TOKEN},
                                headers=app_keys.secret)).json()
    assert (await client.delete(f"/v1/devices/{device['id']}", headers=app_keys.publishable)).status_code == 204
    assert (await client.get(f"/v1/devices/{device['id']}", headers=app_keys.secret)).status_code == 404


async def test_preferences_merge_and_clear(client: httpx.AsyncClient, app_keys: AppKeys) -> None:
    url = "/v1/users/dave/preferences"
    first = await client.put(url, json={"types": {"promotional": False}, "categories": {"news": False},
                                        "quiet_hours": {"start": "22:00", "end": "07:00"}},
                             headers=app_keys.publishable)
    assert first.status_code == 200
    await client.put(url, json={"categories": {"sport": True}, "quiet_hours": None}, headers=app_keys.secret)
    prefs = (await client.get(url, headers=app_keys.secret)).json()
    assert prefs == {"opt_out_all": False, "types": {"promotional": False},
                     "categories": {"news": False, "sport": True}, "quiet_hours": None}
    bad = await client.put(url, json={"quiet_hours": {"start": "25:00", "end": "07:00"}}, headers=app_keys.secret)
    assert bad.status_code == 422
    assert (await client.put(url, json={"types": {"spam": True}}, headers=app_keys.secret)).status_code == 422


async def test_topics(client: httpx.AsyncClient, app_keys: AppKeys) -> None:
    url = "/v1/topics/sports/subscribers"
    put = await client.put(url, json={"user_ids": ["u1", "u2"]}, headers=app_keys.secret)
    assert put.status_code == 200 and put.json()["changed"] == 2
    assert (await client.put(url, json={"user_ids": ["u1"]}, headers=app_keys.secret)).json()["changed"] == 0
    assert (await client.get("/v1/users/u1/topics", headers=app_keys.secret)).json() == {"topics": ["sports"]}
    gone = await client.request("DELETE", url, json={"user_ids": ["u1"]}, headers=app_keys.secret)
    assert gone.json()["changed"] == 1
    assert (await client.get("/v1/users/u1/topics", headers=app_keys.secret)).json() == {"topics": []}


async def test_segments(client: httpx.AsyncClient, app_keys: AppKeys) -> None:
    flt = {"all": [{"attribute": "plan", "op": "eq", "value": "pro"}, {"platform": "ios"}]}
    assert (await client.put("/v1/segments/pros", json={"filter": flt}, headers=app_keys.secret)).status_code == 201
    assert (await client.put("/v1/segments/pros", json={"filter": flt}, headers=app_keys.secret)).status_code == 200
    assert (await client.get("/v1/segments/pros", headers=app_keys.secret)).json()["filter"] == flt
    bad = await client.put("/v1/segments/bad", json={"filter": {"all": [{"attribute": "x", "op": "like",
                                                                          "value": 1}]}}, headers=app_keys.secret)
    assert bad.status_code == 422
    assert bad.json()["errors"][0]["loc"][:3] == ["body", "filter", "all"]
    assert (await client.put("/v1/segments/bad", json={"filter": {"color": "red"}},
                             headers=app_keys.secret)).status_code == 422
    assert (await client.get("/v1/segments/bad", headers=app_keys.secret)).status_code == 404
    assert (await client.delete("/v1/segments/pros", headers=app_keys.secret)).status_code == 204


async def test_gdpr_erase_and_export(client: httpx.AsyncClient, app_keys: AppKeys) -> None:
    await client.put("/v1/users/erin", json={"email": "erin@example.com", "attributes": {"x": 1}},
                     headers=app_keys.secret)
    await client.post("/v1/devices", json={"user_id": "erin", "platform": "ios", "token": IOS_TOKEN},
                      headers=app_keys.secret)
    await client.put("/v1/topics/news/subscribers", json={"user_ids": ["erin"]}, headers=app_keys.secret)
    export = await client.get("/v1/users/erin/export", headers=app_keys.secret)
    assert export.status_code == 200
    data = export.json()
    assert data["user"]["email"] == "erin@example.com" and len(data["devices"]) == 1 and data["topics"] == ["news"]
    assert IOS_TOKEN not in export.text
    assert (await client.delete("/v1/users/erin", headers=app_keys.secret)).status_code == 204
    assert (await client.get("/v1/users/erin", headers=app_keys.secret)).status_code == 404
    assert (await client.get(f"/v1/devices/{data['devices'][0]['id']}", headers=app_keys.secret)).status_code == 404


async def test_erased_data_is_gone_from_sqlite_file(tmp_path: Path, sqlite_template: Path) -> None:
    """secure_delete and a WAL checkpoint: erased bytes are gone from the files."""
    shutil.copy(sqlite_template, tmp_path / "clarion.db")
    runtime = build_runtime(make_settings(tmp_path, None), announce=False)
    marker = "erasable-marker-7f3a9"
    transport = httpx.ASGITransport(app=create_app(runtime))
    async with httpx.AsyncClient(transport=transport, base_url="http://clarion.test") as client:
        app = (await client.post("/v1/apps", json={"name": "gdpr"}, headers=ADMIN)).json()
        secret = {"Authorization": f"Bearer {app['secret_key']}"}
        await client.put("/v1/users/frank", json={"email": f"{marker}@example.com"}, headers=secret)
        found_before = any(marker.encode() in p.read_bytes() for p in tmp_path.glob("clarion.db*"))
        await client.delete("/v1/users/frank", headers=secret)
    await runtime.aclose()
    assert found_before
    for path in tmp_path.glob("clarion.db*"):
        assert marker.encode() not in path.read_bytes(), path


async def test_other_app_objects_are_404(client: httpx.AsyncClient, make_app) -> None:  # type: ignore[no-untyped-def]
    one, two = await make_app("one"), await make_app("two")
    device = (await client.post("/v1/devices", json={"user_id": "a", "platform": "ios", "token": IOS_TOKEN},
                                headers=one.secret)).json()
    assert (await client.get(f"/v1/devices/{device['id']}", headers=two.secret)).status_code == 404
    assert (await client.delete(f"/v1/devices/{device['id']}", headers=two.secret)).status_code == 404
    assert (await client.get("/v1/users/a", headers=two.secret)).status_code == 404
    # The same token in another app is another device.
    other = await client.post("/v1/devices", json={"user_id": "a", "platform": "ios", "token": IOS_TOKEN},
                              headers=two.secret)
    assert other.status_code == 201 and other.json()["id"] != device["id"]


@pytest.mark.parametrize("raw", [b'{"attributes": {"score": NaN}}', b'{"attributes": {"x": Infinity}}',
                                 b'{"attributes": {"name": "a\\u0000b"}}', b'{"attributes": {"l": [1, -Infinity]}}'])
async def test_unstorable_attributes_are_422(client: httpx.AsyncClient, app_keys: AppKeys, raw: bytes) -> None:
    """NaN, Infinity and NUL would break filter queries later: refused at the door."""
    response = await client.put("/v1/users/nan", content=raw,
                                headers={**app_keys.secret, "Content-Type": "application/json"})
    assert response.status_code == 422, response.text
    assert (await client.get("/v1/users/nan", headers=app_keys.secret)).status_code == 404

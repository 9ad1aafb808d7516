"""Every route × every kind of credential gives the status API.md implies."""

from __future__ import annotations

from dataclasses import dataclass

import httpx
import pytest

from tests.conftest import ADMIN, AppKeys

IOS_TOKEN = "b2" * 32


@dataclass(frozen=True)
class Route:
    method: str
    path: str  # {app}, {device}, {key} are filled in per test
    ok: int  # the status when the credential may do it
    allowed: frozenset[str]  # admin | secret | publishable
    body: dict | None = None
    owned: bool = True  # names an object of the app: another app's key gets 404


def route(method: str, path: str, ok: int, *allowed: str, body: dict | None = None, owned: bool = True) -> Route:
    return Route(method, path, ok, frozenset(allowed), body, owned)


ROUTES = [
    route("POST", "/v1/apps", 201, "admin", body={"name": "n"}, owned=False),
    route("GET", "/v1/apps/{app}", 200, "admin", "secret"),
    route("PATCH", "/v1/apps/{app}", 200, "admin", "secret", body={"name": "renamed"}),
    route("POST", "/v1/apps/{app}/keys", 201, "admin", "secret", body={"kind": "publishable"}),
    route("DELETE", "/v1/apps/{app}/keys/{key}", 204, "admin", "secret"),
    route("PUT", "/v1/apps/{app}/credentials/webpush", 200, "admin", "secret", body={"subject": "mailto:a@b.c"}),
    route("GET", "/v1/webpush/vapid-public-key", 200, "secret", "publishable", owned=False),
    route("PUT", "/v1/users/u", 200, "secret", body={"locale": "en"}, owned=False),  # user ids are per app
    route("GET", "/v1/users/u", 200, "secret"),
    route("GET", "/v1/users/u/export", 200, "secret"),
    route("GET", "/v1/users/u/devices", 200, "secret"),
    route("GET", "/v1/users/u/topics", 200, "secret"),
    route("PUT", "/v1/users/u/preferences", 200, "secret", "publishable", body={"opt_out_all": False}, owned=False),
    route("GET", "/v1/users/u/preferences", 200, "secret"),
    route("POST", "/v1/devices", 200, "secret", "publishable",
          body={"user_id": "u", "platform": "ios", "token": IOS_TOKEN}, owned=False),
    route("GET", "/v1/devices/{device}", 200, "secret"),
    route("PUT", "/v1/topics/t/subscribers", 200, "secret", body={"user_ids": ["u"]}, owned=False),
    route("PUT", "/v1/segments/s", 200, "secret", body={"filter": {"platform": "ios"}}, owned=False),
    route("GET", "/v1/segments/s", 200, "secret"),
    route("POST", "/v1/notifications", 202, "secret", owned=False,
          body={"type": "alert", "audience": {"user_ids": ["u"]}, "content": {"title": "t"}}),
    route("GET", "/v1/notifications", 200, "secret", owned=False),
    route("GET", "/v1/notifications/{notification}", 200, "secret"),
    route("GET", "/v1/notifications/{notification}/deliveries", 200, "secret"),
    route("POST", "/v1/notifications/{notification}/cancel", 200, "secret"),
    route("GET", "/v1/dead-letters", 200, "secret", owned=False),
    route("POST", "/v1/dead-letters/replay", 202, "secret", body={"notification_id": "{notification}"}),
    route("GET", "/v1/stats", 200, "secret", owned=False),
    route("DELETE", "/v1/devices/{device}", 204, "secret", "publishable"),
    route("DELETE", "/v1/segments/s", 204, "secret"),
    route("DELETE", "/v1/users/u", 204, "secret"),
    route("DELETE", "/v1/apps/{app}", 204, "admin"),
]
CREDENTIALS = ["none", "bad", "publishable", "secret", "other_secret", "admin"]


async def _world(client: httpx.AsyncClient, make_app) -> tuple[AppKeys, AppKeys, dict[str, str]]:  # type: ignore[no-untyped-def]
    one, two = await make_app("one"), await make_app("two")
    await client.put("/v1/users/u", json={}, headers=one.secret)
    device = await client.post("/v1/devices", json={"user_id": "u", "platform": "ios", "token": IOS_TOKEN},
                               headers=one.secret)
    await client.put("/v1/segments/s", json={"filter": {"platform": "ios"}}, headers=one.secret)
    extra = await client.post(f"/v1/apps/{one.id}/keys", json={"kind": "secret"}, headers=one.secret)
    sent = await client.post("/v1/notifications", headers=one.secret,
                             json={"type": "alert", "audience": {"user_ids": ["u"]}, "content": {"title": "t"}})
    names = {"app": one.id, "device": device.json()["id"], "key": extra.json()["id"],
             "notification": sent.json()["id"]}
    return one, two, names


def _headers(credential: str, one: AppKeys, two: AppKeys) -> dict[str, str]:
    return {
        "none": {},
        "bad": {"Authorization": "Bearer sk_not-a-real-key"},
        "publishable": one.publishable,
        "secret": one.secret,
        "other_secret": two.secret,
        "admin": ADMIN,
    }[credential]


def expected(r: Route, credential: str) -> int:
    if credential in ("none", "bad"):
        return 401
    kind = "secret" if credential == "other_secret" else credential
    if kind not in r.allowed:
        return 403
    if credential == "other_secret" and r.owned:
        return 404
    return r.ok


@pytest.mark.parametrize("credential", CREDENTIALS)
@pytest.mark.parametrize("r", ROUTES, ids=lambda r: f"{r.method} {r.path}")
async def test_route_credential(client: httpx.AsyncClient, make_app, r: Route, credential: str) -> None:  # type: ignore[no-untyped-def]
    one, two, names = await _world(client, make_app)
    body = {k: v.format(**names) if isinstance(v, str) else v for k, v in r.body.items()} if r.body else None
    response = await client.request(
        r.method, r.path.format(**names), json=body, headers=_headers(credential, one, two)
    )
    want = expected(r, credential)
    if want == 200 and r.method in ("PUT", "POST") and response.status_code == 201:
        want = 201  # an upsert that created
    assert response.status_code == want, response.text
    if want >= 400:
        assert response.headers["content-type"] == "application/problem+json"

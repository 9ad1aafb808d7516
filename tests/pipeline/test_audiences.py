"""Every audience kind, end to end through the fake APNs, FCM and Web Push."""

from __future__ import annotations

import pytest

from tests.pipeline.conftest import add_device, deliveries, wait_done


async def _population(api, auth, fakes) -> dict[str, str]:
    """ann: ios+android, pro, topic news; ben: web; cat: no device; dan: android, topic news."""
    devices = {
        "ann-ios": await add_device(api, auth, "ann", "ios"),
        "ann-android": await add_device(api, auth, "ann", "android"),
        "ben-web": await add_device(api, auth, "ben", "web", fakes),
        "dan-android": await add_device(api, auth, "dan", "android"),
    }
    assert (await api.put("/v1/users/ann", json={"attributes": {"plan": "pro"}}, headers=auth)).status_code in (200, 201)
    assert (await api.put("/v1/users/cat", json={"attributes": {"plan": "pro"}}, headers=auth)).status_code in (200, 201)
    put = await api.put("/v1/topics/news/subscribers", json={"user_ids": ["ann", "dan"]}, headers=auth)
    assert put.status_code in (200, 204), put.text
    seg = await api.put("/v1/segments/pros", json={"filter": {"attribute": "plan", "op": "eq", "value": "pro"}}, headers=auth)
    assert seg.status_code in (200, 201), seg.text
    return devices


CASES = {
    "user_ids": (lambda d: {"user_ids": ["ann", "cat"]}, {"ann", "cat"}, 3),
    "device_ids": (lambda d: {"device_ids": [d["ann-ios"], d["ben-web"]]}, {"ann", "ben"}, 2),
    "topic": (lambda d: {"topic": "news"}, {"ann", "dan"}, 3),
    "segment": (lambda d: {"segment": "pros"}, {"ann", "cat"}, 3),
    "filter": (lambda d: {"filter": {"platform": "web"}}, {"ben"}, 1),
    "all": (lambda d: {"all": True}, {"ann", "ben", "cat", "dan"}, 5),
}


@pytest.mark.parametrize("kind", list(CASES))
async def test_audience_kind(api, keys, fakes, kind) -> None:
    """Each audience kind targets exactly its users' active devices (plus one skip per deviceless user)."""
    auth = await keys()
    devices = await _population(api, auth, fakes)
    audience, users, targeted = CASES[kind]
    body = {"type": "alert", "audience": audience(devices), "content": {"title": "Hello {{ user.user_id }}"}}
    response = await api.post("/v1/notifications", json=body, headers=auth)
    assert response.status_code == 202, response.text
    view = await wait_done(api, auth, response.json()["id"])
    assert view["status"] == "completed", view
    assert view["counts"]["targeted"] == targeted
    assert sum(view["counts"][s] for s in view["counts"] if s != "targeted") == targeted
    rows = await deliveries(api, auth, view["id"])
    assert {r["user_id"] for r in rows} == users
    sent = [r for r in rows if r["status"] == "sent"]
    assert all(r["attempts"] == 1 and r["sent_at"] for r in sent)
    on_wire = len(fakes.apns.received) + len(fakes.webpush.received) + len(fakes.fcm.received)
    assert on_wire == len(sent)
    assert {r["reason"] for r in rows if r["status"] == "skipped"} <= {"no_active_device"}

"""Preference rules, quiet hours, schedules, ttl, frequency caps, cancel,
idempotency and invalid tokens, end to end through the fakes."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa

from clarion.store.tables import deliveries as deliveries_table
from tests.pipeline.conftest import add_device, deliveries, wait_done


async def _send(api, auth, **body):
    body = {"type": "alert", "content": {"title": "t"}, **body}
    response = await api.post("/v1/notifications", json=body, headers=auth)
    assert response.status_code == 202, response.text
    return response.json()["id"]


PREFERENCE_CASES = [
    ({}, "alert", None, "sent"),
    ({"opt_out_all": True}, "transactional", None, "skipped"),
    ({"types": {"promotional": False}}, "promotional", None, "skipped"),
    ({"types": {"promotional": False}}, "alert", None, "sent"),
    ({"categories": {"sports": False}}, "alert", "sports", "skipped"),
    ({"categories": {"sports": False}}, "alert", "news", "sent"),
    ({"types": {"alert": True}, "categories": {"news": True}}, "alert", "news", "sent"),
]


@pytest.mark.parametrize(("prefs", "kind", "category", "expected"), PREFERENCE_CASES)
async def test_preference_rule(api, keys, prefs, kind, category, expected) -> None:
    """A notification reaches a user only if not opted out of all, of its type, or of its category."""
    auth = await keys()
    await add_device(api, auth, "u1")
    assert (await api.put("/v1/users/u1/preferences", json=prefs, headers=auth)).status_code == 200
    extra = {"category": category} if category else {}
    view = await wait_done(api, auth, await _send(api, auth, type=kind, audience={"user_ids": ["u1"]}, **extra))
    rows = await deliveries(api, auth, view["id"])
    assert [r["status"] for r in rows] == [expected]
    if expected == "skipped":
        assert rows[0]["reason"] == "opted_out"


def _quiet_window_now(hours_ahead: int) -> dict[str, str]:
    now = datetime.now(UTC)
    start = (now - timedelta(minutes=30)).strftime("%H:%M")
    end = (now + timedelta(hours=hours_ahead)).strftime("%H:%M")
    return {"start": start, "end": end}


@pytest.mark.parametrize("kind", ["alert", "transactional"])
async def test_quiet_hours_do_not_hold_alerts(api, keys, kind) -> None:
    """Alert and transactional notifications go out during quiet hours."""
    auth = await keys()
    await add_device(api, auth, "u1")
    prefs = {"quiet_hours": _quiet_window_now(2)}
    assert (await api.put("/v1/users/u1/preferences", json=prefs, headers=auth)).status_code == 200
    view = await wait_done(api, auth, await _send(api, auth, type=kind, audience={"user_ids": ["u1"]}))
    assert view["counts"]["sent"] == 1


async def test_quiet_hours_hold_promotional(api, keys, runtime) -> None:
    """A promotional notification waits (queued, not sent) until the user's quiet hours end."""
    auth = await keys()
    await add_device(api, auth, "u1")
    assert (await api.put("/v1/users/u1", json={"timezone": "UTC"}, headers=auth)).status_code in (200, 201)
    window = _quiet_window_now(2)
    assert (await api.put("/v1/users/u1/preferences", json={"quiet_hours": window}, headers=auth)).status_code == 200
    notification_id = await _send(api, auth, type="promotional", audience={"user_ids": ["u1"]})
    await asyncio.sleep(1.0)
    view = (await api.get(f"/v1/notifications/{notification_id}", headers=auth)).json()
    assert view["counts"]["queued"] == 1 and view["status"] == "dispatching"
    async with runtime.engine.connect() as conn:
        held = (await conn.execute(sa.select(deliveries_table.c.not_before))).scalar_one()
    assert held.strftime("%H:%M") == window["end"]


async def test_quiet_hours_past_ttl_skip(api, keys) -> None:
    """A promotional held beyond its ttl is skipped with quiet_hours_expired."""
    auth = await keys()
    await add_device(api, auth, "u1")
    assert (await api.put("/v1/users/u1/preferences", json={"quiet_hours": _quiet_window_now(2)}, headers=auth)).status_code == 200
    view = await wait_done(api, auth, await _send(api, auth, type="promotional", ttl=600, audience={"user_ids": ["u1"]}))
    rows = await deliveries(api, auth, view["id"])
    assert [(r["status"], r["reason"]) for r in rows] == [("skipped", "quiet_hours_expired")]


async def test_ttl_zero_expires(api, keys) -> None:
    """A notification already past its ttl is skipped with reason expired."""
    auth = await keys()
    await add_device(api, auth, "u1")
    view = await wait_done(api, auth, await _send(api, auth, ttl=0, audience={"user_ids": ["u1"]}))
    rows = await deliveries(api, auth, view["id"])
    assert [(r["status"], r["reason"]) for r in rows] == [("skipped", "expired")]


async def test_send_at_schedules(api, keys) -> None:
    """A future send_at is `scheduled`, then sent once the time comes."""
    auth = await keys()
    await add_device(api, auth, "u1")
    at = (datetime.now(UTC) + timedelta(seconds=1.5)).isoformat()
    response = await api.post(
        "/v1/notifications", json={"type": "alert", "content": {"title": "t"}, "audience": {"all": True}, "send_at": at},
        headers=auth,
    )
    assert response.json()["status"] == "scheduled"
    assert (await api.get(f"/v1/notifications/{response.json()['id']}", headers=auth)).json()["counts"]["targeted"] == 0
    view = await wait_done(api, auth, response.json()["id"])
    assert view["counts"]["sent"] == 1
    sent_at = datetime.fromisoformat((await deliveries(api, auth, view["id"]))[0]["sent_at"])
    assert sent_at >= datetime.fromisoformat(at)


async def test_local_time_per_user_timezone(api, keys, runtime) -> None:
    """local_time holds each delivery until that wall clock in the user's (else the device's) zone."""
    auth = await keys()
    await add_device(api, auth, "tokyo")
    await add_device(api, auth, "nyc", timezone="America/New_York")  # device zone only
    assert (await api.put("/v1/users/tokyo", json={"timezone": "Asia/Tokyo"}, headers=auth)).status_code in (200, 201)
    notification_id = await _send(api, auth, local_time="09:00", audience={"all": True})
    await asyncio.sleep(1.0)
    async with runtime.engine.connect() as conn:
        rows = (await conn.execute(sa.select(deliveries_table.c.user_id, deliveries_table.c.not_before))).all()
    held = {user: at for user, at in rows}
    from zoneinfo import ZoneInfo

    for user, zone in (("tokyo", "Asia/Tokyo"), ("nyc", "America/New_York")):
        local = held[user].astimezone(ZoneInfo(zone))
        assert local.strftime("%H:%M") == "09:00"
        assert timedelta(0) < held[user] - datetime.now(UTC) <= timedelta(days=1)
    assert (await api.get(f"/v1/notifications/{notification_id}", headers=auth)).json()["counts"]["queued"] == 2


async def test_frequency_cap(api, keys) -> None:
    """Past `max` per window, further notifications of that type are skipped as frequency_capped."""
    auth = await keys(frequency_caps={"promotional": {"max": 1, "per_seconds": 3600}})
    await add_device(api, auth, "u1")
    first = await wait_done(api, auth, await _send(api, auth, type="promotional", audience={"user_ids": ["u1"]}))
    second = await wait_done(api, auth, await _send(api, auth, type="promotional", audience={"user_ids": ["u1"]}))
    other = await wait_done(api, auth, await _send(api, auth, type="alert", audience={"user_ids": ["u1"]}))
    assert first["counts"]["sent"] == 1
    assert [(r["status"], r["reason"]) for r in await deliveries(api, auth, second["id"])] == [("skipped", "frequency_capped")]
    assert other["counts"]["sent"] == 1


async def test_cancel_scheduled(api, keys) -> None:
    """Canceling before send_at leaves nothing to send."""
    auth = await keys()
    await add_device(api, auth, "u1")
    at = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    response = await api.post(
        "/v1/notifications", json={"type": "alert", "content": {"title": "t"}, "audience": {"all": True}, "send_at": at},
        headers=auth,
    )
    canceled = await api.post(f"/v1/notifications/{response.json()['id']}/cancel", headers=auth)
    assert canceled.status_code == 200 and canceled.json()["status"] == "canceled"


async def test_cancel_held_deliveries(api, keys, fakes) -> None:
    """Canceling turns queued deliveries `canceled`; nothing more is sent."""
    auth = await keys()
    await add_device(api, auth, "u1")
    await add_device(api, auth, "u2")
    notification_id = await _send(api, auth, local_time="03:33", audience={"all": True})
    await asyncio.sleep(0.8)
    view = (await api.post(f"/v1/notifications/{notification_id}/cancel", headers=auth)).json()
    assert view["status"] == "canceled"
    assert view["counts"]["canceled"] == 2 and view["counts"]["targeted"] == 2
    assert [r["reason"] for r in await deliveries(api, auth, notification_id)] == ["canceled", "canceled"]
    assert fakes.fcm.received == []


async def test_idempotency_key(api, keys) -> None:
    """The same key and body returns the first answer; another body is a 409."""
    auth = await keys()
    body = {"type": "alert", "content": {"title": "t"}, "audience": {"all": True}}
    headers = {**auth, "Idempotency-Key": "k-1"}
    first = await api.post("/v1/notifications", json=body, headers=headers)
    again = await api.post("/v1/notifications", json=body, headers=headers)
    other = await api.post("/v1/notifications", json={**body, "type": "promotional"}, headers=headers)
    assert first.status_code == again.status_code == 202
    assert first.json() == again.json()
    assert other.status_code == 409
    listed = (await api.get("/v1/notifications", headers=auth)).json()["items"]
    assert len(listed) == 1


async def test_invalid_token_deactivates_device(api, keys, fakes) -> None:
    """APNs 410 Unregistered fails the delivery and deactivates the device at once."""
    auth = await keys()
    token = "ab" * 32
    device_id = await add_device(api, auth, "u1", "ios", token=token)
    fakes.apns.fail(410, "Unregistered", token=token)
    view = await wait_done(api, auth, await _send(api, auth, audience={"user_ids": ["u1"]}))
    rows = await deliveries(api, auth, view["id"])
    assert [(r["status"], r["reason"]) for r in rows] == [("failed", "Unregistered")]
    device = (await api.get(f"/v1/devices/{device_id}", headers=auth)).json()
    assert device["active"] is False
    again = await wait_done(api, auth, await _send(api, auth, audience={"user_ids": ["u1"]}))
    assert [(r["status"], r["reason"]) for r in await deliveries(api, auth, again["id"])] == [("skipped", "no_active_device")]


async def test_bad_requests(api, keys) -> None:
    """Schema, filter and template errors are 422; an oversized payload is 413; another app's id is 404."""
    auth = await keys()
    base = {"type": "alert", "content": {"title": "t"}, "audience": {"all": True}}
    cases = [
        ({**base, "audience": {"all": True, "topic": "x"}}, 422),
        ({**base, "audience": {"filter": {"attribute": "a", "op": "nope", "value": 1}}}, 422),
        ({**base, "content": {"title": "{{ user.user_id "}}, 422),
        ({**base, "content": {"body": "x" * 4096, "title": "y" * 400}}, 413),
        ({**base, "type": "spam"}, 422),
    ]
    for body, status in cases:
        response = await api.post("/v1/notifications", json=body, headers=auth)
        assert response.status_code == status, (body, response.text)
        assert response.headers["content-type"].startswith("application/problem+json")
    other = await keys()
    mine = (await api.post("/v1/notifications", json=base, headers=auth)).json()["id"]
    assert (await api.get(f"/v1/notifications/{mine}", headers=other)).status_code == 404
    assert (await api.get("/v1/notifications", headers=other)).json()["items"] == []

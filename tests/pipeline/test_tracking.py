"""Receipts, stats and metrics after a mixed campaign through the fake providers:
they agree with the deliveries table."""

from __future__ import annotations

import asyncio
import secrets

import httpx
import sqlalchemy as sa
from prometheus_client import REGISTRY

from clarion.runtime import Runtime
from clarion.store.tables import deliveries, notifications
from tests.pipeline.conftest import add_device, wait_done
from tests.pipeline.conftest import deliveries as list_deliveries


async def _mixed_campaign(api: httpx.AsyncClient, keys, fakes) -> tuple[dict[str, str], str]:  # type: ignore[no-untyped-def]
    """12 users: iOS sent / rejected / never accepted, Android and Web sent, one user with no device."""
    auth = await keys()
    for n in range(4):
        await add_device(api, auth, f"ok{n}", "ios")
        await add_device(api, auth, f"droid{n}", "android")
        await add_device(api, auth, f"web{n}", "web", fakes=fakes)
    bad, flaky = secrets.token_hex(32), secrets.token_hex(32)
    fakes.apns.fail(400, "BadDeviceToken", token=bad)
    fakes.apns.fail(503, "ServiceUnavailable", token=flaky)
    await add_device(api, auth, "bad", "ios", token=bad)
    await add_device(api, auth, "flaky", "ios", token=flaky)
    users = [f"{p}{n}" for p in ("ok", "droid", "web") for n in range(4)] + ["bad", "flaky", "nobody"]
    body = {"type": "promotional", "category": "sale", "audience": {"user_ids": users},
            "content": {"title": "Sale", "body": "Now"}}
    response = await api.post("/v1/notifications", json=body, headers=auth)
    assert response.status_code == 202, response.text
    view = await wait_done(api, auth, response.json()["id"], timeout=60)
    assert view["status"] == "completed", view
    return auth, view["id"]


async def test_receipts_update_deliveries_and_counts(api, keys, fakes) -> None:  # type: ignore[no-untyped-def]
    auth, notification_id = await _mixed_campaign(api, keys, fakes)
    sent = await list_deliveries(api, auth, notification_id, "sent")
    first, second = sent[0]["id"], sent[1]["id"]
    for event in ({"delivery_id": first, "event": "delivered"}, {"delivery_id": second, "event": "opened"},
                  {"delivery_id": second, "event": "opened"}, {"delivery_id": second, "event": "delivered"}):
        assert (await api.post("/v1/events", json=event, headers=auth)).status_code == 202
    counts = (await api.get(f"/v1/notifications/{notification_id}", headers=auth)).json()["counts"]
    assert counts["delivered"] == 1 and counts["opened"] == 1
    assert sum(v for k, v in counts.items() if k != "targeted") == counts["targeted"] == 15
    skipped = (await list_deliveries(api, auth, notification_id, "skipped"))[0]["id"]
    assert (await api.post("/v1/events", json={"delivery_id": skipped, "event": "opened"},
                           headers=auth)).status_code == 409
    missing = await api.post("/v1/events", json={"delivery_id": "nope", "event": "opened"}, headers=auth)
    assert missing.status_code == 404


async def test_receipt_for_another_apps_delivery_is_404(api, keys, fakes) -> None:  # type: ignore[no-untyped-def]
    auth, notification_id = await _mixed_campaign(api, keys, fakes)
    delivery = (await list_deliveries(api, auth, notification_id, "sent"))[0]["id"]
    other = await keys()
    answer = await api.post("/v1/events", json={"delivery_id": delivery, "event": "opened"}, headers=other)
    assert answer.status_code == 404


async def test_stats_and_metrics_agree_with_the_table(api, keys, fakes, runtime: Runtime) -> None:  # type: ignore[no-untyped-def]
    auth, notification_id = await _mixed_campaign(api, keys, fakes)
    sent = await list_deliveries(api, auth, notification_id, "sent")
    await api.post("/v1/events", json={"delivery_id": sent[0]["id"], "event": "opened"}, headers=auth)
    await api.post("/v1/events", json={"delivery_id": sent[1]["id"], "event": "delivered"}, headers=auth)

    rows = {r["key"]: r for r in (await api.get("/v1/stats?group_by=platform", headers=auth)).json()["rows"]}
    async with runtime.engine.connect() as conn:
        table = (await conn.execute(
            sa.select(deliveries.c.platform, deliveries.c.status, deliveries.c.sent_at, deliveries.c.delivered_at,
                      deliveries.c.opened_at)
            .join(notifications, notifications.c.pk == deliveries.c.notification_pk)
            .where(notifications.c.id == notification_id)
        )).all()
        app_id = (await conn.execute(sa.text("SELECT a.id FROM apps a JOIN notifications n ON n.app_pk = a.pk "
                                             "WHERE n.id = :id"), {"id": notification_id})).scalar_one()
    for platform in ("ios", "android", "web"):
        mine = [r for r in table if r.platform == platform]
        row = rows[platform]
        assert row["targeted"] == len(mine)
        assert row["sent"] == sum(r.sent_at is not None for r in mine)
        assert row["delivered"] == sum(r.delivered_at is not None for r in mine)
        assert row["opened"] == sum(r.opened_at is not None for r in mine)
        assert row["failed"] == sum(r.status == "failed" for r in mine)
        assert row["dead"] == sum(r.status == "dead" for r in mine)
        assert row["latency_ms"]["p50"] is not None and row["latency_ms"]["p50"] <= row["latency_ms"]["p99"]
        for status, column_count in (("sent", row["sent"]), ("failed", row["failed"]), ("dead", row["dead"])):
            metric = sum(
                REGISTRY.get_sample_value("clarion_deliveries_total", {"app": app_id, "platform": platform,
                                                                       "status": status, "reason": reason}) or 0
                for reason in _reasons(app_id, platform, status)
            )
            assert metric == column_count, (platform, status)
    assert rows["ios"]["failed"] == 1 and rows["ios"]["dead"] == 1 and rows["ios"]["sent"] == 4
    text = (await api.get("/metrics")).text
    assert "clarion_accept_to_sent_seconds_bucket" in text and "clarion_provider_request_seconds_bucket" in text


def _reasons(app_id: str, platform: str, status: str) -> set[str]:
    return {
        sample.labels["reason"]
        for metric in REGISTRY.collect() if metric.name == "clarion_deliveries"
        for sample in metric.samples
        if sample.labels.get("app") == app_id and sample.labels.get("platform") == platform
        and sample.labels.get("status") == status
    }


async def test_queue_depth_gauge_counts_waiting_jobs(api, keys, fakes, runtime: Runtime) -> None:  # type: ignore[no-untyped-def]
    """While a provider keeps refusing, jobs wait in the queue and /metrics shows them."""
    auth = await keys()
    for n in range(3):
        await add_device(api, auth, f"q{n}", "ios")
    fakes.apns.fail(503, "ServiceUnavailable", retry_after="30")
    body = {"type": "alert", "audience": {"all": True}, "content": {"title": "wait"}}
    assert (await api.post("/v1/notifications", json=body, headers=auth)).status_code == 202
    for _ in range(100):
        text = (await api.get("/metrics")).text
        waiting = [line for line in text.splitlines() if line.startswith('clarion_queue_depth{queue="ios"}')]
        if waiting and float(waiting[0].split()[-1]) >= 1:
            break
        await asyncio.sleep(0.1)
    assert waiting and float(waiting[0].split()[-1]) >= 1, text[-1500:]


async def test_in_flight_gauge_rises_while_a_provider_answers_slowly(api, keys, fakes) -> None:  # type: ignore[no-untyped-def]
    """Requests awaiting the provider show in clarion_provider_in_flight_requests, and drain to 0."""
    auth = await keys()
    hold = asyncio.Event()
    fakes.webpush.hold = hold  # the fake waits for this before answering
    for n in range(2):
        await add_device(api, auth, f"slow{n}", "web", fakes=fakes)
    body = {"type": "alert", "audience": {"all": True}, "content": {"title": "slow"}}
    notification = (await api.post("/v1/notifications", json=body, headers=auth)).json()["id"]
    seen = 0.0
    for _ in range(100):
        seen = REGISTRY.get_sample_value("clarion_provider_in_flight_requests", {"platform": "web"}) or 0.0
        if seen >= 2:
            break
        await asyncio.sleep(0.05)
    hold.set()
    await wait_done(api, auth, notification)
    assert seen >= 2
    assert REGISTRY.get_sample_value("clarion_provider_in_flight_requests", {"platform": "web"}) == 0

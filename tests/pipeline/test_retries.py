"""Transient provider failures: backoff, Retry-After, dead letters, replay."""

from __future__ import annotations

from collections import defaultdict

import pytest

from clarion.domain.retry import RetryPolicy
from clarion.providers.base import Retry, Sent
from tests.pipeline.conftest import add_device, deliveries, wait_done
from tests.pipeline.scripted import ScriptedFactory

BODY = {"type": "alert", "content": {"title": "t"}, "audience": {"all": True}}


@pytest.fixture
def policy() -> RetryPolicy:
    return RetryPolicy(max_attempts=4, base_seconds=0.1, max_seconds=0.4)


async def test_provider_503_then_recovers(api, keys, fakes) -> None:
    """FCM answers 503 for a while: everything ends `sent`, after more than one attempt."""
    auth = await keys()
    for n in range(8):
        await add_device(api, auth, f"u{n}")
    fakes.fcm.fail(503, "UNAVAILABLE", times=12)
    response = await api.post("/v1/notifications", json=BODY, headers=auth)
    view = await wait_done(api, auth, response.json()["id"])
    assert view["counts"]["sent"] == 8, view
    rows = await deliveries(api, auth, view["id"])
    assert sum(r["attempts"] for r in rows) == 8 + 12
    assert max(r["attempts"] for r in rows) >= 2


async def test_never_recovers_then_replayed(api, keys, fakes) -> None:
    """503 until attempts run out: all `dead` and listed; replay after recovery sends them."""
    auth = await keys()
    for n in range(5):
        await add_device(api, auth, f"u{n}")
    fakes.fcm.fail(503, "UNAVAILABLE", times=5 * 4)  # exactly every attempt of every delivery
    response = await api.post("/v1/notifications", json=BODY, headers=auth)
    view = await wait_done(api, auth, response.json()["id"])
    assert view["counts"]["dead"] == 5, view
    rows = await deliveries(api, auth, view["id"])
    assert {(r["attempts"], r["reason"]) for r in rows} == {(4, "UNAVAILABLE")}
    assert all(r["error"] for r in rows)
    dead = (await api.get("/v1/dead-letters", headers=auth)).json()["items"]
    assert {d["id"] for d in dead} == {r["id"] for r in rows}
    replay = await api.post("/v1/dead-letters/replay", json={"notification_id": view["id"]}, headers=auth)
    assert replay.status_code == 202 and replay.json()["replayed"] == 5
    view = await wait_done(api, auth, view["id"])
    assert view["counts"]["sent"] == 5 and view["status"] == "completed", view
    assert (await api.get("/v1/dead-letters", headers=auth)).json()["items"] == []


class TestBackoff:
    @pytest.fixture
    def factory(self) -> ScriptedFactory:
        return ScriptedFactory()

    async def test_backoff_visible_in_attempt_times(self, api, keys, factory) -> None:
        """Attempts of one delivery are spaced by full-jitter backoff, never less than Retry-After."""
        auth = await keys()
        for n in range(6):
            await add_device(api, auth, f"u{n}")
        seen: dict[str, int] = defaultdict(int)

        def answer(push):
            seen[push.delivery_id] += 1
            if seen[push.delivery_id] == 1:
                return Retry("UNAVAILABLE", "503")
            if seen[push.delivery_id] == 2:
                return Retry("QUOTA_EXCEEDED", "429", after=0.5)
            return Sent()

        factory.providers["android"].answer = answer
        view = await wait_done(api, auth, (await api.post("/v1/notifications", json=BODY, headers=auth)).json()["id"])
        assert view["counts"]["sent"] == 6
        times: dict[str, list[float]] = defaultdict(list)
        for at, delivery_id in factory.providers["android"].calls:
            times[delivery_id].append(at)
        for attempts in times.values():
            assert len(attempts) == 3
            first_gap, second_gap = attempts[1] - attempts[0], attempts[2] - attempts[1]
            assert first_gap <= 0.1 + 1.2  # ceiling base·2⁰ plus the job's rounding to the second and polling
            assert second_gap >= 0.5  # Retry-After honoured although above max_seconds

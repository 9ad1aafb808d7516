"""Property: whatever mix of provider answers a campaign meets, its counts
add up to `targeted` and agree with the deliveries table (API.md,
Notifications; DESIGN.md, Invariants).

Each example is a fresh app with a random audience: users with zero to
three devices on random platforms, each device's provider answering one
scripted way (sent; retry then sent; retry until dead; failed with an
invalid token; failed otherwise), unknown user ids, and either `all` or a
random subset of user ids."""

from __future__ import annotations

import secrets
from collections import Counter, defaultdict
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from clarion.domain.retry import RetryPolicy
from clarion.providers.base import Failed, Outcome, Push, Retry, Sent
from tests.pipeline.conftest import Fakes, add_device, deliveries, wait_done
from tests.pipeline.scripted import ScriptedFactory

MAX_ATTEMPTS = 3
# What each kind of device ends as; retry-then-sent stays below the attempt limit.
FINAL = {"sent": "sent", "retry_sent": "sent", "always_retry": "dead", "invalid": "failed", "rejected": "failed"}
PLATFORMS = ("ios", "android", "web")

device_st = st.tuples(st.sampled_from(PLATFORMS), st.sampled_from(sorted(FINAL)))
user_st = st.tuples(st.lists(device_st, max_size=3), st.booleans())  # (devices, in the audience)
campaign_st = st.tuples(
    st.lists(user_st, min_size=1, max_size=12),
    st.integers(0, 2),  # unknown user ids named in the audience
    st.booleans(),  # audience `all` (else the chosen user ids)
)


@pytest.fixture
def policy() -> RetryPolicy:
    return RetryPolicy(max_attempts=MAX_ATTEMPTS, base_seconds=0.01, max_seconds=0.05)


@pytest.fixture
def factory() -> ScriptedFactory:
    return ScriptedFactory()


class Script:
    """The scripted answer of every device, by token (or Web Push endpoint)."""

    def __init__(self) -> None:
        self.kinds: dict[str, str] = {}
        self.seen: Counter[str] = Counter()
        self.retries_before_sent: dict[str, int] = {}

    def __call__(self, push: Push) -> Outcome:
        self.seen[push.delivery_id] += 1
        kind, attempt = self.kinds[push.token], self.seen[push.delivery_id]
        if kind == "sent" or (kind == "retry_sent" and attempt > self.retries_before_sent[push.token]):
            return Sent()
        if kind in ("retry_sent", "always_retry"):
            return Retry("UNAVAILABLE", "503", after=0.01 if attempt == 1 else None)
        if kind == "invalid":
            return Failed("BadDeviceToken", "400", invalid_token=True)
        return Failed("PayloadTooLarge", "413")


async def _register(
    api: httpx.AsyncClient, auth: dict[str, str], fakes: Fakes, script: Script, user_id: str, platform: str, kind: str
) -> None:
    if platform == "web":
        endpoint, keys = fakes.webpush.subscribe()
        token, extra = (
            endpoint,
            {"subscription": {"endpoint": endpoint, "keys": {"p256dh": keys.p256dh, "auth": keys.auth}}},
        )
    else:
        token = secrets.token_hex(32) if platform == "ios" else "fcm-" + secrets.token_urlsafe(30)
        extra = {"token": token}
    script.kinds[token] = kind
    script.retries_before_sent[token] = 1 + len(script.kinds) % (MAX_ATTEMPTS - 1)
    await add_device(api, auth, user_id, platform, fakes, **extra)


async def _make_users(
    api: httpx.AsyncClient,
    auth: dict[str, str],
    fakes: Fakes,
    script: Script,
    users: list[tuple[list[tuple[str, str]], bool]],
) -> None:
    for n, (devices, _chosen) in enumerate(users):
        if not devices:
            assert (await api.put(f"/v1/users/u{n}", json={}, headers=auth)).status_code in (200, 201)
        for platform, kind in devices:
            await _register(api, auth, fakes, script, f"u{n}", platform, kind)


def _expected(
    users: list[tuple[list[tuple[str, str]], bool]], unknown: int, everyone: bool
) -> tuple[Counter[str], dict[str, Any]]:
    expected: Counter[str] = Counter()
    targets = [n for n, (_d, chosen) in enumerate(users) if everyone or chosen]
    for n in targets:
        devices = users[n][0]
        expected.update(FINAL[kind] for _p, kind in devices) if devices else expected.update(["skipped"])
    audience: dict[str, Any] = {"all": True}
    if not everyone:
        audience = {"user_ids": [f"u{n}" for n in targets] + [f"ghost{k}" for k in range(unknown)]}
        expected["skipped"] += unknown
    return +expected, audience  # unary + drops zero counts, which the API never lists


@settings(
    max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow]
)
@given(campaign=campaign_st)
async def test_counts_add_up_for_any_outcome_mix(api, keys, fakes, factory, campaign) -> None:  # type: ignore[no-untyped-def]
    users, unknown, everyone = campaign
    expected, audience = _expected(users, unknown, everyone)
    if not everyone and not audience["user_ids"]:
        audience["user_ids"] = ["ghost-only"]
        expected["skipped"] += 1
    auth = await keys()
    script = Script()
    for provider in factory.providers.values():
        provider.answer = script
    await _make_users(api, auth, fakes, script, users)
    body = {"type": "alert", "content": {"title": "t"}, "audience": audience}
    response = await api.post("/v1/notifications", json=body, headers=auth)
    assert response.status_code == 202, response.text
    view = await wait_done(api, auth, response.json()["id"], timeout=30)
    assert view["status"] == "completed", view
    counts = view["counts"]
    rows = await deliveries(api, auth, view["id"])
    table = Counter(r["status"] for r in rows)
    assert counts["targeted"] == len(rows) == sum(v for k, v in counts.items() if k != "targeted")
    assert {k: v for k, v in counts.items() if k != "targeted" and v} == dict(table) == dict(+expected)
    _check_attempts(rows, script)


def _check_attempts(rows: list[dict[str, Any]], script: Script) -> None:
    """Each delivery's recorded attempts equal the provider requests it got."""
    by_status: dict[str, list[int]] = defaultdict(list)
    for row in rows:
        assert row["attempts"] == script.seen[row["id"]], row
        by_status[row["status"]].append(row["attempts"])
    assert all(a == MAX_ATTEMPTS for a in by_status["dead"])
    assert all(a == 0 for a in by_status["skipped"])

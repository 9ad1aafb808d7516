"""Retry policy and what one provider answer does to a delivery (API.md,
Configuration: CLARION_MAX_ATTEMPTS / CLARION_RETRY_*): full jitter in
[0, min(max, base·2ⁿ⁻¹)], never less than Retry-After (which may exceed
max), `dead` once the attempts are spent, `failed`/`expired` when the next
try would fall after the ttl."""

from __future__ import annotations

import random
import statistics
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from clarion.domain.attempts import resolve
from clarion.domain.retry import RetryPolicy
from clarion.providers.base import Failed, Retry, Sent

POLICY = RetryPolicy(max_attempts=10, base_seconds=2.0, max_seconds=3600.0)
NOW = datetime(2026, 1, 1, 12, tzinfo=UTC)
LATER = NOW + timedelta(days=1)


def test_ceiling_doubles_from_base_then_stops_at_max() -> None:
    assert [POLICY.ceiling(n) for n in range(1, 6)] == [2, 4, 8, 16, 32]
    assert POLICY.ceiling(11) == 2 * 2**10 == 2048
    assert POLICY.ceiling(12) == 3600 == POLICY.ceiling(40)  # 4096 would pass max


def test_ceiling_of_a_huge_attempt_number_is_max_not_an_overflow() -> None:
    assert RetryPolicy(5000).ceiling(1100) == 3600


def test_delay_spans_the_whole_jitter_range() -> None:
    assert POLICY.delay(3, rand=lambda: 0.0) == 0.0
    assert POLICY.delay(3, rand=lambda: 0.999999) == pytest.approx(8, rel=1e-5)
    assert POLICY.delay(3, rand=lambda: 0.5) == 4


@given(
    attempt=st.integers(1, 60),
    fraction=st.floats(0, 1, exclude_max=True),
    retry_after=st.none() | st.floats(0, 100_000),
    base=st.floats(0.01, 100),
    top=st.floats(0.1, 10_000),
)
def test_delay_within_full_jitter_bounds_and_never_below_retry_after(
    attempt: int, fraction: float, retry_after: float | None, base: float, top: float
) -> None:
    policy = RetryPolicy(10, base, top)
    ceiling = min(top, base * 2 ** (attempt - 1))
    delay = policy.delay(attempt, retry_after, rand=lambda: fraction)
    floor = retry_after or 0.0
    assert floor <= delay <= max(ceiling, floor)
    if retry_after is None or retry_after <= fraction * ceiling:
        assert delay == pytest.approx(fraction * ceiling)


def test_retry_after_beyond_max_is_honoured() -> None:
    policy = RetryPolicy(5, base_seconds=1, max_seconds=10)
    assert policy.delay(1, retry_after=120, rand=lambda: 0.99) == 120


def test_full_jitter_not_equal_jitter() -> None:
    """Delays spread over the whole [0, ceiling]: mean near half, some near 0."""
    rand = random.Random(4).random
    samples = [POLICY.delay(4, rand=rand) for _ in range(4000)]
    assert min(samples) < 0.1 and max(samples) > 15.8 and max(samples) <= 16
    assert statistics.mean(samples) == pytest.approx(8, rel=0.05)


def test_attempts_exhausted_at_max() -> None:
    policy = RetryPolicy(max_attempts=3)
    assert [policy.exhausted(n) for n in range(5)] == [False, False, False, True, True]


def test_sent_records_time_and_attempt() -> None:
    update = resolve(Sent(), 2, POLICY, NOW, LATER)
    assert (update.status, update.attempts, update.sent_at, update.reason) == ("sent", 3, NOW, None)


def test_invalid_token_fails_and_deactivates() -> None:
    update = resolve(Failed("BadDeviceToken", "400", invalid_token=True), 0, POLICY, NOW, LATER)
    assert (update.status, update.reason, update.deactivate_device) == ("failed", "BadDeviceToken", "BadDeviceToken")


def test_other_rejection_fails_without_deactivating() -> None:
    update = resolve(Failed("PayloadTooLarge", "413"), 0, POLICY, NOW, LATER)
    assert (update.status, update.deactivate_device, update.error) == ("failed", None, "413")


def test_rejected_credentials_are_flagged() -> None:
    update = resolve(Failed("InvalidProviderToken", credentials_invalid=True), 0, POLICY, NOW, LATER)
    assert update.credentials_problem == "InvalidProviderToken" and update.status == "failed"


def test_retry_queues_again_after_the_jittered_delay() -> None:
    update = resolve(Retry("UNAVAILABLE", "503"), 1, POLICY, NOW, LATER, rand=lambda: 0.5)
    # attempt 2 failed: ceiling base·2¹ = 4 s, half of it
    assert (update.status, update.attempts, update.not_before) == ("queued", 2, NOW + timedelta(seconds=2))
    assert update.error == "503" and update.reason is None


def test_retry_honours_retry_after() -> None:
    update = resolve(Retry("QUOTA_EXCEEDED", "429", after=30), 0, POLICY, NOW, LATER, rand=lambda: 0.1)
    assert update.not_before == NOW + timedelta(seconds=30)


def test_last_attempt_goes_dead_with_the_providers_reason() -> None:
    update = resolve(Retry("UNAVAILABLE", "503"), 9, POLICY, NOW, LATER)
    assert (update.status, update.attempts, update.reason, update.error) == ("dead", 10, "UNAVAILABLE", "503")


def test_retry_after_the_ttl_fails_expired() -> None:
    expires = NOW + timedelta(seconds=60)
    update = resolve(Retry("QUOTA_EXCEEDED", "429", after=61), 0, POLICY, NOW, expires)
    assert (update.status, update.reason, update.attempts) == ("failed", "expired", 1)
    kept = resolve(Retry("QUOTA_EXCEEDED", "429", after=59), 0, POLICY, NOW, expires)
    assert kept.status == "queued"

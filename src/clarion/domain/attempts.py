"""What one provider answer does to a delivery (pure; the worker writes it)."""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from clarion.constants import DEAD, EXPIRED, FAILED, QUEUED, SENT
from clarion.domain.retry import RetryPolicy
from clarion.providers.base import Failed, Outcome, Retry, Sent


@dataclass(frozen=True, slots=True)
class StatusUpdate:
    status: str
    attempts: int
    reason: str | None = None
    error: str | None = None
    not_before: datetime | None = None
    sent_at: datetime | None = None
    deactivate_device: str | None = None  # the reason, when the token is invalid
    credentials_problem: str | None = None


def resolve(
    outcome: Outcome,
    attempts_before: int,
    policy: RetryPolicy,
    now: datetime,
    expires: datetime,
    rand: Callable[[], float] = random.random,
) -> StatusUpdate:
    """The delivery's next state after one more attempt answered `outcome`."""
    attempts = attempts_before + 1
    if isinstance(outcome, Sent):
        return StatusUpdate(SENT, attempts, sent_at=now)
    if isinstance(outcome, Failed):
        return StatusUpdate(
            FAILED,
            attempts,
            reason=outcome.reason,
            error=outcome.error or outcome.reason,
            deactivate_device=outcome.reason if outcome.invalid_token else None,
            credentials_problem=outcome.reason if outcome.credentials_invalid else None,
        )
    return _retry(outcome, attempts, policy, now, expires, rand)


def _retry(
    outcome: Retry,
    attempts: int,
    policy: RetryPolicy,
    now: datetime,
    expires: datetime,
    rand: Callable[[], float],
) -> StatusUpdate:
    error = outcome.error or outcome.reason
    if policy.exhausted(attempts):
        return StatusUpdate(DEAD, attempts, reason=outcome.reason, error=error)
    due = now + timedelta(seconds=policy.delay(attempts, outcome.after, rand))
    if due >= expires:
        return StatusUpdate(FAILED, attempts, reason=EXPIRED, error=error)
    return StatusUpdate(QUEUED, attempts, error=error, not_before=due)

"""What a provider's answer means, shared by the three clients' error tables.

Each provider keeps its own table from reason to `Verdict` (STYLE.md: reasons
as data); `outcome_for` turns a verdict into the `Outcome` the pipeline sees.
"""

from __future__ import annotations

import email.utils
import enum
import time

from clarion.providers.base import Failed, Outcome, Retry


class Verdict(enum.Enum):
    INVALID_TOKEN = "invalid_token"  # permanent; deactivate the device
    RETRY = "retry"  # transient
    FAILED = "failed"  # permanent, the push itself is at fault
    CREDENTIALS = "credentials"  # permanent; flag the app's credentials
    RENEW_AUTH = "renew_auth"  # our bearer expired: renew it and resend at once


def outcome_for(verdict: Verdict, reason: str, error: str = "", after: float | None = None) -> Outcome:
    """The `Outcome` for a verdict; RENEW_AUTH that cannot be resent again is a Retry."""
    if verdict is Verdict.RETRY or verdict is Verdict.RENEW_AUTH:
        return Retry(reason, error, after)
    return Failed(
        reason,
        error,
        invalid_token=verdict is Verdict.INVALID_TOKEN,
        credentials_invalid=verdict is Verdict.CREDENTIALS,
    )


def status_verdict(status: int) -> Verdict:
    """The fallback when a provider gives a reason its table does not know."""
    if status == 429 or status >= 500:
        return Verdict.RETRY
    return Verdict.FAILED


def parse_retry_after(value: str | bytes | None, now: float | None = None) -> float | None:
    """Seconds to wait from a Retry-After value (delta-seconds or HTTP-date); None if absent/garbled."""
    if value is None:
        return None
    text = value.decode("latin-1") if isinstance(value, bytes) else value
    text = text.strip()
    if text.isdigit():
        return float(text)
    try:
        when = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))

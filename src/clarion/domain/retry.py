"""When to try a delivery again (API.md, Configuration: CLARION_RETRY_*)."""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass

MAX_DOUBLINGS = 64  # base·2⁶⁴ is beyond any sensible max_seconds


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    max_attempts: int = 10
    base_seconds: float = 2.0
    max_seconds: float = 3600.0

    def ceiling(self, attempt: int) -> float:
        """The longest wait after failed attempt `attempt` (1-based)."""
        # The exponent is capped: 2**1024 does not fit a float (any CLARION_MAX_ATTEMPTS is allowed).
        return min(self.max_seconds, self.base_seconds * 2 ** min(attempt - 1, MAX_DOUBLINGS))

    def delay(
        self, attempt: int, retry_after: float | None = None, rand: Callable[[], float] = random.random
    ) -> float:
        """Full jitter in [0, ceiling], but never less than the provider's
        Retry-After (which may exceed max_seconds)."""
        jittered = rand() * self.ceiling(attempt)
        return max(jittered, retry_after or 0.0)

    def exhausted(self, attempts: int) -> bool:
        """True when `attempts` provider requests have been spent."""
        return attempts >= self.max_attempts

"""A notification's delivery counts: each delivery once, under its status."""

from __future__ import annotations

from collections.abc import Iterable

from clarion.constants import DELIVERY_STATUSES


def counts_from_groups(groups: Iterable[tuple[str, int]]) -> dict[str, int]:
    """`{targeted, queued, sent, ...}` from (status, count) pairs; the statuses
    sum to `targeted` by construction."""
    counts = dict.fromkeys(DELIVERY_STATUSES, 0)
    for status, number in groups:
        counts[status] = counts.get(status, 0) + int(number)
    return {"targeted": sum(counts.values()), **counts}

"""Scripted answers the fakes share: per-target queues first, then everyone's."""

from __future__ import annotations

from typing import Protocol, TypeVar


class Countdown(Protocol):
    times: int | None  # None: answer this forever


S = TypeVar("S", bound=Countdown)


def take_scripted(*queues: list[S] | None) -> S | None:
    """The first scripted answer of the first non-empty queue, used once more
    (dropped from its queue when its `times` run out); None when none is due."""
    for queue in queues:
        if queue:
            scripted = queue[0]
            if scripted.times is not None:
                scripted.times -= 1
                if scripted.times <= 0:
                    queue.pop(0)
            return scripted
    return None



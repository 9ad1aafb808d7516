"""A provider that answers from a script (a test double of the Provider
protocol, for outcome mixes; end-to-end tests use the wire-level fakes)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from clarion.providers.base import Outcome, Push, Sent


@dataclass
class ScriptedProvider:
    platform: str
    answer: Callable[[Push], Outcome] = lambda _push: Sent()
    delay: float = 0.0
    calls: list[tuple[float, str]] = field(default_factory=list)  # (time, delivery id)

    async def send(self, pushes: Sequence[Push]) -> list[Outcome]:
        if self.delay:
            await asyncio.sleep(self.delay)
        now = time.time()
        self.calls.extend((now, p.delivery_id) for p in pushes)
        return [self.answer(p) for p in pushes]

    async def aclose(self) -> None:
        return None


@dataclass
class ScriptedFactory:
    """One ScriptedProvider per platform, shared by every app."""

    providers: dict[str, ScriptedProvider] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for platform in ("ios", "android", "web"):
            self.providers.setdefault(platform, ScriptedProvider(platform))

    async def __call__(self, _app: Any, platform: str) -> ScriptedProvider:
        return self.providers[platform]

    def sent_ids(self) -> list[str]:
        return [delivery_id for p in self.providers.values() for _, delivery_id in p.calls]

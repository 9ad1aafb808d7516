"""The queue between fan-out and the workers.

A job packs many deliveries of one notification for one app and platform.
Brokers differ in one thing that shapes everything else: the embedded broker
keeps jobs in the database, so a status write, the jobs it creates and the
removal of the job it finishes are one commit. RabbitMQ cannot share a
transaction with the database, so there the order is: commit the statuses,
publish the new jobs with publisher confirms, then ack the finished message
(at least once; a crash in between repeats work, never loses it).
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine


@dataclass(frozen=True, slots=True)
class Job:
    """Deliveries (their pks) of one notification to attempt on one provider."""

    app_pk: int
    platform: str
    notification_pk: int
    deliveries: tuple[int, ...]
    available_at: float = 0.0  # unix time; not before

    def encode(self) -> bytes:
        body = {"a": self.app_pk, "p": self.platform, "n": self.notification_pk, "d": self.deliveries}
        if self.available_at:
            body["t"] = self.available_at
        return json.dumps(body, separators=(",", ":")).encode()

    @classmethod
    def decode(cls, body: bytes, available_at: float = 0.0) -> Job:
        data = json.loads(body)
        pks = tuple(int(pk) for pk in data["d"])
        due = available_at or float(data.get("t", 0.0))
        return cls(int(data["a"]), str(data["p"]), int(data["n"]), pks, due)


@dataclass(slots=True)
class Message:
    """A job handed to a worker; `handle` is the broker's own token for it."""

    job: Job
    handle: Any = None
    extra: dict[str, Any] = field(default_factory=dict)


# Writes the statuses and returns the jobs they create (which may need the
# rows' new primary keys, hence inside the transaction).
Writes = Callable[[AsyncConnection], Awaitable[Sequence[Job]]]
Handler = Callable[[Message], Awaitable[None]]


class Broker(Protocol):
    """Durable jobs, delayed retries, manual acks after the status is recorded."""

    # True when publish/settle happen inside the database transaction.
    transactional: bool

    async def start(self) -> None: ...

    async def close(self) -> None: ...

    async def commit(self, engine: AsyncEngine, writes: Writes, settled: Sequence[Message] = ()) -> None:
        """Run `writes`, publish the jobs it returns (each held until its
        `available_at`) and acknowledge `settled`, durably, in the order
        described above."""
        ...

    async def consume(self, handler: Handler, stop: Any) -> None:
        """Call `handler` for each ready job until `stop` (an asyncio.Event) is
        set, with per-platform and per-provider concurrency limits. A handler
        that raises leaves its job to come back later."""
        ...

    async def purge(self) -> None:
        """Drop every job (tests and benchmarks only)."""
        ...

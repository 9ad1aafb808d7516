"""Topic subscriptions (secret key)."""

from __future__ import annotations

from typing import Annotated

import sqlalchemy as sa
from fastapi import APIRouter, Path
from pydantic import BaseModel, Field

from clarion.api.deps import RuntimeDep, SecretApp
from clarion.api.errors import problem_responses
from clarion.api.models import Strict, UserId
from clarion.store import users as user_store
from clarion.store.tables import topic_subscriptions, users

router = APIRouter(tags=["topics"], responses=problem_responses(401, 403, 404, 422))

TopicPath = Annotated[str, Path(min_length=1, max_length=200, pattern=r"^[A-Za-z0-9_.~:\-]+$")]


class Subscribers(Strict):
    user_ids: Annotated[list[UserId], Field(min_length=1, max_length=1000)]


class SubscribersChanged(BaseModel):
    topic: str
    changed: int


@router.put("/v1/topics/{topic}/subscribers", response_model=SubscribersChanged)
async def subscribe(
    topic: TopicPath, body: Subscribers, runtime: RuntimeDep, principal: SecretApp
) -> SubscribersChanged:
    """Subscribes the users (creating unknown ones, as device registration does)."""
    assert principal.app_pk is not None
    async with runtime.engine.begin() as conn:
        pks = await user_store.ensure_users(conn, principal.app_pk, body.user_ids)
        existing = set(
            (
                await conn.execute(
                    sa.select(topic_subscriptions.c.user_pk).where(
                        topic_subscriptions.c.app_pk == principal.app_pk,
                        topic_subscriptions.c.topic == topic,
                        topic_subscriptions.c.user_pk.in_(list(pks.values())),
                    )
                )
            ).scalars()
        )
        new = [{"app_pk": principal.app_pk, "topic": topic, "user_pk": pk} for pk in pks.values() if pk not in existing]
        if new:
            await conn.execute(topic_subscriptions.insert(), new)
    return SubscribersChanged(topic=topic, changed=len(new))


@router.delete("/v1/topics/{topic}/subscribers", response_model=SubscribersChanged)
async def unsubscribe(
    topic: TopicPath, body: Subscribers, runtime: RuntimeDep, principal: SecretApp
) -> SubscribersChanged:
    assert principal.app_pk is not None
    user_pks = sa.select(users.c.pk).where(users.c.app_pk == principal.app_pk, users.c.user_id.in_(body.user_ids))
    async with runtime.engine.begin() as conn:
        result = await conn.execute(
            topic_subscriptions.delete().where(
                topic_subscriptions.c.app_pk == principal.app_pk,
                topic_subscriptions.c.topic == topic,
                topic_subscriptions.c.user_pk.in_(user_pks),
            )
        )
    return SubscribersChanged(topic=topic, changed=result.rowcount)

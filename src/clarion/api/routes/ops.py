"""Operations endpoints, no auth: liveness, readiness, metrics."""

from __future__ import annotations

import sqlalchemy as sa
from fastapi import APIRouter, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel

from clarion.api.deps import RuntimeDep
from clarion.api.errors import Problem, problem_responses
from clarion.tracking.queue_depth import observe_queue_depth

router = APIRouter(tags=["operations"])


class Health(BaseModel):
    status: str


@router.get("/healthz", response_model=Health)
async def healthz() -> Health:
    return Health(status="ok")


@router.get("/readyz", response_model=Health, responses=problem_responses(503))
async def readyz(runtime: RuntimeDep) -> Health:
    try:
        async with runtime.engine.connect() as conn:
            await conn.execute(sa.text("SELECT 1"))
    except Exception as exc:
        raise Problem(503, "the database is not reachable") from exc
    broker = getattr(runtime.pipeline, "broker", None)
    if broker is not None and hasattr(broker, "ping") and not await broker.ping():
        raise Problem(503, "the queue is not reachable")
    return Health(status="ready")


@router.get("/metrics", response_class=Response, responses={200: {"content": {"text/plain": {}}}})
async def metrics(runtime: RuntimeDep) -> Response:
    await observe_queue_depth(runtime)
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

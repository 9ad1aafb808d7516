"""Segments: named filters over users and their devices (secret key)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

import sqlalchemy as sa
from fastapi import APIRouter, Path, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from clarion.api.deps import RuntimeDep, SecretApp
from clarion.api.errors import Problem, problem_responses
from clarion.api.models import Strict
from clarion.domain.filters import FilterError, parse_filter, serialize_filter
from clarion.store.tables import segments

router = APIRouter(tags=["segments"], responses=problem_responses(401, 403, 404, 422))

SegmentPath = Annotated[str, Path(min_length=1, max_length=200, pattern=r"^[A-Za-z0-9_.~:\-]+$")]


class SegmentPut(Strict):
    filter: dict[str, Any]


class SegmentView(BaseModel):
    name: str
    filter: dict[str, Any]
    created_at: datetime
    updated_at: datetime


def check_filter(obj: Any, loc: list[str | int]) -> dict[str, Any]:
    """The filter in its normal form, or 422 with the path of each mistake,
    e.g. body.filter.all.0.op."""
    try:
        return serialize_filter(parse_filter(obj))
    except FilterError as exc:
        errors = [{"loc": [*loc, *e["loc"]], "msg": e["msg"]} for e in exc.errors]
        raise Problem(422, "the filter is not valid: " + errors[0]["msg"], errors=errors) from exc


def _where(app_pk: int | None, name: str) -> sa.ColumnElement[bool]:
    return sa.and_(segments.c.app_pk == app_pk, segments.c.name == name)


@router.put("/v1/segments/{name}", response_model=SegmentView, responses={201: {"model": SegmentView}})
async def put_segment(name: SegmentPath, body: SegmentPut, runtime: RuntimeDep, principal: SecretApp) -> JSONResponse:
    normal = check_filter(body.filter, ["body", "filter"])
    stamp = datetime.now(UTC)
    async with runtime.engine.begin() as conn:
        updated = await conn.execute(
            segments.update().where(_where(principal.app_pk, name)).values(filter=normal, updated_at=stamp)
        )
        if updated.rowcount == 0:
            await conn.execute(
                segments.insert().values(
                    app_pk=principal.app_pk, name=name, filter=normal, created_at=stamp, updated_at=stamp
                )
            )
        row = (await conn.execute(sa.select(segments).where(_where(principal.app_pk, name)))).one()
    view = SegmentView(name=row.name, filter=row.filter, created_at=row.created_at, updated_at=row.updated_at)
    return JSONResponse(view.model_dump(mode="json"), status_code=200 if updated.rowcount else 201)


@router.get("/v1/segments/{name}", response_model=SegmentView)
async def get_segment(name: SegmentPath, runtime: RuntimeDep, principal: SecretApp) -> SegmentView:
    async with runtime.engine.connect() as conn:
        row = (await conn.execute(sa.select(segments).where(_where(principal.app_pk, name)))).first()
    if row is None:
        raise Problem(404, f"no segment {name}")
    return SegmentView(name=row.name, filter=row.filter, created_at=row.created_at, updated_at=row.updated_at)


@router.delete("/v1/segments/{name}", status_code=204, response_class=Response)
async def delete_segment(name: SegmentPath, runtime: RuntimeDep, principal: SecretApp) -> Response:
    async with runtime.engine.begin() as conn:
        result = await conn.execute(segments.delete().where(_where(principal.app_pk, name)))
    if result.rowcount == 0:
        raise Problem(404, f"no segment {name}")
    return Response(status_code=204)

"""The SQL a filter compiles to selects exactly the users `matches()` selects,
on SQLite and on PostgreSQL.

Users with mixed-type attributes, locales, locations, devices and topics go
into a real database (one schema per backend, emptied between examples);
random filters then run both ways. A PostgreSQL that is not there is a
failure, never a skip: deselect with `-m "not postgres"` to run without it.
"""

from __future__ import annotations

import asyncio
import math
import os
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine

from clarion.config import Settings
from clarion.domain import filters as F
from clarion.domain import geo
from clarion.store.audience_sql import compile_filter, postgres_distance_km
from clarion.store.db import create_engine
from clarion.store.tables import apps, devices, metadata, topic_subscriptions, users

PG_SERVER_URL = os.environ.get("CLARION_TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/test")
PG_DATABASE = "clarion_filters"  # our own database on that server, whatever it is named there
EXAMPLES = int(os.environ.get("CLARION_FILTER_EXAMPLES", "100"))  # raise it for a deeper search
NOW = datetime(2026, 1, 1, tzinfo=UTC)


# ---------------------------------------------------------------- backends


@dataclass
class Backend:
    runner: asyncio.Runner
    engine: AsyncEngine
    app_pk: int

    def run(self, coro: Any) -> Any:
        return self.runner.run(coro)


async def _ensure_postgres_database() -> str:
    """The URL of our own database, (re)created with an ICU en-US default
    collation when it has another: there "a" < "B" and lower("É") is "é", so
    the SQL must ask for binary order and ASCII case folding itself."""
    url = make_url(PG_SERVER_URL).set(drivername="postgresql")
    server = await asyncpg.connect(url.set(database="postgres").render_as_string(hide_password=False))
    try:
        query = "select datlocprovider from pg_database where datname = $1"
        provider = await server.fetchval(query, PG_DATABASE)
        if provider != "i":
            if provider is not None:
                await server.execute(f'drop database "{PG_DATABASE}"')
            await server.execute(
                f'create database "{PG_DATABASE}" template template0'
                " locale_provider icu icu_locale 'en-US' locale 'C.UTF-8'"
            )
    finally:
        await server.close()
    return url.set(database=PG_DATABASE).render_as_string(hide_password=False)


async def _prepare(engine: AsyncEngine) -> int:
    async with engine.begin() as conn:
        await conn.run_sync(metadata.drop_all)
        await conn.run_sync(metadata.create_all)
        result = await conn.execute(
            apps.insert().values(
                id="app_filters",
                name="filters",
                vapid_public_key="k",
                vapid_private_key_enc=b"k",
                created_at=NOW,
            )
        )
        return int(result.inserted_primary_key[0])


@pytest.fixture(scope="module", params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def backend(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Backend]:
    with asyncio.Runner() as runner:
        if request.param == "sqlite":
            data_dir: Path = tmp_path_factory.mktemp("filters")
            config = Settings(database_url=f"sqlite:///{data_dir / 'filters.db'}", data_dir=data_dir)
        else:
            try:
                url = runner.run(_ensure_postgres_database())
            except (OSError, asyncpg.PostgresError) as exc:
                pytest.fail(f"PostgreSQL at {PG_SERVER_URL} is needed (set CLARION_TEST_DATABASE_URL): {exc}")
            config = Settings(database_url=url, data_dir=tmp_path_factory.mktemp("unused"))
        engine = create_engine(config)  # the real engine: SQLite gets its distance function here
        try:
            yield Backend(runner, engine, runner.run(_prepare(engine)))
        finally:
            runner.run(engine.dispose())


# ---------------------------------------------------------------- data

NAMES = ["plan", "age", "tags", "na me", "a.b", "ü", 'q"t', "back\\slash"]
# half the time one of three names, so that filters often meet the attribute they name
NAME = st.sampled_from(NAMES[:3]) | st.sampled_from(NAMES)
SAFE_TEXT = st.characters(exclude_categories=("Cs",), exclude_characters="\x00")
STRINGS = st.sampled_from(
    ["", "a", "A", "ab", "abc", "b", "B", "Z", "é", "e\u0301", "ß", "a b", "%", "_", "a%", "10", "9", "😀"]
) | st.text(SAFE_TEXT, max_size=4)
FILTER_NUMBERS = (
    st.sampled_from(
        [
            0,
            1,
            2,
            3,
            -2,
            10,
            0.5,
            1.0,
            2.0,
            -0.0,
            2.5,
            0.1,
            0.30000000000000004,
            1e16,
            2**53,
            -(2**53),
            5e-324,
        ]
    )
    | st.integers(-5, 5)
    | st.floats(-(2.0**53), 2.0**53, allow_nan=False)
)
BIG_NUMBERS = st.sampled_from([2**53 + 1, 2**63 - 1, 2**63, -(2**64), 10**30, 1.7976931348623157e308, 1e300])
# mostly values from one small pool, so that filters and attributes meet (true vs 1, "1" vs 1, ...)
COMMON = st.sampled_from([None, True, False, 0, 1, 1.0, -0.0, 2, 2.5, "", "1", "a", "B", "b", "É", "é"])
SCALARS = COMMON | COMMON | COMMON | st.none() | st.booleans() | FILTER_NUMBERS | STRINGS
ATTRIBUTE_VALUES = st.one_of(
    COMMON,
    COMMON,
    SCALARS,
    BIG_NUMBERS,
    st.lists(SCALARS | st.lists(SCALARS, max_size=2), max_size=4),
    st.dictionaries(st.sampled_from(NAMES), SCALARS, max_size=2),
)
# "\u212a" is the Kelvin sign: full Unicode lower() makes it "k", ASCII folding leaves it
LOCALES = st.sampled_from(
    ["de", "de-AT", "DE-at", "dE", "den", "de_AT", "en", "en-US", "EN", "pt-BR", "É-de", "İ", "\u212ao-KR"]
)
CENTERS = [(48.2082, 16.3738), (0.0, 0.0), (90.0, 0.0), (-90.0, 180.0), (0.0, 180.0), (0.0, -180.0)]
LATITUDES = st.floats(-90, 90, allow_nan=False)
LONGITUDES = st.floats(-180, 180, allow_nan=False)
# tiny angles once made PostgreSQL raise "underflow"; invalid ones must simply not match
ODD_LOCATIONS = [
    (5e-324, 1e-200),
    (-1e-12, 7e-215),
    (91.0, 0.0),
    (0.0, -181.0),
    (math.inf, 0.0),
    (0.0, math.nan),
]
LOCATIONS = (
    st.sampled_from(CENTERS + ODD_LOCATIONS)
    | st.tuples(LATITUDES, LONGITUDES)
    | st.builds(
        lambda center, d: (max(-90.0, min(90.0, center[0] + d)), center[1]),
        st.sampled_from(CENTERS),
        st.floats(-1, 1),
    )
)
TOPICS = ["news", "sports", "Sports"]


@dataclass
class DeviceSpec:
    platform: str
    active: bool
    locale: str | None


@dataclass
class UserSpec:
    attributes: dict[str, Any]
    locale: str | None
    location: tuple[float, float] | None
    devices: list[DeviceSpec]
    topics: frozenset[str]

    def view(self) -> F.UserView:
        active = [d for d in self.devices if d.active]
        lat, lon = self.location or (None, None)
        return F.UserView(
            attributes=self.attributes,
            locale=self.locale,
            lat=lat,
            lon=lon,
            device_platforms=frozenset(d.platform for d in active),
            device_locales=frozenset(d.locale for d in active if d.locale is not None),
            topics=self.topics,
        )


USERS = st.builds(
    UserSpec,
    attributes=st.dictionaries(NAME, ATTRIBUTE_VALUES, max_size=4),
    locale=st.none() | LOCALES,
    location=st.none() | LOCATIONS,
    devices=st.lists(
        st.builds(DeviceSpec, st.sampled_from(F.PLATFORMS), st.booleans(), st.none() | LOCALES), max_size=3
    ),
    topics=st.frozensets(st.sampled_from(TOPICS)),
)


def _confusables(value: Any) -> list[Any]:
    """`value` and the values a careless comparison would mistake for it."""
    if isinstance(value, bool) or value is None:
        return [value, int(bool(value)), float(bool(value)), str(value).lower(), not value]
    if isinstance(value, str):
        return [value, value.upper(), value.lower(), value[:-1], value + "a", value + "-x"]
    numbers = [value, float(value), value + 1, value - 0.5, str(value)]
    return [*numbers, int(value), bool(value)] if float(value).is_integer() and abs(value) <= 2**53 else numbers


def _seen_scalars(people: list[UserSpec]) -> list[tuple[str, Any]]:
    """(name, value) for every scalar stored in the users' attributes, also
    inside arrays, and for its confusables."""
    found: list[tuple[str, Any]] = []
    for person in people:
        for name, value in person.attributes.items():
            for item in value if isinstance(value, list) else [value]:
                if F.json_kind(item) not in ("array", "object"):
                    found += [
                        (name, v) for v in _confusables(item) if _valid({"attribute": "x", "op": "eq", "value": v})
                    ]
    return found


def _valid(raw: Any) -> bool:
    try:
        F.parse_filter(raw)
    except F.FilterError:
        return False
    return True


def _seen_prefixes(people: list[UserSpec]) -> list[str]:
    """Leading subtags of the locales users and devices have, also as full
    Unicode lower-casing reads them (the Kelvin sign becomes "k")."""
    tags = [p.locale for p in people] + [d.locale for p in people for d in p.devices]
    found = set()
    for tag in filter(None, tags):
        subtags = tag.lower().split("-")
        found.update("-".join(subtags[:n]) for n in range(1, len(subtags) + 1))
    return sorted(prefix for prefix in found if _valid({"locale": prefix}) and prefix.isascii())


def _attribute_filters(seen: list[tuple[str, Any]]) -> st.SearchStrategy[F.Filter]:
    # mostly a name and value that users hold (or nearly hold), any sometimes
    pairs = (
        st.sampled_from(seen) | st.sampled_from(seen) | st.tuples(NAME, SCALARS) if seen else st.tuples(NAME, SCALARS)
    )
    orderable = pairs.filter(lambda pair: F.json_kind(pair[1]) in ("number", "string"))
    more = st.lists(pairs.map(lambda pair: pair[1]), max_size=3)
    return st.one_of(
        st.builds(lambda op, p: F.Attribute(p[0], op, p[1]), st.sampled_from(["eq", "ne", "contains"]), pairs),
        st.builds(lambda op, p, m: F.Attribute(p[0], op, (p[1], *m)), st.sampled_from(["in", "not_in"]), pairs, more),
        st.builds(lambda op, p: F.Attribute(p[0], op, p[1]), st.sampled_from(["gt", "gte", "lt", "lte"]), orderable),
        st.builds(F.Attribute, NAME, st.just("exists"), st.booleans()),
    )


def _near_filters(located: list[tuple[float, float]]) -> st.SearchStrategy[F.Filter]:
    center = st.sampled_from(CENTERS) | st.tuples(LATITUDES, LONGITUDES)
    radius = st.sampled_from([0.001, 1.0, 100.0, 1000.0, 20015.1, 30000.0]) | st.floats(1e-6, 25000)
    near = st.builds(lambda c, r: F.Near(c[0], c[1], r), center, radius)
    if not located:
        return near
    # radius exactly the distance to a user: the boundary, where SQL and Python must agree to the last bit
    on_edge = st.builds(
        lambda c, u: F.Near(c[0], c[1], geo.haversine_km(c[0], c[1], u[0], u[1]) or 1e-9),
        center,
        st.sampled_from(located),
    )
    return near | on_edge


def _filters(people: list[UserSpec]) -> st.SearchStrategy[F.Filter]:
    located = [p.location for p in people if p.location is not None and geo.is_coordinate(*p.location)]
    leaves = st.one_of(
        _attribute_filters(_seen_scalars(people)),
        _attribute_filters(_seen_scalars(people)),
        _near_filters(located),
        st.builds(F.PlatformIs, st.sampled_from(F.PLATFORMS)),
        st.builds(F.TopicIs, st.sampled_from([*TOPICS, "none"])),
        st.builds(F.LocalePrefix, st.sampled_from(["de", "de-at", "d", "en", "pt", "den", "e", "i", "ko"])),
        st.builds(F.LocalePrefix, st.sampled_from(_seen_prefixes(people) or ["de"])),
    )
    trees = st.recursive(
        leaves,
        lambda children: st.one_of(
            st.lists(children, min_size=1, max_size=3).map(lambda fs: F.All(tuple(fs))),
            st.lists(children, min_size=1, max_size=3).map(lambda fs: F.Any(tuple(fs))),
            children.map(F.Not),
        ),
        max_leaves=6,
    )
    return leaves | trees  # a leaf alone shows its own disagreement; inside all/any it may be masked


@st.composite
def scenarios(draw: st.DrawFn) -> tuple[list[UserSpec], list[F.Filter]]:
    # many users and filters per example: storing users costs more than querying them
    people = draw(st.lists(USERS, min_size=1, max_size=16))
    return people, draw(st.lists(_filters(people), min_size=4, max_size=24))


# ---------------------------------------------------------------- the property


async def _store(backend: Backend, people: list[UserSpec]) -> None:
    async with backend.engine.begin() as conn:
        for table in (topic_subscriptions, devices, users):
            await conn.execute(table.delete())
        if people:
            await conn.execute(users.insert(), [_user_row(backend.app_pk, i, p) for i, p in enumerate(people)])
        rows = [_device_row(backend.app_pk, i, j, d) for i, p in enumerate(people) for j, d in enumerate(p.devices)]
        if rows:
            await conn.execute(devices.insert(), rows)
        subscriptions = [
            {"app_pk": backend.app_pk, "topic": topic, "user_pk": i + 1}
            for i, p in enumerate(people)
            for topic in p.topics
        ]
        if subscriptions:
            await conn.execute(topic_subscriptions.insert(), subscriptions)


def _user_row(app_pk: int, index: int, person: UserSpec) -> dict[str, Any]:
    lat, lon = person.location or (None, None)
    return {
        "pk": index + 1,
        "app_pk": app_pk,
        "user_id": f"u{index}",
        "attributes": person.attributes,
        "locale": person.locale,
        "lat": lat,
        "lon": lon,
        "created_at": NOW,
        "updated_at": NOW,
    }


def _device_row(app_pk: int, user: int, number: int, device: DeviceSpec) -> dict[str, Any]:
    return {
        "id": f"d{user}_{number}",
        "app_pk": app_pk,
        "user_pk": user + 1,
        "platform": device.platform,
        "token_hash": f"h{user}_{number}",
        "token_enc": b"x",
        "locale": device.locale,
        "active": device.active,
        "created_at": NOW,
        "last_seen_at": NOW,
    }


async def _selected(backend: Backend, f: F.Filter) -> set[str]:
    condition = compile_filter(f, backend.engine.dialect.name)
    query = sa.select(users.c.user_id).where(users.c.app_pk == backend.app_pk, condition)
    async with backend.engine.connect() as conn:
        return set((await conn.execute(query)).scalars())


@settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(scenario=scenarios())
def test_sql_selects_the_users_matches_selects(
    backend: Backend, scenario: tuple[list[UserSpec], list[F.Filter]]
) -> None:
    """For random users and filters, the compiled SQL and matches() pick the same users."""
    people, filters = scenario
    backend.run(_store(backend, people))
    for f in filters:
        expected = {f"u{i}" for i, p in enumerate(people) if F.matches(f, p.view())}
        event("selects " + ("none" if not expected else "all" if len(expected) == len(people) else "some"))
        assert backend.run(_selected(backend, f)) == expected, F.serialize_filter(f)


@settings(max_examples=EXAMPLES * 2, deadline=None)
@given(st.tuples(LATITUDES, LONGITUDES), st.tuples(LATITUDES, LONGITUDES))
def test_sql_distance_is_pythons_to_the_bit(
    backend: Backend, center: tuple[float, float], point: tuple[float, float]
) -> None:
    """The database computes the very distance Python does, so a user exactly
    on the edge of a `near` circle is in it for both."""
    if backend.engine.dialect.name == "sqlite":
        distance = sa.func.clarion_distance_km(*center, *point)  # the registered Python function
    else:
        distance = postgres_distance_km(*(sa.literal(x, sa.Double()) for x in (*center, *point)))
    assert backend.run(_scalar(backend, sa.select(distance))) == geo.haversine_km(*center, *point)


async def _scalar(backend: Backend, query: sa.Select[Any]) -> Any:
    async with backend.engine.connect() as conn:
        return (await conn.execute(query)).scalar_one()


# ---------------------------------------------------------------- chosen cases

EDGE_PEOPLE = [
    UserSpec({"n": 1, "flag": True, "s": "abc", "tags": ["x", 1, True]}, "de-AT", (48.2, 16.37), [], frozenset()),
    UserSpec(
        {"n": 1.0, "flag": 1, "s": "ABC", "tags": "x"},
        "den",
        None,
        [DeviceSpec("ios", False, "de")],
        frozenset(),
    ),
    UserSpec({"n": "1", "flag": None, "s": None}, None, None, [DeviceSpec("web", True, "DE")], frozenset({"news"})),
    UserSpec({}, None, (48.3, 16.37), [], frozenset()),
]
EDGE_CASES = [
    ({"attribute": "n", "op": "eq", "value": 1}, {"u0", "u1"}),
    ({"attribute": "flag", "op": "eq", "value": True}, {"u0"}),
    ({"attribute": "flag", "op": "eq", "value": 1}, {"u1"}),
    ({"attribute": "flag", "op": "eq", "value": None}, {"u2"}),
    ({"attribute": "flag", "op": "ne", "value": True}, {"u1", "u2", "u3"}),
    ({"attribute": "n", "op": "not_in", "value": [1, "1"]}, {"u3"}),
    ({"attribute": "n", "op": "gte", "value": 1}, {"u0", "u1"}),
    ({"attribute": "s", "op": "gt", "value": "B"}, {"u0"}),
    ({"attribute": "s", "op": "exists"}, {"u0", "u1", "u2"}),
    ({"attribute": "tags", "op": "contains", "value": "x"}, {"u0", "u1"}),
    ({"attribute": "tags", "op": "contains", "value": 1}, {"u0"}),
    ({"locale": "de"}, {"u0", "u2"}),
    ({"platform": "ios"}, set()),
    ({"topic": "news"}, {"u2"}),
    ({"near": {"lat": 48.2, "lon": 16.37, "radius_km": 5}}, {"u0"}),
    ({"not": {"near": {"lat": 48.2, "lon": 16.37, "radius_km": 5}}}, {"u1", "u2", "u3"}),
]


@pytest.mark.parametrize(("raw", "expected"), EDGE_CASES, ids=[str(raw) for raw, _ in EDGE_CASES])
def test_chosen_cases(backend: Backend, raw: dict[str, Any], expected: set[str]) -> None:
    """The documented semantics hold, in SQL and in Python, on hand-picked users."""
    f = F.parse_filter(raw)
    backend.run(_store(backend, EDGE_PEOPLE))
    assert {f"u{i}" for i, p in enumerate(EDGE_PEOPLE) if F.matches(f, p.view())} == expected
    assert backend.run(_selected(backend, f)) == expected


def test_largest_allowed_filter_runs(backend: Backend) -> None:
    """A filter at the size limits compiles and runs (SQLite caps expression depth at 1000)."""
    values = list(range(F.MAX_VALUES // (F.MAX_CONDITIONS - 1)))
    wide = {"any": [{"attribute": "n", "op": "in", "value": values}] * (F.MAX_CONDITIONS - 1)}
    long = {"attribute": "n", "op": "not_in", "value": list(range(2, F.MAX_LIST + 2))}
    deep: dict[str, Any] = {"attribute": "n", "op": "eq", "value": 1}
    for _ in range(F.MAX_DEPTH - 1):  # the leaf is the 32nd level
        deep = {"not": deep}
    backend.run(_store(backend, EDGE_PEOPLE))
    assert backend.run(_selected(backend, F.parse_filter(wide))) == {"u0", "u1"}
    assert backend.run(_selected(backend, F.parse_filter(long))) == {"u0", "u1", "u2", "u3"}
    assert backend.run(_selected(backend, F.parse_filter(deep))) == {"u2", "u3"}

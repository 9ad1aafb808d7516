"""Segment filters compiled to SQL over the `users` table.

`compile_filter` gives the WHERE clause that selects exactly the users that
`clarion.domain.filters.matches` accepts, on SQLite and on PostgreSQL (the
property tests in tests/integration/test_filter_sql.py hold them equal). The
caller adds the app (`users.c.app_pk == ...`).

Every condition compiles to an expression that is never NULL, so that `not`
is a plain NOT (SQL's three-valued logic would otherwise drop users whose
attribute is missing from `{"not": ...}`).

SQLite reads attributes through `json_each`, whose `key` is the decoded key
(a JSON path would need quoting and misses keys stored with \\u escapes) and
whose `type` tells true from 1. PostgreSQL uses JSONB operators, and
`COLLATE "C"` for string order, which is Python's code-point order.
"""

from __future__ import annotations

import json
import operator
import typing as t
from collections.abc import Callable
from types import SimpleNamespace

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import JSONB

from clarion.domain.filters import (
    All,
    Any,
    Attribute,
    Filter,
    LocalePrefix,
    Near,
    Not,
    PlatformIs,
    Scalar,
    TopicIs,
)
from clarion.domain.geo import NEGLIGIBLE_DEGREES, haversine_formula, haversine_km, is_coordinate
from clarion.store.tables import devices, topic_subscriptions, users

Condition: t.TypeAlias = sa.ColumnElement[bool]
SQLITE_DISTANCE_FUNCTION = "clarion_distance_km"

_ORDER = {"gt": operator.gt, "gte": operator.ge, "lt": operator.lt, "lte": operator.le}


def compile_filter(f: Filter, dialect_name: str) -> Condition:
    """A boolean SQL expression over `users` (and correlated subqueries on
    devices and topic subscriptions) for filter `f`. `dialect_name` is
    "sqlite" or "postgresql"; anything else raises ValueError."""
    if dialect_name not in _ATTRIBUTE_SQL:
        raise ValueError(f"no filter SQL for database {dialect_name!r}")
    return _compile(f, dialect_name)


def _compile(f: Filter, dialect: str) -> Condition:
    if isinstance(f, All):
        return sa.and_(*(_compile(child, dialect) for child in f.filters))
    if isinstance(f, Any):
        return sa.or_(*(_compile(child, dialect) for child in f.filters))
    if isinstance(f, Not):
        return sa.not_(_compile(f.filter, dialect))
    if isinstance(f, Attribute):
        return _compile_attribute(f, _ATTRIBUTE_SQL[dialect](f.name))
    if isinstance(f, Near):
        return _NEAR_SQL[dialect](f)
    if isinstance(f, PlatformIs):
        return _has_active_device(devices.c.platform == f.platform)
    if isinstance(f, TopicIs):
        return sa.exists().where(topic_subscriptions.c.user_pk == users.c.pk, topic_subscriptions.c.topic == f.topic)
    return _locale_sql(f, dialect)


def _compile_attribute(f: Attribute, attr: _AttributeSQL) -> Condition:
    op, value = f.op, f.value
    if op in _ORDER:
        return attr.compare(_ORDER[op], value)  # type: ignore[arg-type]
    if op == "exists":
        return attr.present() if value else sa.not_(attr.present())
    if op in ("in", "not_in"):
        found = attr.one_of(value)  # type: ignore[arg-type]
        return found if op == "in" else sa.not_(found)
    if op == "contains":
        return attr.contains(value)  # type: ignore[arg-type]
    equal = attr.equal(value)  # type: ignore[arg-type]
    return equal if op == "eq" else sa.not_(equal)


def _has_active_device(*conditions: Condition) -> Condition:
    return sa.exists().where(devices.c.user_pk == users.c.pk, devices.c.active == sa.true(), *conditions)


class _AttributeSQL(t.Protocol):
    """One attribute of the user; every method's result is never NULL."""

    def __init__(self, name: str) -> None: ...
    def present(self) -> Condition: ...
    def equal(self, value: Scalar) -> Condition: ...
    def one_of(self, values: tuple[Scalar, ...]) -> Condition: ...
    def compare(self, op: Callable[[t.Any, t.Any], t.Any], value: int | float | str) -> Condition: ...
    def contains(self, value: Scalar) -> Condition: ...


# ---------------------------------------------------------------- SQLite

_SQLITE_NUMBER = ("integer", "real")
_SQLITE_SCALAR_TYPES = {None: "null", True: "true", False: "false"}


def _sqlite_equal(json_type: t.Any, value: t.Any, expected: Scalar) -> Condition:
    """One decoded JSON value (json_each's `type` and `value`) equals `expected`."""
    if isinstance(expected, str):
        return sa.and_(json_type == "text", value == expected)
    if isinstance(expected, bool) or expected is None:
        return json_type == _SQLITE_SCALAR_TYPES[expected]
    return sa.and_(json_type.in_(_SQLITE_NUMBER), value == expected)


def _sqlite_one_of(json_type: t.Any, value: t.Any, expected: tuple[Scalar, ...]) -> Condition:
    # grouped by type, so a long list is one IN, not a deep chain of ORs
    strings = [v for v in expected if isinstance(v, str)]
    numbers = [v for v in expected if not isinstance(v, bool | str) and v is not None]
    others = sorted({_SQLITE_SCALAR_TYPES[v] for v in expected if isinstance(v, bool) or v is None})
    groups = [json_type.in_(others)] if others else []
    if strings:
        groups.append(sa.and_(json_type == "text", value.in_(strings)))
    if numbers:
        groups.append(sa.and_(json_type.in_(_SQLITE_NUMBER), value.in_(numbers)))
    return sa.or_(*groups)


class _SqliteAttribute:
    def __init__(self, name: str) -> None:
        self.name = name

    def _where(self, predicate: Callable[[t.Any, t.Any], Condition]) -> Condition:
        entry = sa.func.json_each(users.c.attributes).table_valued("key", "type", "value").alias()
        found = sa.select(sa.literal(1)).select_from(entry)
        return sa.exists(found.where(entry.c.key == self.name, predicate(entry.c.type, entry.c.value)))

    def present(self) -> Condition:
        return self._where(lambda _type, _value: sa.true())

    def equal(self, value: Scalar) -> Condition:
        return self._where(lambda json_type, v: _sqlite_equal(json_type, v, value))

    def one_of(self, values: tuple[Scalar, ...]) -> Condition:
        return self._where(lambda json_type, v: _sqlite_one_of(json_type, v, values))

    def compare(self, op: Callable[[t.Any, t.Any], t.Any], value: int | float | str) -> Condition:
        types = ("text",) if isinstance(value, str) else _SQLITE_NUMBER
        return self._where(lambda json_type, v: sa.and_(json_type.in_(types), op(v, value)))

    def contains(self, value: Scalar) -> Condition:
        return self._where(lambda json_type, v: _sqlite_contains(json_type, v, value))


def _sqlite_contains(json_type: t.Any, value: t.Any, expected: Scalar) -> Condition:
    # CASE: a string attribute is not JSON text, and AND need not test the type first
    array = sa.case((json_type == "array", value), else_=sa.literal("[]"))
    element = sa.func.json_each(array).table_valued("type", "value").alias()
    in_array = sa.exists(
        sa.select(sa.literal(1)).select_from(element).where(_sqlite_equal(element.c.type, element.c.value, expected))
    )
    has_element = sa.and_(json_type == "array", in_array)
    if not isinstance(expected, str):
        return has_element
    # instr, not LIKE: LIKE is case-insensitive on SQLite and treats % and _ as wildcards
    return sa.or_(sa.and_(json_type == "text", sa.func.instr(value, expected) > 0), has_element)


def _sqlite_near(f: Near) -> Condition:
    distance = getattr(sa.func, SQLITE_DISTANCE_FUNCTION)(f.lat, f.lon, users.c.lat, users.c.lon)
    return _located_within(distance, f.radius_km)


def sqlite_distance_km(lat1: float | None, lon1: float | None, lat2: float | None, lon2: float | None) -> float | None:
    """`haversine_km` as a SQLite function: NULL unless both points are coordinates."""
    if not (is_coordinate(lat1, lon1) and is_coordinate(lat2, lon2)):
        return None
    return haversine_km(lat1, lon1, lat2, lon2)


def register_sqlite_functions(dbapi_connection: t.Any) -> None:
    """Add the functions filters need to a new SQLite connection (sqlite3 or
    SQLAlchemy's aiosqlite adapter, which both take this call)."""
    dbapi_connection.create_function(SQLITE_DISTANCE_FUNCTION, 4, sqlite_distance_km, deterministic=True)


# ---------------------------------------------------------------- PostgreSQL


def _jsonb(value: Scalar) -> sa.ColumnElement[t.Any]:
    return sa.cast(sa.literal(json.dumps(value), sa.Text), JSONB)


def _definitely(condition: Condition) -> Condition:
    # a missing key gives NULL, which must read as false
    return sa.func.coalesce(condition, sa.false())


# the column's type is a JSON/JSONB variant; JSONB's operators need it said
_JSONB_ATTRIBUTES = sa.type_coerce(users.c.attributes, JSONB)


class _PostgresAttribute:
    def __init__(self, name: str) -> None:
        self.name = name
        self.value = _JSONB_ATTRIBUTES[name]
        self.text = _JSONB_ATTRIBUTES[name].astext
        self.json_type = sa.func.jsonb_typeof(self.value)

    def present(self) -> Condition:
        return _definitely(_JSONB_ATTRIBUTES.has_key(self.name))

    def equal(self, value: Scalar) -> Condition:
        # jsonb equality: 1 = 1.0, true <> 1, strings byte for byte
        return _definitely(self.value == _jsonb(value))

    def one_of(self, values: tuple[Scalar, ...]) -> Condition:
        return _definitely(self.value.in_([_jsonb(v) for v in values]))

    def compare(self, op: Callable[[t.Any, t.Any], t.Any], value: int | float | str) -> Condition:
        if isinstance(value, str):
            text = sa.collate(self.text, "C")
            return _definitely(sa.and_(self.json_type == "string", op(text, value)))
        return _definitely(sa.and_(self.json_type == "number", op(self.value, _jsonb(value))))

    def contains(self, value: Scalar) -> Condition:
        array = sa.case((self.json_type == "array", self.value), else_=_jsonb([]))  # type: ignore[arg-type]
        element = sa.func.jsonb_array_elements(array).table_valued("value").alias()
        has_element = sa.exists(sa.select(sa.literal(1)).select_from(element).where(element.c.value == _jsonb(value)))
        if not isinstance(value, str):
            return has_element
        in_string = _definitely(sa.and_(self.json_type == "string", sa.func.strpos(self.text, value) > 0))
        return sa.or_(in_string, has_element)


def _double(value: float) -> sa.ColumnElement[float]:
    return sa.literal(value, sa.Double())


def _sql_negligible_to_zero(angle: sa.ColumnElement[float]) -> sa.ColumnElement[float]:
    return sa.case((sa.func.abs(angle) < _double(NEGLIGIBLE_DEGREES), _double(0.0)), else_=angle)


_SQL_MATH = SimpleNamespace(
    sin=sa.func.sin,
    cos=sa.func.cos,
    asin=sa.func.asin,
    sqrt=sa.func.sqrt,
    least=sa.func.least,
    negligible_to_zero=_sql_negligible_to_zero,
)


def _postgres_near(f: Near) -> Condition:
    distance = postgres_distance_km(_double(f.lat), _double(f.lon), users.c.lat, users.c.lon)
    return _located_within(distance, _double(f.radius_km))


def postgres_distance_km(lat1: t.Any, lon1: t.Any, lat2: t.Any, lon2: t.Any) -> sa.ColumnElement[float]:
    """`haversine_km` in PostgreSQL SQL (double precision), bit for bit."""
    return haversine_formula(lat1, lon1, lat2, lon2, _SQL_MATH)  # type: ignore[no-any-return]


def _located_within(distance: sa.ColumnElement[float], radius: t.Any) -> Condition:
    # CASE, not AND: neither backend promises to test the location before
    # computing the distance, and PostgreSQL's sin() rejects infinity
    located = sa.and_(users.c.lat.between(-90.0, 90.0), users.c.lon.between(-180.0, 180.0))
    return sa.case((located, distance <= radius), else_=sa.false())


# ---------------------------------------------------------------- both


def _locale_sql(f: LocalePrefix, dialect: str) -> Condition:
    def is_prefix(column: sa.ColumnElement[str | None]) -> Condition:
        # lower() folds ASCII only (SQLite always; PostgreSQL under "C"), as Python does
        lowered = sa.func.lower(sa.collate(column, "C") if dialect == "postgresql" else column)
        starts = sa.func.substr(lowered, 1, len(f.prefix) + 1) == f.prefix + "-"
        return sa.and_(column.is_not(None), sa.or_(lowered == f.prefix, starts))

    return sa.or_(is_prefix(users.c.locale), _has_active_device(is_prefix(devices.c.locale)))


_ATTRIBUTE_SQL: dict[str, type[_AttributeSQL]] = {
    "sqlite": _SqliteAttribute,
    "postgresql": _PostgresAttribute,
}
_NEAR_SQL: dict[str, Callable[[Near], Condition]] = {"sqlite": _sqlite_near, "postgresql": _postgres_near}

"""The segment filter grammar: parse the JSON, evaluate it in Python.

`parse_filter` turns the JSON of API.md ("Topics and segments") into frozen
dataclasses or raises `FilterError` with one `{loc, msg}` per problem.
`matches` evaluates a filter over a `UserView`; `store/audience_sql.py`
compiles the same filter to SQL, and property tests hold the two equal.

Semantics (the same in Python, SQLite and PostgreSQL):

- Attributes are the top-level keys of the user's `attributes` object; a
  name is looked up as it is (no dotted paths). JSON null is a value: an
  attribute set to null is present.
- `eq` / `in`: the attribute is present and equal to the value (to one of the
  values). Equality is JSON equality of scalars: numbers compare by value
  (1 == 1.0), booleans are not numbers (true != 1), strings compare exactly.
  An array or object attribute equals no filter value.
- `ne` / `not_in` are exactly `not eq` / `not in`: they match users who lack
  the attribute ("plan ne pro" reaches everyone not on pro). To leave those
  users out, add `{"attribute": "plan", "op": "exists"}` under an `all`.
- `gt` / `gte` / `lt` / `lte`: numbers with numbers, strings with strings
  (by Unicode code point, i.e. binary; never by locale). Any other pairing,
  or a missing attribute, does not match, so `not gt` is not `lte`.
- `exists`: the attribute is present (value true, the default) or absent
  (value false).
- `contains`: a string attribute contains the string value as a substring
  (case-sensitive), or an array attribute has an element equal to the value.
- `platform`: the user has an ACTIVE device on that platform.
- `topic`: the user is subscribed to that topic.
- `locale`: the user's locale, or an active device's locale, is the tag or
  starts with the tag and a hyphen ("de" matches "de" and "de-AT", not "den").
  Tags compare case-insensitively (ASCII, as BCP 47 says).
- `near`: the user has a location within `radius_km` of the point, by the
  haversine formula (`clarion.domain.geo`). Users without a
  location (or with one outside ±90/±180) do not match. Angles under
  `geo.NEGLIGIBLE_DEGREES` count as zero.
- `all` / `any` must hold at least one filter (an empty `all` would reach
  everyone by accident); `in` / `not_in` need a non-empty list.

Limits: nesting at most `MAX_DEPTH` deep, at most `MAX_CONDITIONS` nodes,
`in` lists of at most `MAX_LIST` values and `MAX_VALUES` in all, numeric
values within ±2**53 (where every integer is exact as a double, so SQL and
Python agree).
"""

from __future__ import annotations

import math
import re
import typing as t
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Literal, TypeAlias

from clarion.domain.geo import haversine_km, is_coordinate

MAX_DEPTH = 32
MAX_CONDITIONS = 256
MAX_LIST = 1000
MAX_VALUES = 10_000  # in all in/not_in lists together: SQL takes at most ~32k parameters
MAX_NAME = 256
MAX_TOPIC = 200
MAX_NUMBER = 2**53
PLATFORMS = ("ios", "android", "web")

Scalar: TypeAlias = bool | int | float | str | None
Op = Literal["eq", "ne", "in", "not_in", "gt", "gte", "lt", "lte", "exists", "contains"]
Loc = tuple[str | int, ...]


@dataclass(frozen=True)
class Attribute:
    name: str
    op: Op
    value: Scalar | tuple[Scalar, ...]  # a tuple for in / not_in, a bool for exists


@dataclass(frozen=True)
class Near:
    lat: float
    lon: float
    radius_km: float


@dataclass(frozen=True)
class PlatformIs:
    platform: str


@dataclass(frozen=True)
class TopicIs:
    topic: str


@dataclass(frozen=True)
class LocalePrefix:
    prefix: str  # lower-case


@dataclass(frozen=True)
class All:
    filters: tuple[Filter, ...]


@dataclass(frozen=True)
class Any:
    filters: tuple[Filter, ...]


@dataclass(frozen=True)
class Not:
    filter: Filter


Filter: TypeAlias = Attribute | Near | PlatformIs | TopicIs | LocalePrefix | All | Any | Not


@dataclass(frozen=True)
class UserView:
    """What a filter can see of a user: devices and locales of active devices only."""

    attributes: Mapping[str, object] = field(default_factory=dict)
    locale: str | None = None
    lat: float | None = None
    lon: float | None = None
    device_platforms: frozenset[str] = frozenset()
    device_locales: frozenset[str] = frozenset()
    topics: frozenset[str] = frozenset()


class FilterError(ValueError):
    """An invalid filter; `errors` is `[{"loc": [...], "msg": "..."}]`, loc a JSON path."""

    def __init__(self, errors: list[dict[str, t.Any]]) -> None:
        super().__init__("; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in errors))
        self.errors = errors


def _error(loc: Loc, msg: str) -> FilterError:
    return FilterError([{"loc": list(loc), "msg": msg}])


# ---------------------------------------------------------------- parsing


def parse_filter(obj: object, loc: Loc = ()) -> Filter:
    """The typed filter for `obj` (decoded JSON). `loc` prefixes error paths,
    e.g. ("body", "filter"). Raises FilterError listing every problem found."""
    parsed = _parse(obj, loc, 1)
    conditions, values = _size(parsed)
    if conditions > MAX_CONDITIONS:
        raise _error(loc, f"has {conditions} conditions; at most {MAX_CONDITIONS} are allowed")
    if values > MAX_VALUES:
        raise _error(loc, f"lists {values} values in all; at most {MAX_VALUES} are allowed")
    return parsed


def _parse(obj: object, loc: Loc, depth: int) -> Filter:
    if depth > MAX_DEPTH:
        raise _error(loc, f"nested more than {MAX_DEPTH} levels deep")
    if not isinstance(obj, dict):
        raise _error(loc, "must be an object")
    kinds = [key for key in obj if key in _KINDS]
    if len(kinds) > 1:
        both = " and ".join(map(repr, kinds))
        raise _error(loc, f"has {both}; a condition takes only one (combine them with all/any)")
    if not kinds:
        unknown = [_unknown_key(loc, key) for key in obj]
        raise FilterError(unknown or [{"loc": list(loc), "msg": f"must have one of: {', '.join(_KINDS)}"}])
    return _KINDS[kinds[0]](obj, loc, depth)


def _unknown_key(loc: Loc, key: t.Any) -> dict[str, t.Any]:
    return {"loc": [*loc, str(key)], "msg": f"unknown key; expected one of: {', '.join(_KINDS)}"}


def _reject_extra_keys(obj: dict[t.Any, t.Any], allowed: tuple[str, ...], loc: Loc) -> list[dict[str, t.Any]]:
    return [{"loc": [*loc, str(key)], "msg": "unknown key"} for key in obj if key not in allowed]


def _collect(errors: list[dict[str, t.Any]], parse: Callable[..., t.Any], *args: t.Any) -> t.Any:
    """`parse(*args)`, its errors moved into `errors` so that siblings report theirs too."""
    try:
        return parse(*args)
    except FilterError as exc:
        errors.extend(exc.errors)
        return None


def _parse_attribute(obj: dict[t.Any, t.Any], loc: Loc, depth: int) -> Filter:
    errors = _reject_extra_keys(obj, ("attribute", "op", "value"), loc)
    name = _collect(errors, _check_name, obj["attribute"], (*loc, "attribute"))
    op = _collect(errors, _check_op, obj.get("op"), (*loc, "op"))
    value = None
    if isinstance(op, str):
        value = _collect(errors, _check_value, op, obj, (*loc, "value"))
    if errors:
        raise FilterError(errors)
    return Attribute(name, op, value)


def _check_name(name: t.Any, loc: Loc) -> str:
    if not isinstance(name, str) or not 1 <= len(name) <= MAX_NAME:
        raise _error(loc, f"must be a string of 1 to {MAX_NAME} characters")
    return name


def _check_op(op: t.Any, loc: Loc) -> str:
    if op is None:
        raise _error(loc, "field required")
    if not isinstance(op, str) or op not in _VALUE_CHECKS:
        raise _error(loc, f"unknown op; expected one of: {', '.join(_VALUE_CHECKS)}")
    return op


def _check_value(op: str, obj: dict[t.Any, t.Any], loc: Loc) -> object:
    if "value" not in obj:
        if op == "exists":
            return True  # {"attribute": "x", "op": "exists"} reads as "x exists"
        raise _error(loc, "field required")
    return _VALUE_CHECKS[op](obj["value"], loc)


def _is_number(value: t.Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _check_scalar(value: t.Any, loc: Loc) -> Scalar:
    if _is_number(value):
        return _check_number(value, loc)
    if value is None or isinstance(value, bool | str):
        return value
    raise _error(loc, "must be a string, number, boolean or null")


def _check_number(value: t.Any, loc: Loc) -> int | float:
    if not _is_number(value) or not math.isfinite(value) or abs(value) > MAX_NUMBER:
        raise _error(loc, f"must be a finite number within ±{MAX_NUMBER}")
    return value


def _check_scalar_list(value: t.Any, loc: Loc) -> tuple[Scalar, ...]:
    if not isinstance(value, list) or not 1 <= len(value) <= MAX_LIST:
        raise _error(loc, f"must be a list of 1 to {MAX_LIST} values")
    errors: list[dict[str, t.Any]] = []
    checked = tuple(_collect(errors, _check_scalar, v, (*loc, i)) for i, v in enumerate(value))
    if errors:
        raise FilterError(errors)
    return checked


def _check_orderable(value: t.Any, loc: Loc) -> int | float | str:
    if isinstance(value, str):
        return value
    if _is_number(value):
        return _check_number(value, loc)
    raise _error(loc, "must be a number or a string")


def _check_bool(value: t.Any, loc: Loc) -> bool:
    if not isinstance(value, bool):
        raise _error(loc, "must be true or false")
    return value


_VALUE_CHECKS: dict[str, Callable[[t.Any, Loc], t.Any]] = {
    "eq": _check_scalar,
    "ne": _check_scalar,
    "in": _check_scalar_list,
    "not_in": _check_scalar_list,
    "gt": _check_orderable,
    "gte": _check_orderable,
    "lt": _check_orderable,
    "lte": _check_orderable,
    "exists": _check_bool,
    "contains": _check_scalar,
}

_NEAR_FIELDS: tuple[tuple[str, Callable[[float], bool], str], ...] = (
    ("lat", lambda v: -90 <= v <= 90, "must be a number from -90 to 90"),
    ("lon", lambda v: -180 <= v <= 180, "must be a number from -180 to 180"),
    ("radius_km", lambda v: v > 0, "must be a number greater than 0"),
)


def _parse_near(obj: dict[t.Any, t.Any], loc: Loc, depth: int) -> Filter:
    errors = _reject_extra_keys(obj, ("near",), loc)
    body = obj["near"]
    if not isinstance(body, dict):
        errors.append({"loc": [*loc, "near"], "msg": "must be an object {lat, lon, radius_km}"})
        raise FilterError(errors)
    errors += _reject_extra_keys(body, tuple(key for key, _, _ in _NEAR_FIELDS), (*loc, "near"))
    numbers = [_collect(errors, _check_coordinate, body, *f, (*loc, "near", f[0])) for f in _NEAR_FIELDS]
    if errors:
        raise FilterError(errors)
    return Near(*numbers)


def _check_coordinate(body: dict[t.Any, t.Any], key: str, ok: Callable[[float], bool], msg: str, loc: Loc) -> float:
    if key not in body:
        raise _error(loc, "field required")
    value = body[key]
    if not _is_number(value) or not math.isfinite(value) or not ok(value):
        raise _error(loc, msg)
    return float(value)


def _parse_platform(obj: dict[t.Any, t.Any], loc: Loc, depth: int) -> Filter:
    return PlatformIs(_single(obj, "platform", loc, _check_platform))


def _check_platform(value: t.Any, loc: Loc) -> str:
    if value not in PLATFORMS:
        raise _error(loc, f"must be one of: {', '.join(PLATFORMS)}")
    return value


def _parse_topic(obj: dict[t.Any, t.Any], loc: Loc, depth: int) -> Filter:
    return TopicIs(_single(obj, "topic", loc, _check_topic))


def _check_topic(value: t.Any, loc: Loc) -> str:
    if not isinstance(value, str) or not 1 <= len(value) <= MAX_TOPIC:
        raise _error(loc, f"must be a string of 1 to {MAX_TOPIC} characters")
    return value


_LANGUAGE_TAG = re.compile(r"[A-Za-z0-9]{1,8}(?:-[A-Za-z0-9]{1,8})*")


def _parse_locale(obj: dict[t.Any, t.Any], loc: Loc, depth: int) -> Filter:
    return LocalePrefix(_single(obj, "locale", loc, _check_locale))


def _check_locale(value: t.Any, loc: Loc) -> str:
    if not isinstance(value, str) or len(value) > 35 or not _LANGUAGE_TAG.fullmatch(value):
        raise _error(loc, "must be a language tag such as 'de' or 'pt-BR'")
    return value.lower()


def _single(obj: dict[t.Any, t.Any], key: str, loc: Loc, check: Callable[[t.Any, Loc], str]) -> str:
    errors = _reject_extra_keys(obj, (key,), loc)
    value = _collect(errors, check, obj[key], (*loc, key))
    if errors:
        raise FilterError(errors)
    return value


def _parse_group(obj: dict[t.Any, t.Any], loc: Loc, depth: int) -> Filter:
    key = "all" if "all" in obj else "any"
    errors = _reject_extra_keys(obj, (key,), loc)
    items = obj[key]
    if not isinstance(items, list) or not items:
        errors.append({"loc": [*loc, key], "msg": "must be a non-empty list of filters"})
        raise FilterError(errors)
    children = [_collect(errors, _parse, f, (*loc, key, i), depth + 1) for i, f in enumerate(items)]
    if errors:
        raise FilterError(errors)
    return (All if key == "all" else Any)(tuple(children))


def _parse_not(obj: dict[t.Any, t.Any], loc: Loc, depth: int) -> Filter:
    errors = _reject_extra_keys(obj, ("not",), loc)
    child = _collect(errors, _parse, obj["not"], (*loc, "not"), depth + 1)
    if errors:
        raise FilterError(errors)
    return Not(child)


_KINDS: dict[str, Callable[[dict[t.Any, t.Any], Loc, int], Filter]] = {
    "attribute": _parse_attribute,
    "near": _parse_near,
    "platform": _parse_platform,
    "topic": _parse_topic,
    "locale": _parse_locale,
    "all": _parse_group,
    "any": _parse_group,
    "not": _parse_not,
}


def _size(f: Filter) -> tuple[int, int]:
    """(conditions, values in in/not_in lists) in `f`."""
    if isinstance(f, All | Any | Not):
        sizes = [_size(child) for child in (f.filters if isinstance(f, All | Any) else (f.filter,))]
        return 1 + sum(c for c, _ in sizes), sum(v for _, v in sizes)
    return 1, len(f.value) if isinstance(f, Attribute) and isinstance(f.value, tuple) else 0


def serialize_filter(f: Filter) -> dict[str, t.Any]:
    """The JSON form of `f`; `parse_filter` reads it back to an equal filter."""
    if isinstance(f, Attribute):
        value = list(f.value) if isinstance(f.value, tuple) else f.value
        return {"attribute": f.name, "op": f.op, "value": value}
    if isinstance(f, Near):
        return {"near": {"lat": f.lat, "lon": f.lon, "radius_km": f.radius_km}}
    if isinstance(f, All | Any):
        return {"all" if isinstance(f, All) else "any": [serialize_filter(child) for child in f.filters]}
    if isinstance(f, Not):
        return {"not": serialize_filter(f.filter)}
    if isinstance(f, PlatformIs):
        return {"platform": f.platform}
    return {"topic": f.topic} if isinstance(f, TopicIs) else {"locale": f.prefix}


# ---------------------------------------------------------------- evaluation

_MISSING = object()


def matches(f: Filter, user: UserView) -> bool:
    """Whether `user` is in the audience `f` describes (semantics above)."""
    if isinstance(f, All):
        return all(matches(child, user) for child in f.filters)
    if isinstance(f, Any):
        return any(matches(child, user) for child in f.filters)
    if isinstance(f, Not):
        return not matches(f.filter, user)
    if isinstance(f, Attribute):
        return _ATTRIBUTE_OPS[f.op](user.attributes.get(f.name, _MISSING), f.value)
    return _LEAF_MATCHERS[type(f)](f, user)


def json_kind(value: t.Any) -> str:
    """The JSON type of a decoded value: null, boolean, number, string, array, object."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    return "array" if isinstance(value, list | tuple) else "object"


def _json_equal(actual: t.Any, expected: t.Any) -> bool:
    kind = json_kind(actual)
    return kind not in ("array", "object") and kind == json_kind(expected) and actual == expected


def _eq(actual: t.Any, expected: t.Any) -> bool:
    return actual is not _MISSING and _json_equal(actual, expected)


def _in(actual: t.Any, expected: t.Any) -> bool:
    return actual is not _MISSING and any(_json_equal(actual, e) for e in expected)


def _ordered(compare: Callable[[t.Any, t.Any], bool]) -> Callable[[t.Any, t.Any], bool]:
    def check(actual: t.Any, expected: t.Any) -> bool:
        kind = json_kind(expected)
        return actual is not _MISSING and json_kind(actual) == kind and compare(actual, expected)

    return check


def _contains(actual: t.Any, expected: t.Any) -> bool:
    if isinstance(actual, str):
        return isinstance(expected, str) and expected in actual
    return isinstance(actual, list) and any(_json_equal(element, expected) for element in actual)


_ATTRIBUTE_OPS: dict[str, Callable[[t.Any, t.Any], bool]] = {
    "eq": _eq,
    "ne": lambda actual, expected: not _eq(actual, expected),
    "in": _in,
    "not_in": lambda actual, expected: not _in(actual, expected),
    "gt": _ordered(lambda a, b: a > b),
    "gte": _ordered(lambda a, b: a >= b),
    "lt": _ordered(lambda a, b: a < b),
    "lte": _ordered(lambda a, b: a <= b),
    "exists": lambda actual, expected: (actual is not _MISSING) == expected,
    "contains": _contains,
}


def locale_matches(tag: str | None, prefix: str) -> bool:
    """`prefix` (lower-case) is `tag` or a leading run of its subtags; ASCII case-insensitive."""
    if tag is None:
        return False
    tag = tag.translate(_ASCII_LOWER)
    return tag == prefix or tag[: len(prefix) + 1] == prefix + "-"


# str.lower() also folds non-ASCII letters, which SQL's lower() (SQLite, and
# PostgreSQL under COLLATE "C") does not; BCP 47 tags are ASCII anyway.
_ASCII_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")


def _near(f: Near, user: UserView) -> bool:
    if not is_coordinate(user.lat, user.lon):
        return False
    return haversine_km(f.lat, f.lon, user.lat, user.lon) <= f.radius_km  # type: ignore[arg-type]


_LEAF_MATCHERS: dict[type, Callable[[t.Any, UserView], bool]] = {
    Near: _near,
    PlatformIs: lambda f, user: f.platform in user.device_platforms,
    TopicIs: lambda f, user: f.topic in user.topics,
    LocalePrefix: lambda f, user: any(locale_matches(tag, f.prefix) for tag in (user.locale, *user.device_locales)),
}

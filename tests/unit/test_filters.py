"""The filter grammar: what parses, what is refused (and where), what matches."""

from __future__ import annotations

import json
import math
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from clarion.domain import filters as F
from clarion.domain import geo

# ---------------------------------------------------------------- refused, with the path to the mistake

INVALID = [
    ([], [], "must be an object"),
    ({}, [], "must have one of"),
    ({"atribute": "plan"}, ["atribute"], "unknown key"),
    ({"topic": "a", "platform": "ios"}, [], "takes only one"),
    ({"attribute": "plan", "op": "eq", "value": 1, "extra": 1}, ["extra"], "unknown key"),
    ({"attribute": "plan", "op": "like", "value": "a"}, ["op"], "unknown op"),
    ({"attribute": "plan", "value": "a"}, ["op"], "field required"),
    ({"attribute": "plan", "op": "eq"}, ["value"], "field required"),
    ({"attribute": "", "op": "eq", "value": 1}, ["attribute"], "1 to 256"),
    ({"attribute": 5, "op": "eq", "value": 1}, ["attribute"], "1 to 256"),
    ({"attribute": "plan", "op": "eq", "value": [1]}, ["value"], "string, number, boolean or null"),
    ({"attribute": "plan", "op": "eq", "value": {"a": 1}}, ["value"], "string, number, boolean or null"),
    ({"attribute": "plan", "op": "eq", "value": 2**53 + 1}, ["value"], "within"),
    ({"attribute": "plan", "op": "eq", "value": math.inf}, ["value"], "finite"),
    ({"attribute": "plan", "op": "eq", "value": math.nan}, ["value"], "finite"),
    ({"attribute": "plan", "op": "in", "value": "a"}, ["value"], "list of 1 to 1000"),
    ({"attribute": "plan", "op": "in", "value": []}, ["value"], "list of 1 to 1000"),
    ({"attribute": "plan", "op": "not_in", "value": list(range(1001))}, ["value"], "list of 1 to 1000"),
    ({"attribute": "plan", "op": "in", "value": ["a", ["b"]]}, ["value", 1], "string, number, boolean or null"),
    ({"attribute": "plan", "op": "gt", "value": True}, ["value"], "number or a string"),
    ({"attribute": "plan", "op": "lte", "value": None}, ["value"], "number or a string"),
    ({"attribute": "plan", "op": "gte", "value": [1]}, ["value"], "number or a string"),
    ({"attribute": "plan", "op": "exists", "value": 1}, ["value"], "true or false"),
    ({"attribute": "plan", "op": "contains", "value": ["a"]}, ["value"], "string, number, boolean or null"),
    ({"near": [1, 2, 3]}, ["near"], "must be an object"),
    ({"near": {"lat": 0, "lon": 0}}, ["near", "radius_km"], "field required"),
    ({"near": {"lat": 0, "lon": 0, "radius_km": 1, "unit": "mi"}}, ["near", "unit"], "unknown key"),
    ({"near": {"lat": 90.5, "lon": 0, "radius_km": 1}}, ["near", "lat"], "-90 to 90"),
    ({"near": {"lat": 0, "lon": -180.01, "radius_km": 1}}, ["near", "lon"], "-180 to 180"),
    ({"near": {"lat": 0, "lon": 0, "radius_km": 0}}, ["near", "radius_km"], "greater than 0"),
    ({"near": {"lat": 0, "lon": 0, "radius_km": -1}}, ["near", "radius_km"], "greater than 0"),
    ({"near": {"lat": True, "lon": 0, "radius_km": 1}}, ["near", "lat"], "-90 to 90"),
    ({"near": {"lat": "1", "lon": 0, "radius_km": 1}}, ["near", "lat"], "-90 to 90"),
    ({"near": {"lat": 0, "lon": 0, "radius_km": math.inf}}, ["near", "radius_km"], "greater than 0"),
    ({"platform": "windows"}, ["platform"], "one of: ios, android, web"),
    ({"platform": "IOS"}, ["platform"], "one of: ios, android, web"),
    ({"topic": ""}, ["topic"], "1 to 200"),
    ({"topic": 7}, ["topic"], "1 to 200"),
    ({"topic": "x" * 201}, ["topic"], "1 to 200"),
    ({"locale": "de_AT"}, ["locale"], "language tag"),
    ({"locale": "de-"}, ["locale"], "language tag"),
    ({"locale": ""}, ["locale"], "language tag"),
    ({"locale": "dé"}, ["locale"], "language tag"),
    ({"all": []}, ["all"], "non-empty list"),
    ({"any": {"topic": "a"}}, ["any"], "non-empty list"),
    ({"all": [{"topic": "a"}], "any": [{"topic": "b"}]}, [], "takes only one"),
    ({"not": {"topic": "a"}, "also": 1}, ["also"], "unknown key"),
    ({"not": "topic"}, ["not"], "must be an object"),
    ({"all": [{"topic": "a"}, {"platform": "x"}]}, ["all", 1, "platform"], "one of"),
    ({"any": [{"not": {"attribute": "a", "op": "bad"}}]}, ["any", 0, "not", "op"], "unknown op"),
]


@pytest.mark.parametrize(("raw", "loc", "msg"), INVALID, ids=[json.dumps(raw)[:60] for raw, _, _ in INVALID])
def test_invalid_filter_names_the_place(raw: Any, loc: list[str | int], msg: str) -> None:
    """An invalid filter raises FilterError whose loc points at the mistake, under the caller's prefix."""
    with pytest.raises(F.FilterError) as caught:
        F.parse_filter(raw, ("body", "filter"))
    [error] = caught.value.errors
    assert error["loc"] == ["body", "filter", *loc]
    assert msg in error["msg"]


def test_every_mistake_is_reported() -> None:
    """Sibling mistakes are all listed, not only the first."""
    raw = {"all": [{"platform": "x"}, {"topic": ""}, {"attribute": "a", "op": "in", "value": [1, [], {}]}]}
    with pytest.raises(F.FilterError) as caught:
        F.parse_filter(raw)
    assert [e["loc"] for e in caught.value.errors] == [
        ["all", 0, "platform"],
        ["all", 1, "topic"],
        ["all", 2, "value", 1],
        ["all", 2, "value", 2],
    ]


def _nested(depth: int) -> dict[str, Any]:
    raw: dict[str, Any] = {"topic": "a"}
    for _ in range(depth - 1):
        raw = {"not": raw}
    return raw


def test_depth_limit() -> None:
    """Filters nest up to MAX_DEPTH levels; one more is refused at the level that is too deep."""
    assert F.parse_filter(_nested(F.MAX_DEPTH))
    with pytest.raises(F.FilterError) as caught:
        F.parse_filter(_nested(F.MAX_DEPTH + 1))
    assert caught.value.errors[0]["loc"] == ["not"] * F.MAX_DEPTH
    assert "32 levels" in caught.value.errors[0]["msg"]


def test_condition_and_value_limits() -> None:
    """A filter holds at most MAX_CONDITIONS conditions and MAX_VALUES listed values."""
    assert F.parse_filter({"any": [{"topic": "a"}] * (F.MAX_CONDITIONS - 1)})
    with pytest.raises(F.FilterError, match="257 conditions"):
        F.parse_filter({"any": [{"topic": "a"}] * F.MAX_CONDITIONS})
    many = {"attribute": "a", "op": "in", "value": list(range(F.MAX_LIST))}
    assert F.parse_filter({"any": [many] * (F.MAX_VALUES // F.MAX_LIST)})
    with pytest.raises(F.FilterError, match="lists 11000 values"):
        F.parse_filter({"any": [many] * (F.MAX_VALUES // F.MAX_LIST + 1)})


# ---------------------------------------------------------------- what parses


def test_parse_gives_typed_filters() -> None:
    """The JSON grammar of API.md becomes frozen dataclasses; locales are lower-cased, exists defaults to true."""
    raw = {
        "all": [
            {"attribute": "plan", "op": "in", "value": ["pro", 2, True, None]},
            {"not": {"near": {"lat": 48, "lon": 16.5, "radius_km": 10}}},
            {"any": [{"platform": "ios"}, {"topic": "news"}, {"locale": "pt-BR"}]},
            {"attribute": "email", "op": "exists"},
        ]
    }
    assert F.parse_filter(raw) == F.All(
        (
            F.Attribute("plan", "in", ("pro", 2, True, None)),
            F.Not(F.Near(48.0, 16.5, 10.0)),
            F.Any((F.PlatformIs("ios"), F.TopicIs("news"), F.LocalePrefix("pt-br"))),
            F.Attribute("email", "exists", True),
        )
    )


NAMES = st.text(min_size=1, max_size=20)
NUMBERS = st.integers(-(2**53), 2**53) | st.floats(-(2.0**53), 2.0**53, allow_nan=False)
SCALARS = st.none() | st.booleans() | NUMBERS | st.text(max_size=10)
TAGS = st.from_regex(r"[A-Za-z0-9]{1,8}(-[A-Za-z0-9]{1,8}){0,2}", fullmatch=True).map(str.lower)
LEAVES = st.one_of(
    st.builds(F.Attribute, NAMES, st.sampled_from(["eq", "ne", "contains"]), SCALARS),
    st.builds(F.Attribute, NAMES, st.sampled_from(["in", "not_in"]), st.lists(SCALARS, min_size=1).map(tuple)),
    st.builds(F.Attribute, NAMES, st.sampled_from(["gt", "gte", "lt", "lte"]), NUMBERS | st.text()),
    st.builds(F.Attribute, NAMES, st.just("exists"), st.booleans()),
    st.builds(F.Near, st.floats(-90, 90), st.floats(-180, 180), st.floats(0, 1e6, exclude_min=True)),
    st.builds(F.PlatformIs, st.sampled_from(F.PLATFORMS)),
    st.builds(F.TopicIs, st.text(min_size=1, max_size=200)),
    st.builds(F.LocalePrefix, TAGS),
)
VALID_FILTERS = st.recursive(
    LEAVES,
    lambda children: st.one_of(
        st.lists(children, min_size=1, max_size=4).map(lambda fs: F.All(tuple(fs))),
        st.lists(children, min_size=1, max_size=4).map(lambda fs: F.Any(tuple(fs))),
        children.map(F.Not),
    ),
    max_leaves=20,
)


@settings(max_examples=300)
@given(VALID_FILTERS)
def test_serialize_then_parse_round_trips(f: F.Filter) -> None:
    """parse(serialize(f)) is f again, through real JSON text, with every value's JSON type kept (true stays true)."""
    text = json.dumps(F.serialize_filter(f))
    again = F.parse_filter(json.loads(text))
    assert again == f
    assert json.dumps(F.serialize_filter(again)) == text


# ---------------------------------------------------------------- garbage

KEYS = st.sampled_from(["attribute", "op", "value", "near", "lat", "lon", "radius_km", "platform", "topic"])
KEYS |= st.sampled_from(["locale", "all", "any", "not", "extra"]) | st.text(max_size=5)
JSON_LEAVES = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=5)
JSON_LEAVES |= st.sampled_from(["eq", "in", "gt", "exists", "contains", "ios", "de", "web"])
GARBAGE = st.recursive(
    JSON_LEAVES,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(KEYS, children, max_size=4),
    max_leaves=30,
)


def _resolves(obj: Any, path: list[str | int]) -> bool:
    for step in path:
        if isinstance(obj, dict) and step in obj:
            obj = obj[step]
        elif isinstance(obj, list) and isinstance(step, int) and 0 <= step < len(obj):
            obj = obj[step]
        else:
            return False
    return True


@settings(max_examples=500)
@given(GARBAGE)
def test_garbage_raises_only_filter_error(raw: Any) -> None:
    """Any JSON either parses or raises FilterError whose every loc leads into the input
    (all but the last step for a missing field); nothing else escapes."""
    try:
        parsed = F.parse_filter(raw)
    except F.FilterError as exc:
        assert exc.errors
        for error in exc.errors:
            assert isinstance(error["msg"], str) and error["msg"]
            assert _resolves(raw, error["loc"]) or (
                error["msg"] == "field required" and _resolves(raw, error["loc"][:-1])
            )
    else:
        assert F.parse_filter(F.serialize_filter(parsed)) == parsed


# ---------------------------------------------------------------- what matches

ALICE = F.UserView(
    attributes={
        "n": 1,
        "f": 2.5,
        "flag": True,
        "s": "abc",
        "tags": ["x", 1, True, None],
        "none": None,
        "obj": {"a": 1},
    },
    locale="de-AT",
    lat=48.2082,
    lon=16.3738,
    device_platforms=frozenset({"ios"}),
    device_locales=frozenset({"pt-BR"}),
    topics=frozenset({"news"}),
)
NOBODY = F.UserView()

MATCHES = [
    # equality is JSON equality: 1 == 1.0, true is not 1, "1" is not 1
    ({"attribute": "n", "op": "eq", "value": 1.0}, True),
    ({"attribute": "n", "op": "eq", "value": "1"}, False),
    ({"attribute": "n", "op": "eq", "value": True}, False),
    ({"attribute": "flag", "op": "eq", "value": 1}, False),
    ({"attribute": "flag", "op": "eq", "value": True}, True),
    ({"attribute": "none", "op": "eq", "value": None}, True),
    ({"attribute": "missing", "op": "eq", "value": None}, False),
    ({"attribute": "tags", "op": "eq", "value": "x"}, False),
    ({"attribute": "obj", "op": "ne", "value": 1}, True),
    # ne / not_in are the negations of eq / in, so they match a missing attribute
    ({"attribute": "missing", "op": "ne", "value": 1}, True),
    ({"attribute": "missing", "op": "not_in", "value": [1]}, True),
    ({"attribute": "n", "op": "in", "value": ["1", True, 1.0]}, True),
    ({"attribute": "flag", "op": "in", "value": [1, "true"]}, False),
    ({"attribute": "flag", "op": "not_in", "value": [1, "true"]}, True),
    # order: numbers with numbers, strings by code point, anything else false
    ({"attribute": "f", "op": "gt", "value": 2}, True),
    ({"attribute": "n", "op": "gte", "value": 1}, True),
    ({"attribute": "n", "op": "lt", "value": 1}, False),
    ({"attribute": "s", "op": "gt", "value": "ab"}, True),
    ({"attribute": "s", "op": "lt", "value": "B"}, False),
    ({"attribute": "s", "op": "gt", "value": 1}, False),
    ({"attribute": "n", "op": "lt", "value": "z"}, False),
    ({"attribute": "flag", "op": "gte", "value": 0}, False),
    ({"attribute": "missing", "op": "lt", "value": 1}, False),
    # exists: the key is there, even when its value is null
    ({"attribute": "none", "op": "exists", "value": True}, True),
    ({"attribute": "missing", "op": "exists", "value": False}, True),
    ({"attribute": "n", "op": "exists", "value": False}, False),
    # contains: substring of a string, element of an array
    ({"attribute": "s", "op": "contains", "value": "bc"}, True),
    ({"attribute": "s", "op": "contains", "value": "B"}, False),
    ({"attribute": "s", "op": "contains", "value": ""}, True),
    ({"attribute": "tags", "op": "contains", "value": 1.0}, True),
    ({"attribute": "tags", "op": "contains", "value": None}, True),
    ({"attribute": "tags", "op": "contains", "value": "X"}, False),
    ({"attribute": "n", "op": "contains", "value": 1}, False),
    ({"attribute": "obj", "op": "contains", "value": "a"}, False),
    # devices: active ones only (the view holds only those); topics; locales by whole subtags
    ({"platform": "ios"}, True),
    ({"platform": "android"}, False),
    ({"topic": "news"}, True),
    ({"topic": "News"}, False),
    ({"locale": "de"}, True),
    ({"locale": "DE-at"}, True),
    ({"locale": "d"}, False),
    ({"locale": "de-a"}, False),
    ({"locale": "pt"}, True),
    ({"locale": "pt-br"}, True),
    ({"locale": "pt-pt"}, False),
    # near: haversine distance; Vienna to Bratislava is about 55 km
    ({"near": {"lat": 48.1486, "lon": 17.1077, "radius_km": 56}}, True),
    ({"near": {"lat": 48.1486, "lon": 17.1077, "radius_km": 54}}, False),
    ({"not": {"topic": "news"}}, False),
    ({"all": [{"topic": "news"}, {"platform": "ios"}]}, True),
    ({"any": [{"topic": "sports"}, {"platform": "web"}]}, False),
]


@pytest.mark.parametrize(("raw", "expected"), MATCHES, ids=[json.dumps(raw) for raw, _ in MATCHES])
def test_matches_semantics(raw: dict[str, Any], expected: bool) -> None:
    """Each documented rule of the grammar, on one user."""
    assert F.matches(F.parse_filter(raw), ALICE) is expected


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ({"near": {"lat": 0, "lon": 0, "radius_km": 30000}}, False),
        ({"locale": "de"}, False),
        ({"attribute": "a", "op": "ne", "value": 1}, True),
        ({"not": {"attribute": "a", "op": "exists"}}, True),
    ],
)
def test_a_user_with_nothing(raw: dict[str, Any], expected: bool) -> None:
    """No location matches no circle, however large; no locale matches no tag; missing attributes are ne anything."""
    assert F.matches(F.parse_filter(raw), NOBODY) is expected


def test_locale_is_ascii_case_insensitive_only() -> None:
    """Tags compare ignoring ASCII case, as in SQL; the Kelvin sign is not a "k"."""
    assert F.locale_matches("EN-gb", "en")
    assert not F.locale_matches("\u212ao-KR", "ko")
    assert not F.locale_matches(None, "en")


def test_unusable_locations_match_no_circle() -> None:
    """Out-of-range, infinite or NaN coordinates are as good as none."""
    near = F.parse_filter({"near": {"lat": 0, "lon": 0, "radius_km": 30000}})
    for lat, lon in [(91.0, 0.0), (0.0, 180.5), (math.inf, 0.0), (0.0, math.nan)]:
        assert not F.matches(near, F.UserView(lat=lat, lon=lon))
    assert F.matches(near, F.UserView(lat=-90.0, lon=180.0))


def test_haversine_known_distances() -> None:
    """Quarter of the equator, pole to pole, and a point to itself."""
    quarter = math.pi / 2 * geo.EARTH_RADIUS_KM
    assert geo.haversine_km(0, 0, 0, 90) == pytest.approx(quarter, rel=1e-12)
    assert geo.haversine_km(90, 0, -90, 0) == pytest.approx(2 * quarter, rel=1e-12)
    assert geo.haversine_km(48.2, 16.37, 48.2, 16.37) == 0.0
    assert geo.haversine_km(1e-300, 0, 0, 0) == 0.0  # negligible angles count as zero (PostgreSQL underflow)

"""Distances on the globe, computed the same way in Python and in SQL.

`haversine_formula` is written once over an arithmetic namespace, so that
PostgreSQL (given SQL functions) performs the very floating-point steps that
Python does, and a user exactly on the edge of a `near` circle is inside it
for both; SQLite calls `haversine_km` itself, registered as a SQL function.
"""

from __future__ import annotations

import math
import typing as t
from types import SimpleNamespace

EARTH_RADIUS_KM = 6371.0088  # IUGG mean radius
EARTH_DIAMETER_KM = 2 * EARTH_RADIUS_KM
RADIANS_PER_DEGREE = math.pi / 180
# Below this many degrees an angle counts as 0 (about 0.1 mm on the ground). Without
# it PostgreSQL raises "value out of range: underflow" when a product of two
# non-zero floats rounds to zero (a user at lon 1e-200, say); Python would not.
NEGLIGIBLE_DEGREES = 1e-9
PYTHON_MATH = SimpleNamespace(
    sin=math.sin,
    cos=math.cos,
    asin=math.asin,
    sqrt=math.sqrt,
    least=min,
    negligible_to_zero=lambda x: 0.0 if abs(x) < NEGLIGIBLE_DEGREES else x,
)


def haversine_km(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """Great-circle distance in km between two points given in degrees."""
    return haversine_formula(lat1, lon1, lat2, lon2, PYTHON_MATH)


def haversine_formula(lat1: t.Any, lon1: t.Any, lat2: t.Any, lon2: t.Any, fn: t.Any) -> t.Any:
    """The haversine formula over any arithmetic: `fn` supplies sin, cos, asin,
    sqrt, least and negligible_to_zero (Python here, SQL in audience_sql). One
    formula, so PostgreSQL performs the same floating-point steps in the same
    order as Python. Keep every product a left-nested chain: SQL renders
    `a * (b * c)` as `a * b * c`, which rounds differently."""
    tiny = fn.negligible_to_zero
    half_dlat = fn.sin(tiny(lat2 - lat1) * (RADIANS_PER_DEGREE / 2))
    half_dlon = fn.sin(tiny(lon2 - lon1) * (RADIANS_PER_DEGREE / 2))
    cosines = fn.cos(tiny(lat1) * RADIANS_PER_DEGREE) * fn.cos(tiny(lat2) * RADIANS_PER_DEGREE)
    h = half_dlat * half_dlat + cosines * half_dlon * half_dlon
    # rounding can push h a hair above 1, outside asin's domain
    return EARTH_DIAMETER_KM * fn.asin(fn.sqrt(fn.least(h, 1.0)))


def is_coordinate(lat: float | None, lon: float | None) -> bool:
    """A usable location: both set, within ±90 and ±180 (so neither NaN nor infinite)."""
    return lat is not None and lon is not None and -90 <= lat <= 90 and -180 <= lon <= 180

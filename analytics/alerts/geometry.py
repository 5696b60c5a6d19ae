"""Distances between sensors and the polygon around a group of them (a padded convex hull)."""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterable

EARTH_KM = 6371.0088
KM_PER_DEG = 111.32
PAD_KM = 0.3  # the polygon keeps every sensor at least this far inside its edge
_CORNERS = 8


def distance_km(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """Great-circle distance (haversine)."""
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp = p2 - p1
    dl = math.radians(lon2 - lon1)
    a = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * EARTH_KM * math.asin(min(1.0, math.sqrt(a)))


def _cross(o: tuple[float, float], a: tuple[float, float], b: tuple[float, float]) -> float:
    return (a[0] - o[0]) * (b[1] - o[1]) - (a[1] - o[1]) * (b[0] - o[0])


def convex_hull(points: Iterable[tuple[float, float]]) -> list[tuple[float, float]]:
    """Andrew's monotone chain: the hull's corners counter-clockwise, without repeating the first."""
    pts = sorted(set(points))
    if len(pts) <= 2:
        return pts
    lower: list[tuple[float, float]] = []
    for p in pts:
        while len(lower) >= 2 and _cross(lower[-2], lower[-1], p) <= 0:
            lower.pop()
        lower.append(p)
    upper: list[tuple[float, float]] = []
    for p in reversed(pts):
        while len(upper) >= 2 and _cross(upper[-2], upper[-1], p) <= 0:
            upper.pop()
        upper.append(p)
    return lower[:-1] + upper[:-1]


def area_polygon(
    coords: Iterable[tuple[float, float]], pad_km: float = PAD_KM
) -> list[tuple[float, float]] | None:
    """A closed ring of (lon, lat) around every (lat, lon) given, ``pad_km`` clear of each.

    Each sensor is drawn as a small octagon and the hull taken around all of them, so
    one sensor or two give a proper polygon too.  ``None`` when no sensor has a position.
    """
    pts: list[tuple[float, float]] = []
    for lat, lon in coords:
        # an octagon's edge midpoints lie at cos(pi/8) of its corner radius
        r = pad_km / math.cos(math.pi / _CORNERS) / KM_PER_DEG
        rl = r / max(math.cos(math.radians(lat)), 0.01)
        for k in range(_CORNERS):
            a = 2 * math.pi * k / _CORNERS
            pts.append((round(lon + rl * math.cos(a), 6), round(lat + r * math.sin(a), 6)))
    if not pts:
        return None
    hull = convex_hull(pts)
    return [*hull, hull[0]]


def contains(ring: list[tuple[float, float]], lon: float, lat: float) -> bool:
    """Whether a point lies inside a closed ring (ray casting)."""
    inside = False
    for (x1, y1), (x2, y2) in itertools.pairwise(ring):
        if (y1 > lat) != (y2 > lat) and lon < (x2 - x1) * (lat - y1) / (y2 - y1) + x1:
            inside = not inside
    return inside

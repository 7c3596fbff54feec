"""Boundaries of the 13 metropolitan French regions, from the GeoJSON shipped in the package.

The file is ``sales_stream/data/regions.geojson`` (IGN GEOFLA 2016 contours, INSEE names,
Licence Ouverte; see ``data/SOURCE.md``), read once and cached.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache
from importlib.resources import files
from typing import Any

__all__ = ["ATTRIBUTION", "Region", "feature_collection", "regions"]

ATTRIBUTION = "Contours : IGN GEOFLA 2016, noms : INSEE (Licence Ouverte)"


@dataclass(frozen=True)
class Region:
    """A region's outer rings (lon, lat) and where to put its label."""

    name: str
    code: str
    rings: tuple[tuple[tuple[float, float], ...], ...]

    @property
    def label_point(self) -> tuple[float, float]:
        """Centroid of the largest ring (inside the region for these shapes)."""
        ring = max(self.rings, key=lambda r: abs(_area(r)))
        area = _area(ring)
        cx = cy = 0.0
        for (x0, y0), (x1, y1) in zip(ring, (*ring[1:], ring[0]), strict=True):
            cross = x0 * y1 - x1 * y0
            cx += (x0 + x1) * cross
            cy += (y0 + y1) * cross
        return cx / (6 * area), cy / (6 * area)


def _area(ring: tuple[tuple[float, float], ...]) -> float:
    pairs = zip(ring, (*ring[1:], ring[0]), strict=True)
    return sum(x0 * y1 - x1 * y0 for (x0, y0), (x1, y1) in pairs) / 2


@cache
def feature_collection() -> dict[str, Any]:
    """The GeoJSON FeatureCollection (``properties.nom`` = region name, ``code`` = INSEE)."""
    text = files("sales_stream").joinpath("data/regions.geojson").read_text(encoding="utf-8")
    return json.loads(text)


@cache
def regions() -> tuple[Region, ...]:
    """The 13 regions, in file order."""
    result = []
    for feature in feature_collection()["features"]:
        geometry = feature["geometry"]
        polygons = (
            [geometry["coordinates"]] if geometry["type"] == "Polygon" else geometry["coordinates"]
        )
        rings = tuple(tuple((x, y) for x, y, *_ in polygon[0]) for polygon in polygons)
        result.append(Region(feature["properties"]["nom"], feature["properties"]["code"], rings))
    return tuple(result)

"""The site registry: built-in sites (package data) plus sites users add to the store.

A site file is a GeoJSON FeatureCollection in WGS84 lon/lat (RFC 7946) with exactly one
Feature whose ``properties.role`` is ``aoi`` (a Polygon), any number of ``role: zone``
Polygons, each with a ``name``, and optionally ``role: track`` LineStrings (the centrelines
of the site's tracks, e.g. OpenStreetMap ``railway=rail`` ways): with a track map, railcars
count only on a track (`railwatch.analytics.trackmap`). Site-level fields are foreign
members of the collection: ``name``, ``title``, ``timezone``, ``center``, ``local_crs``,
``approximate``, ``notes`` and ``events`` (a list of ``{date, name}``).
"""

from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import Mapping
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import shapely
from pyproj import CRS, Transformer
from pyproj.aoi import AreaOfInterest
from pyproj.database import query_utm_crs_info
from shapely.geometry import LineString, MultiLineString, Polygon, mapping, shape
from shapely.validation import explain_validity

from railwatch.errors import InputError, NotFoundError
from railwatch.types import Event, Site

if TYPE_CHECKING:
    from railwatch.store import Store

#: Site-level members of the FeatureCollection that map onto ``Site`` fields.
_SITE_FIELDS = {"type", "features", "name", "title", "timezone", "notes", "events", "crs"}
_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9_\-]*$")
_WGS84 = CRS.from_epsg(4326)


def _check_crs_member(value: Any, source: str) -> None:
    """Accept a legacy GeoJSON ``crs`` member only when it names WGS84 lon/lat."""
    name = None
    if isinstance(value, Mapping):
        name = (value.get("properties") or {}).get("name")
    elif isinstance(value, str):
        name = value
    if not name:
        raise InputError("unreadable 'crs' member; site GeoJSON must be WGS84 lon/lat", source)
    try:
        crs = CRS.from_user_input(name)
    except Exception as exc:  # pyproj raises CRSError
        raise InputError(
            f"unknown CRS {name!r}; site GeoJSON must be WGS84 lon/lat", source
        ) from exc
    if not crs.equals(_WGS84, ignore_axis_order=True):
        raise InputError(
            f"wrong CRS {name!r}: site GeoJSON must be WGS84 lon/lat (EPSG:4326 / CRS84)", source
        )


def _polygon(geom: Any, what: str, source: str) -> Polygon:
    if not isinstance(geom, Mapping) or geom.get("type") != "Polygon":
        kind = geom.get("type") if isinstance(geom, Mapping) else type(geom).__name__
        raise InputError(f"{what} is not a Polygon (got {kind})", source)
    try:
        poly = shape(geom)
    except Exception as exc:
        raise InputError(f"{what} has malformed coordinates ({exc})", source) from exc
    if poly.is_empty:
        raise InputError(f"{what} is an empty polygon", source)
    minx, miny, maxx, maxy = poly.bounds
    if minx < -180 or maxx > 180 or miny < -90 or maxy > 90:
        raise InputError(
            f"{what} has coordinates outside lon/lat range (is it in a projected CRS?)", source
        )
    if not poly.is_valid:
        raise InputError(f"{what} is not a valid polygon: {explain_validity(poly)}", source)
    if poly.area == 0:
        raise InputError(f"{what} is a degenerate polygon (zero area)", source)
    return poly


def parse_site(data: Mapping[str, Any], source: str = "<site>", default_name: str = "") -> Site:
    """Validate a site FeatureCollection (a dict) and return the ``Site``.

    Raises ``InputError`` naming ``source`` for anything malformed.
    """
    if not isinstance(data, Mapping) or data.get("type") != "FeatureCollection":
        raise InputError("not a GeoJSON FeatureCollection", source)
    if "crs" in data:
        _check_crs_member(data["crs"], source)
    features = data.get("features")
    if not isinstance(features, list):
        raise InputError("FeatureCollection has no 'features' list", source)
    aoi: Polygon | None = None
    aoi_props: Mapping[str, Any] = {}
    zones: dict[str, Polygon] = {}
    descriptions: dict[str, str] = {}
    tracks: list[LineString] = []
    for n, feat in enumerate(features):
        if not isinstance(feat, Mapping):
            raise InputError(f"feature {n} is not an object", source)
        props = feat.get("properties") or {}
        role = props.get("role")
        if role == "aoi":
            if aoi is not None:
                raise InputError("more than one feature with role 'aoi'", source)
            aoi = _polygon(feat.get("geometry"), "AOI", source)
            aoi_props = props
        elif role == "zone":
            zname = props.get("name")
            if not zname or not isinstance(zname, str):
                raise InputError(f"zone feature {n} has no 'name'", source)
            if zname in zones:
                raise InputError(f"zone {zname!r} defined twice", source)
            zones[zname] = _polygon(feat.get("geometry"), f"zone {zname!r}", source)
            if props.get("description"):
                descriptions[zname] = str(props["description"])
        elif role == "track":
            tracks.extend(_lines(feat.get("geometry"), f"track feature {n}", source))
        else:
            raise InputError(
                f"feature {n} has role {role!r}, expected 'aoi', 'zone' or 'track'", source)
    if aoi is None:
        raise InputError("no feature with role 'aoi' (exactly one AOI Polygon is required)", source)

    name = str(data.get("name") or aoi_props.get("name") or default_name).strip().lower()
    if not _NAME_RE.match(name):
        raise InputError(
            f"site name {name!r} must be lower-case letters, digits, '_' or '-'", source
        )
    timezone = str(data.get("timezone") or "UTC")
    try:
        ZoneInfo(timezone)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise InputError(f"unknown timezone {timezone!r}", source) from exc

    events = []
    for n, ev in enumerate(data.get("events") or []):
        try:
            events.append(Event(date=dt.date.fromisoformat(str(ev["date"])), name=str(ev["name"])))
        except (KeyError, TypeError, ValueError) as exc:
            raise InputError(f"event {n} needs an ISO 'date' and a 'name' ({exc})", source) from exc
    events.sort(key=lambda e: e.date)

    properties: dict[str, Any] = {k: v for k, v in data.items() if k not in _SITE_FIELDS}
    properties["zone_descriptions"] = descriptions
    properties.setdefault("approximate", False)
    if "local_crs" in properties:
        try:
            CRS.from_user_input(properties["local_crs"])
        except Exception as exc:
            raise InputError(f"unknown local_crs {properties['local_crs']!r}", source) from exc
    if "center" not in properties:
        c = aoi.centroid
        properties["center"] = [round(c.x, 7), round(c.y, 7)]
    return Site(
        name=name,
        title=str(data.get("title") or name),
        aoi=aoi,
        zones=zones,
        timezone=timezone,
        events=tuple(events),
        notes=str(data.get("notes") or ""),
        properties=properties,
        tracks=MultiLineString(tracks) if tracks else None,
    )


def _lines(geom: Any, what: str, source: str) -> list[LineString]:
    """The LineStrings of a track feature's (Multi)LineString geometry."""
    try:
        g = shape(geom)
    except Exception as exc:
        raise InputError(f"{what}: invalid geometry ({exc})", source) from exc
    parts = list(g.geoms) if isinstance(g, MultiLineString) else [g]
    if not parts or any(not isinstance(p, LineString) or p.is_empty or p.length == 0
                        for p in parts):
        raise InputError(f"{what} must be a non-empty LineString or MultiLineString, got "
                         f"{g.geom_type}", source)
    for p in parts:
        x, y = shapely.get_coordinates(p).T
        if not (abs(x) <= 180).all() or not (abs(y) <= 90).all():
            raise InputError(f"{what}: coordinates are not lon/lat (EPSG:4326)", source)
    return parts


def load_site_geojson(path: str | Path) -> Site:
    """Read and validate a site GeoJSON file; ``InputError`` naming the file if it is bad."""
    path = Path(path)
    if not path.exists():
        raise InputError("no such file", path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(f"not a readable JSON file ({exc})", path) from exc
    return parse_site(data, str(path), default_name=path.stem.lower())


def site_to_geojson(site: Site) -> dict[str, Any]:
    """The site as the FeatureCollection ``parse_site`` reads (for storing and exporting)."""
    props = dict(site.properties)
    descriptions = dict(props.pop("zone_descriptions", {}) or {})
    features: list[dict[str, Any]] = [
        {"type": "Feature", "properties": {"role": "aoi", "name": site.name},
         "geometry": mapping(site.aoi)}
    ]
    for zname, poly in site.zones.items():
        zp: dict[str, Any] = {"role": "zone", "name": zname}
        if zname in descriptions:
            zp["description"] = descriptions[zname]
        features.append({"type": "Feature", "properties": zp, "geometry": mapping(poly)})
    if site.tracks is not None:
        features.append({"type": "Feature", "properties": {"role": "track"},
                         "geometry": mapping(site.tracks)})
    out: dict[str, Any] = {"type": "FeatureCollection", "name": site.name, "title": site.title,
                           "timezone": site.timezone}
    out.update(props)
    out["notes"] = site.notes
    out["events"] = [{"date": e.date.isoformat(), "name": e.name} for e in site.events]
    out["features"] = json.loads(json.dumps(features))  # tuples -> lists
    return out


def builtin_sites() -> list[Site]:
    """The sites shipped with railwatch (``railwatch/sites/data/*.geojson``), by name."""
    folder = resources.files("railwatch.sites") / "data"
    sites = []
    for entry in sorted(folder.iterdir(), key=lambda e: e.name):
        if entry.name.endswith(".geojson"):
            data = json.loads(entry.read_text(encoding="utf-8"))
            sites.append(parse_site(data, f"built-in {entry.name}", entry.name[:-8]))
    return sites


def list_sites(store: Store | None = None) -> list[Site]:
    """Built-in sites, then sites added to ``store`` (sorted by name within each group)."""
    sites = builtin_sites()
    if store is not None:
        known = {s.name for s in sites}
        sites += sorted((s for s in store.stored_sites() if s.name not in known),
                        key=lambda s: s.name)
    return sites


def get_site(name: str, store: Store | None = None) -> Site:
    """The site called ``name`` (case-insensitive); ``NotFoundError`` lists the known names."""
    sites = list_sites(store)
    for site in sites:
        if site.name == name.strip().lower():
            return site
    known = ", ".join(s.name for s in sites) or "none"
    raise NotFoundError(f"unknown site {name!r}; known sites: {known}")


def add_site(path: str | Path, store: Store) -> Site:
    """Validate a site GeoJSON file and save it in ``store`` (replacing a user site of that name).

    Built-in site names cannot be replaced.
    """
    site = load_site_geojson(path)
    if site.name in {s.name for s in builtin_sites()}:
        raise InputError(f"site name {site.name!r} is a built-in site; choose another name", path)
    with store.transaction():
        store.upsert_site(site)
    return site


def site_local_crs(site: Site) -> CRS:
    """The site's metric working CRS: its ``local_crs`` member, else pyproj's UTM estimate."""
    value = site.properties.get("local_crs")
    if value:
        return CRS.from_user_input(value)
    minx, miny, maxx, maxy = site.aoi.bounds
    infos = query_utm_crs_info(
        datum_name="WGS 84", area_of_interest=AreaOfInterest(minx, miny, maxx, maxy)
    )
    if not infos:  # polar sites: fall back to an equal-area projection centred on the site
        c = site.aoi.centroid
        return CRS.from_proj4(f"+proj=laea +lat_0={c.y} +lon_0={c.x} +datum=WGS84 +units=m")
    return CRS.from_epsg(int(infos[0].code))


def to_local(geom: Any, site: Site) -> Any:
    """A lon/lat shapely geometry projected into ``site_local_crs(site)`` (metres)."""
    tr = Transformer.from_crs(_WGS84, site_local_crs(site), always_xy=True)
    return shapely.transform(geom, tr.transform, interleaved=False)


def site_area_km2(site: Site, geom: Any | None = None) -> float:
    """Area in km² of the site's AOI (or of ``geom``, lon/lat) in the site's local CRS."""
    return float(to_local(site.aoi if geom is None else geom, site).area) / 1e6


def zone_areas_km2(site: Site) -> dict[str, float]:
    """Each zone's area in km² (local CRS)."""
    return {name: site_area_km2(site, poly) for name, poly in site.zones.items()}

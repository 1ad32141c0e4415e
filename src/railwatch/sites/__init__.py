"""Sites: the built-in registry (Tumangang, Khasan) plus user sites kept in the store."""

from railwatch.sites.registry import (
    add_site,
    builtin_sites,
    get_site,
    list_sites,
    load_site_geojson,
    parse_site,
    site_area_km2,
    site_local_crs,
    site_to_geojson,
    to_local,
    zone_areas_km2,
)

__all__ = [
    "add_site",
    "builtin_sites",
    "get_site",
    "list_sites",
    "load_site_geojson",
    "parse_site",
    "site_area_km2",
    "site_local_crs",
    "site_to_geojson",
    "to_local",
    "zone_areas_km2",
]

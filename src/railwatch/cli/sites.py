"""`railwatch sites ...`: list, show and add watched sites."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.table import Table

from railwatch.cli.options import console, info, state
from railwatch.sites import (
    add_site,
    builtin_sites,
    get_site,
    list_sites,
    site_area_km2,
    site_local_crs,
    to_local,
    zone_areas_km2,
)
from railwatch.store import Store

sites_app = typer.Typer(help="List, show and add watched sites.", no_args_is_help=True)


@sites_app.command("list")
def list_cmd() -> None:
    """List the built-in sites and the sites added to the store."""
    builtin = {s.name for s in builtin_sites()}
    with Store(state.db) as store:
        sites = list_sites(store)
    table = Table("name", "title", "AOI km²", "zones", "source")
    for s in sites:
        table.add_row(s.name, s.title, f"{site_area_km2(s):.2f}", str(len(s.zones)),
                      "built-in" if s.name in builtin else "store")
    console.print(table)


@sites_app.command("show")
def show_cmd(name: str = typer.Argument(..., help="Site name.")) -> None:
    """Show a site: AOI area in km², zones with their areas, timezone and events."""
    with Store(state.db) as store:
        site = get_site(name, store)
    console.print(f"[bold]{site.name}[/]: {site.title}")
    console.print(f"AOI area: {site_area_km2(site):.3f} km²  (local CRS {site_local_crs(site)})")
    console.print(f"timezone: {site.timezone}")
    if site.tracks is not None:
        km = to_local(site.tracks, site).length / 1000
        console.print(f"track map: {len(site.tracks.geoms)} lines, {km:.1f} km (railcars "
                      "count only on a track)")
    else:
        console.print("track map: none (every railcar in the AOI counts)")
    if site.properties.get("approximate"):
        console.print("[yellow]coordinates are approximate[/]")
    if site.notes:
        console.print(site.notes, soft_wrap=True)
    descriptions = site.properties.get("zone_descriptions", {}) or {}
    table = Table("zone", "km²", "description", title="zones")
    for zone, area in zone_areas_km2(site).items():
        table.add_row(zone, f"{area:.3f}", str(descriptions.get(zone, "")))
    console.print(table)
    if site.events:
        events = Table("date", "event", title="events")
        for ev in site.events:
            events.add_row(ev.date.isoformat(), ev.name)
        console.print(events)


@sites_app.command("add")
def add_cmd(path: Path = typer.Argument(..., help="Site GeoJSON (WGS84 lon/lat).")) -> None:
    """Validate a site GeoJSON file and add it to the store."""
    with Store(state.db) as store:
        site = add_site(path, store)
    info(f"added site [bold]{site.name}[/] ({site_area_km2(site):.3f} km², "
         f"{len(site.zones)} zones)")


def register(app: typer.Typer) -> None:
    """Add the `sites` command group."""
    app.add_typer(sites_app, name="sites")

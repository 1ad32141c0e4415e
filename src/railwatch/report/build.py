"""`build_report`: from the store to ``report.html``, ``report.pdf``, findings and exports."""

from __future__ import annotations

import datetime as dt
import json
import os
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from railwatch import __version__
from railwatch.analytics.observe import site_masks
from railwatch.errors import InputError
from railwatch.report import annotate, charts, exports
from railwatch.report.analysis import Analysis, analyse
from railwatch.report.findings import (
    Findings,
    Row,
    compute_findings,
    default_periods,
    rows_from_observations,
)
from railwatch.report.html import write_html
from railwatch.report.pdf import html_to_pdf
from railwatch.types import RAILCAR_CLASSES, Detections, Event, Observation, Scene, Site

#: Pseudo-site: Tumangang and Khasan together.
CROSSING = "crossing"
CROSSING_SITES = ("tumangang", "khasan")

METHOD = (
    "Railcars and shipping containers were detected automatically in each image by"
    " railwatch's detector and counted inside the site's area of interest. Each count"
    " carries a range from the detector's measured error rates and from the share of the"
    " site that was cloudy, shadowed or outside the image. Counts from images that saw"
    " only part of the site are lower bounds and never set records. A count is called"
    " unprecedented only when it clears every earlier complete count in the trailing"
    " five-year window by more than their combined uncertainty. Onsets are change points"
    " in the series of complete counts; their dates are uncertain by the gap between"
    " images. Class shares compare all railcar sightings in two periods, so a train seen"
    " in several images counts several times; a shift is stated only when a permutation"
    " test over images (not cars) finds it. Tarp-covered loads are flagged but their"
    " cargo is not identified. Every detection is drawn on the images and exported"
    " (GeoJSON, GeoPackage, KML) so each count can be checked by eye."
)


class StoreLike(Protocol):
    """What the brief needs from a store (``railwatch.store.Store`` has it)."""

    def observations(self, site: str) -> list[Observation]: ...
    def get_scene(self, scene_id: int) -> Scene: ...
    def get_detections(self, scene_id: int) -> Detections | None: ...


@dataclass
class ReportResult:
    """Paths written by `build_report` and what it found."""

    out_dir: Path
    html: Path
    pdf: Path | None
    pdf_skipped: str | None
    findings_json: Path
    findings: Findings
    exports: dict[str, Path] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


def _sites_for(name: str, store: Any) -> tuple[list[Site], str]:
    from railwatch.sites import get_site

    if name.strip().lower() == CROSSING:
        sites = [get_site(n, store) for n in CROSSING_SITES]
        return sites, "Tumangang–Khasan border crossing"
    site = get_site(name, store)
    return [site], site.title or site.name


def _short_title(site: Site) -> str:
    return site.title.split("(")[0].split(",")[0].strip() or site.name


def combine_observations(
    per_site: Sequence[Sequence[Observation]], name: str = CROSSING, tolerance_days: int = 3
) -> list[Observation]:
    """Observations of several sites summed per group: each group starts at the earliest
    unpaired observation and takes, from every other site, the unpaired observation nearest
    in time within ``tolerance_days`` (as ``railwatch timeline crossing`` pairs them). A
    group missing a site, or holding a partial view, is a lower bound."""
    tol = dt.timedelta(days=tolerance_days)
    pending = [sorted(obs, key=lambda o: o.acquired) for obs in per_site]
    used: set[tuple[int, int]] = set()
    allobs = sorted(((o.acquired, k, i) for k, obs in enumerate(pending)
                     for i, o in enumerate(obs)), key=lambda t: (t[0], t[1]))
    out = []
    for when, k, i in allobs:
        if (k, i) in used:
            continue
        used.add((k, i))
        group = [pending[k][i]]
        for k2, obs in enumerate(pending):
            if k2 == k:
                continue
            best = None
            for i2, o in enumerate(obs):
                if (k2, i2) in used or abs(o.acquired - when) > tol:
                    continue
                if best is None or abs(o.acquired - when) < abs(obs[best].acquired - when):
                    best = i2
            if best is not None:
                used.add((k2, best))
                group.append(obs[best])
        counts: dict[str, int] = {}
        zones: dict[str, int] = {}
        for o in group:
            for key, v in o.counts.items():
                counts[key] = counts.get(key, 0) + int(v)
            for key, v in o.containers_by_zone.items():
                zk = f"{o.site}:{key}"
                zones[zk] = zones.get(zk, 0) + int(v)
        out.append(
            Observation(
                site=name,
                scene_id=group[0].scene_id,
                acquired=group[0].acquired,
                counts=counts,
                containers_by_zone=zones,
                usable_fraction=min(o.usable_fraction for o in group) * len(group)
                / len(per_site),
                count_low=sum(o.count_low for o in group),
                count_high=sum(o.count_high for o in group),
                partial=any(o.partial for o in group) or len(group) < len(per_site),
                sensor=group[0].sensor,
                gsd_m=group[0].gsd_m,
            )
        )
    return out


def _counted(det: Detections, site: Site) -> Detections:
    """The detections the site's count is made of: in the AOI and, with a track map,
    railcars on a track (`railwatch.analytics.trackmap`), so pictures match the counts."""
    in_aoi, off = site_masks(det, site)
    return det[in_aoi & ~off]


def _filter(obs: Sequence[Observation], start: dt.date | None, end: dt.date | None,
            as_of: dt.date | None) -> list[Observation]:
    out = []
    for o in obs:
        d = o.acquired.date()
        if (start and d < start) or (end and d > end) or (as_of and d >= as_of):
            continue
        out.append(o)
    return out


def _atomic_json(obj: Any, path: Path) -> Path:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(obj, fh, indent=2, ensure_ascii=False, default=str)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


class _Images:
    """Scene lookups and AOI-clipped detections, cached."""

    def __init__(self, store: StoreLike, sites: Sequence[Site]) -> None:
        self.store, self.sites = store, {s.name: s for s in sites}
        self._det: dict[tuple[int, str], Detections | None] = {}

    def scene(self, scene_id: int | None) -> Scene | None:
        if scene_id is None:
            return None
        try:
            return self.store.get_scene(int(scene_id))
        except Exception:
            return None

    def detections(self, scene_id: int | None, site: str) -> Detections | None:
        if scene_id is None:
            return None
        key = (int(scene_id), site)
        if key not in self._det:
            det = self.store.get_detections(int(scene_id))
            s = self.sites.get(site)
            self._det[key] = _counted(det, s) if (det is not None and s is not None) else det
        return self._det[key]


def _row_picture(img: _Images, obs: Observation, site: Site, max_size: int) -> np.ndarray | None:
    sc = img.scene(obs.scene_id)
    det = img.detections(obs.scene_id, site.name)
    if sc is None or not Path(sc.path).exists():
        return None
    return annotate.annotated_image(sc.path, det if det is not None else Detections.empty(),
                                    site.aoi.buffer(0.0005), max_size=max_size)


def _latest(img: _Images, site: Site, obs: Sequence[Observation]) -> dict[str, Any] | None:
    """The latest usable image of ``site`` with detections drawn, and its busiest track."""
    usable = [o for o in obs if o.usable_fraction >= 0.5]
    if not usable:
        return None
    lo = usable[-1]
    pic = _row_picture(img, lo, site, 1400)
    sc = img.scene(lo.scene_id)
    if pic is None or sc is None:
        return None
    det = img.detections(lo.scene_id, site.name) or Detections.empty()
    chip = annotate.busiest_chip(sc.path, det)
    c = lo.counts
    return {
        "site": _short_title(site),
        "date": lo.acquired.date().isoformat(),
        "uri": annotate.to_data_uri(pic),
        "caption": (
            f"{_short_title(site)}, {lo.acquired:%Y-%m-%d %H:%M} UTC"
            f" ({sc.sensor or 'unknown sensor'}, {sc.gsd_m:.2f} m):"
            f" {lo.total} railcars (range {lo.count_low}–{lo.count_high}),"
            f" {int(c.get('covered', 0))} with covered loads,"
            f" {int(c.get('containers', 0))} containers;"
            f" {lo.usable_fraction:.0%} of the site usable"
            + (" — the count is a lower bound." if lo.partial else ".")
            + (f" {int(c['off_track'])} railcar-like detections off the site's tracks are"
               " neither counted nor drawn." if c.get("off_track") else "")
        ),
        "chip_uri": annotate.to_data_uri(chip) if chip is not None else None,
        "chip_caption": "Zoom on the busiest stretch of track (about 220 m across),"
        " every detection drawn.",
    }


def is_simulated(paths: Sequence[str]) -> bool:
    """True when an image sits beside a ``manifest.json`` written by ``railwatch simulate``."""
    for folder in {Path(p).parent for p in paths}:
        try:
            data = json.loads((folder / "manifest.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if isinstance(data, dict) and data.get("generated_by") == "railwatch simulate":
            return True
    return False


def _label(img: np.ndarray, text: str) -> np.ndarray:
    import cv2

    out = img.copy()
    cv2.rectangle(out, (0, 0), (min(out.shape[1], 9 * len(text) + 12), 22), (0, 0, 0), -1)
    cv2.putText(out, text, (6, 16), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (255, 255, 255), 1, cv2.LINE_AA)
    return out


def build_report(
    store: StoreLike,
    site: str,
    out_dir: str | Path,
    start: dt.date | None = None,
    end: dt.date | None = None,
    as_of: dt.date | None = None,
    *,
    pdf: bool = True,
    simulated: bool | None = None,
    credits: str | None = None,
    progress: Callable[[str], None] | None = None,
) -> ReportResult:
    """Write the brief for ``site`` (or ``crossing``) into ``out_dir``.

    ``as_of``: write it as it would have been written on that day (only earlier images).
    Writes ``report.html`` (self-contained), ``report.pdf`` (if chromium is there and
    ``pdf``), ``findings.json``, ``detections.geojson``/``.gpkg``/``.kml`` and
    ``observations.csv``.
    """
    say = progress or (lambda _m: None)
    if start and end and start > end:
        raise InputError(f"--from {start} is after --to {end}")
    sites, title = _sites_for(site, store)
    name = CROSSING if len(sites) > 1 else sites[0].name
    per_site = [_filter(store.observations(s.name), start, end, as_of) for s in sites]
    if not any(per_site):
        raise InputError(
            f"no observations of {name} in the store for that period; run `railwatch analyze` first"
        )
    obs = per_site[0] if len(sites) == 1 else combine_observations(per_site, name)
    events: list[Event] = sorted({e for s in sites for e in s.events}, key=lambda e: e.date)
    if as_of:
        events = [e for e in events if e.date < as_of]
    say("analytics")
    periods = default_periods(rows_from_observations(obs))
    an: Analysis = analyse(obs, events, name, store=store, sites=sites, as_of=as_of,
                           periods=periods)
    rows = rows_from_observations(obs, an.timeline)
    if len(sites) > 1:
        titles = {st.name: _short_title(st) for st in sites}
        for rec in an.changes or []:
            if rec.get("site") in titles:
                rec["text"] = f"{titles[rec['site']]}: {rec['text']}"
    img = _Images(store, sites)

    # covered loads by class on the peak day, from the detections themselves
    say("findings")
    covered_by_date: dict[str, dict[str, int]] = {}
    for s_, so in zip(sites, per_site, strict=True):
        for o in so:
            if int(o.counts.get("covered", 0)) <= 0:
                continue
            det = img.detections(o.scene_id, s_.name)
            if det is None:
                continue
            r = det.railcars
            day = covered_by_date.setdefault(o.acquired.date().isoformat(), {})
            for c in RAILCAR_CLASSES:
                day[c] = day.get(c, 0) + int(np.sum(r.covered & (r.cls == c)))
    zone_titles = {}
    for s in sites:
        for z in s.zones:
            descs = (s.properties or {}).get("zone_descriptions") or {}
            desc = str(descs.get(z, ""))
            label = desc.split("(")[0].strip() or z.replace("_", " ")
            if "warehouse" not in label and "freight" in z:
                label += " (warehouse area)"
            zone_titles[z] = label
            zone_titles[f"{s.name}:{z}"] = f"{_short_title(s)} {label}"
    findings = compute_findings(
        rows, site=name, title=_short_title(sites[0]) if len(sites) == 1 else title,
        events=events, onsets=an.onsets, changes=an.changes, mix_comparison=an.mix,
        covered_by_date=covered_by_date, zone_titles=zone_titles, as_of=as_of,
    )
    findings.data["analytics_notes"] = list(an.notes)

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)

    # pictures: latest image with detections + busiest-track chip; before/after pairs
    say("images")
    main_site, main_obs = sites[0], per_site[0]
    latest = [x for x in (_latest(img, st, so) for st, so in zip(sites, per_site, strict=True))
              if x is not None]
    pairs = []
    targets = (findings.data.get("records") or [findings.data.get("peak")])[-3:]
    onset_days = sorted(o["date"] for o in findings.data.get("onsets") or [])
    by_date = {o.acquired.date().isoformat(): o for o in main_obs}
    for rec in targets:
        if not rec or rec["date"] not in by_date:
            continue
        after = by_date[rec["date"]]
        rise = [d for d in onset_days if d <= rec["date"]]
        cands = [o for o in main_obs if not o.partial and o.usable_fraction >= 0.5
                 and o.acquired < after.acquired
                 and (not rise or o.acquired.date().isoformat() < rise[-1])]
        if not cands:
            continue
        before = cands[-1] if rise else min(cands[-20:], key=lambda o: o.total)
        a = _row_picture(img, before, main_site, 900)
        b = _row_picture(img, after, main_site, 900)
        if a is None or b is None:
            continue
        d0, d1 = before.acquired.date(), after.acquired.date()
        pairs.append({
            "uri": annotate.to_data_uri(annotate.side_by_side(
                [_label(a, f"{d0}: {before.total} railcars"),
                 _label(b, f"{d1}: {after.total} railcars")])),
            "caption": f"{_short_title(main_site)} before the rise ({d0}, {before.total}"
            f" railcars) and at its peak ({d1}, {after.total} railcars, range"
            f" {after.count_low}–{after.count_high}), every detection drawn.",
        })

    say("charts")
    timeline_uri = "data:image/png;base64," + _b64(
        charts.timeline_png(rows, events, an.onsets, title=f"{title}: railcars per image")
    )
    mix = findings.data.get("mix") or {}
    mix_uri = ("data:image/png;base64," + _b64(charts.mix_png(mix, "Class mix by period"))
               if any(v.get("railcars") for v in mix.values()) else None)

    # images table: every observation of every site
    table = []
    for s, so in zip(sites, per_site, strict=True):
        table += [r.as_dict() for r in rows_from_observations(so)]
        for r in table[-len(so):] if so else []:
            r["site"] = s.name
    table.sort(key=lambda r: (r["date"], r["site"]))
    obs_all = [o for so in per_site for o in so]
    sensors = sorted({str(r["sensor"]) for r in table if r.get("sensor")})
    if simulated is None:
        scene_paths = [sc.path for o in obs_all if (sc := img.scene(o.scene_id)) is not None]
        simulated = any("sim" in s.lower() for s in sensors) or is_simulated(scene_paths)
    if credits is None:
        credits = ("Simulated imagery rendered by the railwatch simulator (not real satellite"
                   " data); all counts come from the detector." if simulated else
                   "Imagery: " + (", ".join(sensors) or "sensors not recorded")
                   + " — © their providers.")
    change_pairs = []
    for p in an.change_pairs:
        chips = p.get("chips")
        if isinstance(chips, Sequence) and len(chips) == 2:
            try:
                pics = [_decode(c) for c in chips]
                change_pairs.append({
                    "uri": annotate.to_data_uri(annotate.side_by_side(pics)),
                    "caption": p["change"]["text"],
                })
            except Exception as exc:
                an.notes.append(f"change chip not drawn ({exc})")
    changes_note = (
        "No facility changes are recorded in the store for this site and period (run"
        " `railwatch changes SITE` to look for them)." if an.changes is not None else
        "Facility-change analysis was not available for this brief."
    )
    context = {
        "title": title,
        "as_of": (as_of or (rows[-1].date + dt.timedelta(days=1) if rows else dt.date.today()))
        .isoformat(),
        "simulated": simulated,
        "n_images": len(table),
        "first_image": findings.data.get("first_image"),
        "last_image": findings.data.get("last_image"),
        "sites_line": " + ".join(_short_title(s) for s in sites) if len(sites) > 1 else "",
        "sentences": findings.sentences,
        "latest": latest,
        "legend": [(c, annotate.class_hex(c)) for c in RAILCAR_CLASSES],
        "pairs": pairs,
        "timeline_uri": timeline_uri,
        "mix_uri": mix_uri,
        "changes": findings.data.get("changes") or [],
        "change_pairs": change_pairs,
        "changes_note": changes_note,
        "rows": table,
        "multi_site": len(sites) > 1,
        "credits": credits,
        "method": METHOD + (" Not available in this brief: " + "; ".join(an.notes) + "."
                            if an.notes else ""),
        "version": __version__,
        "generated": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
    }

    say("exports")
    items: list[tuple[Row, Detections]] = []
    for s, so in zip(sites, per_site, strict=True):
        for r, o in zip(rows_from_observations(so), so, strict=True):
            det = img.detections(o.scene_id, s.name)
            if det is not None:
                items.append((r, det))
    ex = {
        "detections.geojson": exports.write_detections_geojson(items, out / "detections.geojson"),
        "detections.gpkg": exports.write_detections_gpkg(items, out / "detections.gpkg"),
        "detections.kml": exports.write_kml(items, out / "detections.kml", name=title),
        "observations.csv": exports.write_observations_csv(
            rows_from_observations([o for so in per_site for o in so]), out / "observations.csv"),
    }
    fj = _atomic_json(findings.to_json(), out / "findings.json")
    html = write_html(context, out / "report.html")
    pdf_path, skipped = None, "PDF not requested (--no-pdf)"
    if pdf:
        say("pdf")
        skipped = html_to_pdf(html, out / "report.pdf")
        pdf_path = None if skipped else out / "report.pdf"
    return ReportResult(out_dir=out, html=html, pdf=pdf_path, pdf_skipped=skipped,
                        findings_json=fj, findings=findings, exports=ex, notes=list(an.notes))


def _b64(data: bytes) -> str:
    import base64

    return base64.b64encode(data).decode("ascii")


def _decode(chip: bytes | np.ndarray) -> np.ndarray:
    """A chip given as encoded PNG/JPEG bytes or an RGB array -> RGB array."""
    if isinstance(chip, np.ndarray):
        return chip
    import cv2

    bgr = cv2.imdecode(np.frombuffer(chip, np.uint8), cv2.IMREAD_COLOR)
    if bgr is None:
        raise ValueError("undecodable chip")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)

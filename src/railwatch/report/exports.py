"""Exports beside the brief: detections as GeoJSON, GeoPackage and KML; observations as CSV.

All writes are atomic (temp file in the target folder, then rename). GeoPackage goes
through pyogrio (GDAL); KML is plain XML (xml.etree).
"""

from __future__ import annotations

import csv
import io
import json
import os
import tempfile
import xml.etree.ElementTree as ET
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from shapely import to_wkb
from shapely.geometry import Polygon

from railwatch.geojson import to_geojson
from railwatch.report.annotate import class_hex
from railwatch.report.findings import Row
from railwatch.types import Detections

#: Per-feature columns added to every exported detection.
EXPORT_FIELDS = ("scene_id", "date", "kind", "class", "score", "covered", "color", "length_m")


def _atomic(path: Path, write: Callable[[Path], None]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.", suffix=path.suffix)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        tmp_path.unlink()
        write(tmp_path)
        os.replace(tmp_path, path)
    except BaseException:
        tmp_path.unlink(missing_ok=True)
        raise
    return path


def _write_text(path: Path, text: str) -> Path:
    return _atomic(path, lambda p: p.write_text(text, encoding="utf-8"))


def detections_features(items: Sequence[tuple[Row, Detections]]) -> list[dict[str, Any]]:
    """GeoJSON features (EPSG:4326) of every detection, tagged with scene id and date."""
    feats: list[dict[str, Any]] = []
    for row, det in items:
        for f in to_geojson(det)["features"]:
            f["properties"] = {"scene_id": row.scene_id, "date": row.date.isoformat(),
                               **f["properties"]}
            feats.append(f)
    return feats


def write_detections_geojson(items: Sequence[tuple[Row, Detections]], path: str | Path) -> Path:
    """One FeatureCollection of all detections of the images in the brief."""
    fc = {"type": "FeatureCollection", "features": detections_features(items)}
    return _write_text(Path(path), json.dumps(fc))


def write_detections_gpkg(items: Sequence[tuple[Row, Detections]], path: str | Path) -> Path:
    """A GeoPackage layer ``detections`` (EPSG:4326 polygons) via pyogrio."""
    from pyogrio.raw import write

    feats = detections_features(items)
    geoms = np.array(
        [to_wkb(Polygon(f["geometry"]["coordinates"][0])) for f in feats], dtype=object
    )
    cols: dict[str, list[Any]] = {k: [] for k in EXPORT_FIELDS}
    for f in feats:
        p = f["properties"]
        for k in EXPORT_FIELDS:
            cols[k].append(p.get(k))
    field_data = [
        np.array([-1 if v is None else v for v in cols["scene_id"]], dtype=np.int64),
        np.array(cols["date"], dtype=object),
        np.array(cols["kind"], dtype=object),
        np.array([v or "" for v in cols["class"]], dtype=object),
        np.array(cols["score"], dtype=np.float64),
        np.array(cols["covered"], dtype=np.int32),
        np.array(cols["color"], dtype=object),
        np.array(cols["length_m"], dtype=np.float64),
    ]

    def _w(p: Path) -> None:
        write(
            str(p), geometry=geoms, field_data=field_data, fields=list(EXPORT_FIELDS),
            crs="EPSG:4326", driver="GPKG", layer="detections", geometry_type="Polygon",
        )

    return _atomic(Path(path), _w)


def write_observations_csv(rows: Sequence[Row], path: str | Path) -> Path:
    """One line per image: date, counts by class, range, covered, containers, coverage."""
    buf = io.StringIO()
    dicts = [r.as_dict() for r in rows]
    fields = list(dicts[0]) if dicts else list(Row.__dataclass_fields__)
    w = csv.DictWriter(buf, fieldnames=fields, lineterminator="\n")
    w.writeheader()
    for d in dicts:
        w.writerow(d)
    return _write_text(Path(path), buf.getvalue())


def _kml_color(hex_rgb: str, alpha: str = "ff") -> str:
    s = hex_rgb.lstrip("#")
    return f"{alpha}{s[4:6]}{s[2:4]}{s[0:2]}"  # KML is aabbggrr


def write_kml(
    items: Sequence[tuple[Row, Detections]], path: str | Path, name: str = "railwatch"
) -> Path:
    """A KML for Google Earth: one folder per image date, one placemark per detection."""
    ns = "http://www.opengis.net/kml/2.2"
    ET.register_namespace("", ns)
    kml = ET.Element(f"{{{ns}}}kml")
    doc = ET.SubElement(kml, f"{{{ns}}}Document")
    ET.SubElement(doc, f"{{{ns}}}name").text = name
    from railwatch.report.annotate import CLASS_COLORS

    for c in [*CLASS_COLORS, "container"]:
        st = ET.SubElement(doc, f"{{{ns}}}Style", id=f"c-{c}")
        ls = ET.SubElement(st, f"{{{ns}}}LineStyle")
        ET.SubElement(ls, f"{{{ns}}}color").text = _kml_color(
            "#ffffff" if c == "container" else class_hex(c)
        )
        ET.SubElement(ls, f"{{{ns}}}width").text = "2"
        ps = ET.SubElement(st, f"{{{ns}}}PolyStyle")
        ET.SubElement(ps, f"{{{ns}}}fill").text = "0"
    for row, det in items:
        folder = ET.SubElement(doc, f"{{{ns}}}Folder")
        ET.SubElement(folder, f"{{{ns}}}name").text = f"{row.date.isoformat()} ({len(det)} objects)"
        ts = ET.SubElement(folder, f"{{{ns}}}TimeStamp")
        ET.SubElement(ts, f"{{{ns}}}when").text = row.acquired.isoformat()
        for f in to_geojson(det)["features"]:
            p = f["properties"]
            label = p["class"] if p["kind"] == "railcar" else "container"
            pm = ET.SubElement(folder, f"{{{ns}}}Placemark")
            ET.SubElement(pm, f"{{{ns}}}name").text = label + (" (covered)" if p["covered"] else "")
            ET.SubElement(pm, f"{{{ns}}}styleUrl").text = f"#c-{label}"
            ET.SubElement(pm, f"{{{ns}}}description").text = (
                f"score {p.get('score')}, length {p['length_m']} m, colour {p['color']}"
            )
            poly = ET.SubElement(pm, f"{{{ns}}}Polygon")
            ob = ET.SubElement(poly, f"{{{ns}}}outerBoundaryIs")
            lr = ET.SubElement(ob, f"{{{ns}}}LinearRing")
            ET.SubElement(lr, f"{{{ns}}}coordinates").text = " ".join(
                f"{x:.7f},{y:.7f},0" for x, y in f["geometry"]["coordinates"][0]
            )
    text = ET.tostring(kml, encoding="unicode", xml_declaration=True)
    return _write_text(Path(path), text)

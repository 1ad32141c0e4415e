"""Scene metadata from a GeoTIFF/COG without reading its pixels.

CRS, transform, footprint (EPSG:4326), GSD in metres (geodesic, so geographic CRSs are
right too), bands, dtype, acquisition datetime and sensor (from dataset tags, a
Planet/Maxar-style sidecar next to the file, or a fallback), and a streaming content
hash. Only two small blocks per band are decoded, to catch truncated files.
"""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
import json
import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
from pyproj import CRS, Geod, Transformer
from pyproj.exceptions import CRSError, ProjError
from rasterio.errors import RasterioError
from rasterio.windows import Window
from shapely.geometry import Polygon

from railwatch.errors import InputError
from railwatch.types import Scene

#: Data types ingest accepts (16-bit and float are scaled to 8-bit when read).
SUPPORTED_DTYPES = ("uint8", "uint16", "int16", "float32", "float64")
_TIFF_MAGIC = (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")
_GEOD = Geod(ellps="WGS84")
_HASH_CHUNK = 1 << 20
#: Dataset tags read for the acquisition time, in order of trust.
DATETIME_TAGS = ("ACQUISITION_DATETIME", "ACQUISITION_TIME", "ACQUIRED", "DATETIME_ACQUIRED")
SENSOR_TAGS = ("SENSOR", "SATELLITE", "PLATFORM", "INSTRUMENT")
_MAXAR_SAT = {"WV01": "WorldView-1", "WV02": "WorldView-2", "WV03": "WorldView-3",
              "WV04": "WorldView-4", "GE01": "GeoEye-1", "QB02": "QuickBird-2"}
# Rasterio env for metadata reads. No GDAL_CACHEMAX here: the block cache size is
# process-wide in GDAL, and a rasterio.Env that sets it from a worker thread (detect_each
# reads metadata in threads) left it tiny for the whole process: decimated reads
# (cloud_fraction_in) then decoded every tile again for each output row, 50x slower.
# The metadata checks read two blocks per band, so the cache size does not matter here.
_ENV = {"GDAL_DISABLE_READDIR_ON_OPEN": "EMPTY_DIR"}


@dataclass(frozen=True)
class Sidecar:
    """What a sidecar metadata file told us."""

    path: Path
    acquired: dt.datetime | None
    sensor: str | None


def parse_datetime(text: str, source: str = "") -> dt.datetime:
    """ISO 8601 (``Z`` allowed) or TIFF ``YYYY:MM:DD HH:MM:SS``; naive times are UTC."""
    s = str(text).strip()
    m = re.fullmatch(r"(\d{4}):(\d{2}):(\d{2})[ T](\d{2}:\d{2}:\d{2})", s)
    if m:
        s = f"{m[1]}-{m[2]}-{m[3]}T{m[4]}"
    if s.endswith(("Z", "z")):
        s = s[:-1] + "+00:00"
    # Python < 3.11 forms aside, fromisoformat takes at most 6 fraction digits
    s = re.sub(r"(\.\d{6})\d+", r"\1", s)
    try:
        value = dt.datetime.fromisoformat(s)
    except ValueError as exc:
        raise InputError(
            f"unreadable datetime {text!r} (expected ISO 8601)", source or None
        ) from exc
    if value.tzinfo is None:
        value = value.replace(tzinfo=dt.UTC)
    return value.astimezone(dt.UTC)


@functools.lru_cache(maxsize=32)
def _listing(folder: str, mtime_ns: int) -> dict[str, Path]:
    """Lower-case file name -> path for one folder (cached while the folder is unchanged)."""
    return {p.name.lower(): p for p in Path(folder).iterdir() if p.is_file()}


def _sidecar_candidates(path: Path) -> list[Path]:
    folder, stem = path.parent, path.stem
    names = _listing(str(folder), folder.stat().st_mtime_ns) if folder.exists() else {}
    found: list[Path] = []
    for ext in (".json", "_metadata.json", ".xml", ".imd", "_metadata.xml"):
        p = names.get((stem + ext).lower())
        if p is not None:
            found.append(p)
    # Planet: <scene id>_<asset>.tif beside <scene id>_metadata.json
    for lname, p in sorted(names.items()):
        if lname.endswith("_metadata.json") and p not in found:
            prefix = lname[: -len("_metadata.json")]
            if stem.lower().startswith(prefix + "_") or stem.lower() == prefix:
                found.append(p)
    return found


def _sidecar_json(p: Path) -> Sidecar | None:
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(f"unreadable sidecar metadata ({exc})", p) from exc
    if not isinstance(data, dict):
        return None
    props = data.get("properties") if isinstance(data.get("properties"), dict) else data
    text = props.get("acquired") or props.get("datetime")
    if not text:
        return None
    sensor = None
    for key in ("instrument", "platform", "provider", "satellite_id", "constellation"):
        if props.get(key):
            sensor = str(props[key])
            break
    return Sidecar(p, parse_datetime(text, str(p)), sensor)


def _sidecar_maxar(p: Path) -> Sidecar | None:
    try:
        text = p.read_text(encoding="utf-8", errors="replace")
    except OSError as exc:
        raise InputError(f"unreadable sidecar metadata ({exc})", p) from exc
    values: dict[str, str] = {}
    if p.suffix.lower() == ".xml":
        try:
            root = ET.fromstring(text)
        except ET.ParseError as exc:
            raise InputError(f"malformed sidecar XML ({exc})", p) from exc
        for el in root.iter():
            tag = el.tag.rsplit("}", 1)[-1].lower()
            if el.text and el.text.strip() and tag not in values:
                values[tag] = el.text.strip()
    else:  # .IMD: key = value; lines
        for m in re.finditer(r"(?m)^\s*(\w+)\s*=\s*\"?([^\";]*)\"?\s*;", text):
            values.setdefault(m[1].lower(), m[2].strip())
    stamp = values.get("firstlinetime") or values.get("earliestacqtime")
    if not stamp:
        return None
    sat = values.get("satid")
    return Sidecar(p, parse_datetime(stamp, str(p)), _MAXAR_SAT.get(sat or "", sat))


def read_sidecar(path: str | Path) -> Sidecar | None:
    """Acquisition time and sensor from a Planet JSON or Maxar XML/IMD next to ``path``."""
    for cand in _sidecar_candidates(Path(path)):
        sc = _sidecar_json(cand) if cand.suffix.lower() == ".json" else _sidecar_maxar(cand)
        if sc is not None:
            return sc
    return None


def file_sha256(path: str | Path, chunk: int = _HASH_CHUNK) -> str:
    """SHA-256 of the file's bytes, read in chunks (flat memory)."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


def _open_error(path: Path, exc: Exception) -> InputError:
    with open(path, "rb") as fh:
        head = fh.read(4)
    if head in _TIFF_MAGIC:
        return InputError(f"truncated or corrupt TIFF (GDAL: {exc})", path)
    return InputError("not a raster (GDAL cannot read it as an image)", path)


def _check_blocks(ds: Any, path: Path) -> None:
    """Decode the first and last block of each band: truncated files fail here."""
    size = path.stat().st_size
    for bidx in range(1, ds.count + 1):
        bh, bw = ds.block_shapes[bidx - 1]
        nrows, ncols = -(-ds.height // bh), -(-ds.width // bw)
        last = (nrows - 1, ncols - 1)
        offset = ds.get_tag_item(f"BLOCK_OFFSET_{last[1]}_{last[0]}", "TIFF", bidx=bidx)
        nbytes = ds.get_tag_item(f"BLOCK_SIZE_{last[1]}_{last[0]}", "TIFF", bidx=bidx)
        if offset and nbytes and int(offset) + int(nbytes) > size:
            raise InputError(
                f"truncated or corrupt TIFF (band {bidx} data ends past the end of the file)",
                path,
            )
        for row, col in ((0, 0), last):
            win = Window(col * bw, row * bh, min(bw, ds.width - col * bw),
                         min(bh, ds.height - row * bh))
            try:
                ds.read(bidx, window=win)
            except RasterioError as exc:
                raise InputError(f"truncated or corrupt TIFF ({exc})", path) from exc


def _pixel_corners(ds: Any, densify: int = 16) -> np.ndarray:
    """The raster's outline in its own CRS, with ``densify`` points per edge."""
    t = np.linspace(0.0, 1.0, densify, endpoint=False)
    w, h = ds.width, ds.height
    cols = np.concatenate([t * w, np.full_like(t, w), (1 - t) * w, np.zeros_like(t)])
    rows = np.concatenate([np.zeros_like(t), t * h, np.full_like(t, h), (1 - t) * h])
    xs, ys = ds.transform @ (cols, rows)
    return np.column_stack([xs, ys])


@functools.lru_cache(maxsize=32)
def _to_wgs84(wkt: str) -> Transformer:
    """The transformer from a CRS (WKT) to lon/lat; cached, as the images of a batch mostly
    share one CRS and building it costs half a millisecond (pyproj's are thread-safe).
    Raises CRSError/ProjError for a CRS that is neither geographic nor projected."""
    crs = CRS.from_wkt(wkt)
    if not crs.is_geographic and not crs.is_projected:
        raise CRSError(f"{crs.name} is neither geographic nor projected")
    return Transformer.from_crs(crs, CRS.from_epsg(4326), always_xy=True)


def _gsd_m(ds: Any, tr: Transformer) -> float:
    """Ground size of one pixel at the image centre: mean of its geodesic width and height."""
    c, r = ds.width / 2.0, ds.height / 2.0
    pts = [ds.transform @ (c, r), ds.transform @ (c + 1, r), ds.transform @ (c, r + 1)]
    lon, lat = tr.transform([p[0] for p in pts], [p[1] for p in pts])
    _, _, dx = _GEOD.inv(lon[0], lat[0], lon[1], lat[1])
    _, _, dy = _GEOD.inv(lon[0], lat[0], lon[2], lat[2])
    return float((abs(dx) + abs(dy)) / 2.0)


def _tag(tags: dict[str, str], names: tuple[str, ...]) -> tuple[str, str] | None:
    upper = {k.upper(): v for k, v in tags.items()}
    for n in names:
        if upper.get(n):
            return n, upper[n].strip()
    return None


def read_scene_metadata(
    path: str | Path,
    datetime: dt.datetime | str | None = None,
    *,
    check: bool = True,
    hash_file: bool = True,
) -> Scene:
    """A ``Scene`` (id None) for the GeoTIFF at ``path``, reading no more than two blocks.

    Acquisition datetime, in order: the ``ACQUISITION_DATETIME`` tag, a sidecar
    (Planet ``*_metadata.json`` ``properties.acquired``; Maxar ``.XML``/``.IMD``
    ``firstLineTime``/``earliestAcqTime``), the ``TIFFTAG_DATETIME`` tag, then
    ``datetime``. Raises ``InputError`` naming the file for every problem.
    ``check=False`` skips the block reads that catch truncated files; ``hash_file=False``
    skips the SHA-256 (``sha256`` is then ``""``), for callers that only need metadata.
    """
    path = Path(path)
    if not path.exists():
        raise InputError("no such file", path)
    if path.is_dir():
        raise InputError("is a folder, expected an image file", path)
    with rasterio.Env(**_ENV):
        try:
            ds = rasterio.open(path)
        except RasterioError as exc:
            raise _open_error(path, exc) from exc
        with ds:
            if ds.driver not in ("GTiff", "COG"):
                raise InputError(f"not a GeoTIFF (GDAL driver {ds.driver})", path)
            if ds.crs is None or ds.transform.is_identity:
                extra = " (only GCPs: warp it to a map CRS first)" if ds.gcps[0] else ""
                raise InputError(f"raster without georeferencing (no CRS or geotransform){extra}",
                                 path)
            crs_wkt = ds.crs.to_wkt()
            try:
                tr = _to_wgs84(crs_wkt)
            except (CRSError, ProjError) as exc:
                raise InputError(f"unsupported CRS ({exc})", path) from exc
            dtype = str(ds.dtypes[0])
            if dtype not in SUPPORTED_DTYPES:
                raise InputError(
                    f"unsupported data type {dtype} (expected {', '.join(SUPPORTED_DTYPES)})", path
                )
            if ds.count == 2 and not any(ci.name == "alpha" for ci in ds.colorinterp):
                raise InputError("2 bands: expected 1 (panchromatic), 3 (RGB) or 4+ bands", path)
            outline = _pixel_corners(ds)
            lon, lat = tr.transform(outline[:, 0], outline[:, 1])
            lon, lat = np.asarray(lon), np.asarray(lat)
            if not (np.all(np.isfinite(lon)) and np.all(np.isfinite(lat))) or (
                np.abs(lat).max() > 90 or np.abs(lon).max() > 360
            ):
                raise InputError("unsupported CRS (footprint cannot be placed on the globe)", path)
            footprint = Polygon(np.column_stack([lon, lat]))
            if not footprint.is_valid:
                footprint = footprint.buffer(0)
            gsd = _gsd_m(ds, tr)
            if not np.isfinite(gsd) or gsd <= 0:
                raise InputError("unsupported CRS (pixel size cannot be measured)", path)
            tags = ds.tags()
            if check:
                _check_blocks(ds, path)
            width, height, count = ds.width, ds.height, ds.count
            transform = tuple(float(v) for v in tuple(ds.transform)[:6])

    acquired, source = None, None
    hit = _tag(tags, DATETIME_TAGS)
    sidecar = read_sidecar(path)
    if hit:
        acquired, source = parse_datetime(hit[1], str(path)), f"tag:{hit[0]}"
    elif sidecar and sidecar.acquired:
        acquired, source = sidecar.acquired, f"sidecar:{sidecar.path.name}"
    elif tiff_time := _tag(tags, ("TIFFTAG_DATETIME",)):
        acquired, source = parse_datetime(tiff_time[1], str(path)), "tag:TIFFTAG_DATETIME"
    elif datetime is not None:
        acquired = datetime if isinstance(datetime, dt.datetime) else parse_datetime(datetime)
        if acquired.tzinfo is None:
            acquired = acquired.replace(tzinfo=dt.UTC)
        source = "option:--datetime"
    sensor_hit = _tag(tags, SENSOR_TAGS)
    sensor = sensor_hit[1] if sensor_hit else (sidecar.sensor if sidecar else None)
    return Scene(
        id=None,
        path=str(path.resolve()),
        sha256=file_sha256(path) if hash_file else "",
        crs_wkt=crs_wkt,
        transform=transform,
        width=int(width),
        height=int(height),
        band_count=int(count),
        dtype=dtype,
        gsd_m=gsd,
        footprint=footprint,
        acquired=acquired,
        sensor=sensor,
        datetime_source=source,
    )


def scene_notes(scene: Scene) -> list[str]:
    """Plain notes on how the image will be read (16-bit scaling, panchromatic, ...)."""
    notes = []
    if scene.dtype != "uint8":
        notes.append(f"{scene.dtype}: scaled to 8-bit by 2-98 percentiles when read")
    if scene.band_count == 1:
        notes.append("1 band: panchromatic, read as such (no colour)")
    elif scene.band_count > 4:
        notes.append(f"{scene.band_count} bands: RGB taken by colour interpretation or 1-3")
    if scene.datetime_source == "tag:TIFFTAG_DATETIME":
        notes.append("datetime from TIFFTAG_DATETIME (may be the file's creation time)")
    return notes

"""Ingest time and peak memory on large rasters (sparse and dense), each in a fresh process.

    .venv/bin/python bench/ingest_bench.py [--dense] [--sizes 20000 40000] [--dir /tmp/x]

Writes the rasters with ``tests/rasters.make_geotiff`` (6 km square between Tumangang
and Khasan), ingests each into a fresh store in a child process, prints a Markdown table
row per raster: size, file size, seconds, peak RSS (MB).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import rasterio
from rasterio.windows import Window

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from rasters import make_geotiff  # noqa: E402
from test_ingest_large import run_child  # noqa: E402


def build(path: Path, n: int, dense: bool) -> Path:
    make_geotiff(path, width=n, height=n, res=6000 / n, center=(130.624, 42.426), sparse=True,
                 tiled=True, blocksize=512, compress=None if dense else "deflate")
    if dense:
        rng = np.random.default_rng(0)
        strip = rng.integers(0, 255, (3, 512, n), dtype=np.uint8)
        with rasterio.open(path, "r+") as ds:
            for r in range(0, n, 512):
                h = min(512, n - r)
                ds.write(strip[:, :h], window=Window(0, r, n, h))
    return path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--sizes", type=int, nargs="+", default=[20_000, 40_000])
    ap.add_argument("--dense", action="store_true", help="uncompressed random pixels")
    ap.add_argument("--dir", type=Path, default=None)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        print("| raster | file | ingest s | peak RSS MB |")
        print("|---|---|---|---|")
        for n in args.sizes:
            path = build(Path(tmp) / f"r{n}.tif", n, args.dense)
            t0 = time.perf_counter()
            got = run_child(path, Path(tmp) / f"db{n}.sqlite")
            wall = time.perf_counter() - t0
            kind = "dense, uncompressed" if args.dense else "sparse, deflate"
            print(f"| {n:,} x {n:,} x 3 uint8, {kind} | {path.stat().st_size / 1e6:,.1f} MB "
                  f"| {got['seconds']:.2f} (process {wall:.2f}) | {got['maxrss_mb']:.0f} |")
            path.unlink()


if __name__ == "__main__":
    main()

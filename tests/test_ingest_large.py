"""A 20,000 x 20,000 (sparse, tiled, compressed) raster ingests with flat memory."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest
import rasterio
from rasterio.windows import Window

from rasters import make_geotiff

CHILD = textwrap.dedent(
    """
    import json, sys, time
    from railwatch.imagery import ingest
    from railwatch.store import Store
    t0 = time.perf_counter()
    with Store(sys.argv[2]) as store:
        res = ingest([sys.argv[1]], store)
    row = res.rows[0]
    # VmHWM is this program's own peak (ru_maxrss would carry the parent's over exec)
    hwm = next(line for line in open("/proc/self/status") if line.startswith("VmHWM"))
    print(json.dumps({
        "seconds": time.perf_counter() - t0,
        "maxrss_mb": int(hwm.split()[1]) / 1024,
        "status": row.status, "coverage": row.coverage, "gsd": row.scene.gsd_m,
        "size": [row.scene.width, row.scene.height],
    }))
    """
)


def run_child(image, db) -> dict:
    out = subprocess.run([sys.executable, "-c", CHILD, str(image), str(db)], check=True,
                         capture_output=True, text=True, timeout=300)
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.slow
def test_20k_raster_ingests_under_500mb(tmp_path):
    path = make_geotiff(tmp_path / "big.tif", width=20_000, height=20_000, res=0.3,
                        center=(130.624, 42.426), sparse=True, tiled=True, blocksize=512)
    with rasterio.open(path, "r+") as ds:  # a little real data in one corner
        ds.write(np.full((3, 512, 512), 90, np.uint8), window=Window(0, 0, 512, 512))
    assert path.stat().st_size < 5_000_000
    t0 = time.perf_counter()
    got = run_child(path, tmp_path / "big.sqlite")
    wall = time.perf_counter() - t0
    assert got["status"] == "new" and got["size"] == [20_000, 20_000]
    assert got["gsd"] == pytest.approx(0.3, rel=1e-3)
    # 6 km square centred between the two stations covers both AOIs
    assert got["coverage"] == {"tumangang": pytest.approx(1.0), "khasan": pytest.approx(1.0)}
    # a full read would be 1.2 GB; the whole process (python + GDAL + libs) stays far below
    assert got["maxrss_mb"] < 500, got
    assert wall < 60, wall
    again = run_child(path, tmp_path / "big.sqlite")
    assert again["status"] == "already"

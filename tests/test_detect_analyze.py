"""`analyze`: every ingested, unprocessed scene is detected once and stored."""

import numpy as np
import rasterio
from pyproj import Transformer
from rasterio.transform import from_origin

from railwatch.detect.analyze import analyze
from railwatch.imagery import ingest
from railwatch.store import Store
from test_detect_pipeline import BlobDetector

# upper-left corner near Tumangang station (so ingest links the image to the site)
X0, Y0 = Transformer.from_crs(4326, 32652, always_xy=True).transform(130.6026, 42.4217)


def _tif(path, n_cars, gsd=0.5):
    img = np.full((256, 256, 3), 60, np.uint8)
    for k in range(n_cars):
        img[40 + 20 * k:46 + 20 * k, 50:80] = (200, 40, 40)
    with rasterio.open(path, "w", driver="GTiff", width=256, height=256, count=3,
                       dtype="uint8", crs="EPSG:32652",
                       transform=from_origin(X0, Y0, gsd, gsd)) as ds:
        ds.write(np.transpose(img, (2, 0, 1)))
        ds.update_tags(ACQUISITION_DATETIME="2023-10-05T02:30:00Z")
    return path


def test_analyze_detects_each_new_scene_once(tmp_path):
    a, b = _tif(tmp_path / "a.tif", 2), _tif(tmp_path / "b.tif", 3)
    calls = []
    with Store(tmp_path / "rw.db") as store:
        ingest([a, b], store)
        summary = analyze(store, detector=BlobDetector(),
                          progress=lambda d, t, n: calls.append((d, t)))
        assert summary["processed"] == 2 and summary["railcars"] == 5
        assert calls[-1] == (2, 2)
        counts = sorted(store.get_detections(s.id).counts()["total"] for s in store.scenes())
        assert counts == [2, 3]
        assert store.scenes_without_detections() == []
        assert summary["observations"] == bool(store.observations("tumangang"))
        again = analyze(store, detector=BlobDetector())
        assert again["processed"] == 0


def test_analyze_counts_too_coarse_images_as_skipped(tmp_path):
    fine, coarse = _tif(tmp_path / "fine.tif", 2), _tif(tmp_path / "coarse.tif", 0, gsd=3.0)
    with Store(tmp_path / "rw.db") as store:
        ingest([fine, coarse], store)
        summary = analyze(store, detector=BlobDetector())
    assert summary["processed"] == 1
    [skip] = summary["skipped"]
    assert skip["coarse"] is True and "too coarse" in skip["reason"]


def test_analyze_two_at_once_skips_a_file_broken_after_ingest(tmp_path):
    """Images detected two at once: a file truncated after ingest is skipped with its
    reason, the others are stored, and progress reaches the total."""
    paths = [_tif(tmp_path / f"s{k}.tif", k + 1) for k in range(4)]
    calls = []
    with Store(tmp_path / "rw.db") as store:
        ingest(paths, store)
        paths[1].write_bytes(paths[1].read_bytes()[:400])
        summary = analyze(store, detector=BlobDetector(), workers=2,
                          progress=lambda d, t, n: calls.append((d, t)))
        assert summary["processed"] == 3 and summary["railcars"] == 1 + 3 + 4
        [skip] = summary["skipped"]
        assert "s1.tif" in skip["reason"] and skip["coarse"] is False
        assert calls[-1] == (4, 4) and [d for d, _ in calls] == [1, 2, 3, 4]
        left = store.scenes_without_detections()
        assert [s.path.rsplit("/", 1)[-1] for s in left] == ["s1.tif"]

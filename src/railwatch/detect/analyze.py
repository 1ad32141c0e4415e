"""`analyze`: detect every ingested scene not yet processed and store the detections.

One transaction per scene (detections + observations), so an interrupted run leaves each
scene either fully processed or untouched. When ``railwatch.analytics.observe.observe``
exists, per-site observations are stored as well.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Callable
from typing import Any

from railwatch.detect.model import Detector
from railwatch.detect.pipeline import GSD_RANGE, check_gsd, detect_each
from railwatch.errors import RailwatchError
from railwatch.types import Detections, Observation, Scene

log = logging.getLogger(__name__)


def _observer() -> Callable[..., Any] | None:
    try:
        from railwatch.analytics.observe import observe  # type: ignore[import-not-found]
    except ImportError:
        return None
    return observe  # type: ignore[no-any-return]


def _observe(fn: Callable[..., Any], store: Any, scene: Scene, det: Detections,
             site: str) -> list[Observation]:
    """Call the timeline engineer's ``observe`` with whichever arguments it names."""
    names = set(inspect.signature(fn).parameters)
    kw: dict[str, Any] = {}
    for key, value in (("scene", scene), ("detections", det), ("det", det), ("store", store),
                       ("site", site)):
        if key in names:
            kw[key] = value
    out = fn(**kw)
    if out is None:
        return []
    return list(out) if isinstance(out, list | tuple) else [out]


def analyze(store: Any, site: str | None = None, detector: Detector | None = None,
            progress: Callable[[int, int, str], None] | None = None,
            workers: int | None = None) -> dict[str, Any]:
    """Detect all scenes (of ``site``) without detections; store detections (+observations).

    Returns a summary: scenes processed, skipped (with reasons), railcars found.
    ``progress(done, total, name)`` is called after each scene. ``workers`` images are
    detected at once (`railwatch.detect.pipeline.detect_each`); storing stays in order.
    """
    scenes = store.scenes_without_detections(site)
    observe = _observer()
    run_id = store.start_run("analyze", {"site": site, "scenes": len(scenes)})
    done, skipped, railcars, seen = 0, [], 0, 0

    def skip(scene: Scene, exc: RailwatchError) -> None:
        # images coarser than the model's range are expected in mixed archives
        # (e.g. 3 m PlanetScope): counted in the summary rather than warned about
        coarse = scene.gsd_m > GSD_RANGE[1]
        skipped.append({"scene": scene.id, "reason": str(exc), "coarse": coarse})
        log.log(logging.INFO if coarse else logging.WARNING, "skipped %s", exc)

    def tick(scene: Scene) -> None:
        nonlocal seen
        seen += 1
        if progress is not None:
            progress(seen, len(scenes), scene.path.rsplit("/", 1)[-1])

    try:
        runnable = []
        for scene in scenes:
            try:
                check_gsd(scene.gsd_m, scene.path)
                runnable.append(scene)
            except RailwatchError as exc:
                skip(scene, exc)
                tick(scene)
        results = detect_each([s.path for s in runnable], detector, workers) if runnable else []
        for scene, (_, det) in zip(runnable, results, strict=True):
            if isinstance(det, RailwatchError):
                skip(scene, det)
                tick(scene)
                continue
            det.meta["scene_id"] = scene.id
            with store.transaction():
                store.put_detections(int(scene.id or 0), det, run_id)
                if observe is not None:
                    sites = [site] if site else sorted(store.scene_coverage(int(scene.id or 0)))
                    for s in sites:
                        for obs in _observe(observe, store, scene, det, s):
                            store.put_observation(obs)
            done += 1
            railcars += int((det.kind == "railcar").sum())
            tick(scene)
    except BaseException:
        store.finish_run(run_id, "error", {"processed": done})
        raise
    summary = {"processed": done, "skipped": skipped, "railcars": railcars,
               "observations": observe is not None}
    store.finish_run(run_id, "ok", summary)
    return summary

"""The whole flow on the built-in Tumangang–Khasan scenario: simulate, ingest, analyse, brief.

`run_demo` renders the scenario's images, ingests them into a FRESH SQLite store under
the output folder, detects and observes every image, and writes the brief for Tumangang
and for the crossing as a whole. Counts and findings come from the detector's output on
the rendered images, never from the scenario's truth files. A stage whose code is not
installed is reported in ``DemoResult.missing`` and the later stages say so too.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from railwatch.errors import InputError

SCENARIO = "tumangang-khasan"
#: Briefs the demo writes, in order: (site argument, sub-folder).
BRIEFS: tuple[tuple[str, str], ...] = (("tumangang", "tumangang"), ("crossing", "crossing"))

#: ``progress(stage, done, total)``; ``total`` 0 when unknown.
Progress = Callable[[str, int, int], None]


@dataclass
class DemoResult:
    """Where the demo wrote things, how long each stage took, what was missing."""

    out_dir: Path
    store_path: Path
    images: int = 0
    timings_s: dict[str, float] = field(default_factory=dict)
    missing: list[str] = field(default_factory=list)
    reports: dict[str, Any] = field(default_factory=dict)  # site -> ReportResult

    @property
    def complete(self) -> bool:
        return not self.missing


def _render_part(out: str, seed: int, start: dt.date | None, end: dt.date | None,
                 max_images: int | None) -> int:
    """Render one part of the scenario (runs in a worker process for the full demo)."""
    from railwatch.simulate.scenario import simulate_scenario

    m = simulate_scenario(SCENARIO, out, seed=seed, start=start, end=end, max_images=max_images)
    return len(m.get("images", []))


def _simulate(out: Path, seed: int, start: dt.date | None, end: dt.date | None,
              max_images: int | None, progress: Progress, workers: int = 2) -> list[Path]:
    """Render the scenario into ``out``; without ``max_images`` the plan is split at its
    median date and rendered by ``workers`` processes (one sub-folder each)."""
    from railwatch.simulate.scenario import load_scenario, plan_images, select_images

    def cb(done: int, total: int, *_: Any) -> None:
        progress("simulate", done, total)

    plan = select_images(plan_images(load_scenario(SCENARIO), seed), start, end, max_images)
    if not plan:
        raise InputError(f"the scenario has no images between {start} and {end}")
    if max_images is not None or workers < 2 or len(plan) < 8:
        from railwatch.simulate.scenario import simulate_scenario

        simulate_scenario(SCENARIO, out / "part1", seed=seed, start=start, end=end,
                          max_images=max_images, progress=cb)
    else:
        from concurrent.futures import ProcessPoolExecutor, as_completed

        days = sorted(p.when.date() for p in plan)
        cuts = [days[len(days) * k // workers] for k in range(1, workers)]
        bounds = list(zip([days[0], *[c + dt.timedelta(days=1) for c in cuts]],
                          [*cuts, days[-1]], strict=True))
        done = 0
        cb(0, len(plan))
        with ProcessPoolExecutor(max_workers=workers) as pool:
            futs = [pool.submit(_render_part, str(out / f"part{k + 1}"), seed, a, b, None)
                    for k, (a, b) in enumerate(bounds)]
            for f in as_completed(futs):
                done += f.result()
                cb(done, len(plan))
    return sorted(out.glob("part*/*.tif"))


def _ingest(paths: list[Path], store: Any, progress: Progress) -> int:
    from railwatch.imagery.ingest import ingest

    def cb(done: int, total: int, *_: Any) -> None:
        progress("ingest", done, total)

    res = ingest([str(p) for p in paths], store, progress=cb)
    return len(getattr(res, "scenes", None) or getattr(res, "added", None) or paths)


class StageMissing(Exception):
    """A stage's code or data (e.g. the shipped model) is not installed."""


def _analyze(store: Any, progress: Progress) -> dict[str, Any]:
    from railwatch.detect.analyze import analyze
    from railwatch.detect.model import MODEL_FILE, model_dir

    if not (model_dir() / MODEL_FILE).exists():
        raise StageMissing(f"no shipped detector model at {model_dir() / MODEL_FILE}")

    def cb(done: int, total: int, *_: Any) -> None:
        progress("analyze", done, total)

    return analyze(store, progress=cb)


#: The demo's facility-change scan uses complete images at least this many days apart.
CHANGE_STEP_DAYS = 120


def change_images(store: Any, site: str, step_days: int = CHANGE_STEP_DAYS) -> list[Any]:
    """(path, time, detections) of complete, fine (<= 0.8 m) images of ``site`` spaced at
    least ``step_days`` apart: the series the demo scans for facility changes."""
    from railwatch.analytics.changes.stored import spaced

    obs = {o.scene_id: o for o in store.observations(site)}
    fine = [sc for sc in store.scenes(site) if (o := obs.get(sc.id)) is not None
            and not o.partial and o.usable_fraction >= 0.95 and sc.gsd_m <= 0.8]
    return [(sc.path, sc.acquired, store.get_detections(int(sc.id)))
            for sc in spaced(fine, step_days)]


def _changes(store: Any, progress: Progress) -> int:
    from railwatch.analytics.changes import find_changes
    from railwatch.analytics.changes.stored import put_changes
    from railwatch.sites import get_site

    n = 0
    sites = ("tumangang", "khasan")
    for k, name in enumerate(sites):
        images = change_images(store, name)
        if len(images) >= 2:
            found = find_changes(images, get_site(name, store))
            put_changes(store, found)
            n += len(found.changes)
        progress("changes", k + 1, len(sites))
    return n


def run_demo(
    out_dir: str | Path = "demo-output",
    *,
    max_images: int | None = None,
    start: dt.date | None = None,
    end: dt.date | None = None,
    seed: int = 0,
    pdf: bool = True,
    progress: Progress | None = None,
    on_stage: Callable[[str, str], None] | None = None,
) -> DemoResult:
    """Run every stage that exists; return paths, timings and the stages that are missing.

    ``on_stage(stage, message)`` is called when a stage starts, ends or is missing.
    """
    say = on_stage or (lambda _s, _m: None)
    tick = progress or (lambda _s, _d, _t: None)
    if start and end and start > end:
        raise InputError(f"--start {start} is after --end {end}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    images_dir = out / "images"
    store_path = out / "railwatch.sqlite"
    res = DemoResult(out_dir=out, store_path=store_path)

    def stage(name: str, fn: Callable[[], Any]) -> Any:
        say(name, "start")
        t0 = time.perf_counter()
        try:
            value = fn()
        except (ImportError, StageMissing) as exc:
            res.missing.append(name)
            say(name, f"missing: this stage is not installed yet ({exc})")
            return None
        res.timings_s[name] = round(time.perf_counter() - t0, 1)
        say(name, f"done in {res.timings_s[name]:.1f} s")
        return value

    # 1. render the scenario (fresh each run)
    if images_dir.exists():
        import shutil

        shutil.rmtree(images_dir)
    paths = stage("simulate", lambda: _simulate(images_dir, seed, start, end, max_images, tick))
    if paths is None:
        say("demo", "nothing to ingest without the simulator; stopping")
        res.missing += ["ingest", "analyze", "report"]
        return res
    res.images = len(paths)

    # 2. a FRESH embedded store under the output folder
    from railwatch.store import Store

    for suffix in ("", "-wal", "-shm"):
        Path(f"{store_path}{suffix}").unlink(missing_ok=True)
    with Store(store_path) as store:
        n = stage("ingest", lambda: _ingest(paths, store, tick))
        if n is None:
            res.missing += ["analyze", "report"]
            return res
        summary = stage("analyze", lambda: _analyze(store, tick))
        if summary and summary["skipped"]:
            coarse = sum(s["coarse"] for s in summary["skipped"])
            other = len(summary["skipped"]) - coarse
            say("analyze", f"{summary['processed']} images analysed; {coarse} images too "
                           "coarse to separate cars skipped"
                + (f", {other} skipped for other reasons" if other else ""))
        if summary is None and "analyze" in res.missing:
            say("report", "skipped: no detections without the analyze stage")
            res.missing.append("report")
            return res

        stage("changes", lambda: _changes(store, tick))

        # 3. the briefs (timeline, onsets and mix run inside build_report; changes are read
        #    from the store)
        from railwatch.report import build_report

        for site, sub in BRIEFS:
            def one(site: str = site, sub: str = sub) -> Any:
                return build_report(store, site, out / sub, pdf=pdf, simulated=True,
                                    progress=lambda m, s=site: say("report", f"{s}: {m}"))

            r = stage(f"report:{site}", one)
            if r is not None:
                res.reports[site] = r
                for note in r.notes:
                    say("report", f"{site}: {note}")
    return res

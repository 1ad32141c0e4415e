"""`railwatch simulate`: render a scenario (SCENARIO) or write training chips (--chips N)."""

from __future__ import annotations

import importlib
import time
from pathlib import Path

import typer

from railwatch.cli.options import info, progress
from railwatch.errors import InputError


def _gsds(text: str) -> tuple[float, ...]:
    try:
        vals = tuple(float(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise InputError(f"--gsd must be comma-separated numbers, got {text!r}") from None
    if not vals or any(v <= 0 for v in vals):
        raise InputError(f"--gsd must be positive numbers, got {text!r}")
    return vals


def register(app: typer.Typer) -> None:
    """Add the ``simulate`` command."""

    @app.command("simulate")
    def simulate(
        scenario: str = typer.Argument(
            None, help="Built-in scenario name (e.g. tumangang-khasan) or a scenario YAML file."
        ),
        out: Path = typer.Option(..., "--out", "-o", help="Output folder."),
        seed: int = typer.Option(0, "--seed", help="Random seed (same seed, same output)."),
        chips: int = typer.Option(
            None, "--chips", min=0, help="Write N randomised training chips instead."
        ),
        chip_px: int = typer.Option(256, "--chip-px", help="Chip size in pixels (--chips)."),
        gsd: str = typer.Option(
            "0.3,0.5,0.8", "--gsd", help="GSD choices in metres, comma-separated (--chips)."
        ),
        start: str = typer.Option(None, "--start", help="First day to render (YYYY-MM-DD)."),
        end: str = typer.Option(None, "--end", help="Last day to render (YYYY-MM-DD)."),
        max_images: int = typer.Option(None, "--max-images", min=1,
                                       help="Render at most N images of the scenario."),
        site: list[str] = typer.Option(None, "--site",
                                       help="Render only this site (repeatable)."),
    ) -> None:
        """Write synthetic images with ground truth: a scenario's GeoTIFFs, *.truth.geojson
        and manifest.json, or (--chips N) training chips with labels and coco.json."""
        t0 = time.perf_counter()
        if chips is not None:
            if scenario is not None:
                raise InputError("give either a SCENARIO or --chips N, not both")
            from railwatch.simulate.chips import make_chips

            with progress() as bar:
                task = bar.add_task("chips", total=chips)
                coco = make_chips(chips, out, seed=seed, chip_px=chip_px, gsd_choices=_gsds(gsd),
                                  progress=lambda done, total: bar.update(task, completed=done))
            info(f"wrote {chips} chips ({len(coco['annotations'])} objects) to {out} "
                 f"in {time.perf_counter() - t0:.1f} s")
            typer.echo(str(out))
            return
        if scenario is None:
            raise InputError("give a SCENARIO (name or YAML file) or --chips N")
        try:
            mod = importlib.import_module("railwatch.simulate.scenario")
        except ImportError:
            raise InputError("scenario simulation is not available in this build") from None
        kwargs = {"start": start, "end": end, "max_images": max_images, "sites": site or None}
        kwargs = {k: v for k, v in kwargs.items() if v is not None}
        with progress() as bar:
            task = bar.add_task("images", total=None)

            def tick(done: int, total: int, name: str = "") -> None:
                bar.update(task, completed=done, total=total, description=name or "images")

            manifest = mod.simulate_scenario(scenario, out, seed, progress=tick, **kwargs)
        n = len(manifest.get("images", [])) if isinstance(manifest, dict) else 0
        info(f"wrote {n} images to {out} in {time.perf_counter() - t0:.1f} s")
        typer.echo(str(out))

"""`railwatch train --out MODEL_DIR`: train the detector on simulated chips (needs torch)."""

from __future__ import annotations

from pathlib import Path

import typer

from railwatch.cli.options import info, progress
from railwatch.errors import InputError


def train_cmd(
    out: Path = typer.Option(..., "--out", help="Model folder (ONNX, model.json, checkpoint)."),
    chips: Path = typer.Option(None, "--chips", help="Chips folder (images/, labels/)."),
    steps: int = typer.Option(1500, "--steps", help="Optimiser steps."),
    batch: int = typer.Option(12, "--batch", help="Chips per step."),
    seed: int = typer.Option(0, "--seed", help="Random seed (data and weights)."),
    threads: int = typer.Option(2, "--threads", help="torch CPU threads."),
    minutes: float = typer.Option(None, "--minutes", help="Wall-clock budget (stops early)."),
    sim_fraction: float = typer.Option(
        0.0, "--sim-fraction", min=0.0, max=1.0,
        help="Share of chips rendered on the fly by the scene simulator (rest: own renderer)."),
    lr: float = typer.Option(3e-3, "--lr", help="Peak learning rate."),
    workers: int = typer.Option(1, "--workers", help="Data worker processes."),
    init: Path = typer.Option(None, "--init",
                              help="Warm start from an exported ONNX model (fine-tuning)."),
    calibrate: bool = typer.Option(True, "--calibrate/--no-calibrate",
                                   help="Choose the score threshold on validation scenes."),
) -> None:
    """Train RailDet on on-the-fly simulated chips and export ONNX + model.json."""
    try:
        from railwatch.train.loop import TrainConfig, train
    except ImportError as exc:
        raise InputError(f"training needs the optional torch extra: pip install "
                         f"'railwatch[train]' ({exc})") from None
    if chips is not None and not chips.is_dir():
        raise InputError("chips folder not found", chips)
    if init is not None and not init.is_file():
        raise InputError("model to start from not found", init)
    cfg = TrainConfig(steps=steps, batch=batch, seed=seed, threads=threads, minutes=minutes,
                      chips_dir=str(chips) if chips else None, sim_fraction=sim_fraction,
                      lr=lr, workers=workers, init_onnx=str(init) if init else None)
    with progress() as bar:
        task = bar.add_task("train", total=None if minutes else steps)
        meta = train(out, cfg, log=lambda s: None,
                     on_step=lambda i, v: bar.update(task, completed=i,
                                                     description=f"train loss {v['total']:.2f}"))
    info(f"model written to {out}/railwatch-det.onnx (final loss "
         f"{meta['training']['final_loss']})")
    if calibrate:
        from railwatch.train.calibrate import calibrate as choose

        best = choose(out)["best"]
        info(f"score threshold {best:g} (chosen on validation scenes, stored in model.json)")


def register(app: typer.Typer) -> None:
    app.command("train")(train_cmd)

"""`railwatch train --out MODEL_DIR`: train the detector on simulated chips;
`railwatch train-verifier --out MODEL_DIR`: train its second stage;
`railwatch train-refiner --out MODEL_DIR`: train its third stage;
`railwatch train-slots --out MODEL_DIR`: train its container slot classifier;
`railwatch train-classifier --out MODEL_DIR`: train its class stage;
`railwatch train-structures --out DIR`: train the change finder's structure maps (all need
torch)."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import typer

from railwatch.cli.options import info, progress
from railwatch.errors import InputError


def _training(module: str) -> ModuleType:
    """Import a training module; InputError naming the optional extra when it cannot."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise InputError(f"training needs the optional torch extra: pip install "
                         f"'railwatch[train]' ({exc})") from None


def _data_files(data: list[Path] | None, tmp: str, name: str,
                harvest: Callable[[Path], str]) -> list[Path]:
    """The harvest files a training run pools: the given ones (existing files are reused;
    one missing file is harvested into and kept), or one harvested into ``tmp/name``.
    ``harvest(path)`` writes a file and returns a line saying what it holds."""
    missing = [p for p in data or () if not p.exists()]
    if len(missing) > 1:
        raise InputError("only one --data file can be harvested into; these do not exist: "
                         + ", ".join(map(str, missing)), missing[0])
    paths = list(data) if data else [Path(tmp) / name]
    for path in [p for p in paths if not p.exists()]:
        info(harvest(path))
    return paths


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
    container_yards: float = typer.Option(
        0.0, "--container-yards", min=0.0, max=1.0,
        help="Share of the simulator's container lots laid out as yards (rows in pairs)."),
    lr: float = typer.Option(3e-3, "--lr", help="Peak learning rate."),
    workers: int = typer.Option(1, "--workers", help="Data worker processes."),
    init: Path = typer.Option(None, "--init",
                              help="Warm start from an exported ONNX model (fine-tuning)."),
    calibrate: bool = typer.Option(True, "--calibrate/--no-calibrate",
                                   help="Choose the score threshold on validation scenes."),
) -> None:
    """Train RailDet on on-the-fly simulated chips and export ONNX + model.json."""
    loop = _training("railwatch.train.loop")
    if chips is not None and not chips.is_dir():
        raise InputError("chips folder not found", chips)
    if init is not None and not init.is_file():
        raise InputError("model to start from not found", init)
    cfg = loop.TrainConfig(steps=steps, batch=batch, seed=seed, threads=threads,
                           minutes=minutes, chips_dir=str(chips) if chips else None,
                           sim_fraction=sim_fraction, container_yards=container_yards,
                           lr=lr, workers=workers, init_onnx=str(init) if init else None)
    with progress() as bar:
        task = bar.add_task("train", total=None if minutes else steps)
        meta = loop.train(out, cfg, log=lambda s: None,
                          on_step=lambda i, v: bar.update(
                              task, completed=i, description=f"train loss {v['total']:.2f}"))
    info(f"model written to {out}/railwatch-det.onnx (final loss "
         f"{meta['training']['final_loss']})")
    if calibrate:
        from railwatch.train.calibrate import calibrate as choose

        best = choose(out)["best"]
        info(f"score threshold {best:g} (chosen on validation scenes, stored in model.json)")
        _calibrate_railcar_nms(out)


def train_verifier_cmd(
    out: Path = typer.Option(..., "--out", help="Model folder with railwatch-det.onnx "
                             "(the verifier and its model.json block are written there)."),
    chips: int = typer.Option(3000, "--chips", min=1, help="Random chips to harvest crops from."),
    minutes: float = typer.Option(20.0, "--minutes", min=0.01, help="Training wall-clock budget."),
    seed: int = typer.Option(0, "--seed", help="Random seed (data and weights)."),
    workers: int = typer.Option(2, "--workers", min=1, help="Processes harvesting crops."),
    threads: int = typer.Option(2, "--threads", min=1, help="torch CPU threads."),
    data: list[Path] = typer.Option(
        None, "--data", help="Harvested crops (.npz, repeatable): existing files are reused and "
        "pooled; one missing file is harvested into and kept."),
    container_yards: float = typer.Option(
        0.0, "--container-yards", min=0.0, max=1.0,
        help="Share of the chips' container lots laid out as container yards."),
    average_with: list[Path] = typer.Option(
        None, "--average-with", help="Other verifiers (.onnx, repeatable): ship the mean."),
    calibrate: bool = typer.Option(True, "--calibrate/--no-calibrate",
                                   help="Choose the verifier's thresholds on validation scenes."),
    int8: bool = typer.Option(True, "--int8/--no-int8",
                              help="Ship an 8-bit copy (calibrated on harvested crops)."),
) -> None:
    """Train the second-stage verifier on the detector's own candidates in random chips."""
    ver = _training("railwatch.train.verifier")
    det = out / "railwatch-det.onnx"
    if not det.is_file():
        raise InputError("no railwatch-det.onnx here: train the detector first", out)
    for other in average_with or ():
        if not other.is_file():
            raise InputError("verifier to average with not found", other)
    import tempfile

    def harvest(path: Path) -> str:
        with progress() as bar:
            bar.add_task(f"harvesting crops from {chips} chips", total=None)
            counts = ver.build_data(path, chips, seed=seed, workers=workers, model=str(det),
                                    container_yards=container_yards)
        return f"{counts['samples']} crops ({counts['background']} background)"

    with tempfile.TemporaryDirectory() as tmp:
        paths = _data_files(data, tmp, "crops.npz", harvest)
        with progress() as bar:
            task = bar.add_task("train verifier", total=None)
            block = ver.train_verifier(paths, out, minutes=minutes, seed=seed, threads=threads,
                                   on_epoch=lambda e, m: bar.update(
                                       task, description=f"epoch {e}: background rejected "
                                       f"{m['background_rejected']:.2f}, kept "
                                       f"{m['objects_kept']:.2f}"))
        vpath = out / block["file"]
        if average_with:
            ver.average_verifiers([*average_with, vpath], vpath)
            info(f"averaged with {', '.join(map(str, average_with))}")
        if int8:
            q = ver.quantize_verifier(vpath, vpath, paths)
            ver.update_verifier_meta(out, {"quantized": q})
            info(f"8-bit verifier: agrees with the float one on {q['kind_argmax_agreement']:.1%}"
                 " of crops")
    info(f"verifier written to {out}/{block['file']} "
         f"(validation: {block['training']['validation']})")
    if calibrate:
        from railwatch.train.calibrate import calibrate_verifier

        mb, ms = calibrate_verifier(out)["best"]
        info(f"verifier thresholds: background below {mb:g}, joint score at least {ms:g} "
             "(chosen on validation scenes, stored in model.json)")
        _calibrate_railcar_nms(out)


def _calibrate_railcar_nms(out: Path) -> None:
    from railwatch.train.calibrate import calibrate_railcar_nms

    iou, iomin, spacing = calibrate_railcar_nms(out)["best"]
    info(f"railcar duplicates: overlap above IoU {iou:g} or {iomin:g} of the smaller car, "
         f"or side by side closer than {spacing:g} m (chosen on validation scenes, stored "
         "in model.json)")


def train_refiner_cmd(
    out: Path = typer.Option(..., "--out", help="Model folder with railwatch-det.onnx "
                             "(the refiner and its model.json block are written there)."),
    chips: int = typer.Option(10000, "--chips", min=1,
                              help="Random chips to harvest crops from (shipped: 10,000)."),
    minutes: float = typer.Option(
        60.0, "--minutes", min=0.01,
        help="Training wall-clock budget (the shipped refiner: 62 min on 2 cores; 40 min on "
             "one core moved only a quarter of far-off boxes onto their cars)."),
    seed: int = typer.Option(0, "--seed", help="Random seed (data and weights)."),
    workers: int = typer.Option(2, "--workers", min=1, help="Processes harvesting crops."),
    threads: int = typer.Option(2, "--threads", min=1, help="torch CPU threads."),
    data: Path = typer.Option(
        None, "--data", help="Harvested crops with box targets (.npz): reused when it exists, "
        "else harvested into and kept."),
    int8: bool = typer.Option(
        True, "--int8/--no-int8",
        help="Quantize the refiner to 8 bits (as shipped since 0.2.1: 2.5 times as fast on "
             "CPU, a tie with the float one on validation scenes)."),
) -> None:
    """Train the box refiner: moves each kept railcar box onto the car it lies on."""
    ref = _training("railwatch.train.refiner")
    from railwatch.train.verifier import build_data

    det = out / "railwatch-det.onnx"
    if not det.is_file():
        raise InputError("no railwatch-det.onnx here: train the detector first", out)
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        path = data or Path(tmp) / "crops.npz"
        if not path.exists():
            with progress() as bar:
                bar.add_task(f"harvesting crops from {chips} chips", total=None)
                counts = build_data(path, chips, seed=seed, workers=workers, model=str(det),
                                    far=True, container_yards=0.2)
            info(f"{counts['box_targets']} crops with a car to move onto")
        try:
            with progress() as bar:
                bar.add_task("train refiner", total=None)
                block = ref.train_refiner(path, out, minutes=minutes, seed=seed,
                                          threads=threads)
        except ValueError as exc:
            raise InputError(str(exc), path) from None
        if int8:
            rpath = out / block["file"]
            q = ref.quantize_refiner(rpath, rpath, path)
            ref.update_model_meta(out, "refiner", {"quantized": q})
            info(f"8-bit refiner: moves within {q['move_diff_p95_px']:.2f} px of the float "
                 "one on 95 % of crops")
    v = block["training"]["validation"]
    info(f"refiner written to {out}/{block['file']}: on held-out crops, median distance to "
         f"the car {v['median_offset_before_px']:.1f} -> {v['median_offset_after_px']:.1f} px")


def train_slots_cmd(
    out: Path = typer.Option(..., "--out", help="Model folder with the detector and its "
                             "verifier (the slot classifier and its model.json entry are "
                             "written there)."),
    chips: int = typer.Option(8000, "--chips", min=1,
                              help="Random chips to harvest slots from (shipped: 8,000)."),
    minutes: float = typer.Option(12.0, "--minutes", min=0.01,
                                  help="Training wall-clock budget."),
    seed: int = typer.Option(0, "--seed", help="Random seed (data and weights)."),
    workers: int = typer.Option(2, "--workers", min=1, help="Processes harvesting slots."),
    threads: int = typer.Option(2, "--threads", min=1, help="torch CPU threads."),
    data: list[Path] = typer.Option(
        None, "--data", help="Harvested slots (.npz, repeatable): existing files are reused "
        "and pooled; one missing file is harvested into and kept."),
    calibrate: bool = typer.Option(
        True, "--calibrate/--no-calibrate",
        help="Choose the container probability and rounds on validation scenes."),
    int8: bool = typer.Option(
        True, "--int8/--no-int8",
        help="Quantize the slot classifier to 8 bits (as shipped: about twice as fast on "
             "CPU, the same container F1 on validation scenes)."),
) -> None:
    """Train the slot classifier that looks for containers beside found ones."""
    slots = _training("railwatch.train.slots")
    for name in ("railwatch-det.onnx", "railwatch-ver.onnx"):
        if not (out / name).is_file():
            raise InputError(f"no {name} here: train the detector and its verifier first", out)
    import tempfile

    def harvest(path: Path) -> str:
        with progress() as bar:
            bar.add_task(f"harvesting slots from {chips} chips", total=None)
            counts = slots.build_slot_data(path, chips, seed=seed, workers=workers,
                                           model=str(out))
        return f"{counts['samples']} slots ({counts['container']} holding a container)"

    with tempfile.TemporaryDirectory() as tmp:
        paths = _data_files(data, tmp, "slots.npz", harvest)
        try:
            with progress() as bar:
                bar.add_task("train slot classifier", total=None)
                block = slots.train_slots(paths, out, minutes=minutes, seed=seed,
                                          threads=threads)
        except ValueError as exc:
            raise InputError(str(exc), paths[0]) from None
        if int8:
            q = slots.quantize_slots(out, paths)
            info(f"8-bit slot classifier: the float one's decision on "
                 f"{q['decision_agreement']:.1%} of slots")
    v = {k: block["training"]["validation"].get(k, float("nan"))
         for k in ("occupied_accepted", "empty_refused")}  # (absent: none held out)
    info(f"slot classifier written to {out}/{block['file']}: on held-out slots, "
         f"{v['occupied_accepted']:.1%} of occupied ones accepted, {v['empty_refused']:.1%} "
         "of empty ones refused")
    if calibrate:
        from railwatch.train.calibrate import calibrate_slots

        best = calibrate_slots(out)["best"]
        info("container neighbours: " + ("not looked for (no setting helped on validation "
                                         "scenes)" if best is None else
                                         f"probability at least {best[0]:g}, {best[1]:g} "
                                         f"round{'s' if best[1] > 1 else ''}, containers "
                                         f"below {best[2]:g} dropped")
             + " (chosen on validation scenes, stored in model.json)")


def train_classifier_cmd(
    out: Path = typer.Option(..., "--out", help="Model folder with the detector and its "
                             "verifier (the class stage and its model.json entry are written "
                             "there)."),
    chips: int = typer.Option(20000, "--chips", min=1,
                              help="Random chips whose true railcars are learnt from "
                              "(shipped: 20,000 in two harvests)."),
    minutes: float = typer.Option(70.0, "--minutes", min=0.01,
                                  help="Training wall-clock budget."),
    seed: int = typer.Option(0, "--seed", help="Random seed (data and weights)."),
    sim_share: float = typer.Option(0.5, "--sim-share", min=0.0, max=1.0,
                                    help="Share of chips from the scene simulator (the rest "
                                    "from the own chip renderer)."),
    workers: int = typer.Option(2, "--workers", min=1, help="Processes rendering chips."),
    threads: int = typer.Option(2, "--threads", min=1, help="torch CPU threads."),
    data: list[Path] = typer.Option(
        None, "--data", help="Harvested railcar crops (.npz, repeatable): existing files are "
        "reused and pooled; one missing file is harvested into and kept."),
    init: Path | None = typer.Option(
        None, "--init", help="A class stage (railwatch-cls.onnx, float or 8-bit) to go on "
        "training from instead of starting afresh (its BatchNorms stay fixed); of an "
        "averaged one such as the shipped stage, its member of --width (16 or 24)."),
    lr: float = typer.Option(2e-3, "--lr", min=1e-6, help="Peak learning rate (lower it "
                             "with --init, e.g. 5e-4)."),
    width: int = typer.Option(16, "--width", min=4, help="VerNet's width (channels of its "
                              "first layer; the cost grows about as its square). With --init, "
                              "that stage's width."),
) -> None:
    """Train the class stage that names each kept railcar's class at its final box."""
    classes = _training("railwatch.train.classes")
    for name in ("railwatch-det.onnx", "railwatch-ver.onnx"):
        if not (out / name).is_file():
            raise InputError(f"no {name} here: train the detector and its verifier first", out)
    if init is not None and not init.is_file():
        raise InputError("no such class stage to go on from (--init)", init)
    import tempfile

    def harvest(path: Path) -> str:
        with progress() as bar:
            bar.add_task(f"cutting true railcars from {chips} chips", total=None)
            counts = classes.build_class_data(path, chips, seed=seed, workers=workers,
                                              sim_share=sim_share)
        return f"{counts['samples']} railcars ({counts['covered']} covered)"

    with tempfile.TemporaryDirectory() as tmp:
        paths = _data_files(data, tmp, "railcars.npz", harvest)
        with progress() as bar:
            bar.add_task("train class stage", total=None)
            block = classes.train_classifier(paths, out, minutes=minutes, seed=seed,
                                             threads=threads, init=init, lr=lr,
                                             width=width)
    v = block["training"]["validation"]
    info(f"class stage written to {out}/{block['file']}: on held-out railcars class "
         f"accuracy {v.get('class_accuracy', float('nan')):.1%}, covered "
         f"{v.get('covered_accuracy', float('nan')):.1%}; it decides the class alone "
         "(weight 1 in model.json's classifier block; choose the weight on validation "
         "scenes with bench/bench_validation.py --set classes=WEIGHT)")


def train_structures_cmd(
    out: Path = typer.Option(..., "--out", help="Folder for railwatch-struct.onnx, its .pt "
                             "weights and railwatch-struct.json (copy the .onnx and .json to "
                             "railwatch/analytics/changes/model/ to ship them)."),
    samples: int = typer.Option(4000, "--samples", min=2, help="Rendered yards to learn from."),
    minutes: float = typer.Option(60.0, "--minutes", min=0.01, help="Training wall-clock budget."),
    seed: int = typer.Option(11, "--seed", help="Random seed of the weights and batches."),
    data_seed: int = typer.Option(424242, "--data-seed", help="Random seed of the rendered yards."),
    workers: int = typer.Option(2, "--workers", min=1, help="Processes rendering yards."),
    threads: int = typer.Option(1, "--threads", min=1, help="torch CPU threads."),
    data: Path = typer.Option(None, "--data", help="Rendered yards (.npz): reused when it "
                              "exists, else rendered into and kept."),
    init: Path = typer.Option(None, "--init", exists=True, dir_okay=False,
                              help="Start from these weights (a railwatch-struct.pt, or "
                              "a railwatch-struct.onnx such as the shipped one)."),
    lr: float = typer.Option(3e-3, "--lr", min=1e-6, help="Peak learning rate."),
    cloudy_share: float = typer.Option(0.3, "--cloudy-share", min=0.0, max=1.0,
                                       help="Share of yards rendered under partial cloud."),
    nodata_share: float = typer.Option(0.25, "--nodata-share", min=0.0, max=1.0,
                                       help="Share of crops cut into image and no-data."),
    snowy_share: float = typer.Option(0.0, "--snowy-share", min=0.0, max=1.0,
                                      help="Share of yards moved to winter under deep snow."),
) -> None:
    """Train the structure segmentation network of `railwatch changes` on rendered yards."""
    st = _training("railwatch.train.structures")
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        path = data or Path(tmp) / "yards.npz"
        if not path.exists():
            with progress() as bar:
                bar.add_task(f"rendering {samples} yards", total=None)
                st.build_structure_data(path, samples, seed=data_seed, workers=workers,
                                        cloudy_share=cloudy_share, snowy_share=snowy_share)
        with progress() as bar:
            task = bar.add_task("train structure maps", total=None)
            meta = st.train_structures(path, out, minutes=minutes, seed=seed, threads=threads,
                                       init=init, lr=lr, nodata_share=nodata_share,
                                       log=lambda line: bar.update(task, description=line))
    v = meta["validation"]
    info(f"structure model written to {out}/railwatch-struct.onnx: on {v['samples']} held-out "
         f"yards cell IoU {v['iou']:.3f} (precision {v['precision']:.3f}, recall "
         f"{v['recall']:.3f})")


def register(app: typer.Typer) -> None:
    app.command("train")(train_cmd)
    app.command("train-verifier")(train_verifier_cmd)
    app.command("train-refiner")(train_refiner_cmd)
    app.command("train-slots")(train_slots_cmd)
    app.command("train-classifier")(train_classifier_cmd)
    app.command("train-structures")(train_structures_cmd)

"""Training the second-stage verifier (see :mod:`railwatch.detect.verify`).

Data: fresh random chips from both renderers (the scene simulator and our own chip
renderer) at 0.3-0.8 m, resampled to the native 0.5 m exactly as inference does; the
shipped detector proposes candidates at a low threshold on each chip; each candidate is
matched one-to-one to the truth (centres within 4 m, best score first). Matched
candidates take the truth's kind, class and covered flag; unmatched ones are background
(the detector's real false positives: the hard negatives); candidates on cars marked
occluded are left out. Every visible truth object is also added once with a small jitter
of centre and angle, so cars the detector misses still teach class and covered.

Model: ``VerNet``, a small plain CNN on (3, 32, 96) crops with three heads (kind,
class, covered), exported to ONNX with softmax/sigmoid inside.
"""

from __future__ import annotations

import json
import math
import multiprocessing as mp
import os
import re
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from railwatch.detect.model import Detector
from railwatch.detect.session import open_session
from railwatch.detect.verify import CROP_H, CROP_W, VERIFIER_FILE, oriented_crops
from railwatch.errors import InputError
from railwatch.train import synth
from railwatch.train.augment import sensor_jitter
from railwatch.train.loop import NATIVE_GSD, folded_bias, onnx_weights, to_native
from railwatch.types import RAILCAR_CLASSES

VERIFIER_VERSION = "0.1.0"
#: Crops are stored with a margin so training can shift them by a few pixels.
MARGIN = 4
MATCH_M = 4.0
KIND_BG, KIND_RAILCAR, KIND_CONTAINER = 0, 1, 2


# ----------------------------------------------------------------------------- data
def _chip(rng: np.random.Generator, px_native: int = 320, container_lines: float = 0.4,
          container_yards: float = 0.0, sim_share: float = 0.65,
          ) -> tuple[np.ndarray, list[dict]]:
    """A random chip at the native GSD with raster-convention object dicts, from the
    scene simulator (``sim_share`` of chips) or the own chip renderer."""
    gsd = float(rng.choice([0.3, 0.4, 0.5, 0.5, 0.6, 0.8])) * float(rng.uniform(0.93, 1.07))
    px = math.ceil(px_native * NATIVE_GSD / gsd)
    if rng.random() < sim_share:
        from railwatch.simulate.chips import generate_chip, object_records

        image, objects, _ = generate_chip(rng, px, gsd=gsd, container_lines=container_lines,
                                         container_yards=container_yards)
        objs = [dict(o, cx=o["cx"] - 0.5, cy=o["cy"] - 0.5) for o in object_records(objects)]
    else:
        image, objs = synth.generate_chip(rng, px, gsd)
    image, objs = to_native(np.asarray(image)[..., :3], list(objs), gsd)
    if rng.random() < 0.5:  # photometric jitter, as in detector training
        gain = rng.uniform(0.85, 1.15, 3) * rng.uniform(0.8, 1.2)
        x = (image.astype(np.float32) / 255.0) ** rng.uniform(0.8, 1.25) * gain
        image = np.clip(x * 255.0, 0, 255).astype(np.uint8)
    # detector labels put pixel centres on integers; boxes use the raster convention
    return image, [dict(o, cx=o["cx"] + 0.5, cy=o["cy"] + 0.5) for o in objs]


def _label(o: dict[str, Any]) -> tuple[int, int, int]:
    """(kind, class id or -1, covered 0/1 or -1) of a truth object."""
    if o["kind"] == "container":
        return KIND_CONTAINER, -1, -1
    return KIND_RAILCAR, RAILCAR_CLASSES.index(o["class"]), int(bool(o.get("covered")))


#: Flags of harvested samples: a detector candidate, a jittered truth object, and a truth
#: railcar moved far along or across its track (for the box refiner only, see
#: :mod:`railwatch.train.refiner`; the verifier never trains on those).
FLAG_TRUTH, FLAG_CANDIDATE, FLAG_REFINE = 0, 1, 2
#: A crop is moved onto a true railcar within this distance across its axis (and inside
#: its length along it): a box on a car's shadow or on the empty track beside it.
REFINE_ACROSS_M = 6.0


def box_targets(cx: np.ndarray, cy: np.ndarray, angle: np.ndarray, objs: list[dict[str, Any]],
                match: np.ndarray, across_px: float = REFINE_ACROSS_M / NATIVE_GSD,
                ) -> np.ndarray:
    """(N, 3) float32 [along, across, length] of the true railcar each box should become,
    in native pixels in the box's crop frame (``along`` = the crop's columns, ``across`` =
    its rows, as ``oriented_crops`` cuts them); NaN where there is none.

    ``match[i]`` is the truth index box i was matched to (-1: none). An unmatched box takes
    the parallel railcar whose length spans its centre and whose axis lies nearest across
    (within ``across_px``): a too-short box on a long car, a box on the car's shadow.
    Occluded cars and containers are never targets.
    """
    out = np.full((len(cx), 3), np.nan, np.float32)
    car = np.array([o["kind"] == "railcar" and not o.get("occluded") for o in objs], bool)
    if not car.any() or len(cx) == 0:
        return out
    t = np.array([[o["cx"], o["cy"], o["angle_rad"], o["length_px"]] for o in objs], float)
    c, s = np.cos(angle)[:, None], np.sin(angle)[:, None]
    dx, dy = t[None, :, 0] - cx[:, None], t[None, :, 1] - cy[:, None]
    along, across = c * dx + s * dy, -s * dx + c * dy  # (N boxes, M truths)
    dang = np.abs((t[None, :, 2] - angle[:, None] + np.pi / 2) % np.pi - np.pi / 2)
    near = (car[None] & (dang < 0.35) & (np.abs(along) <= t[None, :, 3] / 2)
            & (np.abs(across) <= across_px))
    cost = np.where(near, np.abs(across) + 0.01 * np.abs(along), np.inf)
    j = np.where(match >= 0, match, np.argmin(cost, axis=1))
    ok = np.where(match >= 0, car[np.maximum(match, 0)], np.isfinite(cost.min(axis=1)))
    i = np.nonzero(ok)[0]
    out[i] = np.stack([along[i, j[i]], across[i, j[i]], t[j[i], 3]], axis=1)
    return out


def chip_samples(rng: np.random.Generator, det: Detector, container_lines: float = 0.4,
                 container_yards: float = 0.0, far: bool = False,
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Crops (N, H+2m, W+2m, 3), labels (N, 3) [kind, cls, covered], flags (N,)
    (``FLAG_*``) and box-refinement targets (N, 3) (``box_targets``) from one random chip
    (``far``: also half the true railcars moved far along or across, ``FLAG_REFINE``)."""
    image, objs = _chip(rng, container_lines=container_lines, container_yards=container_yards)
    b = det.boxes(image)
    tol = MATCH_M / NATIVE_GSD
    t_xy = np.array([[o["cx"], o["cy"]] for o in objs]).reshape(-1, 2)
    occl = np.array([bool(o.get("occluded")) for o in objs], bool)
    labels, keep, match = [], [], []
    used = np.zeros(len(objs), bool)
    for i in np.argsort(-b.score):
        if len(objs):
            d = np.hypot(t_xy[:, 0] - b.cx[i], t_xy[:, 1] - b.cy[i])
            d[used] = np.inf
            j = int(np.argmin(d))
            if d[j] <= tol:
                used[j] = True
                if occl[j]:
                    continue  # neither required nor penalised
                labels.append(_label(objs[j]))
                keep.append(i)
                match.append(j)
                continue
        labels.append((KIND_BG, -1, -1))
        keep.append(i)
        match.append(-1)
    cx, cy, ang = list(b.cx[keep]), list(b.cy[keep]), list(b.angle[keep])
    flags = [FLAG_CANDIDATE] * len(keep)
    for j, o in enumerate(objs):
        if occl[j] or o.get("truncated"):
            continue
        if rng.random() >= 0.4:
            cx.append(o["cx"] + rng.normal(0, 1.2))
            cy.append(o["cy"] + rng.normal(0, 1.2))
            ang.append(o["angle_rad"] + rng.normal(0, 0.03))
            labels.append(_label(o))
            flags.append(FLAG_TRUTH)
            match.append(j)
        if far and o["kind"] == "railcar" and rng.random() < 0.5:  # along, or across
            a = o["angle_rad"] + rng.normal(0, 0.03)
            du = rng.uniform(-0.45, 0.45) * o["length_px"]
            dv = rng.normal(0, 1.5) if rng.random() < 0.6 else (
                rng.choice([-1, 1]) * rng.uniform(5.0, 12.0))
            cx.append(o["cx"] + du * np.cos(a) - dv * np.sin(a))
            cy.append(o["cy"] + du * np.sin(a) + dv * np.cos(a))
            ang.append(a)
            labels.append(_label(o))
            flags.append(FLAG_REFINE)
            match.append(-1)
    size = (CROP_H + 2 * MARGIN, CROP_W + 2 * MARGIN)
    cx_a, cy_a, ang_a = np.array(cx), np.array(cy), np.array(ang)
    crops = oriented_crops(image, cx_a, cy_a, ang_a, size)
    targets = box_targets(cx_a, cy_a, ang_a, objs, np.array(match, int))
    return (crops, np.array(labels, np.int8).reshape(-1, 3), np.array(flags, np.int8),
            targets)


def _worker(args: tuple[int, int, int, str | None, float, float, float, bool],
            ) -> dict[str, np.ndarray]:
    seed, wid, n, model, threshold, lines, yards, far = args
    det = Detector(model, threshold=threshold, threads=1, verify=False)
    rng = np.random.default_rng([seed, wid])
    parts = [chip_samples(rng, det, lines, yards, far) for _ in range(n)]
    return {k: np.concatenate([p[i] for p in parts])
            for i, k in enumerate(("crops", "labels", "flags", "targets"))}


def chips_per_worker(chips: int, workers: int) -> list[int]:
    """``chips`` split as evenly as possible over ``workers`` processes."""
    return [chips // workers + (1 if w < chips % workers else 0) for w in range(workers)]


def run_workers(worker: Callable[[Any], Any], jobs: list[Any]) -> list[Any]:
    """``worker`` over ``jobs``, one spawned process each when there are several."""
    if len(jobs) > 1:
        with mp.get_context("spawn").Pool(len(jobs)) as pool:
            return pool.map(worker, jobs)
    return [worker(jobs[0])]


def save_npz(out: str | os.PathLike[str], **arrays: np.ndarray) -> Path:
    """Write a harvest atomically (a killed run leaves no half-written file)."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".tmp.npz")
    np.savez(tmp, **arrays)
    os.replace(tmp, out)
    return out


def build_data(out: str | os.PathLike[str], chips: int, seed: int = 0, workers: int = 2,
               model: str | None = None, threshold: float = 0.15,
               container_lines: float = 0.4, container_yards: float = 0.0,
               far: bool = False) -> dict[str, int]:
    """Write ``out`` (.npz) with crops, labels, flags and box targets from ``chips`` random
    chips (``container_lines`` / ``container_yards``: shares of the simulator's container
    lots staged in lines / laid out as yards, see ``random_world``; ``far``: add the box
    refiner's far-off samples, see ``chip_samples``)."""
    per = chips_per_worker(chips, workers)
    jobs = [(seed, w, per[w], model, threshold, container_lines, container_yards, far)
            for w in range(workers)]
    parts = run_workers(_worker, jobs)
    data = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
    save_npz(out, **data)
    kind = data["labels"][:, 0]
    return {"samples": len(kind), "background": int((kind == KIND_BG).sum()),
            "railcar": int((kind == KIND_RAILCAR).sum()),
            "container": int((kind == KIND_CONTAINER).sum()),
            "covered": int((data["labels"][:, 2] == 1).sum()),
            "box_targets": int(np.isfinite(data["targets"][:, 0]).sum())}


# ---------------------------------------------------------------------------- model
def _block(cin: int, cout: int, stride: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout),
                         nn.ReLU(inplace=True))


def crop_cnn(width: int) -> nn.Sequential:
    """Seven conv3x3-BN-ReLU layers, three of stride 2: (3, 32, 96) -> (6 * width, 4, 12)."""
    w = width
    return nn.Sequential(
        _block(3, w, 1),
        _block(w, 2 * w, 2), _block(2 * w, 2 * w, 1),
        _block(2 * w, 4 * w, 2), _block(4 * w, 4 * w, 1),
        _block(4 * w, 6 * w, 2), _block(6 * w, 6 * w, 1),
    )


class VerNet(nn.Module):
    """A plain CNN on (3, 32, 96) crops: kind (3), class (7) and covered (1) logits.

    Besides global pooling it pools the crop's middle (where the candidate lies), so
    the heads see both the car itself and its neighbourhood.
    """

    def __init__(self, width: int = 16) -> None:
        super().__init__()
        self.width = width
        self.features = crop_cnn(width)
        f = 6 * width
        self.fc = nn.Sequential(nn.Linear(2 * f, 128), nn.ReLU(inplace=True), nn.Dropout(0.2))
        self.kind = nn.Linear(128, 3)
        self.cls = nn.Linear(128, len(RAILCAR_CLASSES))
        self.covered = nn.Linear(128, 1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        z = self.features(x / 255.0 - 0.5)  # (N, f, 4, 12)
        mid = z[:, :, 1:3, 3:9].mean(dim=(2, 3))
        h = self.fc(torch.cat([z.mean(dim=(2, 3)), mid], dim=1))
        return self.kind(h), self.cls(h), self.covered(h)


class ExportedVerNet(nn.Module):
    """Probabilities for ONNX: softmax kind, softmax class, sigmoid covered."""

    def __init__(self, net: VerNet) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        k, c, v = self.net(x)
        return F.softmax(k, 1), F.softmax(c, 1), torch.sigmoid(v)


def export_crop_model(module: nn.Module, path: str | os.PathLike[str],
                      outputs: Sequence[str]) -> Path:
    """Write a crop model's ONNX (input ``crops`` (N, 3, 32, 96) float 0..255; ``outputs``
    named, all batched) atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        with torch.no_grad():
            torch.onnx.export(module.eval(), (torch.zeros(1, 3, CROP_H, CROP_W),), tmp,
                              input_names=["crops"], output_names=list(outputs),
                              dynamic_axes={k: {0: "n"} for k in ("crops", *outputs)},
                              opset_version=17, dynamo=False)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def export_verifier(net: VerNet, path: str | os.PathLike[str]) -> Path:
    """Write the verifier's ONNX (probabilities ``kind``, ``cls``, ``covered``)."""
    return export_crop_model(ExportedVerNet(net), path, ["kind", "cls", "covered"])


# ------------------------------------------------------------------------- training
def _augment(x: np.ndarray, rng: np.random.Generator, margin: int = MARGIN) -> np.ndarray:
    """Random shift within ``margin``, 180-degree turn and mirror across the car's axis."""
    n = len(x)
    out = np.empty((n, CROP_H, CROP_W, 3), np.uint8)
    dy = rng.integers(0, 2 * margin + 1, n)
    dx = rng.integers(0, 2 * margin + 1, n)
    for i in range(n):
        c = x[i, dy[i]:dy[i] + CROP_H, dx[i]:dx[i] + CROP_W]
        if rng.random() < 0.5:
            c = c[::-1, ::-1]
        if rng.random() < 0.5:
            c = c[::-1]
        out[i] = c
    return out


def _center(x: np.ndarray, margin: int = MARGIN) -> np.ndarray:
    return x[:, margin:margin + CROP_H, margin:margin + CROP_W]


def holdout(n: int, fraction: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """(held-out, training) indices of ``n`` samples: a random ``fraction`` (at least one)
    held out."""
    order = rng.permutation(n)
    n_val = max(1, int(n * fraction))
    return order[:n_val], order[n_val:]


def _losses(out: tuple[torch.Tensor, ...], y: torch.Tensor) -> torch.Tensor:
    k, c, v = out
    kind, cls, cov = y[:, 0], y[:, 1], y[:, 2]
    loss = F.cross_entropy(k, kind)
    m = cls >= 0
    if m.any():
        loss = loss + F.cross_entropy(c[m], cls[m])
    m = cov >= 0
    if m.any():
        loss = loss + F.binary_cross_entropy_with_logits(v[m, 0], cov[m].float(),
                                                         pos_weight=torch.tensor(2.0))
    return loss


def _vernet_nodes(m: Any, value: Callable[[str], np.ndarray], net: VerNet,
                  ) -> tuple[str, list[Any], list[Any]]:
    """(name prefix, Conv nodes, Gemm nodes) of the VerNet in graph ``m`` that fits ``net``:
    the graph itself, or in an averaged graph (``average_verifiers``: members' nodes
    prefixed ``m0_``, ``m1_``, ...) the first member of ``net``'s width."""
    members: dict[str, list[Any]] = {}
    for n in m.graph.node:
        if n.op_type in ("Conv", "Gemm"):
            found = re.match(r"m\d+_", n.name)
            members.setdefault(found.group(0) if found else "", []).append(n)
    seen = []
    for prefix, nodes in members.items():
        convs = [n for n in nodes if n.op_type == "Conv"]
        width = value(convs[0].input[1]).shape[0] if convs else 0
        seen.append(f"{len(convs)} convolutions of width {width}")
        if len(convs) == len(net.features) and width == net.width:
            return prefix, convs, [n for n in nodes if n.op_type == "Gemm"]
    raise KeyError(f"found {', '.join(seen) or 'no convolutions'}; VerNet has "
                   f"{len(net.features)}")


def init_vernet_from_onnx(net: VerNet, path: str | os.PathLike[str]) -> None:
    """Load an exported verifier or class stage (float or 8-bit; of an averaged one, the
    member of ``net``'s width) into ``net`` to train it further. The exporter folds each
    BatchNorm into its convolution: the folded weights go into the convolution and the
    BatchNorm becomes the identity plus the folded bias, to be kept fixed
    (``freeze_batchnorm``) while training goes on."""
    try:
        m, value = onnx_weights(path)
        prefix, convs, gemms = _vernet_nodes(m, value, net)
        pairs = [(block[0], block[1]) for block in net.features]  # conv, BatchNorm
        state = net.state_dict()
        with torch.no_grad():
            for node, (conv, bn) in zip(convs, pairs, strict=True):
                conv.weight.copy_(torch.from_numpy(value(node.input[1])))
                folded_bias(bn, torch.from_numpy(value(node.input[2])))
            for node in gemms:
                key = (node.input[1].removesuffix("_DequantizeLinear_Output")
                       .removeprefix(prefix).removeprefix("net."))
                trans_b = next((a.i for a in node.attribute if a.name == "transB"), 0)
                w = value(node.input[1])
                state[key].copy_(torch.from_numpy(w if trans_b else w.T))
                state[key.replace(".weight", ".bias")].copy_(torch.from_numpy(value(node.input[2])))
    except (KeyError, RuntimeError, StopIteration) as exc:
        raise InputError(f"not a VerNet of width {net.width} to train on: {exc}",
                         path) from None


def freeze_batchnorm(net: nn.Module) -> None:
    """Put every BatchNorm in eval mode (fixed affines), e.g. after ``net.train()``."""
    for mod in net.modules():
        if isinstance(mod, nn.BatchNorm2d):
            mod.eval()


def evaluate_arrays(net: VerNet, crops: np.ndarray, labels: np.ndarray,
                    flags: np.ndarray) -> dict[str, float]:
    """Accuracy of each head on held-out crops (candidates only for the kind head)."""
    net.eval()
    ks, cs, vs = [], [], []
    with torch.no_grad():
        for i in range(0, len(crops), 512):
            x = torch.from_numpy(np.ascontiguousarray(
                _center(crops[i:i + 512]).transpose(0, 3, 1, 2))).float()
            k, c, v = net(x)
            ks.append(k.argmax(1).numpy())
            cs.append(c.argmax(1).numpy())
            vs.append((v[:, 0] > 0).numpy())
    k, c, v = np.concatenate(ks), np.concatenate(cs), np.concatenate(vs)
    cand = flags == 1
    kind = labels[:, 0]
    bg = cand & (kind == KIND_BG)
    obj = cand & (kind != KIND_BG)
    railcar = labels[:, 1] >= 0
    covm = labels[:, 2] >= 0
    return {
        "background_rejected": float((k[bg] == KIND_BG).mean()) if bg.any() else math.nan,
        "objects_kept": float((k[obj] != KIND_BG).mean()) if obj.any() else math.nan,
        "kind_accuracy": float((k[obj] == kind[obj]).mean()) if obj.any() else math.nan,
        "class_accuracy": float((c[railcar] == labels[railcar, 1]).mean()),
        "covered_accuracy": float((v[covm] == labels[covm, 2]).mean()),
        "covered_recall": float(v[labels[:, 2] == 1].mean()) if (labels[:, 2] == 1).any()
        else math.nan,
    }


class Budget:
    """A training run's budget: wall-clock ``minutes`` or ``max_steps``, whichever ends
    first; ``batches`` deals shuffled index batches epoch after epoch and sets the
    learning rate on a cosine over the budget (so a run that is cut short still anneals)."""

    def __init__(self, minutes: float, max_steps: int | None = None) -> None:
        self.seconds, self.max_steps = minutes * 60.0, max_steps
        self.t0 = time.time()
        self.step = self.epoch = 0

    def elapsed(self) -> float:
        return time.time() - self.t0

    def progress(self) -> float:
        frac = self.elapsed() / self.seconds
        return min(1.0, max(frac, self.step / self.max_steps if self.max_steps else 0.0))

    def batches(self, opt: torch.optim.Optimizer, lr: float, train: np.ndarray, batch: int,
                rng: np.random.Generator, on_epoch: Callable[[int], None] | None = None,
                ) -> Iterator[np.ndarray]:
        per_epoch = max(1, len(train) // batch)
        while self.progress() < 1.0:
            perm = rng.permutation(train)
            for s in range(per_epoch):
                frac = self.progress()
                if frac >= 1.0:
                    break
                for g in opt.param_groups:
                    g["lr"] = lr * (0.02 + 0.98 * 0.5 * (1 + math.cos(math.pi * frac)))
                yield np.sort(perm[s * batch:(s + 1) * batch])
                self.step += 1
            self.epoch += 1
            if on_epoch is not None:
                on_epoch(self.epoch)


def train_verifier(data: str | os.PathLike[str] | Sequence[str | os.PathLike[str]],
                   out_dir: str | os.PathLike[str], *,
                   minutes: float = 20.0, seed: int = 0, batch: int = 128, lr: float = 2e-3,
                   width: int = 16, threads: int = 2, val_fraction: float = 0.05,
                   max_steps: int | None = None, jitter: bool = True,
                   on_epoch: Callable[[int, dict[str, float]], None] | None = None,
                   init: str | os.PathLike[str] | None = None,
                   ) -> dict[str, Any]:
    """Train VerNet on ``build_data`` files (one or several, pooled) for ``minutes`` (or
    ``max_steps``, whichever comes first; the learning rate follows the budget;
    ``jitter``: ``railwatch.train.augment.sensor_jitter`` on every crop; ``init``: an
    exported VerNet, float or 8-bit, to go on from, its BatchNorms fixed); write
    ``railwatch-ver.onnx`` and the ``verifier`` block of ``out_dir/model.json``. Returns
    that block."""
    torch.manual_seed(seed)
    torch.set_num_threads(threads)
    rng = np.random.default_rng(seed)
    files = [data] if isinstance(data, (str, os.PathLike)) else list(data)
    parts = [np.load(f) for f in files]
    crops = np.concatenate([p["crops"] for p in parts])
    labels = np.concatenate([p["labels"] for p in parts]).astype(np.int64)
    flags = np.concatenate([p["flags"] for p in parts])
    del parts
    if (flags == FLAG_REFINE).any():  # the box refiner's samples are not for the verifier
        sel = flags != FLAG_REFINE
        crops, labels, flags = crops[sel], labels[sel], flags[sel]
    val, tr = holdout(len(crops), val_fraction, rng)
    n_val = len(val)
    net = VerNet(width)
    if init is not None:
        init_vernet_from_onnx(net, init)
    opt = torch.optim.AdamW(net.parameters(), lr=lr, weight_decay=1e-4)
    budget = Budget(minutes, max_steps)
    epoch_end = None if on_epoch is None else (lambda e: on_epoch(
        e, evaluate_arrays(net, crops[val], labels[val], flags[val])))
    for idx in budget.batches(opt, lr, tr, batch, rng, epoch_end):
        net.train()
        if init is not None:
            freeze_batchnorm(net)
        x = _augment(crops[idx], rng)
        if jitter:  # sensors and processing differ, crop by crop
            x = np.stack([sensor_jitter(c, rng) for c in x])
        elif rng.random() < 0.5:  # the per-batch colour gain of verifiers <= 0.1.1
            x = np.clip(x.astype(np.float32) * rng.uniform(0.8, 1.2, 3), 0, 255)
        xt = torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2))).float()
        loss = _losses(net(xt), torch.from_numpy(labels[idx]))
        opt.zero_grad()
        loss.backward()
        opt.step()
    metrics = evaluate_arrays(net, crops[val], labels[val], flags[val])
    out = Path(out_dir)
    export_verifier(net, out / VERIFIER_FILE)
    block = {
        "file": VERIFIER_FILE, "version": VERIFIER_VERSION,
        "architecture": f"VerNet: 7 conv3x3-BN-ReLU layers (width {width}), global + centre "
                        "pooling, heads kind (background/railcar/container), class (7), covered",
        "parameters": sum(p.numel() for p in net.parameters()),
        "crop_px": [CROP_H, CROP_W], "max_background": 0.5, "min_score": 0.0,
        "training": {"samples": len(tr), "validation_samples": int(n_val),
                     "epochs": budget.epoch, "steps": budget.step, "batch": batch, "lr": lr,
                     "seed": seed, "minutes": round(budget.elapsed() / 60, 1),
                     **({} if init is None else {"init": Path(init).name}),
                     "validation": {k: round(v, 4) for k, v in metrics.items()}},
    }
    # a verifier of its own: a second part left from an earlier one does not go with it
    return update_verifier_meta(out, {**block, "second": None})


def update_model_meta(model_dir: str | os.PathLike[str], key: str, values: dict[str, Any],
                      replace: bool = False) -> dict[str, Any]:
    """Merge ``values`` into the ``key`` block of ``model_dir/model.json`` (atomic; a value
    of None removes that entry; ``replace``: the block becomes ``values`` alone, so no
    entry of an earlier model stays); returns the block."""
    meta_path = Path(model_dir) / "model.json"
    meta = json.loads(meta_path.read_text()) if meta_path.exists() else {}
    merged = dict(values) if replace else {**meta.get(key, {}), **values}
    meta[key] = {k: v for k, v in merged.items() if v is not None}
    tmp = meta_path.with_suffix(".tmp")
    tmp.write_text(json.dumps(meta, indent=2))
    os.replace(tmp, meta_path)
    return meta[key]


def update_verifier_meta(model_dir: str | os.PathLike[str], values: dict[str, Any],
                         ) -> dict[str, Any]:
    """Merge ``values`` into the ``verifier`` block of ``model_dir/model.json``."""
    return update_model_meta(model_dir, "verifier", values)


def average_verifiers(paths: list[str | os.PathLike[str]],
                      out: str | os.PathLike[str],
                      weights: Sequence[float] | None = None) -> Path:
    """One ONNX graph whose outputs are the mean of several verifiers' probabilities (an
    ensemble of models trained on different chips and seeds generalises better than any
    one of them; it costs each member's time). ``weights`` (normalised to sum 1): a
    weighted mean instead."""
    import onnx
    from onnx import compose, helper

    models = [onnx.load(str(p)) for p in paths]
    if len(models) < 2:
        raise ValueError("average_verifiers needs at least two models")
    first = models[0]
    names = [o.name for o in first.graph.output]
    nodes: list[Any] = []
    inits: list[Any] = []
    for k, m in enumerate(models):
        pm = compose.add_prefix(m, f"m{k}_")
        for n in pm.graph.node:  # all read the one input
            n.input[:] = ["crops" if i == f"m{k}_crops" else i for i in n.input]
            nodes.append(n)
        inits += list(pm.graph.initializer)
    w = np.full(len(models), 1.0) if weights is None else np.asarray(weights, float)
    if len(w) != len(models) or (w < 0).any() or w.sum() <= 0:
        raise ValueError("average_verifiers needs one non-negative weight per model")
    w = w / w.sum()
    for name in names:
        for k in range(len(models)):
            nodes.append(helper.make_node("Mul", [f"m{k}_{name}", f"w{k}"], [f"w{k}_{name}"]))
        nodes.append(helper.make_node("Sum", [f"w{k}_{name}" for k in range(len(models))],
                                      [name]))
    ws = [helper.make_tensor(f"w{k}", onnx.TensorProto.FLOAT, [], [float(w[k])])
          for k in range(len(models))]
    graph = helper.make_graph(nodes, "verifier_mean", list(first.graph.input),
                              list(first.graph.output), initializer=[*inits, *ws])
    model = helper.make_model(graph, opset_imports=first.opset_import)
    model.ir_version = first.ir_version
    onnx.checker.check_model(model)
    out = Path(out)
    tmp = out.with_suffix(".tmp")
    onnx.save(model, str(tmp))
    os.replace(tmp, out)
    return out


def quantize_crop_model(src: str | os.PathLike[str], out: str | os.PathLike[str],
                        data: str | os.PathLike[str] | Sequence[str | os.PathLike[str]],
                        n: int = 600, seed: int = 0,
                        float_ops: Sequence[str] = ("Softmax", "Sigmoid", "Sum", "Mul"),
                        margin: int = MARGIN) -> tuple[np.ndarray, np.ndarray, str]:
    """Write an 8-bit (QDQ, per-channel) copy of a crop model (verifier, refiner or slot
    classifier), calibrated on ``n`` crops drawn from harvested data (stored with
    ``margin`` px around the crop); nodes of ``float_ops`` (output heads) stay float.
    Returns the first output of the float and the 8-bit model on ``n`` other crops, to be
    compared (not assumed equal), and a description of the method."""
    import onnx
    from onnxruntime.quantization import (
        CalibrationDataReader,
        QuantFormat,
        QuantType,
        quant_pre_process,
        quantize_static,
    )

    files = [data] if isinstance(data, (str, os.PathLike)) else list(data)
    crops = np.concatenate([np.load(f)["crops"] for f in files])
    n = min(n, len(crops) // 2)
    pick = np.sort(np.random.default_rng(seed).choice(len(crops), 2 * n, replace=False))
    x = np.ascontiguousarray(_center(crops[pick], margin).transpose(0, 3, 1, 2),
                             np.float32)
    del crops
    cal, check = x[:n], x[n:]

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.i = 0

        def get_next(self) -> dict[str, np.ndarray] | None:
            if self.i >= len(cal):
                return None
            self.i += 50
            return {"crops": cal[self.i - 50:self.i]}

    out = Path(out)
    q = out.with_name(f".{out.name}.tmp")
    with tempfile.TemporaryDirectory() as tmp:
        pre = Path(tmp) / "pre.onnx"
        quant_pre_process(str(src), str(pre))
        heads = [nd.name for nd in onnx.load(str(pre)).graph.node if nd.op_type in float_ops]
        quantize_static(str(pre), str(q), Reader(), quant_format=QuantFormat.QDQ,
                        per_channel=True, activation_type=QuantType.QUInt8,
                        weight_type=QuantType.QInt8, nodes_to_exclude=heads)
        ka, kb = (open_session(Path(p), threads=1).run(None, {"crops": check})[0]
                  for p in (src, q))
    os.replace(q, out)
    method = ("onnxruntime quantize_static, QDQ, per-channel int8 weights, uint8 activations "
              f"(convolutions and dense layers; {', '.join(float_ops)} stay float), "
              f"calibrated on {n} harvested crops (seed {seed})")
    return ka, kb, method


def quantize_verifier(src: str | os.PathLike[str], out: str | os.PathLike[str],
                      data: str | os.PathLike[str] | Sequence[str | os.PathLike[str]],
                      n: int = 600, seed: int = 0) -> dict[str, Any]:
    """Write an 8-bit copy of a verifier (``quantize_crop_model``); about twice as fast on
    a CPU with VNNI. Returns how closely its kind probabilities follow the float model."""
    ka, kb, method = quantize_crop_model(src, out, data, n, seed)
    return {"method": method,
            "kind_mean_abs_diff": round(float(np.abs(ka - kb).mean()), 4),
            "kind_argmax_agreement": round(float((ka.argmax(1) == kb.argmax(1)).mean()), 4),
            "background_decision_agreement": round(
                float(((ka[:, 0] >= 0.5) == (kb[:, 0] >= 0.5)).mean()), 4)}

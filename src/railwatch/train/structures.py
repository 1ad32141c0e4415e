"""Train the structure segmentation network of the change finder (needs torch).

Data: random yards (``railwatch.simulate.layout.random_world``) with up to eight extra
buildings, sheds and platforms, rendered on a random date under random season, snow,
sun, haze, off-nadir lean, GSD (0.3 to 0.8 m), noise and blur, with moving trains; each
image is read onto a 1 m grid exactly as the change finder reads images
(:func:`railwatch.analytics.coregister.read_on_grid`) and labelled with every standing
building's roof and visible walls (its footprint and the footprint displaced by the
lean); walls of the yard and cells outside the image are ignored. A share of the yards
is rendered under partial cloud (clouds are not roofs; roofs under opaque cloud are
ignored), and a share of the training crops is cut by a straight line into image and
no-data, as where an image ends on the site grid. Model: a small U-Net
(:class:`StructNet`), loss binary cross-entropy plus soft Dice. Export: ONNX with the
sigmoid inside, ``image`` (N, 3, H, W) float about 0..1 -> ``structure`` (N, 1, H, W).

    railwatch train-structures --out MODEL_DIR --samples 6000 --minutes 60
    railwatch train-structures --out MODEL_DIR2 --init MODEL_DIR/railwatch-struct.pt ...
    railwatch train-structures --out MINE --init .../changes/model/railwatch-struct.onnx ...
"""

from __future__ import annotations

import datetime as dt
import itertools
import json
import os
import tempfile
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from affine import Affine
from rasterio import features
from rasterio.crs import CRS
from rasterio.warp import Resampling, reproject
from shapely import affinity
from shapely.geometry import LineString, MultiPoint, box
from torch import nn
from torch.nn import functional as F

from railwatch.analytics.coregister import Grid, read_on_grid
from railwatch.simulate.layout import (
    moving_trains,
    occupied_ground,
    random_conditions,
    random_world,
)
from railwatch.simulate.render import render, write_geotiff
from railwatch.simulate.sun import lean_vector
from railwatch.simulate.world import Building, World
from railwatch.train.verifier import Budget, run_workers, save_npz

#: Half the side of a rendered sample (m); samples are SAMPLE_PX cells of 1 m.
HALF_M = 160.0
SAMPLE_PX = 320
IGNORE = 255
DATA_SEED = 424242
#: Share of samples rendered under partial cloud (cover 0.05 to 0.5).
CLOUDY_SHARE = 0.3
#: Share of samples rendered as deep-snow winter scenes (snow 0.5 to 1.0, winter sun): the
#: change finder must see buildings through snow to tell them from empty ground.
SNOWY_SHARE = 0.0
#: Share of training crops cut by a random line into image and no-data (an image's edge).
NODATA_SHARE = 0.25


# ------------------------------------------------------------------------------- data
def _extra_buildings(rng: np.random.Generator, world: World, k: int) -> None:
    occ = occupied_ground(world)
    lo, hi = -HALF_M + 20, HALF_M - 20
    added = 0
    for _ in range(300):
        if added >= k:
            break
        w, h = rng.uniform(5, 50), rng.uniform(5, 32)
        cx, cy = rng.uniform(lo, hi), rng.uniform(lo, hi)
        poly = affinity.rotate(box(cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2),
                               rng.uniform(0, 180))
        if any(poly.intersects(o) for o in occ):
            continue
        roof = tuple(int(v) for v in rng.integers(40, 240, size=3))
        kind = str(rng.choice(["warehouse", "shed", "warehouse", "platform"]))
        height = float(rng.uniform(0.8, 1.5) if kind == "platform" else rng.uniform(3, 14))
        world.buildings.append(
            Building(np.asarray(poly.exterior.coords)[:4], height, roof, kind)  # type: ignore[arg-type]
        )
        occ.append(poly.buffer(6))
        added += 1


def structure_sample(seed: int, index: int, tmpdir: str | os.PathLike[str],
                     cloudy_share: float = CLOUDY_SHARE,
                     snowy_share: float = SNOWY_SHARE) -> tuple[np.ndarray, np.ndarray]:
    """One rendered sample: RGB (SAMPLE_PX, SAMPLE_PX, 3) uint8 on the 1 m grid and its
    label (1 structure, 0 not, IGNORE unknown). A ``cloudy_share`` of samples is rendered
    under partial cloud: ground under cloud is labelled 0 (clouds are not roofs), roofs
    under opaque cloud IGNORE. A ``snowy_share`` is moved to a winter date under deep
    snow."""
    rng = np.random.default_rng([seed, index])
    ox, oy = 500_000.0 + 1000 * (index % 97), 4_700_000.0
    ext = (-HALF_M, -HALF_M, HALF_M, HALF_M)
    world = random_world(rng, ext, origin=(ox, oy))
    _extra_buildings(rng, world, int(rng.integers(1, 9)))
    when = dt.datetime(2021, 1, 1, 2, tzinfo=dt.UTC) + dt.timedelta(
        days=float(rng.uniform(0, 730)), minutes=float(rng.uniform(0, 120)))
    cond = random_conditions(rng, gsd_choices=(0.3, 0.5, 0.5, 0.8, 0.8),
                             lat=float(rng.uniform(35, 50)))
    winter = when.month in (12, 1, 2)
    snow = (float(rng.uniform(0.2, 1.0)) if winter and rng.random() < 0.7
            else float(rng.uniform(0.1, 0.6)) if rng.random() < 0.05 else 0.0)
    # Clouds come from a stream of their own, so cloud-free samples stay as they were.
    crng = np.random.default_rng([seed, index, 1])
    cloud = float(crng.uniform(0.05, 0.5)) if crng.random() < cloudy_share else 0.0
    srng = np.random.default_rng([seed, index, 2])  # and deep snow from a third
    if srng.random() < snowy_share:
        when = dt.datetime(2020 + int(srng.integers(1, 3)), 12, 1, 2, tzinfo=dt.UTC) + dt.timedelta(
            days=float(srng.uniform(0, 80)), minutes=float(srng.uniform(0, 120)))
        snow = float(srng.uniform(0.5, 1.0))
    cond = replace(cond, when=when, lon=float(rng.uniform(120, 135)), snow=snow,
                   cloud_cover=cloud, off_nadir_deg=float(rng.uniform(0, 18)))
    for b in world.buildings:  # some gone by this date
        if b.kind != "platform" and rng.random() < 0.15:
            b.removed = (when - dt.timedelta(days=30)).date()
    world.cars = moving_trains(rng, world)
    path = Path(tmpdir) / f"s{index}.tif"
    rendered = render(world, cond)
    write_geotiff(rendered, path, cond, truth=False)
    grid = Grid(CRS.from_user_input(world.crs),
                Affine(1.0, 0, ext[0] + ox, 0, -1.0, ext[3] + oy), SAMPLE_PX, SAMPLE_PX)
    rgb, valid = read_on_grid(path, grid)
    path.unlink()
    lean = lean_vector(cond.off_nadir_deg, cond.off_nadir_azimuth_deg)
    local = Affine(1.0, 0, ext[0], 0, -1.0, ext[3])
    shape = (SAMPLE_PX, SAMPLE_PX)
    roofs = [(MultiPoint(np.concatenate([b.polygon, b.polygon + lean * b.height_m])).convex_hull, 1)
             for b in world.buildings if b.exists(when)]
    label = (features.rasterize(roofs, out_shape=shape, transform=local, fill=0, dtype="uint8")
             if roofs else np.zeros(shape, np.uint8))
    walls = [(LineString(w.vertices).buffer(1.5), 1) for w in world.walls if w.exists(when)]
    if walls:
        label[features.rasterize(walls, out_shape=shape, transform=local, fill=0,
                                 dtype="uint8") > 0] = IGNORE
    if rendered.cloud_mask.any():  # ground under cloud is no structure; a roof there is unseen
        under = np.zeros(shape, np.float32)
        reproject(rendered.cloud_mask.astype(np.float32), under,
                  src_transform=rendered.transform, src_crs=rendered.crs,
                  dst_transform=grid.transform, dst_crs=grid.crs, resampling=Resampling.average)
        label[(under > 0.5) & (label == 1)] = IGNORE
    label[~valid] = IGNORE
    return np.clip(rgb * 255 + 0.5, 0, 255).astype(np.uint8), label


def _worker(args: tuple[int, int, int, float, float]) -> tuple[np.ndarray, np.ndarray]:
    seed, start, stop, cloudy_share, snowy_share = args
    with tempfile.TemporaryDirectory() as tmp:
        pairs = [structure_sample(seed, i, tmp, cloudy_share, snowy_share)
                 for i in range(start, stop)]
    return np.stack([p[0] for p in pairs]), np.stack([p[1] for p in pairs])


def build_structure_data(out: str | os.PathLike[str], samples: int, seed: int = DATA_SEED,
                         workers: int = 2, start: int = 0,
                         cloudy_share: float = CLOUDY_SHARE,
                         snowy_share: float = SNOWY_SHARE) -> int:
    """Write ``out`` (.npz: ``x`` images, ``y`` labels) with samples ``start`` ..
    ``start + samples`` of the ``seed`` stream; returns the count."""
    bounds = np.linspace(start, start + samples, workers + 1).round().astype(int)
    jobs = [(seed, int(a), int(b), cloudy_share, snowy_share)
            for a, b in itertools.pairwise(bounds) if b > a]
    parts = run_workers(_worker, jobs)
    save_npz(out, x=np.concatenate([p[0] for p in parts]), y=np.concatenate([p[1] for p in parts]))
    return samples


# ------------------------------------------------------------------------------ model
def _cbr(cin: int, cout: int, stride: int = 1, dilation: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride, dilation, dilation=dilation, bias=False),
                         nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class StructNet(nn.Module):
    """A small U-Net at the 1 m grid: three stride-2 stages (the last dilated, so a 50 m
    roof fits its view), skip connections, one logit per cell."""

    def __init__(self, width: int = 16) -> None:
        super().__init__()
        w = width
        self.width = width
        # Batch norms kept as they are while training (a net loaded from an ONNX export,
        # whose folded convolutions assume them fixed): :func:`set_training`.
        self.frozen_bn = False
        self.e1 = nn.Sequential(_cbr(3, w), _cbr(w, w))
        self.e2 = nn.Sequential(_cbr(w, 2 * w, 2), _cbr(2 * w, 2 * w))
        self.e3 = nn.Sequential(_cbr(2 * w, 3 * w, 2), _cbr(3 * w, 3 * w))
        self.e4 = nn.Sequential(_cbr(3 * w, 4 * w, 2), _cbr(4 * w, 4 * w, dilation=2),
                                _cbr(4 * w, 4 * w, dilation=4))
        self.d3 = _cbr(7 * w, 3 * w)
        self.d2 = _cbr(5 * w, 2 * w)
        self.d1 = _cbr(3 * w, w)
        self.head = nn.Conv2d(w, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        def up(t: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
            return F.interpolate(t, size=ref.shape[-2:], mode="bilinear", align_corners=False)

        a = self.e1(x - 0.45)
        b = self.e2(a)
        c = self.e3(b)
        d = self.e4(c)
        c = self.d3(torch.cat([up(d, c), c], 1))
        b = self.d2(torch.cat([up(c, b), b], 1))
        return self.head(self.d1(torch.cat([up(b, a), a], 1)))


def structnet_from_onnx(path: str | os.PathLike[str]) -> StructNet:
    """The StructNet of a ``railwatch-struct.onnx`` (the shipped model ships without its
    torch weights): the export folded each batch norm into its convolution, so the
    convolutions take the folded weights and each batch norm is set to add the folded
    bias and nothing else (marked ``frozen_bn``: training keeps them so, see
    :func:`set_training`). Outputs match the ONNX model's."""
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(path))
    inits = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    convs = [(inits[n.input[1]], inits[n.input[2]])
             for n in model.graph.node if n.op_type == "Conv"]
    net = StructNet(int(convs[0][0].shape[0]))
    modules = list(net.modules())
    mine = [i for i, m in enumerate(modules) if isinstance(m, nn.Conv2d)]
    if len(mine) != len(convs):
        raise ValueError(f"{path}: {len(convs)} convolutions, a StructNet has {len(mine)}")
    with torch.no_grad():
        for i, (w, b) in zip(mine, convs, strict=True):
            conv = modules[i]
            if tuple(conv.weight.shape) != w.shape:
                raise ValueError(f"{path}: a convolution of shape {w.shape} where a StructNet "
                                 f"has {tuple(conv.weight.shape)}")
            conv.weight.copy_(torch.from_numpy(w.copy()))
            if conv.bias is not None:
                conv.bias.copy_(torch.from_numpy(b.copy()))
                continue
            bn = modules[i + 1]  # _cbr: conv, batch norm, relu
            bn.weight.fill_(1.0)
            bn.bias.copy_(torch.from_numpy(b.copy()))
            bn.running_mean.zero_()
            bn.running_var.fill_(1.0 - bn.eps)
    net.frozen_bn = True
    return net


def set_training(net: StructNet) -> None:
    """Training mode, with batch norms kept in inference mode where ``net.frozen_bn``
    (a net from :func:`structnet_from_onnx`: its folded weights assume them fixed)."""
    net.train()
    if net.frozen_bn:
        for m in net.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.eval()


class _Exported(nn.Module):
    def __init__(self, net: StructNet) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.net(x))


def export_structures(net: StructNet, path: str | os.PathLike[str]) -> Path:
    """ONNX (opset 17) with the sigmoid inside and free batch/height/width."""
    net.eval()
    path = Path(path)
    torch.onnx.export(_Exported(net), torch.zeros(1, 3, 128, 128), str(path),
                      input_names=["image"], output_names=["structure"], opset_version=17,
                      dynamic_axes={"image": {0: "n", 2: "h", 3: "w"},
                                    "structure": {0: "n", 2: "h", 3: "w"}}, dynamo=False)
    return path


# --------------------------------------------------------------------------- training
def _blank_side(rng: np.random.Generator, xi: np.ndarray, yi: np.ndarray,
                ) -> tuple[np.ndarray, np.ndarray]:
    """Cut the crop along a random straight line: one side becomes no-data (zeros, as
    ``read_on_grid`` gives outside an image; labels IGNORE), as where an image ends on the
    site grid."""
    size = xi.shape[0]
    a = rng.uniform(0, 2 * np.pi)
    r, c = np.mgrid[:size, :size] - (size - 1) / 2
    off = np.cos(a) * c + np.sin(a) * r - rng.uniform(-0.3, 0.7) * size / 2
    gone = off > 0
    xi, yi = xi.copy(), yi.copy()
    xi[gone], yi[gone] = 0.0, IGNORE
    return xi, yi


def _batch(rng: np.random.Generator, x: np.ndarray, y: np.ndarray, idx: np.ndarray,
           size: int, nodata_share: float = 0.0) -> tuple[torch.Tensor, torch.Tensor]:
    xb = np.empty((len(idx), size, size, 3), np.float32)
    yb = np.empty((len(idx), size, size), np.uint8)
    for k, i in enumerate(idx):
        r, c = rng.integers(0, x.shape[1] - size + 1, 2)
        xi = x[i, r:r + size, c:c + size].astype(np.float32) / 255.0
        yi = y[i, r:r + size, c:c + size]
        q = int(rng.integers(4))
        xi, yi = np.rot90(xi, q), np.rot90(yi, q)
        if rng.random() < 0.5:
            xi, yi = xi[:, ::-1], yi[:, ::-1]
        if rng.random() < 0.7:  # light, colour balance, contrast
            xi = (np.clip(xi, 0, None) ** rng.uniform(0.75, 1.3) * rng.uniform(0.8, 1.2, 3)
                  * rng.uniform(0.8, 1.2))
        if rng.random() < 0.3:  # grey or faded colour
            g = xi.mean(axis=2, keepdims=True)
            xi = np.broadcast_to(g, xi.shape) if rng.random() < 0.5 else xi * 0.6 + g * 0.4
        if nodata_share > 0 and rng.random() < nodata_share:
            xi, yi = _blank_side(rng, xi, yi)
        xb[k], yb[k] = xi, yi
    return (torch.from_numpy(np.ascontiguousarray(xb.transpose(0, 3, 1, 2))),
            torch.from_numpy(yb))


def segmentation_loss(logit: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Binary cross-entropy plus half a soft Dice loss, IGNORE cells left out."""
    valid = (y != IGNORE).float()
    t = (y == 1).float()
    bce = F.binary_cross_entropy_with_logits(logit[:, 0], t, reduction="none")
    bce = (bce * valid).sum() / valid.sum().clamp(min=1)
    p = torch.sigmoid(logit[:, 0]) * valid
    dice = 1 - (2 * (p * t).sum() + 1) / (p.sum() + (t * valid).sum() + 1)
    return bce + 0.5 * dice


@torch.no_grad()
def segmentation_scores(net: StructNet, x: np.ndarray, y: np.ndarray) -> dict[str, float]:
    """Cell IoU, precision and recall at probability 0.5 on whole samples."""
    net.eval()
    tp = fp = fn = 0
    for i in range(0, len(x), 8):
        xb = torch.from_numpy(x[i:i + 8].astype(np.float32).transpose(0, 3, 1, 2) / 255.0)
        p = torch.sigmoid(net(xb))[:, 0].numpy() > 0.5
        yi = y[i:i + 8]
        v, t = yi != IGNORE, yi == 1
        tp += int((p & t & v).sum())
        fp += int((p & ~t & v).sum())
        fn += int((~p & t & v).sum())
    set_training(net)
    return {"iou": round(tp / max(tp + fp + fn, 1), 4), "precision": round(tp / max(tp + fp, 1), 4),
            "recall": round(tp / max(tp + fn, 1), 4)}


def train_structures(data: str | os.PathLike[str], out_dir: str | os.PathLike[str], *,
                     minutes: float = 60.0, seed: int = 11, batch: int = 12, crop: int = 160,
                     lr: float = 3e-3, width: int = 16, threads: int = 1,
                     val_fraction: float = 0.04, max_steps: int | None = None,
                     init: str | os.PathLike[str] | None = None,
                     nodata_share: float = NODATA_SHARE,
                     log: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Train StructNet on ``build_structure_data`` output for ``minutes`` (or
    ``max_steps``), warm-started from ``init`` (a state dict, or an exported
    ``railwatch-struct.onnx`` such as the shipped model's) when given; write
    ``railwatch-struct.onnx``, its ``.pt`` weights and ``railwatch-struct.json``
    (metadata with the validation scores) to ``out_dir``; ``log`` gets a line every 200
    steps. Returns the metadata."""
    torch.manual_seed(seed)
    torch.set_num_threads(threads)
    rng = np.random.default_rng(seed)
    with np.load(data) as d:
        x, y = d["x"], d["y"]
    order = rng.permutation(len(x))
    n_val = max(1, int(len(x) * val_fraction))
    val, tr = np.sort(order[:n_val]), order[n_val:]
    net = StructNet(width)
    init_training = None
    if init is not None:
        if Path(init).suffix == ".onnx":  # the shipped model: folded, batch norms fixed
            net = structnet_from_onnx(init)
            width = net.width
        else:
            net.load_state_dict(torch.load(init))
        before = Path(init).with_suffix(".json")
        if before.exists():  # keep the record of how the starting weights were trained
            init_training = json.loads(before.read_text()).get("training")
    opt = torch.optim.AdamW(net.parameters(), lr=lr, weight_decay=1e-4)
    budget = Budget(minutes, max_steps)
    losses: list[float] = []
    set_training(net)
    for idx in budget.batches(opt, lr, tr, batch, rng):
        xb, yb = _batch(rng, x, y, idx, crop, nodata_share)
        loss = segmentation_loss(net(xb), yb)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
        if log is not None and budget.step % 200 == 199:
            log(f"step {budget.step + 1}: loss {np.mean(losses[-200:]):.4f}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    torch.save(net.state_dict(), out / "railwatch-struct.pt")
    export_structures(net, out / "railwatch-struct.onnx")
    meta = {
        "name": "railwatch-struct",
        "architecture": f"StructNet: U-Net, width {width}, three stride-2 stages, 1 m grid",
        "parameters": sum(p.numel() for p in net.parameters()),
        "input": "image (N, 3, H, W) RGB float about 0..1 on the change finder's 1 m grid",
        "output": "structure (N, 1, H, W): probability that a roof or walls cover the cell",
        "training": {"samples": len(tr), "steps": budget.step,
                     "seconds": round(budget.elapsed(), 1), "seed": seed, "batch": batch,
                     "crop": crop, "lr": lr, "nodata_share": nodata_share,
                     "init": (init_training or Path(init).name) if init else None,
                     "first_loss": round(float(np.mean(losses[:20])), 4) if losses else None,
                     "final_loss": round(float(np.mean(losses[-50:])), 4) if losses else None},
        "validation": {"samples": int(n_val), **segmentation_scores(net, x[val], y[val])},
    }
    (out / "railwatch-struct.json").write_text(json.dumps(meta, indent=2))
    return meta

"""Training loop: on-the-fly chips (or a chips directory) -> RailDet -> ONNX + model.json.

Reproducible from ``seed`` (one data worker, seeded generators, deterministic order).
Chips from any source are resampled to the model's native 0.5 m GSD before encoding.
"""

from __future__ import annotations

import json
import math
import os
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
from torch.utils.data import DataLoader, IterableDataset

from railwatch.errors import InputError
from railwatch.train import synth
from railwatch.train.augment import sensor_jitter
from railwatch.train.export import OPSET, export_onnx
from railwatch.train.loss import detection_loss
from railwatch.train.model import RailDet, count_parameters
from railwatch.train.targets import encode
from railwatch.types import RAILCAR_CLASSES

NATIVE_GSD = 0.5
MODEL_VERSION = "0.1.0"
ChipFn = Callable[[np.random.Generator, int, float], tuple[np.ndarray, list[dict[str, Any]]]]


@dataclass
class TrainConfig:
    """Everything that determines a training run (written into model.json)."""

    steps: int = 3000
    batch: int = 16
    chip_px: int = 256
    lr: float = 3e-3
    seed: int = 0
    width: int = 16
    threads: int = 2
    workers: int = 1
    chips_dir: str | None = None
    sim_fraction: float = 0.0  # share rendered on the fly by railwatch.simulate.chips (slow)
    container_yards: float = 0.0  # share of the simulator's container lots laid out as yards
    chips_fraction: float = 0.5  # share read from chips_dir when given
    checkpoint_every: int = 200
    minutes: float | None = None  # wall-clock budget: the LR schedule follows elapsed time
    init_onnx: str | None = None  # warm start from an exported model (BN statistics frozen)
    sensor_jitter: bool = True  # grey, casts, blur, noise, JPEG (railwatch.train.augment)
    extra: dict[str, Any] = field(default_factory=dict)


def to_native(image: np.ndarray, objects: list[dict[str, Any]], gsd: float,
              native: float = NATIVE_GSD) -> tuple[np.ndarray, list[dict[str, Any]]]:
    """Resample a chip and its pixel-coordinate objects from ``gsd`` to ``native`` m/px."""
    f = gsd / native
    if abs(f - 1.0) < 1e-6:
        return image, objects
    h, w = image.shape[:2]
    size = (max(1, round(w * f)), max(1, round(h * f)))
    interp = cv2.INTER_AREA if f < 1 else cv2.INTER_LINEAR
    out = cv2.resize(image, size, interpolation=interp)
    fx, fy = size[0] / w, size[1] / h
    objs = []
    for o in objects:
        o = dict(o)
        # labels put pixel centres on integers: x' = (x + 0.5) * f - 0.5
        o["cx"], o["cy"] = (o["cx"] + 0.5) * fx - 0.5, (o["cy"] + 0.5) * fy - 0.5
        o["length_px"], o["width_px"] = o["length_px"] * f, o["width_px"] * f
        objs.append(o)
    return out, objs


def _fit(image: np.ndarray, objects: list[dict[str, Any]], chip_px: int,
         rng: np.random.Generator) -> tuple[np.ndarray, list[dict[str, Any]]]:
    """Random-crop or pad (with the image mean) to chip_px x chip_px."""
    h, w = image.shape[:2]
    if h < chip_px or w < chip_px:
        canvas = np.empty((max(h, chip_px), max(w, chip_px), 3), np.uint8)
        canvas[:] = image.reshape(-1, 3).mean(0).astype(np.uint8)
        canvas[:h, :w] = image
        image, h, w = canvas, canvas.shape[0], canvas.shape[1]
    x0 = int(rng.integers(0, w - chip_px + 1))
    y0 = int(rng.integers(0, h - chip_px + 1))
    out = []
    for o in objects:
        o = dict(o)
        o["cx"] -= x0
        o["cy"] -= y0
        out.append(o)
    return image[y0:y0 + chip_px, x0:x0 + chip_px], out


def _from_sim_labels(objs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Simulator labels use the raster (corner) convention; ours put pixel centres on
    integers: shift by half a pixel."""
    return [dict(o, cx=o["cx"] - 0.5, cy=o["cy"] - 0.5) for o in objs]


def _sim_chip_fn(container_yards: float = 0.0) -> ChipFn | None:
    """``railwatch.simulate.chips.generate_chip`` adapted to (image, object dicts);
    ``container_yards``: the share of container lots laid out as yards (rows in pairs)."""
    try:
        from railwatch.simulate.chips import generate_chip, object_records
    except Exception:  # the simulator is optional for training
        return None

    def fn(rng: np.random.Generator, chip_px: int, gsd: float,
           ) -> tuple[np.ndarray, list[dict[str, Any]]]:
        image, objects, _info = generate_chip(rng, chip_px, gsd=gsd,
                                              container_yards=container_yards)
        return image, _from_sim_labels(object_records(objects))

    return fn


def load_chips_dir(path: str | os.PathLike[str]) -> list[tuple[Path, Path]]:
    """(image, label) pairs of a chips directory (``images/chip_*.png``, ``labels/*.json``)."""
    root = Path(path)
    imgs = sorted((root / "images").glob("chip_*.png"))
    pairs = [(p, root / "labels" / (p.stem + ".json")) for p in imgs]
    pairs = [pr for pr in pairs if pr[1].exists()]
    if not pairs:
        raise InputError("no images/chip_*.png with labels/chip_*.json found", root)
    return pairs


class ChipStream(IterableDataset):
    """An endless, seeded stream of encoded chips from the configured sources."""

    def __init__(self, cfg: TrainConfig) -> None:
        super().__init__()
        self.cfg = cfg

    def _sample(self, rng: np.random.Generator, sim: ChipFn | None,
                pairs: list[tuple[Path, Path]] | None) -> tuple[np.ndarray, list[dict[str, Any]]]:
        cfg = self.cfg
        if pairs is not None and rng.random() < cfg.chips_fraction:
            ip, lp = pairs[int(rng.integers(len(pairs)))]
            image = cv2.cvtColor(cv2.imread(str(ip), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
            label = json.loads(lp.read_text())
            objs = _from_sim_labels(label.get("objects", []))
            gsd = float(label.get("gsd_m", NATIVE_GSD))
            image, objs = to_native(image, objs, gsd)
            return _fit(image, objs, cfg.chip_px, rng)
        if sim is not None and rng.random() < cfg.sim_fraction:
            gsd = float(rng.choice([0.3, 0.4, 0.5, 0.6, 0.8]))
            px = math.ceil(cfg.chip_px * NATIVE_GSD / gsd)
            image, objs = sim(rng, px, gsd)
            image, objs = to_native(np.asarray(image)[..., :3], list(objs), gsd)
            return _fit(image, objs, cfg.chip_px, rng)
        # own renderer: mostly native, sometimes rendered at another GSD and resampled
        gsd = NATIVE_GSD if rng.random() < 0.6 else float(rng.uniform(0.3, 0.8))
        gsd *= float(rng.uniform(0.93, 1.07))  # imperfect GSD metadata
        px = math.ceil(cfg.chip_px * NATIVE_GSD / gsd)
        image, objs = synth.generate_chip(rng, px, gsd)
        image, objs = to_native(image, objs, gsd)
        return _fit(image, objs, cfg.chip_px, rng)

    def __iter__(self) -> Iterator[dict[str, np.ndarray]]:
        info = torch.utils.data.get_worker_info()
        wid = info.id if info is not None else 0
        rng = np.random.default_rng([self.cfg.seed, wid])
        sim = _sim_chip_fn(self.cfg.container_yards)
        pairs = load_chips_dir(self.cfg.chips_dir) if self.cfg.chips_dir else None
        n = 0
        while True:
            n += 1
            if pairs is not None and n % 200 == 0:  # a folder still being written grows
                pairs = load_chips_dir(self.cfg.chips_dir)  # type: ignore[arg-type]
            image, objs = self._sample(rng, sim, pairs)
            if self.cfg.sensor_jitter:  # sensors and processing differ
                image = sensor_jitter(np.ascontiguousarray(image), rng)
            elif rng.random() < 0.5:  # the narrower colour jitter of models <= 0.2.0
                gain = rng.uniform(0.85, 1.15, 3) * rng.uniform(0.8, 1.2)
                gamma = rng.uniform(0.8, 1.25)
                x = (image.astype(np.float32) / 255.0) ** gamma * gain
                image = np.clip(x * 255.0, 0, 255).astype(np.uint8)
            if rng.random() < 0.5:  # horizontal flip
                image = image[:, ::-1]
                objs = [dict(o, cx=image.shape[1] - 1 - o["cx"], angle_rad=math.pi - o["angle_rad"])
                        for o in objs]
            t = encode(objs, self.cfg.chip_px)
            t["image"] = np.ascontiguousarray(image.transpose(2, 0, 1)).astype(np.float32)
            yield t


def train(out_dir: str | os.PathLike[str], cfg: TrainConfig | None = None,
          log: Callable[[str], None] | None = None,
          on_step: Callable[[int, dict[str, float]], None] | None = None) -> dict[str, Any]:
    """Train RailDet, checkpoint to ``out_dir/checkpoint.pt``, export ``railwatch-det.onnx``.

    Resumes from an existing checkpoint in ``out_dir``. Returns the model.json content.
    """
    cfg = cfg or TrainConfig()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    log = log or (lambda s: print(s, file=sys.stderr, flush=True))
    torch.manual_seed(cfg.seed)
    torch.set_num_threads(cfg.threads)
    net = RailDet(cfg.width)
    opt = torch.optim.AdamW(net.parameters(), lr=cfg.lr, weight_decay=1e-4)
    step, spent = 0, 0.0
    ckpt = out / "checkpoint.pt"
    if ckpt.exists():
        state = torch.load(ckpt, map_location="cpu")
        net.load_state_dict(state["net"])
        opt.load_state_dict(state["opt"])
        step = int(state["step"])
        spent = float(state.get("seconds", 0.0))
        log(f"resumed from {ckpt} at step {step}")
    elif cfg.init_onnx:
        init_from_onnx(net, cfg.init_onnx)
        log(f"warm start from {cfg.init_onnx}")
    loader = DataLoader(ChipStream(cfg), batch_size=cfg.batch, num_workers=cfg.workers,
                        persistent_workers=cfg.workers > 0)
    t0 = time.time()
    avg: dict[str, float] = {}
    history: list[float] = []
    net.train()
    if cfg.init_onnx:
        freeze_bn_statistics(net)
    budget = cfg.minutes * 60.0 if cfg.minutes else None

    def progress_of() -> float:
        p = step / cfg.steps
        if budget:
            p = max(p, (spent + time.time() - t0) / budget)
        return min(p, 1.0)

    for batch in loader:
        frac = progress_of()
        if frac >= 1.0:
            break
        for g in opt.param_groups:
            g["lr"] = lr_at(frac, cfg.lr)
        batch = {k: torch.as_tensor(v) for k, v in batch.items()}
        raw = net(batch["image"] / 255.0 - 0.5)
        parts = detection_loss(raw, batch)
        opt.zero_grad(set_to_none=True)
        parts["total"].backward()
        torch.nn.utils.clip_grad_norm_(net.parameters(), 5.0)
        opt.step()
        step += 1
        vals = {k: float(v.detach()) for k, v in parts.items()}
        history.append(vals["total"])
        for k, v in vals.items():
            avg[k] = v if k not in avg else 0.95 * avg[k] + 0.05 * v
        if on_step is not None:
            on_step(step, vals)
        if step % 20 == 0:
            msg = " ".join(f"{k}={v:.3f}" for k, v in avg.items())
            log(f"step {step} ({progress_of():.0%}) {time.time() - t0:.0f}s "
                f"lr={lr_at(frac, cfg.lr):.5f} {msg}")
        if step % cfg.checkpoint_every == 0:
            _save(ckpt, net, opt, step, spent + time.time() - t0)
    _save(ckpt, net, opt, step, spent + time.time() - t0)
    net.eval()
    export_onnx(net, out / "railwatch-det.onnx")
    meta = model_json(cfg, count_parameters(net), spent + time.time() - t0, history, step)
    tmpj = out / ".model.json.tmp"
    tmpj.write_text(json.dumps(meta, indent=2))
    os.replace(tmpj, out / "model.json")
    return meta


def onnx_weights(path: str | os.PathLike[str]) -> tuple[Any, Callable[[str], np.ndarray]]:
    """An ONNX graph and a function giving any constant input by name as a float array:
    an initializer, or an 8-bit weight put back to float through its DequantizeLinear
    (``(q - zero_point) * scale``, per channel along ``axis``)."""
    import onnx
    from onnx import numpy_helper

    m = onnx.load(str(path))
    inits = {i.name: numpy_helper.to_array(i) for i in m.graph.initializer}
    dq = {n.output[0]: n for n in m.graph.node if n.op_type == "DequantizeLinear"}

    def value(name: str) -> np.ndarray:
        if name in inits:
            return inits[name].astype(np.float32)
        node = dq[name]  # KeyError: not a constant
        q, scale, zp = (inits[i] for i in node.input)
        shape = [1] * q.ndim
        if scale.size > 1:  # per channel
            shape[next((a.i for a in node.attribute if a.name == "axis"), 1)] = -1
        return ((q.astype(np.float32) - zp.astype(np.float32).reshape(shape))
                * scale.astype(np.float32).reshape(shape))

    return m, value


def init_from_onnx(net: RailDet, path: str | os.PathLike[str]) -> None:
    """Load an exported model's weights into ``net`` to fine-tune it.

    The exporter folds each BatchNorm into the convolution before it; the folded weights
    go into the convolution and the BatchNorm becomes an identity with the folded bias
    (running mean 0, variance 1 - eps), so ``net`` computes what the ONNX file computes.
    """
    m, value = onnx_weights(path)
    try:
        _load_folded(net, m, value)
    except (KeyError, RuntimeError) as exc:
        raise InputError(f"the model does not fit RailDet(width={net.width}): {exc}",
                         path) from None


def _load_folded(net: RailDet, m: Any, value: Callable[[str], np.ndarray]) -> None:
    modules = dict(net.named_modules())
    with torch.no_grad():
        for node in m.graph.node:
            if node.op_type != "Conv":
                continue
            # exporter scopes such as "/net/s4/s4.0/dw/Conv" -> module "s4.0.dw"
            scopes = node.name.removeprefix("/net/").removesuffix("/Conv").split("/")
            name = _module_name(scopes, modules)
            conv = modules[name]
            w = torch.from_numpy(value(node.input[1]))
            b = torch.from_numpy(value(node.input[2])) if len(node.input) > 2 else None
            conv.weight.copy_(w)
            bn = _bn_after(name, modules)
            if conv.bias is not None:
                conv.bias.copy_(b if b is not None else torch.zeros_like(conv.bias))
            elif bn is not None:
                folded_bias(bn, b if b is not None else torch.zeros_like(bn.bias))
            else:
                raise KeyError(f"no BatchNorm after {name}")


def folded_bias(bn: torch.nn.BatchNorm2d, bias: torch.Tensor) -> None:
    """Make ``bn`` the identity plus ``bias`` (in eval mode): what is left of a BatchNorm
    once the exporter has folded it into the convolution before it."""
    with torch.no_grad():
        bn.weight.fill_(1.0)
        bn.running_mean.zero_()
        bn.running_var.fill_(1.0 - bn.eps)
        bn.bias.copy_(bias)


def _module_name(scopes: list[str], modules: dict[str, torch.nn.Module]) -> str:
    """RailDet's module path from exporter scopes (a Sequential's child repeats its
    parent's name: ``["s4", "s4.0", "dw"]`` -> ``s4.0.dw``)."""
    parts = [sc for i, sc in enumerate(scopes)
             if not (i + 1 < len(scopes) and scopes[i + 1].startswith(sc + "."))]
    parts = [p.rpartition(".")[2] if i and "." in p else p for i, p in enumerate(parts)]
    name = ".".join(parts)
    if name not in modules:
        raise KeyError(name)
    return name


def _bn_after(conv_name: str, modules: dict[str, torch.nn.Module]) -> torch.nn.BatchNorm2d | None:
    """The BatchNorm that follows a convolution in RailDet (``dw``->``bn1``, ``pw``->``bn2``,
    ``stem.0``->``stem.1``)."""
    head, _, last = conv_name.rpartition(".")
    cand = {"dw": "bn1", "pw": "bn2"}.get(last)
    if cand is None and last.isdigit():
        cand = str(int(last) + 1)
    m = modules.get(f"{head}.{cand}" if head else str(cand))
    return m if isinstance(m, torch.nn.BatchNorm2d) else None


def freeze_bn_statistics(net: torch.nn.Module) -> None:
    """Keep BatchNorm running statistics fixed (their affine weights still train)."""
    for m in net.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.eval()


def lr_at(frac: float, base: float, warmup: float = 0.03) -> float:
    """Learning rate at training progress ``frac`` (0..1): linear warm-up, cosine decay."""
    if frac < warmup:
        return base * (0.1 + 0.9 * frac / warmup)
    t = (frac - warmup) / (1 - warmup)
    return base * (0.02 + 0.98 * 0.5 * (1 + math.cos(math.pi * min(t, 1.0))))


def _save(path: Path, net: RailDet, opt: torch.optim.Optimizer, step: int,
          seconds: float) -> None:
    tmp = path.with_suffix(".tmp")
    torch.save({"net": net.state_dict(), "opt": opt.state_dict(), "step": step,
                "seconds": seconds}, tmp)
    os.replace(tmp, path)


def model_json(cfg: TrainConfig, n_params: int, seconds: float,
               history: list[float], steps_done: int | None = None) -> dict[str, Any]:
    """The model description shipped beside the ONNX file."""
    return {
        "name": "railwatch-det",
        "version": MODEL_VERSION,
        "architecture": "RailDet: CenterNet-style oriented detector, depthwise-separable "
                        "U-shaped encoder-decoder, output stride 2",
        "parameters": n_params,
        "native_gsd_m": NATIVE_GSD,
        "supported_gsd_m": [0.25, 1.0],
        "stride": 2,
        "input": {"name": "image", "layout": "NCHW", "channels": "RGB",
                  "range": "0..255 float32", "normalisation": "x / 255 - 0.5 (inside graph)",
                  "multiple_of": 16},
        "outputs": {"peaks": ["railcar", "container"],
                    "maps": ["dx", "dy", "log_length_px", "log_width_px", "sin2t", "cos2t",
                             *RAILCAR_CLASSES, "covered"]},
        "class_maps": "logits",
        "classes": list(RAILCAR_CLASSES),
        "kinds": ["railcar", "container"],
        "opset": OPSET,
        "training": {
            "command": f"railwatch train --out MODEL_DIR --steps {cfg.steps} --seed {cfg.seed}"
                       f" --batch {cfg.batch}"
                       + (f" --minutes {cfg.minutes:g}" if cfg.minutes else "")
                       + (f" --chips {cfg.chips_dir}" if cfg.chips_dir else "")
                       + (f" --sim-fraction {cfg.sim_fraction:g}" if cfg.sim_fraction else "")
                       + (f" --lr {cfg.lr:g}" if cfg.lr != TrainConfig.lr else "")
                       + (f" --init {cfg.init_onnx}" if cfg.init_onnx else ""),
            "steps_done": steps_done,
            "config": asdict(cfg),
            "seconds": round(seconds, 1),
            "final_loss": round(float(np.mean(history[-50:])), 4) if history else None,
            "data": "on-the-fly chips from railwatch.train.synth (own renderer)"
                    + (f" + {cfg.chips_fraction:.0%} from a chips folder (railwatch simulate"
                       " --chips)" if cfg.chips_dir else "")
                    + (f" + {cfg.sim_fraction:.0%} railwatch.simulate.chips on the fly"
                       if cfg.sim_fraction else ""),
        },
    }

"""The shipped detector on onnxruntime (no torch): ``Detector.predict(tile) -> Detections``."""

from __future__ import annotations

import json
import os
from importlib import resources
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from railwatch.detect.classify import ClassStage, classify_railcars
from railwatch.detect.decode import PIXEL_CRS, Boxes, RailcarRule, decode, rotated_nms
from railwatch.detect.neighbours import NeighbourSearch, SlotClassifier, find_neighbours
from railwatch.detect.refine import MAX_SHIFT_M, REFINER_FILE, Refiner
from railwatch.detect.session import open_session
from railwatch.detect.verify import Cascade, Verifier, apply_verifier, verifier_settings
from railwatch.errors import InputError
from railwatch.types import RAILCAR_CLASSES, Detections

MODEL_FILE = "railwatch-det.onnx"


def model_dir() -> Path:
    """Folder of the shipped model (``railwatch/detect/model``)."""
    return Path(str(resources.files("railwatch.detect") / "model"))


def _providers(use_gpu: bool | None) -> list[str]:
    import onnxruntime as ort

    have = ort.get_available_providers()
    if use_gpu is not False and "CUDAExecutionProvider" in have:
        return ["CUDAExecutionProvider", "CPUExecutionProvider"]
    return ["CPUExecutionProvider"]


class Detector:
    """Oriented railcar/container detector over an ONNX model (``railwatch-det.onnx``).

    ``predict(tile)`` takes an RGB uint8 (H, W, 3) tile at the model's native GSD
    (``native_gsd_m``, 0.5 m) and returns Detections in the tile's pixel coordinates
    (``PIXEL_CRS``; raster convention, x = column, y = row). The CUDA execution provider
    is used when onnxruntime offers it (``use_gpu=False`` forces CPU).
    """

    @staticmethod
    def native_gsd(path: str | os.PathLike[str] | None = None) -> float:
        """The native GSD (m) of a model (file or folder; default: the shipped one),
        without loading it."""
        return float(_model_meta(_model_file(path)).get("native_gsd_m", 0.5))

    def __init__(self, path: str | os.PathLike[str] | None = None, *,
                 threshold: float | None = None, nms_iou: float = 0.3,
                 threads: int | None = None,
                 use_gpu: bool | None = None, verify: bool | None = None,
                 refine: bool | None = None) -> None:

        p = _model_file(path)
        if not p.exists():
            raise InputError("detector model not found (train one with `railwatch train`)", p)
        self.meta: dict[str, Any] = _model_meta(p)
        self.native_gsd_m = float(self.meta.get("native_gsd_m", 0.5))
        self.stride = int(self.meta.get("stride", 2))
        self.multiple = int(self.meta.get("input", {}).get("multiple_of", 16))
        # class maps: logits (softmax at the peaks, in decode) or probabilities (older)
        self.class_logits = self.meta.get("class_maps") == "logits"
        # the second stage (railwatch-ver.onnx) when the model folder has one
        vset = verifier_settings(self.meta)
        vpath = p.with_name(vset["file"])
        use_verifier = verify is not False and "verifier" in self.meta and vpath.exists()
        if verify and not use_verifier:
            raise InputError("this model has no verifier (railwatch-ver.onnx + model.json)", p)
        # default: the score threshold chosen on validation scenes (model.json); with the
        # verifier the detector proposes more candidates and the verifier decides
        default_t = (vset.get("candidate_threshold", self.meta.get("score_threshold", 0.3))
                     if use_verifier else self.meta.get("score_threshold", 0.3))
        self.threshold = float(threshold if threshold is not None else default_t)
        self.nms_iou = nms_iou
        # railcar-against-railcar NMS (iou, iomin), chosen on validation scenes
        # (model.json ``railcar_nms``; absent in older models: the common rule)
        rn = self.meta.get("railcar_nms")
        self.railcar_nms: RailcarRule | None = (
            RailcarRule(float(rn["iou"]), float(rn["iomin"]), float(rn.get("spacing_m", 0.0)))
            if rn else None)
        self.path = p
        self.session = open_session(p, threads, _providers(use_gpu))
        self.providers = self.session.get_providers()
        self.verifier: Verifier | None = None
        self.max_background = float(vset["max_background"])
        self.min_score = float(vset["min_score"])
        # with the verifier: whether the candidates go through the NMS before it (the
        # default) or all reach it, the NMS after it then removing the duplicates
        self.candidate_nms = bool(vset["candidate_nms"])
        if use_verifier:
            self.verifier = Verifier(vpath, threads=threads, providers=self.providers,
                                     second=Cascade.from_meta(vset.get("second")))
        # the fourth step: the slot classifier checks the verifier's containers and looks
        # beside them for more (like the refiner, only where its file is in the folder)
        search = (NeighbourSearch.from_meta(vset.get("container_neighbours"))
                  if use_verifier else None)
        self.neighbours: NeighbourSearch | None = None
        self.slots: SlotClassifier | None = None
        if search is not None and p.with_name(search.file).exists():
            self.neighbours = search
            self.slots = SlotClassifier(p.with_name(search.file), threads=threads,
                                        providers=self.providers)
        # the fifth step: the class stage names each kept railcar's class again at its
        # final box (only where its file is in the folder)
        stage = ClassStage.from_meta(self.meta.get("classifier")) if use_verifier else None
        self.class_stage: ClassStage | None = None
        self.classifier: Verifier | None = None
        if stage is not None and p.with_name(stage.file).exists():
            self.class_stage = stage
            self.classifier = Verifier(p.with_name(stage.file), threads=threads,
                                       providers=self.providers)
        # the third stage (railwatch-box.onnx): moves kept railcars onto their cars
        rset = dict(self.meta.get("refiner") or {})
        rpath = p.with_name(rset.get("file", REFINER_FILE))
        use_refiner = (refine is not False and use_verifier and bool(rset)
                       and rpath.exists())
        if refine and not use_refiner:
            raise InputError("the box refiner moves the verifier's boxes: it cannot run "
                             "without the verifier" if rset and rpath.exists() else
                             "this model has no box refiner (railwatch-box.onnx + "
                             "model.json, with a verifier)", p)
        self.refiner: Refiner | None = None
        if use_refiner:
            self.refiner = Refiner(
                rpath, threads=threads, providers=self.providers,
                max_shift_px=float(rset.get("max_shift_m", MAX_SHIFT_M)) / self.native_gsd_m,
                set_length=bool(rset.get("set_length", False)), steps=int(rset.get("steps", 1)))

    @property
    def version(self) -> str:
        return str(self.meta.get("version", "unknown"))

    @property
    def verifier_note(self) -> str | None:
        """The verifier's file and version, None when the detector runs alone."""
        if self.verifier is None:
            return None
        files = self.verifier.path.name
        if self.verifier.cascade is not None:
            files += f" + {self.verifier.cascade.file}"
        return f"{files} {self.meta['verifier'].get('version', '')}".strip()

    @property
    def refiner_note(self) -> str | None:
        """The box refiner's file and version, None when boxes are not moved."""
        if self.refiner is None:
            return None
        return f"{self.refiner.path.name} {self.meta['refiner'].get('version', '')}".strip()

    @property
    def slots_note(self) -> str | None:
        """The slot classifier's file, version and settings; None when not used."""
        if self.slots is None or self.neighbours is None:
            return None
        n = self.neighbours
        version = self.meta["verifier"].get("container_neighbours", {}).get("version")
        name = f"{self.slots.path.name} {version}" if version else self.slots.path.name
        check = (f"containers below {n.check_prob:g} dropped, " if n.check_prob > 0 else "")
        return (f"{name}: {check}neighbours accepted at {n.min_prob:g}, {n.rounds} "
                f"round{'s' if n.rounds > 1 else ''}")

    @property
    def classifier_note(self) -> str | None:
        """The class stage's file, version and weight; None when not used."""
        if self.classifier is None or self.class_stage is None:
            return None
        st = self.class_stage
        version = self.meta["classifier"].get("version", "")
        also = " and covered" if st.covered else ""
        return (f"{self.classifier.path.name} {version}".strip()
                + f": class{also} at the final box, weight {st.weight:g} against the verifier")

    def run(self, tile: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Raw ONNX outputs (peaks (2, h, w), maps (14, h, w)) for one RGB uint8 tile."""
        h, w = tile.shape[:2]
        m = self.multiple
        ph, pw = -(-h // m) * m, -(-w // m) * m
        x = np.empty((1, 3, ph, pw), np.float32)
        for c, plane in enumerate(cv2.split(tile[..., :3])):  # 4x faster than a transpose
            x[0, c, :h, :w] = plane
        if ph != h or pw != w:  # pad with the tile's mean colour, not black
            mean = tile[..., :3].reshape(-1, 3).mean(0)
            x[0, :, h:, :] = mean[:, None, None]
            x[0, :, :, w:] = mean[:, None, None]
        peaks, maps = self.session.run(None, {"image": x})
        return peaks[0], maps[0]

    def boxes(self, tile: np.ndarray,
              region: tuple[float, float, float, float] | None = None) -> Boxes:
        """Decoded, NMS-filtered oriented boxes in tile pixels (centres inside the tile,
        and inside ``region`` (x0, y0, x1, y1) when given: the part of the tile whose
        boxes are kept, so the verifier does not check boxes a neighbour tile owns)."""
        if tile.ndim != 3 or tile.shape[2] < 3:
            raise ValueError("tile must be (H, W, 3) RGB")
        peaks, maps = self.run(tile)
        b = decode(peaks, maps, self.stride, self.threshold, self.class_logits)
        h, w = tile.shape[:2]
        x0, y0, x1, y1 = region if region is not None else (0, 0, w, h)
        b = b.within(max(x0, 0), max(y0, 0), min(x1, w), min(y1, h))
        early_nms = self.verifier is None or self.candidate_nms
        if early_nms:
            b = rotated_nms(b, self.nms_iou)
        if self.verifier is not None:
            b = apply_verifier(tile, b, self.verifier, self.max_background, self.min_score,
                               self.refiner)
        if self.railcar_nms is not None or not early_nms:  # on the final kinds and boxes
            b = rotated_nms(b, self.nms_iou, railcar=self.railcar_nms,
                            px_m=self.native_gsd_m)
        if self.classifier is not None and self.class_stage is not None:
            b = classify_railcars(tile, b, self.classifier, self.class_stage)
        if self.slots is not None and self.neighbours is not None:
            b = find_neighbours(tile, b, self.slots, self.neighbours, self.native_gsd_m,
                                self.nms_iou)
        b.color = footprint_colors(tile, b.corners())
        return b

    def predict(self, tile: np.ndarray) -> Detections:
        """Detections of one native-GSD RGB tile, in its pixel coordinates (PIXEL_CRS)."""
        b = self.boxes(tile)
        return boxes_to_detections(b, self.native_gsd_m)


def _model_file(path: str | os.PathLike[str] | None) -> Path:
    """The ONNX file of a model given as a file or a folder (default: the shipped one)."""
    p = Path(path) if path is not None else model_dir() / MODEL_FILE
    return p / MODEL_FILE if p.is_dir() else p


def _model_meta(onnx_file: Path) -> dict[str, Any]:
    """The ``model.json`` beside a model's ONNX file ({} when there is none)."""
    meta = onnx_file.with_name("model.json")
    return json.loads(meta.read_text()) if meta.exists() else {}


def footprint_colors(image: np.ndarray, corners: np.ndarray, shrink: float = 0.6) -> np.ndarray:
    """(N, 3) median RGB inside each footprint (shrunk towards its centre), from pixels."""
    n = len(corners)
    out = np.zeros((n, 3), np.uint8)
    if n == 0:
        return out
    h, w = image.shape[:2]
    ctr = corners.mean(axis=1)  # (N, 2)
    pts = ctr[:, None] + (corners - ctr[:, None]) * shrink - 0.5  # raster -> pixel centres
    lo = np.maximum(np.floor(pts.min(axis=1)).astype(int), 0)  # (N, 2) x0, y0
    hi = np.minimum(np.ceil(pts.max(axis=1)).astype(int) + 1, [w, h])  # x1, y1
    poly = np.round(pts - lo[:, None]).astype(np.int32)
    for i, ((x0, y0), (x1, y1), (cx, cy)) in enumerate(
            zip(lo.tolist(), hi.tolist(), ctr.tolist(), strict=True)):
        if x1 <= x0 or y1 <= y0:
            continue
        mask = np.zeros((y1 - y0, x1 - x0), np.uint8)
        cv2.fillConvexPoly(mask, poly[i], 1)
        px = image[y0:y1, x0:x1, :3][mask.view(bool)]
        if len(px) == 0:
            px = image[min(int(cy), h - 1), min(int(cx), w - 1), :3][None]
        out[i] = median_u8(px)
    return out


def median_u8(px: np.ndarray) -> np.ndarray:
    """(3,) per-column median of (K, 3) uint8 pixels, K >= 1, as
    ``np.median(px, axis=0).astype(np.uint8)`` (the mean of the middle two, truncated)
    in half the time."""
    s = np.sort(px.T, axis=1)
    m = len(px) // 2
    if len(px) % 2:
        return s[:, m]
    return ((s[:, m - 1].astype(np.uint16) + s[:, m]) // 2).astype(np.uint8)


def boxes_to_detections(b: Boxes, gsd_m: float, crs: object = PIXEL_CRS,
                        transform: object | None = None) -> Detections:
    """Detections from pixel boxes at ``gsd_m`` m/px; with an affine ``transform`` the
    footprints go to map coordinates of ``crs``, else they stay in PIXEL_CRS."""
    corners = b.corners()
    if transform is not None:
        flat = corners.reshape(-1, 2)
        a, b_, c, d, e, f = tuple(transform)[:6]  # type: ignore[call-overload]
        xs = a * flat[:, 0] + b_ * flat[:, 1] + c
        ys = d * flat[:, 0] + e * flat[:, 1] + f
        corners = np.stack([np.asarray(xs), np.asarray(ys)], axis=-1).reshape(-1, 4, 2)
    kind = np.where(b.kind == 0, "railcar", "container")
    cls = np.array([RAILCAR_CLASSES[c] if c >= 0 else "" for c in b.cls], dtype=object)
    extra = {"class_score": np.round(b.cls_prob, 3),
             "covered_score": np.round(np.where(b.kind == 0, b.covered_prob, 0.0), 3)}
    if not np.isnan(b.object_prob).any():  # checked by the verifier (or none at all)
        extra["object_score"] = np.round(b.object_prob, 3)
    return Detections(
        footprints=corners,
        kind=kind,
        cls=cls,
        score=np.clip(b.score, 0, 1),
        covered=(b.covered_prob > 0.5) & (b.kind == 0),
        color=b.color,
        length_m=b.length * gsd_m,
        crs=crs,
        extra=extra,
    )

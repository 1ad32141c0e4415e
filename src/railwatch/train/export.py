"""ONNX export of a trained RailDet (opset 17+, dynamic batch/height/width)."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import torch

from railwatch.train.model import Exported, RailDet

OPSET = 17


def export_onnx(net: RailDet, path: str | os.PathLike[str], opset: int = OPSET) -> Path:
    """Write ``Exported(net)`` to ``path`` atomically; inputs ``image`` (N, 3, H, W) float."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    model = Exported(net).eval()
    dummy = torch.zeros(1, 3, 128, 128)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        with torch.no_grad():
            torch.onnx.export(
                model,
                (dummy,),
                tmp,
                input_names=["image"],
                output_names=["peaks", "maps"],
                dynamic_axes={
                    "image": {0: "n", 2: "h", 3: "w"},
                    "peaks": {0: "n", 2: "h2", 3: "w2"},
                    "maps": {0: "n", 2: "h2", 3: "w2"},
                },
                opset_version=opset,
                dynamo=False,
            )
        os.chmod(tmp, 0o644)  # mkstemp creates 0600
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path

"""onnxruntime sessions for the shipped models, opened one way everywhere."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from railwatch.errors import InputError


def open_session(path: Path, threads: int | None = None,
                 providers: list[str] | None = None) -> Any:
    """An ``onnxruntime.InferenceSession`` on ``path`` (InputError when it cannot load).

    All graph optimisations on; no busy-waiting between ops (on a shared machine spinning
    threads starve the others).
    """
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads or min(4, os.cpu_count() or 1)
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    try:
        return ort.InferenceSession(str(path), opts,
                                    providers=providers or ["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime raises its own Fail/InvalidGraph types
        raise InputError(f"not a loadable ONNX model ({exc})", path) from exc

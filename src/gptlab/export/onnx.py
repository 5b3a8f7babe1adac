"""ONNX: the cached step (`step.py`) through `torch.onnx.export`, run by ONNX Runtime.

    path = export_onnx(model, "exported/model.onnx")
    session = onnx_session(path)
    tokens, _ = greedy(session_step(session), prompt, 20, *empty_cache(model))

The graph's inputs are idx (B, T), keys and values (L, B, nh, S, hs) and input_pos (T,); its
outputs logits (B, V) and the updated keys and values, fed back at the next step. It is
exported by the torch.export-based exporter (`dynamo=True`), which needs onnx and onnxscript;
running it needs onnxruntime (`pip install 'gptlab[export]'`).
"""

from __future__ import annotations

from pathlib import Path

import torch

from gptlab.errors import ConfigError
from gptlab.export.step import CachedStep, StepFunction, dynamic_shapes, example_inputs

INPUTS = ["idx", "keys", "values", "input_pos"]
OUTPUTS = ["logits", "new_keys", "new_values"]


def export_onnx(model, path: str | Path) -> Path:
    """Write the model's cached step as an ONNX graph at `path` (weights beside it if large)."""
    _require("onnx", "onnxscript")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    step = CachedStep(model)
    with torch.no_grad():
        torch.onnx.export(
            step,
            example_inputs(model),
            str(path),
            dynamo=True,
            dynamic_shapes=dynamic_shapes(model),
            input_names=INPUTS,
            output_names=OUTPUTS,
            verbose=False,
        )
    return path


def onnx_session(path: str | Path, threads: int | None = None):
    """An ONNX Runtime session on the CPU for a graph `export_onnx` wrote."""
    _require("onnxruntime")
    import onnxruntime

    options = onnxruntime.SessionOptions()
    if threads:
        options.intra_op_num_threads = threads
    return onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def session_step(session) -> StepFunction:
    """The session as a step function on torch tensors (through NumPy, on the CPU)."""

    def step(idx, keys, values, input_pos):
        feeds = {
            name: tensor.cpu().numpy()
            for name, tensor in zip(INPUTS, (idx, keys, values, input_pos))
        }
        logits, keys, values = session.run(OUTPUTS, feeds)
        return torch.from_numpy(logits), torch.from_numpy(keys), torch.from_numpy(values)

    return step


def _require(*modules: str) -> None:
    import importlib.util

    missing = [name for name in modules if importlib.util.find_spec(name) is None]
    if missing:
        raise ConfigError(
            f"ONNX export needs {' and '.join(missing)}: pip install 'gptlab[export]' "
            "(or `uv sync --extra export`)"
        )

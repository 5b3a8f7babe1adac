"""`torch.export`: the cached step (`step.py`) as a program that runs without gptlab.

    export_program(model, "exported/model.pt2")
    # anywhere with torch, no gptlab needed:
    step = torch.export.load("exported/model.pt2").module()
    logits, keys, values = step(idx, keys, values, input_pos)

The file holds the graph of ATen operators and the weights; its inputs and outputs are those of
`CachedStep`. It can be compiled ahead of time (AOTInductor) or run as it is.
"""

from __future__ import annotations

from pathlib import Path

import torch

from gptlab.export.step import CachedStep, dynamic_shapes, example_inputs


def export_program(model, path: str | Path) -> Path:
    """Write the model's cached step as a `torch.export` program (a .pt2 file) at `path`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with torch.no_grad():
        program = torch.export.export(
            CachedStep(model), example_inputs(model), dynamic_shapes=dynamic_shapes(model)
        )
    torch.export.save(program, str(path))
    return path


def load_program(path: str | Path):
    """The step function of a saved program (what any torch user can do without gptlab)."""
    return torch.export.load(str(path)).module()

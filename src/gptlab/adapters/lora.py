"""LoRA: fine-tune a frozen model through low-rank updates of its Linear layers.

A fine-tune changes a pretrained weight W (out, in) by some ΔW. LoRA (Hu et al. 2021) bets that
ΔW has a low rank r and trains it as a product of two thin matrices:

    y = x Wᵀ + b  +  (alpha / r) · dropout(x) Aᵀ Bᵀ        A (r, in), B (out, r)

W and b stay frozen; A and B are all that train: r·(in + out) numbers instead of in·out. A starts
random and B at zero, so a new adapter changes nothing until it has learned something (section
4.1). Scaling by alpha / r keeps the update's size steady when r changes, so a learning rate
found for one rank serves the others.

Applied from outside, without touching the model: `add_lora` gives each targeted Linear a child
module `lora` (a `LoRALayer`, holding one `LoRA` per named adapter) and a forward hook that adds
the active adapter's update to the Linear's output. The base's parameter names do not change, so
base weights load and export as before, and the adapter's own tensors sit apart under `.lora.`.

`merge_lora` folds the active update into W (inference then costs exactly what the plain model
costs, with no hook left); `unmerge_lora` takes it out again. Several adapters can share one base:
`set_adapter` switches between them.
"""

from __future__ import annotations

import fnmatch
import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from gptlab.adapters.config import QKV, LoRAConfig
from gptlab.errors import ConfigError

DEFAULT_ADAPTER = "default"
WHOLE = "all"  # the part name of an update over all of a layer's outputs


class LoRA(nn.Module):
    """The low-rank update of one Linear (in -> out): over all its outputs, or, for a fused
    projection such as `c_attn` (query, key, value side by side), one A and B per named part.

    parts: {name: (first output row, end)}; outputs outside every part get no update.
    """

    def __init__(
        self, in_features: int, out_features: int, config: LoRAConfig, parts: dict | None = None
    ):
        super().__init__()
        parts = parts or {WHOLE: (0, out_features)}
        r = config.r
        self.config = config
        self.scale = config.scale
        self.dropout = nn.Dropout(config.dropout)
        self.A = nn.ParameterDict(
            {name: nn.Parameter(torch.empty(r, in_features)) for name in parts}
        )
        self.B = nn.ParameterDict(
            {
                name: nn.Parameter(torch.zeros(end - start, r))
                for name, (start, end) in parts.items()
            }
        )
        for a in self.A.values():
            # nn.Linear's own init (and peft's): uniform with bound 1/sqrt(in_features)
            nn.init.kaiming_uniform_(a, a=math.sqrt(5))
        # The output as segments: a part's name, or None for rows no part updates (zeros).
        self.segments: list[tuple[str | None, int]] = []
        row = 0
        for name, (start, end) in sorted(parts.items(), key=lambda item: item[1]):
            if start > row:
                self.segments.append((None, start - row))
            self.segments.append((name, end - start))
            row = end
        if row < out_features:
            self.segments.append((None, out_features - row))

    def forward(self, x: Tensor, output: Tensor) -> Tensor:
        """The layer's `output` (..., out) plus the update for its input `x` (..., in)."""
        dtype = next(iter(self.A.values())).dtype
        autocast = torch.is_autocast_enabled(x.device.type)
        if x.dtype != dtype and not autocast:
            x = x.to(dtype)  # a bf16 base with float32 adapters (autocast would cast itself)
        x = self.dropout(x)
        if len(self.segments) > 1:  # parts of a fused projection: each its own A and B
            pieces = [
                (x @ self.A[name].t()) @ self.B[name].t()
                if name is not None
                else x.new_zeros(*x.shape[:-1], width)
                for name, width in self.segments
            ]
            return output + (torch.cat(pieces, dim=-1) * self.scale).to(output.dtype)
        h = F.linear(x, self.A[WHOLE])  # (..., r)
        B = self.B[WHOLE]
        if h.dtype != output.dtype and not autocast:
            return output + (F.linear(h, B) * self.scale).to(output.dtype)
        # output + scale * h Bᵀ as one matmul (addmm: beta 1, alpha the scale), with no
        # (..., out) temporaries: each op counts when a small model is launch-bound.
        flat = torch.addmm(
            output.reshape(-1, B.size(0)), h.reshape(-1, B.size(1)), B.t(), alpha=self.scale
        )
        return flat.view(output.shape)  # (..., out)

    def delta_weight(self) -> Tensor:
        """ΔW (out, in) in float32: what merging adds to the Linear's weight."""
        a = next(iter(self.A.values()))
        rows = [
            self.B[name].float() @ self.A[name].float()  # (width, in)
            if name is not None
            else a.new_zeros(width, a.size(1), dtype=torch.float32)
            for name, width in self.segments
        ]
        return torch.cat(rows, dim=0) * self.scale


class LoRALayer(nn.ModuleDict):
    """The adapters of one Linear, by name, and which of them is active (None: none) or merged."""

    def __init__(self):
        super().__init__()
        self.active: str | None = None
        self.merged = False
        self.hook = None

    def forward(self, x: Tensor, output: Tensor) -> Tensor:
        return self[self.active](x, output)


def _add_update(linear: nn.Module, args: tuple, output: Tensor) -> Tensor:
    """The forward hook on a targeted Linear: its output plus the active adapter's update."""
    return linear.lora(args[0], output)


# -- attaching ------------------------------------------------------------------------------


def add_lora(model: nn.Module, config: LoRAConfig, name: str = DEFAULT_ADAPTER) -> list[str]:
    """Give every Linear that `config.targets` names a new adapter `name`, and make it active.

    Returns the names of the adapted modules. The model's parameters keep their names and
    values; nothing is frozen here (see `freeze_base`).
    """
    plan = resolve_targets(model, config.targets)
    modules = dict(model.named_modules())
    for module_name, parts in plan.items():
        linear = modules[module_name]
        layer = getattr(linear, "lora", None)
        if layer is None:
            layer = linear.lora = LoRALayer()
        if name in layer:
            raise ConfigError(f"{module_name} already has an adapter named {name!r}")
        if layer.merged:
            raise ConfigError("unmerge the active adapter before adding another")
        lora = LoRA(linear.in_features, linear.out_features, config, parts)
        layer[name] = lora.to(device=linear.weight.device)  # a quantized layer's too: a buffer
        layer.train(linear.training)  # a model in eval mode gets adapters without dropout
    set_adapter(model, name)
    return list(plan)


def resolve_targets(model: nn.Module, targets) -> dict[str, dict | None]:
    """{module name: parts or None (the whole layer)} for LoRA targets.

    A target is a module name (`transformer.h.0.attn.c_attn`), the end of one after a dot
    (`c_attn`, `mlp.c_proj`: every block's), a glob over full names (`h.1*.mlp.*`), or `q`, `k`,
    `v`: that third of each fused `c_attn`'s output. A target that matches nothing is an error,
    and so is the language-model head, which is the token embedding itself (weight tying).
    """
    linears = {name: module for name, module in model.named_modules() if is_linear(module)}
    plan: dict[str, dict | None] = {}
    for target in targets:
        if target in QKV:
            matched = [name for name in linears if _matches(name, "attn.c_attn")]
        elif any(ch in target for ch in "*?["):
            matched = [name for name in linears if fnmatch.fnmatchcase(name, target)]
        else:
            matched = [name for name in linears if _matches(name, target)]
        if not matched:
            known = sorted({name.rsplit(".", 1)[-1] for name in linears} | set(QKV))
            raise ConfigError(
                f"no Linear layer of the model matches the LoRA target {target!r} "
                f"(its layers: {', '.join(known)})"
            )
        for name in matched:
            if name.endswith("lm_head"):
                raise ConfigError(
                    "LoRA cannot target lm_head: it is the token embedding itself (weight "
                    "tying), so merging would change the inputs too; target a classifier's head "
                    "(score) or the projections"
                )
            if target in QKV:
                if name in plan and plan[name] is None:
                    raise ConfigError(f"{name}: choose c_attn or q/k/v as LoRA targets, not both")
                width = linears[name].out_features // 3
                index = QKV.index(target)
                plan.setdefault(name, {})[target] = (index * width, (index + 1) * width)
            elif plan.get(name):
                raise ConfigError(f"{name}: choose c_attn or q/k/v as LoRA targets, not both")
            else:
                plan[name] = None
    return plan


def is_linear(module: nn.Module) -> bool:
    """A layer LoRA can adapt: an nn.Linear, or a quantized one (gptlab.quantization's Int8Linear
    and Int4Linear, frozen by nature), whose update then trains over the quantized base: QLoRA
    (Dettmers et al. 2023)."""
    return isinstance(module, nn.Linear) or (
        hasattr(module, "in_features") and hasattr(module, "out_features")
    )


def _matches(name: str, target: str) -> bool:
    return name == target or name.endswith("." + target)


# -- using ----------------------------------------------------------------------------------


def lora_layers(model: nn.Module) -> dict[str, nn.Module]:
    """{module name: Linear} of every Linear that carries adapters."""
    return {
        name: module
        for name, module in model.named_modules()
        if isinstance(getattr(module, "lora", None), LoRALayer)
    }


def adapter_names(model: nn.Module) -> list[str]:
    """The names of the adapters on the model, in the order they were added."""
    names: dict[str, None] = {}
    for linear in lora_layers(model).values():
        names.update(dict.fromkeys(linear.lora.keys()))
    return list(names)


def set_adapter(model: nn.Module, name: str | None) -> None:
    """Make adapter `name` the active one everywhere (None: run the plain base)."""
    layers = lora_layers(model)
    if name is not None and not any(name in linear.lora for linear in layers.values()):
        raise ConfigError(
            f"no adapter named {name!r} (the model has: {', '.join(adapter_names(model)) or 'none'})"
        )
    if any(linear.lora.merged for linear in layers.values()):  # check all before changing any
        raise ConfigError("unmerge the merged adapter (unmerge_lora) before switching")
    for linear in layers.values():
        layer = linear.lora
        layer.active = name if name in layer else None
        _set_hook(linear)


def _set_hook(linear: nn.Module) -> None:
    """The hook runs exactly when an adapter is active and not merged: a merged or inactive
    layer costs what a plain Linear costs."""
    layer = linear.lora
    wanted = layer.active is not None and not layer.merged
    if wanted and layer.hook is None:
        layer.hook = linear.register_forward_hook(_add_update)
    elif not wanted and layer.hook is not None:
        layer.hook.remove()
        layer.hook = None


@torch.no_grad()
def merge_lora(model: nn.Module) -> int:
    """Fold the active adapter into the base weights (W += ΔW); returns the layers merged."""
    layers = lora_layers(model)
    if any(not linear.weight.is_floating_point() for linear in layers.values()):
        raise ConfigError(
            "cannot merge LoRA into a quantized base: its weights are integers; merge onto the "
            "float model it was quantized from, or keep the adapter apart"
        )
    merged = 0
    for linear in layers.values():
        layer = linear.lora
        if layer.active is None or layer.merged:
            continue
        linear.weight += layer[layer.active].delta_weight().to(linear.weight.dtype)
        layer.merged = True
        _set_hook(linear)
        merged += 1
    return merged


@torch.no_grad()
def unmerge_lora(model: nn.Module) -> int:
    """Take the merged adapter out of the base weights again (W -= ΔW)."""
    unmerged = 0
    for linear in lora_layers(model).values():
        layer = linear.lora
        if not layer.merged:
            continue
        linear.weight -= layer[layer.active].delta_weight().to(linear.weight.dtype)
        layer.merged = False
        _set_hook(linear)
        unmerged += 1
    return unmerged


def remove_lora(model: nn.Module, name: str | None = None) -> None:
    """Delete adapter `name` (None: all of them); a Linear left without adapters is plain again.
    Merged weights stay merged: that is how `merged_model` makes a plain model."""
    for linear in lora_layers(model).values():
        layer = linear.lora
        for adapter in [name] if name is not None else list(layer.keys()):
            if adapter in layer:
                if layer.active == adapter:
                    layer.active = None
                    layer.merged = False
                del layer[adapter]
        _set_hook(linear)
        if not len(layer):
            del linear.lora


def merged_model(model: nn.Module) -> nn.Module:
    """The model with its active adapter merged and every adapter removed: a plain model."""
    merge_lora(model)
    remove_lora(model)
    return model

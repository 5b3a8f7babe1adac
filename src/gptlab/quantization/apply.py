"""Quantize a built GPT or GPTClassifier from outside: swap its layers for quantized ones.

`quantize_model` replaces, in place, every `nn.Linear` by the method's quantized module, and a
tied GPT's token table and output layer by one int8 table (`Int8Embedding`) that both read
(`Int8TiedHead`). The names stay the float model's, so the state dict holds
`h.0.attn.c_attn.weight` (int8) beside `h.0.attn.c_attn.scale`, and `wte.weight` once.
LayerNorms (a few thousand numbers a layer) and the position table (of which a token reads one
row) stay float.

`quantized_skeleton` makes the same swap with empty modules of the right shapes, so a saved
quantized state dict loads into it without quantizing anything again.

`int8-static` needs batches of text to calibrate on (`calibration=`): the float model reads them
first, with an observer at the input of each Linear to be quantized
(`gptlab.quantization.calibration`), and each quantized layer keeps the scale its observer
chose as its `input_scale`, saved with the weights.

A method is built when `LINEAR_MODULES` has it: the module that replaces a Linear, and the
options the config gives it (a later method adds a line there and its module). The tied table
is int8 for every method: int4 would make GPT-2's most sensitive layer (both the input and the
output) the coarsest, to save 19 MB.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import torch
from torch import Tensor, nn

from gptlab.errors import ConfigError
from gptlab.quantization.config import METHODS, QuantConfig
from gptlab.quantization.fp8 import Fp8Linear
from gptlab.quantization.int4 import Int4Linear
from gptlab.quantization.int8 import Int8Embedding, Int8Linear, Int8TiedHead

# method -> (the module that replaces an nn.Linear, its options from the config). Each module
# has `Module(in_features, out_features, bias, **options)`, empty, and `from_linear(linear,
# **options)`, quantized.
LINEAR_MODULES: dict[str, tuple[type[nn.Module], Callable[[QuantConfig], dict]]] = {
    "int8-dynamic": (Int8Linear, lambda config: {"mode": "dynamic"}),
    "int8-static": (Int8Linear, lambda config: {"mode": "static"}),
    "int8-weight": (Int8Linear, lambda config: {"mode": "weight"}),
    "int4-weight": (Int4Linear, lambda config: {"group_size": config.group_size}),
    "fp8": (Fp8Linear, lambda config: {"scaling": config.fp8_scaling}),
}
# The tied int8 head's mode: it quantizes its input as the method's other layers do; the
# weight-only methods and fp8 (whose head is this int8 table too) multiply it by floats.
HEAD_MODES = {"int8-dynamic": "dynamic", "int8-static": "static"}


def check_method(config: QuantConfig, device: torch.device | str = "cpu") -> None:
    """Refuse, with what it needs, a method this device cannot run or gptlab does not have."""
    device = torch.device(device)
    spec = METHODS[config.method]
    gpu = None
    if spec.min_capability:
        version = ".".join(map(str, spec.min_capability))
        gpu = f"a CUDA GPU of compute capability {version} or more (H100, H200, Ada)"
    if device.type not in spec.devices:
        need = gpu or " or ".join(spec.devices)
        raise ConfigError(f"{config.method} cannot run on {device.type}: it needs {need}")
    if spec.min_capability and torch.cuda.get_device_capability(device) < spec.min_capability:
        name = torch.cuda.get_device_name(device)
        has = ".".join(map(str, torch.cuda.get_device_capability(device)))
        raise ConfigError(f"{config.method} needs {gpu}; {name} has {has}")
    check_built(config)


def check_built(config: QuantConfig) -> None:
    """Refuse a method that gptlab knows of but does not have yet, saying what is missing."""
    if config.method not in LINEAR_MODULES:
        missing = METHODS[config.method].missing or "not implemented yet"
        raise ConfigError(f"{config.method}: {missing}")


def quantize_model(
    model: nn.Module, config: QuantConfig, calibration: Iterable[Tensor] | None = None
) -> nn.Module:
    """Quantize `model` (a GPT or GPTClassifier) in place; return it, in eval mode.

    `calibration`: for int8-static, batches of token ids (B, T) that fix the activation scales.
    """
    check_method(config, _device_of(model))
    scales = None
    if config.method == "int8-static":
        if calibration is None:
            raise ConfigError("int8-static needs text to calibrate its activation scales on")
        scales = calibrate(model.eval(), config, calibration)
    with torch.no_grad():
        _swap(model, config, empty=False)
        for name, scale in (scales or {}).items():
            model.get_submodule(name).input_scale.fill_(scale)
    return model.eval()


def calibrate(model: nn.Module, config: QuantConfig, batches: Iterable[Tensor]) -> dict:
    """{name: activation scale} of every Linear that int8-static quantizes, from the float model's
    inputs over `batches`."""
    from gptlab.quantization.calibration import input_scales, observe_inputs

    names = [name for name, module in model.named_modules() if isinstance(module, nn.Linear)]
    observed = observe_inputs(model, batches, names, config.observer, config.percentile)
    return input_scales(observed)


def quantized_skeleton(model: nn.Module, config: QuantConfig) -> nn.Module:
    """`model` with empty quantized modules where `quantize_model` puts quantized ones: the
    shape a saved quantized state dict loads into. Refuses methods gptlab does not have."""
    check_built(config)
    _swap(model, config, empty=True)
    return model.eval()


def _quantized_linears() -> tuple[type[nn.Module], ...]:
    return tuple({cls for cls, _ in LINEAR_MODULES.values()})


def is_quantized(model: nn.Module) -> bool:
    kinds = (*_quantized_linears(), Int8Embedding)
    return any(isinstance(module, kinds) for module in model.modules())


def stored_numbers(model: nn.Module) -> int:
    """The number of weights a model stands for, whatever their bits: `num_params()` for a
    float model; for a quantized one, its float parameters and each quantized layer's
    in x out (+ bias), so that it counts what its float source counted."""
    if not is_quantized(model):
        return model.num_params()
    total = sum(p.numel() for p in model.parameters())
    for module in model.modules():
        if isinstance(module, _quantized_linears()):
            total += module.in_features * module.out_features
            total += 0 if module.bias is None else module.bias.numel()
        elif isinstance(module, Int8Embedding):
            total += module.weight.numel()
    return total


def _swap(model: nn.Module, config: QuantConfig, empty: bool) -> None:
    linears = [
        (name, module) for name, module in model.named_modules() if isinstance(module, nn.Linear)
    ]
    tied_heads = {id(body.lm_head) for body in _gpt_bodies(model) if _is_tied(body)}
    if config.method == "int4-weight":
        # Check every layer before changing any, so a refused model is left as it was.
        for name, linear in linears:
            if id(linear) in tied_heads:
                continue  # it becomes int8 with the table
            if linear.in_features % config.group_size:
                raise ConfigError(
                    f"int4-weight group size {config.group_size} does not divide the "
                    f"{linear.in_features} input features of {name}: choose a group size "
                    f"that divides every layer's input width (--group-size)"
                )
    for body in _gpt_bodies(model):
        if _is_tied(body):
            table = body.wte
            multiplier = getattr(table, "scale", 1.0)  # TokenEmbedding's optional sqrt(C)
            body.wte = (
                Int8Embedding(table.num_embeddings, table.embedding_dim, multiplier)
                if empty
                else Int8Embedding.from_embedding(table)
            )
            body.lm_head = Int8TiedHead(body.wte, HEAD_MODES.get(config.method, "weight"))
    cls, options = LINEAR_MODULES[config.method]
    for name, linear in linears:
        if id(linear) in tied_heads:
            continue
        parent_name, _, child = name.rpartition(".")
        if empty:
            bias = linear.bias is not None
            new = cls(linear.in_features, linear.out_features, bias, **options(config))
        else:
            new = cls.from_linear(linear, **options(config))
        setattr(model.get_submodule(parent_name), child, new)


def _gpt_bodies(model: nn.Module) -> list[nn.Module]:
    """The modules with a token table and an output layer: a GPT itself, or a classifier's body."""
    return [m for m in model.modules() if hasattr(m, "wte") and hasattr(m, "lm_head")]


def _is_tied(body: nn.Module) -> bool:
    return body.lm_head.weight is body.wte.weight


def _device_of(model: nn.Module) -> torch.device:
    return next(model.parameters()).device

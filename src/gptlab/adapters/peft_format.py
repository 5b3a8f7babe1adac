"""Adapters in Hugging Face peft's files, both ways, without importing peft.

A peft adapter folder is two files beside a base model that transformers loads:

    adapter_config.json         peft_type (LORA, PROMPT_TUNING), task_type, the settings
    adapter_model.safetensors   the adapter's tensors, named after the base's modules:
        base_model.model.transformer.h.0.attn.c_attn.lora_A.weight   (r, in)    as gptlab's A
        base_model.model.transformer.h.0.attn.c_attn.lora_B.weight   (out, r)   as gptlab's B
        base_model.model.score.weight                                a classifier's head
        prompt_embeddings                                            (N, C) a soft prompt

GPT-2's projections are transformers `Conv1D`s with weights (in, out), hence `fan_in_fan_out`;
peft's lora_A and lora_B are Linear weights whatever the base's layout, so they are gptlab's A
and B as they are. Two things have no direct equivalent and are written as exact rewrites:

- gptlab's per-projection form (one A and B for each of q, k, v over the fused `c_attn`) is one
  LoRA of rank parts x r on `c_attn`: A the parts' A stacked, B block-diagonal over the parts'
  output rows (zeros elsewhere). `rank_pattern` gives that rank, and `alpha_pattern` parts x
  alpha, so the scale alpha / r is unchanged and the update is the same to the last bit of
  arithmetic a matrix product allows. Reading an adapter, that block structure (and nothing
  else) is taken back as q/k/v parts, so a gptlab adapter goes to peft and back unchanged.
- for SEQ_CLS, peft always saves the head `score` whole (`modules_to_save`), and that wins over
  a LoRA on it; the head is new and saved whole anyway, so a LoRA of it is merged into the
  `score.weight` the adapter saves.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import torch
from torch import Tensor, nn

from gptlab.adapters.config import QKV, LoRAConfig, PromptTuningConfig
from gptlab.adapters.lora import DEFAULT_ADAPTER, WHOLE, lora_layers
from gptlab.adapters.prompt import PromptTuned
from gptlab.errors import CheckpointError

CONFIG_FILE = "adapter_config.json"
WEIGHTS_FILE = "adapter_model.safetensors"
PREFIX = "base_model.model."  # where peft's PeftModel keeps the base: its saved names start so


def head_key(peft_type: str) -> str:
    """The saved name of a classifier's head: a LoRA model nests the base one level deeper
    (`base_model.model.`) than a prompt-learning model (`base_model.`)."""
    return f"{PREFIX if peft_type == 'LORA' else 'base_model.'}{HEAD}.weight"


PROMPT_KEY = "prompt_embeddings"
HEAD = "score"
TASK_TYPES = {"lm": "CAUSAL_LM", "classify": "SEQ_CLS"}
# A peft LoRA key: the module's name in transformers' model, and which matrix.
LORA_KEY = re.compile(r"^base_model\.model\.(?P<module>.+)\.lora_(?P<matrix>[AB])\.weight$")


def _is_classifier(model: nn.Module) -> bool:
    from gptlab.pretrained import is_classifier

    return is_classifier(model)


def _hf_name(model: nn.Module, name: str) -> str:
    """A gptlab module name in transformers' GPT2LMHeadModel / GPT2ForSequenceClassification:
    a GPT's blocks are `h.N`, transformers' `transformer.h.N` (a classifier's already are)."""
    return name if _is_classifier(model) else f"transformer.{name}"


def _gptlab_name(model: nn.Module, hf_name: str) -> str:
    return hf_name if _is_classifier(model) else hf_name.removeprefix("transformer.")


# -- gptlab -> peft ---------------------------------------------------------------------------


def lora_to_peft(model: nn.Module, base_name: str | None = None) -> tuple[dict, dict[str, Tensor]]:
    """(adapter_config.json values, adapter_model.safetensors tensors) of a model's active LoRA."""
    layers = lora_layers(model)
    if not layers:
        raise CheckpointError("the model has no LoRA adapter to export")
    config: LoRAConfig | None = None
    state: dict[str, Tensor] = {}
    targets, rank_pattern, alpha_pattern = [], {}, {}
    for name, linear in layers.items():
        lora = linear.lora[linear.lora.active]
        config = lora.config
        if name == HEAD:  # merged into the head peft saves whole (see the module docstring)
            continue
        module = _hf_name(model, name)
        A, B = fused_lora(lora)  # (parts * r, in), (out, parts * r)
        state[f"{PREFIX}{module}.lora_A.weight"] = A
        state[f"{PREFIX}{module}.lora_B.weight"] = B
        targets.append(module)
        parts = A.size(0) // config.r
        if parts > 1:  # the same scale: (parts * alpha) / (parts * r)
            rank_pattern[module] = parts * config.r
            alpha_pattern[module] = parts * config.alpha
    classify = _is_classifier(model)
    if classify:
        head = model.score.weight.detach().clone()  # (K, C)
        if hasattr(model.score, "lora") and model.score.lora.active and not model.score.lora.merged:
            head += model.score.lora[model.score.lora.active].delta_weight().to(head.dtype)
        state[head_key("LORA")] = head
    values = {
        "peft_type": "LORA",
        "task_type": TASK_TYPES["classify" if classify else "lm"],
        "base_model_name_or_path": base_name,
        "r": config.r,
        "lora_alpha": config.alpha,
        "lora_dropout": config.dropout,
        "target_modules": targets,
        "rank_pattern": rank_pattern,
        "alpha_pattern": alpha_pattern,
        "fan_in_fan_out": True,  # GPT-2's Conv1D keeps its weights (in, out)
        "bias": "none",
        "use_dora": False,
        "use_rslora": False,
        "init_lora_weights": True,
        "inference_mode": True,
        "modules_to_save": [HEAD] if classify else None,
        "layers_to_transform": None,
        "layers_pattern": None,
        "revision": None,
    }
    return values, {key: tensor.detach().cpu().contiguous() for key, tensor in state.items()}


def fused_lora(lora: nn.Module) -> tuple[Tensor, Tensor]:
    """One A (parts * r, in) and B (out, parts * r) with B A = the sum of the parts' B A."""
    names = [name for name, _ in lora.segments if name is not None]
    if names == [WHOLE]:
        return lora.A[WHOLE].detach(), lora.B[WHOLE].detach()
    A = torch.cat([lora.A[name].detach() for name in names])  # (parts * r, in)
    r = lora.A[names[0]].size(0)
    B = A.new_zeros(sum(width for _, width in lora.segments), len(names) * r)  # (out, parts * r)
    row = 0
    for name, width in lora.segments:
        if name is not None:
            column = names.index(name) * r
            B[row : row + width, column : column + r] = lora.B[name].detach()
        row += width
    return A, B


def prompt_to_peft(
    model: nn.Module, base_name: str | None = None
) -> tuple[dict, dict[str, Tensor]]:
    """(adapter_config.json values, tensors) of a prompt-tuned GPT or classifier."""
    classify = _is_classifier(model)
    tuned = model.transformer if classify else model
    if not isinstance(tuned, PromptTuned):
        raise CheckpointError("the model has no soft prompt to export")
    settings, gpt = tuned.prompt_config, tuned.gpt.config
    text_init = settings.init == "text"
    values = {
        "peft_type": "PROMPT_TUNING",
        "task_type": TASK_TYPES["classify" if classify else "lm"],
        "base_model_name_or_path": base_name,
        "num_virtual_tokens": tuned.num_tokens,
        "token_dim": gpt.n_embd,
        "num_transformer_submodules": 1,  # a decoder: one set of virtual tokens
        "num_attention_heads": gpt.n_head,
        "num_layers": gpt.n_layer,
        "prompt_tuning_init": "TEXT" if text_init else "RANDOM",
        "prompt_tuning_init_text": settings.init_text if text_init else None,
        # peft requires a tokenizer for TEXT; in inference mode it never loads it
        "tokenizer_name_or_path": base_name if text_init else None,
        "inference_mode": True,
        "modules_to_save": [HEAD] if classify else None,
        "revision": None,
    }
    state = {PROMPT_KEY: tuned.prompt.detach().cpu().contiguous()}  # (N, C)
    if classify:
        state[head_key("PROMPT_TUNING")] = model.score.weight.detach().cpu().contiguous()
    return values, state


def save_peft(model: nn.Module, out: str | Path, base_name: str | None = None) -> Path:
    """Write `out` as a peft adapter folder for the adapter on `model` (LoRA or a prompt)."""
    from safetensors.torch import save_file

    from gptlab.adapters.adapted import adapter_kind
    from gptlab.atomic import atomic_path
    from gptlab.training.checkpoint import write_json

    kind = adapter_kind(model)
    if kind is None:
        raise CheckpointError("the model has no adapter: export it as a plain model")
    values, state = (lora_to_peft if kind == "lora" else prompt_to_peft)(model, base_name)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / CONFIG_FILE, values)
    with atomic_path(out / WEIGHTS_FILE) as tmp:
        save_file(state, str(tmp), metadata={"format": "pt"})
    return out


# -- peft -> gptlab ---------------------------------------------------------------------------


def read_peft(folder: str | Path) -> tuple[dict, dict[str, Tensor]]:
    """(config values, tensors) of a peft adapter folder, checked for what gptlab can load."""
    from safetensors.torch import load_file

    folder = Path(folder)
    path = folder / CONFIG_FILE
    if not path.is_file():
        raise CheckpointError(
            f"{folder} has no {CONFIG_FILE}: it is not a peft adapter folder "
            "(one written by peft's save_pretrained)"
        )
    try:
        values = json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise CheckpointError(f"{path} is not valid JSON: {error}") from error
    if not isinstance(values, dict):
        raise CheckpointError(f"{path} is not a peft adapter config (a JSON object)")
    check_peft_config(values, source=str(path))
    weights = folder / WEIGHTS_FILE
    if not weights.is_file():
        raise CheckpointError(
            f"{folder} has no {WEIGHTS_FILE} (gptlab reads peft's safetensors files only)"
        )
    try:
        state = load_file(str(weights))
    except Exception as error:  # safetensors raises several kinds for a corrupt file
        raise CheckpointError(f"cannot read {weights}: {error}") from error
    return values, state


def check_peft_config(values: dict, source: str) -> None:
    """One clear error for each peft setting gptlab's adapters do not have."""
    kind = values.get("peft_type")
    if kind not in ("LORA", "PROMPT_TUNING"):
        raise CheckpointError(
            f"{source}: peft type {kind!r} is not supported: gptlab imports LORA and PROMPT_TUNING"
        )
    if values.get("task_type") not in (None, *TASK_TYPES.values()):
        raise CheckpointError(
            f"{source}: task type {values['task_type']!r} is not supported: gptlab's models are "
            f"{' and '.join(TASK_TYPES.values())}"
        )
    if kind == "PROMPT_TUNING":
        if values.get("num_transformer_submodules", 1) != 1:
            raise CheckpointError(f"{source}: a prompt for an encoder-decoder cannot load on GPT-2")
        return
    unsupported = {
        "use_dora": "DoRA",
        "use_rslora": "rank-stabilised LoRA (alpha / sqrt(r))",
        "lora_bias": "LoRA biases",
        "layer_replication": "layer replication",
        "trainable_token_indices": "trainable tokens",
        "target_parameters": "LoRA on parameters",
    }
    for key, what in unsupported.items():
        if values.get(key):
            raise CheckpointError(f"{source}: {what} ({key}) is not supported by gptlab's LoRA")
    if values.get("bias", "none") != "none":
        raise CheckpointError(
            f"{source}: bias {values['bias']!r} trains the base's biases; gptlab's LoRA supports "
            "bias 'none' only"
        )


def lora_from_peft(
    values: dict, state: dict[str, Tensor], model: nn.Module
) -> tuple[LoRAConfig, dict[str, Tensor]]:
    """The LoRAConfig and gptlab LoRA tensors of a peft LoRA for `model` (a GPT or classifier).

    peft lets each module have its own rank and alpha (`rank_pattern`, `alpha_pattern`);
    gptlab's LoRA has one of each, so they must agree across the adapted modules.
    """
    modules: dict[str, dict[str, Tensor]] = {}
    for key, tensor in state.items():
        match = LORA_KEY.match(key)
        if match:
            modules.setdefault(match["module"], {})[match["matrix"]] = tensor
        elif key != head_key("LORA"):
            raise CheckpointError(f"the peft adapter has a tensor gptlab's LoRA cannot hold: {key}")
    if not modules:
        raise CheckpointError("the peft LoRA adapter holds no lora_A / lora_B tensors")
    linears = {name for name, m in model.named_modules() if isinstance(m, nn.Linear)}
    settings = set()
    lora_state = {}
    split: dict[str, tuple[str, ...]] = {}  # fused c_attn updates that are q/k/v parts
    for module, pair in sorted(modules.items()):
        name = _gptlab_name(model, module)
        if name not in linears:
            raise CheckpointError(
                f"the adapter changes {module}, which this base does not have: it was made for "
                "another model"
            )
        if set(pair) != {"A", "B"}:
            raise CheckpointError(f"the adapter has lora_A or lora_B of {module}, not both")
        r = _pattern_value(values.get("rank_pattern"), module, values.get("r", 8))
        alpha = _pattern_value(values.get("alpha_pattern"), module, values.get("lora_alpha", 8))
        if pair["A"].size(0) != r:
            raise CheckpointError(
                f"{module}.lora_A has rank {pair['A'].size(0)}, its config says r={r}"
            )
        parts = _qkv_parts(name, pair, r, alpha, values)
        if parts is None:
            parts = {WHOLE: (pair["A"], pair["B"])}
        else:  # gptlab's per-projection form, exported as one fused update (see the top)
            r, alpha = values["r"], values["lora_alpha"]
            split[name] = tuple(parts)
        settings.add((r, float(alpha)))
        for part, (A, B) in parts.items():
            lora_state[f"{name}.lora.{DEFAULT_ADAPTER}.A.{part}"] = A
            lora_state[f"{name}.lora.{DEFAULT_ADAPTER}.B.{part}"] = B
    if len(settings) > 1:
        found = ", ".join(f"r={r} alpha={alpha:g}" for r, alpha in sorted(settings))
        raise CheckpointError(
            f"the adapter's modules have different ranks or alphas ({found}, from rank_pattern / "
            "alpha_pattern): gptlab's LoRA has one rank and one alpha for all its modules"
        )
    ((r, alpha),) = settings
    adapted = [_gptlab_name(model, module) for module in modules]
    targets = compact_targets([name for name in adapted if name not in split], sorted(linears))
    if split:
        fused = {name for name in linears if name.endswith("attn.c_attn")}
        kinds = set(split.values())
        if set(split) != fused or len(kinds) != 1:
            raise CheckpointError(
                "the adapter's query/key/value parts differ between blocks: gptlab's LoRA takes "
                "the same q/k/v parts in every block"
            )
        targets = (*kinds.pop(), *targets)
    config = LoRAConfig(
        r=r, alpha=alpha, dropout=float(values.get("lora_dropout", 0.0)), targets=targets
    )
    return config, lora_state


def _qkv_parts(name: str, pair: dict, r: int, alpha: float, values: dict) -> dict | None:
    """{q/k/v: (A, B)} when a fused c_attn update is gptlab's per-projection form as `lora_to_peft`
    writes it: rank (parts x r) at the adapter's alpha/r scale, each r-column group of B nonzero
    in one third of the rows only. None for an ordinary update of the whole layer."""
    base_r, base_alpha = values.get("r", 8), values.get("lora_alpha", 8)
    parts_count, remainder = divmod(r, base_r)
    if not name.endswith("attn.c_attn") or parts_count < 2 or remainder:
        return None
    if abs(alpha / r - base_alpha / base_r) > 1e-9:
        return None
    A, B = pair["A"], pair["B"]  # (parts x r, C), (3C, parts x r)
    third = B.size(0) // 3
    parts, unused = {}, list(QKV)
    for group in range(parts_count):
        columns = slice(group * base_r, (group + 1) * base_r)
        rows = [i for i in range(3) if B[i * third : (i + 1) * third, columns].any()]
        if len(rows) > 1:
            return None
        # a group of zeros (an untrained adapter) is the next unused part, the exporter's order
        index = rows[0] if rows else QKV.index(unused[0])
        part = QKV[index]
        if part not in unused:
            return None
        unused.remove(part)
        parts[part] = (A[columns], B[index * third : (index + 1) * third, columns])
    return dict(sorted(parts.items(), key=lambda item: QKV.index(item[0])))


def _pattern_value(pattern: dict | None, module: str, default):
    """A module's value in a peft rank_pattern or alpha_pattern, as peft's `get_pattern_key`
    finds it: the first key that matches the end of the module's name."""
    for key, value in (pattern or {}).items():
        if re.match(rf"(.*\.)?({key})$", module):
            return value
    return default


def compact_targets(names: list[str], linears: list[str]) -> tuple[str, ...]:
    """LoRA targets that select exactly `names`: a short name (`c_attn`, `mlp.c_proj`) for a
    kind of layer adapted in every block, the full names of the rest."""
    left = set(names)
    targets = []
    for suffix in ("c_attn", "c_proj", "c_fc", "attn.c_proj", "mlp.c_proj", HEAD):
        matched = {name for name in linears if name == suffix or name.endswith("." + suffix)}
        if matched and matched <= left:
            targets.append(suffix)
            left -= matched
    return (*targets, *sorted(left))


def prompt_from_peft(values: dict, state: dict[str, Tensor], gpt_config) -> PromptTuningConfig:
    """The PromptTuningConfig of a peft prompt, checked against the base's width."""
    prompt = state.get(PROMPT_KEY)
    if prompt is None or prompt.dim() != 2:
        raise CheckpointError(f"the peft prompt adapter has no {PROMPT_KEY} (N, C) tensor")
    if prompt.size(1) != gpt_config.n_embd:
        raise CheckpointError(
            f"the prompt's embeddings have width {prompt.size(1)}, the base's {gpt_config.n_embd}: "
            "it was made for another model"
        )
    return PromptTuningConfig(num_tokens=prompt.size(0), init="random")


# -- run directories ------------------------------------------------------------------------

ADAPTER_DIR = "adapter"


def export_peft(model: nn.Module, tokenizer, run_config: dict, out: str | Path) -> Path:
    """Write `out` as the run's base in Hugging Face format (its own weights, without the
    adapter) and `out/adapter` as the adapter in peft's: what PeftModel.from_pretrained loads."""
    from gptlab.adapters.adapted import load_base
    from gptlab.pretrained import export_hf

    body, _ = load_base(run_config["base"])  # the base as it was, checked against its checksum
    base = body
    if _is_classifier(model):
        from gptlab.models.classifier import GPTClassifier

        base = GPTClassifier(body, model.head)
        with torch.no_grad():  # the head the run started from; a trained one is in the adapter
            base.score.weight.copy_(model.score.weight)
    out = export_hf(base, tokenizer, out)
    save_peft(model, out / ADAPTER_DIR, base_name=str(out.resolve()))
    return out


def load_peft(folder: str | Path, base: str | None = None):
    """(adapted model, tokenizer, run config sections) of a peft adapter folder on its base.

    base: a model name, Hugging Face folder or gptlab run (default: the adapter's own
    `base_model_name_or_path`).
    """
    from gptlab.adapters.adapted import attach, base_record, is_adapted
    from gptlab.config import ClassifierConfig
    from gptlab.models.classifier import GPTClassifier
    from gptlab.pretrained import is_classifier, load_model
    from gptlab.training.checkpoint import load_state_into

    values, state = read_peft(folder)
    base = base or values.get("base_model_name_or_path")
    if not base:
        raise CheckpointError(f"{folder}'s config names no base model: give one with --base")
    model, tokenizer, info = load_model(base)
    if is_adapted(model):
        raise CheckpointError(f"{base} has an adapter itself: give a plain base model")
    body = getattr(model, "transformer", model)
    sections = {"task": "lm", "base": base_record(info, body)}
    head_weight = None
    if values.get("task_type") == TASK_TYPES["classify"]:
        head_weight = state.pop(head_key(values["peft_type"]), None)  # (K, C)
        if is_classifier(model):
            head = model.head
            if head_weight is None:  # peft saved no head: the base's is the one
                head_weight = model.score.weight.detach().clone()
        elif head_weight is None:
            raise CheckpointError(
                f"the classifier adapter saves no {HEAD}.weight and {base} has no head: give the "
                "sequence classifier it was trained on as --base"
            )
        else:  # transformers' names for classes it was not told
            head = ClassifierConfig(labels=[f"LABEL_{i}" for i in range(head_weight.size(0))])
        model = GPTClassifier(body, head)
        sections.update(task="classify", classifier=head.to_dict())
    else:
        model = body
    if values["peft_type"] == "LORA":
        config, adapter = lora_from_peft(values, state, model)
        model = attach(model, config)
    else:
        config = prompt_from_peft(values, state, body.config)
        model = attach(model, config, tokenizer)
        prompt = next(name for name in model.state_dict() if name.endswith("wte.prompt"))
        adapter = {prompt: state[PROMPT_KEY]}
    if head_weight is not None:
        adapter[f"{HEAD}.weight"] = head_weight
    load_state_into(model, adapter, source=str(Path(folder) / WEIGHTS_FILE))
    sections["adapter"] = config.to_dict()
    return model.eval(), tokenizer, sections

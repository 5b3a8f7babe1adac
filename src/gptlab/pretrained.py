"""Hugging Face GPT-2 <-> gptlab: configs and state dicts.

gptlab's parameter names are GPT-2's without the `transformer.` prefix. The one real difference
is the layout of the projections: GPT-2 stores them as `Conv1D` with weights (in, out), where
`nn.Linear` keeps (out, in), so those four weights are transposed on the way in and out.

Two architectures map: `GPT2LMHeadModel` <-> `GPT`, and `GPT2ForSequenceClassification` <->
`GPTClassifier`, whose names (`transformer.*`, `score.weight`) are already transformers'.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path

from torch import Tensor

from gptlab.config import GPTConfig
from gptlab.errors import CheckpointError

# The Conv1D weights of a GPT-2 block, which nn.Linear stores transposed.
CONV1D_SUFFIXES = (
    "attn.c_attn.weight",
    "attn.c_proj.weight",
    "mlp.c_fc.weight",
    "mlp.c_proj.weight",
)
# Buffers older transformers versions keep in the state dict: a causal mask and a constant.
HF_BUFFER_SUFFIXES = (".attn.bias", ".attn.masked_bias")
# transformers' activation_function -> GPTConfig.gelu
GELU_OF_ACTIVATION = {"gelu_new": "tanh", "gelu_pytorch_tanh": "tanh", "gelu": "none"}


def config_from_hf(hf_config) -> GPTConfig:
    """A GPTConfig from a transformers `GPT2Config` (or its dict form)."""
    values = hf_config if isinstance(hf_config, Mapping) else hf_config.to_dict()
    model_type = values.get("model_type", "gpt2")
    if model_type != "gpt2":
        raise CheckpointError(
            f"expected a GPT-2 checkpoint (model_type 'gpt2'), got model_type {model_type!r}"
        )
    activation = values.get("activation_function", "gelu_new")
    if activation not in GELU_OF_ACTIVATION:
        raise CheckpointError(
            f"gptlab's GPT uses GPT-2's tanh GELU or the exact one; this checkpoint uses {activation!r}"
        )
    if values.get("n_inner") not in (None, 4 * values["n_embd"]):
        raise CheckpointError(
            f"gptlab's GPT has a 4x MLP; this checkpoint has n_inner={values['n_inner']}"
        )
    return GPTConfig(
        vocab_size=values["vocab_size"],
        context_length=values["n_positions"],
        n_layer=values["n_layer"],
        n_head=values["n_head"],
        n_embd=values["n_embd"],
        dropout=0.0,
        layer_norm_eps=values.get("layer_norm_epsilon", 1e-5),
        gelu=GELU_OF_ACTIVATION[activation],
    )


def config_to_hf(config: GPTConfig) -> dict:
    """The `config.json` values of a transformers `GPT2Config` with the shape of `config`."""
    if config.positions != "learned" or not config.bias:
        raise CheckpointError(
            "only GPT-2's own architecture (learned positions, biases) exports to GPT-2 format"
        )
    # GPT-2's <|endoftext|> is id 50256; a smaller vocabulary (a character model) has no such
    # token, and an id past the vocabulary would make transformers' generate index out of range.
    end_of_text = 50256 if config.vocab_size > 50256 else None
    return {
        "model_type": "gpt2",
        "architectures": ["GPT2LMHeadModel"],
        "vocab_size": config.vocab_size,
        "n_positions": config.context_length,
        "n_ctx": config.context_length,
        "n_embd": config.n_embd,
        "n_layer": config.n_layer,
        "n_head": config.n_head,
        "n_inner": None,
        "activation_function": "gelu" if config.gelu == "none" else "gelu_new",
        "resid_pdrop": config.dropout,
        "embd_pdrop": config.dropout,
        "attn_pdrop": config.dropout,
        "layer_norm_epsilon": config.layer_norm_eps,
        "initializer_range": 0.02,
        "bos_token_id": end_of_text,
        "eos_token_id": end_of_text,
        "tie_word_embeddings": True,
    }


def state_dict_from_hf(hf_state: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """Rename and transpose a GPT2LMHeadModel (or GPT2Model) state dict into gptlab's."""
    state = {}
    for name, tensor in hf_state.items():
        if name.endswith(HF_BUFFER_SUFFIXES):
            continue
        name = name.removeprefix("transformer.")
        state[name] = tensor.t() if name.endswith(CONV1D_SUFFIXES) else tensor
    state.setdefault("lm_head.weight", state.get("wte.weight"))  # tied: GPT2Model has no head
    return state


def state_dict_to_hf(state: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """gptlab's state dict in GPT2LMHeadModel's names and layouts (the tied head left out)."""
    hf_state = {}
    for name, tensor in state.items():
        if name == "lm_head.weight":
            continue
        hf_state[f"transformer.{name}"] = (
            tensor.t().contiguous() if name.endswith(CONV1D_SUFFIXES) else tensor
        )
    return hf_state


CLASSIFIER_ARCHITECTURE = "GPT2ForSequenceClassification"


def classifier_config_to_hf(config: GPTConfig, head) -> dict:
    """The `config.json` values of a GPT2ForSequenceClassification with this body and head."""
    if head.pooling != "last":
        raise CheckpointError(
            "GPT2ForSequenceClassification reads the last token: a classifier with "
            f"{head.pooling!r} pooling has no equivalent there"
        )
    values = config_to_hf(config)
    values.update(
        architectures=[CLASSIFIER_ARCHITECTURE],
        id2label={str(i): name for i, name in enumerate(head.labels)},
        label2id={name: i for i, name in enumerate(head.labels)},
        # transformers finds each row's last real token as the last one that is not the pad id
        pad_token_id=head.pad_id,
    )
    return values


def classifier_config_from_hf(values: Mapping):
    """A ClassifierConfig from a GPT2ForSequenceClassification's config.json values."""
    from gptlab.config import ClassifierConfig

    id2label = values.get("id2label") or {}
    if len(id2label) < 2:
        raise CheckpointError(
            "a sequence-classification config needs id2label with two or more classes"
        )
    labels = [id2label[key] for key in sorted(id2label, key=int)]
    pad_id = values.get("pad_token_id")
    return ClassifierConfig(labels=labels, pad_id=0 if pad_id is None else int(pad_id))


def classifier_state_to_hf(state: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """A GPTClassifier's state dict in GPT2ForSequenceClassification's names and layouts."""
    body = {
        name.removeprefix("transformer."): tensor
        for name, tensor in state.items()
        if name.startswith("transformer.")
    }
    return {**state_dict_to_hf(body), "score.weight": state["score.weight"]}


def classifier_state_from_hf(hf_state: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """Rename and transpose a GPT2ForSequenceClassification state dict into GPTClassifier's."""
    if "score.weight" not in hf_state:
        raise CheckpointError("the checkpoint has no score.weight: it is not a sequence classifier")
    body = state_dict_from_hf({k: v for k, v in hf_state.items() if k != "score.weight"})
    return {
        **{f"transformer.{name}": tensor for name, tensor in body.items()},
        "score.weight": hf_state["score.weight"],
    }


def is_classifier(model) -> bool:
    return hasattr(model, "score") and hasattr(model, "transformer")


def model_task(model) -> str:
    """ "classify" for a GPTClassifier, "mlm" for a MaskedLM, "lm" for a GPT."""
    from gptlab.models.encoder import MaskedLM

    if isinstance(model, MaskedLM):
        return "mlm"
    return "classify" if is_classifier(model) else "lm"


# -- loading ------------------------------------------------------------------------------

HUB_NAMES = {
    "gpt2": "openai-community/gpt2",
    "gpt2-medium": "openai-community/gpt2-medium",
    "gpt2-large": "openai-community/gpt2-large",
    "gpt2-xl": "openai-community/gpt2-xl",
}
HF_WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")


def hub_folder(name: str) -> Path:
    """Download (or find in the Hugging Face cache) the files of a GPT-2 checkpoint on the hub.

    Honours HF_HUB_OFFLINE and HF_HOME like every Hugging Face tool.
    """
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError

    repo = HUB_NAMES.get(name, name)
    try:
        return Path(
            snapshot_download(
                repo,
                allow_patterns=["config.json", "model.safetensors", "vocab.json", "merges.txt"],
            )
        )
    except LocalEntryNotFoundError as error:
        raise CheckpointError(
            f"cannot download {repo} from the Hugging Face hub (offline?) and it is not in the local cache; "
            f"download it where there is a network, or pass a local folder"
        ) from error
    except (HfHubHTTPError, OSError, ValueError) as error:
        raise CheckpointError(f"cannot get {repo} from the Hugging Face hub: {error}") from error


def is_hf_folder(path: Path) -> bool:
    config = path / "config.json"
    if not config.is_file():
        return False
    try:
        return "model_type" in json.loads(config.read_text())
    except json.JSONDecodeError:
        return False


def load_hf_folder(folder: str | Path):
    """gptlab's model with the weights of a Hugging Face GPT-2 folder (config.json + weights):
    a GPT, or a GPTClassifier for a GPT2ForSequenceClassification."""
    from gptlab.models.gpt import GPT
    from gptlab.training.checkpoint import load_state_into

    folder = Path(folder)
    values = json.loads((folder / "config.json").read_text())
    config = config_from_hf(values)
    weights = _weights_file(folder)
    hf_state = _read_weights(weights)
    if CLASSIFIER_ARCHITECTURE in (values.get("architectures") or []):
        from gptlab.models.classifier import GPTClassifier

        model = GPTClassifier(GPT(config), classifier_config_from_hf(values))
        load_state_into(model, classifier_state_from_hf(hf_state), source=str(weights))
        return model
    model = GPT(config)
    load_state_into(model, state_dict_from_hf(hf_state), source=str(weights))
    return model


def _weights_file(folder: Path) -> Path:
    weights = next((folder / name for name in HF_WEIGHT_FILES if (folder / name).is_file()), None)
    if weights is None:
        raise CheckpointError(f"{folder} has no {' or '.join(HF_WEIGHT_FILES)}")
    return weights


def _read_weights(path: Path) -> dict[str, Tensor]:
    import torch

    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            return load_file(str(path))
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # safetensors and torch raise several kinds for a corrupt file
        raise CheckpointError(f"cannot read {path}: {error}") from error


def load_model(spec: str | Path, device="cpu", checkpoint: str = "best", task: str | None = None):
    """A model and its tokenizer from a run directory, a Hugging Face folder, or a model name.

    Returns (model in eval mode, tokenizer, info dict with "source", "kind" and "task");
    `checkpoint` picks the best or last weights of a run directory; `task` ("lm", "classify",
    "mlm"), when given, is the kind of model the caller needs: another is a CheckpointError.
    Without a task, a GPT of either task; "any" takes a masked-language model too.
    """
    model, tokenizer, info = _load_any_model(spec, device, checkpoint)
    info["task"] = model_task(model)
    # Without a task, the caller takes a GPT (lm or classify): an encoder must be asked for,
    # by its task or by "any".
    if task == "any":
        return model, tokenizer, info
    if (task is not None and info["task"] != task) or (task is None and info["task"] == "mlm"):
        raise CheckpointError(_wrong_task(spec, task, info["task"]))
    return model, tokenizer, info


def _wrong_task(spec, wanted: str, found: str) -> str:
    if found == "mlm":
        return (
            f"{spec} is a masked-language model (an encoder), which cannot do this: fill its "
            f"masks with `gptlab fill-mask {spec} TEXT`"
        )
    if wanted == "lm":
        return f"{spec} is a classifier, not a language model: use `gptlab classify {spec} TEXT`"
    if wanted == "classify":
        return (
            f"{spec} is a language model, not a classifier: make one with "
            f"`gptlab finetune classify {spec} --data DATA --out RUN`"
        )
    return (
        f"{spec} is a {found} model, not a masked-language model: train one with "
        "`gptlab train --objective mlm`"
    )


def _load_any_model(spec: str | Path, device, checkpoint: str):
    from gptlab.pretrained_bert import is_bert_config, load_bert_folder
    from gptlab.runs import load_run
    from gptlab.tokenizers import GPT2Tokenizer

    path = Path(spec).expanduser()
    if path.is_dir() and (path / "config.json").is_file() and not is_hf_folder(path):
        model, tokenizer, config = load_run(path, device, checkpoint)
        return model, tokenizer, {"source": str(path), "kind": "run", "config": config}
    if path.is_dir():
        if not is_hf_folder(path):
            raise CheckpointError(
                f"{path} is neither a gptlab run directory nor a Hugging Face GPT-2 folder"
            )
        folder, kind = path, "hf-folder"
    elif str(spec) in HUB_NAMES or _looks_like_repo_id(str(spec)):
        folder, kind = hub_folder(str(spec)), "hub"
    else:
        raise CheckpointError(
            f"no folder at {spec}, and it is not a model name ({', '.join(HUB_NAMES)}, or owner/name on the hub)"
        )
    if is_bert_config(json.loads((folder / "config.json").read_text())):
        weights = _weights_file(folder)
        model, tokenizer = load_bert_folder(folder, weights, _read_weights(weights))
        info = {"source": str(spec), "kind": kind, "folder": str(folder)}
        return model.to(device).eval(), tokenizer, info
    model = load_hf_folder(folder)
    has_tokenizer = (folder / "vocab.json").is_file() or (folder / "tokenizer.json").is_file()
    tokenizer = GPT2Tokenizer.from_pretrained(str(folder) if has_tokenizer else "gpt2")
    return (
        model.to(device).eval(),
        tokenizer,
        {"source": str(spec), "kind": kind, "folder": str(folder)},
    )


def _looks_like_repo_id(spec: str) -> bool:
    """True for a hub repo id: owner/name, not a path (no leading . / ~, one slash, and no local
    folder called owner, so a mistyped "runs/typo" reports a missing folder, not a missing repo)."""
    owner, _, name = spec.partition("/")
    return (
        bool(owner and name)
        and "/" not in name
        and spec[0] not in "./~"
        and not Path(owner).is_dir()
    )


# -- exporting ----------------------------------------------------------------------------


def export_hf(model, tokenizer, out: str | Path) -> Path:
    """Write a folder that transformers' GPT2LMHeadModel, or GPT2ForSequenceClassification for
    a classifier (and GPT2TokenizerFast, for a GPT-2 tokenizer), load with `from_pretrained`."""
    from safetensors.torch import save_file

    from gptlab.atomic import atomic_path
    from gptlab.training.checkpoint import unique_state_dict, write_json

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    if is_classifier(model):
        hf_config = classifier_config_to_hf(model.config, model.head)
        hf_state = classifier_state_to_hf(unique_state_dict(model))
    else:
        hf_config = config_to_hf(model.config)
        hf_state = state_dict_to_hf(unique_state_dict(model))
    if tokenizer.eos_id is None:
        hf_config.update(bos_token_id=None, eos_token_id=None)
    write_json(out / "config.json", hf_config)
    state = {name: t.detach().cpu().contiguous() for name, t in hf_state.items()}
    with atomic_path(out / "model.safetensors") as tmp:
        save_file(state, str(tmp), metadata={"format": "pt"})
    tokenizer.save(out)
    return out


def transformers_model_like(config: GPTConfig):
    """An untrained transformers GPT2LMHeadModel of the same shape: the peer of benchmarks.

    GPT-2 always has biases, so a bias-free config gets a peer with them (a little more work)."""
    import dataclasses

    from transformers import GPT2Config, GPT2LMHeadModel

    values = config_to_hf(dataclasses.replace(config, bias=True))
    values.update(bos_token_id=0, eos_token_id=0)  # small vocabularies have no id 50256
    return GPT2LMHeadModel(GPT2Config(**values))

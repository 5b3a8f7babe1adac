"""The models the demo offers: found on disk, loaded on first use, kept while they are in use.

A model is named by a *spec*, the text of the page's model picker: a run directory, a GPT-2
name such as `gpt2`, or a Hugging Face folder. `load_model_spec` is the one place that turns a
spec into a model (a language model, an instruction run, or a classifier); `ModelStore` keeps the few most recently
used, loading each at most once however many requests ask for it at the same time.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

from gptlab.errors import ConfigError
from gptlab.training.checkpoint import CONFIG_FILE, MODEL_FILE, TOKENIZER_DIR

SEARCH_DEPTH = 2  # runs/<name> and runs/<group>/<name>
CLASSES_SHOWN = 8  # a classifier's description names this many classes, then counts the rest


@dataclass(frozen=True)
class LoadedModel:
    spec: str
    model: object  # a gptlab GPT or GPTClassifier, in eval mode
    tokenizer: object
    description: str  # one line for the page: size, shape, tokenizer
    info: dict  # load_model's: where it came from, its task, a run's config


def load_model_spec(spec: str, device) -> tuple[object, object, dict]:
    """(model in eval mode, tokenizer, info) named by `spec`: the one place the demo loads a
    model."""
    from gptlab.pretrained import load_model

    model, tokenizer, info = load_model(spec, device)
    return model.eval(), tokenizer, info


def describe(spec: str, model, tokenizer, info: dict) -> str:
    """One line about a loaded model: `runs/x · 0.8M parameters · 4 layers · context 64 · ...`,
    and what task it does when it is not a plain language model (a classifier's classes)."""
    from gptlab.pretrained import is_classifier
    from gptlab.quantization import stored_numbers
    from gptlab.tasks.instruction import is_instruction_run

    c = model.config  # a classifier's is its body's
    task = ""
    if is_instruction_run(info):
        task = "instruction run · "
    elif is_classifier(model):
        labels = model.head.labels
        shown = ", ".join(labels[:CLASSES_SHOWN])
        more = f" and {len(labels) - CLASSES_SHOWN} more" if len(labels) > CLASSES_SHOWN else ""
        task = f"classifier: {shown}{more} · "
    config = info.get("config", {})
    if "adapter" in config:
        from gptlab.adapters import adapter_config

        task += f"{adapter_config(config['adapter']).describe()} on {config['base']['source']} · "
    if "quantization" in config:
        task += f"quantized {config['quantization']['method']} · "
    return (
        f"**{spec}** · {task}{stored_numbers(model) / 1e6:.2f}M parameters · "
        f"{c.n_layer} layers · context {c.context_length} tokens · {tokenizer.kind} tokenizer "
        f"({tokenizer.vocab_size:,} tokens) · {next(model.parameters()).device}"
    )


def is_model_folder(path: Path) -> bool:
    """Whether `path` holds a model: a gptlab run directory, or a Hugging Face GPT-2 folder."""
    from gptlab.pretrained import HF_WEIGHT_FILES, is_hf_folder

    if not (path / CONFIG_FILE).is_file():
        return False
    if is_hf_folder(path):
        return any((path / name).is_file() for name in HF_WEIGHT_FILES)
    return (path / MODEL_FILE).is_file() and (path / TOKENIZER_DIR).is_dir()


def find_models(models_dir: str | Path) -> list[str]:
    """The model folders under `models_dir` (itself included), as paths in sorted order."""
    root = Path(models_dir)
    if not root.is_dir():
        return []
    found = []
    level = [root]
    for _ in range(SEARCH_DEPTH + 1):
        found += [path for path in level if is_model_folder(path)]
        level = sorted(child for path in level for child in path.iterdir() if child.is_dir())
    return sorted(str(path) for path in found)


def model_choices(models_dir: str | Path, default: str | None) -> list[str]:
    """What the picker offers: the command line's model, the folders found under `models_dir`,
    and the GPT-2 names (downloaded from the Hugging Face hub on first use)."""
    from gptlab.pretrained import HUB_NAMES

    choices = [default] if default else []
    choices += find_models(models_dir) + list(HUB_NAMES)
    return list(dict.fromkeys(choices))  # in order, without repeats


class ModelStore:
    """Loaded models by spec, at most `capacity` of them (the least recently used goes first).

    Thread-safe: the server answers several requests at once, and two that ask for a model
    not yet loaded wait for one load rather than loading it twice.
    """

    def __init__(self, device, capacity: int = 2, loader=load_model_spec):
        self.device = device
        self.capacity = capacity
        self.loader = loader
        self._models: OrderedDict[str, LoadedModel] = OrderedDict()
        self._lock = threading.Lock()  # guards _models and _loading
        self._loading: dict[str, threading.Lock] = {}

    def get(self, spec) -> LoadedModel:
        """The model named by `spec`, loaded now if it is not loaded yet."""
        if not isinstance(spec, str) or not spec.strip():
            raise ConfigError("choose a model: a run directory, or a name such as gpt2")
        spec = spec.strip()
        with self._lock:
            if spec in self._models:
                self._models.move_to_end(spec)
                return self._models[spec]
            spec_lock = self._loading.setdefault(spec, threading.Lock())
        with spec_lock:
            with self._lock:  # another request may have loaded it while this one waited
                if spec in self._models:
                    return self._models[spec]
            try:
                model, tokenizer, info = self.loader(spec, self.device)
                loaded = LoadedModel(
                    spec, model, tokenizer, describe(spec, model, tokenizer, info), info
                )
                with self._lock:
                    self._models[spec] = loaded
                    while len(self._models) > self.capacity:
                        self._models.popitem(last=False)
                return loaded
            finally:
                with self._lock:
                    self._loading.pop(spec, None)

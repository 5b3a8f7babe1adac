"""gptlab: a GPT-2 toolkit written from scratch in PyTorch.

    from gptlab import GPT, GPTConfig, get_tokenizer

`import gptlab` stays light: the names above are looked up lazily (PEP 562), so torch and
friends are imported only when the first of them is used, and the command line starts fast.
"""

from __future__ import annotations

import importlib

__version__ = "0.1.0"

# Public name -> the module that defines it, imported on first access.
_LAZY_NAMES = {
    "GPT": "gptlab.models.gpt",
    "GPTConfig": "gptlab.config",
    "PRESETS": "gptlab.config",
    "GPTClassifier": "gptlab.models.classifier",
    "ClassifierConfig": "gptlab.config",
    "TrainConfig": "gptlab.training.config",
    "Trainer": "gptlab.training.trainer",
    "load_model": "gptlab.pretrained",
    "get_tokenizer": "gptlab.tokenizers",
    "load_tokenizer": "gptlab.tokenizers",
    "GPT2Tokenizer": "gptlab.tokenizers",
    "CharTokenizer": "gptlab.tokenizers",
    "generate": "gptlab.generation",
    "stream": "gptlab.generation",
    "GptlabError": "gptlab.errors",
}

__all__ = list(_LAZY_NAMES)


def __getattr__(name: str):
    """Import the module that defines `name` and return it from there (PEP 562)."""
    if name not in _LAZY_NAMES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(_LAZY_NAMES[name]), name)
    globals()[name] = value  # later lookups find it without coming back here
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY_NAMES))

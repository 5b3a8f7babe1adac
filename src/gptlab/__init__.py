"""gptlab: a GPT-2 toolkit written from scratch in PyTorch.

    from gptlab import GPT, GPTConfig, get_tokenizer

`import gptlab` stays light: the names above are looked up lazily (PEP 562), so torch and
friends are imported only when the first of them is used, and the command line starts fast.
"""

from __future__ import annotations

from gptlab.lazy import lazy_names

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


__getattr__, __dir__ = lazy_names(__name__, _LAZY_NAMES)

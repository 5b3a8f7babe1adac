"""The settings of an adapter, as they are typed on the command line and saved in config.json.

Torch-free, like `gptlab.config`: a run's config can be read and checked without building it.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from gptlab.errors import ConfigError

# The attention and MLP projections of every block: the default targets.
DEFAULT_TARGETS = ("c_attn", "c_proj", "c_fc")
# The per-projection form of the fused `c_attn`: one low-rank update each for the query, key and
# value outputs (the three thirds of c_attn's output), as models with separate projections have.
QKV = ("q", "k", "v")
PROMPT_INITS = ("random", "text")


@dataclass
class LoRAConfig:
    """LoRA over the Linear layers named by `targets` (see `gptlab.adapters.lora`)."""

    r: int = 16  # the rank of each update
    alpha: float = 16.0  # the update is scaled by alpha / r, so a change of r keeps its size
    dropout: float = 0.05  # on the update's input only; the frozen path sees the input as is
    targets: tuple[str, ...] = DEFAULT_TARGETS  # module names, name suffixes, globs, or q/k/v

    def __post_init__(self):
        self.targets = tuple(self.targets)
        if isinstance(self.r, bool) or not isinstance(self.r, int) or self.r < 1:
            raise ConfigError(f"the LoRA rank r must be a whole number of 1 or more, got {self.r}")
        if not self.alpha > 0:
            raise ConfigError(f"LoRA alpha must be positive, got {self.alpha}")
        if not 0 <= self.dropout < 1:
            raise ConfigError(f"LoRA dropout must be in [0, 1), got {self.dropout}")
        if not self.targets or not all(self.targets):
            raise ConfigError("name at least one LoRA target (e.g. targets=c_attn,c_fc)")

    @property
    def scale(self) -> float:
        return self.alpha / self.r

    def to_dict(self) -> dict:
        return {"type": "lora", **dataclasses.asdict(self), "targets": list(self.targets)}

    def describe(self) -> str:
        return (
            f"LoRA r={self.r}, alpha={self.alpha:g}, dropout={self.dropout:g} on "
            f"{','.join(self.targets)}"
        )

    @classmethod
    def parse(cls, text: str) -> LoRAConfig:
        """`r=16,alpha=16,dropout=0.05,targets=c_attn,c_fc`: every key optional; the names after
        `targets=` run to the next `key=`. An empty text is the defaults."""
        values: dict = {}
        key = None
        for part in (piece.strip() for piece in str(text).split(",")):
            if not part:
                continue
            if "=" in part:
                key, _, value = part.partition("=")
                key = key.strip()
                if key not in ("r", "alpha", "dropout", "targets"):
                    raise ConfigError(
                        f"unknown LoRA setting {key!r} in {text!r}: use r, alpha, dropout, targets"
                    )
                if key == "targets":
                    values["targets"] = [value.strip()] if value.strip() else []
                else:
                    values[key] = _number(key, value, int if key == "r" else float)
            elif key == "targets":
                values["targets"].append(part)
            else:
                raise ConfigError(
                    f"cannot read {part!r} in --lora {text!r}: write key=value, e.g. r=8,alpha=16"
                )
        return cls(**values)


@dataclass
class PromptTuningConfig:
    """N trained virtual-token embeddings before every input (see `gptlab.adapters.prompt`)."""

    num_tokens: int = 20
    init: str = "random"  # "random", or "text": the embeddings of `init_text`'s tokens
    init_text: str | None = None

    def __post_init__(self):
        if (
            isinstance(self.num_tokens, bool)
            or not isinstance(self.num_tokens, int)
            or self.num_tokens < 1
        ):
            raise ConfigError(
                f"prompt tuning needs 1 or more virtual tokens, got {self.num_tokens}"
            )
        if self.init not in PROMPT_INITS:
            raise ConfigError(
                f"prompt init must be one of {', '.join(PROMPT_INITS)}, got {self.init!r}"
            )
        if self.init == "text" and not self.init_text:
            raise ConfigError("prompt init 'text' needs the text (--prompt-init-text)")

    def to_dict(self) -> dict:
        return {"type": "prompt", **dataclasses.asdict(self)}

    def describe(self) -> str:
        return f"prompt tuning, {self.num_tokens} virtual tokens ({self.init} init)"


def adapter_config(values: dict) -> LoRAConfig | PromptTuningConfig:
    """The adapter config of a run's `adapter` section."""
    values = dict(values)
    kind = values.pop("type", None)
    classes = {"lora": LoRAConfig, "prompt": PromptTuningConfig}
    if kind not in classes:
        raise ConfigError(f"unknown adapter type {kind!r} (known: {', '.join(classes)})")
    cls = classes[kind]
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ConfigError(f"unknown {kind} adapter setting(s): {', '.join(unknown)}")
    return cls(**values)


def _number(key: str, text: str, kind: type):
    try:
        return kind(text)
    except ValueError:
        raise ConfigError(
            f"LoRA {key} must be a {'whole ' if kind is int else ''}number, got {text!r}"
        ) from None

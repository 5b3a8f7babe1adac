"""`GPTConfig`, the shape of a GPT, and the named presets; `ClassifierConfig`, the head a
classifier puts on one.

A config is a small typed dataclass; presets are data. Training, generation and fine-tuning bring
their own configs rather than adding fields here. Nothing here imports torch, so the command
line can offer these choices at once.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from gptlab.errors import ConfigError

POSITION_KINDS = ("learned", "sinusoidal")
GELU_FORMS = ("none", "tanh")  # F.gelu's `approximate`: "none" is the exact erf form
IGNORE_INDEX = -100  # targets with this value add nothing to the loss (as in F.cross_entropy)


class Shape:
    """What the model configs share: a dict form, read back strictly (a key the class does not
    know is an error: a typo in a config file must not pass silently), and the head size."""

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict):
        """Build a config from a dict, rejecting keys it does not know."""
        known = {field.name for field in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ConfigError(
                f"unknown {cls.__name__} field(s): {', '.join(unknown)}; "
                f"known: {', '.join(sorted(known))}"
            )
        return cls(**values)

    @property
    def head_size(self) -> int:
        return self.n_embd // self.n_head

    def check_shape(self, sizes: tuple[str, ...]) -> None:
        """The checks every shape needs: `sizes` positive, heads dividing the width, a dropout
        rate in [0, 1)."""
        for name in sizes:
            if int(getattr(self, name)) <= 0:
                raise ConfigError(f"{name} must be a positive integer, got {getattr(self, name)}")
        if self.n_embd % self.n_head:
            raise ConfigError(f"n_embd ({self.n_embd}) must be divisible by n_head ({self.n_head})")
        if not 0.0 <= self.dropout < 1.0:
            raise ConfigError(f"dropout must be in [0, 1), got {self.dropout}")


@dataclass
class GPTConfig(Shape):
    """The shape of a GPT-2-style decoder-only transformer."""

    vocab_size: int = 50257
    context_length: int = 1024  # the most tokens the model sees at once (GPT-2's n_positions)
    n_layer: int = 12
    n_head: int = 12
    n_embd: int = 768
    dropout: float = 0.0  # one rate for embeddings, attention weights and residual branches
    bias: bool = True  # GPT-2 has biases in every Linear and LayerNorm
    positions: str = "learned"  # "learned" (GPT-2's wpe) or "sinusoidal" (Vaswani et al. 2017, 3.5)
    layer_norm_eps: float = 1e-5
    # GPT-2's tanh approximation of GELU, or "none", the exact erf form (nanoGPT's). On the CPU
    # the exact one is the cheaper kernel: 2.7 ms against 6.5 ms forward and backward for the
    # CPU preset's (12, 64, 512) activations, one thread, torch 2.15 (its tanh path is slow).
    gelu: str = field(default="tanh", metadata={"choices": GELU_FORMS})

    def __post_init__(self):
        self.check_shape(("vocab_size", "context_length", "n_layer", "n_head", "n_embd"))
        if self.positions not in POSITION_KINDS:
            raise ConfigError(
                f"positions must be one of {', '.join(POSITION_KINDS)}, got {self.positions!r}"
            )
        if self.gelu not in GELU_FORMS:
            raise ConfigError(f"gelu must be one of {', '.join(GELU_FORMS)}, got {self.gelu!r}")

    @classmethod
    def from_preset(cls, name: str, **overrides) -> GPTConfig:
        """A named preset, with some fields replaced: `GPTConfig.from_preset("gpt2", dropout=0.1)`."""
        if name not in PRESETS:
            raise ConfigError(f"unknown preset {name!r}; choose one of: {', '.join(PRESETS)}")
        return cls.from_dict({**PRESETS[name], **overrides})


# The four GPT-2 sizes are the shapes of OpenAI's released checkpoints (Radford et al. 2019,
# table 2). `gpt2-mini` is gptlab's local base, the stand-in for `gpt2` where OpenAI's weights
# cannot be downloaded (docs/local-base.md): GPT-2's vocabulary, biases and learned positions, so
# it exports to the Hugging Face GPT-2 format, at the Shakespeare GPU preset's 6 x 384 shape.
# The Shakespeare presets follow nanoGPT's character-level baselines. Measured choices
# (benchmarks/train_shakespeare.py): the GPU preset drops biases, which trained 9% faster on an
# H100 to the same best validation loss (1.467-1.470 over three seeds, against 1.472 with them);
# the small CPU preset keeps them, which reached 1.871 in 2000 steps against 1.888 without. The
# CPU preset takes the exact GELU, as nanoGPT does, because its CPU kernel is the faster one.
PRESETS: dict[str, dict] = {
    "gpt2": dict(n_layer=12, n_head=12, n_embd=768),  # 124M
    "gpt2-medium": dict(n_layer=24, n_head=16, n_embd=1024),  # 350M
    "gpt2-large": dict(n_layer=36, n_head=20, n_embd=1280),  # 774M
    "gpt2-xl": dict(n_layer=48, n_head=25, n_embd=1600),  # 1558M
    "gpt2-mini": dict(
        n_layer=6,
        n_head=6,
        n_embd=384,
        context_length=256,
        dropout=0.1,
        vocab_size=50257,
        bias=True,
        positions="learned",
    ),  # 30.0M, 19.3M of them the token embedding
    "shakespeare-char": dict(
        n_layer=6, n_head=6, n_embd=384, context_length=256, dropout=0.2, vocab_size=65, bias=False
    ),
    "shakespeare-char-cpu": dict(
        n_layer=4,
        n_head=4,
        n_embd=128,
        context_length=64,
        dropout=0.0,
        vocab_size=65,
        gelu="none",
    ),
    "tiny": dict(n_layer=2, n_head=2, n_embd=32, context_length=32, vocab_size=64),
}


POOLINGS = ("last", "mean", "first")  # "first": encoders only (a GPT's first token sees itself)
PADDING_SIDES = ("right", "left")


@dataclass
class ClassifierConfig:
    """The head of a classifier: its classes and how it reads the body's hidden states."""

    labels: list[str]  # class names; a class's id is its index here
    pooling: str = "last"  # "last": the last real token; "mean": the average of the real tokens;
    # "first": the first token (an encoder's)
    padding_side: str = "right"  # where batches are padded (see GPTClassifier.forward)
    pad_id: int = 0  # the id that fills padding positions (never read: masks come from lengths)
    pooler: bool = False  # BERT's pooler, dense + tanh on the first token's state before the
    # head: an encoder's default, and what BertForSequenceClassification always applies
    num_classes: int = field(init=False)

    def __post_init__(self):
        self.labels = [str(label) for label in self.labels]
        if len(self.labels) < 2:
            raise ConfigError(f"a classifier needs at least two classes, got {self.labels}")
        if len(set(self.labels)) != len(self.labels):
            raise ConfigError(f"class names must be distinct, got {self.labels}")
        if self.pooling not in POOLINGS:
            raise ConfigError(f"pooling must be one of {', '.join(POOLINGS)}, got {self.pooling!r}")
        if self.pooler and self.pooling != "first":
            raise ConfigError(
                f"BERT's pooler reads the first token: it goes with pooling 'first', not {self.pooling!r}"
            )
        if self.padding_side not in PADDING_SIDES:
            raise ConfigError(
                f"padding_side must be one of {', '.join(PADDING_SIDES)}, got {self.padding_side!r}"
            )
        self.num_classes = len(self.labels)

    def to_dict(self) -> dict:
        values = dataclasses.asdict(self)
        values.pop("num_classes")  # derived
        return values

    @classmethod
    def from_dict(cls, values: dict) -> ClassifierConfig:
        known = {f.name for f in dataclasses.fields(cls) if f.init}
        unknown = sorted(set(values) - known - {"num_classes"})
        if unknown:
            raise ConfigError(f"unknown ClassifierConfig field(s): {', '.join(unknown)}")
        return cls(**{key: value for key, value in values.items() if key in known})


@dataclass
class EncoderConfig(Shape):
    """The shape of a BERT-style encoder for masked-language modelling (`models.encoder`).

    Its own config, not more GPTConfig fields: BERT's choices that GPT lacks (token types, the
    mask token) live here. `from_gpt` takes the shared fields of a GPT shape, so the GPT presets
    serve for encoders of equal size."""

    vocab_size: int = 30522
    context_length: int = 512  # BERT's max_position_embeddings
    n_layer: int = 12
    n_head: int = 12
    n_embd: int = 768
    dropout: float = 0.1
    bias: bool = True
    layer_norm_eps: float = 1e-12  # BERT's; post-LN norms sit on the residual path itself
    type_vocab_size: int = 2  # segment A / B embeddings (BERT's next-sentence inputs)
    gelu: str = "none"  # BERT's exact GELU; "tanh" for GPT-2's approximation
    mask_id: int = 0  # the [MASK] token's id in the run's tokenizer

    def __post_init__(self):
        self.check_shape(("vocab_size", "context_length", "n_layer", "n_head", "n_embd"))
        if self.gelu not in GELU_FORMS:
            raise ConfigError(f"gelu must be one of {', '.join(GELU_FORMS)}, got {self.gelu!r}")
        if not 0 <= self.mask_id < self.vocab_size:
            raise ConfigError(
                f"mask_id {self.mask_id} is outside the vocabulary of {self.vocab_size}"
            )

    @classmethod
    def from_gpt(cls, gpt: GPTConfig, **overrides) -> EncoderConfig:
        """An encoder of a GPT's shape (layers, heads, width, context, dropout, biases, eps)."""
        if gpt.positions != "learned":
            raise ConfigError(
                "the encoder learns its positions, as BERT: positions must be 'learned'"
            )
        shared = ("vocab_size", "context_length", "n_layer", "n_head", "n_embd", "dropout", "bias")
        values = {name: getattr(gpt, name) for name in shared}
        return cls(**{**values, "layer_norm_eps": gpt.layer_norm_eps, **overrides})

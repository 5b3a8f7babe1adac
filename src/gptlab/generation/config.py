"""`GenerationConfig`: how to pick the new tokens, and when to stop."""

from __future__ import annotations

from dataclasses import dataclass

from gptlab.errors import ConfigError

STRATEGIES = ("greedy", "sample", "beam")
OVERFLOW_POLICIES = ("stop", "slide")


@dataclass
class GenerationConfig:
    """Decoding settings; every value is checked when the config is built.

    strategy: "greedy" takes the most likely token, "sample" draws it from the distribution
    reshaped by temperature, top_k, top_p and min_p (temperature 0 is greedy), "beam" keeps the
    `num_beams` most likely continuations (num_beams 1 is greedy). repetition_penalty and
    no_repeat_ngram_size apply to every strategy.
    Stopping: after `max_new_tokens`, at `eos_id` (when `stop_at_eos`; the EOS token itself is
    not returned), or when one of the `stop` strings appears (needs a tokenizer).
    overflow: what happens when prompt and new tokens outgrow the model's context. "stop" ends
    generation with a warning (a prompt that alone fills the context raises ContextLengthError);
    "slide" drops the oldest quarter of the window and prefills again, as often as needed.
    """

    max_new_tokens: int = 256
    strategy: str = "sample"
    temperature: float = 1.0
    top_k: int | None = None
    top_p: float | None = None
    min_p: float | None = None
    repetition_penalty: float = 1.0
    no_repeat_ngram_size: int = 0
    num_beams: int = 4
    length_penalty: float = 1.0
    early_stopping: bool = False
    stop: tuple[str, ...] = ()
    eos_id: int | None = None
    stop_at_eos: bool = True
    seed: int | None = None
    overflow: str = "stop"

    def __post_init__(self):
        # A single string would otherwise be read as a tuple of one-character stop strings.
        self.stop = (self.stop,) if isinstance(self.stop, str) else tuple(self.stop)
        if self.strategy not in STRATEGIES:
            raise ConfigError(
                f"strategy must be one of {', '.join(STRATEGIES)}, got {self.strategy!r}"
            )
        if self.overflow not in OVERFLOW_POLICIES:
            raise ConfigError(
                f"overflow must be one of {', '.join(OVERFLOW_POLICIES)}, got {self.overflow!r}"
            )
        if self.max_new_tokens < 1:
            raise ConfigError(f"max_new_tokens must be at least 1, got {self.max_new_tokens}")
        if self.temperature < 0:
            raise ConfigError(f"temperature must be >= 0 (0 means greedy), got {self.temperature}")
        if self.top_k is not None and self.top_k < 1:
            raise ConfigError(f"top_k must be at least 1 (or None for no limit), got {self.top_k}")
        if self.top_p is not None and not 0 < self.top_p <= 1:
            raise ConfigError(f"top_p must be in (0, 1], got {self.top_p}")
        if self.min_p is not None and not 0 <= self.min_p <= 1:
            raise ConfigError(f"min_p must be in [0, 1], got {self.min_p}")
        if self.repetition_penalty <= 0:
            raise ConfigError(
                f"repetition_penalty must be > 0 (1 is no penalty), got {self.repetition_penalty}"
            )
        if self.no_repeat_ngram_size < 0:
            raise ConfigError(
                f"no_repeat_ngram_size must be >= 0 (0 is off), got {self.no_repeat_ngram_size}"
            )
        if self.num_beams < 1:
            raise ConfigError(f"num_beams must be at least 1, got {self.num_beams}")
        if self.eos_id is not None and self.eos_id < 0:
            raise ConfigError(f"eos_id must be a token id (>= 0) or None, got {self.eos_id}")
        if any(not isinstance(s, str) or not s for s in self.stop):
            raise ConfigError(f"stop strings must be non-empty strings, got {self.stop!r}")

    @property
    def samples(self) -> bool:
        """Whether tokens are drawn at random (sampling at a temperature above 0)."""
        return self.strategy == "sample" and self.temperature > 0

    @property
    def uses_beams(self) -> bool:
        return self.strategy == "beam" and self.num_beams > 1

    @property
    def stop_id(self) -> int | None:
        """The token that ends a sequence, or None when nothing does."""
        return self.eos_id if self.stop_at_eos else None

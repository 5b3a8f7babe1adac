"""The demo's limits, and the page's control values turned into checked settings.

Every value the server receives, from the page or from an API client, passes through here. A
value the page would never send (text in a number field, a negative count, an oversized
prompt) raises a `ConfigError` whose message the page shows: one bad request must not take
the server down or tie it up for minutes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from gptlab.errors import ConfigError, GptlabError
from gptlab.generation import GenerationConfig

STRATEGY_CHOICES = [("sampling", "sample"), ("greedy", "greedy"), ("beam search", "beam")]

# A token decodes to a few characters; 16 per token leaves room for any tokenizer gptlab has.
CHARS_PER_TOKEN_BOUND = 16


@dataclass(frozen=True)
class DemoLimits:
    """What one request may ask of the server, and how many run at once."""

    max_prompt_chars: int = 2000
    max_new_tokens_cap: int = 512
    concurrency: int = 2  # model calls running at the same time; the rest wait in the queue
    queue_size: int = 64  # requests waiting beyond that are turned away with a message

    def __post_init__(self):
        for name in ("max_prompt_chars", "max_new_tokens_cap", "concurrency", "queue_size"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ConfigError(f"{name.replace('_', '-')} must be at least 1, got {value}")

    @property
    def max_text_chars(self) -> int:
        """The longest text (prompt and continuation) the explorer and the colour view accept."""
        return self.max_prompt_chars + CHARS_PER_TOKEN_BOUND * self.max_new_tokens_cap


def whole_number(value, name: str, minimum: int, maximum: int | None = None) -> int:
    """`value` as an int within [minimum, maximum]; anything else is a ConfigError naming `name`."""
    number = _number(value, name)
    if number != int(number):
        raise ConfigError(f"{name} must be a whole number, got {value!r}")
    number = int(number)
    if number < minimum or (maximum is not None and number > maximum):
        upper = "" if maximum is None else f" and at most {maximum}"
        raise ConfigError(f"{name} must be at least {minimum}{upper}, got {number}")
    return number


def real_number(value, name: str, minimum: float, maximum: float) -> float:
    """`value` as a float within [minimum, maximum]; anything else is a ConfigError naming `name`."""
    number = _number(value, name)
    if not minimum <= number <= maximum:
        raise ConfigError(f"{name} must be between {minimum} and {maximum}, got {number}")
    return number


def _number(value, name: str) -> float:
    if value is None or value == "":
        raise ConfigError(f"{name} is empty: give a number")
    if isinstance(value, bool):
        raise ConfigError(f"{name} must be a number, got {value!r}")
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{name} must be a number, got {value!r}") from None
    if not math.isfinite(number):
        raise ConfigError(f"{name} must be a finite number, got {value!r}")
    return number


def decoding_config(
    limits: DemoLimits,
    *,
    strategy,
    temperature,
    top_k,
    top_p,
    repetition_penalty,
    max_new_tokens,
    seed,
    num_beams=4,
) -> GenerationConfig:
    """The GenerationConfig of the page's controls.

    The controls' "off" values read as the config's: top-k 0 and top-p 1 filter nothing, an
    empty seed draws fresh randomness. The window slides past the model's context, so a
    small model keeps writing rather than stopping after its first few dozen tokens.
    """
    strategies = [value for _, value in STRATEGY_CHOICES]
    if strategy not in strategies:
        raise ConfigError(f"strategy must be one of {', '.join(strategies)}, got {strategy!r}")
    top_k = whole_number(top_k, "top-k", 0)
    top_p = real_number(top_p, "top-p", 0.0, 1.0)
    if top_p == 0:
        raise ConfigError("top-p must be above 0 (1 turns the filter off)")
    return GenerationConfig(
        max_new_tokens=whole_number(max_new_tokens, "max new tokens", 1, limits.max_new_tokens_cap),
        strategy=strategy,
        temperature=real_number(temperature, "temperature", 0.0, 100.0),
        top_k=top_k or None,
        top_p=None if top_p == 1 else top_p,
        repetition_penalty=real_number(repetition_penalty, "repetition penalty", 0.01, 100.0),
        num_beams=whole_number(num_beams, "beams", 1, 16),
        seed=None if seed is None or seed == "" else whole_number(seed, "seed", 0, 2**63 - 1),
        overflow="slide",
    )


def checked_text(text, name: str, max_chars: int) -> str:
    """`text` as a string of at most `max_chars` characters (None reads as empty)."""
    if text is None:
        return ""
    if not isinstance(text, str):
        raise ConfigError(f"{name} must be text, got {type(text).__name__}")
    if len(text) > max_chars:
        raise ConfigError(
            f"{name} has {len(text):,} characters; the limit is {max_chars:,} "
            "(raise it with --max-prompt-chars)"
        )
    return text


def checked_prompt(prompt, limits: DemoLimits, tokenizer) -> str:
    """The prompt to continue: within the length limit, and not empty unless the tokenizer has
    an end-of-text token to start from (as GPT-2 starts every document)."""
    prompt = checked_text(prompt, "the prompt", limits.max_prompt_chars)
    if not prompt and tokenizer.eos_id is None:
        raise ConfigError(
            "the prompt is empty: type a few characters for the model to continue "
            "(this model has no end-of-text token to start from)"
        )
    return prompt


def checked_text_to_classify(text, limits: DemoLimits) -> str:
    """The text to classify: within the prompt's length limit, and not empty."""
    text = checked_text(text, "the text", limits.max_prompt_chars)
    if not text.strip():
        raise ConfigError("the text is empty: type a text to classify")
    return text


def checked_instruction(instruction, input, limits: DemoLimits) -> tuple[str, str]:
    """The instruction (not empty) and its input (empty when there is none), each within the
    prompt's length limit."""
    instruction = checked_text(instruction, "the instruction", limits.max_prompt_chars)
    if not instruction.strip():
        raise ConfigError("the instruction is empty: type what the model should do")
    return instruction, checked_text(input, "the input", limits.max_prompt_chars)


def usable_prompts(tokenizer, prompts: list[str]) -> list[str]:
    """The prompts this tokenizer can encode (a character model knows only its corpus's)."""
    usable = []
    for prompt in prompts:
        try:
            tokenizer.encode(prompt)
        except GptlabError:
            continue
        usable.append(prompt)
    return usable

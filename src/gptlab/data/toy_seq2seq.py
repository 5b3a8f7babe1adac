"""Toy sequence-to-sequence tasks, generated on the fly from a seed.

    copy     3141592  -> 3141592
    reverse  3141592  -> 2951413
    sort     3141592  -> 1123459
    add      314+27   -> 341

Sequences are digits, 1 to `max_len` long (addition: two numbers of up to `digits` digits).
Each is a small, exact test of what an encoder-decoder can do: copy needs cross-attention to
look at the aligned source position, reverse at the mirrored one, sort at every position
(counting), addition at the digits of equal weight and a carry.

Held out: one source in ten (by a checksum of its text) never appears in training; validation
and test draw only from those, so exact match on them measures generalisation, not memory.
Every draw is a function of (seed, split, step, index), so a resumed run sees the same data.
"""

from __future__ import annotations

import random
import zlib
from dataclasses import dataclass

from gptlab.errors import ConfigError

TOY_TASKS = ("copy", "reverse", "sort", "add")
ALPHABET = "0123456789+"
HELD_OUT_EVERY = 10  # one source in ten is for evaluation only
SPLITS = ("train", "val", "test")


@dataclass(frozen=True)
class ToyTask:
    """Which task, and how long its sequences are."""

    name: str
    max_len: int = 20  # copy, reverse, sort: digits per sequence
    digits: int = 3  # add: digits per number

    def __post_init__(self):
        if self.name not in TOY_TASKS:
            raise ConfigError(f"unknown toy task {self.name!r}; choose {', '.join(TOY_TASKS)}")
        if self.max_len < 1 or self.digits < 1:
            raise ConfigError("toy sequences need max_len and digits of at least 1")

    @property
    def max_source_length(self) -> int:
        """Characters of the longest source."""
        return 2 * self.digits + 1 if self.name == "add" else self.max_len

    @property
    def max_target_length(self) -> int:
        return self.digits + 1 if self.name == "add" else self.max_len

    def pair(self, rng: random.Random) -> tuple[str, str]:
        """One (source, target) pair drawn with `rng`."""
        if self.name == "add":
            a, b = (rng.randrange(10**self.digits) for _ in range(2))
            return f"{a}+{b}", str(a + b)
        length = rng.randint(1, self.max_len)
        source = "".join(rng.choice("0123456789") for _ in range(length))
        if self.name == "copy":
            return source, source
        if self.name == "reverse":
            return source, source[::-1]
        return source, "".join(sorted(source))

    def pairs(self, split: str, count: int, seed: int, step: int = 0, index: int = 0):
        """`count` pairs of `split`: training sources are never held out, the others always are."""
        if split not in SPLITS:
            raise ConfigError(f"split must be one of {', '.join(SPLITS)}, got {split!r}")
        # One stream per (seed, split, step, index): string seeds hash stably across runs.
        rng = random.Random(f"{seed}/{split}/{step}/{index}")
        wanted = split != "train"
        drawn = []
        while len(drawn) < count:
            source, target = self.pair(rng)
            if is_held_out(source) == wanted:
                drawn.append((source, target))
        return drawn


def is_held_out(source: str) -> bool:
    """Whether a source is kept for evaluation (never trained on)."""
    return zlib.crc32(source.encode()) % HELD_OUT_EVERY == 0

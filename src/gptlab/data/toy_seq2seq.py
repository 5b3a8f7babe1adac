"""Toy sequence-to-sequence tasks, generated on the fly from a seed.

    copy     3141592  -> 3141592
    reverse  3141592  -> 2951413
    sort     3141592  -> 1123459
    add      314+027  -> 0341

Sequences are digits, 1 to `max_len` long. Addition adds two numbers of up to `digits` digits,
written with leading zeros to a fixed width (the sum one digit wider), so that digits of equal
weight sit at the same positions of every example and the model need not find each number's
length to line them up.
`canonical_source` writes "314+27" as "314+027", so a person may type either.
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
            return self._sum_source(a, b), str(a + b).zfill(self.digits + 1)
        length = rng.randint(1, self.max_len)
        source = "".join(rng.choice("0123456789") for _ in range(length))
        if self.name == "copy":
            return source, source
        if self.name == "reverse":
            return source, source[::-1]
        return source, "".join(sorted(source))

    def _sum_source(self, a: int, b: int) -> str:
        return f"{a:0{self.digits}d}+{b:0{self.digits}d}"

    def canonical_source(self, text: str) -> str:
        """`text` as the task writes its sources: without spaces, and for addition with each
        number zero-padded ("314+27" -> "314+027"); text of another shape is left as it is."""
        text = "".join(text.split())
        if self.name == "add":
            numbers = text.split("+")
            if len(numbers) == 2 and all(n.isdigit() and len(n) <= self.digits for n in numbers):
                return self._sum_source(*map(int, numbers))
        return text

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

"""Tokenizers for translation: one joint vocabulary for both languages, or one for each side.

A joint vocabulary (Vaswani et al. 2017, section 5.1: "a shared source-target vocabulary of about
37000 tokens") lets the model share its source and target embeddings and copy names and numbers
token for token; separate vocabularies spend every id on one language, so each side's words are
cut into fewer pieces at the same size. Both are trained on the training split only, so no
sentence of the validation or test split shapes the vocabulary.

In a run directory the tokenizers live in `tokenizer/` (`TOKENIZER_DIR`), as for every run:
a joint one is that folder itself, so `load_tokenizer(run / "tokenizer")` reads it like any other;
separate ones are `tokenizer/source/` and `tokenizer/target/`. Saving and loading a pair work
for any kind of tokenizer (the toy tasks' symbol tokenizers too); training makes `TrainedBPE`s.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from gptlab.errors import TokenizerError
from gptlab.tokenizers.base import CONFIG_FILE, Tokenizer
from gptlab.tokenizers.loading import load_tokenizer
from gptlab.tokenizers.trained import TrainedBPE

SOURCE_DIR, TARGET_DIR = "source", "target"


def train_parallel_tokenizers(
    pairs: Sequence[tuple[str, str]], vocab_size: int, joint: bool = True, min_frequency: int = 2
) -> tuple[TrainedBPE, TrainedBPE]:
    """(source tokenizer, target tokenizer) trained on `pairs` of (source, target) sentences.

    joint: one tokenizer of `vocab_size` ids on both sides' sentences, returned twice (the same
    object); otherwise one of `vocab_size` ids for each side.
    """
    if not pairs:
        raise TokenizerError("cannot train tokenizers on no sentence pairs")
    sources = (source for source, _ in pairs)
    targets = (target for _, target in pairs)
    if joint:
        both = TrainedBPE.train(
            (text for pair in pairs for text in pair), vocab_size, min_frequency
        )
        return both, both
    return (
        TrainedBPE.train(sources, vocab_size, min_frequency),
        TrainedBPE.train(targets, vocab_size, min_frequency),
    )


def save_parallel_tokenizers(directory: str | Path, source: TrainedBPE, target: TrainedBPE) -> None:
    """Write the pair into `directory` (a run's `tokenizer/`): once when it is one joint
    tokenizer, else into `source/` and `target/`."""
    directory = Path(directory)
    if source is target or source.fingerprint() == target.fingerprint():
        source.save(directory)
        return
    source.save(directory / SOURCE_DIR)
    target.save(directory / TARGET_DIR)


def load_parallel_tokenizers(directory: str | Path) -> tuple[Tokenizer, Tokenizer]:
    """The (source, target) tokenizers `save_parallel_tokenizers` wrote into `directory`, of
    whatever kind each `tokenizer_config.json` names; a joint one comes back as the same object
    twice."""
    directory = Path(directory)
    if (directory / CONFIG_FILE).is_file():
        joint = load_tokenizer(directory)
        return joint, joint
    if (directory / SOURCE_DIR).is_dir() or (directory / TARGET_DIR).is_dir():
        return load_tokenizer(directory / SOURCE_DIR), load_tokenizer(directory / TARGET_DIR)
    raise TokenizerError(
        f"{directory} holds no translation tokenizer: expected {CONFIG_FILE} (a joint vocabulary) "
        f"or the folders {SOURCE_DIR}/ and {TARGET_DIR}/ (separate ones)"
    )


def is_joint(source: Tokenizer, target: Tokenizer) -> bool:
    """Whether the two sides share one vocabulary (so they can share one embedding table)."""
    return source is target or source.fingerprint() == target.fingerprint()

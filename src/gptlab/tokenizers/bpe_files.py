"""GPT-2's vocabulary files: `vocab.json` and `merges.txt`, read and written for both BPE tokenizers.

These two files define a byte-level BPE completely, and both gptlab BPE tokenizers (the GPT-2 one
on the `tokenizers` library and the from-scratch one) use exactly this format, so either can read
what the other wrote, and Hugging Face `transformers` reads both:

- `vocab.json`: a JSON object from token to id. Tokens are written in GPT-2's byte-to-character
  alphabet (a space is `Ġ`, a newline `Ċ`), so every token is printable.
- `merges.txt`: a `#version: 0.2` header line, then one merge a line, `left right`, in rank order:
  the first line is the pair merged first. No token contains a space, so one space separates them.
"""

from __future__ import annotations

import json
from pathlib import Path

from gptlab.errors import TokenizerError
from gptlab.tokenizers.base import read_json, short_digest, write_text

VOCAB_FILE = "vocab.json"
MERGES_FILE = "merges.txt"
MERGES_HEADER = "#version: 0.2"
END_OF_TEXT = "<|endoftext|>"  # GPT-2's one special token, id 50256, which separates documents

Merge = tuple[str, str]


def read_vocab_and_merges(
    vocab_path: str | Path, merges_path: str | Path
) -> tuple[dict[str, int], list[Merge]]:
    """The vocabulary (token -> id) and the merges in rank order, checked to fit together."""
    vocab = read_json(vocab_path)
    if not isinstance(vocab, dict) or not all(isinstance(i, int) for i in vocab.values()):
        raise TokenizerError(
            f"{vocab_path} should hold a JSON object from token strings to integer ids"
        )
    merges = _read_merges(Path(merges_path))
    check_vocab_and_merges(vocab, merges, f"{vocab_path} and {merges_path}")
    return vocab, merges


def _read_merges(path: Path) -> list[Merge]:
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        raise TokenizerError(f"tokenizer file not found: {path}") from None
    except (OSError, UnicodeDecodeError) as error:
        raise TokenizerError(f"cannot read tokenizer file {path}: {error}") from None
    merges = []
    for number, line in enumerate(lines, start=1):
        if not line or (number == 1 and line.startswith("#version")):
            continue
        parts = line.split(" ")
        if len(parts) != 2 or not all(parts):
            raise TokenizerError(
                f"{path}, line {number}: expected two tokens separated by a space, got {line!r}"
            )
        merges.append((parts[0], parts[1]))
    return merges


def check_vocab_and_merges(vocab: dict[str, int], merges: list[Merge], source: str) -> None:
    """Raise TokenizerError unless the ids are 0..n-1 and every merge joins and makes known tokens."""
    if not vocab:
        raise TokenizerError(f"{source}: the vocabulary is empty")
    if sorted(vocab.values()) != list(range(len(vocab))):
        raise TokenizerError(f"{source}: token ids should be 0..{len(vocab) - 1}, each used once")
    for rank, (left, right) in enumerate(merges):
        if left not in vocab or right not in vocab or left + right not in vocab:
            raise TokenizerError(
                f"{source}: merge {rank} ({left} {right}) uses or makes a token missing from the vocabulary"
            )


def read_hf_tokenizer_json(path: str | Path) -> tuple[dict[str, int], list[Merge]]:
    """The vocabulary and merges of a Hugging Face `tokenizer.json` holding a BPE model."""
    content = read_json(path)
    model = content.get("model") if isinstance(content, dict) else None
    model = model if isinstance(model, dict) else {}
    vocab, merges = model.get("vocab"), model.get("merges")
    if model.get("type") != "BPE" or not isinstance(vocab, dict) or not isinstance(merges, list):
        raise TokenizerError(f"{path} does not hold a BPE model with a vocabulary and merges")
    # Older files write a merge as "left right", newer ones as ["left", "right"].
    merges = [
        tuple(merge.split(" ")) if isinstance(merge, str) else tuple(merge) for merge in merges
    ]
    check_vocab_and_merges(vocab, merges, str(path))
    return vocab, merges


def write_vocab_and_merges(directory: Path, vocab: dict[str, int], merges: list[Merge]) -> None:
    """Write `vocab.json` (in id order) and `merges.txt` (in rank order) into `directory`."""
    by_id = dict(sorted(vocab.items(), key=lambda item: item[1]))
    write_text(directory / VOCAB_FILE, json.dumps(by_id, ensure_ascii=False) + "\n")
    lines = [MERGES_HEADER] + [f"{left} {right}" for left, right in merges]
    write_text(directory / MERGES_FILE, "\n".join(lines) + "\n")


def bpe_fingerprint(vocab: dict[str, int], merges: list[Merge], special_tokens: list[str]) -> str:
    """The fingerprint of a byte-level BPE: equal for equal vocabularies, merges and special tokens.

    The merges are part of it because two tokenizers with one vocabulary but other merge ranks cut
    the same text into different ids.
    """
    tokens_by_id = [token for token, _ in sorted(vocab.items(), key=lambda item: item[1])]
    return short_digest(
        {"tokens": tokens_by_id, "merges": merges, "special_tokens": sorted(special_tokens)}
    )

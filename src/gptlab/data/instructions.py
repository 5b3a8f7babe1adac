"""Instruction data: reading it, the Alpaca prompt, the reference split, and masked batches.

- `load_instructions(spec, format)`: the `instruction-data` dataset by name, or a JSON list or
  JSONL file of {instruction, input, output} entries ("alpaca"), or of {messages: [...]}
  conversations ("chat", see `from_messages` for exactly what is read). Every problem an entry
  can have is one `DataError` that names the entry.
- `alpaca_prompt(entry)`: the prompt a model is trained and asked with (Taori et al. 2023,
  Stanford Alpaca), as the published reference writes it (Raschka 2024, chapter 7).
- `split_instructions(entries)`: the reference's split, which does not shuffle: the first 85%
  of the file train, the next 10% test, the rest (5%) validate: 935 / 110 / 55 of 1,100.
- `encode_instructions(...)`: prompt ids + response ids + end-of-text; the targets are the ids
  shifted by one, IGNORE_INDEX where they are prompt tokens (unless `train_on_prompt`).
- `InstructionBatches`: batches padded to their own longest example and bucketed by length,
  training batches drawn by `(step, index)` so a resumed or multi-process run sees exactly the
  batches of an uninterrupted one; `padding_report` measures what bucketing saves.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import torch

from gptlab.config import IGNORE_INDEX
from gptlab.data.epochs import EpochBatches
from gptlab.errors import DataError

INSTRUCTION_DATA = "instruction-data"  # the registered dataset (LLMs-from-scratch, chapter 7)
FORMATS = ("alpaca", "chat")
FIELDS = ("instruction", "input", "output")
SPLITS = ("train", "val", "test")
# The reference's fractions, in the order its slices are cut from the file: train, test, val.
REFERENCE_FRACTIONS = {"train": 0.85, "test": 0.1}

PREAMBLE = (
    "Below is an instruction that describes a task. "
    "Write a response that appropriately completes the request."
)
RESPONSE_HEADER = "\n\n### Response:\n"
# How many batches of examples are sorted by length together (a bucket): more saves more
# padding, fewer keeps batches closer to a random draw.
BUCKET_BATCHES = 16


@dataclass(frozen=True)
class Instruction:
    instruction: str
    input: str
    output: str


# -- the prompt ---------------------------------------------------------------------------


def alpaca_prompt(entry: Instruction) -> str:
    """The Alpaca prompt: preamble, instruction, the input when there is one, the response header."""
    text = f"{PREAMBLE}\n\n### Instruction:\n{entry.instruction}"
    if entry.input:
        text += f"\n\n### Input:\n{entry.input}"
    return text + RESPONSE_HEADER


# -- reading ------------------------------------------------------------------------------


def load_instructions(spec: str | Path, format: str = "alpaca") -> list[Instruction]:
    """`instruction-data`, or a .json (a list) or .jsonl (an object a line) file of entries."""
    if format not in FORMATS:
        raise DataError(f"unknown instruction format {format!r} (known: {', '.join(FORMATS)})")
    if str(spec) == INSTRUCTION_DATA and not Path(spec).exists():
        from gptlab.data.sources import resolve

        path = resolve(INSTRUCTION_DATA, "instruction-data.json")
    else:
        path = Path(spec).expanduser()
        if not path.is_file():
            raise DataError(
                f"{spec} is neither an instruction file (.json, .jsonl) nor a dataset ({INSTRUCTION_DATA})"
            )
    rows = _read_entries(path)
    if not rows:
        raise DataError(f"{path} has no entries")
    read = from_messages if format == "chat" else from_fields
    return [read(row, f"{path}, entry {number}") for number, row in enumerate(rows, 1)]


def _read_entries(path: Path) -> list:
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as error:
        raise DataError(f"cannot read {path}: {error}") from None
    if path.suffix.lower() == ".jsonl":
        rows = []
        for number, line in enumerate(text.splitlines(), 1):
            if line.strip():
                try:
                    rows.append(json.loads(line))
                except json.JSONDecodeError as error:
                    raise DataError(f"{path}, line {number}: not JSON ({error.msg})") from None
        return rows
    if not text.strip():
        return []
    try:
        rows = json.loads(text)
    except json.JSONDecodeError as error:
        raise DataError(f"{path}: not JSON ({error.msg}, line {error.lineno})") from None
    if not isinstance(rows, list):
        raise DataError(f"{path}: expected a JSON list of entries (or use a .jsonl file)")
    return rows


def from_fields(row, where: str) -> Instruction:
    """An Alpaca entry: "instruction" and "output" non-empty strings, "input" a string or absent."""
    if not isinstance(row, dict):
        raise DataError(f"{where}: expected a JSON object")
    missing = [name for name in ("instruction", "output") if name not in row]
    if missing:
        raise DataError(f"{where}: missing {', '.join(map(repr, missing))} (it needs {FIELDS})")
    values = {name: row.get(name, "") for name in FIELDS}
    if not all(isinstance(value, str) for value in values.values()):
        raise DataError(f"{where}: instruction, input and output must be strings")
    if not values["instruction"].strip() or not values["output"].strip():
        raise DataError(f"{where}: the instruction and the output must not be empty")
    return Instruction(**values)


def from_messages(row, where: str) -> Instruction:
    """A single-turn chat: {"messages": [system?, user, assistant]}, each {role, content}.

    The assistant turn (the last message) is the output. With a system message, it is the
    instruction and the user turn the input; without, the user turn is the instruction.
    Conversations of several turns are refused: the Alpaca prompt has one exchange.
    """
    messages = row.get("messages") if isinstance(row, dict) else None
    if not isinstance(messages, list) or not all(
        isinstance(m, dict) and isinstance(m.get("role"), str) and isinstance(m.get("content"), str)
        for m in messages
    ):
        raise DataError(f'{where}: expected {{"messages": [{{"role": ..., "content": ...}}, ...]}}')
    roles = [m["role"] for m in messages]
    if roles not in (["user", "assistant"], ["system", "user", "assistant"]):
        raise DataError(
            f"{where}: roles {roles}; only one exchange is read: [system,] user, assistant"
        )
    contents = [m["content"] for m in messages]
    if len(contents) == 3:
        fields = {"instruction": contents[0], "input": contents[1], "output": contents[2]}
    else:
        fields = {"instruction": contents[0], "input": "", "output": contents[1]}
    return from_fields(fields, where)


# -- splitting ----------------------------------------------------------------------------


def split_instructions(entries: list) -> dict[str, list]:
    """The reference's split, in file order, without shuffling: train the first int(0.85 n),
    test the next int(0.1 n), validation the rest (935 / 110 / 55 of the 1,100 entries)."""
    train_end = int(len(entries) * REFERENCE_FRACTIONS["train"])
    test_end = train_end + int(len(entries) * REFERENCE_FRACTIONS["test"])
    return {
        "train": entries[:train_end],
        "val": entries[test_end:],
        "test": entries[train_end:test_end],
    }


# -- encoding -----------------------------------------------------------------------------


@dataclass
class EncodedInstructions:
    """Model inputs and shifted targets (IGNORE_INDEX where nothing is learned) of a split."""

    inputs: list[list[int]]
    targets: list[list[int]]
    truncated: int  # examples cut to the context
    dropped: int  # examples whose prompt alone fills the context: nothing left to learn

    def __len__(self) -> int:
        return len(self.inputs)

    @property
    def lengths(self) -> list[int]:
        return [len(row) for row in self.inputs]


def encode_instruction(entry: Instruction, tokenizer) -> tuple[list[int], int]:
    """The ids of prompt + response + end-of-text, and how many of them are the prompt's."""
    if tokenizer.eos_id is None:
        raise DataError("instruction tuning needs a tokenizer with an end-of-text token")
    prompt = tokenizer.encode(alpaca_prompt(entry))
    return prompt + tokenizer.encode(entry.output) + [tokenizer.eos_id], len(prompt)


def encode_instructions(
    entries: list[Instruction], tokenizer, context_length: int, train_on_prompt: bool = False
) -> EncodedInstructions:
    """Inputs ids[:-1] and targets ids[1:] of each entry, at most `context_length` of each.

    The target at position t is the token at t + 1: it is IGNORE_INDEX when that token belongs
    to the prompt (unless `train_on_prompt`), so only the response and its end-of-text are
    learned. Too long an example keeps its first context_length + 1 ids (its end is lost, and
    counted); one whose prompt fills the context has no target left and is dropped (counted).
    """
    inputs, targets, truncated, dropped = [], [], 0, 0
    for entry in entries:
        ids, prompt_length = encode_instruction(entry, tokenizer)
        if len(ids) > context_length + 1:
            truncated += 1
            ids = ids[: context_length + 1]
        shifted = list(ids[1:])
        if not train_on_prompt:
            masked = min(prompt_length - 1, len(shifted))
            shifted[:masked] = [IGNORE_INDEX] * masked
        if all(target == IGNORE_INDEX for target in shifted):
            dropped += 1
            continue
        inputs.append(ids[:-1])
        targets.append(shifted)
    return EncodedInstructions(inputs, targets, truncated, dropped)


def pad_instructions(
    inputs: list[list[int]], targets: list[list[int]], pad_id: int, device="cpu"
) -> tuple[torch.Tensor, torch.Tensor]:
    """Inputs padded on the right with `pad_id` and targets with IGNORE_INDEX, to the longest
    row: (B, T) each. Padding after the real tokens changes nothing before it (causal attention)."""
    import torch  # here, not at the top: the command line reads this module's FORMATS at start

    T = max(len(row) for row in inputs)
    idx = torch.full((len(inputs), T), pad_id, dtype=torch.long)
    tgt = torch.full((len(inputs), T), IGNORE_INDEX, dtype=torch.long)
    for i, (row, target) in enumerate(zip(inputs, targets, strict=True)):
        idx[i, : len(row)] = torch.tensor(row, dtype=torch.long)
        tgt[i, : len(target)] = torch.tensor(target, dtype=torch.long)
    return idx.to(device), tgt.to(device)


# -- batches ------------------------------------------------------------------------------


def bucketed_batches(
    lengths: list[int], batch_size: int, seed: int, epoch: int
) -> list[np.ndarray]:
    """One epoch's batches (example indices), a pure function of (seed, epoch).

    The examples are shuffled with (seed, epoch), the last len % batch_size left out (so every
    batch is full, as the reference's drop_last), then taken BUCKET_BATCHES batches' worth at a
    time: each bucket is sorted by length and cut into batches, so a batch holds examples of
    similar length. Last, the order of all the batches is shuffled, so lengths do not rise and
    fall through the epoch.
    """
    rng = np.random.default_rng((seed, epoch))
    order = rng.permutation(len(lengths))
    order = order[: len(order) - len(order) % batch_size]
    lengths = np.asarray(lengths)
    bucket = batch_size * BUCKET_BATCHES
    batches = []
    for start in range(0, len(order), bucket):
        members = order[start : start + bucket]
        members = members[np.argsort(lengths[members], kind="stable")]
        batches += [members[i : i + batch_size] for i in range(0, len(members), batch_size)]
    return [batches[i] for i in rng.permutation(len(batches))]


def padding_report(lengths: list[int], batch_size: int, seed: int = 0) -> dict:
    """Padded tokens of one epoch three ways: everything padded to the longest example of the
    set, random batches each padded to its own longest, and bucketed batches (`bucketed_batches`)."""
    lengths = np.asarray(lengths)
    kept = len(lengths) - len(lengths) % batch_size
    random = np.random.default_rng(seed).permutation(len(lengths))[:kept]
    random_batches = [random[i : i + batch_size] for i in range(0, kept, batch_size)]

    def padding(batches) -> int:
        return int(sum(len(b) * lengths[b].max() - lengths[b].sum() for b in batches))

    longest = int(kept * lengths.max() - lengths[random].sum())
    bucketed = padding(bucketed_batches(list(lengths), batch_size, seed, 0))
    return {
        "tokens": int(lengths[random].sum()),
        "pad_to_longest": longest,
        "random_batches": padding(random_batches),
        "bucketed": bucketed,
        "saved": longest - bucketed,
    }


class InstructionBatches(EpochBatches):
    """Batches of (idx, targets) over encoded instructions.

    Training batches go epoch by epoch (`gptlab.data.epochs`): batch k of epoch e is the k-th of
    `bucketed_batches` (an epoch's batches are computed once and kept). Evaluation batches go
    through every example once, sorted by length, the last batch possibly smaller.
    """

    def __init__(
        self,
        examples: EncodedInstructions,
        batch_size: int,
        pad_id: int,
        seed: int = 0,
        micro_batches_per_step: int = 1,
    ):
        super().__init__(len(examples), batch_size, seed, micro_batches_per_step)
        self.examples = examples
        self.pad_id = pad_id

    @functools.lru_cache(maxsize=2)  # noqa: B019 (one object a run; the cache dies with it)
    def epoch_batches(self, epoch: int) -> list[np.ndarray]:
        return bucketed_batches(self.examples.lengths, self.batch_size, self.seed, epoch)

    def train_batch(self, step: int, index: int, device="cpu"):
        epoch, k = self.locate(step, index)
        return self._batch(self.epoch_batches(epoch)[k], device)

    def eval_batches(self, device="cpu") -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        order = np.argsort(self.examples.lengths, kind="stable")
        for start in range(0, len(order), self.batch_size):
            yield self._batch(order[start : start + self.batch_size], device)

    def _batch(self, indices, device):
        return pad_instructions(
            [self.examples.inputs[i] for i in indices],
            [self.examples.targets[i] for i in indices],
            self.pad_id,
            device,
        )

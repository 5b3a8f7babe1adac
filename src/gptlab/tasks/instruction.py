"""The instruction task: what it gives the task-agnostic trainer, and what it measures.

    data = prepare_data(InstructionSpec("instruction-data"), tokenizer, context_length=1024)
    batches = data.batches("train", batch_size=8, pad_id=tokenizer.eos_id, seed=1337)
    trainer = Trainer(gpt, config, batches.train_batch, device=device,
                      evaluator=evaluator(data.batches("val", 8, pad_id), device), ...)

The model is a plain GPT: a batch is (idx, targets) with IGNORE_INDEX on the prompt, so the
Trainer's default loss is the response-only loss. A run directory of this task stores its
`InstructionSpec` in config.json's "data", so `gptlab eval` and `gptlab sample` rebuild the
split and the prompt it was trained with: `instruction_prompt` and `response_config` are how
`gptlab sample --instruction`, the demo's Instruct tab and `gptlab compare` ask it,
`generate_responses` answers a split and `response_scores` compares the answers with the
references (ROUGE-L and BLEU).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass

import torch
from torch import nn

from gptlab.data.instructions import (
    INSTRUCTION_DATA,
    REFERENCE_FRACTIONS,
    EncodedInstructions,
    Instruction,
    InstructionBatches,
    alpaca_prompt,
    encode_instructions,
    load_instructions,
    split_instructions,
)
from gptlab.errors import ConfigError, DataError
from gptlab.evaluation.overlap import bleu, rouge
from gptlab.models.gpt import IGNORE_INDEX
from gptlab.runs import run_task

PROMPT_FORMATS = ("alpaca",)
# Where a response ends when the model writes on past its end-of-text: the next "###" header.
RESPONSE_END = "###"


@dataclass
class InstructionSpec:
    """Where instructions come from, how they are read, prompted and split: saved with the run."""

    data: str = INSTRUCTION_DATA
    format: str = "alpaca"  # of the file: "alpaca" entries or "chat" messages
    prompt_format: str = "alpaca"  # of the text the model sees
    train_on_prompt: bool = False
    split: str = "reference"  # file order: train 85%, test 10%, val the rest

    def to_dict(self) -> dict:
        return {**dataclasses.asdict(self), "fractions": {**REFERENCE_FRACTIONS, "val": "rest"}}

    @classmethod
    def from_dict(cls, values: dict) -> InstructionSpec:
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{key: value for key, value in values.items() if key in known})


@dataclass
class InstructionData:
    spec: InstructionSpec
    splits: dict[str, EncodedInstructions]

    def batches(self, split: str, batch_size: int, pad_id: int, **kw) -> InstructionBatches:
        examples = self.splits[split]
        if not len(examples):
            raise DataError(f"the {split} split of {self.spec.data} is empty: use more data")
        return InstructionBatches(examples, batch_size, pad_id, **kw)

    @property
    def truncated(self) -> int:
        return sum(examples.truncated for examples in self.splits.values())

    @property
    def dropped(self) -> int:
        return sum(examples.dropped for examples in self.splits.values())


def prepare_data(spec: InstructionSpec, tokenizer, context_length: int) -> InstructionData:
    """Read, split and encode the instructions `spec` names."""
    entries = load_instructions(spec.data, spec.format)
    splits = split_instructions(entries)
    return InstructionData(
        spec,
        {
            split: encode_instructions(part, tokenizer, context_length, spec.train_on_prompt)
            for split, part in splits.items()
        },
    )


@torch.no_grad()
def response_loss(
    model: nn.Module, batches: InstructionBatches, device, autocast=nullcontext
) -> dict:
    """Mean loss per learned target token (the response and its end-of-text, unless the run
    trained on the prompt) over a whole split, its perplexity, and how many tokens."""
    was_training = model.training
    model.eval()
    total, count = torch.zeros((), dtype=torch.float64), 0
    for idx, targets in batches.eval_batches(device):
        with autocast():
            _, loss = model(idx, targets)
        n = int((targets != IGNORE_INDEX).sum())
        total += loss.double().cpu() * n  # the batch's mean, back to a sum over its tokens
        count += n
    model.train(was_training)
    loss = (total / count).item()
    return {"loss": loss, "perplexity": math.exp(loss) if loss < 700 else math.inf, "tokens": count}


def evaluator(batches: InstructionBatches, device) -> Callable[[nn.Module], dict]:
    """What the trainer calls at each evaluation: the response-only loss of the whole split."""
    return lambda model: {"loss": response_loss(model, batches, device)["loss"]}


# -- responses ----------------------------------------------------------------------------


def is_instruction_run(info: dict) -> bool:
    """Whether a model `load_model` returned (with this `info`) is an instruction run."""
    return run_task(info.get("config", {})) == "instruct"


def instruction_prompt(run_config: dict, instruction: str, input: str = "") -> str:
    """The prompt an instruction run (its config.json as `run_config`) was trained with, asking
    `instruction` about `input`, ending in the response header."""
    prompt_format = run_config.get("data", {}).get("prompt_format", "alpaca")
    if prompt_format not in PROMPT_FORMATS:
        raise ConfigError(f"the run was trained with prompt format {prompt_format!r}, unknown here")
    return alpaca_prompt(Instruction(instruction, input, ""))


def response_config(config):
    """A `GenerationConfig` that also stops at the next "###" header (end-of-text stops it
    already): a response is the text up to either."""
    return dataclasses.replace(config, stop=(*config.stop, RESPONSE_END))


def generate_responses(
    model,
    tokenizer,
    run_config: dict,
    entries: list[Instruction],
    config,
    batch_size: int = 8,
    progress: bool = False,
) -> list[str]:
    """The response of the run to each entry, decoded with `config` in batches of `batch_size`
    (left-padded), cut as `response_config` says, without surrounding whitespace."""
    from gptlab.generation import Decoder, generate_text

    prompts = [instruction_prompt(run_config, e.instruction, e.input) for e in entries]
    config = response_config(config)
    decoder = Decoder(model)  # one cache for every batch
    starts = range(0, len(prompts), batch_size)
    if progress:
        from tqdm.auto import tqdm

        starts = tqdm(starts, desc="generate", unit="batch", leave=False)
    responses = []
    for start in starts:
        texts = generate_text(
            model, tokenizer, prompts[start : start + batch_size], config, decoder=decoder
        )
        responses += [text.strip() for text in texts]
    return responses


def response_scores(generations: list[str], references: list[str]) -> dict:
    """ROUGE-L (the mean F-measure of the longest common subsequence of words, stemmed; Lin 2004)
    and corpus BLEU (sacrebleu's defaults; Papineni et al. 2002) of `generations` against
    `references`, both on a 0-100 scale: the two figures the instruction-tuning reference reports.
    `gptlab.evaluation.text_metrics` gives every figure."""
    return {
        "rouge_l": rouge(generations, references, types=("rougeL",))["rougeL"],
        "bleu": bleu(generations, references)["bleu"],
    }

"""The sequence-to-sequence task: what it gives the task-agnostic trainer, and what it measures.

    batches = ToyBatches(ToyTask("reverse"), tokenizer, batch_size=128, seed=1337, device=device)
    trainer = Trainer(model, config, batches.train_batch, loss_fn=loss_function(0.1),
                      count_items=target_tokens, evaluator=evaluator(...), ...)
    report = evaluate_pairs(model, tokenizer, tokenizer, test_pairs, device=device, num_beams=5)

A batch is (src, tgt_in, targets): right-padded source ids ending with EOS (B, S), the target
shifted right behind BOS (B, T), and the target ending with EOS, padding set to IGNORE_INDEX
(B, T). A run directory of this task says `"task": "seq2seq"` in its config.json, with the
encoder-decoder's shape under "model" and its data (a toy task and its sizes) under "data".
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from pathlib import Path

import torch
from torch import Tensor

from gptlab.data.toy_seq2seq import ToyTask
from gptlab.errors import CheckpointError, ConfigError
from gptlab.generation.seq2seq import right_pad, translate_ids
from gptlab.models.seq2seq import IGNORE_INDEX, Seq2Seq, seq2seq_loss, shift_right

Batch = tuple[Tensor, Tensor, Tensor]
Pairs = Sequence[tuple[str, str]]


def encode_pairs(pairs: Pairs, src_tokenizer, tgt_tokenizer) -> tuple[list, list]:
    """Source and target ids of each pair, each ending with its tokenizer's EOS."""
    sources = [src_tokenizer.encode(s) + [src_tokenizer.eos_id] for s, _ in pairs]
    targets = [tgt_tokenizer.encode(t) + [tgt_tokenizer.eos_id] for _, t in pairs]
    return sources, targets


def collate(sources: list, targets: list, tgt_tokenizer, src_pad_id: int, device) -> Batch:
    """(src, tgt_in, targets) of id lists: see the module docstring."""
    src, _ = right_pad(sources, src_pad_id, device)
    tgt, _ = right_pad(targets, tgt_tokenizer.pad_id, device)
    tgt_in, labels = shift_right(tgt, tgt_tokenizer.bos_id, tgt_tokenizer.pad_id)
    return src, tgt_in, labels


class ToyBatches:
    """Training batches of a toy task, drawn afresh for every (step, index) from the seed."""

    def __init__(self, task: ToyTask, tokenizer, batch_size: int, seed: int, device):
        self.task, self.tokenizer = task, tokenizer
        self.batch_size, self.seed, self.device = batch_size, seed, device

    def train_batch(self, step: int, index: int) -> Batch:
        pairs = self.task.pairs("train", self.batch_size, self.seed, step, index)
        sources, targets = encode_pairs(pairs, self.tokenizer, self.tokenizer)
        return collate(sources, targets, self.tokenizer, self.tokenizer.pad_id, self.device)


class PairBatches:
    """Training batches of fixed pairs (a parallel corpus): each epoch in a new order from the
    seed. Batch number b = step * stride + index (stride: micro-batches a step, over all
    processes) is batch b % per_epoch of epoch b // per_epoch, so a resumed run continues
    exactly."""

    def __init__(
        self, sources: list, targets: list, tgt_tokenizer, src_pad_id: int, batch_size: int,
        seed: int, device, stride: int = 1,
    ):  # fmt: skip
        if not sources:
            raise ConfigError("no training pairs")
        self.sources, self.targets = sources, targets
        self.tgt_tokenizer, self.src_pad_id = tgt_tokenizer, src_pad_id
        self.batch_size, self.seed, self.device, self.stride = batch_size, seed, device, stride
        self.per_epoch = math.ceil(len(sources) / batch_size)
        self._order: tuple[int, Tensor] | None = None

    def steps_for(self, epochs: float) -> int:
        """Optimizer steps that make `epochs` passes over the pairs."""
        return max(1, round(epochs * self.per_epoch / self.stride))

    def train_batch(self, step: int, index: int) -> Batch:
        number = step * self.stride + index
        epoch, position = divmod(number, self.per_epoch)
        if self._order is None or self._order[0] != epoch:
            generator = torch.Generator().manual_seed(self.seed * 100_003 + epoch)
            self._order = (epoch, torch.randperm(len(self.sources), generator=generator))
        rows = self._order[1][position * self.batch_size : (position + 1) * self.batch_size]
        rows = rows.tolist()
        return collate(
            [self.sources[i] for i in rows],
            [self.targets[i] for i in rows],
            self.tgt_tokenizer,
            self.src_pad_id,
            self.device,
        )


def truncate(rows: list[list[int]], max_tokens: int) -> list[list[int]]:
    """Rows cut to `max_tokens`, keeping each row's last token (its EOS)."""
    return [row if len(row) <= max_tokens else row[: max_tokens - 1] + row[-1:] for row in rows]


def loss_function(label_smoothing: float = 0.0) -> Callable:
    """The trainer's loss: cross-entropy of the next target token, with label smoothing."""

    def loss(model, batch: Batch) -> Tensor:
        src, tgt_in, targets = batch
        return seq2seq_loss(model(src, tgt_in), targets, label_smoothing)

    return loss


def target_tokens(batch: Batch) -> int:
    """The tokens a batch trains on (the trainer's tokens/s): real target tokens."""
    return int((batch[2] != IGNORE_INDEX).sum())


def pair_loss(model, sources: list, targets: list, tgt_tokenizer, src_pad_id, batch_size, device):
    """(mean loss per target token, tokens) of the pairs under teacher forcing, no smoothing."""
    total, count = 0.0, 0
    for start in range(0, len(sources), batch_size):
        src, tgt_in, labels = collate(
            sources[start : start + batch_size],
            targets[start : start + batch_size],
            tgt_tokenizer,
            src_pad_id,
            device,
        )
        logits = model(src, tgt_in)
        n = int((labels != IGNORE_INDEX).sum())
        total += float(seq2seq_loss(logits, labels)) * n
        count += n
    return total / max(count, 1), count


def evaluate_pairs(
    model,
    src_tokenizer,
    tgt_tokenizer,
    pairs: Pairs,
    *,
    device,
    batch_size: int = 64,
    num_beams: int = 1,
    length_penalty: float = 1.0,
    max_length_ratio: float = 1.5,
    max_length_extra: int = 10,
    language: str | None = None,
) -> dict:
    """Loss, perplexity and exact match of the model on `pairs`; with `language` (the targets'),
    also the text metrics of `text_scores` (BLEU, chrF, ROUGE). The hypotheses come back under
    "hypotheses", in the order of `pairs`."""
    if not pairs:
        raise ConfigError("no pairs to evaluate on")
    sources, targets = encode_pairs(pairs, src_tokenizer, tgt_tokenizer)
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            loss, tokens = pair_loss(
                model, sources, targets, tgt_tokenizer, src_tokenizer.pad_id, batch_size, device
            )
    finally:
        model.train(was_training)
    hypotheses = translate_sources(
        model,
        tgt_tokenizer,
        sources,
        batch_size=batch_size,
        num_beams=num_beams,
        length_penalty=length_penalty,
        max_length_ratio=max_length_ratio,
        max_length_extra=max_length_extra,
        device=device,
    )
    references = [target for _, target in pairs]
    matches = sum(normalise(h) == normalise(r) for h, r in zip(hypotheses, references))
    result = {
        "loss": loss,
        "perplexity": math.exp(loss) if loss < 700 else math.inf,
        "exact_match": matches / len(pairs),
        "examples": len(pairs),
        "tokens": tokens,
        **(text_scores(hypotheses, references, language) if language else {}),
    }
    result["hypotheses"] = hypotheses
    return result


def text_scores(hypotheses: list[str], references: list[str], language: str) -> dict:
    """BLEU, chrF and ROUGE of the hypotheses: the one hook for `gptlab.evaluation`'s text
    metrics (sacrebleu, rouge-score), which come with the translation data; none without them."""
    try:
        from gptlab.evaluation import text_metrics
    except ImportError:  # gptlab.evaluation without text metrics yet
        return {}
    return text_metrics(hypotheses, references, language=language)


def normalise(text: str) -> str:
    """Text compared for exact match: spaces collapsed."""
    return " ".join(text.split())


def translate_sources(model, tgt_tokenizer, sources: list, **options) -> list[str]:
    """The decoded text of each source id list (`translate_ids`' options)."""
    ids = translate_ids(model, sources, **options)
    return [tgt_tokenizer.decode(row, skip_special_tokens=True) for row in ids]


def translate_texts(
    model, src_tokenizer, tgt_tokenizer, texts: list[str], prepare=None, **options
) -> list[str]:
    """The translation of each text (`translate_ids`' options); an empty text is refused.
    prepare: a function that writes a text as the run's sources were written (`source_preparer`)."""
    for text in texts:
        if not text.strip():
            raise ConfigError("an empty text: give something to translate")
    texts = [prepare(text) for text in texts] if prepare else texts
    sources = [src_tokenizer.encode(text) + [src_tokenizer.eos_id] for text in texts]
    return translate_sources(model, tgt_tokenizer, sources, **options)


def evaluator(
    model_pairs: Pairs, src_tokenizer, tgt_tokenizer, device, batch_size: int = 256,
    decode: bool = True,
) -> Callable[[torch.nn.Module], dict]:  # fmt: skip
    """The trainer's evaluator: validation loss and perplexity (unsmoothed), and with `decode`
    the greedy exact match (cheap for toy tasks; translation runs leave it to `gptlab eval`)."""

    def evaluate(model) -> dict:
        if not decode:
            sources, targets = encode_pairs(model_pairs, src_tokenizer, tgt_tokenizer)
            loss, _ = pair_loss(
                model, sources, targets, tgt_tokenizer, src_tokenizer.pad_id, batch_size, device
            )
            return {"loss": loss, "perplexity": math.exp(loss) if loss < 700 else math.inf}
        result = evaluate_pairs(
            model, src_tokenizer, tgt_tokenizer, model_pairs, device=device, batch_size=batch_size
        )
        return {k: result[k] for k in ("loss", "perplexity", "exact_match")}

    return evaluate


# -- run directories ---------------------------------------------------------------------------


def is_seq2seq_config(config: dict) -> bool:
    return config.get("task") == "seq2seq"


def load_seq2seq_run(run_dir: str | Path, device="cpu", checkpoint: str = "best"):
    """(model in eval mode, source tokenizer, target tokenizer, config) of a seq2seq run."""
    from gptlab.runs import read_run_config
    from gptlab.tokenizers.parallel import load_parallel_tokenizers
    from gptlab.training.checkpoint import (
        MODEL_FILE,
        STATE_FILE,
        TOKENIZER_DIR,
        load_state_into,
        load_trainer_state,
        load_weights,
    )

    run_dir = Path(run_dir)
    config = read_run_config(run_dir)
    if not is_seq2seq_config(config):
        raise CheckpointError(
            f"{run_dir} is not an encoder-decoder run (its task is "
            f"{config.get('task', 'lm')!r}): make one with `gptlab seq2seq train`"
        )
    model = build_seq2seq(config)
    if checkpoint == "best":
        load_weights(model, run_dir / MODEL_FILE)
    else:
        state = load_trainer_state(run_dir / STATE_FILE)["model"]
        load_state_into(model, state, source=str(run_dir / STATE_FILE))
    src_tokenizer, tgt_tokenizer = load_parallel_tokenizers(run_dir / TOKENIZER_DIR)
    return model.to(device).eval(), src_tokenizer, tgt_tokenizer, config


def build_seq2seq(config: dict) -> Seq2Seq:
    from gptlab.models.seq2seq import Seq2SeqConfig

    return Seq2Seq(Seq2SeqConfig.from_dict(config["model"]))


def source_preparer(config: dict):
    """How a run's sources were written, as a function of a text (a toy task's
    `canonical_source`), or None: a translation run takes text as it is."""
    data = config["data"]
    if data.get("task") in ("copy", "reverse", "sort", "add"):
        return ToyTask(data["task"], data["max_len"], data["digits"]).canonical_source
    return None


def eval_pairs(config: dict, split: str) -> list[tuple[str, str]]:
    """The pairs of a run's `split`, as its config.json's "data" describes them."""
    data = config["data"]
    if data.get("task") in ("copy", "reverse", "sort", "add"):
        task = ToyTask(data["task"], data["max_len"], data["digits"])
        return task.pairs(split, data.get(f"{split}_size", data["test_size"]), data["seed"])
    if data.get("task") == "multi30k":
        from gptlab.data.parallel import load_multi30k

        return load_multi30k(data["src"], data["tgt"], split)
    raise ConfigError(f"this run's data ({data.get('task')!r}) cannot be read here")


def is_seq2seq_run(spec: str | Path) -> bool:
    """Whether `spec` is a run directory of an encoder-decoder (commands branch on it)."""
    import json

    path = Path(spec) / "config.json"
    try:
        return is_seq2seq_config(json.loads(path.read_text()))
    except (OSError, ValueError):
        return False  # not a run: the command's usual loader says what is wrong

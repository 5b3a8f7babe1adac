"""The classification task: what it gives the task-agnostic trainer, and what it measures.

    data = prepare_data(DataSpec("sms-spam"), tokenizer, max_length=1024)
    model = classifier_from_body(body, data.names, pad_id=tokenizer.eos_id or 0)
    freeze(model, "last-block")
    batches = data.batches("train", batch_size=8, seed=1337)
    trainer = Trainer(model, config, batches.train_batch_on(device), loss_fn=classification_loss,
                      evaluator=evaluator(data, "val", 8, device), monitor="accuracy", ...)

A run directory of this task stores its `DataSpec` in config.json's "data", so `gptlab eval`
rebuilds exactly the split it was trained and tested on.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass

import torch
from torch import nn

from gptlab.config import ClassifierConfig
from gptlab.data.labelled import (
    REFERENCE_FRACTIONS,
    REFERENCE_SEED,
    SMS_SPAM,
    ClassificationBatches,
    EncodedExamples,
    LabelledTexts,
    check_labelled,
    encode_examples,
    label_names,
    load_labelled,
    split_labelled,
)
from gptlab.errors import DataError
from gptlab.evaluation import classification_metrics, classify_batches
from gptlab.models.classifier import GPTClassifier
from gptlab.models.gpt import GPT


@dataclass
class DataSpec:
    """Where labelled examples come from and how they are split: saved with the run."""

    data: str = SMS_SPAM
    text_column: str = "text"
    label_column: str = "label"
    fractions: tuple[float, float, float] = REFERENCE_FRACTIONS
    split_seed: int = REFERENCE_SEED
    balance: bool | None = None  # None: the reference's undersampling for sms-spam, none otherwise
    max_length: int | None = None  # tokens kept of each text; None: the model's context

    def __post_init__(self):
        self.fractions = tuple(self.fractions)
        if self.balance is None:
            self.balance = self.data == SMS_SPAM

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> DataSpec:
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{key: value for key, value in values.items() if key in known})


@dataclass
class ClassificationData:
    """The encoded splits of a labelled dataset and its class names."""

    spec: DataSpec
    names: list[str]
    splits: dict[str, EncodedExamples]
    counts: dict[str, dict[str, int]]  # split -> class -> examples

    def batches(
        self, split: str, batch_size: int, pad_id: int, side: str = "right", seed: int = 0, **kw
    ) -> ClassificationBatches:
        examples = self.splits[split]
        if not len(examples):
            raise DataError(
                f"the {split} split of {self.spec.data} is empty: use more data or other fractions"
            )
        return ClassificationBatches(examples, batch_size, pad_id, side, seed, **kw)


def prepare_data(
    spec: DataSpec, tokenizer, max_length: int, names: list[str] | None = None
) -> ClassificationData:
    """Read, split and encode the examples `spec` names.

    names: the classes of an existing model (its labels must cover the data's); None takes
    them from the data. Texts are cut to their first `spec.max_length or max_length` tokens.
    """
    data = load_labelled(spec.data, spec.text_column, spec.label_column)
    splits = split_labelled(data, spec.fractions, spec.split_seed, spec.balance)
    if names is None:
        names = label_names(data.labels)
    keep = min(spec.max_length or max_length, max_length)
    encoded = {
        split: encode_examples(part, tokenizer, names, keep, f"{spec.data} ({split} split)")
        for split, part in splits.items()
    }
    counts = {split: _counts(part, names) for split, part in splits.items()}
    return ClassificationData(spec, names, encoded, counts)


def encode_texts(texts: list[str], tokenizer, names: list[str], max_length: int) -> EncodedExamples:
    """Texts without labels (to predict), encoded and cut like training examples."""
    data = LabelledTexts(list(texts), [names[0]] * len(texts))
    return encode_examples(
        check_labelled(data, "the input", min_classes=1), tokenizer, names, max_length, "the input"
    )


def max_text_tokens(model: GPTClassifier, info: dict) -> int:
    """How many tokens of a text the classifier reads: as many as it was trained on (a run's
    `max_length`, from `load_model`'s info), never more than its context."""
    context = model.config.context_length
    trained = info.get("config", {}).get("data", {}).get("max_length")
    return min(trained or context, context)


def predict_texts(
    model: GPTClassifier, tokenizer, texts: list[str], max_length: int, batch_size: int, device
) -> tuple[torch.Tensor, int]:
    """Class probabilities (N, K) of `texts`, and how many were cut to `max_length` tokens."""
    head = model.head
    examples = encode_texts(texts, tokenizer, head.labels, max_length)
    batches = ClassificationBatches(examples, batch_size, head.pad_id, head.padding_side)
    probabilities = [
        model.predict_proba(idx, mask).cpu() for idx, mask, _ in batches.eval_batches(device)
    ]
    return torch.cat(probabilities), examples.truncated


def _counts(part: LabelledTexts, names: list[str]) -> dict[str, int]:
    return {name: part.labels.count(name) for name in names}


def classifier_from_body(
    body: GPT,
    names: list[str],
    pad_id: int,
    pooling: str = "last",
    padding_side: str = "right",
    pooler: bool = False,
) -> GPTClassifier:
    """A new classifier over `names` on a (pretrained) GPT body, or an encoder (a masked-language
    model's, with BERT's pooler when `pooler`); its head starts small and random."""
    from gptlab.models.classifier import EncoderClassifier
    from gptlab.models.encoder import Encoder

    head = ClassifierConfig(
        labels=names, pooling=pooling, padding_side=padding_side, pad_id=pad_id, pooler=pooler
    )
    return (EncoderClassifier if isinstance(body, Encoder) else GPTClassifier)(body, head)


def classification_loss(model: nn.Module, batch) -> torch.Tensor:
    """The trainer's loss for (idx, padding_mask, labels) batches."""
    idx, mask, labels = batch
    return model(idx, mask, labels)[1]


def evaluator(
    batches: ClassificationBatches, names: list[str], device
) -> Callable[[nn.Module], dict]:
    """What the trainer calls at each evaluation: loss, accuracy and macro-F1 over a whole split."""

    def evaluate(model: nn.Module) -> dict:
        report = evaluate_split(model, batches, names, device)
        return {key: report[key] for key in ("loss", "accuracy", "macro_f1")}

    return evaluate


def evaluate_split(
    model: nn.Module, batches: ClassificationBatches, names: list[str], device, autocast=nullcontext
) -> dict:
    """The full report on a split: classification_metrics plus the mean loss."""
    probabilities, labels, loss = classify_batches(model, batches.eval_batches(device), autocast)
    report = classification_metrics(probabilities.argmax(-1).tolist(), labels.tolist(), names)
    return {"loss": loss, **report}

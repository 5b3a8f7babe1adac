"""`gptlab seq2seq train`: train an encoder-decoder on a toy task and write a run directory."""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

from gptlab.data.toy_seq2seq import TOY_TASKS
from gptlab.errors import ConfigError

EXAMPLES = """\
examples:
  gptlab seq2seq train --task reverse --out runs/reverse      # learns it on 2 CPU cores in minutes
  gptlab seq2seq train --task add --out runs/add              # 3-digit addition
  gptlab seq2seq train --task sort --max-len 10 --max-iters 500 --out runs/sort10
  gptlab seq2seq train --task copy --n-embd 64 --no-pre-norm --schedule noam --out runs/copy
  gptlab seq2seq train --resume runs/reverse --max-iters 3000
  gptlab seq2seq train --task multi30k --src de --tgt en --out runs/de-en   # for a GPU
  gptlab seq2seq train --task multi30k --src en --tgt fr --separate-vocab --epochs 20
then:
  gptlab translate runs/reverse "31415926" --beam 5
  gptlab eval runs/reverse --split test
"""

# What each task needs, measured on 2 shared CPU cores (the table in docs/seq2seq.md): each
# reaches >= 99% exact match on held-out test pairs, copy, reverse and sort within 5 minutes
# of wall time there, addition within 3.5 minutes of CPU time (its wall time was longer on the
# loaded machine). A small model (64 wide, 2 + 2 layers, 0.23M parameters) at a high learning
# rate learns fastest per second; dropout only slows it down, since fresh pairs at every step
# leave nothing to overfit.
SHARED_DEFAULTS = dict(
    n_encoder_layer=2,
    n_decoder_layer=2,
    n_head=4,
    n_embd=64,
    dropout=0.0,
    batch_size=64,
    lr=2e-3,
    min_lr=1e-4,
    warmup_iters=100,
    weight_decay=0.01,
    beta2=0.98,  # Vaswani et al. 2017, 5.3
    eval_interval=500,
    label_smoothing=0.0,
)
TASK_DEFAULTS: dict[str, dict] = {
    "copy": dict(max_iters=800),
    "reverse": dict(max_iters=1000),
    "sort": dict(max_iters=1000),
    # Addition learns late and suddenly: 2.5% exact match at step 1500, 28% at 3000, 99% at
    # 4500 (its digits that need no carry come last; see docs/seq2seq.md).
    "add": dict(max_iters=6000),
}
# Multi30K: the shape of the tutorials' model (3 + 3 layers, 256 wide, 8 heads) with a joint BPE
# vocabulary shared by both embeddings and the output (7.6M parameters; 9.6M with
# --separate-vocab), and the regularisation a 29,000-pair corpus needs: dropout 0.2, label
# smoothing 0.1 (Vaswani et al. 5.4), weight decay. On one H200: de-en test BLEU 40.66 greedy,
# 41.56 beam 5 (lower-cased tokenized; the tutorial's 36.52), in about four minutes
# (docs/seq2seq.md).
TASK_DEFAULTS["multi30k"] = dict(
    n_encoder_layer=3,
    n_decoder_layer=3,
    n_head=8,
    n_embd=256,
    ff_hidden=1024,
    dropout=0.2,
    label_smoothing=0.1,
    batch_size=128,
    lr=7e-4,
    min_lr=1e-5,
    warmup_iters=400,
    weight_decay=0.1,
    eval_interval=500,
)
TASKS = (*TOY_TASKS, "multi30k")
# Each task's own settings, saved in config.json's "data".
DATA_DEFAULTS = dict(max_len=20, digits=3, val_size=200, test_size=1000)
TRANSLATION_DEFAULTS = dict(src="de", tgt="en", vocab_size=8000, joint=True, epochs=30.0)
# Seq2SeqConfig fields that the tokenizer fixes, not a flag.
VOCABULARY_FIELDS = ("src_vocab_size", "tgt_vocab_size", "pad_id", "bos_id", "eos_id")


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "seq2seq",
        help="train an encoder-decoder Transformer (toy tasks, Multi30K)",
        description="Encoder-decoder Transformers (Vaswani et al. 2017): train one on a toy "
        "task generated on the fly or on Multi30K translation, then use it with "
        "`gptlab translate` and `gptlab eval`.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    actions = parser.add_subparsers(title="actions", metavar="ACTION", dest="action")
    actions.required = True
    train = actions.add_parser(
        "train",
        help="train on a toy task or Multi30K and write a run directory",
        description="Train an encoder-decoder on a toy task (digits copied, reversed or sorted, "
        "or two numbers added, drawn from the seed; one source in ten held out for validation "
        "and test), or on Multi30K with a BPE vocabulary trained on its training split. Writes "
        "config.json, the tokenizer(s), model.safetensors, trainer_state.pt and metrics.jsonl; "
        "a toy run ends by printing its test exact match.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_train_flags(train)
    train.set_defaults(run=run, command="seq2seq train")


def add_train_flags(parser) -> None:
    from gptlab.commands.train import add_field_flag
    from gptlab.models.seq2seq_config import Seq2SeqConfig
    from gptlab.training.config import TrainConfig

    S = argparse.SUPPRESS
    parser.add_argument("--task", choices=TASKS, default=S, help="what to learn")
    parser.add_argument("--out", default=S, help="run directory (default runs/seq2seq-TASK)")
    parser.add_argument("--resume", default=S, metavar="RUN_DIR", help="continue a run")
    toy = parser.add_argument_group("toy tasks")
    toy.add_argument("--max-len", type=int, default=S, help="digits per sequence (default 20)")
    toy.add_argument("--digits", type=int, default=S, help="digits per number, add (default 3)")
    toy.add_argument("--val-size", type=int, default=S, help="validation pairs (default 200)")
    toy.add_argument("--test-size", type=int, default=S, help="test pairs (default 1000)")
    translation = parser.add_argument_group("multi30k")
    languages = ("en", "de", "fr")
    translation.add_argument("--src", choices=languages, default=S, help="source (default de)")
    translation.add_argument("--tgt", choices=languages, default=S, help="target (default en)")
    translation.add_argument(
        "--vocab-size", type=int, default=S, help="BPE ids, each vocabulary (default 8000)"
    )
    translation.add_argument(
        "--separate-vocab",
        dest="joint",
        action="store_false",
        default=S,
        help="one BPE vocabulary a language (default: one joint vocabulary, shared embeddings)",
    )
    translation.add_argument(
        "--epochs", type=float, default=S, help="passes over the training pairs (default 30)"
    )
    parser.add_argument(
        "--label-smoothing",
        type=float,
        default=S,
        help="share of each target's probability spread over the vocabulary (default 0; "
        "multi30k 0.1, as Vaswani et al.)",
    )
    parser.add_argument(
        "--no-tensorboard", action="store_true", help="do not write TensorBoard events"
    )
    model = parser.add_argument_group("model (defaults: the toy tasks'; see docs/seq2seq.md)")
    for field in dataclasses.fields(Seq2SeqConfig):
        if field.name not in VOCABULARY_FIELDS:
            add_field_flag(model, field, Seq2SeqConfig, SHARED_DEFAULTS)
    train = parser.add_argument_group("training (defaults depend on --task)")
    for field in dataclasses.fields(TrainConfig):
        add_field_flag(train, field, TrainConfig, SHARED_DEFAULTS)


def run(args: argparse.Namespace) -> int:
    from gptlab.models.seq2seq_config import Seq2SeqConfig
    from gptlab.training.config import TrainConfig

    settings = {
        k: v
        for k, v in vars(args).items()
        if k not in ("run", "command", "action", "no_tensorboard")
    }
    if "resume" in settings:
        run_dir = Path(settings.pop("resume"))
        saved = _resumed_config(run_dir, settings)
        data, extra = dict(saved["data"]), saved["seq2seq"]
        epochs = settings.pop("epochs", None)
        if epochs is not None:
            if data["task"] != "multi30k":
                raise ConfigError("--epochs is for --task multi30k: give --max-iters")
            data["epochs"] = epochs
        model_cfg = Seq2SeqConfig.from_dict(saved["model"])
        train_cfg = TrainConfig(**{**saved["train"], **settings})
        source = _data(data, run_dir, resume=True)
        by_epochs = epochs if "max_iters" not in settings else None
        return _train(run_dir, model_cfg, train_cfg, data, extra, source, by_epochs, args)
    if "task" not in settings:
        raise ConfigError("choose a --task: " + ", ".join(TASKS))
    task = settings.pop("task")
    layered = {**SHARED_DEFAULTS, **TASK_DEFAULTS[task], **settings}
    run_dir = Path(layered.pop("out", f"runs/seq2seq-{task}"))
    model_over, train_over, data, extra = _split(layered, task)
    defaults = TRANSLATION_DEFAULTS if task == "multi30k" else DATA_DEFAULTS
    data = {"task": task, **defaults, **data}
    train_cfg = TrainConfig(**train_over)  # checked before any data is read
    data["seed"] = train_cfg.seed
    source = _data(data, run_dir, resume=False)
    model_cfg = source.model_config(model_over)
    # A translation run's length is --epochs unless --max-iters is given.
    by_epochs = data["epochs"] if task == "multi30k" and "max_iters" not in settings else None
    return _train(run_dir, model_cfg, train_cfg, data, extra, source, by_epochs, args)


def _split(settings: dict, task: str) -> tuple[dict, dict, dict, dict]:
    """(model, train, data, seq2seq) sections of flat settings."""
    from gptlab.models.seq2seq_config import Seq2SeqConfig
    from gptlab.training.config import TrainConfig

    model_keys = {f.name for f in dataclasses.fields(Seq2SeqConfig)} - set(VOCABULARY_FIELDS)
    train_keys = {f.name for f in dataclasses.fields(TrainConfig)}
    data_keys = TRANSLATION_DEFAULTS if task == "multi30k" else DATA_DEFAULTS
    model, train, data, extra = {}, {}, {}, {}
    for key, value in settings.items():
        if key in model_keys:
            model[key] = value
        elif key in train_keys:
            train[key] = value
        elif key in data_keys:
            data[key] = value
        elif key == "label_smoothing":
            extra[key] = value
        elif key in DATA_DEFAULTS or key in TRANSLATION_DEFAULTS:
            flag = "--separate-vocab" if key == "joint" else "--" + key.replace("_", "-")
            raise ConfigError(f"{flag} does not apply to --task {task}")
        else:
            raise ConfigError(f"unknown setting {key!r}")
    if not 0.0 <= extra.get("label_smoothing", 0.0) < 1.0:
        raise ConfigError("--label-smoothing must be in [0, 1)")
    for key in ("val_size", "test_size", "vocab_size"):
        if data.get(key, 1) < 1:
            raise ConfigError(f"--{key.replace('_', '-')} must be at least 1")
    if data.get("epochs", 1) <= 0:
        raise ConfigError("--epochs must be positive")
    return model, train, data, extra


class ToyData:
    """A toy task's tokenizer, batches and evaluation pairs."""

    def __init__(self, data: dict):
        from gptlab.data.toy_seq2seq import ALPHABET, ToyTask
        from gptlab.tokenizers.symbols import SymbolTokenizer

        self.data = data
        self.task = ToyTask(data["task"], data["max_len"], data["digits"])
        self.src_tokenizer = self.tgt_tokenizer = SymbolTokenizer(ALPHABET)
        self.val_pairs = self.task.pairs("val", data["val_size"], data["seed"])
        self.decode_in_evaluation = True

    def model_config(self, model_over: dict):
        """One joint vocabulary, shared embeddings, positions for the longest source and target
        (plus EOS, and BOS)."""
        longest = max(self.task.max_source_length, self.task.max_target_length) + 2
        return _vocabulary_config(self, {"max_length": longest, **model_over})

    def batches_for(self, batch_size: int, max_length: int, device, stride: int):
        from gptlab.tasks.seq2seq import ToyBatches

        return ToyBatches(self.task, self.src_tokenizer, batch_size, self.data["seed"], device)

    def test_pairs(self):
        return self.task.pairs("test", self.data["test_size"], self.data["seed"])


class TranslationData:
    """Multi30K's pairs, its BPE tokenizer(s) (trained on the training split, or the run's), the
    encoded training pairs and the validation pairs."""

    def __init__(self, data: dict, run_dir: Path, resume: bool):
        from gptlab.data.parallel import load_multi30k
        from gptlab.tokenizers.parallel import load_parallel_tokenizers, train_parallel_tokenizers
        from gptlab.training.checkpoint import TOKENIZER_DIR

        self.data = data
        train_pairs = load_multi30k(data["src"], data["tgt"], "train")
        if resume:
            tokenizers = load_parallel_tokenizers(run_dir / TOKENIZER_DIR)
        else:
            print(f"training BPE vocabularies on {len(train_pairs):,} pairs", file=sys.stderr)
            tokenizers = train_parallel_tokenizers(train_pairs, data["vocab_size"], data["joint"])
        self.src_tokenizer, self.tgt_tokenizer = tokenizers
        self.train_pairs = train_pairs
        self.val_pairs = load_multi30k(data["src"], data["tgt"], "val")
        self.decode_in_evaluation = False

    def model_config(self, model_over: dict):
        joint = self.src_tokenizer is self.tgt_tokenizer
        return _vocabulary_config(self, {"shared_embeddings": joint, **model_over})

    def batches_for(self, batch_size: int, max_length: int, device, stride: int):
        """Batches of the training pairs, each side cut to the model's `max_length`."""
        from gptlab.tasks.seq2seq import PairBatches, encode_pairs, truncate

        encoded = encode_pairs(self.train_pairs, self.src_tokenizer, self.tgt_tokenizer)
        sources, targets = (truncate(rows, max_length) for rows in encoded)
        return PairBatches(
            sources,
            targets,
            self.tgt_tokenizer,
            self.src_tokenizer.pad_id,
            batch_size,
            self.data["seed"],
            device,
            stride,
        )

    def test_pairs(self):
        return None  # `gptlab eval RUN --split test` scores a translation run


def _data(data: dict, run_dir: Path, resume: bool):
    if data["task"] == "multi30k":
        return TranslationData(data, run_dir, resume)
    return ToyData(data)


def _vocabulary_config(source, values: dict):
    from gptlab.models.seq2seq_config import Seq2SeqConfig

    src, tgt = source.src_tokenizer, source.tgt_tokenizer
    if (src.pad_id, src.bos_id, src.eos_id) != (tgt.pad_id, tgt.bos_id, tgt.eos_id):
        raise ConfigError("the source and target tokenizers number their special tokens apart")
    return Seq2SeqConfig(
        src_vocab_size=src.vocab_size,
        tgt_vocab_size=tgt.vocab_size,
        pad_id=tgt.pad_id,
        bos_id=tgt.bos_id,
        eos_id=tgt.eos_id,
        **{"shared_embeddings": True, **values},
    )


def _resumed_config(run_dir: Path, settings: dict) -> dict:
    from gptlab.runs import read_run_config
    from gptlab.tasks.seq2seq import is_seq2seq_config
    from gptlab.training.config import TrainConfig

    saved = read_run_config(run_dir)
    if not is_seq2seq_config(saved):
        raise ConfigError(f"{run_dir} is not a seq2seq run: resume it with its own command")
    train_keys = {f.name for f in dataclasses.fields(TrainConfig)} | {"epochs"}
    if set(settings) - train_keys:
        raise ConfigError(
            "--resume continues a run as it was: only training settings (e.g. --max-iters) may change"
        )
    return saved


def _train(run_dir: Path, model_cfg, train_cfg, data, extra, source, by_epochs, args) -> int:
    """Train (a new run, or resume the one in `run_dir` when its trainer state is there);
    `by_epochs`: the run's length in passes over the training pairs, in place of max_iters."""
    import time

    import torch

    from gptlab.commands.train import fit, training_device
    from gptlab.models.seq2seq import Seq2Seq
    from gptlab.runs import write_run_config
    from gptlab.tasks.seq2seq import evaluate_pairs, evaluator, loss_function, target_tokens
    from gptlab.tokenizers.parallel import save_parallel_tokenizers
    from gptlab.training.callbacks import standard_callbacks
    from gptlab.training.checkpoint import STATE_FILE, TOKENIZER_DIR, load_trainer_state
    from gptlab.training.trainer import Trainer

    resume = "resume" in vars(args)
    if not resume and (run_dir / STATE_FILE).exists():
        raise ConfigError(
            f"{run_dir} already holds a run: resume it with --resume {run_dir}, or choose another --out"
        )
    device, group = training_device(train_cfg)
    src_tokenizer, tgt_tokenizer = source.src_tokenizer, source.tgt_tokenizer
    stride = train_cfg.grad_accum * group.world_size
    batches = source.batches_for(train_cfg.batch_size, model_cfg.max_length, device, stride)
    if by_epochs is not None:
        train_cfg = dataclasses.replace(train_cfg, max_iters=batches.steps_for(by_epochs))
    torch.manual_seed(train_cfg.seed)
    model = Seq2Seq(model_cfg)
    if group.is_main:
        run_dir.mkdir(parents=True, exist_ok=True)
        if not resume:
            save_parallel_tokenizers(run_dir / TOKENIZER_DIR, src_tokenizer, tgt_tokenizer)
        write_run_config(
            run_dir, model_cfg, train_cfg.to_dict(), data, task="seq2seq", seq2seq=extra
        )
    validation = (
        evaluator(
            source.val_pairs,
            src_tokenizer,
            tgt_tokenizer,
            device,
            decode=source.decode_in_evaluation,
        )
        if train_cfg.eval_interval
        else None
    )
    trainer = Trainer(
        model,
        train_cfg,
        batches.train_batch,
        device=device,
        loss_fn=loss_function(extra.get("label_smoothing", 0.0)),
        callbacks=standard_callbacks(
            run_dir,
            is_main=group.is_main,
            tensorboard=not args.no_tensorboard,
            patience=train_cfg.patience,
        ),
        group=group,
        count_items=target_tokens,
        evaluator=validation,
    )
    if resume:
        trainer.load_state_dict(load_trainer_state(run_dir / STATE_FILE))
    if group.is_main:
        print(
            f"training {model.num_params() / 1e6:.2f}M parameters on {device} ({trainer.dtype}): "
            f"{data['task']}, {train_cfg.max_iters} steps of {train_cfg.batch_size} -> {run_dir}",
            file=sys.stderr,
        )
    seconds = fit(trainer, group)
    if not group.is_main:
        return 0
    summary = f"done: {trainer.step} steps in {seconds:.1f} s"
    test_pairs = source.test_pairs()
    if test_pairs is not None:
        from gptlab.tasks.seq2seq import load_seq2seq_run

        started = time.perf_counter()
        best, *_ = load_seq2seq_run(run_dir, device)
        test = evaluate_pairs(
            best, src_tokenizer, tgt_tokenizer, test_pairs, device=device, batch_size=256
        )
        summary += (
            f"; test exact match {test['exact_match']:.2%} of {test['examples']} held-out "
            f"pairs, loss {test['loss']:.4f} ({time.perf_counter() - started:.1f} s)"
        )
    else:
        summary += f"; score it with `gptlab eval {run_dir} --split test --beam 5`"
    print(f"{summary}; run directory {run_dir}", file=sys.stderr)
    return 0

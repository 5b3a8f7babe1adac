"""`gptlab viz`: pictures of a model as PNG files (embeddings, positions, attention, curves,
a classifier's confusion matrix)."""

from __future__ import annotations

import argparse
import sys

EXAMPLES = """\
examples:
  gptlab viz embeddings runs/shakespeare-cpu --out embeddings.png          # every character, PCA
  gptlab viz embeddings runs/shakespeare-cpu --method tsne --out tsne.png
  gptlab viz embeddings gpt2 --method umap --words king queen man woman Paris London --out words.png
  gptlab viz positions runs/shakespeare-cpu --out positions.png
  gptlab viz attention runs/shakespeare-cpu --prompt "ROMEO: But soft" --out attention.png
  gptlab viz attention gpt2 --prompt "The cat sat on the mat" --layer 5 --head 1 --out head.png
  gptlab viz attention runs/reverse --prompt "31415926" --out alignment.png   # seq2seq: cross-attention
  gptlab viz curves runs/shakespeare-cpu --out curves.png
  gptlab viz confusion runs/spam --out confusion.png                       # the run's test split
  gptlab viz confusion report.json --out confusion.png                     # written by gptlab eval RUN --json
"""

MODEL_HELP = (
    "a run directory, a Hugging Face GPT-2 folder, or a model name (gpt2, gpt2-medium, ...)"
)


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "viz",
        help="pictures of a model: embeddings, positions, attention, curves, confusion matrix",
        description="Draw a picture of a model or of its training, written as a PNG file.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    pictures = parser.add_subparsers(title="pictures", metavar="PICTURE", dest="picture")
    pictures.required = True

    embeddings = _add_picture(
        pictures,
        "embeddings",
        "token embeddings projected to 2-D, labelled",
        "Project the token-embedding table to two dimensions and label the points. A character "
        "model shows every character; a GPT-2 vocabulary shows a list of words in groups "
        "(numbers, days, colours, ...) or the --words you give.",
    )
    embeddings.add_argument(
        "--method",
        choices=["pca", "tsne", "umap"],
        default="pca",
        help="pca (no extra dependency), tsne (gptlab[viz]) or umap (gptlab[umap]); default pca",
    )
    embeddings.add_argument(
        "--words", nargs="+", metavar="WORD", help="words to place (each the mean of its tokens)"
    )
    embeddings.add_argument(
        "--seed", type=int, default=0, help="seed of t-SNE and UMAP (default 0)"
    )

    positions = _add_picture(
        pictures,
        "positions",
        "positional-encoding heatmaps and the similarity of positions",
        "Draw the model's positional encodings beside sinusoidal ones of the same shape, and the "
        "cosine similarity of every pair of positions.",
    )
    positions.add_argument(
        "--max-positions", type=int, default=None, help="draw only the first N positions"
    )

    attention = _add_picture(
        pictures,
        "attention",
        "attention maps of a prompt, per layer and head",
        "Run a prompt through the model and draw each head's attention weights: row t shows how "
        "much token t attends to each earlier token. For an encoder-decoder (seq2seq) run, "
        "translate the prompt and draw the cross-attention: row t shows how much the step that "
        "writes output token t looks at each source token.",
    )
    attention.add_argument("--prompt", required=True, help="the text whose attention to draw")
    attention.add_argument("--layer", type=int, default=None, help="only this layer (from 0)")
    attention.add_argument("--head", type=int, default=None, help="only this head (from 0)")
    attention.add_argument(
        "--beam", type=int, default=1, help="seq2seq: translate with this beam width (default 1)"
    )

    curves = pictures.add_parser(
        "curves",
        help="loss and learning rate from a run's metrics.jsonl",
        description="Plot train and validation loss and the learning rate of a training run.",
        epilog="examples:\n  gptlab viz curves runs/shakespeare-cpu --out curves.png",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    curves.add_argument("model", metavar="RUN_DIR", help="a run directory written by training")
    curves.add_argument(
        "--out", default="curves.png", help="PNG file to write (default curves.png)"
    )

    confusion = _add_picture(
        pictures,
        "confusion",
        "a classifier's confusion matrix, with accuracy and macro-F1",
        "Draw a classifier's confusion matrix: true class down, predicted class across, each cell "
        "its count and its share of the true class. Give a classification run (its test split is "
        "evaluated, or --split, or every row of --data) or a report written by "
        "`gptlab eval RUN --json > report.json`.",
        source_help="a classification run directory, a Hugging Face "
        "GPT2ForSequenceClassification folder, or a .json report from `gptlab eval --json`",
    )
    confusion.add_argument(
        "--split",
        choices=["train", "val", "test"],
        default="test",
        help="the run's split to evaluate (default test)",
    )
    confusion.add_argument(
        "--data", help="a labelled .csv/.tsv/.jsonl file to evaluate on instead, every row of it"
    )
    parser.set_defaults(run=run, command="viz")


def _add_picture(
    pictures, name: str, summary: str, description: str, source_help: str = MODEL_HELP
) -> argparse.ArgumentParser:
    examples = [line for line in EXAMPLES.splitlines() if line.startswith(f"  gptlab viz {name} ")]
    picture = pictures.add_parser(
        name,
        help=summary,
        description=description,
        epilog="examples:\n" + "\n".join(examples),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    picture.add_argument("model", metavar="MODEL", help=source_help)
    picture.add_argument(
        "--out", default=f"{name}.png", help=f"PNG file to write (default {name}.png)"
    )
    picture.add_argument(
        "--checkpoint",
        choices=["best", "last"],
        default="best",
        help="which weights of a run directory (default best)",
    )
    return picture


def run(args: argparse.Namespace) -> int:
    from gptlab import viz

    if args.picture == "curves":
        path = viz.plot_curves(args.model, args.out)
    elif args.picture == "confusion":
        path = _confusion(args)
    elif args.picture == "attention" and _is_seq2seq(args.model):
        path = _cross_attention(args)
    else:
        from gptlab.errors import ConfigError
        from gptlab.pretrained import load_model

        model, tokenizer, info = load_model(args.model, "cpu", args.checkpoint, task="lm")
        name = _model_name(info, args.model)
        if args.picture == "embeddings":
            path = viz.plot_embeddings(
                model,
                tokenizer,
                args.out,
                method=args.method,
                words=args.words,
                title=f"token embeddings of {name} ({args.method.upper()})",
                seed=args.seed,
            )
        elif args.picture == "positions":
            if args.max_positions is not None and args.max_positions < 2:
                raise ConfigError(f"--max-positions must be at least 2, got {args.max_positions}")
            path = viz.plot_positions(
                model, args.out, args.max_positions, title=f"positional encodings of {name}"
            )
        else:
            path = viz.plot_attention(
                model, tokenizer, args.prompt, args.out, layer=args.layer, head=args.head
            )
    print(f"wrote {path}", file=sys.stderr)
    return 0


def _is_seq2seq(spec: str) -> bool:
    from gptlab.tasks.seq2seq import is_seq2seq_run

    return is_seq2seq_run(spec)


def _cross_attention(args: argparse.Namespace):
    """The cross-attention alignment of an encoder-decoder's translation of --prompt."""
    from gptlab.errors import ConfigError
    from gptlab.tasks.seq2seq import load_seq2seq_run, source_preparer
    from gptlab.viz.cross_attention import plot_cross_attention

    if args.beam < 1:
        raise ConfigError(f"--beam must be at least 1, got {args.beam}")
    model, src_tokenizer, tgt_tokenizer, config = load_seq2seq_run(
        args.model, "cpu", args.checkpoint
    )
    prepare = source_preparer(config)
    return plot_cross_attention(
        model,
        src_tokenizer,
        tgt_tokenizer,
        prepare(args.prompt) if prepare else args.prompt,
        args.out,
        layer=args.layer,
        head=args.head,
        num_beams=args.beam,
    )


def _confusion(args: argparse.Namespace):
    """The confusion matrix of a saved report, or of a classifier evaluated here."""
    from pathlib import Path

    from gptlab.viz.classification import confusion_matrix_figure, read_report
    from gptlab.viz.figure import save_png

    if Path(args.model).suffix.lower() == ".json":
        return save_png(confusion_matrix_figure(read_report(args.model)), args.out)
    from gptlab.commands.eval import classifier_report
    from gptlab.device import resolve_device
    from gptlab.pretrained import load_model

    device = resolve_device("auto")
    model, tokenizer, info = load_model(args.model, device, args.checkpoint, task="classify")
    report = classifier_report(model, tokenizer, info, device, args.split, args.data)
    title = f"{_model_name(info, args.model)} on {report['data']}"
    return save_png(confusion_matrix_figure(report, title), args.out)


def _model_name(info: dict, spec: str) -> str:
    from pathlib import Path

    return Path(spec).name if info.get("kind") in ("run", "hf-folder") else str(spec)

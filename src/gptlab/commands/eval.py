"""`gptlab eval`: loss and perplexity of a trained model on its validation split or a file."""

from __future__ import annotations

import argparse
import json

EXAMPLES = """\
examples:
  gptlab eval runs/shakespeare-cpu                 # the run's own validation split
  gptlab eval runs/shakespeare-cpu --data other.txt
  gptlab eval runs/shakespeare-cpu --json          # one JSON object on stdout
"""


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "eval",
        help="loss and perplexity of a model on text",
        description="Measure the next-token loss and perplexity of a model over every token of its "
        "validation split, or of a text file you give.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "model",
        metavar="MODEL",
        help="a run directory, a Hugging Face GPT-2 folder, or a model name (gpt2, ...)",
    )
    parser.add_argument(
        "--data",
        help="a text file (or dataset name) to evaluate on instead of the validation split",
    )
    parser.add_argument(
        "--checkpoint",
        choices=["best", "last"],
        default="best",
        help="which weights (default best)",
    )
    parser.add_argument(
        "--batch-size", type=int, default=8, help="windows per forward pass (default 8)"
    )
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or mps (default auto)")
    parser.add_argument("--json", action="store_true", help="print the result as one JSON object")
    parser.set_defaults(run=run, command="eval")


def run(args: argparse.Namespace) -> int:
    from gptlab.data.text import TokenData, resolve_text, tokenize_corpus
    from gptlab.device import resolve_device
    from gptlab.errors import ConfigError
    from gptlab.evaluation import perplexity
    from gptlab.pretrained import load_model

    if args.batch_size < 1:
        raise ConfigError(f"--batch-size must be positive, got {args.batch_size}")
    device = resolve_device(args.device)
    model, tokenizer, info = load_model(args.model, device, args.checkpoint)
    if args.data:
        source = str(resolve_text(args.data))
        tokens = tokenize_corpus(resolve_text(args.data), tokenizer)
    elif "data" not in info.get("config", {}).get("data", {}):
        raise ConfigError(
            f"{args.model} has no training data to take a validation split from: pass --data FILE"
        )
    else:
        data = info["config"]["data"]
        source = f"{data['data']} (validation split)"
        tokens = TokenData.from_file(
            resolve_text(data["data"]), tokenizer, data.get("val_fraction", 0.1)
        ).val
    result = perplexity(
        model, tokens, model.config.context_length, args.batch_size, device, progress=not args.json
    )
    result["data"] = source
    if args.json:
        print(json.dumps(result))
    else:
        print(
            f"{source}: loss {result['loss']:.4f}, perplexity {result['perplexity']:.3f} over {result['tokens']:,} tokens"
        )
    return 0

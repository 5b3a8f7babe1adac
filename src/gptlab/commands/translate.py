"""`gptlab translate`: run an encoder-decoder run on text, greedy or with beam search."""

from __future__ import annotations

import argparse
import sys

EXAMPLES = """\
examples:
  gptlab translate runs/reverse "31415926"                  # greedy
  gptlab translate runs/reverse "31415926" --beam 5          # beam search of width 5
  gptlab translate runs/add "314+27" "999+1"                 # several texts: 0341, 1000
  gptlab translate runs/reverse --file in.txt --out out.txt  # one text a line
"""


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "translate",
        help="run an encoder-decoder (seq2seq) run on text",
        description="Encode each text once and decode its output greedily or with beam search. "
        "Each output may be at most EXTRA + RATIO * (source tokens) tokens long.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("model", metavar="RUN_DIR", help="a run of `gptlab seq2seq train`")
    parser.add_argument("texts", nargs="*", metavar="TEXT", help="the texts to translate")
    parser.add_argument("--file", help="a text file to translate, one text a line")
    parser.add_argument("--out", help="with --file: write the outputs here (default: stdout)")
    parser.add_argument(
        "--beam", type=int, default=1, help="beam width (default 1: greedy decoding)"
    )
    parser.add_argument(
        "--length-penalty",
        type=float,
        default=1.0,
        help="a finished beam scores log p / length ** this (default 1.0; 0 favours short)",
    )
    parser.add_argument(
        "--max-length-ratio",
        type=float,
        default=1.5,
        help="RATIO of the length limit (default 1.5)",
    )
    parser.add_argument(
        "--max-length-extra", type=int, default=10, help="EXTRA of the length limit (default 10)"
    )
    parser.add_argument("--batch-size", type=int, default=64, help="texts a batch (default 64)")
    parser.add_argument(
        "--checkpoint", choices=["best", "last"], default="best", help="which weights"
    )
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or mps (default auto)")
    parser.set_defaults(run=run, command="translate")


def run(args: argparse.Namespace) -> int:
    from gptlab.errors import ConfigError, DataError

    if args.file and args.texts:
        raise ConfigError("give TEXT arguments or --file, not both")
    if args.out and not args.file:
        raise ConfigError("--out goes with --file")
    if args.beam < 1 or args.batch_size < 1:
        raise ConfigError("--beam and --batch-size must be at least 1")
    if args.file:
        try:
            with open(args.file, encoding="utf-8") as file:
                texts = [line.rstrip("\n") for line in file]
        except (OSError, UnicodeDecodeError) as error:
            raise DataError(f"cannot read {args.file}: {error}") from None
        if not texts:
            raise DataError(f"{args.file} is empty: nothing to translate")
    elif args.texts:
        texts = args.texts
    else:
        raise ConfigError("give a TEXT to translate, or --file FILE")

    from gptlab.device import resolve_device
    from gptlab.tasks.seq2seq import load_seq2seq_run, source_preparer, translate_texts

    device = resolve_device(args.device)
    model, src_tokenizer, tgt_tokenizer, config = load_seq2seq_run(
        args.model, device, args.checkpoint
    )
    outputs = translate_texts(
        model,
        src_tokenizer,
        tgt_tokenizer,
        texts,
        prepare=source_preparer(config),
        num_beams=args.beam,
        length_penalty=args.length_penalty,
        max_length_ratio=args.max_length_ratio,
        max_length_extra=args.max_length_extra,
        batch_size=args.batch_size,
        device=device,
    )
    if args.out:
        from gptlab.atomic import atomic_write

        with atomic_write(args.out, "w") as file:
            file.write("".join(output + "\n" for output in outputs))
        print(f"wrote {len(outputs)} translations to {args.out}", file=sys.stderr)
    else:
        for output in outputs:
            print(output)
    return 0

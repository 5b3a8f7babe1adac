"""`gptlab fill-mask`: the most likely fillers of each [MASK] in a text, by a masked-language
model (a run of `gptlab train --objective mlm`, or an imported BERT)."""

from __future__ import annotations

import argparse

from gptlab.errors import ConfigError

EXAMPLES = """\
examples:
  gptlab fill-mask runs/mlm "The [MASK] of Denmark"
  gptlab fill-mask runs/mlm-char "KING RICH[MASK]RD" --top-k 3
  gptlab fill-mask runs/mlm "To be, or not to [MASK], that is the [MASK]" --top-k 10
"""


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "fill-mask",
        help="the likeliest fillers of each [MASK] in a text, by a masked-language model",
        description="Print the top-k fillers of each [MASK] in TEXT with their probabilities, "
        "as a masked-language model (gptlab train --objective mlm) predicts them. All masks "
        "are predicted at once, each without knowing the others' fillers.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("model", metavar="RUN", help="a masked-language-model run directory")
    parser.add_argument("text", metavar="TEXT", help="text with one or more [MASK]")
    parser.add_argument("--top-k", type=int, default=5, help="fillers per mask (default 5)")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or mps")
    parser.set_defaults(run=run, command="fill-mask")


def fill_mask(model, tokenizer, text: str, top_k: int = 5) -> list[list[tuple[int, float]]]:
    """For each [MASK] of `text`, in order, its `top_k` (filler id, probability) pairs.
    Special tokens are never offered as fillers."""
    import torch

    from gptlab.tokenizers import MASK_TOKEN

    if tokenizer.mask_id is None:
        raise ConfigError("this model's tokenizer has no [MASK] token")
    if MASK_TOKEN not in text:
        raise ConfigError(f"the text has no {MASK_TOKEN} to fill")
    ids = tokenizer.encode(text)
    positions = [i for i, token in enumerate(ids) if token == tokenizer.mask_id]
    top_k = min(top_k, tokenizer.vocab_size - len(tokenizer.special_ids))
    device = next(model.parameters()).device
    with torch.no_grad():
        logits, _ = model(torch.tensor([ids], device=device))  # (1, T, V)
    logits = logits[0, positions].float()  # (M, V)
    logits[:, tokenizer.special_ids] = float("-inf")
    probs, best = torch.softmax(logits, dim=-1).topk(top_k, dim=-1)  # (M, k)
    return [
        [(int(i), float(p)) for p, i in zip(row_p, row_i, strict=True)]
        for row_p, row_i in zip(probs, best, strict=True)
    ]


def run(args: argparse.Namespace) -> int:
    from gptlab.device import resolve_device
    from gptlab.pretrained import load_model

    if args.top_k < 1:
        raise ConfigError(f"--top-k must be at least 1, got {args.top_k}")
    model, tokenizer, _ = load_model(args.model, resolve_device(args.device), task="mlm")
    fillers = fill_mask(model, tokenizer, args.text, args.top_k)
    ids = tokenizer.encode(args.text)
    for n, candidates in enumerate(fillers, 1):
        if len(fillers) > 1:
            print(f"[MASK] {n}:")
        for filler, probability in candidates:
            line = f"  {probability:7.2%}  {tokenizer.decode([filler])!r}"
            if len(fillers) == 1:  # the text it makes: the ids decoded with the filler in place
                filled = [filler if i == tokenizer.mask_id else i for i in ids]
                line += f"  {tokenizer.decode(filled)!r}"
            print(line)
    return 0

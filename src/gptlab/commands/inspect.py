"""`gptlab inspect`: look inside a language model (logit lens, attention heads, direct logit
attribution, activation patching, head ablation), each written as a PNG and, with --json, as
numbers on stdout."""

from __future__ import annotations

import argparse
import json
import sys

EXAMPLES = """\
examples:
  gptlab inspect logit-lens runs/shakespeare-cpu --prompt "ROMEO: But soft" --out lens.png
  gptlab inspect logit-lens gpt2 --prompt "The Eiffel Tower is in the city of" --top-k 3 --json
  gptlab inspect heads runs/shakespeare-cpu --out heads.png               # random tokens, twice
  gptlab inspect heads runs/shakespeare-cpu --prompt "ROMEO: hi. ROMEO: hi." --out heads.png
  gptlab inspect attribute gpt2 --prompt "The Eiffel Tower is in" --token " Paris" --versus " Rome"
  gptlab inspect patch gpt2 --prompt "The Eiffel Tower is in" --corrupt "The Colosseum is in" --answer " Paris" --wrong " Rome"
  gptlab inspect ablate runs/shakespeare-cpu --data tinyshakespeare --method mean --out ablate.png
"""

MODEL_HELP = "a run directory, a Hugging Face GPT-2 folder, or a model name (gpt2, ...)"

ANALYSES = {
    "logit-lens": (
        "the top next tokens read from the residual stream after each layer",
        "Read the residual stream after each layer with the model's final LayerNorm and "
        "unembedding: the top next token at each position, and how sure the model is of it.",
    ),
    "heads": (
        "previous-token, first-token and induction scores of every attention head",
        "Score every head on random tokens repeated twice (Olsson et al. 2022): attention to "
        "the previous token, to the first token, and to the token after the last occurrence of "
        "the current one (induction). With --prompt, the top head of each score is drawn on it.",
    ),
    "attribute": (
        "direct logit attribution of every head and MLP to a token",
        "How much each head, MLP and the embeddings write, directly, toward --token (minus "
        "--versus) at a position of the prompt; ln_f's scale is frozen at the final stream.",
    ),
    "patch": (
        "activation patching from a clean prompt into a corrupted one",
        "Copy the residual stream at each (layer, position), and each head's output, from the "
        "clean --prompt's run into the --corrupt prompt's run, and show how much of the "
        "difference in --answer (against --wrong) each patch restores. Both prompts must be "
        "the same number of tokens.",
    ),
    "ablate": (
        "the loss change on a corpus when each head is zeroed or mean-ablated",
        "Remove each attention head in turn (its output set to zero, or to its mean over the "
        "text) and measure the loss on windows of --data.",
    ),
}


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "inspect",
        help="look inside a model: logit lens, heads, attribution, patching, ablation",
        description="Interpretability analyses of a language model, each written as a PNG "
        "figure (and as JSON numbers with --json).",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    analyses = parser.add_subparsers(title="analyses", metavar="ANALYSIS", dest="analysis")
    analyses.required = True
    lens = _add_analysis(analyses, "logit-lens", prompt_required=True)
    lens.add_argument("--top-k", type=int, default=5, help="tokens kept per cell (default 5)")

    heads = _add_analysis(analyses, "heads", prompt_required=False)
    heads.add_argument(
        "--length", type=int, default=50, help="random tokens in each copy (default 50)"
    )
    heads.add_argument("--batch", type=int, default=8, help="random sequences (default 8)")
    heads.add_argument("--seed", type=int, default=0, help="seed of the random tokens")

    attribute = _add_analysis(analyses, "attribute", prompt_required=True)
    attribute.add_argument("--token", required=True, help="the token whose logit to attribute")
    attribute.add_argument("--versus", help="a second token: attribute the logit difference")
    attribute.add_argument(
        "--position", type=int, default=-1, help="the position read (default -1, the last)"
    )

    patch = _add_analysis(analyses, "patch", prompt_required=True, prompt_help="the clean prompt")
    patch.add_argument("--corrupt", required=True, help="the corrupted prompt, same length")
    patch.add_argument("--answer", required=True, help="the clean prompt's answer, one token")
    patch.add_argument(
        "--wrong", help="the corrupted prompt's answer: measure the logit difference"
    )

    ablate = _add_analysis(analyses, "ablate", prompt_required=None)
    ablate.add_argument(
        "--data",
        default="tinyshakespeare",
        help="a text file or dataset name (default tinyshakespeare); its validation end is read",
    )
    ablate.add_argument(
        "--method",
        choices=["zero", "mean"],
        default="zero",
        help="a head's output set to zero (default) or to its mean over the text",
    )
    ablate.add_argument("--batches", type=int, default=4, help="batches of windows (default 4)")
    ablate.add_argument("--batch-size", type=int, default=8, help="windows a batch (default 8)")
    ablate.add_argument(
        "--block", type=int, default=None, help="tokens a window (default: the model's context)"
    )
    parser.set_defaults(run=run, command="inspect")


def _add_analysis(analyses, name, prompt_required, prompt_help="the text to look at"):
    summary, description = ANALYSES[name]
    examples = [line for line in EXAMPLES.splitlines() if f"gptlab inspect {name} " in line]
    parser = analyses.add_parser(
        name,
        help=summary,
        description=description,
        epilog="examples:\n" + "\n".join(examples),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("model", metavar="MODEL", help=MODEL_HELP)
    if prompt_required is not None:
        parser.add_argument("--prompt", required=prompt_required, help=prompt_help)
    parser.add_argument("--out", default=f"{name}.png", help=f"PNG to write (default {name}.png)")
    parser.add_argument("--json", action="store_true", help="also print the numbers as JSON")
    parser.add_argument(
        "--checkpoint",
        choices=["best", "last"],
        default="best",
        help="a run's best or last weights",
    )
    parser.add_argument("--device", default="cpu", help="cpu (default), cuda, mps or auto")
    return parser


def run(args: argparse.Namespace) -> int:
    from gptlab.device import resolve_device
    from gptlab.pretrained import load_model
    from gptlab.viz.figure import checked_png_path, save_png

    checked_png_path(args.out)
    _check_counts(args)
    device = resolve_device(args.device)
    model, tokenizer, _ = load_model(args.model, device, args.checkpoint, task="lm")
    result, figure = ANALYSE[args.analysis](args, model, tokenizer)
    path = save_png(figure, args.out)
    if args.json:
        print(json.dumps(result.to_dict()))
    print(f"wrote {path}", file=sys.stderr)
    return 0


def _check_counts(args: argparse.Namespace) -> None:
    from gptlab.errors import ConfigError

    for flag in ("top_k", "length", "batch", "batches", "batch_size", "block"):
        value = getattr(args, flag, None)
        if value is not None and value < 1:
            raise ConfigError(f"--{flag.replace('_', '-')} must be at least 1, got {value}")


def _logit_lens(args, model, tokenizer):
    from gptlab.interpret.lens import logit_lens, logit_lens_figure

    lens = logit_lens(model, tokenizer, args.prompt, args.top_k)
    return lens, logit_lens_figure(lens)


def _heads(args, model, tokenizer):
    from gptlab.interpret.heads import SCORES, head_scores, head_scores_figure
    from gptlab.interpret.hooks import prompt_ids, run_with_cache

    scores = head_scores(model, args.length, args.batch, args.seed)
    patterns, tokens = None, None
    if args.prompt is not None:
        ids = prompt_ids(model, tokenizer, args.prompt)
        _, cache = run_with_cache(model, ids, "blocks.*.attn.pattern")
        patterns = {}
        for score in SCORES:
            layer, head, value = scores.best(score)
            title = f"top {score.replace('_', '-')}: layer {layer}, head {head}"
            patterns[title] = cache[f"blocks.{layer}.attn.pattern"][0, head].cpu()
        tokens = [tokenizer.decode([i]) for i in ids[0].tolist()]
    return scores, head_scores_figure(scores, patterns, tokens)


def _attribute(args, model, tokenizer):
    from gptlab.interpret.attribution import attribution_figure, direct_logit_attribution

    attribution = direct_logit_attribution(
        model, tokenizer, args.prompt, args.token, args.versus, args.position
    )
    tokens = [tokenizer.decode([i]) for i in tokenizer.encode(args.prompt)]
    return attribution, attribution_figure(attribution, tokens)


def _patch(args, model, tokenizer):
    from gptlab.interpret.attribution import single_token
    from gptlab.interpret.patching import activation_patching, patching_figure

    answer = single_token(tokenizer, args.answer, "--answer")
    wrong = None if args.wrong is None else single_token(tokenizer, args.wrong, "--wrong")
    patching = activation_patching(
        model, tokenizer, args.prompt, args.corrupt, answer, wrong, progress=True
    )
    return patching, patching_figure(patching)


def _ablate(args, model, tokenizer):
    from gptlab.data.text import TokenData, resolve_text
    from gptlab.interpret.patching import ablation_figure, head_ablation

    block = args.block or model.config.context_length
    if block > model.config.context_length:
        from gptlab.errors import ContextLengthError

        raise ContextLengthError(
            f"--block {block} is longer than the model's context of {model.config.context_length}"
        )
    device = next(model.parameters()).device
    data = TokenData.from_file(resolve_text(args.data), tokenizer)
    batches = data.eval_batches("val", args.batch_size, block, args.batches, device)
    ablation = head_ablation(model, batches, args.method, progress=True)
    return ablation, ablation_figure(ablation)


ANALYSE = {
    "logit-lens": _logit_lens,
    "heads": _heads,
    "attribute": _attribute,
    "patch": _patch,
    "ablate": _ablate,
}

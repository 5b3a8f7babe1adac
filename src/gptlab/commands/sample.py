"""`gptlab sample`: generate text from a trained model, streamed to the terminal."""

from __future__ import annotations

import argparse
import sys

EXAMPLES = """\
examples:
  gptlab sample runs/shakespeare-cpu --prompt "ROMEO:" --max-new-tokens 300
  gptlab sample runs/shakespeare-cpu --greedy
  gptlab sample runs/shakespeare-cpu --temperature 0.8 --top-k 40 --num-samples 3 --seed 7
  gptlab sample runs/shakespeare-cpu --top-p 0.9 --repetition-penalty 1.2 --stop "\\n\\n"
  gptlab sample runs/shakespeare-cpu --strategy beam --num-beams 4
  gptlab sample runs/shakespeare-cpu --compare --prompt "KING:"   # several strategies side by side
  gptlab sample runs/instruct --instruction "Name the capital of France."   # an instruction run
  gptlab sample runs/instruct --instruction "Translate to German." --input "Good morning"
  gptlab sample gpt2-xl --greedy --draft gpt2 --prompt "The"   # speculative: gpt2 drafts, same text
"""


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "sample",
        help="generate text from a model",
        description="Generate text from a model, streaming it as it comes. Sampling draws each token "
        "from the model's distribution (reshaped by temperature, top-k, top-p, min-p); greedy takes "
        "the most likely token; beam search keeps the N most likely continuations.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "model",
        metavar="MODEL",
        help="a run directory, a Hugging Face GPT-2 folder, or a model name (gpt2, gpt2-medium, ...)",
    )
    parser.add_argument(
        "--prompt",
        default=None,
        help="text to continue (default: a newline, or GPT-2's <|endoftext|>)",
    )
    parser.add_argument(
        "--instruction",
        default=None,
        help="an instruction run only: the instruction, put in the prompt format the run was "
        "trained with; prints only the response (greedy unless --strategy says otherwise)",
    )
    parser.add_argument(
        "--input", default=None, help="with --instruction: the input the instruction is about"
    )
    parser.add_argument(
        "--num-samples", type=int, default=1, help="how many continuations (default 1)"
    )
    parser.add_argument(
        "--max-new-tokens",
        type=int,
        default=256,
        help="tokens to generate per sample (default 256)",
    )
    parser.add_argument(
        "--seed", type=int, default=1337, help="random seed; sample i uses seed + i (default 1337)"
    )
    parser.add_argument(
        "--strategy",
        choices=["sample", "greedy", "beam"],
        default=None,
        help="decoding strategy (default sample; greedy with --instruction)",
    )
    parser.add_argument(
        "--greedy",
        action="store_true",
        help="same as --strategy greedy: always the most likely token",
    )
    parser.add_argument(
        "--temperature",
        type=float,
        default=1.0,
        help="divide logits by T: <1 sharper, >1 flatter, 0 greedy (default 1)",
    )
    parser.add_argument(
        "--top-k", type=int, default=None, help="sample only among the K most likely tokens"
    )
    parser.add_argument(
        "--top-p",
        type=float,
        default=None,
        help="sample from the smallest set of tokens whose probability reaches P",
    )
    parser.add_argument(
        "--min-p",
        type=float,
        default=None,
        help="drop tokens less likely than P times the most likely one",
    )
    parser.add_argument(
        "--repetition-penalty",
        type=float,
        default=1.0,
        help="make tokens already in the text less likely (>1) (default 1)",
    )
    parser.add_argument(
        "--no-repeat-ngram-size",
        type=int,
        default=0,
        help="never repeat an n-gram of this size (default off)",
    )
    parser.add_argument(
        "--num-beams", type=int, default=4, help="beams for --strategy beam (default 4)"
    )
    parser.add_argument(
        "--length-penalty",
        type=float,
        default=1.0,
        help="beam score = log-prob / length^penalty (default 1)",
    )
    parser.add_argument(
        "--early-stopping",
        action="store_true",
        help="beam search stops once num-beams hypotheses are done",
    )
    parser.add_argument(
        "--stop",
        action="append",
        default=[],
        metavar="TEXT",
        help="stop when this text appears (repeatable; \\n allowed)",
    )
    parser.add_argument(
        "--overflow",
        choices=["stop", "slide"],
        default=None,
        help="past the model's context: slide the window over the last tokens, or stop with a note "
        "(default slide; stop with --draft, which cannot slide)",
    )
    parser.add_argument(
        "--compare",
        action="store_true",
        help="decode the prompt with greedy, sampling, top-k/top-p and beam, one after another",
    )
    parser.add_argument(
        "--checkpoint",
        choices=["best", "last"],
        default="best",
        help="which weights of a run (default best)",
    )
    parser.add_argument(
        "--draft",
        metavar="MODEL",
        help="speculative decoding (greedy only, up to the model's context): a smaller model "
        "with the same tokenizer proposes tokens that MODEL checks several at a time; the text "
        "is MODEL's own",
    )
    parser.add_argument(
        "--draft-tokens",
        type=int,
        default=4,
        help="with --draft: tokens the draft proposes per round (default 4)",
    )
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or mps (default auto)")
    parser.set_defaults(run=run, command="sample")


def run(args: argparse.Namespace) -> int:
    from gptlab.device import resolve_device
    from gptlab.errors import ConfigError
    from gptlab.pretrained import load_model

    if args.num_samples < 1:
        raise ConfigError(f"--num-samples must be at least 1, got {args.num_samples}")
    if args.max_new_tokens < 1:
        raise ConfigError(f"--max-new-tokens must be at least 1, got {args.max_new_tokens}")
    if (args.input is not None or args.instruction is not None) and not (
        args.instruction or ""
    ).strip():
        raise ConfigError("--input needs an --instruction, and --instruction must not be empty")
    if args.instruction is not None and (args.prompt is not None or args.compare):
        raise ConfigError("--instruction makes the prompt: drop --prompt and --compare")
    base = generation_config(args)  # validates every decoding flag before the model loads
    if args.draft is not None:
        if args.compare or args.num_samples > 1:
            raise ConfigError("--draft decodes one greedy text: drop --compare and --num-samples")
        if args.draft_tokens < 1:
            raise ConfigError(f"--draft-tokens must be at least 1, got {args.draft_tokens}")
    device = resolve_device(args.device)
    model, tokenizer, info = load_model(args.model, device, args.checkpoint, task="lm")
    if args.draft is not None:
        from gptlab.generation import Decoder
        from gptlab.generation.speculative import check_speculative

        draft_model = load_model(args.draft, device, task="lm")[0]
        check_speculative(base, model, draft_model, 1)
        args.draft_decoder = Decoder(draft_model)
    if args.instruction is not None:
        return _instruction(args, model, tokenizer, info, base)
    prompt = args.prompt
    if prompt is None:
        prompt = tokenizer.decode([tokenizer.eos_id]) if tokenizer.eos_id is not None else "\n"
    prompt = prompt.encode().decode("unicode_escape") if "\\" in prompt else prompt
    if args.compare:
        for label, config in compare_configs(base):
            _print_header(label)
            _stream_one(model, tokenizer, prompt, config)
        return 0
    for i in range(args.num_samples):
        if args.num_samples > 1:
            _print_header(f"sample {i + 1} of {args.num_samples}")
        _stream_one(
            model,
            tokenizer,
            prompt,
            _replace(base, seed=args.seed + i),
            draft=getattr(args, "draft_decoder", None),
            draft_tokens=args.draft_tokens,
        )
    return 0


def generation_config(args: argparse.Namespace):
    from gptlab.generation import GenerationConfig

    stops = tuple(s.encode().decode("unicode_escape") for s in args.stop)
    strategy = args.strategy or ("greedy" if args.instruction is not None else "sample")
    return GenerationConfig(
        max_new_tokens=args.max_new_tokens,
        strategy="greedy" if args.greedy else strategy,
        temperature=args.temperature,
        top_k=args.top_k,
        top_p=args.top_p,
        min_p=args.min_p,
        repetition_penalty=args.repetition_penalty,
        no_repeat_ngram_size=args.no_repeat_ngram_size,
        num_beams=args.num_beams,
        length_penalty=args.length_penalty,
        early_stopping=args.early_stopping,
        stop=stops,
        seed=args.seed,
        overflow=args.overflow or ("stop" if args.draft else "slide"),
    )


def _instruction(args, model, tokenizer, info, base) -> int:
    """The response of an instruction run to --instruction (and --input), in the prompt format it
    was trained with, cut at its end-of-text or at the next "###" header it starts."""
    from gptlab.errors import ConfigError
    from gptlab.tasks.instruction import instruction_prompt, is_instruction_run, response_config

    # Only instruction runs: any other model would get a prompt it was never trained on, and
    # answer it as text to continue. --prompt with the formatted text does that on purpose.
    if not is_instruction_run(info):
        raise ConfigError(
            f"{args.model} is not an instruction run: --instruction needs one (make it with "
            f"`gptlab finetune instruct {args.model} --out RUN`), or write the prompt with --prompt"
        )
    prompt = instruction_prompt(info["config"], args.instruction, args.input or "")
    config = response_config(base)
    for i in range(args.num_samples):
        if args.num_samples > 1:
            _print_header(f"sample {i + 1} of {args.num_samples}")
        _stream_one(
            model,
            tokenizer,
            prompt,
            _replace(config, seed=args.seed + i),
            echo=False,
            draft=getattr(args, "draft_decoder", None),
            draft_tokens=args.draft_tokens,
        )
    return 0


def compare_configs(base) -> list[tuple[str, object]]:
    """The strategies `--compare` shows, each a variation of the user's settings."""
    return [
        ("greedy", _replace(base, strategy="greedy")),
        (
            f"sample, temperature {base.temperature}",
            _replace(base, strategy="sample", top_k=None, top_p=None),
        ),
        (
            "sample, top-k 40, temperature 0.8",
            _replace(base, strategy="sample", top_k=40, top_p=None, temperature=0.8),
        ),
        ("sample, top-p 0.9", _replace(base, strategy="sample", top_k=None, top_p=0.9)),
        (f"beam search, {base.num_beams} beams", _replace(base, strategy="beam")),
    ]


def _replace(config, **changes):
    import dataclasses

    return dataclasses.replace(config, **changes)


def _print_header(label: str) -> None:
    print(f"\n----- {label} -----", flush=True)


def _stream_one(
    model, tokenizer, prompt: str, config, echo: bool = True, draft=None, draft_tokens: int = 4
) -> None:
    import warnings

    from gptlab.generation import stream
    from gptlab.generation.speculative import DraftStats

    # generation's notes (e.g. "stopped at the context length") as one line, not a warning dump
    warnings.showwarning = lambda message, *rest, **kw: print(
        f"\ngptlab sample: {message}", file=sys.stderr
    )
    if echo:
        sys.stdout.write(prompt)
    stats = DraftStats()
    extra = {} if draft is None else {"draft": draft, "draft_tokens": draft_tokens, "stats": stats}
    for piece in stream(model, tokenizer, prompt, config, **extra):
        sys.stdout.write(piece)
        sys.stdout.flush()
    sys.stdout.write("\n")
    sys.stdout.flush()
    if draft is not None:
        print(f"gptlab sample: {stats.describe()}", file=sys.stderr)

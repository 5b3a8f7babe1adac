"""`gptlab demo`: a local web page to prompt a model, tune its decoding and see why it wrote what it did."""

from __future__ import annotations

import argparse

EXAMPLES = """\
examples:
  gptlab demo runs/shakespeare-cpu                 # then open http://127.0.0.1:7860
  gptlab demo                                      # pick among the runs found under runs/
  gptlab demo gpt2 --device cuda                   # a pretrained GPT-2 (downloaded once)
  gptlab demo runs/spam                            # a classifier: its Classify tab
  gptlab demo --models-dir experiments --port 8000
  gptlab demo runs/shakespeare-cpu --host 0.0.0.0 --concurrency 4 --max-new-tokens-cap 256

The server listens on 127.0.0.1 (this machine only) unless --host says otherwise; then the
model picker offers only the models listed at start, since a typed path would read the host's
files.
"""

LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "demo",
        help="a local web app: prompt, decoding controls, streamed text, next-token explorer",
        description="Serve a web page where you type a prompt, set the decoding (greedy, sampling, "
        "beam; temperature, top-k, top-p, repetition penalty) and watch the text stream; compare two "
        "settings side by side; see how likely each new token was and what the model would say next. "
        "A classifier (gptlab finetune classify) gets a Classify tab: text in, class probabilities out.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "model",
        metavar="MODEL",
        nargs="?",
        default=None,
        help="a run directory, a GPT-2 name (gpt2, ...) or a Hugging Face folder "
        "(default: the first run found under --models-dir)",
    )
    parser.add_argument(
        "--models-dir",
        default="runs",
        metavar="DIR",
        help="where the model picker looks for run directories (default runs/)",
    )
    parser.add_argument(
        "--host",
        default="127.0.0.1",
        help="address to listen on; 0.0.0.0 serves the whole network (default 127.0.0.1)",
    )
    parser.add_argument("--port", type=int, default=7860, help="port to listen on (default 7860)")
    parser.add_argument(
        "--max-prompt-chars",
        type=int,
        default=2000,
        metavar="N",
        help="longest prompt, or text to classify, a request may send (default 2000)",
    )
    parser.add_argument(
        "--max-new-tokens-cap",
        type=int,
        default=512,
        metavar="N",
        help="most new tokens a request may ask for (default 512)",
    )
    parser.add_argument(
        "--concurrency",
        type=int,
        default=2,
        metavar="N",
        help="model calls that run at once; the others wait in the queue (default 2)",
    )
    parser.add_argument(
        "--queue-size",
        type=int,
        default=64,
        metavar="N",
        help="requests that may wait; more are turned away with a message (default 64)",
    )
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or mps (default auto)")
    parser.set_defaults(run=run, command="demo")


def run(args: argparse.Namespace) -> int:
    import importlib.util

    from gptlab.demo.models import ModelStore, find_models, model_choices
    from gptlab.demo.settings import DemoLimits
    from gptlab.device import resolve_device
    from gptlab.errors import ConfigError

    if not 1 <= args.port <= 65535:
        raise ConfigError(f"--port must be in 1..65535, got {args.port}")
    limits = DemoLimits(
        max_prompt_chars=args.max_prompt_chars,
        max_new_tokens_cap=args.max_new_tokens_cap,
        concurrency=args.concurrency,
        queue_size=args.queue_size,
    )
    store = ModelStore(resolve_device(args.device))
    choices = model_choices(args.models_dir, args.model)
    default = args.model or next(iter(find_models(args.models_dir)), None)
    if args.model:
        store.get(args.model)  # a MODEL that cannot load is an error here, before serving

    if importlib.util.find_spec("gradio") is None:
        raise ConfigError("gptlab demo needs gradio: install it with `uv sync --extra demo`")
    from gptlab.demo.app import DemoApp, serve  # imports gradio: only once all else is good

    page = DemoApp(
        store, limits, choices, default, allow_any_model=args.host in LOOPBACK_HOSTS
    ).build()
    print(f"gptlab demo: serving {default or 'no model yet'} on http://{args.host}:{args.port}")
    try:
        serve(page, args.host, args.port)
    except OSError as error:  # the port is taken, or the address is not this machine's
        raise ConfigError(f"cannot serve on {args.host}:{args.port}: {error}") from None
    return 0

"""`gptlab serve`: answer OpenAI-style HTTP requests with a model, many at once."""

from __future__ import annotations

import argparse
import os
import sys

EXAMPLES = """\
examples:
  gptlab serve runs/shakespeare-cpu                      # http://127.0.0.1:8000/v1
  gptlab serve runs/instruct --port 8080 --max-batch 32  # chat too: an instruction run
  GPTLAB_API_KEY=secret gptlab serve gpt2 --host 0.0.0.0 # others may ask, with the key

  curl http://127.0.0.1:8000/v1/completions -H 'Content-Type: application/json' \\
       -d '{"model": "shakespeare-cpu", "prompt": "ROMEO:", "max_tokens": 50}'
  curl http://127.0.0.1:8000/v1/completions -H 'Content-Type: application/json' \
       -d '{"model": "shakespeare-cpu", "prompt": "ROMEO:", "num_beams": 4, "n": 2}'
"""


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "serve",
        help="serve a model over HTTP with OpenAI's API",
        description="Serve a model over HTTP with OpenAI's API (completions; chat completions for "
        "instruction runs; streaming; logprobs; gptlab's own options, beam search included), "
        "decoding concurrent requests together in one batch. Metrics at /metrics, liveness at /health. Ctrl-C lets running requests finish, "
        "then stops.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "model",
        metavar="MODEL",
        help="a run directory, a Hugging Face GPT-2 folder, or a model name (gpt2, gpt2-medium, ...)",
    )
    parser.add_argument(
        "--host",
        default="127.0.0.1",
        help="address to listen on (default 127.0.0.1: this machine only; 0.0.0.0: everyone)",
    )
    parser.add_argument("--port", type=int, default=8000, help="port (default 8000)")
    parser.add_argument(
        "--api-key",
        default=None,
        help="require `Authorization: Bearer KEY` (default: the GPTLAB_API_KEY environment "
        "variable; none if unset)",
    )
    parser.add_argument(
        "--model-name",
        default=None,
        help="the name clients ask for (default: MODEL's last path component)",
    )
    parser.add_argument(
        "--max-batch",
        type=int,
        default=None,
        help="sequences decoded together, and the most beams a beam search may ask for "
        "(default 32 on a GPU, 8 on the CPU)",
    )
    parser.add_argument(
        "--max-queue",
        type=int,
        default=256,
        help="sequences that may wait for a place in the batch; more get HTTP 429 (default 256)",
    )
    parser.add_argument(
        "--compile",
        action="store_true",
        help="compile the decode step with CUDA graphs (GPU; the first requests wait for it)",
    )
    parser.add_argument(
        "--checkpoint",
        choices=["best", "last"],
        default="best",
        help="which weights of a run (default best)",
    )
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or mps (default auto)")
    parser.add_argument(
        "--dtype",
        default="auto",
        help="float32, bfloat16, float16, or auto: bfloat16 on a GPU that has it (default)",
    )
    parser.set_defaults(run=run, command="serve")


def run(args: argparse.Namespace) -> int:
    from gptlab.serve.server import ServeConfig, check_serving_dependencies, served_name

    check_serving_dependencies()
    from gptlab.device import resolve_device, resolve_dtype

    device = resolve_device(args.device)
    dtype = resolve_dtype(args.dtype, device)
    config = ServeConfig(  # checks every flag before the model loads
        host=args.host,
        port=args.port,
        api_key=args.api_key if args.api_key is not None else os.environ.get("GPTLAB_API_KEY"),
        max_batch=args.max_batch
        if args.max_batch is not None
        else (32 if device.type == "cuda" else 8),
        max_queue=args.max_queue,
        compile=args.compile,
        model_name=args.model_name or served_name(args.model),
    )
    from gptlab.pretrained import load_model
    from gptlab.serve.server import build_app, run_server

    model, tokenizer, info = load_model(args.model, device, args.checkpoint, task="lm")
    if "quantization" not in info.get("config", {}):  # quantized weights keep their own types
        model.to(dtype)
    if config.public and config.api_key is None:
        print(
            f"gptlab serve: warning: listening on {config.host} without an API key: anyone who "
            "can reach this machine can use the model (set --api-key or GPTLAB_API_KEY)",
            file=sys.stderr,
        )
    app = build_app(model, tokenizer, info, config)
    print(
        f"gptlab serve: {config.model_name} on http://{config.host}:{config.port}/v1 "
        f"(batch {config.max_batch}, queue {config.max_queue}, {device}, {dtype}); Ctrl-C stops",
        file=sys.stderr,
    )
    run_server(app, config)
    return 0

"""Decode speed of the ONNX export under ONNX Runtime against gptlab itself, on the CPU.

Both decode greedily the same prompt for the same number of new tokens, with the same random
weights of --preset's shape (gpt2 by default), in float32, batch 1, timed in alternation; the
table gives medians. gptlab's row is `generate` (its static KV cache, written in place); ONNX
Runtime's runs the exported step (`gptlab.export.onnx`), whose cache goes in and out of the
graph at every step. The export's greedy tokens are checked equal to gptlab's first.

    uv run python benchmarks/export.py                   # gpt2 shape: the export takes minutes
    uv run python benchmarks/export.py --preset gpt2-mini --new-tokens 32
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add = parser.add_argument
    add("--preset", default="gpt2", help="model shape (default gpt2, 124M parameters)")
    add("--prompt-len", type=int, default=32, help="prompt tokens (default 32)")
    add("--new-tokens", type=int, default=64, help="new tokens (default 64)")
    add("--reps", type=int, default=3, help="timed repetitions (default 3)")
    add("--threads", type=int, help="CPU threads for both (default: torch's choice)")
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    import onnxruntime
    import torch

    from gptlab.config import GPTConfig
    from gptlab.export.onnx import export_onnx, onnx_session, session_step
    from gptlab.export.step import empty_cache, greedy
    from gptlab.generation import GenerationConfig, generate
    from gptlab.models.gpt import GPT

    if args.threads:
        torch.set_num_threads(args.threads)
    threads = torch.get_num_threads()
    torch.manual_seed(0)
    model = GPT(GPTConfig.from_preset(args.preset, dropout=0.0)).eval()
    prompt = torch.randint(model.config.vocab_size, (1, args.prompt_len))
    config = GenerationConfig(max_new_tokens=args.new_tokens, strategy="greedy")
    with tempfile.TemporaryDirectory() as scratch:
        start = time.perf_counter()
        path = export_onnx(model, Path(scratch) / "model.onnx")
        export_seconds = time.perf_counter() - start
        step = session_step(onnx_session(path, threads=threads))

        def run_onnx():
            return greedy(step, prompt, args.new_tokens, *empty_cache(model))[0][0].tolist()

        def run_gptlab():
            return generate(model, prompt.tolist(), config)[0]

        assert run_onnx() == run_gptlab(), "the export's greedy tokens differ from gptlab's"
        times = {"gptlab": [], "onnxruntime": []}
        for _ in range(args.reps):
            for name, run in (("gptlab", run_gptlab), ("onnxruntime", run_onnx)):
                start = time.perf_counter()
                with torch.inference_mode():
                    run()
                times[name].append(time.perf_counter() - start)
    rate = {name: args.new_tokens / statistics.median(t) for name, t in times.items()}
    print(
        f"{args.preset} random weights, float32, batch 1, prompt {args.prompt_len}, "
        f"{args.new_tokens} greedy tokens (equal), {threads} threads; torch {torch.__version__}, "
        f"onnxruntime {onnxruntime.__version__}; export took {export_seconds:.0f} s\n"
    )
    print("| runtime | tok/s (prefill included) | ratio to gptlab |")
    print("| --- | ---: | ---: |")
    for name in ("gptlab", "onnxruntime"):
        print(f"| {name} | {rate[name]:.1f} | {rate[name] / rate['gptlab']:.2f}x |")


if __name__ == "__main__":
    main()

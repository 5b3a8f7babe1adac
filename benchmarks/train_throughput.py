"""GPT-2 124M training throughput: gptlab's trainer step against transformers' GPT2LMHeadModel
driven by the same step (bf16 autocast, torch.compile, fused AdamW, synthetic tokens).

The issue's target on an H100: at least 500k tokens/s (a well-known reference ran 433k, 28.3 ms
per step of 12 x 1024 tokens), with MFU printed against 989 TFLOP/s (H100 SXM dense bf16).

    PYTHONPATH=src python3 benchmarks/train_throughput.py                 # on a GPU
    PYTHONPATH=src python3 benchmarks/train_throughput.py --batch-sizes 12,32 --no-bias --grad-clip 0
    uv run python benchmarks/train_throughput.py --quick --device cpu     # a smoke test here
    PYTHONPATH=src python3 benchmarks/train_throughput.py --preset gpt2-xl --batch-sizes 8 \
        --activation-checkpointing   # memory: gpt2-xl at context 1024 on one GPU, both recomputing

By default gptlab trains GPT-2 as it is (biases, gradient clipping at 1.0). `--no-bias --grad-clip 0`
does the work of the reference's own benchmark, which drops the biases and does not clip.
"""

from __future__ import annotations

import argparse
import statistics
import time
from dataclasses import replace

import torch
import torch.nn.functional as F

from gptlab.config import GPTConfig
from gptlab.device import resolve_device
from gptlab.models.gpt import GPT
from gptlab.pretrained import transformers_model_like
from gptlab.training.config import COMPILE_MODES, TrainConfig
from gptlab.training.trainer import Trainer

H100_BF16_FLOPS = 989e12


def flops_per_token(config: GPTConfig, num_params: int) -> float:
    """Training FLOPs per token: 6 per parameter (forward and backward matmuls) plus attention's
    12 * layers * width * context (Kaplan et al. 2020; PaLM appendix B)."""
    return 6 * num_params + 12 * config.n_layer * config.n_embd * config.context_length


def hf_loss(model, batch):
    x, y = batch
    logits = model(input_ids=x).logits
    return F.cross_entropy(logits.view(-1, logits.size(-1)), y.view(-1))


def gptlab_loss(model, batch):
    return model(*batch)[1]


def peer_builder(recompute: bool):
    """transformers' GPT-2 of a config, recomputing its blocks in backward when `recompute`."""

    def build(config: GPTConfig):
        model = transformers_model_like(config)
        if recompute:
            model.gradient_checkpointing_enable(
                gradient_checkpointing_kwargs={"use_reentrant": False}
            )
        return model

    return build


def measure(
    name,
    model,
    loss_fn,
    config: TrainConfig,
    model_config: GPTConfig,
    device,
    steps: int,
    reps: int,
):
    B, T = config.batch_size, model_config.context_length
    g = torch.Generator(device="cpu").manual_seed(0)
    batches = [
        (
            torch.randint(0, model_config.vocab_size, (B, T), generator=g).to(device),
            torch.randint(0, model_config.vocab_size, (B, T), generator=g).to(device),
        )
        for _ in range(4)
    ]
    trainer = Trainer(
        model,
        config,
        train_batch=lambda step, index: batches[(step + index) % len(batches)],
        device=device,
        loss_fn=loss_fn,
    )
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    start = time.perf_counter()
    for _ in range(3):  # warm-up: compilation, autotuning, allocator
        trainer.train_step(config.lr)
        trainer.step += 1
    sync()
    warmup = time.perf_counter() - start
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    per_step = []
    for _ in range(reps):
        sync()
        t0 = time.perf_counter()
        for _ in range(steps):
            loss, _, _ = trainer.train_step(config.lr)
            trainer.step += 1
        sync()
        per_step.append((time.perf_counter() - t0) / steps)
    assert torch.isfinite(loss), f"{name}: loss is {loss}"
    seconds = statistics.median(per_step)
    peak = torch.cuda.max_memory_allocated() / 2**20 if device.type == "cuda" else float("nan")
    n = sum(p.numel() for p in model.parameters())
    tokens_per_sec = B * T * config.grad_accum / seconds
    mfu = flops_per_token(model_config, n) * tokens_per_sec / H100_BF16_FLOPS
    print(
        f"  {name}: {seconds * 1e3:.1f} ms/step, {tokens_per_sec:,.0f} tok/s, MFU {mfu:.1%}, "
        f"peak {peak:,.0f} MiB, warm-up {warmup:.1f} s",
        flush=True,
    )
    return {"ms": seconds * 1e3, "tps": tokens_per_sec, "mfu": mfu, "peak": peak}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--device", default="auto")
    parser.add_argument(
        "--batch-sizes", default="12", help="comma-separated micro-batch sizes to measure"
    )
    parser.add_argument(
        "--compile-mode", default="default", choices=COMPILE_MODES, help="torch.compile mode"
    )
    parser.add_argument(
        "--no-bias",
        action="store_true",
        help="gptlab without biases, as the reference's benchmark (transformers' GPT-2 keeps them)",
    )
    parser.add_argument(
        "--grad-clip",
        type=float,
        default=1.0,
        help="clip the gradient norm at this value; 0: no clipping, as the reference's benchmark",
    )
    parser.add_argument(
        "--vocab-size",
        type=int,
        default=50304,
        help="50257 padded to a multiple of 64, as the reference",
    )
    parser.add_argument("--preset", default="gpt2", help="model shape (default gpt2, 124M)")
    parser.add_argument(
        "--activation-checkpointing",
        action="store_true",
        help="recompute blocks in backward: gptlab's setting, transformers' "
        "gradient_checkpointing_enable (non-reentrant, as gptlab's)",
    )
    parser.add_argument("--no-compile", action="store_true")
    parser.add_argument("--steps", type=int, default=10, help="steps per timed repetition")
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--skip-peer", action="store_true")
    parser.add_argument(
        "--sdpa-backend",
        choices=["auto", "flash", "cudnn", "efficient"],
        default="auto",
        help="pin F.scaled_dot_product_attention to one kernel (both models)",
    )
    parser.add_argument("--quick", action="store_true", help="tiny model, for a smoke test")
    args = parser.parse_args()

    device = resolve_device(args.device)
    if args.sdpa_backend != "auto":
        from torch.nn.attention import SDPBackend, sdpa_kernel

        backend = {
            "flash": SDPBackend.FLASH_ATTENTION,
            "cudnn": SDPBackend.CUDNN_ATTENTION,
            "efficient": SDPBackend.EFFICIENT_ATTENTION,
        }[args.sdpa_backend]
        sdpa_kernel(backend).__enter__()  # for the whole process
    if args.quick:
        model_config = GPTConfig.from_preset("tiny")
        args.steps, args.reps = 2, 2
    else:
        model_config = GPTConfig.from_preset(
            args.preset, vocab_size=args.vocab_size, bias=not args.no_bias
        )
    rows = []
    for batch_size in [int(b) for b in args.batch_sizes.split(",")]:
        config = TrainConfig(
            batch_size=batch_size,
            lr=6e-4,
            beta2=0.95,
            weight_decay=0.1,
            grad_clip=args.grad_clip,
            device=str(device),
            dtype="auto",
            compile=not args.no_compile and device.type == "cuda",
            compile_mode=args.compile_mode,
            activation_checkpointing=args.activation_checkpointing,
        )
        print(
            f"activation checkpointing {args.activation_checkpointing}, "
            f"GPT-2 shape {model_config.n_layer}x{model_config.n_embd}, vocab {model_config.vocab_size}, "
            f"batch {batch_size} x {model_config.context_length}, bias {model_config.bias}, "
            f"grad clip {config.grad_clip or 'off'}, compile {config.compile and config.compile_mode}, "
            f"attention {args.sdpa_backend}, "
            f"device {torch.cuda.get_device_name() if device.type == 'cuda' else device}, torch {torch.__version__}",
            flush=True,
        )
        for name, build, loss_fn in (
            ("gptlab", GPT, gptlab_loss),
            ("transformers", peer_builder(args.activation_checkpointing), hf_loss),
        ):
            if name == "transformers" and args.skip_peer:
                continue
            torch._dynamo.reset()
            torch.manual_seed(0)
            result = measure(
                name,
                build(model_config),
                loss_fn,
                # transformers' model recomputes through its own switch, set by peer_builder
                config if name == "gptlab" else replace(config, activation_checkpointing=False),
                model_config,
                device,
                args.steps,
                args.reps,
            )
            rows.append((name, batch_size, result))
            if device.type == "cuda":
                torch.cuda.empty_cache()
    print()
    print("| model | batch | ms/step | tokens/s | MFU | peak MiB |")
    print("|---|---:|---:|---:|---:|---:|")
    for name, batch_size, r in rows:
        print(
            f"| {name} | {batch_size} | {r['ms']:.1f} | {r['tps']:,.0f} | {r['mfu']:.1%} | {r['peak']:,.0f} |"
        )
    by_batch = {}
    for name, batch_size, r in rows:
        by_batch.setdefault(batch_size, {})[name] = r["tps"]
    for batch_size, tps in by_batch.items():
        if len(tps) == 2:
            print(
                f"batch {batch_size}: throughput ratio gptlab / transformers {tps['gptlab'] / tps['transformers']:.2f}"
            )


if __name__ == "__main__":
    main()

"""Adapters: what LoRA and prompt tuning reach against full fine-tuning, how fast gptlab's LoRA
trains against peft's, and whether a merged adapter runs as fast as the plain model.

    PYTHONPATH=src GPTLAB_DATA=$PWD/devdata python3 benchmarks/peft.py --device cuda   # a GPU
    GPTLAB_DATA=../shared/data uv run python benchmarks/peft.py --quick               # CPU smoke run

- quality: `gptlab finetune classify BASE --data sms-spam` and `gptlab finetune instruct BASE
  --data instruction-data` under full fine-tuning, the last block (classify only: instruct has
  no --train), LoRA r=4, 8, 16 on the fused projections, the published reference's
  per-projection LoRA, and prompt tuning with 20 virtual tokens. Each run is a child process of
  the CLI, so its peak memory is its own; the child times every training step. The test figure
  is the one the command prints at the end (accuracy, or response-only loss).
- speed: a LoRA training step (r=16, alpha=16 on c_attn, c_proj, c_fc) of gptlab's GPT and of
  peft's LoRA on transformers' GPT2LMHeadModel, each eager, compiled, and compiled with CUDA
  graphs (the trainer's `--compile-mode reduce-overhead`, GPU only): the same weights, batch and
  trainer step (AdamW over the adapters only, bf16 autocast on a GPU), one model at a time so
  each peak memory is its own; each mode is also compared like against like.
- merged: forward latency at batch 1 and decode tokens/s of a plain GPT, of the same GPT with
  LoRA merged in and removed (`merged_model`), and of the unmerged LoRA model.

The base of quality is gptlab's local `gpt2-mini` (pretrained here with `gptlab train --preset
gpt2-mini` when `--base runs/gpt2-mini` is missing), not OpenAI's GPT-2: the published
reference figures (GPT-2 124M) are printed beside the rows they correspond to, not as a
comparison of equals.
"""

from __future__ import annotations

import time

PROCESS_START = time.perf_counter()

import sys
from pathlib import Path

# Run as `python benchmarks/peft.py`, this file's folder comes first on sys.path, where it would
# hide the peft library from `import peft` (and from transformers' check for it).
HERE = Path(__file__).resolve().parent
sys.path[:] = [entry for entry in sys.path if Path(entry or ".").resolve() != HERE]

import argparse
import copy
import dataclasses
import gc
import importlib.util
import json
import re
import statistics
import subprocess
import tempfile
from dataclasses import dataclass

import torch

from gptlab.adapters import LoRAConfig, add_lora, freeze_base, merged_model
from gptlab.config import GPTConfig
from gptlab.device import resolve_device, resolve_dtype
from gptlab.models.gpt import GPT
from gptlab.training.config import TrainConfig
from gptlab.training.trainer import Trainer

PARTS = ("quality", "speed", "merged")
DEFAULT_BASE = "runs/gpt2-mini"
DATA = {"classify": "sms-spam", "instruct": "instruction-data"}
# The figure each command prints at the end of its run, for its best checkpoint.
TEST_FIGURE = {
    "classify": re.compile(r"test accuracy ([\d.]+)%"),
    "instruct": re.compile(r"test loss ([\d.]+)"),
}
# Model shapes: GPT-2 124M, and a small one with GPT-2's vocabulary for CPU smoke runs.
SHAPES = {
    "gpt2": GPTConfig.from_preset("gpt2", dropout=0.0),
    "small": GPTConfig.from_preset("gpt2-mini", n_layer=2, n_head=2, n_embd=64, dropout=0.0),
}
# Learning rates by what trains. Full fine-tuning follows the reference recipe (Raschka 2024,
# chapters 6 and 7: 5e-5), the last block the best of benchmarks/classify.py on gpt2-mini
# (1e-4). An adapter starts from nothing (B = 0, a random prompt) with the whole base frozen,
# so it takes ~10x: LoRA 5e-4 (Hu et al. 2021 train GPT-2's at 2e-4; scaled by alpha / r), a
# prompt 3e-3 (Lester et al. 2021 use 0.3 with Adafactor; with AdamW 1e-3..1e-2 is usual), as
# `gptlab finetune --lora / --prompt-tuning` default to. `--lr KIND=VALUE` overrides one.
LRS = {"all": 5e-5, "last-block": 1e-4, "lora": 5e-4, "prompt": 3e-3}
# Raschka 2024, appendix E: LoRA r=16, alpha=16 on every Linear of GPT-2 124M, the new head
# included, on SMS spam.
REFERENCE = "reference (GPT-2 124M): 2,666,528 trainable, 96.67% test accuracy"
PER_PROJECTION = "r=16,alpha=16,targets=q,k,v,c_proj,c_fc"


@dataclass
class Method:
    """One fine-tuning configuration: its flags and notes for each task (flags None: not run)."""

    name: str
    lr_kind: str
    classify: tuple[str, ...] | None
    instruct: tuple[str, ...] | None
    notes: tuple[str, str] = ("", "")  # classify's, instruct's


METHODS = [
    Method("full fine-tuning", "all", ("--train", "all"), ()),
    Method(
        "last block",
        "last-block",
        ("--train", "last-block"),
        None,
        ("", "`finetune instruct` has no --train"),
    ),
    *(
        Method(f"LoRA r={r}", "lora", ("--lora", f"r={r}"), ("--lora", f"r={r}"))
        for r in (4, 8, 16)
    ),
    Method(
        "LoRA r=16 per projection",
        "lora",
        ("--lora", PER_PROJECTION + ",score"),
        ("--lora", PER_PROJECTION),
        (
            f"q, k, v, c_proj, c_fc, score; {REFERENCE}",
            "q, k, v, c_proj, c_fc (a language model has no score head)",
        ),
    ),
    Method(
        "prompt tuning, 20 tokens", "prompt", ("--prompt-tuning", "20"), ("--prompt-tuning", "20")
    ),
]


def sibling(name: str):
    """Another benchmark script of this folder, as a module (they share their measurements)."""
    spec = importlib.util.spec_from_file_location(f"benchmark_{name}", HERE / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def _mib(n_bytes: float) -> float:
    return n_bytes / 2**20


# -- quality: the CLI's runs, each in a child process ---------------------------------------


def child(report_path: str, argv: list[str]) -> int:
    """Run `gptlab ARGV` here, timing each training step and counting what trains; write the
    figures to `report_path` as JSON."""
    import resource

    from gptlab.cli import main as gptlab

    seconds, counts = [], {}
    init, train_step = Trainer.__init__, Trainer.train_step

    def counting_init(self, model, *args, **kwargs):
        params = list(model.parameters())  # each shared (tied) tensor once
        counts["trainable"] = sum(p.numel() for p in params if p.requires_grad)
        counts["total"] = sum(p.numel() for p in params)
        init(self, model, *args, **kwargs)

    def timed_step(self, lr):
        _sync(self.device)
        start = time.perf_counter()
        out = train_step(self, lr)
        _sync(self.device)
        seconds.append(time.perf_counter() - start)
        return out

    Trainer.__init__, Trainer.train_step = counting_init, timed_step
    status = gptlab(argv)
    report = {"status": status, **counts, "step_seconds": seconds}
    report["peak_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB
    if torch.cuda.is_initialized():
        report["cuda_peak_mib"] = _mib(torch.cuda.max_memory_allocated())
    Path(report_path).write_text(json.dumps(report))
    return status


def finetune_run(task: str, method: Method, lr: float, base: str, folder: Path, args) -> dict:
    """One `gptlab finetune TASK` run of `method` in a child process; its figures."""
    key = re.sub(r"[^a-z0-9]+", "-", f"{task} {method.name}".lower()).strip("-")
    run, log, report_path = folder / key, folder / f"{key}.log", folder / f"{key}.json"
    argv = ["finetune", task, base, "--data", DATA[task], "--out", str(run),
            "--device", args.device, "--no-tensorboard", "--lr", f"{lr:g}", "--min-lr",
            f"{lr / 10:g}", *getattr(method, task), *args.finetune_extra]  # fmt: skip
    start = time.perf_counter()
    with open(log, "w") as file:
        status = subprocess.run(
            [sys.executable, __file__, "--child", str(report_path), *argv],
            stdout=file,
            stderr=subprocess.STDOUT,
        ).returncode
    seconds = time.perf_counter() - start
    text = log.read_text(errors="replace")
    found = TEST_FIGURE[task].search(text)
    if status or not found:
        tail = "\n    ".join(text.strip().splitlines()[-3:])
        print(
            f"  {task}, {method.name}: failed (exit {status}); gptlab {' '.join(argv)}\n    {tail}"
        )
        return {"task": task, "method": method.name, "lr": lr, "error": text[-2000:]}
    report = json.loads(report_path.read_text())
    steps = report["step_seconds"][5:] or report["step_seconds"]  # the first ones warm up
    result = {
        "task": task,
        "method": method.name,
        "lr": lr,
        "trainable": report["trainable"],
        "total": report["total"],
        "peak_mib": report.get("cuda_peak_mib", report["peak_rss_mib"]),
        "peak_kind": "cuda max_memory_allocated" if "cuda_peak_mib" in report else "peak RSS",
        "step_ms": statistics.median(steps) * 1e3,
        "steps": len(report["step_seconds"]),
        "test_accuracy" if task == "classify" else "test_loss": float(found.group(1))
        / (100 if task == "classify" else 1),
        "note": method.notes[task == "instruct"],
        "seconds": seconds,
    }
    figure = (
        f"test accuracy {result['test_accuracy']:.2%}"
        if task == "classify"
        else f"test loss {result['test_loss']:.4f}"
    )
    print(
        f"  {task}, {method.name}: {result['trainable']:,} trainable, {figure}, "
        f"{result['step_ms']:.1f} ms/step, {result['peak_mib']:,.0f} MiB, {seconds:.0f} s",
        flush=True,
    )
    return result


def ensure_base(args, device, folder: Path) -> str:
    """The base to fine-tune: random weights (--random-base), or --base, pretrained first when
    it is the default local base and missing."""
    if args.random_base:
        from gptlab.pretrained import export_hf
        from gptlab.tokenizers import get_tokenizer

        torch.manual_seed(args.seed)
        model = GPT(dataclasses.replace(SHAPES[args.shape], dropout=0.1))
        return str(export_hf(model, get_tokenizer("gpt2"), folder / "random-base"))
    if args.base == DEFAULT_BASE and not Path(args.base).exists():
        compile_flag = ["--compile"] if device.type == "cuda" else []
        command = ["train", "--preset", "gpt2-mini", "--out", args.base, "--device", args.device,
                   "--no-tensorboard", *compile_flag]  # fmt: skip
        print(f"pretraining the base: gptlab {' '.join(command)}", flush=True)
        start = time.perf_counter()
        subprocess.run([sys.executable, "-m", "gptlab", *command], check=True)
        print(f"  pretrained in {time.perf_counter() - start:.0f} s", flush=True)
    return args.base


def quality(args, device) -> list[dict]:
    lrs = {**LRS, **args.lr}
    rows = []
    with tempfile.TemporaryDirectory() as temporary:
        folder = Path(args.keep or temporary)
        folder.mkdir(parents=True, exist_ok=True)
        base = ensure_base(args, device, folder)
        print(f"quality: base {base}", flush=True)
        for task in args.tasks.split(","):
            for method in METHODS:
                if getattr(method, task) is None:
                    rows.append({"task": task, "method": method.name, "note": method.notes[1]})
                    continue
                rows.append(finetune_run(task, method, lrs[method.lr_kind], base, folder, args))
    print(
        "\n| task | method | lr | trainable | of total | peak MiB | median step ms | test figure "
        "| notes |\n|---|---|---:|---:|---:|---:|---:|---:|---|"
    )
    for r in rows:
        if "trainable" not in r:
            cells = ["", "", "", "", "", "failed" if "error" in r else "n/a", r.get("note", "")]
        else:
            figure = (
                f"{r['test_accuracy']:.2%} accuracy"
                if "test_accuracy" in r
                else f"{r['test_loss']:.4f} loss"
            )
            cells = [f"{r['lr']:g}", f"{r['trainable']:,}", f"{r['total']:,}",
                     f"{r['peak_mib']:,.0f}", f"{r['step_ms']:.1f}", figure, r["note"]]  # fmt: skip
        print(f"| {r['task']} | {r['method']} | " + " | ".join(cells) + " |")
    kinds = {r["peak_kind"] for r in rows if "peak_kind" in r}
    print(
        f"peak memory: {', '.join(sorted(kinds))}, of each run's process; step: median after "
        f"the first 5, {'compiled' if args.compile else 'eager'}"
    )
    return rows


# -- speed: gptlab's LoRA against peft's, on the same trainer step ----------------------------


def lora_models(config: GPTConfig):
    """(gptlab GPT, peft GPT2LMHeadModel wrapped as finetune.py's peer), the same base weights
    and LoRA r=16, alpha=16, dropout 0.05 on c_attn, c_proj, c_fc, bases frozen."""
    from peft import LoraConfig, get_peft_model

    from gptlab.pretrained import state_dict_to_hf, transformers_model_like

    torch.manual_seed(0)
    ours = GPT(config)
    peer = transformers_model_like(config)
    missing, unexpected = peer.load_state_dict(state_dict_to_hf(ours.state_dict()), strict=False)
    assert not unexpected and all(name.endswith("lm_head.weight") for name in missing), missing
    add_lora(ours, LoRAConfig(r=16, alpha=16, dropout=0.05, targets=("c_attn", "c_proj", "c_fc")))
    freeze_base(ours)
    peer = get_peft_model(
        peer,
        LoraConfig(r=16, lora_alpha=16, lora_dropout=0.05,
                   target_modules=["c_attn", "c_proj", "c_fc"], fan_in_fan_out=True),
    )  # fmt: skip
    return ours, sibling("finetune").HFLanguageModel(peer)


MODES = {  # a contestant's mode: (torch.compile or not, the trainer's compile_mode)
    "eager": (False, "default"),
    "compiled": (True, "default"),
    "CUDA graphs": (True, "reduce-overhead"),
}


def ready_trainer(model, mode: str, batch, device, args) -> tuple[Trainer, float | None]:
    """A trainer of `model` on `batch` in `mode` (a key of MODES), warmed up (compiled); and its
    peak memory in MiB over `args.steps` steps after the warm-up: what it allocates beyond what
    was there before it (the other contestants' weights and optimizer states), so each figure
    is its own."""
    if device.type == "cuda":
        before = torch.cuda.memory_allocated(device)
    compile_, compile_mode = MODES[mode]
    config = TrainConfig(
        max_iters=10**9, batch_size=batch[0].size(0), lr=1e-4, warmup_iters=0, eval_interval=0,
        device=str(device), compile=compile_, compile_mode=compile_mode, seed=args.seed,
    )  # fmt: skip
    trainer = Trainer(model, config, train_batch=lambda step, index: batch, device=device)
    for _ in range(args.warmup):
        trainer.train_step(config.lr)
    if device.type != "cuda":
        return trainer, None
    torch.cuda.synchronize(device)
    torch.cuda.reset_peak_memory_stats(device)
    for _ in range(args.steps):
        trainer.train_step(config.lr)
    torch.cuda.synchronize(device)
    return trainer, _mib(torch.cuda.max_memory_allocated(device) - before)


def seconds_per_step(trainer: Trainer, steps: int, device) -> float:
    _sync(device)
    start = time.perf_counter()
    for _ in range(steps):
        trainer.train_step(trainer.config.lr)
    _sync(device)
    return (time.perf_counter() - start) / steps


def speed(args, device) -> dict:
    config = SHAPES[args.shape]
    ours, peer = lora_models(config)
    counts = {
        "gptlab": sum(p.numel() for p in ours.parameters() if p.requires_grad),
        "peft": peer.hf.get_nb_trainable_parameters()[0],
    }
    print(f"\nspeed: trainable parameters, gptlab {counts['gptlab']:,}, peft {counts['peft']:,}")
    if counts["gptlab"] != counts["peft"]:
        raise SystemExit("the two LoRA models do not train the same parameters: not comparable")
    B, T = args.batch_size, min(args.seq_len, config.context_length)
    generator = torch.Generator().manual_seed(args.seed)
    tokens = torch.randint(0, config.vocab_size, (B, T + 1), generator=generator).to(device)
    batch = (tokens[:, :-1], tokens[:, 1:])
    del ours, peer
    modes = [mode for mode in args.modes if device.type == "cuda" or mode != "CUDA graphs"]
    contestants = {f"{who} LoRA, {mode}": (which, mode) for mode in modes
                   for which, who in enumerate(("gptlab", "peft"))}  # fmt: skip
    trainers, results = {}, {}
    torch.manual_seed(args.seed)  # LoRA dropout's draws
    for name, (which, mode) in contestants.items():
        try:
            model = lora_models(config)[which]
            trainers[name], peak = ready_trainer(model, mode, batch, device, args)
            results[name] = {"peak_mib": peak}
        except Exception as error:  # a contestant that cannot compile loses its row, not the run
            print(f"  {name}: failed ({type(error).__name__}: {str(error)[:300]})")
            results[name] = {"error": f"{type(error).__name__}: {error}"[:2000]}
            trainers.pop(name, None)
            gc.collect()
    seconds = {name: [] for name in trainers}
    names = list(trainers)
    for rep in range(args.reps):  # taking turns, in a turning order: a busy machine slows all alike
        for name in names[rep % len(names) :] + names[: rep % len(names)]:
            seconds[name].append(seconds_per_step(trainers[name], args.steps, device))
    for name, values in seconds.items():
        step_ms = statistics.median(values) * 1e3
        results[name].update(step_ms=step_ms, tokens_per_s=B * T / step_ms * 1e3)
        print(f"  {name}: {step_ms:.2f} ms/step", flush=True)
    timed = {name: r for name, r in results.items() if "step_ms" in r}
    ours_ = {k: v for k, v in timed.items() if k.startswith("gptlab")}
    peers = {k: v for k, v in timed.items() if k.startswith("peft")}
    best = min(ours_, key=lambda k: ours_[k]["step_ms"])
    fastest = min(peers, key=lambda k: peers[k]["step_ms"])
    mine = ours_[best]
    dtype = "bf16 autocast" if resolve_dtype("auto", device) != torch.float32 else "float32"
    print(
        f"\nLoRA training step, {args.shape} shape, batch {B} x {T}, {device} ({dtype}), "
        f"{counts['gptlab']:,} trainable; median of {args.reps} x {args.steps} steps after "
        f"{args.warmup} of warm-up; ratios against gptlab's fastest row ({best}): peer / gptlab "
        "(step time), gptlab / peer (memory):"
    )
    print("| model | ms/step | tokens/s | peak MiB | step ratio | memory ratio |")
    print("|---|---:|---:|---:|---:|---:|")
    for name, r in results.items():
        if "step_ms" not in r:
            print(f"| {name} | failed | | | | |")
            continue
        peak = "n/a" if r["peak_mib"] is None else f"{r['peak_mib']:,.0f}"
        ratio = "" if name.startswith("gptlab") else f"{r['step_ms'] / mine['step_ms']:.2f}"
        memory = (
            f"{mine['peak_mib'] / r['peak_mib']:.2f}"
            if r["peak_mib"] and not name.startswith("gptlab")
            else ""
        )  # like against like is printed below
        print(
            f"| {name} | {r['step_ms']:.2f} | {r['tokens_per_s']:,.0f} | {peak} | {ratio} | {memory} |"
        )
    speedup = peers[fastest]["step_ms"] / mine["step_ms"]
    print(
        f"gptlab's fastest ({best}) against peft's fastest ({fastest}): {speedup:.2f}x the speed "
        "(target >= 1.2)"
    )
    like = {}
    for mode in modes:  # like against like
        a, b = timed.get(f"gptlab LoRA, {mode}"), timed.get(f"peft LoRA, {mode}")
        if a and b:
            like[mode] = b["step_ms"] / a["step_ms"]
            memory = (
                f", {a['peak_mib']:,.0f} MiB against {b['peak_mib']:,.0f}"
                if a["peak_mib"] and b["peak_mib"]
                else ""
            )
            print(f"{mode} against {mode}: gptlab {like[mode]:.2f}x peft's speed{memory}")
    return {"trainable": counts, "batch": [B, T], "results": results, "fastest": best,
            "fastest_peer": fastest, "speedup_vs_fastest_peer": speedup,
            "like_for_like": like}  # fmt: skip


# -- merged: a merged adapter costs what the plain model costs --------------------------------


def merged(args, device) -> dict:
    from gptlab.generation import Decoder

    generate = sibling("generate")  # its decode timing: prefill left out, no EOS
    config = SHAPES[args.shape]
    dtype = resolve_dtype("auto", device)
    torch.manual_seed(0)
    plain = GPT(config).eval()
    adapted = copy.deepcopy(plain)
    add_lora(adapted, LoRAConfig(r=16, alpha=16))
    for name, param in adapted.named_parameters():
        if ".lora." in name and ".B." in name:  # a trained adapter changes the weights
            torch.nn.init.normal_(param, std=0.02)
    adapted.eval()
    folded = merged_model(copy.deepcopy(adapted))
    probe = torch.randint(0, config.vocab_size, (2, 16))
    with torch.no_grad():
        torch.testing.assert_close(folded(probe)[0], adapted(probe)[0], atol=1e-4, rtol=1e-4)
    models = {"plain": plain, "LoRA merged": folded, "LoRA unmerged": adapted}
    for model in models.values():
        model.to(device, dtype)
    T, K = min(args.forward_len, config.context_length), args.forward_calls
    idx = torch.randint(0, config.vocab_size, (1, T), device=device)
    prompt = torch.randint(0, config.vocab_size, (args.prompt_len,)).tolist()
    compile_ = device.type == "cuda"
    rows = {}
    for name, model in models.items():
        decoder = Decoder(model, compile=compile_)
        row = generate.Row(name, [prompt], args.new_tokens, decoder)
        try:
            generate.time_gptlab(row)  # warm-up: compiles, records CUDA graphs
        except Exception as error:  # time eager decoding rather than lose the row
            if not compile_:
                raise
            print(f"  {name}: compiled decoding failed ({type(error).__name__}: {error})")
            row = generate.Row(name + " (eager)", [prompt], args.new_tokens, Decoder(model))
            generate.time_gptlab(row)
        rows[name] = {"row": row, "forward": [], "decode": []}
    with torch.inference_mode():
        for model in models.values():
            model(idx)  # warm-up
        names = list(models)
        for rep in range(args.reps):  # taking turns, in a turning order, as speed does
            for name in names[rep % len(names) :] + names[: rep % len(names)]:
                model = models[name]
                _sync(device)
                start = time.perf_counter()
                for _ in range(K):
                    model(idx)
                _sync(device)
                rows[name]["forward"].append((time.perf_counter() - start) / K)
                decode_s, _, _ = generate.time_gptlab(rows[name]["row"])
                rows[name]["decode"].append((args.new_tokens - 1) / decode_s)
    results = {
        name: {
            "label": r["row"].label,
            "forward_ms": statistics.median(r["forward"]) * 1e3,
            "decode_tokens_per_s": statistics.median(r["decode"]),
        }
        for name, r in rows.items()
    }
    base = results["plain"]
    print(
        f"\nmerged inference, {args.shape} shape, {device} ({str(dtype)[6:]}, decode "
        f"{'compiled' if compile_ else 'eager'}); forward: batch 1 x {T}, mean of {K} calls; "
        f"decode: batch 1, prompt {args.prompt_len}, {args.new_tokens} new; medians of "
        f"{args.reps}; ratio = plain's time / this one's (1.00: as fast as the plain model):"
    )
    print("| model | forward ms | ratio | decode tok/s | ratio |\n|---|---:|---:|---:|---:|")
    for r in results.values():
        r["forward_ratio"] = base["forward_ms"] / r["forward_ms"]
        r["decode_ratio"] = r["decode_tokens_per_s"] / base["decode_tokens_per_s"]
        print(
            f"| {r['label']} | {r['forward_ms']:.2f} | {r['forward_ratio']:.2f} "
            f"| {r['decode_tokens_per_s']:,.0f} | {r['decode_ratio']:.2f} |"
        )
    return results


def parse_lrs(values: list[str]) -> dict[str, float]:
    lrs = {}
    for value in values:
        kind, _, number = value.partition("=")
        if kind not in LRS:
            raise SystemExit(f"--lr {value}: the kind is one of {', '.join(LRS)} (e.g. lora=1e-3)")
        lrs[kind] = float(number)
    return lrs


def main() -> None:
    if sys.argv[1:2] == ["--child"]:
        raise SystemExit(child(sys.argv[2], sys.argv[3:]))
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    add = parser.add_argument
    add("--only", default=",".join(PARTS), help=f"comma-separated parts: {', '.join(PARTS)}")
    add(
        "--tasks",
        default="classify,instruct",
        help="quality's tasks, comma-separated (one per GPU for two calls side by side)",
    )
    add("--base", default=DEFAULT_BASE, help="the base of quality (run, HF folder, or gpt2)")
    add("--random-base", action="store_true", help="quality from random weights of --shape")
    add("--device", default="auto")
    add("--shape", choices=SHAPES, help="speed, merged, --random-base (default gpt2; quick small)")
    add("--lr", action="append", default=[], metavar="KIND=LR", help=f"override: {LRS}")
    add("--compile", action="store_true", help="quality runs compiled (default eager)")
    add("--keep", metavar="DIR", help="keep the quality runs and their logs here")
    add("--seed", type=int, default=1337)
    add("--batch-size", type=int, help="speed batch (default 8; quick 2)")
    add("--seq-len", type=int, help="speed sequence length (default 512; quick 64)")
    add(
        "--modes",
        default=",".join(MODES),
        help=f"speed: contestants' modes, comma-separated (default all: {', '.join(MODES)}; "
        "CUDA graphs only on a GPU)",
    )
    add("--warmup", type=int, default=5, help="speed: steps before timing (default 5)")
    add("--steps", type=int, help="speed: steps a repetition (default 10; quick 2)")
    add("--reps", type=int, help="repetitions of speed and merged (default 7; quick 5)")
    add("--forward-len", type=int, default=256, help="merged: tokens a forward (default 256)")
    add("--forward-calls", type=int, default=10, help="merged: forwards a repetition")
    add("--prompt-len", type=int, default=32, help="merged: decode prompt tokens (default 32)")
    add("--new-tokens", type=int, help="merged: new tokens (default 128; quick 16)")
    add("--quick", action="store_true", help="a smoke run: small shape, few steps, CPU minutes")
    add("--report-json", metavar="PATH", help="write every figure here")
    args = parser.parse_args()
    parts = set(args.only.split(","))
    if parts - set(PARTS):
        raise SystemExit(f"--only: unknown part(s) {', '.join(sorted(parts - set(PARTS)))}")
    if set(args.tasks.split(",")) - {"classify", "instruct"}:
        raise SystemExit(f"--tasks: classify and/or instruct, got {args.tasks!r}")
    quick = args.quick
    args.shape = args.shape or ("small" if quick else "gpt2")
    args.batch_size = args.batch_size or (2 if quick else 8)
    args.seq_len = args.seq_len or (64 if quick else 512)
    args.steps = args.steps or (2 if quick else 10)
    args.reps = args.reps or (5 if quick else 7)
    args.warmup = min(args.warmup, 2) if quick else args.warmup
    args.new_tokens = args.new_tokens or (16 if quick else 128)
    args.lr = parse_lrs(args.lr)
    args.modes = [mode.strip() for mode in args.modes.split(",")]
    if set(args.modes) - set(MODES):
        raise SystemExit(f"--modes: {', '.join(MODES)}, got {', '.join(args.modes)}")
    args.finetune_extra = (["--max-iters", "4", "--eval-interval", "2"] if quick else []) + (
        ["--compile"] if args.compile else []
    )
    device = resolve_device(args.device)
    args.device = str(device)
    import peft
    import transformers

    print(
        f"device {device}; torch {torch.__version__}, transformers {transformers.__version__}, "
        f"peft {peft.__version__}; parts {', '.join(p for p in PARTS if p in parts)}",
        flush=True,
    )
    report = {"device": str(device), "torch": torch.__version__, "peft": peft.__version__}
    if "quality" in parts:
        report["quality"] = quality(args, device)
    if "speed" in parts:
        report["speed"] = speed(args, device)
    if "merged" in parts:
        report["merged"] = merged(args, device)
    if args.report_json:
        Path(args.report_json).write_text(json.dumps(report, indent=2) + "\n")
    print(f"\nprocess wall time: {time.perf_counter() - PROCESS_START:.1f} s")


if __name__ == "__main__":
    main()

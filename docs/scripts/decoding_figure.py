"""Make docs/figures/decoding.png: one next-token distribution before and after each filter.

    uv run python docs/scripts/decoding_figure.py [RUN_DIR] [--prompt TEXT] [--out PATH]

With a run directory, the distribution is the model's own for the prompt; without one, a fixed
synthetic distribution (Zipf-like logits) is used, so the figure can always be rebuilt.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from gptlab.generation import apply_temperature, min_p_filter, top_k_filter, top_p_filter


def next_token_logits(run_dir: str | None, prompt: str) -> tuple[torch.Tensor, list[str]]:
    if run_dir is None:
        logits = -1.2 * torch.log(torch.arange(1, 41, dtype=torch.float32))  # (V,)
        return logits, [f"t{i}" for i in range(40)]
    from gptlab.pretrained import load_model

    model, tokenizer, _ = load_model(run_dir)
    ids = torch.tensor([tokenizer.encode(prompt)])
    with torch.no_grad():
        logits = model(ids[:, -model.config.context_length :])[0][0, -1]  # (V,)
    labels = [repr(tokenizer.decode([i]))[1:-1].replace(" ", "\u2423") for i in range(logits.numel())]
    return logits, labels


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run_dir", nargs="?", default=None)
    parser.add_argument("--prompt", default="ROMEO:\nWhat say")
    parser.add_argument("--top", type=int, default=15, help="tokens shown, most likely first")
    parser.add_argument("--out", default=str(Path(__file__).parents[1] / "figures" / "decoding.png"))
    args = parser.parse_args()

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    logits, labels = next_token_logits(args.run_dir, args.prompt)
    order = torch.argsort(logits, descending=True)[: args.top]
    panels = [
        ("temperature 1 (the model)", logits),
        ("temperature 0.7: sharper", apply_temperature(logits[None], 0.7)[0]),
        ("temperature 1.5: flatter", apply_temperature(logits[None], 1.5)[0]),
        ("top-k 5", top_k_filter(logits[None], 5)[0]),
        ("top-p 0.8", top_p_filter(logits[None], 0.8)[0]),
        ("min-p 0.1", min_p_filter(logits[None], 0.1)[0]),
    ]
    fig, axes = plt.subplots(2, 3, figsize=(13, 6.5), sharey=True)
    original = torch.softmax(logits, dim=-1)[order]
    for ax, (title, filtered) in zip(axes.flat, panels):
        probs = torch.softmax(filtered, dim=-1)[order]
        ax.bar(range(len(order)), original, color="lightgray", label="the model at temperature 1")
        ax.bar(range(len(order)), probs, width=0.5, color="tab:blue", label="what sampling draws from")
        ax.set_title(title)
        ax.set_xticks(range(len(order)), [labels[i] for i in order], fontsize=11)
    axes[0, 0].legend(fontsize=8)
    for ax in axes[:, 0]:
        ax.set_ylabel("probability of the next token")
    source = f"{Path(args.run_dir).name}, after {args.prompt!r}" if args.run_dir else "synthetic Zipf-like logits"
    fig.suptitle(f"One next-token distribution under each decoding filter ({source})")
    fig.tight_layout()
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out, dpi=80)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()

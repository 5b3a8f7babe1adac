"""What each attention head does: scores for three behaviours, and a recorder across training.

Olsson et al. (2022, "In-context learning and induction heads") measure heads on a sequence of
random tokens repeated twice, r r, where nothing but the repetition can be predicted:

- previous-token score: the mean attention from each position to the one before it;
- first-token score: the mean attention to position 0 (a resting place when a head has nothing
  to do);
- induction score: in the second copy, the mean attention from token t to the token *after* its
  earlier occurrence (position t - n + 1). That head, with a previous-token head in an earlier
  layer to find the occurrence, copies what came next: [A][B] ... [A] -> [B].

An induction head needs two layers (its keys must know the token before them, which only an
earlier head can write), so a 1-layer model cannot have one: the experiment in
benchmarks/induction.py trains both and watches the score jump, with a bump in the loss.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from matplotlib.figure import Figure
from torch import Tensor, nn

from gptlab.interpret.hooks import run_with_cache
from gptlab.training.trainer import Callback
from gptlab.viz.figure import new_figure

SCORES = ("previous_token", "first_token", "induction")


@dataclass
class HeadScores:
    """Each head's score (n_layer, nh) for each behaviour, on sequences of `length` tokens twice."""

    previous_token: Tensor
    first_token: Tensor
    induction: Tensor
    length: int

    def to_dict(self) -> dict:
        return {name: getattr(self, name).tolist() for name in SCORES} | {"length": self.length}

    def best(self, score: str) -> tuple[int, int, float]:
        """The (layer, head, score) of the highest-scoring head for `score`."""
        values = getattr(self, score)
        flat = int(values.argmax())
        layer, head = divmod(flat, values.size(1))
        return layer, head, float(values[layer, head])


def repeated_random_tokens(
    vocab: int | Tensor, length: int, batch: int, seed: int = 0, device="cpu"
) -> Tensor:
    """(batch, 2 * length) ids: `length` random tokens, then the same again.

    vocab: the vocabulary size, or the ids to draw from (say, the tokens common in the training
    text: a token the model has barely seen has an embedding near its random start). Where the
    vocabulary is large enough, the tokens of a copy are all different: a token seen twice
    before would give an induction head two right places to look, and halve its score.
    """
    generator = torch.Generator().manual_seed(seed)
    choices = torch.arange(vocab) if isinstance(vocab, int) else torch.as_tensor(vocab).cpu()
    if length <= len(choices):
        picks = torch.stack(
            [torch.randperm(len(choices), generator=generator)[:length] for _ in range(batch)]
        )
    else:
        picks = torch.randint(len(choices), (batch, length), generator=generator)
    half = choices[picks]  # (batch, length)
    return torch.cat([half, half], dim=1).to(device)


def scores_from_patterns(patterns: Tensor, length: int) -> dict[str, Tensor]:
    """The three scores (nh,) from one layer's patterns (B, nh, 2n, 2n) on repeated sequences."""
    T = patterns.size(-1)
    t = torch.arange(1, T, device=patterns.device)  # every position with a past
    second = torch.arange(length, T, device=patterns.device)  # the repeated half
    p = patterns.float()
    return {
        "previous_token": p[:, :, t, t - 1].mean(dim=(0, 2)),
        "first_token": p[:, :, t, 0].mean(dim=(0, 2)),
        "induction": p[:, :, second, second - length + 1].mean(dim=(0, 2)),
    }


@torch.no_grad()
def head_scores(
    model: nn.Module,
    length: int = 50,
    batch: int = 8,
    seed: int = 0,
    vocab: Tensor | None = None,
) -> HeadScores:
    """Every head's previous-token, first-token and induction scores on repeated random tokens
    (drawn from `vocab`, the ids allowed, or the whole vocabulary).

    `length` is cut to half the model's context, so that both copies fit.
    """
    length = max(2, min(length, model.config.context_length // 2))
    device = next(model.parameters()).device
    vocab = model.config.vocab_size if vocab is None else vocab
    idx = repeated_random_tokens(vocab, length, batch, seed, device)
    _, cache = run_with_cache(model, idx, "blocks.*.attn.pattern")
    per_layer = [
        scores_from_patterns(cache[f"blocks.{i}.attn.pattern"], length) for i in range(len(model.h))
    ]
    stacked = {name: torch.stack([s[name] for s in per_layer]).cpu() for name in SCORES}
    return HeadScores(**stacked, length=length)


class HeadScoreRecorder(Callback):
    """A trainer callback: every head's scores every `every` steps (and before the first and
    after the last), measured on the same random sequences each time, kept in `history`."""

    def __init__(
        self,
        every: int = 50,
        length: int = 50,
        batch: int = 8,
        seed: int = 0,
        vocab: Tensor | None = None,
    ):
        self.every = every
        self.length = length
        self.batch = batch
        self.seed = seed
        self.vocab = vocab
        self.history: list[tuple[int, HeadScores]] = []

    def record(self, trainer) -> None:
        model = trainer.raw_model
        was_training = model.training
        model.eval()
        self.history.append(
            (trainer.step, head_scores(model, self.length, self.batch, self.seed, self.vocab))
        )
        model.train(was_training)

    def on_train_begin(self, trainer) -> None:
        if trainer.step == 0:
            self.record(trainer)

    def on_step_end(self, trainer, metrics: dict) -> None:
        if trainer.step % self.every == 0:
            self.record(trainer)

    def on_train_end(self, trainer) -> None:
        if not self.history or self.history[-1][0] != trainer.step:
            self.record(trainer)  # the last step, when it is not a multiple of `every`

    def max_scores(self, score: str = "induction") -> tuple[list[int], list[float]]:
        """(steps, the highest head's `score` at each)."""
        return [s for s, _ in self.history], [
            float(getattr(h, score).max()) for _, h in self.history
        ]


def first_crossing(steps: list[int], values: list[float], threshold: float) -> int | None:
    """The first step whose value is at least `threshold`, or None if none is."""
    return next((s for s, v in zip(steps, values, strict=True) if v >= threshold), None)


def head_scores_figure(
    scores: HeadScores, patterns: dict[str, Tensor] | None = None, tokens: list[str] | None = None
) -> Figure:
    """Three heatmaps (layer down, head across) of the scores; with `patterns` ({title: (T, T)})
    and the prompt's `tokens`, a second row draws those heads' attention on the prompt."""
    n_layer, n_head = scores.induction.shape
    rows = 2 if patterns else 1
    figure = new_figure(
        min(18.0, max(9.0, 1.35 * n_head + 3.0)), max(3.5, 0.5 * n_layer + 2.2) * rows
    )
    grid = figure.subplots(rows, 3, squeeze=False)
    for column, name in enumerate(SCORES):
        axes = grid[0][column]
        values = getattr(scores, name).numpy()
        image = axes.imshow(values, cmap="viridis", vmin=0.0, vmax=1.0, aspect="auto")
        if n_layer * n_head <= 144:
            for layer in range(n_layer):
                for head in range(n_head):
                    v = values[layer, head]
                    colour = "black" if v > 0.6 else "white"
                    axes.text(
                        head, layer, f"{v:.2f}", ha="center", va="center", fontsize=7, color=colour
                    )
        axes.set_title(name.replace("_", "-") + " score")
        axes.set_xlabel("head")
        axes.set_ylabel("layer")
        axes.set_xticks(range(n_head))
        axes.set_yticks(range(n_layer))
    figure.colorbar(image, ax=grid[0].tolist(), shrink=0.8, label="mean attention weight")
    if patterns:
        from gptlab.viz.figure import display_token

        labels = [display_token(t)[:6] for t in tokens or []]
        for column, (title, pattern) in enumerate(patterns.items()):
            axes = grid[1][column]
            axes.imshow(pattern.float().numpy(), cmap="viridis", vmin=0.0, vmax=1.0)
            axes.set_title(title, fontsize=10)
            if labels and len(labels) <= 40:
                axes.set_xticks(range(len(labels)), labels, rotation=90, fontsize=7)
                axes.set_yticks(range(len(labels)), labels, fontsize=7)
    figure.suptitle(
        f"attention heads on {scores.length} random tokens repeated twice (Olsson et al. 2022)"
    )
    return figure

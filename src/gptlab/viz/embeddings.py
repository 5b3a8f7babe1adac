"""Maps of a model's token embeddings: each token's vector projected to two dimensions.

A trained embedding table puts tokens that behave alike near each other: for a character model
the vowels, the capitals, the punctuation gather; for GPT-2 the numbers, the days, the colours.
Three projections, each with its own trade-off:

- PCA: the plane of largest variance, a linear map (distances along it are honest, but most of
  the variance may lie elsewhere);
- t-SNE (van der Maaten & Hinton 2008): keeps near neighbours near, distorts far distances;
  needs scikit-learn (`gptlab[viz]`);
- UMAP (McInnes et al. 2018): like t-SNE, keeps more of the global layout; needs umap-learn
  (`gptlab[umap]`).
"""

from __future__ import annotations

import string
from pathlib import Path

import numpy as np
import torch
from matplotlib import colormaps
from torch import nn

from gptlab.errors import ConfigError
from gptlab.viz.figure import display_token, new_figure, save_png

METHODS = ("pca", "tsne", "umap")

# Words for models with a large vocabulary (GPT-2's), in groups that a trained model separates.
# GPT-2's BPE gives most common words one token when they follow a space, so each word is
# encoded with its leading space.
DEFAULT_WORDS: dict[str, list[str]] = {
    "numbers": ["one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten"],
    "days": ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"],
    "colours": ["red", "green", "blue", "yellow", "black", "white", "purple", "orange"],
    "animals": ["dog", "cat", "horse", "cow", "bird", "fish", "lion", "mouse"],
    "countries": ["France", "Germany", "Italy", "Spain", "China", "Japan", "India", "Canada"],
    "family": ["mother", "father", "sister", "brother", "son", "daughter", "uncle", "aunt"],
}
SMALL_VOCABULARY = 256  # up to this many tokens, every token of the vocabulary is plotted


def embedding_points(
    model: nn.Module, tokenizer, words: list[str] | None = None
) -> tuple[list[str], list[str], np.ndarray]:
    """(labels, groups, vectors (N, C)) of the tokens to plot.

    With `words`, each word's vector is the mean of its tokens' embeddings. Without, a small
    vocabulary (a character model's) gives every token, grouped by kind of character, and a large
    one gives `DEFAULT_WORDS`.
    """
    table = model.wte.weight.detach().float().cpu()  # (V, C)
    if words:
        groups = [""] * len(words)
    elif tokenizer.vocab_size <= SMALL_VOCABULARY:
        labels = [tokenizer.decode([i]) for i in range(tokenizer.vocab_size)]
        vectors = table[: tokenizer.vocab_size].numpy()
        return [display_token(t) for t in labels], [character_group(t) for t in labels], vectors
    else:
        words = [word for group in DEFAULT_WORDS.values() for word in group]
        groups = [name for name, group in DEFAULT_WORDS.items() for _ in group]
    vectors = []
    for word in words:
        ids = tokenizer.encode(word if tokenizer.kind == "char" else " " + word)
        if not ids:
            raise ConfigError(f"the word {word!r} encodes to no tokens")
        vectors.append(table[torch.tensor(ids)].mean(dim=0))  # (C,)
    return list(words), groups, torch.stack(vectors).numpy()


def character_group(char: str) -> str:
    """The kind of a one-character token, for colouring a character model's map."""
    if char in "aeiouAEIOU":
        return "vowels"
    if char.islower():
        return "lower-case consonants"
    if char.isupper():
        return "upper-case consonants"
    if char.isdigit():
        return "digits"
    if char in string.punctuation:
        return "punctuation"
    return "whitespace and other"


def project_2d(vectors: np.ndarray, method: str = "pca", seed: int = 0) -> np.ndarray:
    """Points (N, 2) that stand for the vectors (N, C) by `method` (pca, tsne or umap)."""
    if method not in METHODS:
        raise ConfigError(f"unknown projection {method!r}; choose one of {', '.join(METHODS)}")
    if len(vectors) < 4:
        raise ConfigError(f"a map needs at least 4 points, got {len(vectors)}")
    vectors = np.asarray(vectors, dtype=np.float64)
    if method == "pca":
        centred = vectors - vectors.mean(axis=0)
        # The right singular vectors are the principal axes, largest variance first.
        _, _, axes = np.linalg.svd(centred, full_matrices=False)  # axes: (min(N, C), C)
        return centred @ axes[:2].T  # (N, 2)
    if method == "tsne":
        try:
            from sklearn.manifold import TSNE
        except ImportError:
            raise ConfigError(
                "t-SNE needs scikit-learn: install it with `uv sync --extra viz` "
                "(or `pip install 'gptlab[viz]'`), or use --method pca"
            ) from None
        # Perplexity is the effective number of neighbours; it must stay below the point count.
        perplexity = min(30.0, (len(vectors) - 1) / 3)
        return TSNE(2, perplexity=perplexity, init="pca", random_state=seed).fit_transform(vectors)
    try:
        from umap import UMAP
    except ImportError:
        raise ConfigError(
            "UMAP needs the optional dependency umap-learn: install it with `uv sync --extra umap` "
            "(or `pip install 'gptlab[umap]'`), or use --method pca or tsne"
        ) from None
    neighbours = min(15, len(vectors) - 1)
    return UMAP(n_neighbors=neighbours, random_state=seed).fit_transform(vectors)


def plot_embeddings(
    model: nn.Module,
    tokenizer,
    out: str | Path,
    method: str = "pca",
    words: list[str] | None = None,
    title: str | None = None,
    seed: int = 0,
) -> Path:
    """A labelled 2-D map of token embeddings, one colour per group, written to `out` (PNG)."""
    labels, groups, vectors = embedding_points(model, tokenizer, words)
    points = project_2d(vectors, method, seed)  # (N, 2)
    figure = new_figure(10, 8)
    axes = figure.add_subplot()
    colours = colormaps["tab10"]
    for index, group in enumerate(dict.fromkeys(groups)):
        chosen = [i for i, g in enumerate(groups) if g == group]
        axes.scatter(
            points[chosen, 0],
            points[chosen, 1],
            s=24,
            color=colours(index % 10),
            label=group or None,
            alpha=0.8,
        )
        for i in chosen:
            axes.annotate(
                labels[i],
                points[i],
                xytext=(3, 3),
                textcoords="offset points",
                fontsize=11 if len(labels) <= 80 else 8,
                color=colours(index % 10),
            )
    if any(groups):
        axes.legend(loc="best", fontsize=9, framealpha=0.8)
    names = {
        "pca": ("principal component 1", "principal component 2"),
        "tsne": ("t-SNE 1", "t-SNE 2"),
    }
    x_label, y_label = names.get(method, ("UMAP 1", "UMAP 2"))
    axes.set_xlabel(x_label)
    axes.set_ylabel(y_label)
    axes.set_title(title or f"token embeddings ({len(labels)} points, {method.upper()})")
    axes.grid(alpha=0.2)
    return save_png(figure, out)

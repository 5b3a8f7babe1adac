"""Named activations of a GPT, read and edited through forward hooks: the model code is unchanged.

    logits, cache = run_with_cache(model, idx)                 # every activation
    cache["blocks.3.attn.pattern"]                              # (B, nh, T, T)
    logits = run_with_edits(model, idx, {"blocks.1.attn.z": zero_heads(2)})

The names, with the shape each holds for a batch idx (B, T):

| name | shape | what it is |
| --- | --- | --- |
| `embed` | (B, T, C) | token embeddings, `wte(idx)` |
| `pos_embed` | (T, C) | position embeddings, `wpe(positions)`: (B, T, C) when `positions` is (B, T) |
| `blocks.{i}.resid_pre` | (B, T, C) | the residual stream entering block i (block 0: embed + pos_embed) |
| `blocks.{i}.attn.q`, `.k`, `.v` | (B, T, nh, hs) | each head's queries, keys and values |
| `blocks.{i}.attn.pattern` | (B, nh, T, T) | each head's attention weights, query down, key across (read only) |
| `blocks.{i}.attn.z` | (B, T, nh, hs) | each head's output, weights times values, before `c_proj` |
| `blocks.{i}.attn.result` | (B, T, nh, C) | each head's own term of the residual, z through its slice of `c_proj` (read only) |
| `blocks.{i}.attn.out` | (B, T, C) | the attention sublayer's output: the heads' results summed, plus `c_proj`'s bias |
| `blocks.{i}.resid_mid` | (B, T, C) | the residual stream between attention and MLP (read only) |
| `blocks.{i}.mlp.post` | (B, T, 4C) | the MLP's neurons, after the GELU |
| `blocks.{i}.mlp.out` | (B, T, C) | the MLP sublayer's output |
| `blocks.{i}.resid_post` | (B, T, C) | the residual stream leaving block i (= `blocks.{i+1}.resid_pre`) |

Where the numbers come from. The attention runs on `F.scaled_dot_product_attention`, which never
forms the weights, so `pattern` is recomputed from the hooked queries and keys with the
reference `attention_pattern` and the block's own mask: the model's numbers are not touched.
`result` is made from `z` when it is read (it is nh times the size of the stream, and most
analyses want one layer of it), so caching it costs nothing until it is used.

Caching is cheap by design: a cached tensor is the very tensor the forward pass made (detached,
never cloned, in the model's dtype), hooks are attached only where a wanted or edited name lives,
and `names` (exact names or globs like `"blocks.*.attn.pattern"`) keeps the rest out.

An edit is a function of the activation that returns its replacement (or None to keep it); the
helpers below make the usual ones: zero or mean-ablate heads, patch positions or heads from
another run's cache, project a direction out.
"""

from __future__ import annotations

import contextlib
import fnmatch
from collections.abc import Callable, Iterable, Iterator

import torch
from torch import Tensor, nn

from gptlab.errors import ConfigError
from gptlab.nn.attention import attention_pattern, causal_mask

Edit = Callable[[Tensor], Tensor | None]

BLOCK_NAMES = (
    "resid_pre",
    "attn.q",
    "attn.k",
    "attn.v",
    "attn.pattern",
    "attn.z",
    "attn.result",
    "attn.out",
    "resid_mid",
    "mlp.post",
    "mlp.out",
    "resid_post",
)
READ_ONLY = ("attn.pattern", "attn.result", "resid_mid")
CAUSAL = "causal"  # the mask of a block run with is_causal: the look-ahead mask at its size


def activation_names(n_layer: int) -> list[str]:
    """Every name a model of `n_layer` blocks has, in the order the forward pass makes them."""
    return ["embed", "pos_embed"] + [f"blocks.{i}.{n}" for i in range(n_layer) for n in BLOCK_NAMES]


def select_names(n_layer: int, names: Iterable[str] | str | None) -> list[str]:
    """The names matching `names` (exact names or fnmatch globs; None: all of them)."""
    every = activation_names(n_layer)
    if names is None:
        return every
    patterns = [names] if isinstance(names, str) else list(names)
    chosen = []
    for pattern in patterns:
        matched = [n for n in every if fnmatch.fnmatchcase(n, pattern)]
        if not matched:
            raise ConfigError(
                f"no activation is called {pattern!r}: names look like embed, "
                f"blocks.0.resid_post, blocks.0.attn.pattern (layers 0..{n_layer - 1})"
            )
        chosen += [n for n in matched if n not in chosen]
    return chosen


class ActivationCache:
    """The activations of one run, by name.

    Two are made when read, from what the run stored: `attn.result` from `attn.z`, and
    `attn.pattern` from `attn.q`, `attn.k` and the block's mask. Both are many times the size of
    the stream (a 124M GPT's patterns for 8 x 1024 tokens are 2.4 GB in bfloat16), and most
    analyses read a few layers of them once, so storing them would cost every run for the sake
    of few. Each read computes them again.
    """

    def __init__(self, model: nn.Module):
        self.model = model
        self.store: dict[str, Tensor] = {}
        self.masks: dict[int, Tensor | str | None] = {}  # per layer whose pattern was asked for

    def __getitem__(self, name: str) -> Tensor:
        if name in self.store:
            return self.store[name]
        if name in self:
            layer = int(name.split(".")[1])
            if name.endswith(".attn.result"):
                return head_results(self.model, self.store[f"blocks.{layer}.attn.z"], layer)
            q, k = self.store[f"blocks.{layer}.attn.q"], self.store[f"blocks.{layer}.attn.k"]
            return head_patterns(q, k, self.masks[layer])
        raise KeyError(f"{name!r} was not cached (cached: {', '.join(self.keys()[:6])}, ...)")

    def __contains__(self, name: str) -> bool:
        if name.endswith(".attn.result"):
            return name.replace(".result", ".z") in self.store
        if name.endswith(".attn.pattern"):
            return int(name.split(".")[1]) in self.masks
        return name in self.store

    def keys(self) -> list[str]:
        made = [f"blocks.{i}.attn.pattern" for i in self.masks]
        made += [n.replace(".z", ".result") for n in self.store if n.endswith(".attn.z")]
        return list(self.store) + made

    def residual_stream(self) -> tuple[list[str], Tensor]:
        """The stream before block 0 and after each block: labels and (n_layer + 1, B, T, C)."""
        n_layer = len(self.model.h)
        names = ["blocks.0.resid_pre"] + [f"blocks.{i}.resid_post" for i in range(n_layer)]
        labels = ["embed"] + [f"block {i}" for i in range(n_layer)]
        return labels, torch.stack([self[n] for n in names])


def head_patterns(q: Tensor, k: Tensor, mask: Tensor | None) -> Tensor:
    """Each head's attention weights (B, nh, T, S) from its queries (B, T, nh, hs) and keys
    (B, S, nh, hs), under `mask` (None: every key allowed), in the queries' dtype."""
    if isinstance(mask, str):  # CAUSAL
        mask = causal_mask(q.size(1), k.size(1), device=q.device)  # (T, S)
    # the softmax runs in float32 under autocast; the pattern keeps the model's dtype
    return attention_pattern(q.transpose(1, 2), k.transpose(1, 2), mask).to(q.dtype)


def head_results(model: nn.Module, z: Tensor, layer: int) -> Tensor:
    """Each head's term of the residual stream, (B, T, nh, C), from its output z (B, T, nh, hs).

    c_proj's input is the heads' outputs side by side, so its weight (C, C) splits by columns
    into one (C, hs) slice per head; the heads' results sum to `attn.out` minus c_proj's bias.
    """
    weight = model.h[layer].attn.c_proj.weight  # (C, nh * hs)
    _, _, n_head, head_size = z.shape
    weight = weight.view(weight.size(0), n_head, head_size)  # (C, nh, hs)
    return torch.einsum("btnh,cnh->btnc", z, weight.to(z.dtype))  # (B, T, nh, C)


# -- running with hooks ------------------------------------------------------------------


class _Hooks:
    """The hooks of one run: each site reads its names, applies their edits, caches them."""

    def __init__(self, model: nn.Module, cache: ActivationCache, names: set[str], edits: dict):
        self.model = model
        self.cache = cache
        self.names = names
        self.edits = edits
        self.handles = []

    def wants(self, *names: str) -> bool:
        return any(n in self.names or n in self.edits for n in names)

    def visit(self, name: str, value: Tensor) -> Tensor:
        """`value` after the edit of `name` (if any), cached when `name` is wanted."""
        edit = self.edits.get(name)
        if edit is not None:
            edited = edit(value)
            if edited is not None:
                if edited.shape != value.shape:
                    raise ValueError(
                        f"the edit of {name} returned shape {tuple(edited.shape)}, "
                        f"expected {tuple(value.shape)}"
                    )
                value = edited.to(value.dtype)
        if name in self.names:
            self.cache.store[name] = value.detach()
        return value

    def attach(self) -> None:
        model = self.model
        if self.wants("embed"):
            self._output(model.wte, lambda out: self.visit("embed", out))
        if self.wants("pos_embed"):
            self._output(model.wpe, lambda out: self.visit("pos_embed", out))
        for i, block in enumerate(model.h):
            self._attach_block(i, block)

    def _attach_block(self, i: int, block: nn.Module) -> None:
        p = f"blocks.{i}."
        if self.wants(p + "resid_pre"):
            self._input(block, lambda x: self.visit(p + "resid_pre", x))
        if p + "attn.pattern" in self.names:
            self.names |= {p + "attn.q", p + "attn.k"}  # the pattern is made from them when read
            self.handles.append(
                block.attn.register_forward_pre_hook(
                    lambda module, args, kwargs: self._remember_mask(i, kwargs), with_kwargs=True
                )
            )
        if self.wants(p + "attn.q", p + "attn.k", p + "attn.v"):
            self._output(block.attn.c_attn, lambda out: self._queries_keys_values(i, block, out))
        if self.wants(p + "attn.z", p + "attn.result"):
            if p + "attn.result" in self.names:
                self.names.add(p + "attn.z")  # result is made from z when read
            self._input(block.attn.c_proj, lambda z: self._heads(p + "attn.z", block.attn, z))
        if self.wants(p + "attn.out"):
            self._output(block.attn, lambda out: self.visit(p + "attn.out", out))
        if self.wants(p + "resid_mid"):
            self._input(block.ln_2, lambda x: self.visit(p + "resid_mid", x))
        if self.wants(p + "mlp.post"):
            self._input(block.mlp.c_proj, lambda x: self.visit(p + "mlp.post", x))
        if self.wants(p + "mlp.out"):
            self._output(block.mlp, lambda out: self.visit(p + "mlp.out", out))
        if self.wants(p + "resid_post"):
            self._output(block, lambda out: self.visit(p + "resid_post", out))

    def _input(self, module: nn.Module, change: Callable[[Tensor], Tensor]) -> None:
        """A pre-hook on the first positional argument of `module`."""
        self.handles.append(
            module.register_forward_pre_hook(lambda m, args: (change(args[0]), *args[1:]))
        )

    def _output(self, module: nn.Module, change: Callable[[Tensor], Tensor]) -> None:
        self.handles.append(module.register_forward_hook(lambda m, args, out: change(out)))

    def _remember_mask(self, layer: int, kwargs: dict) -> None:
        """The mask the block's attention runs under, kept for its pattern."""
        if kwargs.get("kv_cache") is not None:
            raise ConfigError("activations are read on whole sequences, without a KV cache")
        mask = kwargs.get("mask")
        if mask is None and kwargs.get("is_causal", False):
            mask = CAUSAL  # made when the pattern is, at its size
        self.cache.masks[layer] = mask

    def _queries_keys_values(self, layer: int, block: nn.Module, out: Tensor) -> Tensor:
        """c_attn's output (B, T, 3C) as q, k, v per head, put back together if edited."""
        p = f"blocks.{layer}.attn."
        attn = block.attn
        B, T, _ = out.shape
        hs = attn.n_embd // attn.n_head
        parts = [x.view(B, T, attn.n_head, hs) for x in out.split(attn.n_embd, dim=2)]
        q, k, v = (self.visit(p + n, x) for n, x in zip("qkv", parts, strict=True))
        if any(p + n in self.edits for n in "qkv"):
            return torch.cat([q, k, v], dim=2).view(B, T, 3 * attn.n_embd)
        return out

    def _heads(self, name: str, attn: nn.Module, x: Tensor) -> Tensor:
        B, T, C = x.shape
        z = self.visit(name, x.view(B, T, attn.n_head, C // attn.n_head))  # (B, T, nh, hs)
        return z.reshape(B, T, C)

    def remove(self) -> None:
        for handle in self.handles:
            handle.remove()


@contextlib.contextmanager
def hooked(
    model: nn.Module,
    names: Iterable[str] | str | None = (),
    edits: dict[str, Edit] | None = None,
) -> Iterator[ActivationCache]:
    """Within the block, every forward pass of `model` caches `names` (None: all) and applies
    `edits` ({name: function of the activation returning its replacement, or None})."""
    n_layer = len(model.h)
    edits = dict(edits or {})
    for name in edits:
        select_names(n_layer, name)  # an unknown name is an error
        if name.split(".", 2)[-1] in READ_ONLY:
            raise ConfigError(
                f"{name} can be read but not edited: edit attn.z (a head's output), "
                "attn.q/k/v or the resid_pre/resid_post around it"
            )
    cache = ActivationCache(model)
    hooks = _Hooks(model, cache, set(select_names(n_layer, names)), edits)
    try:
        hooks.attach()
        yield cache
    finally:
        hooks.remove()


def run_with_cache(
    model: nn.Module,
    idx: Tensor,
    names: Iterable[str] | str | None = None,
    edits: dict[str, Edit] | None = None,
) -> tuple[Tensor, ActivationCache]:
    """Logits at every position (B, T, V) and the cache of `names` (None: every activation)."""
    with hooked(model, names, edits) as cache:
        logits, _ = model(idx, all_logits=True)
    return logits, cache


def run_with_edits(
    model: nn.Module, idx: Tensor, edits: dict[str, Edit], all_logits: bool = True
) -> Tensor:
    """Logits (B, T, V) of a run with `edits` applied, nothing cached; with `all_logits=False`
    only the last position's (B, 1, V), which is all a next-token metric reads."""
    with hooked(model, (), edits):
        logits, _ = model(idx, all_logits=all_logits)
    return logits


# -- edits -------------------------------------------------------------------------------


def zero_heads(*heads: int) -> Edit:
    """For `attn.z`: the heads' outputs set to zero (zero ablation)."""

    def edit(z: Tensor) -> Tensor:
        z = z.clone()
        z[:, :, list(heads)] = 0.0
        return z

    return edit


def mean_heads(means: Tensor, *heads: int) -> Edit:
    """For `attn.z`: the heads' outputs replaced by their means, `means` (nh, hs) (mean
    ablation: what the head writes on average, without what it says about this input)."""

    def edit(z: Tensor) -> Tensor:
        z = z.clone()
        z[:, :, list(heads)] = means[list(heads)].to(z.dtype)
        return z

    return edit


def patch_positions(source: Tensor, positions: Iterable[int] | None = None) -> Edit:
    """Any (B, T, ...) activation at `positions` (None: all) replaced by `source`'s there."""
    where = slice(None) if positions is None else list(positions)

    def edit(value: Tensor) -> Tensor:
        value = value.clone()
        value[:, where] = source[:, where].to(value.dtype)
        return value

    return edit


def patch_heads(source: Tensor, *heads: int) -> Edit:
    """For `attn.z` (or q, k, v): the heads' values replaced by `source`'s, every position."""

    def edit(value: Tensor) -> Tensor:
        value = value.clone()
        value[:, :, list(heads)] = source[:, :, list(heads)].to(value.dtype)
        return value

    return edit


def remove_direction(direction: Tensor) -> Edit:
    """For a (..., C) activation: its component along `direction` (C,) projected out."""
    unit = direction / direction.norm()

    def edit(value: Tensor) -> Tensor:
        u = unit.to(value.dtype)
        return value - (value @ u)[..., None] * u

    return edit


def prompt_ids(model: nn.Module, tokenizer, prompt: str, what: str = "the prompt") -> Tensor:
    """The token ids (1, T) of a prompt, on the model's device; a ConfigError when it is empty,
    a ContextLengthError when it is longer than the model's context."""
    from gptlab.errors import ContextLengthError

    if not prompt:
        raise ConfigError(f"{what} is empty: give the text to look at")
    ids = tokenizer.encode(prompt)
    if not ids:
        raise ConfigError(f"{what} {prompt!r} encodes to no tokens")
    context = model.config.context_length
    if len(ids) > context:
        raise ContextLengthError(
            f"{what} is {len(ids)} tokens, longer than the model's context of {context}: shorten it"
        )
    device = next(model.parameters()).device
    return torch.tensor([ids], dtype=torch.long, device=device)  # (1, T)


def check_layer_head(model: nn.Module, layer: int | None, head: int | None = None) -> None:
    """A ConfigError for a layer or head the model does not have."""
    n_layer, n_head = len(model.h), model.h[0].attn.n_head
    if layer is not None and not 0 <= layer < n_layer:
        raise ConfigError(f"the layer must be in 0..{n_layer - 1}, got {layer}")
    if head is not None and not 0 <= head < n_head:
        raise ConfigError(f"the head must be in 0..{n_head - 1}, got {head}")

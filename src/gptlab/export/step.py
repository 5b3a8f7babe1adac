"""The model as one pure function with its KV cache as inputs and outputs: what other runtimes run.

gptlab's `KVCache` is a buffer written in place, which is what a GPU wants; an exported graph
(ONNX, `torch.export`) is clearer and more portable as a function:

    logits, keys, values = step(idx, keys, values, input_pos)

idx (B, T) the new tokens, keys and values (L, B, nh, S, hs) every layer's cache, input_pos
(T,) the slots (and positions) the new tokens take. The same function does the prefill (T is
the prompt's length, input_pos 0..T-1) and each decode step (T = 1): the graph has one
dynamic length. The rows of a batch share their positions, so a batch holds prompts of one
length (the exported graph has no padding).

`greedy` decodes with any such function (this module's, an ONNX Runtime session's, a loaded
`torch.export` program's), so the exports are checked by decoding with each.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn


class FunctionalKVCache:
    """One layer's keys and values, updated out of place (the exported graph's outputs)."""

    def __init__(self, k: Tensor, v: Tensor):
        self.k, self.v = k, v  # (B, nh, S, hs)

    @property
    def max_length(self) -> int:
        return self.k.size(2)

    @property
    def visible(self) -> int:
        """The slots attention reads: all of them (the graph has one cache length)."""
        return self.k.size(2)

    def update(self, input_pos: Tensor, k: Tensor, v: Tensor) -> tuple[Tensor, Tensor]:
        """The cache with k, v (B, nh, T, hs) written at slots `input_pos` (T,)."""
        # scatter, not index_copy: ONNX has it (ScatterElements) under every runtime
        index = input_pos.view(1, 1, -1, 1).expand_as(k)  # (B, nh, T, hs)
        self.k = self.k.scatter(2, index, k.to(self.k.dtype))
        self.v = self.v.scatter(2, index, v.to(self.v.dtype))
        return self.k, self.v


class CachedStep(nn.Module):
    """A GPT as `(idx, keys, values, input_pos) -> (logits (B, V), keys, values)`."""

    def __init__(self, model):
        super().__init__()
        self.model = model
        self.eval()

    def forward(self, idx: Tensor, keys: Tensor, values: Tensor, input_pos: Tensor):
        caches = [FunctionalKVCache(keys[i], values[i]) for i in range(keys.size(0))]
        x = self.model.hidden_states(idx, kv_cache=caches, input_pos=input_pos)  # (B, T, C)
        logits = self.model.lm_head(x[:, -1]).float()  # (B, V)
        return logits, torch.stack([c.k for c in caches]), torch.stack([c.v for c in caches])


def empty_cache(model, batch_size: int = 1) -> tuple[Tensor, Tensor]:
    """Zeroed keys and values (L, B, nh, S, hs) for the model's whole context."""
    c = model.config
    shape = (c.n_layer, batch_size, c.n_head, c.context_length, c.head_size)
    weight = model.ln_f.weight
    return (
        torch.zeros(shape, dtype=weight.dtype, device=weight.device),
        torch.zeros(shape, dtype=weight.dtype, device=weight.device),
    )


def example_inputs(model) -> tuple[Tensor, ...]:
    """Inputs to trace with: 2 rows of 3 tokens (a dimension of size 1 would be traced as a
    constant 1, so the batch and the length are at least 2 here)."""
    keys, values = empty_cache(model, batch_size=2)
    idx = torch.zeros(2, 3, dtype=torch.long, device=keys.device)
    return idx, keys, values, torch.arange(3, device=keys.device)


def dynamic_shapes(model) -> dict:
    """Which dimensions may change between calls: the batch and the number of new tokens."""
    batch = torch.export.Dim("batch", min=1, max=1024)
    length = torch.export.Dim("length", min=1, max=model.config.context_length)
    cache = {1: batch}
    return {"idx": {0: batch, 1: length}, "keys": cache, "values": cache, "input_pos": {0: length}}


StepFunction = Callable[[Tensor, Tensor, Tensor, Tensor], tuple[Tensor, Tensor, Tensor]]


def greedy(
    step: StepFunction, prompt: Tensor, new_tokens: int, keys: Tensor, values: Tensor
) -> tuple[Tensor, list[Tensor]]:
    """Greedy decoding with a step function: the new tokens (B, N) and each step's logits.

    prompt (B, P); keys and values an empty cache of at least P + new_tokens slots.
    """
    P = prompt.size(1)
    logits, keys, values = step(prompt, keys, values, torch.arange(P))
    every_logits, tokens = [logits], [logits.argmax(-1)]
    for i in range(new_tokens - 1):
        logits, keys, values = step(tokens[-1][:, None], keys, values, torch.tensor([P + i]))
        every_logits.append(logits)
        tokens.append(logits.argmax(-1))
    return torch.stack(tokens, dim=1), every_logits


def check_against_gptlab(model, step: StepFunction, prompt: list[int], new_tokens: int) -> dict:
    """Decode greedily with an exported `step` and compare it with gptlab itself: the largest
    difference of any step's logits from the model's full forward over the same tokens, and
    whether the tokens equal `generate`'s."""
    from gptlab.generation import GenerationConfig, generate

    device = model.ln_f.weight.device
    keys, values = empty_cache(model)
    ids = torch.tensor([prompt], device=device)
    with torch.no_grad():
        tokens, every_logits = greedy(step, ids, new_tokens, keys, values)
        config = GenerationConfig(max_new_tokens=new_tokens, strategy="greedy")
        expected = generate(model, [prompt], config)[0]
        whole = torch.cat([ids, tokens.to(device)], dim=1)[:, :-1]
        reference, _ = model(whole, all_logits=True)  # (1, P + N - 1, V)
    reference = reference[0, len(prompt) - 1 :].float().cpu()  # the logits of each new token
    exported = torch.cat([logits.float().cpu() for logits in every_logits])
    return {
        "max_abs_diff": float((exported - reference).abs().max()),
        "tokens_equal": tokens[0].tolist() == expected,
        "tokens": tokens[0].tolist(),
    }

"""Prompt tuning: a frozen model steered by N trained embeddings before every input.

Lester et al. (2021) keep the whole model frozen and train only a "soft prompt": N vectors in
embedding space, placed before the text as if they were the embeddings of N extra tokens. No
word has those embeddings, so the prompt can say what no text can; with a large enough model
it comes close to full fine-tuning for N x C parameters.

Applied from outside: `PromptTuned` wraps a GPT and offers what a GPT offers (`forward`,
`hidden_states`, `new_kv_cache`, `config`, ...), so the decoder, the trainer and a classifier
(`classifier.transformer = PromptTuned(body, ...)`) use it unchanged. The virtual tokens travel
as ids past the vocabulary (V, ..., V + N - 1) that a `VirtualTokenEmbedding` in place of `wte`
looks up in the prompt, so they go through the model's own forward: positions 0..N-1, the mask,
the KV cache. What the wrapper adds:

- without a cache, it puts the N ids before each row (and IGNORE_INDEX before the targets, True
  before the padding mask) and cuts the N positions off the output again;
- with a cache, `new_kv_cache` fills the first N slots with the prompt's keys and values once,
  and every call writes at `input_pos + N`: decoding pays for the prompt a single time.

The model's context shrinks by N (`config.context_length`), since the prompt takes N positions.
"""

from __future__ import annotations

import dataclasses

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from gptlab.adapters.config import PromptTuningConfig
from gptlab.errors import ConfigError, ContextLengthError

IGNORE_INDEX = -100  # as gptlab.models.gpt's: targets that add nothing to the loss


class VirtualTokenEmbedding(nn.Module):
    """The token embedding, extended by N trained rows for the ids V..V+N-1.

    `weight` is the frozen table itself (the same Parameter under the same name, so the base's
    weights keep their names and a head tied to it stays tied); `prompt` holds the N virtual
    tokens' embeddings.
    """

    def __init__(self, embedding: nn.Embedding, prompt: Tensor):
        super().__init__()
        self.weight = embedding.weight  # (V, C)
        self.scale = getattr(embedding, "scale", 1.0)  # gptlab's TokenEmbedding may scale
        self.prompt = nn.Parameter(prompt)  # (N, C)
        self.vocab_size = embedding.weight.size(0)

    def forward(self, idx: Tensor) -> Tensor:
        virtual = idx >= self.vocab_size  # (B, T)
        real = F.embedding(idx.masked_fill(virtual, 0), self.weight) * self.scale  # (B, T, C)
        soft = F.embedding((idx - self.vocab_size).clamp(0, self.prompt.size(0) - 1), self.prompt)
        return torch.where(virtual.unsqueeze(-1), soft.to(real.dtype), real)


class PromptTuned(nn.Module):
    """A GPT with a trained soft prompt of `config.num_tokens` virtual tokens before its inputs."""

    def __init__(self, gpt: nn.Module, config: PromptTuningConfig, tokenizer=None):
        super().__init__()
        N = config.num_tokens
        base = gpt.config
        if N >= base.context_length:
            raise ConfigError(
                f"a prompt of {N} virtual tokens leaves no room in the model's context of "
                f"{base.context_length}"
            )
        self.gpt = gpt
        self.prompt_config = config
        self.num_tokens = N
        gpt.wte = VirtualTokenEmbedding(gpt.wte, initial_prompt(gpt.wte, config, tokenizer))
        # What callers see: the context left for real tokens.
        self.config = dataclasses.replace(base, context_length=base.context_length - N)

    def __getattr__(self, name: str):
        """Everything else (`h`, `lm_head`, `wpe`, `num_params`, ...) is the GPT's."""
        try:
            return super().__getattr__(name)
        except AttributeError:
            if name == "gpt":
                raise
            return getattr(self.gpt, name)

    @property
    def prompt(self) -> nn.Parameter:
        return self.gpt.wte.prompt

    def virtual_ids(self, batch_size: int, device) -> Tensor:
        V = self.gpt.wte.vocab_size
        return torch.arange(V, V + self.num_tokens, device=device).expand(batch_size, -1)  # (B, N)

    def forward(
        self,
        idx: Tensor,
        targets: Tensor | None = None,
        *,
        kv_cache=None,
        input_pos: Tensor | None = None,
        positions: Tensor | None = None,
        padding_mask: Tensor | None = None,
        all_logits: bool = False,
    ) -> tuple[Tensor, Tensor | None]:
        """As GPT.forward, for inputs that do not count the virtual tokens."""
        if kv_cache is not None:
            return self.gpt(
                idx,
                targets,
                all_logits=all_logits,
                **self._cached(kv_cache, input_pos, positions, padding_mask),
            )
        idx, extra = self._prepend(idx, positions, padding_mask)
        if targets is not None:
            targets = F.pad(targets, (self.num_tokens, 0), value=IGNORE_INDEX)  # (B, N + T)
        logits, loss = self.gpt(idx, targets, all_logits=all_logits, **extra)
        if logits.size(1) > 1:
            logits = logits[:, self.num_tokens :]  # (B, T, V)
        return logits, loss

    def hidden_states(
        self,
        idx: Tensor,
        *,
        kv_cache=None,
        input_pos: Tensor | None = None,
        positions: Tensor | None = None,
        padding_mask: Tensor | None = None,
    ) -> Tensor:
        """As GPT.hidden_states: (B, T, C) for the real tokens only."""
        if kv_cache is not None:
            return self.gpt.hidden_states(
                idx, **self._cached(kv_cache, input_pos, positions, padding_mask)
            )
        idx, extra = self._prepend(idx, positions, padding_mask)
        return self.gpt.hidden_states(idx, **extra)[:, self.num_tokens :]

    def _prepend(self, idx: Tensor, positions, padding_mask) -> tuple[Tensor, dict]:
        """The virtual ids before each row, and the position ids and mask to match."""
        B, N = idx.size(0), self.num_tokens
        extra = {}
        if positions is not None:  # the prompt takes positions 0..N-1, the text starts at N
            start = torch.arange(N, device=idx.device).expand(B, -1)
            extra["positions"] = torch.cat([start, positions + N], dim=1)  # (B, N + T)
        if padding_mask is not None:
            extra["padding_mask"] = F.pad(padding_mask, (N, 0), value=True)  # (B, N + T)
        return torch.cat([self.virtual_ids(B, idx.device), idx], dim=1), extra  # (B, N + T)

    def _cached(self, kv_cache, input_pos, positions, padding_mask) -> dict:
        """Arguments for a call on a cache whose first N slots hold the prompt."""
        N = self.num_tokens
        return {
            "kv_cache": kv_cache,
            "input_pos": input_pos + N,
            "positions": None if positions is None else positions + N,
            "padding_mask": None
            if padding_mask is None
            else F.pad(padding_mask, (N, 0), value=True),
        }

    @torch.no_grad()
    def new_kv_cache(self, batch_size: int, max_length: int | None = None, dtype=None, device=None):
        """A cache of N + `max_length` slots whose first N already hold the prompt."""
        max_length = self.config.context_length if max_length is None else max_length
        if max_length > self.config.context_length:
            raise ContextLengthError(
                f"cannot decode {max_length} positions: the context left after the "
                f"{self.num_tokens}-token prompt is {self.config.context_length}"
            )
        cache = self.gpt.new_kv_cache(batch_size, max_length + self.num_tokens, dtype, device)
        device = cache[0].k.device
        self.gpt(
            self.virtual_ids(batch_size, device),
            kv_cache=cache,
            input_pos=torch.arange(self.num_tokens, device=device),
        )
        return cache

    def crop_context(self, context_length: int) -> None:
        self.gpt.crop_context(context_length + self.num_tokens)
        self.config = dataclasses.replace(self.gpt.config, context_length=context_length)

    def num_params(self) -> int:
        return sum(p.numel() for p in self.parameters())


def initial_prompt(embedding: nn.Embedding, config: PromptTuningConfig, tokenizer=None) -> Tensor:
    """The prompt's starting embeddings (N, C): random at the scale of the real ones, or those of
    `config.init_text`'s tokens, repeated to fill N (as peft's TEXT init)."""
    weight = embedding.weight.detach()
    N = config.num_tokens
    if config.init == "random":
        noise = torch.randn(N, weight.size(1))  # from the caller's seed
        return (noise * weight.float().std().cpu()).to(weight.device, weight.dtype)
    if tokenizer is None:
        raise ConfigError("a prompt initialised from text needs the model's tokenizer")
    ids = tokenizer.encode(config.init_text)
    if not ids:
        raise ConfigError(f"the prompt init text {config.init_text!r} has no tokens")
    ids = (ids * (N // len(ids) + 1))[:N]
    return weight[torch.tensor(ids, device=weight.device)].clone()

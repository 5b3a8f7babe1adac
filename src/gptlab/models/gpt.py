"""GPT: a decoder-only transformer with GPT-2's architecture and parameter names.

    idx (B, T) --wte + wpe--> (B, T, C) --n_layer x GPTBlock--> ln_f --lm_head--> logits (B, T, V)

The parameter names (wte, wpe, h.N.ln_1, h.N.attn.c_attn, ..., ln_f, lm_head) are GPT-2's, so a
Hugging Face checkpoint maps onto this model one to one, Conv1D weights transposed
(see `gptlab.pretrained`). The model runs on one device and knows nothing of compilation,
DDP, LoRA or quantization: those are applied to a built model from outside.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from gptlab.config import IGNORE_INDEX, GPTConfig
from gptlab.errors import ContextLengthError
from gptlab.nn.attention import KVCache, attention_mask, causal_mask
from gptlab.nn.blocks import GPTBlock
from gptlab.nn.layers import LayerNorm
from gptlab.nn.position import (
    LearnedPositionalEmbedding,
    SinusoidalPositionalEncoding,
    TokenEmbedding,
)


class GPT(nn.Module):
    def __init__(self, config: GPTConfig):
        super().__init__()
        self.config = config
        C = config.n_embd
        self.wte = TokenEmbedding(config.vocab_size, C)
        if config.positions == "learned":
            self.wpe = LearnedPositionalEmbedding(config.context_length, C)
        else:
            self.wpe = SinusoidalPositionalEncoding(config.context_length, C)
        self.drop = nn.Dropout(config.dropout)
        self.h = nn.ModuleList(
            GPTBlock(
                C, config.n_head, config.dropout, config.bias, config.layer_norm_eps, config.gelu
            )
            for _ in range(config.n_layer)
        )
        self.ln_f = LayerNorm(C, bias=config.bias, eps=config.layer_norm_eps)
        self.lm_head = nn.Linear(C, config.vocab_size, bias=False)
        # Weight tying (Press & Wolf 2017): the output layer reads logits off the input
        # embedding table. One tensor, so it is stored, trained and counted once.
        self.lm_head.weight = self.wte.weight
        self.apply(self._init_weights)
        # GPT-2 scales the init of the projections that write into the residual stream by
        # 1/sqrt(number of residual layers), so the stream's variance does not grow with depth
        # (Radford et al. 2019, 2.3; two residual layers per block).
        for name, param in self.named_parameters():
            if name.endswith("c_proj.weight"):
                nn.init.normal_(param, mean=0.0, std=0.02 / math.sqrt(2 * config.n_layer))

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        if isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)

    def forward(
        self,
        idx: Tensor,
        targets: Tensor | None = None,
        *,
        kv_cache: list[KVCache] | None = None,
        input_pos: Tensor | None = None,
        positions: Tensor | None = None,
        padding_mask: Tensor | None = None,
        all_logits: bool = False,
    ) -> tuple[Tensor, Tensor | None]:
        """Return `(logits, loss)`.

        idx: (B, T) token ids. targets: (B, T) next-token ids (IGNORE_INDEX to skip one); with
        targets, or with `all_logits`, logits cover every position (B, T, V), otherwise only the
        last one (B, 1, V), which is all that generation needs. With targets the logits come
        detached (the loss is what trains); for a loss of your own, pass `all_logits=True`.
        For decoding, `kv_cache` (from `new_kv_cache`) stores past keys and values and
        `input_pos` (T,) says which slots these tokens take. `positions` (B, T) overrides the
        position ids fed to `wpe` (left-padded batches start each row at 0), and `padding_mask`
        (B, S) is True on the key slots that hold real tokens (S = T, or the cache length).
        """
        x = self.hidden_states(
            idx,
            kv_cache=kv_cache,
            input_pos=input_pos,
            positions=positions,
            padding_mask=padding_mask,
        )  # (B, T, C)
        if targets is None and not all_logits:
            return self.lm_head(x[:, -1:, :]), None  # (B, 1, V)
        logits = self.lm_head(x)  # (B, T, V)
        if targets is None:
            return logits, None
        # In float32 whatever the model's dtype, as transformers does: a bfloat16 loss near 10
        # is rounded to steps of 0.0625. (Under autocast, cross_entropy upcasts anyway.)
        logits_2d = logits.view(-1, logits.size(-1)).float()  # (B*T, V)
        loss = F.cross_entropy(logits_2d, targets.reshape(-1), ignore_index=IGNORE_INDEX)
        # The loss carries the gradient; the logits beside it are for looking at (accuracy,
        # logging), so they leave the graph. Under torch.compile this matters: every
        # differentiable output gets a gradient in the compiled backward, zeros if unused, and
        # for logits that is a (B, T, V) buffer filled and added for nothing (786 MiB and ~1 ms
        # a step for GPT-2 at 8 x 1024). To train on the logits, call without targets.
        return logits.detach(), loss

    def hidden_states(
        self,
        idx: Tensor,
        *,
        kv_cache: list[KVCache] | None = None,
        input_pos: Tensor | None = None,
        positions: Tensor | None = None,
        padding_mask: Tensor | None = None,
    ) -> Tensor:
        """The final hidden states (B, T, C), after `ln_f`: what a head reads (the language-model
        head here, a classification head in `gptlab.models.classifier`). Arguments as `forward`'s.
        """
        B, T = idx.shape
        if kv_cache is None:
            if T > self.config.context_length:
                raise ContextLengthError(
                    f"a sequence of {T} tokens is longer than the model's context of {self.config.context_length}"
                )
            mask = (
                None
                if padding_mask is None
                else attention_mask(causal_mask(T, device=idx.device), padding_mask)
            )
            if input_pos is None:
                input_pos = torch.arange(T, device=idx.device)
        else:
            if T > kv_cache[0].max_length:
                raise ContextLengthError(
                    f"{T} tokens do not fit a KV cache of {kv_cache[0].max_length} slots"
                )
            S = kv_cache[0].visible  # the cache slots attention reads
            slots = torch.arange(S, device=idx.device)
            mask = attention_mask(
                slots[None, :] <= input_pos[:, None],
                None if padding_mask is None else padding_mask[:, :S],
            )  # (B|1, 1, T, S)
        if positions is None:
            positions = input_pos
        x = self.drop(self.wte(idx) + self.wpe(positions))  # (B, T, C)
        for i, block in enumerate(self.h):
            x = block(x, mask, None if kv_cache is None else kv_cache[i], input_pos)
        return self.ln_f(x)

    def new_kv_cache(
        self, batch_size: int, max_length: int | None = None, dtype=None, device=None
    ) -> list[KVCache]:
        """One preallocated KV cache per layer, for decoding up to `max_length` positions."""
        max_length = self.config.context_length if max_length is None else max_length
        if max_length > self.config.context_length:
            raise ContextLengthError(
                f"cannot decode {max_length} positions: the model's context is {self.config.context_length}"
            )
        weight = self.lm_head.weight
        c = self.config
        return [
            KVCache(
                batch_size,
                max_length,
                c.n_head,
                c.head_size,
                dtype or weight.dtype,
                device or weight.device,
            )
            for _ in range(c.n_layer)
        ]

    def num_params(self, non_embedding: bool = False) -> int:
        """Number of parameters, the tied embedding counted once.

        `non_embedding=True` leaves out the position embeddings, as nanoGPT reports it; the
        token embeddings stay in, since the tied head uses them as its weights.
        """
        n = sum(p.numel() for p in self.parameters())
        if non_embedding:
            n -= sum(p.numel() for p in self.wpe.parameters())
        return n

    @classmethod
    def from_pretrained(cls, name_or_path: str, device="cpu") -> GPT:
        """GPT-2 weights from the Hugging Face hub ("gpt2" ... "gpt2-xl"), a Hugging Face folder,
        or a gptlab run directory; `gptlab.pretrained.load_model` also returns the tokenizer."""
        from gptlab.pretrained import load_model

        return load_model(name_or_path, device, task="lm")[0]

    def crop_context(self, context_length: int) -> None:
        """Shrink the context window of a built model (e.g. a pretrained 1024 to 256)."""
        if not 0 < context_length <= self.config.context_length:
            raise ContextLengthError(
                f"can only crop the context to 1..{self.config.context_length}, got {context_length}"
            )
        self.config.context_length = context_length
        self.wpe.crop(context_length)

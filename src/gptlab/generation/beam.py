"""Beam search: keep the `num_beams` most likely continuations, not just the single best.

Each step scores every (beam, next token) pair by the beam's summed log-probability plus the
token's, and keeps the best. A continuation that ends (EOS, or the last allowed token) leaves
the search as a finished hypothesis, scored by log-probability / length ** length_penalty.
The search, its scores and its stopping rule follow transformers' beam search step for step,
so for the same model both choose the same tokens:

- each step looks at the 2 * num_beams best continuations, so that num_beams of them are
  still running even if all the best ones end with EOS;
- only an ending among the num_beams best of them is a finished hypothesis;
- with early_stopping, a prompt is done when it has num_beams finished hypotheses; without,
  it is done when no running beam could still beat the worst of them even if it ended now.

The beams of all prompts run as one batch of B * num_beams rows on the shared `Decoder`: the
cache rows are reordered after each step so that row i holds the past of the i-th new beam.
"""

from __future__ import annotations

import torch
from torch import Tensor

from gptlab.generation.config import GenerationConfig
from gptlab.generation.decoder import Decoder, plan_lengths
from gptlab.generation.processors import apply_penalties

NO_SCORE = -1.0e9  # the score of a slot without a hypothesis, and of a beam that must not run on


def beam_search(
    decoder: Decoder, ids: Tensor, mask: Tensor | None, config: GenerationConfig
) -> list[list[int]]:
    """The new tokens of the best hypothesis of each left-padded prompt (B, P) (with EOS if it
    ended with one)."""
    return [best[0] for best in beam_hypotheses(decoder, ids, mask, config, count=1)]


def beam_hypotheses(
    decoder: Decoder, ids: Tensor, mask: Tensor | None, config: GenerationConfig, count: int
) -> list[list[list[int]]]:
    """The new tokens of the `count` best finished hypotheses of each left-padded prompt (B, P),
    best first: what transformers returns as `num_return_sequences`. The search keeps
    num_beams of them anyway, so asking for more than one costs nothing."""
    B, P = ids.shape
    nb, K = config.num_beams, 2 * config.num_beams
    if not 1 <= count <= nb:
        raise ValueError(f"a search of {nb} beams keeps 1..{nb} hypotheses, not {count}")
    V = decoder.model.config.vocab_size
    device = decoder.device
    cache_length, new_tokens = plan_lengths(P, config, decoder.context_length)

    # beams: (B, nb, P + N) tokens of each running beam; V marks "no token" (padding, unwritten).
    beams = torch.full((B, nb, P + new_tokens), V, dtype=torch.long, device=device)
    beams[:, :, :P] = (ids if mask is None else ids.masked_fill(~mask, V))[:, None, :]
    # Every beam starts as the same prompt: only the first may run, or the first step would pick
    # the same token num_beams times.
    beam_scores = torch.full((B, nb), NO_SCORE, device=device)
    beam_scores[:, 0] = 0.0
    # The finished hypotheses of each prompt, best first.
    done_tokens = beams.clone()
    done_scores = torch.full((B, nb), NO_SCORE, device=device)
    done_lengths = torch.zeros((B, nb), dtype=torch.long, device=device)
    done = torch.zeros((B, nb), dtype=torch.bool, device=device)
    may_improve = torch.ones(B, dtype=torch.bool, device=device)
    # Beam j of prompt b is row b * nb + j of the decoder.
    row_offset = torch.arange(B, device=device)[:, None] * nb  # (B, 1)
    in_top_nb = torch.arange(K, device=device) < nb  # (K,)

    # Each prompt runs as num_beams rows of the decoder.
    beam_ids = ids.repeat_interleave(nb, dim=0)  # (B * nb, P)
    beam_mask = None if mask is None else mask.repeat_interleave(nb, dim=0)
    logits = decoder.prefill(beam_ids, beam_mask, cache_length)  # (B * nb, V)
    for t in range(new_tokens):
        rows = beams.view(B * nb, -1)
        if t > 0 and decoder.full:
            logits = decoder.slide(rows[:, : P + t], V)
        elif t > 0:
            logits = decoder.step(rows[:, P + t - 1])
        # transformers applies the processors to log-probabilities in beam search: so do we.
        log_probs = logits.log_softmax(dim=-1)  # (B * nb, V)
        log_probs = apply_penalties(log_probs, rows[:, : P + t], config)
        scores = (log_probs.view(B, nb, V) + beam_scores[:, :, None]).view(B, nb * V)
        top_scores, top = torch.topk(scores, K, dim=-1)  # (B, K), best first
        parent, token = top // V, top % V
        candidates = gather_beams(beams, parent)  # (B, K, P + N)
        candidates[:, :, P + t] = token
        if t == new_tokens - 1:
            ends = torch.ones_like(token, dtype=torch.bool)  # the last token: everything ends here
        elif config.stop_id is not None:
            ends = token == config.stop_id
        else:
            ends = torch.zeros_like(token, dtype=torch.bool)

        # The best num_beams continuations that did not end run on.
        running_scores = top_scores.masked_fill(ends, NO_SCORE)
        keep = torch.topk(running_scores, nb, dim=-1).indices  # (B, nb)
        beams, beam_scores = gather_beams(candidates, keep), gather_beams(running_scores, keep)

        # Endings among the best num_beams become finished hypotheses, if they may still count.
        finished = ends & in_top_nb
        final_scores = top_scores / float(t + 1) ** config.length_penalty
        closed = ~may_improve | (done.all(dim=-1) & config.early_stopping)  # (B,)
        final_scores = final_scores.masked_fill(~finished | closed[:, None], NO_SCORE)
        # The finished hypotheses so far and the new ones, best first: keep the best nb.
        best = torch.topk(torch.cat([done_scores, final_scores], dim=1), nb, dim=-1).indices
        done_tokens = gather_beams(torch.cat([done_tokens, candidates], dim=1), best)
        done_scores = gather_beams(torch.cat([done_scores, final_scores], dim=1), best)
        new_lengths = torch.full_like(token, t + 1)
        done_lengths = gather_beams(torch.cat([done_lengths, new_lengths], dim=1), best)
        done = gather_beams(torch.cat([done, finished], dim=1), best)

        # Could the best running beam, were it to end now, still beat the worst finished one?
        best_possible = beam_scores[:, :1] / float(t + 1) ** config.length_penalty  # (B, 1)
        worst_done = torch.where(done, done_scores.min(dim=-1, keepdim=True).values, NO_SCORE)
        may_improve &= (best_possible > worst_done).any(dim=-1)
        all_full = bool(done.all()) and config.early_stopping
        if not bool(may_improve.any()) or all_full or bool(ends.all()):
            break
        decoder.reorder((gather_beams(parent, keep) + row_offset).view(-1))

    best, lengths = done_tokens[:, :count, P:].tolist(), done_lengths[:, :count].tolist()
    return [
        [tokens[:n] for tokens, n in zip(prompt_best, prompt_lengths)]
        for prompt_best, prompt_lengths in zip(best, lengths)
    ]


def gather_beams(x: Tensor, index: Tensor) -> Tensor:
    """The entries `index` (B, k) of x (B, K, ...) along its beam dimension: (B, k, ...)."""
    return torch.take_along_dim(x, index.view(*index.shape, *[1] * (x.dim() - 2)), dim=1)

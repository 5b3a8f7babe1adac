"""Attention: the reference, the masks, MultiHeadAttention on the SDPA path, and the KV cache."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch.testing import assert_close

from gptlab.config import GPTConfig
from gptlab.models.gpt import GPT
from gptlab.nn.attention import (
    MultiHeadAttention,
    attention,
    attention_mask,
    causal_mask,
    padding_mask_from_ids,
    padding_mask_from_lengths,
)

B, T, S, C, NH = 3, 7, 5, 16, 4
PAD_ID = 0
LENGTHS = torch.tensor([7, 4, 1])  # one full row, one half row, one row of a single token


def reference_multi_head_attention(mha: MultiHeadAttention, x, context=None, mask=None):
    """MultiHeadAttention spelled out with the reference `attention()`: project, split into heads,
    attend, put the heads side by side, project back."""
    source = x if context is None else context
    w_q, w_k, w_v = mha.c_attn.weight.split(C)
    b_q, b_k, b_v = mha.c_attn.bias.split(C)

    def heads(t):  # (B, L, C) -> (B, nh, L, hs)
        return t.view(t.size(0), t.size(1), NH, C // NH).transpose(1, 2)

    q = heads(F.linear(x, w_q, b_q))
    k = heads(F.linear(source, w_k, b_k))
    v = heads(F.linear(source, w_v, b_v))
    y, _ = attention(q, k, v, mask)  # (B, nh, T, hs)
    return mha.c_proj(y.transpose(1, 2).reshape(x.shape))


def ids_padded(
    lengths: torch.Tensor, length: int, side: str, generator: torch.Generator
) -> torch.Tensor:
    """(B, length) random ids in [1, 50) with PAD_ID filling each row beyond its length."""
    ids = torch.randint(1, 50, (len(lengths), length), generator=generator)
    return ids.masked_fill(~padding_mask_from_lengths(lengths, length, side), PAD_ID)


def mask_case(kind: str):
    """(mask for MultiHeadAttention, is_causal flag, mask for the reference, uses a context)."""
    g = torch.Generator().manual_seed(1)
    causal = causal_mask(T)
    if kind == "none":
        return None, False, None, False
    if kind == "causal flag":
        return None, True, causal, False
    if kind == "causal mask":
        mask = attention_mask(causal=causal)
        return mask, False, mask, False
    if kind.startswith("padding"):
        _, side, source = kind.split()
        if source == "lengths":
            padding = padding_mask_from_lengths(LENGTHS, T, side)
        else:
            padding = padding_mask_from_ids(ids_padded(LENGTHS, T, side, g), PAD_ID)
        use_causal = kind.startswith("padding+causal")
        mask = attention_mask(causal=causal if use_causal else None, padding=padding)
        return mask, False, mask, False
    if kind == "cross source-padding":
        mask = attention_mask(padding=padding_mask_from_lengths(torch.tensor([5, 3, 1]), S))
        return mask, False, mask, True
    raise ValueError(kind)


MASK_KINDS = [
    "none",
    "causal flag",
    "causal mask",
    "padding right lengths",
    "padding left lengths",
    "padding right ids",
    "padding left ids",
    "padding+causal right lengths",
    "padding+causal left ids",
    "cross source-padding",
]


@pytest.fixture
def mha() -> MultiHeadAttention:
    torch.manual_seed(0)
    return MultiHeadAttention(C, NH).eval()


@pytest.mark.parametrize("kind", MASK_KINDS)
def test_sdpa_path_equals_reference_attention(mha, kind):
    mask, is_causal, reference_mask, cross = mask_case(kind)
    torch.manual_seed(2)
    x = torch.randn(B, T, C)
    context = torch.randn(B, S, C) if cross else None
    out = mha(x, context=context, mask=mask, is_causal=is_causal)
    assert_close(out, reference_multi_head_attention(mha, x, context, reference_mask))


def test_reference_attention_weights_rows_sum_to_one():
    torch.manual_seed(0)
    q, k, v = torch.randn(3, B, NH, T, C // NH).unbind(0)
    _, weights = attention(q, k, v, attention_mask(causal_mask(T)))
    assert_close(weights.sum(-1), torch.ones(B, NH, T))


def test_causal_mask_lets_query_t_see_keys_up_to_t():
    expected = torch.tensor([[1, 0, 0], [1, 1, 0], [1, 1, 1]], dtype=torch.bool)
    assert torch.equal(causal_mask(3), expected)


def test_causal_mask_with_more_keys_than_queries_aligns_queries_to_the_end():
    expected = torch.tensor([[1, 1, 1, 0], [1, 1, 1, 1]], dtype=torch.bool)
    assert torch.equal(causal_mask(2, 4), expected)


@pytest.mark.parametrize(
    ("side", "expected"),
    [("right", [[1, 1, 1, 0], [1, 0, 0, 0]]), ("left", [[0, 1, 1, 1], [0, 0, 0, 1]])],
)
def test_padding_mask_from_lengths_marks_real_tokens(side, expected):
    mask = padding_mask_from_lengths(torch.tensor([3, 1]), 4, side)
    assert torch.equal(mask, torch.tensor(expected, dtype=torch.bool))


@pytest.mark.parametrize("side", ["left", "right"])
def test_padding_mask_from_ids_equals_mask_from_lengths(side):
    ids = ids_padded(LENGTHS, T, side, torch.Generator().manual_seed(0))
    assert torch.equal(
        padding_mask_from_ids(ids, PAD_ID), padding_mask_from_lengths(LENGTHS, T, side)
    )


def test_padding_mask_from_lengths_rejects_an_unknown_side():
    with pytest.raises(ValueError, match="side"):
        padding_mask_from_lengths(LENGTHS, T, "middle")


def test_attention_mask_needs_a_causal_or_padding_mask():
    with pytest.raises(ValueError):
        attention_mask()


def test_attention_mask_combines_causal_and_padding_into_batch_head_query_key():
    padding = padding_mask_from_lengths(torch.tensor([3, 2]), 3, "right")
    mask = attention_mask(causal_mask(3), padding)
    assert mask.shape == (2, 1, 3, 3)
    assert torch.equal(
        mask[1, 0], torch.tensor([[1, 0, 0], [1, 1, 0], [1, 1, 0]], dtype=torch.bool)
    )


def test_causal_output_at_t_does_not_change_when_later_tokens_change():
    torch.manual_seed(0)
    model = GPT(GPTConfig.from_preset("tiny")).eval()
    idx = torch.randint(0, 64, (2, 12))
    logits, _ = model(idx, all_logits=True)
    for t in (0, 5, 10):
        changed = idx.clone()
        changed[:, t + 1 :] = torch.randint(0, 64, (2, 12 - t - 1))
        changed_logits, _ = model(changed, all_logits=True)
        assert_close(changed_logits[:, : t + 1], logits[:, : t + 1], rtol=0, atol=0)
        assert not torch.allclose(changed_logits[:, t + 1 :], logits[:, t + 1 :])


@pytest.mark.parametrize("side", ["left", "right"])
def test_padded_keys_get_exactly_zero_weight(side):
    torch.manual_seed(0)
    q, k, v = torch.randn(3, B, NH, T, C // NH).unbind(0)
    padding = padding_mask_from_lengths(LENGTHS, T, side)  # (B, S)
    for causal in (None, causal_mask(T)):
        mask = attention_mask(causal, padding)
        _, weights = attention(q, k, v, mask)  # (B, nh, T, S)
        real_queries = padding[:, None, :, None]  # (B, 1, T, 1)
        padded_keys = ~padding[:, None, None, :]  # (B, 1, 1, S)
        on_padded = weights.masked_select(padded_keys & real_queries)
        assert on_padded.numel() > 0
        assert torch.all(on_padded == 0)


@pytest.mark.parametrize("side", ["left", "right"])
@pytest.mark.parametrize("causal", [False, True])
def test_changing_padded_tokens_does_not_change_real_outputs(mha, side, causal):
    torch.manual_seed(3)
    padding = padding_mask_from_lengths(LENGTHS, T, side)  # (B, T)
    mask = attention_mask(causal_mask(T) if causal else None, padding)
    x = torch.randn(B, T, C)
    changed = torch.where(padding[..., None], x, 10 * torch.randn(B, T, C))
    out, changed_out = mha(x, mask=mask), mha(changed, mask=mask)
    real = padding[..., None].expand_as(out)
    assert_close(changed_out[real], out[real], rtol=0, atol=0)


def test_changing_padded_source_tokens_does_not_change_cross_attention(mha):
    torch.manual_seed(4)
    padding = padding_mask_from_lengths(torch.tensor([5, 3, 1]), S)  # (B, S)
    x, context = torch.randn(B, T, C), torch.randn(B, S, C)
    changed = torch.where(padding[..., None], context, 10 * torch.randn(B, S, C))
    mask = attention_mask(padding=padding)
    assert_close(mha(x, changed, mask=mask), mha(x, context, mask=mask), rtol=0, atol=0)


def test_query_that_sees_no_key_gives_finite_output(mha):
    """A left-padding query under a causal mask has no key to see; it must not produce NaN
    (which would leak through later layers), in the reference as on the SDPA path."""
    torch.manual_seed(5)
    mask = attention_mask(causal_mask(T), padding_mask_from_lengths(LENGTHS, T, "left"))
    q, k, v = torch.randn(3, B, NH, T, C // NH).unbind(0)
    assert torch.isfinite(attention(q, k, v, mask)[0]).all()
    assert torch.isfinite(mha(torch.randn(B, T, C), mask=mask)).all()


# --- the KV cache, through GPT ---


@pytest.fixture
def gpt() -> GPT:
    torch.manual_seed(0)
    return GPT(GPTConfig(vocab_size=50, context_length=24, n_layer=2, n_head=2, n_embd=16)).eval()


def test_kv_cache_token_by_token_matches_full_forward(gpt):
    idx = torch.randint(0, 50, (2, 10), generator=torch.Generator().manual_seed(1))
    full, _ = gpt(idx, all_logits=True)  # (B, T, V)
    cache = gpt.new_kv_cache(batch_size=2)
    for t in range(idx.size(1)):
        step, _ = gpt(idx[:, t : t + 1], kv_cache=cache, input_pos=torch.tensor([t]))  # (B, 1, V)
        assert_close(step[:, 0], full[:, t])


def test_kv_cache_prefill_then_decode_matches_full_forward(gpt):
    idx = torch.randint(0, 50, (2, 12), generator=torch.Generator().manual_seed(2))
    full, _ = gpt(idx, all_logits=True)
    cache = gpt.new_kv_cache(batch_size=2, max_length=16)
    prefill, _ = gpt(idx[:, :7], kv_cache=cache, input_pos=torch.arange(7), all_logits=True)
    assert_close(prefill, full[:, :7])
    for t in range(7, 12):
        step, _ = gpt(idx[:, t : t + 1], kv_cache=cache, input_pos=torch.tensor([t]))
        assert_close(step[:, 0], full[:, t])


def test_kv_cache_left_padded_batch_matches_each_row_alone(gpt):
    g = torch.Generator().manual_seed(3)
    prompt_lengths = torch.tensor([6, 2, 4])
    prompt_width, steps = int(prompt_lengths.max()), 5
    rows = [torch.randint(1, 50, (int(n) + steps,), generator=g) for n in prompt_lengths]

    # The prompts, left-padded to one width; each row's positions start at 0 on its first real token.
    prompt_mask = padding_mask_from_lengths(prompt_lengths, prompt_width, side="left")  # (B, P)
    prompts = torch.full((3, prompt_width), PAD_ID)
    for b, row in enumerate(rows):
        prompts[b, prompt_width - prompt_lengths[b] :] = row[: prompt_lengths[b]]
    positions = (prompt_mask.cumsum(1) - 1).clamp(min=0)  # (B, P)
    cache = gpt.new_kv_cache(batch_size=3, max_length=prompt_width + steps)
    slot_mask = torch.ones(
        3, prompt_width + steps, dtype=torch.bool
    )  # (B, S): decoded slots are real
    slot_mask[:, :prompt_width] = prompt_mask

    batch_logits = [
        gpt(
            prompts,
            kv_cache=cache,
            input_pos=torch.arange(prompt_width),
            positions=positions,
            padding_mask=slot_mask,
        )[0]
    ]
    for i in range(steps - 1):
        tokens = torch.stack([row[n + i] for row, n in zip(rows, prompt_lengths)])[
            :, None
        ]  # (B, 1)
        batch_logits.append(
            gpt(
                tokens,
                kv_cache=cache,
                input_pos=torch.tensor([prompt_width + i]),
                positions=(prompt_lengths + i)[:, None],
                padding_mask=slot_mask,
            )[0]
        )
    batch_logits = torch.cat(
        batch_logits, dim=1
    )  # (B, steps, V): last prompt token, then decode steps

    for b, row in enumerate(rows):
        alone, _ = gpt(row[None, :-1], all_logits=True)  # (1, n + steps - 1, V)
        n = int(prompt_lengths[b])
        assert_close(batch_logits[b], alone[0, n - 1 :])


def test_bfloat16_attention_on_the_cpu_runs_in_float32(mha, monkeypatch):
    """Under bf16 autocast on the CPU the products around attention are bf16, but attention
    itself gets float32 (the CPU's bf16 attention kernel is the slow one) and hands back bf16."""
    seen = []
    sdpa = F.scaled_dot_product_attention

    def recording_sdpa(q, k, v, **options):
        seen.append((q.dtype, k.dtype, v.dtype))
        return sdpa(q, k, v, **options)

    monkeypatch.setattr(F, "scaled_dot_product_attention", recording_sdpa)
    torch.manual_seed(2)
    x = torch.randn(B, T, C)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = mha(x, is_causal=True)
    assert seen == [(torch.float32,) * 3]
    assert out.dtype == torch.bfloat16
    assert_close(out.float(), mha(x, is_causal=True), rtol=0, atol=0.05)

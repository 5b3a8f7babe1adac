"""The encoder-decoder: parity with torch.nn.Transformer, masks, caches, tied weights."""

from __future__ import annotations

import warnings

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.testing import assert_close

from gptlab.errors import ConfigError, ContextLengthError
from gptlab.models.seq2seq import IGNORE_INDEX, Seq2Seq, Seq2SeqConfig, seq2seq_loss, shift_right

PAD, BOS, EOS = 0, 1, 2


def tiny_config(**overrides) -> Seq2SeqConfig:
    values = dict(
        src_vocab_size=23,
        tgt_vocab_size=19,
        pad_id=PAD,
        bos_id=BOS,
        eos_id=EOS,
        n_encoder_layer=2,
        n_decoder_layer=3,
        n_head=4,
        n_embd=32,
        ff_hidden=48,
        dropout=0.0,
        max_length=16,
    )
    return Seq2SeqConfig(**{**values, **overrides})


def randomize_(model: nn.Module) -> None:
    """Non-trivial norms and biases, so a misplaced norm or bias shows in the outputs."""
    torch.manual_seed(3)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if param.dim() == 1:
                param.normal_(1.0 if "norm" in name and name.endswith("weight") else 0.0, 0.3)


SRC = torch.tensor([[5, 6, 7, 8, PAD, PAD], [9, 10, 11, 12, 13, 14]])
TGT_IN = torch.tensor([[BOS, 3, 4, 5, 6], [BOS, 7, 8, PAD, PAD]])


def torch_transformer(model: Seq2Seq) -> nn.Transformer:
    """torch.nn.Transformer of the same shape, holding `model`'s weights."""
    c = model.config
    with warnings.catch_warnings():  # it warns that its fast path is off: not needed here
        warnings.simplefilter("ignore", UserWarning)
        reference = nn.Transformer(
            d_model=c.n_embd,
            nhead=c.n_head,
            num_encoder_layers=c.n_encoder_layer,
            num_decoder_layers=c.n_decoder_layer,
            dim_feedforward=c.ff_hidden,
            dropout=0.0,
            # gptlab's feed-forward uses GPT-2's tanh GELU; torch's "gelu" is the erf form.
            activation=lambda x: F.gelu(x, approximate="tanh"),
            batch_first=True,
            norm_first=c.pre_norm,
        )
    if not c.pre_norm:  # nn.Transformer always adds final norms; post-LN blocks end with one
        reference.encoder.norm = None
        reference.decoder.norm = None
    with torch.no_grad():
        for ours, theirs in zip(model.encoder, reference.encoder.layers):
            copy_attention(ours.self_attn, theirs.self_attn)
            copy_feed_forward(ours.mlp, theirs)
            copy_norm(ours.attn_norm.norm, theirs.norm1)
            copy_norm(ours.mlp_norm.norm, theirs.norm2)
        for ours, theirs in zip(model.decoder, reference.decoder.layers):
            copy_attention(ours.self_attn, theirs.self_attn)
            copy_attention(ours.cross_attn, theirs.multihead_attn)
            copy_feed_forward(ours.mlp, theirs)
            copy_norm(ours.self_attn_norm.norm, theirs.norm1)
            copy_norm(ours.cross_attn_norm.norm, theirs.norm2)
            copy_norm(ours.mlp_norm.norm, theirs.norm3)
        if c.pre_norm:
            copy_norm(model.ln_enc, reference.encoder.norm)
            copy_norm(model.ln_dec, reference.decoder.norm)
    return reference.eval()


def copy_attention(ours, theirs: nn.MultiheadAttention) -> None:
    # Both stack the query, key and value projections in one (3C, C) matrix, in that order.
    theirs.in_proj_weight.copy_(ours.c_attn.weight)
    theirs.in_proj_bias.copy_(ours.c_attn.bias)
    theirs.out_proj.weight.copy_(ours.c_proj.weight)
    theirs.out_proj.bias.copy_(ours.c_proj.bias)


def copy_feed_forward(ours, theirs) -> None:
    theirs.linear1.weight.copy_(ours.c_fc.weight)
    theirs.linear1.bias.copy_(ours.c_fc.bias)
    theirs.linear2.weight.copy_(ours.c_proj.weight)
    theirs.linear2.bias.copy_(ours.c_proj.bias)


def copy_norm(ours, theirs: nn.LayerNorm) -> None:
    theirs.weight.copy_(ours.weight)
    theirs.bias.copy_(ours.bias)


def reference_logits(model: Seq2Seq, reference: nn.Transformer, src, tgt_in) -> torch.Tensor:
    """torch.nn.Transformer between gptlab's embeddings and output projection."""
    S, T = src.size(1), tgt_in.size(1)
    src_x = model.src_embed(src) + model.src_pos(torch.arange(S))
    tgt_x = model.tgt_embed(tgt_in) + model.tgt_pos(torch.arange(T))
    hidden = reference(
        src_x,
        tgt_x,
        tgt_mask=nn.Transformer.generate_square_subsequent_mask(T),
        src_key_padding_mask=src == PAD,  # torch marks the padding, gptlab the real tokens
        memory_key_padding_mask=src == PAD,
        tgt_is_causal=True,
    )
    return model.lm_head(hidden)


@pytest.mark.parametrize("pre_norm", [True, False], ids=["pre-LN", "post-LN"])
@pytest.mark.parametrize("positions", ["sinusoidal", "learned"])
def test_matches_torch_nn_transformer_with_equal_weights(pre_norm, positions):
    torch.manual_seed(0)
    model = Seq2Seq(tiny_config(pre_norm=pre_norm, positions=positions)).eval()
    randomize_(model)
    reference = torch_transformer(model)
    with torch.no_grad():
        expected = reference_logits(model, reference, SRC, TGT_IN)
        logits = model(SRC, TGT_IN)
    assert logits.shape == (2, 5, 19)
    assert_close(logits, expected, atol=1e-5, rtol=1e-5)


def test_source_padding_changes_nothing_the_model_reads():
    torch.manual_seed(0)
    model = Seq2Seq(tiny_config()).eval()
    longer = torch.cat([SRC, torch.full((2, 3), PAD)], dim=1)  # more padding on every row
    with torch.no_grad():
        assert_close(model(longer, TGT_IN), model(SRC, TGT_IN), atol=1e-6, rtol=0)


def test_target_position_ignores_later_target_tokens():
    torch.manual_seed(0)
    model = Seq2Seq(tiny_config()).eval()
    changed = TGT_IN.clone()
    changed[:, 3:] = 17
    with torch.no_grad():
        assert_close(model(SRC, changed)[:, :3], model(SRC, TGT_IN)[:, :3], rtol=0, atol=0)


def test_cached_decoding_matches_the_full_decoder():
    torch.manual_seed(0)
    model = Seq2Seq(tiny_config()).eval()
    with torch.no_grad():
        full = model(SRC, TGT_IN)  # (B, T, V)
        src_mask = model.source_mask(SRC, None)
        memory = model.encode(SRC, src_mask)
        memory_kv = model.memory_kv(memory)
        cache = model.new_kv_cache(2, 8)
        steps = [
            model.decode(
                TGT_IN[:, t : t + 1],
                None,
                src_mask,
                kv_cache=cache,
                input_pos=torch.tensor([t]),
                memory_kv=memory_kv,
            )
            for t in range(TGT_IN.size(1))
        ]
    assert_close(torch.cat(steps, dim=1), full, atol=1e-5, rtol=1e-5)


def test_shared_and_tied_embeddings_are_one_tensor():
    model = Seq2Seq(tiny_config(tgt_vocab_size=23, shared_embeddings=True, tie_output=True))
    assert model.src_embed.weight is model.tgt_embed.weight is model.lm_head.weight
    separate = Seq2Seq(tiny_config(tie_output=False))
    assert separate.lm_head.weight is not separate.tgt_embed.weight
    assert model.num_params() < separate.num_params()


def test_config_refuses_inconsistent_shapes():
    with pytest.raises(ConfigError):
        tiny_config(shared_embeddings=True)  # 23 source ids, 19 target ids
    with pytest.raises(ConfigError):
        tiny_config(n_embd=30)  # not divisible by 4 heads
    with pytest.raises(ConfigError):
        tiny_config(eos_id=19)


def test_an_over_long_source_is_a_context_length_error():
    model = Seq2Seq(tiny_config())
    with pytest.raises(ContextLengthError):
        model.encode(torch.ones(1, 17, dtype=torch.long))


def test_shift_right_starts_with_bos_and_ignores_padding():
    tgt = torch.tensor([[5, 6, EOS], [7, EOS, PAD]])
    tgt_in, targets = shift_right(tgt, BOS, PAD)
    assert tgt_in.tolist() == [[BOS, 5, 6], [BOS, 7, EOS]]
    assert targets.tolist() == [[5, 6, EOS], [7, EOS, IGNORE_INDEX]]


def test_label_smoothing_is_cross_entropy_against_the_smoothed_distribution():
    torch.manual_seed(0)
    logits, targets = torch.randn(2, 3, 7), torch.tensor([[1, 2, 3], [4, 5, IGNORE_INDEX]])
    eps = 0.1
    smooth = torch.full((5, 7), eps / 7)
    real = targets.reshape(-1) != IGNORE_INDEX
    smooth[torch.arange(5), targets.reshape(-1)[real]] += 1 - eps
    expected = -(smooth * logits.reshape(-1, 7)[real].log_softmax(-1)).sum(-1).mean()
    assert_close(seq2seq_loss(logits, targets, label_smoothing=eps), expected)


def test_saved_weights_load_back_with_shared_and_tied_tables(tmp_path):
    from gptlab.training.checkpoint import load_weights, save_weights

    config = tiny_config(tgt_vocab_size=23, shared_embeddings=True, positions="learned")
    model = Seq2Seq(config)
    save_weights(model, tmp_path / "model.safetensors")  # each shared tensor stored once
    loaded = Seq2Seq(config)
    load_weights(loaded, tmp_path / "model.safetensors")
    assert torch.equal(loaded.tgt_embed.weight, model.src_embed.weight)
    assert loaded.lm_head.weight is loaded.src_embed.weight  # still one tensor after loading
    for (name, a), b in zip(model.state_dict().items(), loaded.state_dict().values()):
        assert torch.equal(a, b), name

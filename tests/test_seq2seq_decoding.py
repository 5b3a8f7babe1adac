"""Decoding an encoder-decoder: cached greedy equals a step-by-step reference, beam search of
width 1 equals greedy, the encoder runs once, and each row keeps its own length limit."""

from __future__ import annotations

import pytest
import torch

from gptlab.errors import ConfigError, ContextLengthError
from gptlab.generation.seq2seq import length_limits, translate_ids
from gptlab.models.seq2seq import Seq2Seq, Seq2SeqConfig

PAD, BOS, EOS = 0, 1, 2
SOURCES = [[5, 6, 7, 8, EOS], [9, 10, EOS], [11, 12, 13, 14, 15, 16, 17, EOS], [3, EOS]]


@pytest.fixture(scope="module")
def model() -> Seq2Seq:
    torch.manual_seed(0)
    config = Seq2SeqConfig(
        src_vocab_size=20,
        tgt_vocab_size=20,
        pad_id=PAD,
        bos_id=BOS,
        eos_id=EOS,
        n_embd=32,
        n_head=4,
        dropout=0.0,
        max_length=24,
        tie_output=False,
    )
    model = Seq2Seq(config).eval()
    with torch.no_grad():  # sharper outputs, and EOS likelier, so that some rows end early
        model.lm_head.weight.normal_()
        model.lm_head.weight[EOS] *= 2
    return model


def reference_greedy(model: Seq2Seq, source: list[int], limit: int) -> list[int]:
    """Greedy decoding the slow, plain way: the whole model on the whole target at every step."""
    src = torch.tensor([source])
    target = [BOS]
    with torch.no_grad():
        for _ in range(limit):
            logits = model(src, torch.tensor([target]))[0, -1]
            token = int(logits.argmax())
            if token == EOS:
                break
            target.append(token)
    return target[1:]


def test_cached_greedy_matches_a_step_by_step_reference_token_for_token(model):
    limits = length_limits([len(s) for s in SOURCES], 1.5, 4, model.config.max_length)
    expected = [reference_greedy(model, s, n) for s, n in zip(SOURCES, limits)]
    got = translate_ids(model, SOURCES, max_length_ratio=1.5, max_length_extra=4)
    assert got == expected
    assert any(len(row) < n for row, n in zip(got, limits))  # some rows ended at EOS
    assert any(len(row) == n for row, n in zip(got, limits))  # and some at their limit


def test_beam_search_of_width_one_is_greedy(model):
    # width 1 through beam_search itself, not the greedy shortcut of translate_ids
    from gptlab.generation.beam import beam_search
    from gptlab.generation.config import GenerationConfig
    from gptlab.generation.seq2seq import Seq2SeqDecoder, right_pad

    src, mask = right_pad(SOURCES, PAD)
    limits = length_limits([len(s) for s in SOURCES], 1.5, 4, model.config.max_length)
    decoder = Seq2SeqDecoder(model, src, mask, torch.tensor(limits))
    config = GenerationConfig(
        max_new_tokens=max(limits) + 1, strategy="beam", num_beams=1, eos_id=EOS
    )
    bos = torch.full((len(SOURCES), 1), BOS)
    with torch.no_grad():
        rows = beam_search(decoder, bos, None, config)
    rows = [row[: row.index(EOS)] if EOS in row else row for row in rows]
    assert rows == translate_ids(model, SOURCES, max_length_ratio=1.5, max_length_extra=4)


def sequence_log_prob(model: Seq2Seq, source: list[int], target: list[int], limit: int) -> float:
    """The score beam search gives a finished target: its log-probability, with the EOS that
    ends it unless it was forced there by the length limit."""
    with torch.no_grad():
        logits = model(torch.tensor([source]), torch.tensor([[BOS, *target]]))
    log_probs = logits[0].log_softmax(-1)
    ending = [] if len(target) == limit else [EOS]
    return float(sum(log_probs[t, token] for t, token in enumerate([*target, *ending])))


def test_beam_search_finds_targets_at_least_as_likely_as_greedy(model):
    kwargs = dict(max_length_ratio=1.0, max_length_extra=3, length_penalty=0.0)
    greedy = translate_ids(model, SOURCES, **kwargs)
    beams = translate_ids(model, SOURCES, num_beams=4, **kwargs)
    limits = length_limits([len(s) for s in SOURCES], 1.0, 3, model.config.max_length)
    assert all(len(row) <= n for row, n in zip(beams, limits))
    for source, g, b, n in zip(SOURCES, greedy, beams, limits):
        assert (
            sequence_log_prob(model, source, b, n) >= sequence_log_prob(model, source, g, n) - 1e-4
        )


def test_a_batch_decodes_each_source_as_it_would_alone(model):
    together = translate_ids(model, SOURCES, num_beams=3, batch_size=8)
    alone = [translate_ids(model, [source], num_beams=3)[0] for source in SOURCES]
    assert together == alone


def test_the_encoder_and_the_cross_attention_projections_run_once_per_batch(model, monkeypatch):
    calls = {"encode": 0, "memory_kv": 0}
    for name in calls:
        original = getattr(model, name)

        def counted(*args, _original=original, _name=name, **kwargs):
            calls[_name] += 1
            return _original(*args, **kwargs)

        monkeypatch.setattr(model, name, counted)
    translate_ids(model, SOURCES, num_beams=3)
    assert calls == {"encode": 1, "memory_kv": 1}


def test_empty_and_over_long_sources_are_refused(model):
    with pytest.raises(ConfigError):
        translate_ids(model, [[5, EOS], []])
    with pytest.raises(ContextLengthError):
        translate_ids(model, [[5] * 25])

"""End to end: gptlab's greedy and beam-search outputs are token for token those of
transformers' `GPT2LMHeadModel.generate`, for the same random weights."""

from __future__ import annotations

import pytest
import torch

from gptlab.generation import Decoder, GenerationConfig, beam_hypotheses, generate
from gptlab.generation.loop import batch_prompts, cut_at_eos
from gptlab.models.gpt import GPT
from gptlab.pretrained import config_from_hf, state_dict_from_hf

transformers = pytest.importorskip("transformers")

PAD = 0
# (vocab, context, width, layers, heads, init std): a wider init than GPT-2's 0.02 makes the
# next-token distributions peaked, so float noise between the two models cannot flip an argmax.
SHAPES = {
    "2x32": (97, 64, 32, 2, 4, 0.2),
    "3x48": (61, 48, 48, 3, 4, 0.1),
    "1x64": (128, 40, 64, 1, 2, 0.1),
}


def model_pair(shape: str) -> tuple:
    """A random GPT2LMHeadModel and the gptlab GPT loaded with its weights."""
    vocab, context, width, layers, heads, std = SHAPES[shape]
    torch.manual_seed(sum(map(ord, shape)))
    hf_config = transformers.GPT2Config(
        vocab_size=vocab,
        n_positions=context,
        n_embd=width,
        n_layer=layers,
        n_head=heads,
        resid_pdrop=0.0,
        embd_pdrop=0.0,
        attn_pdrop=0.0,
        initializer_range=std,
        bos_token_id=PAD,
        eos_token_id=PAD,
    )
    hf_model = transformers.GPT2LMHeadModel(hf_config).eval()
    model = GPT(config_from_hf(hf_config))
    model.load_state_dict(state_dict_from_hf(hf_model.state_dict()))
    return hf_model, model.eval()


@pytest.fixture(scope="module", params=list(SHAPES))
def models(request):
    return model_pair(request.param)


def random_prompts(vocab: int, lengths: tuple[int, ...], seed: int = 0) -> list[list[int]]:
    g = torch.Generator().manual_seed(seed)
    return [torch.randint(1, vocab, (n,), generator=g).tolist() for n in lengths]


def hf_generate(
    hf_model, prompts: list[list[int]], eos_id: int | None = None, **settings
) -> list[list[int]]:
    """transformers' new tokens for left-padded prompts, each cut before its first EOS."""
    T = max(map(len, prompts))
    ids = torch.full((len(prompts), T), PAD)
    attention_mask = torch.zeros(len(prompts), T, dtype=torch.long)
    for i, prompt in enumerate(prompts):
        ids[i, T - len(prompt) :] = torch.tensor(prompt)
        attention_mask[i, T - len(prompt) :] = 1
    with torch.no_grad():
        out = hf_model.generate(
            ids,
            attention_mask=attention_mask,
            pad_token_id=PAD,
            eos_token_id=eos_id,
            do_sample=False,
            **settings,
        )
    rows = out[:, T:].tolist()
    return [row[: row.index(eos_id)] if eos_id in row else row for row in rows]


def vocab_of(model) -> int:
    return model.config.vocab_size


def test_greedy_matches_transformers_one_prompt_at_a_time(models):
    hf_model, model = models
    for prompt in random_prompts(vocab_of(model), (1, 5, 12)):
        expected = hf_generate(hf_model, [prompt], max_new_tokens=20)
        assert (
            generate(model, [prompt], GenerationConfig(strategy="greedy", max_new_tokens=20))
            == expected
        )


def test_greedy_matches_transformers_on_a_left_padded_batch(models):
    hf_model, model = models
    prompts = random_prompts(vocab_of(model), (7, 2, 11, 4), seed=1)
    expected = hf_generate(hf_model, prompts, max_new_tokens=16)
    assert (
        generate(model, prompts, GenerationConfig(strategy="greedy", max_new_tokens=16)) == expected
    )


def test_greedy_with_eos_matches_transformers(models):
    hf_model, model = models
    prompts = random_prompts(vocab_of(model), (3, 9, 6), seed=2)
    eos = generate(model, prompts[1:2], GenerationConfig(strategy="greedy", max_new_tokens=4))[0][
        -1
    ]
    expected = hf_generate(hf_model, prompts, eos_id=eos, max_new_tokens=16)
    assert (
        generate(model, prompts, GenerationConfig(strategy="greedy", max_new_tokens=16, eos_id=eos))
        == expected
    )


def eos_on_the_greedy_path(model, prompt: list[int], step: int) -> int:
    """A token greedy decoding emits early: as EOS it ends beams early and makes them compete."""
    return generate(model, [prompt], GenerationConfig(strategy="greedy", max_new_tokens=step + 1))[
        0
    ][step]


@pytest.mark.parametrize(
    ("num_beams", "length_penalty", "early_stopping"),
    [(3, 1.0, False), (4, 0.5, True), (4, 2.0, False), (3, -1.0, True)],
)
def test_beam_search_matches_transformers(num_beams, length_penalty, early_stopping):
    hf_model, model = model_pair("3x48")
    settings = dict(
        num_beams=num_beams, length_penalty=length_penalty, early_stopping=early_stopping
    )
    for lengths, step in [((6,), 1), ((6, 2, 11), 3)]:
        prompts = random_prompts(vocab_of(model), lengths, seed=step)
        eos = eos_on_the_greedy_path(model, prompts[0], step)
        expected = hf_generate(hf_model, prompts, eos_id=eos, max_new_tokens=12, **settings)
        config = GenerationConfig(strategy="beam", max_new_tokens=12, eos_id=eos, **settings)
        assert generate(model, prompts, config) == expected


def test_beam_search_without_eos_matches_transformers(models):
    hf_model, model = models
    prompts = random_prompts(vocab_of(model), (5, 8), seed=3)
    expected = hf_generate(hf_model, prompts, num_beams=4, max_new_tokens=10)
    assert (
        generate(model, prompts, GenerationConfig(strategy="beam", num_beams=4, max_new_tokens=10))
        == expected
    )


@pytest.mark.parametrize("penalty", [1.5, 0.8])
def test_repetition_penalty_greedy_matches_transformers(penalty):
    hf_model, model = model_pair("2x32")
    prompts = random_prompts(vocab_of(model), (6, 3, 10), seed=4)
    expected = hf_generate(hf_model, prompts, repetition_penalty=penalty, max_new_tokens=20)
    config = GenerationConfig(strategy="greedy", max_new_tokens=20, repetition_penalty=penalty)
    assert generate(model, prompts, config) == expected


@pytest.mark.parametrize("n", [1, 2, 3])
def test_no_repeat_ngram_greedy_matches_transformers(n):
    hf_model, model = model_pair("2x32")
    prompts = random_prompts(vocab_of(model), (6, 3, 10), seed=5)
    expected = hf_generate(hf_model, prompts, no_repeat_ngram_size=n, max_new_tokens=20)
    config = GenerationConfig(strategy="greedy", max_new_tokens=20, no_repeat_ngram_size=n)
    assert generate(model, prompts, config) == expected


def test_beam_search_with_penalties_matches_transformers():
    hf_model, model = model_pair("3x48")
    prompt = random_prompts(vocab_of(model), (6,), seed=6)
    settings = dict(num_beams=3, repetition_penalty=1.3, no_repeat_ngram_size=2)
    expected = hf_generate(hf_model, prompt, max_new_tokens=12, **settings)
    assert (
        generate(model, prompt, GenerationConfig(strategy="beam", max_new_tokens=12, **settings))
        == expected
    )


def test_the_best_beam_hypotheses_are_transformers_num_return_sequences():
    hf_model, model = model_pair("3x48")
    prompts = random_prompts(vocab_of(model), (6, 2, 11), seed=7)
    eos = eos_on_the_greedy_path(model, prompts[0], 3)
    settings = dict(num_beams=4, length_penalty=0.5)
    expected = hf_generate(
        hf_model, prompts, eos_id=eos, max_new_tokens=12, num_return_sequences=3, **settings
    )
    config = GenerationConfig(strategy="beam", max_new_tokens=12, eos_id=eos, **settings)
    decoder = Decoder(model)
    with torch.inference_mode():
        ids, mask = batch_prompts(decoder, prompts, config)
        found = beam_hypotheses(decoder, ids, mask, config, count=3)
    assert [cut_at_eos(tokens, eos) for best in found for tokens in best] == expected

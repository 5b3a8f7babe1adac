"""Generation: the decode loop, batching, stopping, the context window, streaming and stop strings."""

from __future__ import annotations

import copy

import pytest
import torch

from gptlab.config import GPTConfig
from gptlab.errors import ConfigError, ContextLengthError
from gptlab.generation import (
    Decoder,
    GenerationConfig,
    TextAssembler,
    decode_step,
    generate,
    generate_text,
    stream,
)
from gptlab.generation.speculative import DraftStats, speculative_tokens
from gptlab.models.gpt import GPT

VOCAB = 64
CHARS = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 .,;:!?-'\n"[:VOCAB]


class CharTokens:
    """A character tokenizer over CHARS, with no end-of-text token."""

    eos_id = None
    vocab_size = VOCAB

    def encode(self, text: str) -> list[int]:
        return [CHARS.index(c) for c in text]

    def decode(self, ids) -> str:
        return "".join(CHARS[i] for i in ids)


class ByteTokens:
    """One token per UTF-8 byte: any character beyond ASCII spans several tokens."""

    eos_id = None
    vocab_size = 256

    def encode(self, text: str) -> list[int]:
        return list(text.encode())

    def decode(self, ids) -> str:
        return bytes(ids).decode("utf-8", errors="replace")


def tiny_model(context: int = 32, vocab: int = VOCAB, seed: int = 0) -> GPT:
    torch.manual_seed(seed)
    model = GPT(GPTConfig(vocab_size=vocab, context_length=context, n_layer=2, n_head=2, n_embd=32))
    with torch.no_grad():
        for p in model.parameters():  # wider weights than GPT-2's init: peaked predictions
            p.normal_(std=0.3)
        # Strong position embeddings make the predictions change along the sequence, where a
        # small random model would settle into repeating one token.
        model.wpe.weight *= 4
    return model.eval()


@pytest.fixture(scope="module")
def model() -> GPT:
    return tiny_model()


def greedy(max_new_tokens: int = 12, **changes) -> GenerationConfig:
    return GenerationConfig(strategy="greedy", max_new_tokens=max_new_tokens, **changes)


def greedy_without_cache(model: GPT, prompt: list[int], n: int) -> list[int]:
    """The reference loop: run the whole sequence through the model for every new token."""
    ids = torch.tensor([prompt])
    with torch.no_grad():
        for _ in range(n):
            logits, _ = model(ids)
            ids = torch.cat([ids, logits[:, -1].argmax(-1, keepdim=True)], dim=1)
    return ids[0, len(prompt) :].tolist()


# ----- configuration -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "bad",
    [
        dict(temperature=-0.1),
        dict(top_p=0.0),
        dict(top_p=1.5),
        dict(top_k=0),
        dict(min_p=1.5),
        dict(repetition_penalty=0.0),
        dict(no_repeat_ngram_size=-1),
        dict(num_beams=0),
        dict(max_new_tokens=0),
        dict(strategy="nucleus"),
        dict(overflow="wrap"),
        dict(stop=("",)),
        dict(eos_id=-1),
    ],
)
def test_invalid_settings_raise_a_config_error(bad):
    with pytest.raises(ConfigError, match=next(iter(bad))):
        GenerationConfig(**bad)


def test_a_single_stop_string_is_one_stop_string():
    assert GenerationConfig(stop="\n\n").stop == ("\n\n",)


# ----- the decode loop -----------------------------------------------------------------------


def test_cached_greedy_equals_recomputing_the_whole_sequence(model):
    prompt = [5, 17, 3, 40]
    assert generate(model, [prompt], greedy(20)) == [greedy_without_cache(model, prompt, 20)]


def test_a_left_padded_batch_equals_each_prompt_alone(model):
    prompts = [[1, 2, 3, 4, 5, 6, 7], [9], [30, 31, 32]]
    alone = [generate(model, [p], greedy(15))[0] for p in prompts]
    assert generate(model, prompts, greedy(15)) == alone


def test_sampling_with_a_seed_is_reproducible(model):
    config = GenerationConfig(max_new_tokens=20, temperature=1.5, seed=7)
    first = generate(model, [[1, 2], [3]], config)
    assert generate(model, [[1, 2], [3]], config) == first
    other = GenerationConfig(max_new_tokens=20, temperature=1.5, seed=8)
    assert generate(model, [[1, 2], [3]], other) != first


def test_temperature_zero_and_top_k_one_are_greedy(model):
    expected = generate(model, [[4, 5, 6]], greedy(15))
    assert (
        generate(model, [[4, 5, 6]], GenerationConfig(max_new_tokens=15, temperature=0.0, seed=1))
        == expected
    )
    assert (
        generate(model, [[4, 5, 6]], GenerationConfig(max_new_tokens=15, top_k=1, seed=1))
        == expected
    )


def test_one_beam_is_greedy(model):
    expected = generate(model, [[4, 5, 6]], greedy(15))
    assert (
        generate(
            model, [[4, 5, 6]], GenerationConfig(strategy="beam", num_beams=1, max_new_tokens=15)
        )
        == expected
    )


def test_eos_ends_a_row_and_is_not_returned(model):
    plain = generate(model, [[8, 9], [20]], greedy(12))
    eos = plain[0][4]
    rows = generate(model, [[8, 9], [20]], greedy(12, eos_id=eos))
    for row, full in zip(rows, plain):
        assert row == full[: full.index(eos)] if eos in full else row == full
    assert generate(model, [[8, 9]], greedy(12, eos_id=eos, stop_at_eos=False)) == plain[:1]


def test_an_empty_prompt_starts_from_eos_or_is_an_error(model):
    assert generate(model, [[]], greedy(5, eos_id=0)) == generate(model, [[0]], greedy(5))
    with pytest.raises(ConfigError, match="empty prompt"):
        generate(model, [[]], greedy(5))


def test_token_ids_outside_the_vocabulary_are_an_error(model):
    with pytest.raises(ConfigError, match="outside the model's vocabulary"):
        generate(model, [[1, VOCAB]], greedy(5))


def test_generation_leaves_the_model_in_its_training_mode(model):
    model.train()
    generate(model, [[1, 2]], greedy(3))
    assert model.training
    model.eval()


def test_a_reused_decoder_gives_the_same_tokens(model):
    decoder = Decoder(model)
    for prompts in ([[1, 2, 3]], [[4], [5, 6, 7, 8]], [[1, 2, 3]]):
        assert generate(model, prompts, greedy(10), decoder=decoder) == generate(
            model, prompts, greedy(10)
        )


def test_a_fixed_cache_length_gives_the_same_tokens(model):
    decoder = Decoder(model, cache_length=32)
    assert generate(model, [[3, 1], [2]], greedy(10), decoder=decoder) == generate(
        model, [[3, 1], [2]], greedy(10)
    )


def test_steps_read_only_the_filled_part_of_a_long_cache():
    """Past 64 slots a step reads 128 of the 160 (and not all of them): same tokens as
    recomputing every sequence, left-padded rows included."""
    long_model = tiny_model(context=160)
    prompts = [list(range(1, 61)), list(range(3, 50))]
    decoder = Decoder(long_model, cache_length=160)
    seen = []
    step = decoder.step

    def spying_step(token):
        logits = step(token)
        seen.append(decoder.kv_cache[0].visible)
        return logits

    decoder.step = spying_step
    out = generate(long_model, prompts, greedy(10), decoder=decoder)
    assert out == [greedy_without_cache(long_model, p, 10) for p in prompts]
    assert set(seen) == {64, 128} and seen == sorted(seen)


@pytest.mark.parametrize("draft_tokens", [1, 3, 6])
def test_a_draft_model_gives_the_targets_greedy_tokens(draft_tokens):
    target = tiny_model(context=64, seed=0)
    draft = copy.deepcopy(target)  # a near copy: it guesses right some of the time, not always
    with torch.no_grad():
        for p in draft.parameters():
            p.add_(torch.randn_like(p), alpha=0.15)
    stats = DraftStats()
    loop = speculative_tokens(
        Decoder(target),
        Decoder(draft),
        torch.tensor([[1, 2, 3, 4]]),
        greedy(30),
        draft_tokens,
        stats,
    )
    with torch.no_grad():
        tokens = [int(t) for t in loop]
    assert tokens == greedy_without_cache(target, [1, 2, 3, 4], 30)
    assert stats.tokens == 29 and 0 < stats.accepted < stats.proposed
    assert generate(target, [[1, 2, 3, 4]], greedy(30), draft=Decoder(draft)) == [tokens]


def test_a_perfect_draft_has_every_guess_kept(model):
    stats = DraftStats()
    with torch.no_grad():
        tokens = list(
            speculative_tokens(
                Decoder(model), Decoder(model), torch.tensor([[5, 6]]), greedy(13), 4, stats
            )
        )
    assert len(tokens) == 13
    assert stats.accepted == stats.proposed == 10 and stats.rounds == 3  # 5, 5, then 2 tokens


@pytest.mark.parametrize(
    "config, prompts, message",
    [
        (GenerationConfig(strategy="sample", max_new_tokens=5), [[1]], "greedy decoding only"),
        (greedy(5, repetition_penalty=1.3), [[1]], "repetition penalties"),
        (greedy(5), [[1], [2]], "one prompt at a time"),
    ],
)
def test_what_a_draft_cannot_do_is_refused(model, config, prompts, message):
    with pytest.raises(ConfigError, match=message):
        generate(model, prompts, config, draft=Decoder(model))


def test_a_draft_with_another_vocabulary_is_refused(model):
    with pytest.raises(ConfigError, match="same tokenizer"):
        generate(model, [[1]], greedy(5), draft=Decoder(tiny_model(vocab=VOCAB + 1)))


def test_the_decode_step_compiles_as_one_graph(model):
    """The step that `Decoder(compile=True)` compiles has no graph break (fullgraph=True)."""
    torch._dynamo.reset()
    compiled = torch.compile(decode_step, backend="eager", fullgraph=True)
    decoder = Decoder(model)
    with torch.no_grad():
        decoder.prefill(
            torch.tensor([[0, 5, 6], [0, 0, 7]]), torch.tensor([[0, 1, 1], [0, 0, 1]]).bool(), 8
        )
        args = (
            model,
            decoder.kv_cache,
            torch.tensor([[1], [2]]),
            decoder.input_pos,
            decoder.positions[:, None],
        )
        # Both calls write slot 3 with the same keys and values.
        expected = decode_step(*args, decoder.padding_mask)
        torch.testing.assert_close(compiled(*args, decoder.padding_mask), expected)


# ----- the context window --------------------------------------------------------------------


def test_generation_stops_with_a_warning_when_the_context_is_full():
    model = tiny_model(context=16)
    with pytest.warns(UserWarning, match="filled the model's context of 16"):
        rows = generate(model, [[1, 2, 3, 4, 5, 6]], greedy(30))
    assert len(rows[0]) == 10


def test_a_prompt_that_fills_the_context_is_an_error():
    model = tiny_model(context=16)
    with pytest.raises(ContextLengthError, match="overflow='slide'"):
        generate(model, [list(range(16))], greedy(5))


def sliding_reference(model: GPT, prompt: list[int], n: int, keep: int) -> list[int]:
    """Greedy without a cache, on a window that restarts from its last `keep` tokens when the
    next token would not fit the context."""
    tokens, start = list(prompt), 0
    for _ in range(n):
        if len(tokens) - start > model.config.context_length:
            start = len(tokens) - keep
        tokens += greedy_without_cache(model, tokens[start:], 1)
    return tokens[len(prompt) :]


def test_a_sliding_window_goes_past_the_context():
    model = tiny_model(context=16)
    prompt = [1, 2, 3, 4, 5, 6]
    rows = generate(model, [prompt], greedy(40, overflow="slide"))
    assert rows == [sliding_reference(model, prompt, 40, keep=12)]  # keeps 3/4 of the context
    assert rows != [sliding_reference(model, prompt, 40, keep=16)]  # (not a slide every token)


def test_a_sliding_window_crops_a_long_prompt_to_its_last_tokens():
    model = tiny_model(context=16)
    long_prompt = list(range(1, 21))
    cropped = generate(model, [long_prompt[-12:]], greedy(6, overflow="slide"))
    assert generate(model, [long_prompt], greedy(6, overflow="slide")) == cropped
    assert len(cropped[0]) == 6


def test_beam_search_slides_too():
    model = tiny_model(context=16)
    rows = generate(
        model,
        [[1, 2, 3], [4]],
        GenerationConfig(strategy="beam", max_new_tokens=30, overflow="slide"),
    )
    assert [len(r) for r in rows] == [30, 30]


# ----- text: UTF-8 and stop strings ----------------------------------------------------------


def assemble(tokenizer, ids, stops=()) -> tuple[list[str], TextAssembler]:
    assembler = TextAssembler(tokenizer, stops)
    pieces = [assembler.push([i]) for i in ids] + [assembler.finish()]
    return [p for p in pieces if p], assembler


def test_text_pieces_hold_back_partial_utf8_characters():
    text = "naïve café 🙂 日本"
    pieces, _ = assemble(ByteTokens(), list(text.encode()))
    assert "".join(pieces) == text
    assert not any("\ufffd" in p for p in pieces)


def test_text_pieces_stop_before_a_stop_string_that_spans_tokens():
    pieces, assembler = assemble(
        CharTokens(), CharTokens().encode("hello world. more"), stops=("d. m", "zz")
    )
    assert "".join(pieces) == "hello worl"
    assert assembler.stopped and assembler.stop_token_count == len("hello world. m")


def test_text_held_back_for_a_possible_stop_string_is_released_at_the_end():
    pieces, assembler = assemble(CharTokens(), CharTokens().encode("abc de"), stops=("de!",))
    assert "".join(pieces) == "abc de" and not assembler.stopped


def test_the_earliest_stop_string_wins():
    pieces, _ = assemble(ByteTokens(), list(b"one, two; three"), stops=("three", ";", ","))
    assert "".join(pieces) == "one"


def test_generate_text_and_stream_cut_before_a_stop_string(model):
    tokenizer = CharTokens()
    full = generate_text(model, tokenizer, ["ab"], greedy(30))[0]
    stop = full[10:13]
    expected = full[: full.index(stop)]
    assert generate_text(model, tokenizer, ["ab"], greedy(30, stop=(stop,))) == [expected]
    assert "".join(stream(model, tokenizer, "ab", greedy(30, stop=(stop,)))) == expected
    ids = generate(model, [tokenizer.encode("ab")], greedy(30, stop=(stop,)), tokenizer=tokenizer)[
        0
    ]
    assert tokenizer.decode(ids).endswith(stop)  # ids run up to the token that completes the stop


def test_stop_strings_need_a_tokenizer(model):
    with pytest.raises(ConfigError, match="tokenizer"):
        generate(model, [[1]], greedy(5, stop=("x",)))


def test_stream_concatenates_to_the_decoded_tokens(model):
    tokenizer = CharTokens()
    config = GenerationConfig(max_new_tokens=25, seed=3)
    ids = generate(model, [tokenizer.encode("hi")], config)[0]
    assert "".join(stream(model, tokenizer, "hi", config)) == tokenizer.decode(ids)


def test_stream_ends_at_the_tokenizers_eos(model):
    tokenizer = CharTokens()
    ids = generate(model, [tokenizer.encode("hi")], greedy(20))[0]
    tokenizer.eos_id = ids[6]
    expected = tokenizer.decode(ids[: ids.index(ids[6])])
    assert "".join(stream(model, tokenizer, "hi", greedy(20))) == expected
    assert generate_text(model, tokenizer, ["hi"], greedy(20)) == [expected]


def test_stream_of_beam_search_is_the_whole_text(model):
    tokenizer = CharTokens()
    config = GenerationConfig(strategy="beam", num_beams=3, max_new_tokens=10)
    assert list(stream(model, tokenizer, "hi", config)) == generate_text(
        model, tokenizer, ["hi"], config
    )


def test_stream_leaves_autograd_on_between_pieces(model):
    for _ in stream(model, CharTokens(), "hi", greedy(3)):
        assert not torch.is_inference_mode_enabled()


def test_stream_with_the_gpt2_tokenizer_handles_multibyte_characters(gpt2_tokenizer_dir):
    tokenizers = pytest.importorskip("gptlab.tokenizers")
    tokenizer = tokenizers.GPT2Tokenizer.from_pretrained(gpt2_tokenizer_dir)
    model = tiny_model(context=64, vocab=tokenizer.vocab_size, seed=1)
    # Make the tokens that end mid-character (byte pieces of emoji, accents, CJK) likely draws.
    partial = [i for i in range(tokenizer.vocab_size) if tokenizer.decode([i]).endswith("\ufffd")]
    with torch.no_grad():
        model.wte.weight[partial] *= 4
    config = GenerationConfig(max_new_tokens=40, seed=0, stop_at_eos=False)
    prompt = "Un café ☕ et 🙂"
    ids = generate(model, [tokenizer.encode(prompt)], config)[0]
    assert any(i in partial for i in ids)
    pieces = list(stream(model, tokenizer, prompt, config))
    assert "".join(pieces) == tokenizer.decode(ids)
    assert not any(p.endswith("\ufffd") for p in pieces[:-1])


def test_a_step_past_the_kv_cache_is_a_context_length_error(model):
    decoder = Decoder(model)
    decoder.prefill(torch.tensor([[1, 2, 3]]), None, 4)
    decoder.step(torch.tensor([4]))  # fills the 4th and last slot
    with pytest.raises(ContextLengthError, match="KV cache is full"):
        decoder.step(torch.tensor([5]))
    with pytest.raises(ContextLengthError, match="do not fit a KV cache"):
        model(
            torch.zeros(1, 5, dtype=torch.long),
            kv_cache=model.new_kv_cache(1, 4),
            input_pos=torch.arange(5),
        )


def test_a_new_thread_reaches_the_cuda_graph_trees_storage(monkeypatch):
    """The server decodes in a thread of its own: there, after `cuda_graphs_in_this_thread`,
    the CUDA graph trees find their per-thread managers. Torch 2.11 has no `_initialize_tls`
    and failed an assertion in such a thread; taking it away here makes the installed torch
    behave the same, so the test exercises gptlab's setup, not torch's."""
    import threading

    from torch._inductor import cudagraph_trees as trees

    from gptlab.generation.decoder import cuda_graphs_in_this_thread

    monkeypatch.delattr(trees, "_initialize_tls", raising=False)
    found, failed = [], []

    def in_thread():
        try:
            cuda_graphs_in_this_thread()
            found.append(trees.get_obj(trees.local, "tree_manager_containers"))
            found.append(trees.get_obj(trees.local, "tree_manager_locks"))
        except Exception as error:  # surfaced below: a thread's exception is otherwise lost
            failed.append(error)

    thread = threading.Thread(target=in_thread)
    thread.start()
    thread.join()
    assert not failed, failed
    assert len(found) == 2 and isinstance(found[0], dict)

"""The functions behind the demo's controls, without a browser: settings, explorer, colours, models,
and the page's handlers called directly."""

from __future__ import annotations

import argparse
import socket
import threading
from pathlib import Path

import pytest
import torch
from test_cli_finetune_instruct import BODY, answering_model, here, write_run

from gptlab.config import ClassifierConfig, GPTConfig
from gptlab.demo import render
from gptlab.demo.explorer import (
    NextTokenTable,
    TokenChoice,
    continuation_probabilities,
    next_token_table,
    token_probabilities,
    visible_token,
)
from gptlab.demo.models import LoadedModel, ModelStore, find_models, load_model_spec
from gptlab.demo.settings import (
    DemoLimits,
    checked_prompt,
    decoding_config,
    usable_prompts,
)
from gptlab.errors import ConfigError, GptlabError
from gptlab.generation import GenerationConfig, apply_penalties, apply_warpers
from gptlab.models.classifier import GPTClassifier
from gptlab.models.gpt import GPT
from gptlab.runs import load_run, write_run_config
from gptlab.tokenizers import CharTokenizer
from gptlab.training.checkpoint import save_weights

TINY_CORPUS = "ROMEO:\nTo be, or not to be, that is the question.\nabcdefghijklmnopqrstuvwxyz\n"


def write_tiny_run(run_dir: Path, seed: int = 0) -> Path:
    """A run directory holding an untrained 2-layer character model (the tests' "tiny" model)."""
    tokenizer = CharTokenizer.from_text(TINY_CORPUS)
    torch.manual_seed(seed)
    config = GPTConfig.from_preset("tiny", vocab_size=tokenizer.vocab_size)
    run_dir.mkdir(parents=True, exist_ok=True)
    save_weights(GPT(config), run_dir / "model.safetensors")
    write_run_config(run_dir, config, train={}, data={})
    tokenizer.save(run_dir / "tokenizer")
    return run_dir


def write_tiny_classifier_run(run_dir: Path, data: dict | None = None, seed: int = 0) -> Path:
    """A run directory holding an untrained ham/spam classifier on the tiny character model, as
    `gptlab finetune classify` writes one (`data`: its config's data section)."""
    tokenizer = CharTokenizer.from_text(TINY_CORPUS)
    torch.manual_seed(seed)
    config = GPTConfig.from_preset("tiny", vocab_size=tokenizer.vocab_size)
    head = ClassifierConfig(labels=["ham", "spam"])
    run_dir.mkdir(parents=True, exist_ok=True)
    save_weights(GPTClassifier(GPT(config), head), run_dir / "model.safetensors")
    write_run_config(
        run_dir, config, train={}, data=data or {}, task="classify", classifier=head.to_dict()
    )
    tokenizer.save(run_dir / "tokenizer")
    return run_dir


def write_tiny_instruction_run(run_dir: Path, model: GPT | None = None) -> Path:
    """An instruction run as `gptlab finetune instruct` writes one, on GPT-2's tokenizer (the
    Alpaca prompt needs more than the tiny corpus's characters): an untrained 2-layer model,
    or `model`."""
    torch.manual_seed(0)
    return write_run(run_dir, model or GPT(BODY), task="instruct")


def free_port() -> int:
    """A TCP port of 127.0.0.1 free right now, for a test server."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory) -> Path:
    return write_tiny_run(tmp_path_factory.mktemp("runs") / "tiny")


@pytest.fixture(scope="module")
def tiny(tiny_run):
    model, tokenizer, _ = load_run(tiny_run)
    return model, tokenizer


@pytest.fixture(scope="module")
def classifier_run(tmp_path_factory) -> Path:
    return write_tiny_classifier_run(tmp_path_factory.mktemp("runs") / "spam")


@pytest.fixture(scope="module")
def classifier(classifier_run):
    model, tokenizer, _ = load_run(classifier_run)
    return model, tokenizer


def sampling(**changes) -> GenerationConfig:
    return GenerationConfig(**{"strategy": "sample", "max_new_tokens": 1, **changes})


# ---- settings: the page's values to a checked GenerationConfig ----

CONTROLS = dict(
    strategy="sample",
    temperature=0.8,
    top_k=40,
    top_p=0.9,
    repetition_penalty=1.0,
    max_new_tokens=16,
    seed=1337,
)


def test_decoding_config_reads_the_controls_off_values_as_no_filter():
    config = decoding_config(DemoLimits(), **{**CONTROLS, "top_k": 0, "top_p": 1.0, "seed": ""})
    assert (config.top_k, config.top_p, config.seed) == (None, None, None)
    assert config.overflow == "slide"


def test_decoding_config_takes_numbers_sent_as_text_or_floats():
    config = decoding_config(DemoLimits(), **{**CONTROLS, "top_k": "7", "max_new_tokens": 16.0})
    assert (config.top_k, config.max_new_tokens) == (7, 16)


@pytest.mark.parametrize(
    "field, value, words",
    [
        ("temperature", "hot", "temperature must be a number"),
        ("temperature", -0.5, "temperature must be between"),
        ("temperature", float("nan"), "temperature must be a finite number"),
        ("top_k", 2.5, "top-k must be a whole number"),
        ("top_p", 0, "top-p must be above 0"),
        ("max_new_tokens", 513, "max new tokens must be at least 1 and at most 512"),
        ("max_new_tokens", None, "max new tokens is empty"),
        ("strategy", "nucleus", "strategy must be one of"),
        ("seed", -1, "seed must be at least 0"),
        ("repetition_penalty", True, "repetition penalty must be a number"),
    ],
)
def test_decoding_config_names_the_bad_field_in_its_message(field, value, words):
    with pytest.raises(ConfigError, match=words):
        decoding_config(DemoLimits(), **{**CONTROLS, field: value})


def test_demo_limits_must_be_positive():
    with pytest.raises(ConfigError, match="concurrency must be at least 1"):
        DemoLimits(concurrency=0)


def test_checked_prompt_caps_the_length(tiny):
    _, tokenizer = tiny
    assert checked_prompt("a" * 10, DemoLimits(max_prompt_chars=10), tokenizer) == "a" * 10
    with pytest.raises(ConfigError, match="11 characters; the limit is 10"):
        checked_prompt("a" * 11, DemoLimits(max_prompt_chars=10), tokenizer)


def test_checked_prompt_refuses_an_empty_prompt_without_end_of_text(tiny):
    with pytest.raises(ConfigError, match="the prompt is empty"):
        checked_prompt("", DemoLimits(), tiny[1])


def test_usable_prompts_keeps_those_the_tokenizer_can_encode(tiny):
    assert usable_prompts(tiny[1], ["ROMEO:\n", "Zebra!"]) == ["ROMEO:\n"]


# ---- explorer: the next-token table and token probabilities ----


def test_explorer_ends_with_the_distribution_sampling_draws_from(tiny):
    model, tokenizer = tiny
    config = sampling(temperature=0.7, top_k=20, top_p=0.8, repetition_penalty=1.3)
    table = next_token_table(model, tokenizer, "To be", config, rows=tokenizer.vocab_size)
    ids = torch.tensor([tokenizer.encode("To be")])
    with torch.no_grad():
        logits = model(ids)[0][:, -1]
    expected = apply_warpers(apply_penalties(logits, ids, config), config).softmax(-1)[0]
    got = torch.zeros_like(expected)
    for choice in table.choices:
        got[choice.token_id] = choice.probability
    torch.testing.assert_close(got, expected)
    assert table.kept == int((expected > 0).sum())


def test_explorer_marks_what_top_k_removes(tiny):
    model, tokenizer = tiny
    table = next_token_table(model, tokenizer, "To be", sampling(top_k=3), rows=10)
    assert [c.removed_by for c in table.choices] == [None] * 3 + ["top-k"] * 7
    assert table.kept == 3
    assert sum(c.probability for c in table.choices) == pytest.approx(1.0)


def test_explorer_marks_what_top_p_removes_after_top_k(tiny):
    model, tokenizer = tiny
    table = next_token_table(model, tokenizer, "To be", sampling(top_k=10, top_p=0.3), rows=12)
    removers = [c.removed_by for c in table.choices]
    kept = removers.count(None)
    assert 1 <= kept < 10
    assert removers == [None] * kept + ["top-p"] * (10 - kept) + ["top-k"] * 2


def test_explorer_at_temperature_zero_keeps_only_the_most_likely(tiny):
    model, tokenizer = tiny
    table = next_token_table(model, tokenizer, "To be", sampling(temperature=0), rows=3)
    assert [c.probability for c in table.choices] == [1.0, 0.0, 0.0]
    assert [c.removed_by for c in table.choices] == [None, "temperature 0", "temperature 0"]
    assert table.greedy and table.kept == 1


def test_explorer_temperature_below_one_sharpens_the_distribution(tiny):
    model, tokenizer = tiny
    best = next_token_table(model, tokenizer, "To be", sampling(temperature=0.5), rows=1).choices[0]
    assert best.tempered_probability > best.model_probability


def test_explorer_reads_only_the_models_context(tiny):
    model, tokenizer = tiny
    text = "To be, or not to be, that is the question. " * 3
    table = next_token_table(model, tokenizer, text, sampling(), rows=1)
    assert table.context_tokens == model.config.context_length


def test_token_probabilities_match_a_forward_pass(tiny):
    model, tokenizer = tiny
    ids = tokenizer.encode("To be, or not")
    with torch.no_grad():
        logits, _ = model(torch.tensor([ids]), all_logits=True)
    expected = logits[0, :-1].softmax(-1).gather(-1, torch.tensor(ids[1:])[:, None])[:, 0]
    torch.testing.assert_close(torch.tensor(token_probabilities(model, ids, 1)), expected)


def test_token_probabilities_of_a_text_longer_than_the_context(tiny):
    model, tokenizer = tiny
    ids = tokenizer.encode(TINY_CORPUS * 2)  # 166 tokens, context 32
    probabilities = token_probabilities(model, ids, 5)
    assert len(probabilities) == len(ids) - 5
    assert all(0 < p <= 1 for p in probabilities)
    # The first window is the start of the text, so it matches the short computation.
    assert probabilities[:11] == pytest.approx(token_probabilities(model, ids[:16], 5))


def test_continuation_probabilities_pair_each_new_token_with_its_probability(tiny):
    model, tokenizer = tiny
    tokens = continuation_probabilities(model, tokenizer, "To be", ", or")
    assert [text for text, _ in tokens] == [",", " ", "o", "r"]
    ids = tokenizer.encode("To be, or")
    assert [p for _, p in tokens] == pytest.approx(token_probabilities(model, ids, 5))


def test_visible_token_shows_whitespace():
    assert visible_token(" a\n\t") == "␣a↵⇥"
    assert visible_token("\x00") == "\\x00"
    assert visible_token("") == "∅"


# ---- render: the chart and the coloured text ----


def a_table(*choices: TokenChoice) -> NextTokenTable:
    return NextTokenTable(list(choices), kept=1, vocab_size=50, context_tokens=3, greedy=False)


def test_chart_has_one_clickable_row_per_token_with_its_id():
    table = a_table(
        TokenChoice(7, "e", 0.5, 0.6, 1.0, None),
        TokenChoice(3, " ", 0.2, 0.1, 0.0, "top-k"),
    )
    chart = render.next_token_chart(table, "To b", temperature=0.8)
    assert chart.count('class="ntx-row') == 2
    assert 'data-token="7"' in chart and 'data-token="3"' in chart
    assert "removed by top-k" in chart and "ntx-removed" in chart
    assert "␣" in chart  # the space token is visible
    assert "at temperature 0.8" in chart


def test_chart_escapes_model_text():
    table = a_table(TokenChoice(1, "<script>${x}{{y}}", 1.0, 1.0, 1.0, None))
    chart = render.next_token_chart(table, "<i>", temperature=1.0)
    assert "<script>" not in chart and "<i>" not in chart
    assert "${" not in chart and "{{" not in chart
    assert "&lt;script&gt;&#36;&#123;x&#125;" in chart


def test_probability_colour_runs_from_red_to_green_on_a_log_scale():
    assert render.probability_colour(1.0).startswith("hsl(120,")
    assert render.probability_colour(0.01).startswith("hsl(40,")
    assert render.probability_colour(0.1).startswith("hsl(80,")
    assert render.probability_colour(1e-6).startswith("hsl(0,")
    assert render.probability_colour(0.0).startswith("hsl(0,")


@pytest.mark.parametrize(
    "p, text",
    [
        (0.4213, "42%"),
        (0.031, "3.1%"),
        (0.001, "0.1%"),
        (0.0004, "0.04%"),
        (1e-7, "<0.01%"),
        (0, "0%"),
    ],
)
def test_percent_is_short(p, text):
    assert render.percent(p) == text


def test_coloured_text_gives_each_new_token_its_colour_and_probability():
    view = render.coloured_text("To", [(" b", 0.5), ("<", 0.001)])
    assert view.count('class="tokp-token"') == 2
    assert render.probability_colour(0.5) in view and "50%" in view
    assert "&lt;" in view and "To</span>" in view


# ---- models: finding, loading, keeping ----


def test_find_models_lists_model_folders_down_two_levels(tmp_path, tiny_run):
    import shutil

    shutil.copytree(tiny_run, tmp_path / "a")
    shutil.copytree(tiny_run, tmp_path / "group" / "b")
    (tmp_path / "hf").mkdir()
    (tmp_path / "hf" / "config.json").write_text('{"model_type": "gpt2"}')
    (tmp_path / "hf" / "model.safetensors").write_bytes(b"")
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "config.json").write_text("{}")
    found = [str(tmp_path / name) for name in ("a", "group/b", "hf")]
    assert find_models(tmp_path) == found
    assert find_models(tmp_path / "missing") == []


def test_load_model_spec_of_a_missing_folder_is_a_user_error(tmp_path):
    with pytest.raises(GptlabError):
        load_model_spec(str(tmp_path / "nothing"), "cpu")


def test_model_store_loads_each_model_once_under_concurrent_requests():
    calls = []
    release = threading.Event()

    def loader(spec, device):
        calls.append(spec)
        release.wait(5)
        return GPT(GPTConfig.from_preset("tiny")), CharTokenizer.from_text("ab"), {}

    store = ModelStore("cpu", loader=loader)
    results = []
    threads = [threading.Thread(target=lambda: results.append(store.get("m"))) for _ in range(4)]
    for thread in threads:
        thread.start()
    release.set()
    for thread in threads:
        thread.join()
    assert calls == ["m"]
    assert len({id(r) for r in results}) == 1


def test_model_store_forgets_the_least_recently_used():
    store = ModelStore(
        "cpu",
        capacity=2,
        loader=lambda spec, device: (GPT(GPTConfig.from_preset("tiny")), CharTokenizer("ab"), {}),
    )
    first = store.get("a")
    store.get("b")
    assert store.get("a") is first  # "a" is now the most recent
    store.get("c")
    assert store.get("a") is first
    assert isinstance(store.get("b"), LoadedModel) and store.get("b") is not None


def test_model_store_refuses_an_empty_spec():
    with pytest.raises(ConfigError, match="choose a model"):
        ModelStore("cpu").get("  ")


def test_a_classifiers_description_names_its_classes(classifier_run):
    description = ModelStore("cpu").get(str(classifier_run)).description
    assert "classifier: ham, spam" in description
    assert "2 layers" in description and "cpu" in description


# ---- the page's handlers, called without a browser ----


@pytest.fixture(scope="module")
def app(tiny_run):
    from gptlab.demo.app import DemoApp

    spec = str(tiny_run)
    return DemoApp(ModelStore("cpu"), DemoLimits(max_prompt_chars=50), [spec], spec)


def generation_controls(**changes):
    controls = dict(CONTROLS, num_beams=4) | changes
    return list(controls.values())


def test_generate_streams_text_that_grows_piece_by_piece(app, tiny_run):
    steps = list(app.generate(str(tiny_run), "To be", *generation_controls(max_new_tokens=8)))
    pieces = [text for text, _ in steps]
    assert pieces[0] == "" and len(pieces[-1]) == 8
    assert all(b.startswith(a) for a, b in zip(pieces, pieces[1:]))


def test_generate_hands_the_exact_token_ids_to_colouring(app, tiny, tiny_run):
    """The ids the model chose spell the text, and colouring scores those very ids."""
    model, tokenizer = tiny
    *_, (text, ids) = app.generate(str(tiny_run), "To be", *generation_controls(max_new_tokens=8))
    assert len(ids) == 8 and tokenizer.decode(ids) == text
    exact = continuation_probabilities(model, tokenizer, "To be", text, ids)
    assert [token for token, _ in exact] == [tokenizer.decode([i]) for i in ids]
    view, _ = app.colour(str(tiny_run), "To be", text, ids)
    assert view.count('class="tokp-token"') == 8


def test_colouring_tokenizes_again_text_the_ids_no_longer_spell(tiny):
    model, tokenizer = tiny
    ids = tokenizer.encode(", or")
    edited = continuation_probabilities(model, tokenizer, "To be", ", on", ids)
    assert [token for token, _ in edited] == [
        tokenizer.decode([i]) for i in tokenizer.encode(", on")
    ]


def test_generate_greedy_gives_what_generate_text_gives(app, tiny, tiny_run):
    from gptlab.generation import generate_text

    model, tokenizer = tiny
    *_, (text, _) = app.generate(
        str(tiny_run), "To be", *generation_controls(strategy="greedy", max_new_tokens=12)
    )
    config = GenerationConfig(max_new_tokens=12, strategy="greedy", overflow="slide")
    assert text == generate_text(model, tokenizer, ["To be"], config)[0]


@pytest.mark.parametrize(
    "prompt, changes, words",
    [
        ("To be", {"temperature": "hot"}, "temperature must be a number"),
        ("a" * 51, {}, "the limit is 50"),
        ("Zebra", {}, "not in this tokenizer's vocabulary"),
    ],
)
def test_generate_turns_a_bad_value_into_a_message_in_the_page(
    app, tiny_run, prompt, changes, words
):
    import gradio as gr

    with pytest.raises(gr.Error, match=words):
        list(app.generate(str(tiny_run), prompt, *generation_controls(**changes)))


def test_compare_streams_both_sides(app, tiny_run):
    side = ["greedy", 1.0, 0, 1.0]
    shared = [1.0, 10, 1, 4]
    *_, (a, b) = app.compare(str(tiny_run), "To be", *side, *side, *shared)
    assert a == b and len(a) == 10


def test_colour_scores_the_output_and_hands_the_text_to_the_explorer(app, tiny_run):
    view, text = app.colour(str(tiny_run), "To be", ", or")
    assert view.count('class="tokp-token"') == 4
    assert text == "To be, or"


def test_explore_shows_a_problem_in_place_of_the_chart(app, tiny_run):
    chart = app.explore(str(tiny_run), "To be", 0.8, 40, 0.9, 1.0, 12)
    assert chart.count('class="ntx-row') == 12
    problem = app.explore(str(tiny_run), "Zebra", 0.8, 40, 0.9, 1.0, 12)
    assert "not in this tokenizer" in problem and "ntx-row" not in problem


def test_append_token_adds_the_clicked_token(app, tiny, tiny_run):
    import gradio as gr

    token = tiny[1].encode("e")[0]
    assert app.append_token(str(tiny_run), "To b", gr.EventData(None, {"token": token})) == "To be"
    with pytest.raises(gr.Error, match="not a token of this model"):
        app.append_token(str(tiny_run), "To b", gr.EventData(None, {"token": 10**6}))


@pytest.mark.filterwarnings("ignore:Could not load")  # gr.Warning outside a request
def test_a_server_for_others_loads_only_the_models_it_lists(tiny_run, tmp_path):
    import gradio as gr

    from gptlab.demo.app import DemoApp

    other = str(write_tiny_run(tmp_path / "other"))
    app = DemoApp(ModelStore("cpu"), DemoLimits(), [str(tiny_run)], str(tiny_run), False)
    status, _ = app.load(other)
    assert "not one of the models this server offers" in status
    with pytest.raises(gr.Error, match="not one of the models"):
        list(app.generate(other, "To be", *generation_controls()))


# ---- the Classify tab ----


def test_classify_gives_the_classifiers_own_probabilities(app, classifier, classifier_run):
    model, tokenizer = classifier
    probabilities, note = app.classify(str(classifier_run), "To be, or not")
    assert list(probabilities) == ["ham", "spam"]
    assert sum(probabilities.values()) == pytest.approx(1.0)
    expected = model.predict_proba(torch.tensor([tokenizer.encode("To be, or not")]))[0]
    assert list(probabilities.values()) == pytest.approx(expected.tolist())
    assert note == ""


def test_classify_cuts_a_text_longer_than_the_context_with_a_note(app, classifier, classifier_run):
    model, tokenizer = classifier
    text = TINY_CORPUS[:48]  # 48 tokens (within the app's 50 characters), context 32
    probabilities, note = app.classify(str(classifier_run), text)
    expected = model.predict_proba(torch.tensor([tokenizer.encode(text)[:32]]))[0]
    assert list(probabilities.values()) == pytest.approx(expected.tolist())
    assert "longer than the 32 tokens" in note


def test_classify_reads_as_many_tokens_as_the_classifier_was_trained_on(app, tmp_path):
    spec = str(write_tiny_classifier_run(tmp_path / "short", data={"max_length": 8}))
    _, note = app.classify(spec, "To be, or not")
    assert "longer than the 8 tokens" in note


@pytest.mark.parametrize("text", ["", "   \n", None])
def test_classify_refuses_an_empty_text(app, classifier_run, text):
    import gradio as gr

    with pytest.raises(gr.Error, match="the text is empty"):
        app.classify(str(classifier_run), text)


def test_classify_with_a_language_model_says_it_needs_a_classifier(app, tiny_run):
    import gradio as gr

    with pytest.raises(gr.Error, match="this tab needs a classifier"):
        app.classify(str(tiny_run), "To be")
    help_line, _ = app.classify_help(str(tiny_run))
    assert "needs a classifier" in help_line and "gptlab finetune classify" in help_line


def test_a_classifier_selects_the_classify_tab_which_names_its_classes(app, classifier_run):
    help_line, tabs = app.classify_help(str(classifier_run))
    assert "**ham**, **spam**" in help_line and "up to 32 tokens" in help_line
    assert tabs.selected == "classify"


def test_generating_with_a_classifier_says_to_use_the_classify_tab(app, classifier_run):
    import gradio as gr

    with pytest.raises(gr.Error, match="this model is a classifier: use the Classify tab"):
        list(app.generate(str(classifier_run), "To be", *generation_controls()))
    chart = app.explore(str(classifier_run), "To be", 0.8, 40, 0.9, 1.0, 12)
    assert "use the Classify tab" in chart and "ntx-row" not in chart


# ---- the Instruct tab ----


@pytest.fixture(scope="module")
def instruction_run(tmp_path_factory) -> Path:
    return write_tiny_instruction_run(tmp_path_factory.mktemp("runs") / "instruct")


def test_instruct_streams_what_sample_instruction_greedy_prints(app, instruction_run):
    instruction, input = "Name the colour.", "item 3"
    pieces = list(
        app.instruct(
            str(instruction_run),
            instruction,
            input,
            *generation_controls(strategy="greedy", max_new_tokens=12),
        )
    )
    assert pieces[0] == "" and all(b.startswith(a) for a, b in zip(pieces, pieces[1:]))
    stdout, _ = here(
        "sample", instruction_run, "--instruction", instruction, "--input", input,
        "--greedy", "--max-new-tokens", 12, "--device", "cpu",
    )  # fmt: skip
    assert pieces[-1] and stdout == pieces[-1] + "\n"


@pytest.mark.parametrize("end", ["###", None], ids=["header", "end-of-text"])
def test_instruct_ends_the_response_at_a_header_or_end_of_text(app, tmp_path, end):
    spec = str(write_tiny_instruction_run(tmp_path / "answering", answering_model(end)))
    controls = generation_controls(strategy="greedy", max_new_tokens=20)
    *_, response = app.instruct(spec, "Name the capital of France.", "", *controls)
    assert response == "Paris"


@pytest.mark.parametrize("instruction", ["", "  \n", None])
def test_instruct_refuses_an_empty_instruction(app, instruction_run, instruction):
    import gradio as gr

    with pytest.raises(gr.Error, match="the instruction is empty"):
        list(app.instruct(str(instruction_run), instruction, "item 3", *generation_controls()))


def test_instruct_with_another_model_says_it_needs_an_instruction_run(app, tiny_run):
    import gradio as gr

    with pytest.raises(gr.Error, match="is not an instruction run: this tab needs one"):
        list(app.instruct(str(tiny_run), "Say hi.", "", *generation_controls()))
    help_line, tabs = app.instruct_help(str(tiny_run))
    assert f"`gptlab finetune instruct {tiny_run} --data instruction-data" in help_line
    assert tabs == gr.skip()


def test_an_instruction_run_selects_the_instruct_tab_and_says_what_it_is(app, instruction_run):
    help_line, tabs = app.instruct_help(str(instruction_run))
    assert tabs.selected == "instruct" and "`###`" in help_line
    assert "instruction run" in app.model(str(instruction_run)).description
    assert "instruction run" not in app.model(str(app.default)).description


def test_generate_continues_an_instruction_runs_prompt_as_a_language_model(app, instruction_run):
    *_, (text, _) = app.generate(
        str(instruction_run), "Hello", *generation_controls(max_new_tokens=4)
    )
    assert text


# ---- the command ----


def demo_parser():
    from gptlab.cli import OneLineErrorParser
    from gptlab.commands import demo

    parser = OneLineErrorParser(prog="gptlab")
    demo.add_parser(parser.add_subparsers(parser_class=OneLineErrorParser))
    return parser


def test_demo_command_defaults_are_safe():
    args = demo_parser().parse_args(["demo"])
    assert args.host == "127.0.0.1" and args.model is None and args.models_dir == "runs"


def test_demo_help_has_examples(capsys):
    with pytest.raises(SystemExit):
        demo_parser().parse_args(["demo", "--help"])
    assert "examples:" in capsys.readouterr().out


@pytest.mark.parametrize(
    "argv, words",
    [
        (["demo", "MISSING"], "no folder at MISSING"),
        (["demo", "--concurrency", "0"], "concurrency must be at least 1"),
        (["demo", "--port", "70000"], "--port must be in"),
    ],
)
def test_demo_command_reports_bad_input_before_serving(argv, words, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    args: argparse.Namespace = demo_parser().parse_args(argv)
    with pytest.raises(GptlabError, match=words):
        args.run(args)


def test_inspect_shows_the_logit_lens_and_the_attention_maps(app, tiny_run):
    lens, maps = app.inspect(str(tiny_run), "To be", None)
    # the tiny model's 2 x 2 heads fit in one picture: a grid as wide as the lens or wider
    assert lens.format == "PNG" and maps.format == "PNG"
    assert lens.size[0] >= 600 and maps.size[1] >= 500
    _, one_layer = app.inspect(str(tiny_run), "To be", 1)
    assert one_layer.size[1] < maps.size[1]  # one row of maps instead of two


@pytest.mark.parametrize("prompt, layer, words", [("To be", 5, "layer"), ("", None, "empty")])
def test_inspect_turns_bad_input_into_a_message_in_the_page(app, tiny_run, prompt, layer, words):
    import gradio as gr

    with pytest.raises(gr.Error, match=words):
        app.inspect(str(tiny_run), prompt, layer)

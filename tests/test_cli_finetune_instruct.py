"""`gptlab finetune instruct`, and `sample --instruction` and `eval` of its runs: the run
directory, exact resume, the response alone, the response-only loss, ROUGE-L and BLEU of the
responses (`eval --generate`, and the scoring function itself), and the refusals of bad input.

All through the CLI's entry point in this process (cli.main is all `python -m gptlab` runs):
a process of its own for each would spend 10-20 s on a shared 2-core machine importing torch
and torch._dynamo (which AdamW imports), more than the work it tests.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import json
import math
import sys
from pathlib import Path

import pytest
import torch
from conftest import shared_file
from test_cli_train import train_losses

from gptlab import cli
from gptlab.config import GPTConfig
from gptlab.data.instructions import Instruction, encode_instructions, split_instructions
from gptlab.errors import ConfigError
from gptlab.generation import GenerationConfig
from gptlab.models.gpt import GPT, IGNORE_INDEX
from gptlab.runs import task_sections, write_run_config
from gptlab.tasks.instruction import RESPONSE_END, response_config, response_scores
from gptlab.tokenizers import GPT2Tokenizer
from gptlab.training.checkpoint import MODEL_FILE, STATE_FILE, TOKENIZER_DIR, save_weights

# GPT-2's vocabulary, shrunk to 2 blocks of width 32: room for a short Alpaca prompt and answer.
BODY = GPTConfig(vocab_size=50257, context_length=96, n_layer=2, n_head=2, n_embd=32, dropout=0.0)
COLOURS = ["red", "green", "blue", "yellow"]
ENTRIES = [  # 20 entries: the reference's split gives train 17, test 2, val 1
    {
        "instruction": f"Name the colour of item {i}.",
        "input": f"item {i}" if i % 2 else "",
        "output": f"The colour is {COLOURS[i % 4]}.",
    }
    for i in range(20)
]
STEPS = 6  # a little over one epoch of 4 batches of 4


def tokenizer() -> GPT2Tokenizer:
    return GPT2Tokenizer.from_pretrained(str(shared_file("gpt2-tokenizer", "vocab.json").parent))


def write_run(path: Path, model: GPT, task: str = "lm", **sections) -> Path:
    path.mkdir(parents=True)
    save_weights(model, path / MODEL_FILE)
    tokenizer().save(path / TOKENIZER_DIR)
    write_run_config(path, model.config, train={}, data={}, task=task, **sections)
    return path


@pytest.fixture(scope="module")
def base(tmp_path_factory) -> Path:
    """An (untrained) language-model run with GPT-2's tokenizer: the model to fine-tune."""
    torch.manual_seed(0)
    model = GPT(BODY)
    return write_run(tmp_path_factory.mktemp("base") / "lm", model, **task_sections(model))


@pytest.fixture(scope="module")
def tasks_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("data") / "tasks.json"
    path.write_text(json.dumps(ENTRIES))
    return path


def here(*args) -> tuple[str, str]:
    """`gptlab ARGS` in this process: its stdout and stderr; it must succeed."""
    stdout, stderr = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
        status = cli.main([str(arg) for arg in args])
    assert status == 0, stderr.getvalue()
    return stdout.getvalue(), stderr.getvalue()


def finetune(*args) -> str:
    """`gptlab finetune instruct ARGS` with tiny, fast settings; its stderr."""
    return here(
        "finetune", "instruct", *args,
        "--batch-size", 4, "--lr", 1e-3, "--warmup-iters", 2, "--lr-decay-iters", STEPS,
        "--eval-interval", 2, "--log-interval", 1, "--device", "cpu", "--no-tensorboard",
    )[1]  # fmt: skip


@pytest.fixture(scope="module")
def run(tmp_path_factory, base, tasks_file):
    out = tmp_path_factory.mktemp("runs") / "instruct"
    stderr = finetune(base, "--out", out, "--data", tasks_file, "--max-iters", STEPS)
    return out, stderr


def test_finetune_instruct_writes_an_instruction_run(run, base, tasks_file):
    out, stderr = run
    assert {"config.json", MODEL_FILE, STATE_FILE, "metrics.jsonl", "tokenizer"} <= {
        p.name for p in out.iterdir()
    }
    config = json.loads((out / "config.json").read_text())
    assert config["task"] == "instruct"
    assert config["base"] == {"source": str(base), "kind": "run"}
    data = config["data"]
    assert (data["data"], data["format"], data["prompt_format"]) == (
        str(tasks_file),
        "alpaca",
        "alpaca",
    )
    assert data["train_on_prompt"] is False
    assert data["split"] == "reference" and data["sizes"] == {"train": 17, "val": 1, "test": 2}
    evaluations = [
        json.loads(line)
        for line in (out / "metrics.jsonl").read_text().splitlines()
        if json.loads(line)["split"] == "val"
    ]
    assert [m["step"] for m in evaluations] == [0, 2, 4, 6]
    assert "val loss" in stderr and "test loss" in stderr


def test_resume_continues_exactly(tmp_path, run, base, tasks_file):
    out, _ = run
    half = tmp_path / "half"
    finetune(base, "--out", half, "--data", tasks_file, "--max-iters", STEPS // 2)
    finetune("--resume", half, "--max-iters", STEPS)
    assert train_losses(half) == train_losses(out)


def test_eval_reports_the_response_only_loss_of_the_test_split(run, tasks_file):
    out, _ = run
    report = json.loads(here("eval", out, "--json", "--device", "cpu")[0])
    test = split_instructions([Instruction(**entry) for entry in ENTRIES])["test"]
    targets = encode_instructions(test, tokenizer(), BODY.context_length).targets
    assert report["tokens"] == sum(t != IGNORE_INDEX for row in targets for t in row)
    assert report["data"] == f"{tasks_file} (test split)" and report["examples"] == 2
    assert math.isclose(report["perplexity"], math.exp(report["loss"]))


def answering_model(end: str | None) -> GPT:
    """A GPT that answers every Alpaca prompt with "Paris", then `end` (None: end-of-text),
    then "Paris" again...: a chain of bigrams.

    Attention adds nothing; each chain token embeds as a basis vector, and the MLP turns
    token k's vector into token k + 1's, which the tied head then ranks first. The prompt
    ends in "\n", which starts the chain.
    """
    gpt2 = tokenizer()
    ids = gpt2.encode("\nParis") + (gpt2.encode(end) if end else [gpt2.eos_id])
    assert len(ids) == 3
    chain = ids + [ids[1]]  # "\n" -> "Paris" -> end -> "Paris"
    model = GPT(dataclasses.replace(BODY, n_embd=8))
    with torch.no_grad():
        for param in model.parameters():
            param.zero_()
        model.ln_f.weight.fill_(1.0)
        for block in model.h:
            block.ln_1.weight.fill_(1.0)
            block.ln_2.weight.fill_(1.0)
        mlp = model.h[0].mlp
        for k, (token, following) in enumerate(zip(ids, chain[1:], strict=True)):
            model.wte.weight[token, k] = 10.0
            mlp.c_fc.weight[k, k] = 1.0  # (4C, C): unit k fires on token k's vector...
            mlp.c_fc.bias[k] = -1.0
            mlp.c_proj.weight[ids.index(following), k] = 100.0  # ...and writes the next one's
    return model


@pytest.mark.parametrize("end", ["###", None], ids=["header", "end-of-text"])
def test_sample_prints_only_the_response_and_stops_at_a_header_or_end_of_text(tmp_path, end):
    answering = write_run(tmp_path / "answering", answering_model(end), task="instruct")
    stdout, _ = here(
        "sample", answering, "--instruction", "Name the capital of France.",
        "--max-new-tokens", 20, "--device", "cpu",
    )  # fmt: skip
    assert stdout == "Paris\n"


def test_eval_data_measures_every_entry_of_a_file(run, tasks_file):
    report = json.loads(here("eval", run[0], "--data", tasks_file, "--json", "--device", "cpu")[0])
    assert report["data"] == f"{tasks_file} (every entry)" and report["examples"] == len(ENTRIES)


def write_json(path: Path, value) -> str:
    path.write_text(json.dumps(value))
    return str(path)


@pytest.mark.parametrize(
    "args, message",
    [
        (["--data", "{missing_output}"], "entry 2: missing 'output'"),
        (["--data", "{empty}"], "has no entries"),
        (["--data", "{tasks}", "--format", "chat"], "entry 1: expected"),
        (["--resume", "{base}"], "MODEL or --resume"),
        (["--data", "{tasks}", "--epochs", "0"], "--epochs must be positive"),
    ],
)
def test_bad_input_is_one_line_and_exit_status_2(tmp_path, capsys, base, tasks_file, args, message):
    paths = {
        "base": base,
        "tasks": tasks_file,
        "missing_output": write_json(tmp_path / "bad.json", [ENTRIES[0], {"instruction": "x"}]),
        "empty": write_json(tmp_path / "empty.json", []),
    }
    argv = ["finetune", "instruct", str(base), "--device", "cpu", "--out", str(tmp_path / "new")]
    status = cli.main(argv + [arg.format(**paths) for arg in args])
    stderr = capsys.readouterr().err
    assert status == 2 and message in stderr
    assert len(stderr.strip().splitlines()) == 1, stderr
    assert not (tmp_path / "new").exists()


@pytest.mark.parametrize(
    "args, message",
    [
        (["--instruction", "Say hi."], "not an instruction run"),
        (["--input", "He go."], "--input needs an --instruction"),
        (["--instruction", "Say hi.", "--prompt", "Hi"], "drop --prompt"),
    ],
)
def test_sample_instruction_refusals_are_one_line(capsys, base, args, message):
    status = cli.main(["sample", str(base), "--device", "cpu", *args])
    stderr = capsys.readouterr().err
    assert status == 2 and message in stderr
    assert len(stderr.strip().splitlines()) == 1, stderr


def test_eval_generate_scores_greedy_responses_and_saves_them(tmp_path, run, tasks_file):
    saved = tmp_path / "answers.jsonl"
    stdout, _ = here(
        "eval", run[0], "--generate", "--json", "--max-new-tokens", 5,
        "--save-generations", saved, "--device", "cpu",
    )  # fmt: skip
    report = json.loads(stdout)
    assert 0 <= report["rouge_l"] <= 100 and 0 <= report["bleu"] <= 100
    assert report["generated"] == 2 and report["max_new_tokens"] == 5 and "loss" in report
    rows = [json.loads(line) for line in saved.read_text().splitlines()]
    test = split_instructions([Instruction(**entry) for entry in ENTRIES])["test"]
    assert [(r["instruction"], r["input"], r["reference"]) for r in rows] == [
        (entry.instruction, entry.input, entry.output) for entry in test
    ]


def test_eval_generations_of_an_instruction_run_are_scored_against_its_split(tmp_path, run):
    test = split_instructions([Instruction(**entry) for entry in ENTRIES])["test"]
    answers = tmp_path / "answers.txt"
    answers.write_text("".join(f"{entry.output}\n" for entry in test))
    report = json.loads(here("eval", run[0], "--generations", answers, "--json")[0])
    assert math.isclose(report["bleu"], 100) and math.isclose(report["rougeL"], 100)
    assert report["sentences"] == len(test) and "test split" in report["references"]
    answers.write_text("wrong\n")
    status = cli.main(["eval", str(run[0]), "--generations", str(answers)])
    assert status == 2  # one answer for two references


def test_eval_generate_answers_in_the_sample_format_and_scores_an_exact_answer_100(tmp_path):
    answering = write_run(tmp_path / "answering", answering_model("###"), task="instruct")
    capitals = write_json(
        tmp_path / "capitals.json",
        [{"instruction": "Name the capital of France.", "output": "Paris"}] * 3,
    )
    saved = tmp_path / "answers.jsonl"
    stdout, _ = here(
        "eval", answering, "--data", capitals, "--generate", "--json",
        "--max-new-tokens", 20, "--save-generations", saved, "--device", "cpu",
    )  # fmt: skip
    assert json.loads(stdout)["rouge_l"] == 100
    assert [json.loads(line)["generation"] for line in saved.read_text().splitlines()] == [
        "Paris"
    ] * 3


@pytest.mark.parametrize(
    "args, message",
    [
        (["--generate"], "not an instruction run"),
        (["--save-generations", "x.jsonl"], "--save-generations needs --generate"),
    ],
)
def test_eval_generate_refusals_are_one_line(capsys, base, args, message):
    status = cli.main(["eval", str(base), "--device", "cpu", *args])
    stderr = capsys.readouterr().err
    assert status == 2 and message in stderr
    assert len(stderr.strip().splitlines()) == 1, stderr


# -- scoring responses: in this file so that one test process only pays for importing rouge-score
# (it imports nltk, which imports scipy and pandas: 5-15 s on a shared 2-core machine).

REFERENCES = ["The colour of the sky is blue.", "Paris is the capital of France."]


def test_generations_equal_to_the_references_score_100():
    scores = response_scores(list(REFERENCES), REFERENCES)
    assert math.isclose(scores["rouge_l"], 100) and math.isclose(scores["bleu"], 100)


def test_unrelated_generations_score_0():
    scores = response_scores(["nothing here", "not at all"], REFERENCES)
    assert scores == {"rouge_l": 0, "bleu": 0}


def test_rouge_l_is_the_mean_f_measure_of_the_longest_common_subsequence():
    # "the colour is blue" is a 4-word subsequence of a 7-word reference: P 1, R 4/7, F 8/11.
    scores = response_scores(["The colour is blue", REFERENCES[1]], REFERENCES)
    assert math.isclose(scores["rouge_l"], 100 * (8 / 11 + 1) / 2)


def test_response_config_adds_the_header_stop_to_the_users():
    config = response_config(GenerationConfig(stop=("\n\n",)))
    assert config.stop == ("\n\n", RESPONSE_END)


def test_missing_metric_libraries_are_one_error_that_says_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "sacrebleu", None)  # `import sacrebleu` now fails
    with pytest.raises(ConfigError, match=r"uv sync --extra metrics"):
        response_scores(REFERENCES, REFERENCES)


def test_compare_scores_each_models_answers_to_an_instruction_runs_test_split(tmp_path, run, base):
    report = tmp_path / "report.md"
    here(
        "compare", base, run[0], "--prompt", "Name a colour.", "--temperature", 0,
        "--max-new-tokens", 3, "--device", "cpu", "--out", report,
    )  # fmt: skip
    rows = [line for line in report.read_text().splitlines() if line.startswith("| ")]
    scored = [line for line in rows if "ROUGE-L" in line]
    assert len(scored) == 2  # the base and the instruction run, each on the instruction test split

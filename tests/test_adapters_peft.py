"""gptlab's adapters against Hugging Face peft: the same LoRA forward and gradients, the same
trainable parameters, and adapters that cross between the two with the same logits."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from conftest import shared_file

from gptlab import cli
from gptlab.adapters import LoRAConfig, PromptTuningConfig, add_lora, attach, freeze_base
from gptlab.adapters.adapted import base_record
from gptlab.adapters.peft_format import ADAPTER_DIR
from gptlab.config import ClassifierConfig, GPTConfig
from gptlab.models.classifier import GPTClassifier
from gptlab.models.gpt import GPT
from gptlab.pretrained import export_hf, load_model
from gptlab.runs import task_sections, write_run_config
from gptlab.tokenizers import GPT2Tokenizer
from gptlab.training.checkpoint import MODEL_FILE, TOKENIZER_DIR, save_weights

peft = pytest.importorskip("peft")
transformers = pytest.importorskip("transformers")

# GPT-2's vocabulary (its tokenizer is what a Hugging Face folder carries), 2 blocks of width 32.
BODY = GPTConfig(vocab_size=50257, context_length=64, n_layer=2, n_head=2, n_embd=32, dropout=0.0)
HEAD = ClassifierConfig(labels=["ham", "spam"], pad_id=50256)
TARGETS = ("c_attn", "c_proj", "c_fc")
PER_PROJECTION = ("q", "v", "c_fc")
IDX = torch.randint(0, 50257, (2, 12), generator=torch.Generator().manual_seed(1))


@pytest.fixture(scope="module")
def tokenizer():
    return GPT2Tokenizer.from_pretrained(str(shared_file("gpt2-tokenizer", "vocab.json").parent))


def write_plain_run(run: Path, model, tokenizer) -> Path:
    run.mkdir(parents=True)
    save_weights(model, run / MODEL_FILE)
    tokenizer.save(run / TOKENIZER_DIR)
    write_run_config(run, model.config, train={}, data={}, **task_sections(model))
    return run


@pytest.fixture(scope="module")
def base_run(tmp_path_factory, tokenizer) -> Path:
    """A plain language-model run: the base of every adapter here."""
    torch.manual_seed(0)
    return write_plain_run(tmp_path_factory.mktemp("base") / "run", GPT(BODY), tokenizer)


@pytest.fixture(scope="module")
def hf_base(tmp_path_factory, base_run) -> Path:
    """The same base as a Hugging Face folder, for peft to work on."""
    model, tokenizer, _ = load_model(base_run)
    return export_hf(model, tokenizer, tmp_path_factory.mktemp("hf") / "base")


def randomize(model, seed: int = 2) -> None:
    """Give every adapter tensor random values: a fresh LoRA's B is zero and would change nothing."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if ".lora." in name or name.endswith("wte.prompt"):
                param.copy_(torch.randn(param.shape, generator=generator) * 0.1)


def adapter_run(tmp_path: Path, base_run: Path, config, task: str = "lm") -> Path:
    """An adapter run directory as fine-tuning writes one, with random adapter values."""
    body, tokenizer, info = load_model(base_run)
    base = base_record(info, body)  # before attaching: the adapter is no part of the base
    model = GPTClassifier(body, HEAD) if task == "classify" else body
    torch.manual_seed(3)
    model = attach(model, config, tokenizer)
    randomize(model)
    run = tmp_path / "adapter-run"
    run.mkdir()
    sections = {"classifier": HEAD.to_dict()} if task == "classify" else {}
    write_run_config(
        run,
        BODY,
        train={},
        data={},
        task=task,
        base=base,
        adapter=config.to_dict(),
        **sections,
    )
    save_weights(model, run / MODEL_FILE)
    tokenizer.save(run / TOKENIZER_DIR)
    return run


def logits_of(model, idx=IDX):
    with torch.no_grad():
        if isinstance(model, GPTClassifier):
            return model(idx)[0]
        return model(idx, all_logits=True)[0]


def hf_logits(model, idx=IDX):
    with torch.no_grad():
        return model(input_ids=idx).logits


# -- the same LoRA ------------------------------------------------------------------------


def peft_name(gptlab_name: str) -> str:
    """h.0.attn.c_attn.lora.default.A.all -> base_model.model.transformer.h.0.attn.c_attn.lora_A.default.weight"""
    module, _, rest = gptlab_name.partition(".lora.")
    adapter, matrix, _ = rest.split(".")
    return f"base_model.model.transformer.{module}.lora_{matrix}.{adapter}.weight"


def test_lora_forward_and_gradients_equal_peft(hf_base, base_run):
    config = LoRAConfig(r=4, alpha=8, dropout=0.0, targets=TARGETS)
    model, _, _ = load_model(base_run)
    add_lora(model, config)
    randomize(model)
    freeze_base(model)
    hf = transformers.GPT2LMHeadModel.from_pretrained(hf_base)
    theirs = peft.get_peft_model(
        hf,
        peft.LoraConfig(r=4, lora_alpha=8, lora_dropout=0.0, target_modules=list(TARGETS)),
    )
    ours = dict(model.named_parameters())
    peft_params = dict(theirs.named_parameters())
    with torch.no_grad():
        for name, param in ours.items():
            if param.requires_grad:
                peft_params[peft_name(name)].copy_(param)
    targets = torch.roll(IDX, -1, dims=1)
    logits = model(IDX, all_logits=True)[0]
    F.cross_entropy(logits.flatten(0, 1), targets.flatten()).backward()
    peft_logits = theirs(input_ids=IDX).logits
    F.cross_entropy(peft_logits.flatten(0, 1), targets.flatten()).backward()

    torch.testing.assert_close(logits, peft_logits, atol=1e-5, rtol=1e-5)
    trained = [name for name, param in ours.items() if param.requires_grad]
    assert len(trained) == 2 * 4 * BODY.n_layer  # A and B of 4 layers a block
    for name in trained:
        torch.testing.assert_close(
            ours[name].grad, peft_params[peft_name(name)].grad, atol=1e-5, rtol=1e-5
        )


@pytest.mark.parametrize("task", ["lm", "classify"])
def test_trainable_parameters_equal_peft(task):
    torch.manual_seed(0)
    model = GPT(BODY)
    hf_config = transformers.GPT2Config(
        vocab_size=50257, n_positions=64, n_layer=2, n_head=2, n_embd=32, num_labels=2
    )
    if task == "classify":
        model = GPTClassifier(model, HEAD)
        hf = transformers.GPT2ForSequenceClassification(hf_config)
    else:
        hf = transformers.GPT2LMHeadModel(hf_config)
    add_lora(model, LoRAConfig(r=8, alpha=16, targets=TARGETS))
    trainable, _ = freeze_base(model)
    theirs = peft.get_peft_model(
        hf,
        peft.LoraConfig(
            r=8, lora_alpha=16, target_modules=list(TARGETS), task_type=peft.TaskType.SEQ_CLS
        )
        if task == "classify"
        else peft.LoraConfig(r=8, lora_alpha=16, target_modules=list(TARGETS)),
    )
    assert trainable == theirs.get_nb_trainable_parameters()[0]


def test_the_per_projection_reference_trains_2666528_parameters_of_gpt2_124m():
    with torch.device("meta"):  # shapes only: no memory, no time
        model = GPTClassifier(GPT(GPTConfig.from_preset("gpt2")), ClassifierConfig(["a", "b"]))
        add_lora(
            model, LoRAConfig(r=16, alpha=16, targets=("q", "k", "v", "c_proj", "c_fc", "score"))
        )
    trainable, _ = freeze_base(model)
    assert trainable == 2_666_528


# -- gptlab -> peft -----------------------------------------------------------------------

EXPORTS = {
    "lm": ("lm", TARGETS),
    "lm-per-projection": ("lm", PER_PROJECTION),
    "classify": ("classify", (*TARGETS, "score")),
    "classify-per-projection": ("classify", ("q", "k", "v", "c_proj")),
}


@pytest.mark.parametrize("task, targets", EXPORTS.values(), ids=EXPORTS.keys())
def test_an_exported_lora_run_loads_in_peft_with_equal_logits(
    tmp_path, capsys, base_run, task, targets
):
    run = adapter_run(tmp_path, base_run, LoRAConfig(r=4, alpha=8, targets=targets), task)
    out = tmp_path / "exported"
    assert cli.main(["export", str(run), "--out", str(out)]) == 0
    assert "PeftModel.from_pretrained" in capsys.readouterr().out
    architecture = (
        transformers.GPT2ForSequenceClassification
        if task == "classify"
        else transformers.GPT2LMHeadModel
    )
    theirs = peft.PeftModel.from_pretrained(architecture.from_pretrained(out), out / ADAPTER_DIR)
    ours, _, _ = load_model(run)
    torch.testing.assert_close(hf_logits(theirs.eval()), logits_of(ours), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("targets", [("q", "k", "v", "c_fc"), ("q", "v")])
def test_a_per_projection_adapter_goes_to_peft_and_back_unchanged(tmp_path, base_run, targets):
    run = adapter_run(tmp_path, base_run, LoRAConfig(r=2, alpha=4, targets=targets))
    assert cli.main(["export", str(run), "--out", str(tmp_path / "hf")]) == 0
    back = tmp_path / "back"
    adapter = str(tmp_path / "hf" / ADAPTER_DIR)
    assert cli.main(["import", adapter, "--base", str(base_run), "--out", str(back)]) == 0
    config = json.loads((back / "config.json").read_text())["adapter"]
    assert (config["r"], config["alpha"], tuple(config["targets"])) == (2, 4.0, targets)
    ours, theirs = load_model(run)[0], load_model(back)[0]
    torch.testing.assert_close(logits_of(theirs), logits_of(ours), atol=1e-6, rtol=1e-6)


def test_merged_export_is_one_plain_model_with_equal_logits(tmp_path, base_run):
    run = adapter_run(tmp_path, base_run, LoRAConfig(r=4, alpha=8, targets=PER_PROJECTION))
    assert cli.main(["export", str(run), "--merged", "--out", str(tmp_path / "merged")]) == 0
    assert not (tmp_path / "merged" / ADAPTER_DIR).exists()
    hf = transformers.GPT2LMHeadModel.from_pretrained(tmp_path / "merged").eval()
    ours, _, _ = load_model(run)
    torch.testing.assert_close(hf_logits(hf), logits_of(ours), atol=1e-5, rtol=1e-5)


def test_an_exported_prompt_run_loads_in_peft_with_equal_logits(tmp_path, base_run):
    N = 5
    run = adapter_run(
        tmp_path, base_run, PromptTuningConfig(num_tokens=N, init="text", init_text="hi")
    )
    out = tmp_path / "exported"
    assert cli.main(["export", str(run), "--out", str(out)]) == 0
    saved = json.loads((out / ADAPTER_DIR / "adapter_config.json").read_text())
    assert saved["peft_type"] == "PROMPT_TUNING" and saved["num_virtual_tokens"] == N
    theirs = peft.PeftModel.from_pretrained(
        transformers.GPT2LMHeadModel.from_pretrained(out), out / ADAPTER_DIR
    ).eval()
    ours, _, _ = load_model(run)
    # peft returns logits for the virtual positions too: the real ones come after them
    torch.testing.assert_close(hf_logits(theirs)[:, N:], logits_of(ours), atol=1e-5, rtol=1e-5)


def test_an_exported_prompt_tuned_classifier_loads_in_peft_with_equal_logits(tmp_path, base_run):
    run = adapter_run(tmp_path, base_run, PromptTuningConfig(num_tokens=4), "classify")
    out = tmp_path / "exported"
    assert cli.main(["export", str(run), "--out", str(out)]) == 0
    theirs = peft.PeftModel.from_pretrained(
        transformers.GPT2ForSequenceClassification.from_pretrained(out), out / ADAPTER_DIR
    ).eval()
    ours, _, _ = load_model(run)
    torch.testing.assert_close(hf_logits(theirs), logits_of(ours), atol=1e-5, rtol=1e-5)


# -- peft -> gptlab -----------------------------------------------------------------------


def peft_adapter(folder: Path, hf_base: Path, config, task: str = "lm") -> torch.nn.Module:
    """A peft adapter saved by peft itself, with random values; returns the peft model."""
    torch.manual_seed(4)
    if task == "classify":
        hf = transformers.GPT2ForSequenceClassification.from_pretrained(
            hf_base, num_labels=2, pad_token_id=50256
        )
    else:
        hf = transformers.GPT2LMHeadModel.from_pretrained(hf_base)
    model = peft.get_peft_model(hf, config)
    with torch.no_grad():
        for param in model.parameters():
            if param.requires_grad:
                param.normal_(std=0.1)
    model.save_pretrained(folder)
    return model.eval()


IMPORTS = {
    "lm": ("lm", lambda: peft.LoraConfig(r=4, lora_alpha=16, target_modules=["c_attn", "c_proj"])),
    "classify": (
        "classify",
        lambda: peft.LoraConfig(
            r=2, lora_alpha=4, target_modules=["c_fc"], task_type=peft.TaskType.SEQ_CLS
        ),
    ),
    "prompt": (
        "lm",
        lambda: peft.PromptTuningConfig(task_type=peft.TaskType.CAUSAL_LM, num_virtual_tokens=3),
    ),
    "prompt-classify": (
        "classify",
        lambda: peft.PromptTuningConfig(task_type=peft.TaskType.SEQ_CLS, num_virtual_tokens=3),
    ),
}


@pytest.mark.parametrize("task, config", IMPORTS.values(), ids=IMPORTS.keys())
def test_an_imported_peft_adapter_gives_peft_logits(tmp_path, hf_base, base_run, task, config):
    theirs = peft_adapter(tmp_path / "peft", hf_base, config(), task)
    run = tmp_path / "run"
    assert (
        cli.main(["import", str(tmp_path / "peft"), "--base", str(base_run), "--out", str(run)])
        == 0
    )
    ours, _, _ = load_model(run)
    saved = json.loads((run / "config.json").read_text())
    is_prompt = isinstance(config(), peft.PromptTuningConfig)
    assert (saved["task"], saved["adapter"]["type"]) == (task, "prompt" if is_prompt else "lora")
    assert saved["model"] == BODY.to_dict()  # the base's own context, not what a prompt leaves
    expected = hf_logits(theirs)
    if is_prompt and task == "lm":
        expected = expected[:, 3:]  # the logits of the real positions (a classifier's: one row)
    torch.testing.assert_close(logits_of(ours), expected, atol=1e-5, rtol=1e-5)


# -- bad input ----------------------------------------------------------------------------

BAD_CONFIGS = {
    "ia3": ({"peft_type": "IA3"}, "peft type 'IA3' is not supported"),
    "dora": ({"use_dora": True}, "DoRA (use_dora) is not supported"),
    "bias": ({"bias": "all"}, "supports bias 'none' only"),
}


@pytest.fixture(scope="module")
def saved_lora(tmp_path_factory, hf_base) -> Path:
    folder = tmp_path_factory.mktemp("peft") / "lora"
    peft_adapter(folder, hf_base, peft.LoraConfig(r=2, target_modules=["c_attn"]))
    return folder


def check_one_line_exit_2(capsys, args: list[str], message: str) -> None:
    status = cli.main([str(arg) for arg in args])
    stderr = capsys.readouterr().err
    assert status == 2
    assert message in stderr
    assert len(stderr.strip().splitlines()) == 1, stderr


@pytest.mark.parametrize("change, message", BAD_CONFIGS.values(), ids=BAD_CONFIGS.keys())
def test_import_refuses_what_gptlab_cannot_hold(
    tmp_path, capsys, saved_lora, base_run, change, message
):
    folder = tmp_path / "peft"
    folder.mkdir()
    values = json.loads((saved_lora / "adapter_config.json").read_text())
    (folder / "adapter_config.json").write_text(json.dumps({**values, **change}))
    (folder / "adapter_model.safetensors").write_bytes(
        (saved_lora / "adapter_model.safetensors").read_bytes()
    )
    check_one_line_exit_2(
        capsys, ["import", folder, "--base", base_run, "--out", tmp_path / "run"], message
    )
    assert not (tmp_path / "run").exists()


def test_import_of_a_folder_without_adapter_config_is_one_line_exit_2(tmp_path, capsys, base_run):
    (tmp_path / "empty").mkdir()
    check_one_line_exit_2(
        capsys,
        ["import", tmp_path / "empty", "--base", base_run, "--out", tmp_path / "run"],
        "has no adapter_config.json",
    )


def test_import_onto_a_base_of_another_shape_is_one_line_exit_2(
    tmp_path, capsys, tokenizer, saved_lora
):
    torch.manual_seed(0)
    wider = write_plain_run(
        tmp_path / "wider", GPT(GPTConfig(**{**BODY.to_dict(), "n_embd": 48})), tokenizer
    )
    check_one_line_exit_2(
        capsys,
        ["import", saved_lora, "--base", wider, "--out", tmp_path / "run"],
        "has shape",
    )

"""Knowledge distillation: the loss against hand computations, the student's initialisation,
and `gptlab distill` end to end on a tiny teacher (its student samples, evaluates, exports and
quantizes as any language-model run)."""

from __future__ import annotations

import json
import math

import pytest
import torch
import torch.nn.functional as F

from gptlab.cli import main
from gptlab.config import GPTConfig
from gptlab.distillation import (
    DistillConfig,
    check_compatible,
    distill_loss_fn,
    distillation_loss,
    hidden_cosine_loss,
    init_from_teacher,
    soft_target_loss,
    student_layers,
)
from gptlab.errors import ConfigError
from gptlab.models.gpt import GPT


def logits_pair(seed=0, shape=(2, 5, 11)):
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(shape, generator=gen) * 3, torch.randn(shape, generator=gen) * 3


def test_soft_target_loss_is_the_kl_of_softened_distributions_by_hand():
    student, teacher = logits_pair()
    T = 2.5
    p = torch.softmax(teacher.double() / T, dim=-1)
    q = torch.softmax(student.double() / T, dim=-1)
    by_hand = (p * (p.log() - q.log())).sum(-1).mean() * T**2  # mean over the 2 x 5 positions
    got = soft_target_loss(student, teacher, T)
    assert got.item() == pytest.approx(by_hand.item(), rel=1e-5)
    reference = F.kl_div(
        F.log_softmax(student.view(-1, 11) / T, -1), p.float().view(-1, 11), reduction="batchmean"
    )
    assert got.item() == pytest.approx(reference.item() * T**2, rel=1e-5)


def test_soft_target_loss_scales_by_temperature_squared():
    student, teacher = logits_pair(1)
    for T in (1.0, 2.0, 4.0):
        p = F.log_softmax(teacher / T, -1)
        q = F.log_softmax(student / T, -1)
        plain_kl = (p.exp() * (p - q)).sum(-1).mean()
        assert soft_target_loss(student, teacher, T).item() == pytest.approx(
            T**2 * plain_kl.item(), rel=1e-5
        )


def test_soft_target_loss_is_zero_when_the_student_matches_the_teacher():
    _, teacher = logits_pair(2)
    assert soft_target_loss(teacher.clone(), teacher, 3.0).item() == pytest.approx(0.0, abs=1e-6)


def test_alpha_zero_is_the_models_own_cross_entropy():
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=13, context_length=8, n_layer=1, n_head=2, n_embd=8))
    idx = torch.randint(0, 13, (3, 8))
    targets = torch.randint(0, 13, (3, 8))
    logits, own_loss = model(idx, targets)
    teacher_logits = torch.randn_like(logits)  # ignored when alpha = 0
    loss = distillation_loss(logits, teacher_logits, targets, DistillConfig(alpha=0.0))
    assert loss.item() == pytest.approx(own_loss.item(), rel=1e-6)


def test_loss_mixes_soft_and_hard_terms_by_alpha():
    student, teacher = logits_pair(3)
    targets = torch.randint(0, 11, (2, 5))
    config = DistillConfig(alpha=0.3, temperature=2.0)
    soft = soft_target_loss(student, teacher, 2.0)
    hard = F.cross_entropy(student.view(-1, 11), targets.view(-1))
    expected = 0.3 * soft + 0.7 * hard
    got = distillation_loss(student, teacher, targets, config)
    assert got.item() == pytest.approx(expected.item(), rel=1e-6)


def test_hidden_cosine_loss():
    h = torch.randn(2, 4, 6)
    assert hidden_cosine_loss(h, 3 * h).item() == pytest.approx(0.0, abs=1e-6)
    assert hidden_cosine_loss(h, -h).item() == pytest.approx(2.0, abs=1e-6)


def test_distill_config_rejects_bad_values():
    with pytest.raises(ConfigError, match="alpha"):
        DistillConfig(alpha=1.5)
    with pytest.raises(ConfigError, match="temperature"):
        DistillConfig(temperature=0)


def test_student_layers_take_one_out_of_two():
    assert student_layers(6, 3) == [0, 2, 4]
    assert student_layers(12, 6) == [0, 2, 4, 6, 8, 10]
    assert student_layers(4, 4) == [0, 1, 2, 3]
    with pytest.raises(ConfigError):
        student_layers(3, 4)


def tiny_pair(**student_changes):
    teacher_cfg = GPTConfig(vocab_size=17, context_length=12, n_layer=4, n_head=2, n_embd=16)
    student_cfg = GPTConfig(
        **{**teacher_cfg.to_dict(), "n_layer": 2, "context_length": 8, **student_changes}
    )
    torch.manual_seed(0)
    return GPT(teacher_cfg), GPT(student_cfg)


def test_init_from_teacher_copies_every_other_block_and_the_embeddings():
    teacher, student = tiny_pair()
    assert init_from_teacher(student, teacher) == [0, 2]
    for i, source in enumerate([0, 2]):
        for (name, got), (_, want) in zip(
            student.h[i].state_dict().items(), teacher.h[source].state_dict().items(), strict=True
        ):
            torch.testing.assert_close(got, want, rtol=0, atol=0, msg=name)
    torch.testing.assert_close(student.wte.weight, teacher.wte.weight)
    torch.testing.assert_close(student.wpe.weight, teacher.wpe.weight[:8])  # cropped
    torch.testing.assert_close(student.ln_f.weight, teacher.ln_f.weight)
    assert student.lm_head.weight is student.wte.weight  # still tied after the copy
    assert not torch.equal(student.h[1].attn.c_attn.weight, teacher.h[1].attn.c_attn.weight)


def test_check_compatible_names_what_differs():
    teacher, _ = tiny_pair()
    with pytest.raises(ConfigError, match="vocabulary"):
        check_compatible(
            teacher.config,
            GPTConfig(vocab_size=5, n_layer=1, n_embd=16, n_head=2, context_length=8),
            False,
            0,
        )
    with pytest.raises(ConfigError, match="--context-length 12"):
        check_compatible(
            teacher.config,
            GPTConfig(vocab_size=17, context_length=64, n_layer=1, n_head=2, n_embd=16),
            False,
            0,
        )
    narrow = GPTConfig(vocab_size=17, context_length=8, n_layer=2, n_head=2, n_embd=8)
    with pytest.raises(ConfigError, match="widths"):
        check_compatible(teacher.config, narrow, False, 0.5)
    with pytest.raises(ConfigError, match="n_embd"):
        check_compatible(teacher.config, narrow, True, 0.0)


def test_distill_loss_fn_trains_the_student_and_leaves_the_teacher_alone():
    teacher, student = tiny_pair()
    loss_fn = distill_loss_fn(teacher, DistillConfig(alpha=0.5, cosine=1.0))
    idx = torch.randint(0, 17, (2, 8))
    loss = loss_fn(student, (idx, torch.randint(0, 17, (2, 8))))
    loss.backward()
    assert all(p.grad is None for p in teacher.parameters())
    assert student.h[0].attn.c_attn.weight.grad.abs().sum() > 0
    assert math.isfinite(loss.item())


# -- the command ------------------------------------------------------------------------------

TINY_TEACHER = [
    "--preset", "tiny", "--n-layer", "2", "--n-embd", "16", "--context-length", "16",
    "--batch-size", "4", "--max-iters", "8", "--eval-interval", "4", "--eval-iters", "2",
    "--log-interval", "5", "--device", "cpu", "--no-tensorboard",
]  # fmt: skip


@pytest.fixture(scope="module")
def teacher_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("distill")
    corpus = root / "corpus.txt"
    corpus.write_text("".join(f"line {i}: the quick brown fox jumps {i % 7}\n" for i in range(300)))
    assert (
        main(["train", *TINY_TEACHER, "--data", str(corpus), "--out", str(root / "teacher")]) == 0
    )
    return root / "teacher"


def test_distill_writes_a_language_model_run_that_other_commands_read(teacher_run, capsys):
    out = teacher_run.parent / "student"
    args = ["distill", "--teacher", str(teacher_run), "--init-from-teacher", "--cosine", "0.5"]
    assert main([*args, "--alpha", "0.7", "--max-iters", "4", "--out", str(out)]) == 0
    config = json.loads((out / "config.json").read_text())
    assert config["task"] == "lm" and config["model"]["n_layer"] == 1  # half the teacher's 2
    assert config["distill"]["teacher_layers"] == [0]
    assert config["distill"]["alpha"] == 0.7
    assert config["data"]["data"].endswith("corpus.txt")  # the teacher's corpus by default
    metrics = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert any(m.get("split") == "val" for m in metrics)
    capsys.readouterr()

    assert (
        main(["sample", str(out), "--prompt", "line", "--max-new-tokens", "5", "--seed", "1"]) == 0
    )
    assert capsys.readouterr().out.startswith("line")
    assert main(["eval", str(out)]) == 0
    assert main(["export", str(out), "--out", str(out.parent / "hf")]) == 0
    assert (out.parent / "hf" / "model.safetensors").is_file()
    quantized = out.parent / "student-int8"
    assert main(["quantize", str(out), "--method", "int8-weight", "--out", str(quantized), "--device", "cpu"]) == 0  # fmt: skip
    assert main(["sample", str(quantized), "--prompt", "line", "--max-new-tokens", "3"]) == 0

    assert main(["distill", "--resume", str(out), "--max-iters", "6"]) == 0
    assert json.loads((out / "config.json").read_text())["train"]["max_iters"] == 6
    assert main(["train", "--resume", str(out)]) == 2
    assert "gptlab distill --resume" in capsys.readouterr().err


@pytest.mark.parametrize(
    "args, message",
    [
        ([], "name the teacher"),
        (["--teacher", "no/such/run"], "no folder"),
        (["--teacher", "{teacher}", "--n-embd", "8", "--init-from-teacher"], "n_embd"),
        (["--teacher", "{teacher}", "--context-length", "64"], "--context-length 16"),
        (["--teacher", "{teacher}", "--alpha", "2"], "alpha"),
    ],
)
def test_distill_bad_input_is_one_line_and_exit_2(teacher_run, tmp_path, capsys, args, message):
    args = [a.replace("{teacher}", str(teacher_run)) for a in args]
    assert main(["distill", *args, "--out", str(tmp_path / "x"), "--device", "cpu"]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1

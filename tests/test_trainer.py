"""The training loop on its own: schedule, accumulation, evaluation, early stopping, resume."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from gptlab.config import GPTConfig
from gptlab.data.text import TokenData
from gptlab.errors import ConfigError
from gptlab.models.gpt import GPT
from gptlab.training import callbacks as cb
from gptlab.training.checkpoint import MODEL_FILE, STATE_FILE, load_trainer_state
from gptlab.training.config import TrainConfig
from gptlab.training.optim import cosine_schedule, make_adamw, param_groups
from gptlab.training.trainer import Trainer

BLOCK = 16


def make_data(seed: int = 0) -> TokenData:
    rng = np.random.default_rng(seed)
    # a learnable sequence: mostly "next id = id + 1 mod 32", with some noise
    tokens = np.cumsum(rng.choice([1, 1, 1, 2], size=4000)) % 32
    return TokenData(tokens.astype(np.uint16), val_fraction=0.1)


def make_trainer(
    data: TokenData, config: TrainConfig, callbacks=(), seed: int = 0, **options
) -> Trainer:
    torch.manual_seed(seed)
    model = GPT(
        GPTConfig(vocab_size=32, context_length=BLOCK, n_layer=2, n_head=2, n_embd=32, dropout=0.1)
    )
    return Trainer(
        model,
        config,
        train_batch=lambda step, index: data.train_batch(
            step, index, config.batch_size, BLOCK, config.seed
        ),
        eval_batches=lambda: data.eval_batches("val", config.batch_size, BLOCK, config.eval_iters),
        device=torch.device("cpu"),
        callbacks=callbacks,
        **options,
    )


def train_config(**changes) -> TrainConfig:
    base = dict(
        max_iters=20,
        batch_size=4,
        lr=3e-3,
        min_lr=3e-4,
        warmup_iters=4,
        lr_decay_iters=20,
        eval_interval=5,
        eval_iters=2,
        log_interval=1,
        device="cpu",
        dtype="float32",
    )
    return TrainConfig(**{**base, **changes})


def read_metrics(path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_schedule_warms_up_linearly_then_decays_by_cosine_to_the_floor():
    lrs = [cosine_schedule(s, lr=1.0, min_lr=0.1, warmup=10, decay_steps=110) for s in range(120)]
    assert lrs[0] < lrs[5] < lrs[9] < 1.0
    assert lrs[10] == pytest.approx(1.0)
    assert lrs[60] == pytest.approx(0.1 + 0.45)  # halfway through the cosine
    assert all(a >= b for a, b in zip(lrs[10:], lrs[11:]))
    assert lrs[110] == lrs[119] == 0.1


def test_weight_decay_applies_to_matrices_only():
    model = GPT(GPTConfig.from_preset("tiny"))
    decay, no_decay = param_groups(model, 0.1)
    assert all(p.dim() >= 2 for p in decay["params"]) and decay["weight_decay"] == 0.1
    assert all(p.dim() < 2 for p in no_decay["params"]) and no_decay["weight_decay"] == 0.0
    assert sum(p.numel() for g in (decay, no_decay) for p in g["params"]) == model.num_params()


def test_cpu_adamw_is_the_fused_kernel_and_steps_as_the_per_tensor_loop():
    torch.manual_seed(0)
    fused_model = GPT(GPTConfig.from_preset("tiny"))
    loop_model = GPT(GPTConfig.from_preset("tiny"))
    loop_model.load_state_dict(fused_model.state_dict())
    fused = make_adamw(fused_model, 1e-2, 0.1, (0.9, 0.99), "cpu")
    loop = torch.optim.AdamW(
        param_groups(loop_model, 0.1), lr=1e-2, betas=(0.9, 0.99), foreach=False
    )
    assert fused.defaults["fused"] is True
    idx = torch.randint(0, 64, (2, 8), generator=torch.Generator().manual_seed(1))
    for _ in range(3):
        for model, optimizer in ((fused_model, fused), (loop_model, loop)):
            model(idx, idx)[1].backward()
            optimizer.step()
            optimizer.zero_grad()
    # Adam's steps are about lr (1e-2) whatever the gradient's size, so where a gradient is
    # near zero the two kernels' roundings differ by a sliver of a step: 1% of one is allowed.
    for a, b in zip(fused_model.parameters(), loop_model.parameters()):
        torch.testing.assert_close(a, b, atol=1e-4, rtol=0)


def test_the_trainer_sets_the_cpu_threads_it_is_given():
    threads = torch.get_num_threads()
    try:
        make_trainer(make_data(), train_config(threads=2))
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(threads)


def test_training_lowers_the_validation_loss(tmp_path):
    data = make_data()
    trainer = make_trainer(
        data, train_config(max_iters=60, eval_interval=20), [cb.MetricsLog(tmp_path / "m.jsonl")]
    )
    trainer.fit()
    val = [m["loss"] for m in read_metrics(tmp_path / "m.jsonl") if m["split"] == "val"]
    assert len(val) == 4  # steps 0, 20, 40, 60
    assert val[-1] < val[0] - 1.0


def test_metrics_lines_have_every_field(tmp_path):
    trainer = make_trainer(
        make_data(), train_config(max_iters=5), [cb.MetricsLog(tmp_path / "m.jsonl")]
    )
    trainer.fit()
    lines = read_metrics(tmp_path / "m.jsonl")
    train = [m for m in lines if m["split"] == "train"]
    assert [m["step"] for m in train] == [1, 2, 3, 4, 5]
    assert set(train[0]) == {
        "step",
        "split",
        "loss",
        "perplexity",
        "lr",
        "grad_norm",
        "tokens_per_sec",
        "elapsed",
    }
    assert train[0]["perplexity"] == pytest.approx(math.exp(train[0]["loss"]))
    assert train[0]["tokens_per_sec"] > 0


def test_gradient_accumulation_equals_one_big_batch():
    """Two micro-batches of 4 give the same update as the same 8 windows in one batch."""
    data = make_data()
    config = train_config(max_iters=1, eval_interval=0, grad_accum=2, dtype="float32")
    accumulated = make_trainer(data, config)
    accumulated.raw_model.eval()  # no dropout, so the two paths see identical computations
    accumulated.train_step(1e-3)

    big = make_trainer(data, train_config(max_iters=1, eval_interval=0, batch_size=8))
    big.raw_model.eval()
    parts = [data.train_batch(0, i, 4, BLOCK, config.seed) for i in range(2)]
    merged = tuple(torch.cat(t) for t in zip(*parts))
    big.train_batch = lambda step, index: merged
    big.train_step(1e-3)
    for a, b in zip(accumulated.raw_model.parameters(), big.raw_model.parameters()):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-5)


def test_early_stopping_stops_after_patience_evaluations_without_improvement(tmp_path):
    config = train_config(
        max_iters=200, eval_interval=2, lr=1e-9, min_lr=1e-9, warmup_iters=0, patience=2
    )
    trainer = make_trainer(make_data(), config, [cb.EarlyStopping(2)])
    trainer.fit()
    assert trainer.should_stop
    assert trainer.step < 20


def test_checkpointer_writes_best_weights_and_resumable_state(tmp_path):
    trainer = make_trainer(make_data(), train_config(max_iters=10), [cb.Checkpointer(tmp_path)])
    trainer.fit()
    assert (tmp_path / MODEL_FILE).is_file()
    state = load_trainer_state(tmp_path / STATE_FILE)
    assert state["step"] == 10
    assert state["last_eval_step"] == 10
    assert not list(tmp_path.glob(".*.tmp"))


def test_resume_continues_exactly(tmp_path):
    """20 steps straight == 10 steps, a new process-like Trainer from the checkpoint, 10 more."""
    data = make_data()
    straight_dir, split_dir = tmp_path / "straight", tmp_path / "split"
    straight_dir.mkdir(), split_dir.mkdir()
    straight = make_trainer(
        data,
        train_config(),
        [cb.MetricsLog(straight_dir / "m.jsonl"), cb.Checkpointer(straight_dir)],
    )
    straight.fit()

    first = make_trainer(
        data,
        train_config(max_iters=10),
        [cb.MetricsLog(split_dir / "m.jsonl"), cb.Checkpointer(split_dir)],
    )
    first.fit()
    torch.manual_seed(999)  # a fresh process has other RNG state: resume must restore it
    second = make_trainer(
        data,
        train_config(),
        [cb.MetricsLog(split_dir / "m.jsonl"), cb.Checkpointer(split_dir)],
        seed=5,
    )
    second.load_state_dict(load_trainer_state(split_dir / STATE_FILE))
    second.fit()

    a, b = read_metrics(straight_dir / "m.jsonl"), read_metrics(split_dir / "m.jsonl")
    assert [(m["step"], m["split"]) for m in a] == [(m["step"], m["split"]) for m in b]
    for x, y in zip(a, b):
        assert x["loss"] == pytest.approx(y["loss"], abs=1e-6)
    for p, q in zip(straight.raw_model.parameters(), second.raw_model.parameters()):
        torch.testing.assert_close(p, q, atol=1e-6, rtol=0)


@pytest.mark.parametrize(
    "changes, message",
    [
        (dict(compile_mode="fast"), "compile_mode must be one of"),
        (dict(batch_size=0), "batch_size must be positive"),
        (dict(dtype="float16"), "loss scaling"),
    ],
)
def test_train_config_rejects_bad_settings(changes, message):
    with pytest.raises(ConfigError, match=message):
        TrainConfig(**changes)


def test_cuda_graphs_only_for_compiled_modes_that_replay_them():
    assert TrainConfig(compile=True, compile_mode="reduce-overhead").cuda_graphs
    assert TrainConfig(compile=True, compile_mode="max-autotune").cuda_graphs
    assert not TrainConfig(compile=False, compile_mode="reduce-overhead").cuda_graphs
    assert not TrainConfig(compile=True, compile_mode="max-autotune-no-cudagraphs").cuda_graphs


class Scripted:
    """An evaluator that reports the next of a fixed list of accuracies (and a constant loss)."""

    def __init__(self, accuracies):
        self.accuracies = list(accuracies)

    def __call__(self, model):
        return {"loss": 1.0, "accuracy": self.accuracies.pop(0), "macro_f1": 0.5}


class Improvements(cb.Callback):
    def __init__(self):
        self.seen = []

    def on_eval_end(self, trainer, metrics, improved):
        self.seen.append((metrics["accuracy"], improved))


def test_an_evaluator_with_accuracy_monitored_keeps_the_highest():
    spy = Improvements()
    trainer = make_trainer(
        make_data(),
        train_config(max_iters=15, eval_interval=5),
        callbacks=[spy],
        evaluator=Scripted([0.5, 0.9, 0.7, 0.8]),
        monitor="accuracy",
    )
    trainer.fit()
    assert spy.seen == [(0.5, True), (0.9, True), (0.7, False), (0.8, False)]
    assert trainer.best_metric == 0.9 and trainer.evals_without_improvement == 2


def test_monitoring_a_metric_the_evaluation_lacks_is_a_config_error():
    trainer = make_trainer(make_data(), train_config(), monitor="accuracy")
    with pytest.raises(ConfigError, match="accuracy"):
        trainer.evaluate()


def test_a_run_resumes_only_with_the_metric_it_monitored():
    data = make_data()
    trainer = make_trainer(data, train_config(max_iters=5))
    trainer.fit()
    other = make_trainer(
        data, train_config(max_iters=5), evaluator=Scripted([0.5]), monitor="accuracy"
    )
    with pytest.raises(ConfigError, match="monitored 'loss'"):
        other.load_state_dict(trainer.state_dict())


def test_activation_checkpointing_trains_the_same_and_saves_less_for_backward():
    """Recomputed blocks give the same steps (dropout masks included: the recomputation replays
    the random state) while keeping fewer activations between forward and backward."""
    data = make_data()
    plain = make_trainer(data, train_config(max_iters=3, eval_interval=0))
    recomputed = make_trainer(
        data, train_config(max_iters=3, eval_interval=0, activation_checkpointing=True)
    )
    names = [name for name, _ in plain.raw_model.state_dict().items()]
    assert [name for name, _ in recomputed.raw_model.state_dict().items()] == names

    def saved_bytes(trainer) -> int:
        total = 0

        def pack(tensor):
            nonlocal total
            total += tensor.numel() * tensor.element_size()
            return tensor

        with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
            trainer.train_step(1e-3)
        return total

    torch.manual_seed(1)
    plain_bytes = [saved_bytes(plain) for _ in range(3)]
    torch.manual_seed(1)
    recomputed_bytes = [saved_bytes(recomputed) for _ in range(3)]
    for a, b in zip(plain.raw_model.parameters(), recomputed.raw_model.parameters()):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-5)
    assert recomputed_bytes[0] < plain_bytes[0] / 2


def test_activation_checkpointing_needs_transformer_blocks():
    with pytest.raises(ConfigError, match="needs Transformer blocks"):
        Trainer(
            torch.nn.Linear(2, 2),
            train_config(activation_checkpointing=True),
            train_batch=lambda step, index: None,
            device=torch.device("cpu"),
        )


def test_evaluation_uses_eval_loss_fn_when_given():
    """A training loss with extra terms (distillation's) trains; the plain loss picks checkpoints."""
    data = make_data()

    def doubled(model, batch):
        return 2.0 * model(*batch)[1]

    plain = make_trainer(data, train_config(), loss_fn=doubled).evaluate()["loss"]
    trainer = make_trainer(
        data, train_config(), loss_fn=doubled, eval_loss_fn=lambda m, b: m(*b)[1]
    )
    assert trainer.evaluate()["loss"] == pytest.approx(plain / 2, rel=1e-6)

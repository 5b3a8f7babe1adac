"""The training loop. It knows nothing about GPT.

It needs a model, a function that gives training batches, optionally a function that gives
evaluation batches (or an `evaluator` that measures the model its own way), and a loss
function; it runs AdamW with warmup and cosine (or inverse square root) decay, gradient
accumulation and clipping, bf16 autocast and DDP, and reports to callbacks, which add the
progress bar, TensorBoard, the metrics file, checkpoints and early stopping.

Training batches are asked for by `(step, index)`, never drawn from a running iterator: the
same step always gets the same data, which is what makes resuming and multi-process training
exact. Process `rank` of `world_size` takes micro-batch `micro * world_size + rank`.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable
from contextlib import nullcontext

import torch
from torch import nn

from gptlab.device import cpu_threads, keep_freed_memory, resolve_dtype
from gptlab.errors import ConfigError
from gptlab.training.checkpoint import saved_state
from gptlab.training.config import TrainConfig
from gptlab.training.distributed import ProcessGroup, mean_across
from gptlab.training.optim import cosine_schedule, make_adamw, noam_schedule
from gptlab.training.recompute import checkpoint_blocks

Batch = tuple[torch.Tensor, ...]
# Evaluation metrics where more is better; any other monitored metric (a loss) is minimised.
HIGHER_IS_BETTER = frozenset({"accuracy", "macro_f1", "exact_match"})


def default_loss(model: nn.Module, batch: Batch) -> torch.Tensor:
    """For models called as `model(inputs, targets)` that return `(logits, loss)` or a loss."""
    out = model(*batch)
    return out[1] if isinstance(out, tuple) else out


class Callback:
    """Hooks the trainer calls; override the ones you need."""

    def on_train_begin(self, trainer: Trainer) -> None: ...

    def on_step_end(self, trainer: Trainer, metrics: dict) -> None: ...

    def on_log(self, trainer: Trainer, metrics: dict) -> None: ...

    def on_eval_end(self, trainer: Trainer, metrics: dict, improved: bool) -> None: ...

    def on_train_end(self, trainer: Trainer) -> None: ...


class Trainer:
    def __init__(
        self,
        model: nn.Module,
        config: TrainConfig,
        train_batch: Callable[[int, int], Batch],
        eval_batches: Callable[[], Iterable[Batch]] | None = None,
        *,
        device: torch.device,
        loss_fn: Callable[[nn.Module, Batch], torch.Tensor] = default_loss,
        eval_loss_fn: Callable[[nn.Module, Batch], torch.Tensor] | None = None,
        callbacks: Iterable[Callback] = (),
        group: ProcessGroup | None = None,
        count_items: Callable[[Batch], int] = lambda batch: batch[0].numel(),
        evaluator: Callable[[nn.Module], dict] | None = None,
        monitor: str = "loss",
    ):
        """evaluator: given the model (in eval mode, under no_grad and autocast), returns the
        validation metrics, "loss" among them; without one, evaluation is the mean of `loss_fn`
        over `eval_batches`, of `eval_loss_fn` when given (a training loss with extra terms, as
        distillation's, is not the loss to select a checkpoint by). monitor: the metric that picks the best checkpoint and drives
        early stopping ("loss", or one of HIGHER_IS_BETTER)."""
        self.config = config
        self.device = device
        self.raw_model = model.to(device)  # what is saved
        self.train_batch = train_batch
        self.eval_batches = eval_batches
        self.loss_fn = loss_fn
        self.eval_loss_fn = eval_loss_fn or loss_fn
        self.callbacks = list(callbacks)
        self.group = group or ProcessGroup()
        self.count_items = count_items
        self.evaluator = evaluator
        self.monitor = monitor
        self.dtype = resolve_dtype(config.dtype, device)
        if device.type == "cpu":  # a setting of the whole process, as OMP_NUM_THREADS is
            num_params = sum(p.numel() for p in model.parameters())
            torch.set_num_threads(cpu_threads(config.threads, num_params))
            keep_freed_memory()
        if device.type == "cuda":
            # TF32 for whatever still runs in float32 (bf16 autocast covers the big matmuls):
            # ~10 bits of mantissa are plenty for training and several times faster.
            torch.set_float32_matmul_precision("high")
        self.optimizer = make_adamw(
            model, config.lr, config.weight_decay, (config.beta1, config.beta2), device.type
        )
        if config.activation_checkpointing:
            checkpoint_blocks(model)
        mode = None if config.compile_mode == "default" else config.compile_mode
        self.model = torch.compile(model, mode=mode) if config.compile else model
        self.eval_model = self.model  # compiled too, but never the DDP wrapper: evaluation is local
        if self.group.enabled:
            from torch.nn.parallel import DistributedDataParallel

            self.model = DistributedDataParallel(
                self.model, device_ids=[self.group.local_rank] if device.type == "cuda" else None
            )
        self.step = 0  # the next step to take
        self.best_metric = -math.inf if monitor in HIGHER_IS_BETTER else math.inf
        self.evals_without_improvement = 0
        self.last_eval_step = -1
        self.elapsed = 0.0  # training seconds, carried across resumes
        self.should_stop = False

    # -- the loop -------------------------------------------------------------------------

    def fit(self) -> None:
        cfg = self.config
        self.raw_model.train()
        self._call("on_train_begin")
        started = time.perf_counter() - self.elapsed
        window_start, window_items = time.perf_counter(), 0
        while self.step < cfg.max_iters and not self.should_stop:
            if self._eval_due():
                self.elapsed = time.perf_counter() - started
                self.evaluate()
                if self.should_stop:
                    break
                window_start = time.perf_counter()  # do not count evaluation time as training
            lr = self.learning_rate(self.step)
            loss, grad_norm, items = self.train_step(lr)
            self.step += 1
            window_items += items
            self.elapsed = time.perf_counter() - started
            metrics = {"step": self.step, "lr": lr}
            self._call("on_step_end", metrics)
            if self.step % cfg.log_interval == 0 or self.step == cfg.max_iters:
                loss = mean_across(loss, self.group).item()  # the only host sync of the step
                now = time.perf_counter()
                metrics.update(
                    split="train",
                    loss=loss,
                    perplexity=_perplexity(loss),
                    grad_norm=float(grad_norm),
                    tokens_per_sec=window_items / max(now - window_start, 1e-9),
                    elapsed=self.elapsed,
                )
                window_start, window_items = now, 0
                self._call("on_log", metrics)
        if (
            not self.should_stop
            and self.can_evaluate
            and cfg.eval_interval
            and self.last_eval_step != self.step
        ):
            self.evaluate()
        self._call("on_train_end")

    def learning_rate(self, step: int) -> float:
        cfg = self.config
        if cfg.schedule == "noam":
            return noam_schedule(step, cfg.lr, cfg.warmup_iters)
        decay = cfg.max_iters if cfg.lr_decay_iters is None else cfg.lr_decay_iters
        return cosine_schedule(step, cfg.lr, cfg.min_lr, cfg.warmup_iters, decay)

    def train_step(self, lr: float) -> tuple[torch.Tensor, torch.Tensor, int]:
        """One optimizer step over `grad_accum` micro-batches; returns (mean loss, grad norm, items)."""
        cfg = self.config
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        total = torch.zeros((), device=self.device)
        items = 0
        for micro in range(cfg.grad_accum):
            batch = self.train_batch(self.step, micro * self.group.world_size + self.rank)
            items += self.count_items(batch) * self.group.world_size
            last = micro == cfg.grad_accum - 1
            # DDP averages gradients across processes in backward; only the last micro-batch
            # of a step needs that, the others just accumulate locally.
            sync = nullcontext() if last or not self.group.enabled else self.model.no_sync()
            if cfg.cuda_graphs:  # replays reuse their output buffers: say where a step starts
                torch.compiler.cudagraph_mark_step_begin()
            with sync, self.autocast():
                loss = self.loss_fn(self.model, batch) / cfg.grad_accum
            loss.backward()
            total += loss.detach()
        max_norm = cfg.grad_clip if cfg.grad_clip > 0 else math.inf
        grad_norm = torch.nn.utils.clip_grad_norm_(self.raw_model.parameters(), max_norm)
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        return total, grad_norm, items

    @torch.no_grad()
    def evaluate(self) -> dict:
        """The validation metrics (the evaluator's, or the mean loss and its perplexity), reported
        to callbacks."""
        self.raw_model.eval()
        if self.evaluator is not None:
            with self.autocast():
                values = dict(self.evaluator(self.eval_model))
        else:
            loss = self._mean_eval_loss()
            values = {"loss": loss, "perplexity": _perplexity(loss)}
        self.raw_model.train()
        if self.monitor not in values:
            raise ConfigError(
                f"cannot monitor {self.monitor!r}: evaluation measures {', '.join(values)}"
            )
        value = values[self.monitor]
        improved = (
            value > self.best_metric
            if self.monitor in HIGHER_IS_BETTER
            else value < self.best_metric
        )
        if improved:
            self.best_metric, self.evals_without_improvement = value, 0
        else:
            self.evals_without_improvement += 1
        self.last_eval_step = self.step
        metrics = {
            "step": self.step,
            "split": "val",
            **values,
            "lr": self.learning_rate(self.step),
            "elapsed": self.elapsed,
        }
        self._call("on_eval_end", metrics, improved)
        return metrics

    def _mean_eval_loss(self) -> float:
        total, count = torch.zeros((), device=self.device), 0
        for batch in self.eval_batches():
            if self.config.cuda_graphs:
                torch.compiler.cudagraph_mark_step_begin()
            with self.autocast():
                loss = self.eval_loss_fn(self.eval_model, batch)
            total += loss.float()  # added at once: a CUDA-graph replay reuses the loss's buffer
            count += 1
        if not count:
            raise ConfigError("the evaluation data gave no batches")
        return (total / count).item()

    @property
    def can_evaluate(self) -> bool:
        return self.eval_batches is not None or self.evaluator is not None

    @property
    def evaluated(self) -> bool:
        """Whether any evaluation has given a best metric yet."""
        return not math.isinf(self.best_metric)

    def autocast(self):
        if self.dtype == torch.float32:
            return nullcontext()
        return torch.autocast(self.device.type, dtype=self.dtype)

    @property
    def rank(self) -> int:
        return self.group.rank

    def _eval_due(self) -> bool:
        every = self.config.eval_interval
        return bool(
            self.can_evaluate
            and every
            and self.step % every == 0
            and self.last_eval_step != self.step
        )

    def _call(self, hook: str, *args) -> None:
        for callback in self.callbacks:
            getattr(callback, hook)(self, *args)

    # -- resuming -------------------------------------------------------------------------

    def state_dict(self) -> dict:
        """Everything `load_state_dict` needs to continue exactly where this run stands."""
        state = {
            "step": self.step,
            "model": {k: v.cpu() for k, v in saved_state(self.raw_model).items()},
            "optimizer": self.optimizer.state_dict(),
            "monitor": self.monitor,
            "best_metric": self.best_metric,
            "evals_without_improvement": self.evals_without_improvement,
            "last_eval_step": self.last_eval_step,
            "elapsed": self.elapsed,
            "rng_cpu": torch.get_rng_state(),
        }
        if self.device.type == "cuda":
            state["rng_cuda"] = torch.cuda.get_rng_state(self.device)
        return state

    def load_state_dict(self, state: dict) -> None:
        from gptlab.training.checkpoint import load_state_into

        load_state_into(self.raw_model, state["model"], source="trainer_state.pt")
        self.optimizer.load_state_dict(state["optimizer"])
        self.step = state["step"]
        # Runs saved before the monitor was a setting kept only their best validation loss.
        saved_monitor = state.get("monitor", "loss")
        if saved_monitor != self.monitor:
            raise ConfigError(
                f"the run monitored {saved_monitor!r}; it cannot resume monitoring {self.monitor!r}"
            )
        self.best_metric = state.get("best_metric", state.get("best_val_loss"))
        self.evals_without_improvement = state["evals_without_improvement"]
        self.last_eval_step = state["last_eval_step"]
        self.elapsed = state["elapsed"]
        torch.set_rng_state(state["rng_cpu"])
        if "rng_cuda" in state and self.device.type == "cuda":
            torch.cuda.set_rng_state(state["rng_cuda"], self.device)


def _perplexity(loss: float) -> float:
    return math.exp(loss) if loss < 700 else math.inf

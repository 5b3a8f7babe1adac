"""`TrainConfig`: how to train. Kept free of torch so `gptlab train --help` answers at once."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from gptlab.errors import ConfigError

COMPILE_MODES = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")
SCHEDULES = ("cosine", "noam")


@dataclass
class TrainConfig:
    """How to train: optimizer, schedule, evaluation and precision."""

    max_iters: int = 5000
    batch_size: int = 64
    grad_accum: int = 1  # micro-batches per optimizer step (per process)
    lr: float = 1e-3
    min_lr: float = 1e-4
    warmup_iters: int = 100
    lr_decay_iters: int | None = None  # None: decay until max_iters
    # cosine: warmup, cosine decay to min_lr; noam: warmup, then lr * sqrt(warmup / step)
    # (Vaswani et al. 2017, 5.3), with `lr` the peak it reaches at the end of the warmup.
    schedule: str = dataclasses.field(default="cosine", metadata={"choices": SCHEDULES})
    weight_decay: float = 0.1
    beta1: float = 0.9
    beta2: float = 0.99
    grad_clip: float = 1.0  # 0 turns clipping off
    eval_interval: int = 250  # 0 turns evaluation off
    eval_iters: int = 200  # batches per evaluation
    patience: int | None = None  # stop after this many evaluations without a better val loss
    log_interval: int = 10
    seed: int = 1337
    device: str = "auto"
    # CPU threads; 0 picks: OMP_NUM_THREADS when set, else one for a model under 5M parameters
    # (see gptlab.device.cpu_threads), else torch's default (one per core).
    threads: int = 0
    # auto | fast | float32 | bfloat16 (autocast); auto: bf16 on CUDA GPUs that have it, else
    # float32; fast: also bf16 on CPUs with AMX (gptlab.device.resolve_dtype)
    dtype: str = "auto"
    compile: bool = False
    # torch.compile's mode: "reduce-overhead" replays the step as CUDA graphs, which pays where
    # launching kernels takes longer than running them (small models on a GPU).
    compile_mode: str = dataclasses.field(default="default", metadata={"choices": COMPILE_MODES})
    # Recompute each Transformer block in backward instead of keeping its activations: about a
    # third more compute for much less memory (long contexts, big models on one GPU).
    activation_checkpointing: bool = False

    @property
    def cuda_graphs(self) -> bool:
        """Whether the compiled model replays CUDA graphs (on a CUDA device)."""
        return self.compile and self.compile_mode in ("reduce-overhead", "max-autotune")

    def __post_init__(self):
        positive = ("max_iters", "batch_size", "grad_accum", "log_interval", "eval_iters")
        for name in positive:
            if getattr(self, name) <= 0:
                raise ConfigError(f"{name} must be positive, got {getattr(self, name)}")
        for name in (
            "warmup_iters",
            "eval_interval",
            "weight_decay",
            "grad_clip",
            "min_lr",
            "threads",
        ):
            if getattr(self, name) < 0:
                raise ConfigError(f"{name} must not be negative, got {getattr(self, name)}")
        if self.lr <= 0:
            raise ConfigError(f"lr must be positive, got {self.lr}")
        if self.patience is not None and self.patience < 1:
            raise ConfigError(f"patience must be at least 1, got {self.patience}")
        if not (0 <= self.beta1 < 1 and 0 <= self.beta2 < 1):
            raise ConfigError(f"betas must be in [0, 1), got {self.beta1}, {self.beta2}")
        if self.compile_mode not in COMPILE_MODES:
            raise ConfigError(
                f"compile_mode must be one of {', '.join(COMPILE_MODES)}, got {self.compile_mode!r}"
            )
        if self.schedule not in SCHEDULES:
            raise ConfigError(
                f"schedule must be one of {', '.join(SCHEDULES)}, got {self.schedule!r}"
            )
        if self.dtype == "float16":
            raise ConfigError(
                "float16 training needs loss scaling, which gptlab does not do: use --dtype bfloat16"
            )

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


@dataclass
class DistillConfig:
    """How the student learns from the teacher."""

    alpha: float = 0.5  # weight of the soft (teacher) term; 1 - alpha goes to the labels
    temperature: float = 2.0  # softens both distributions; 1 leaves them as they are
    cosine: float = 0.0  # weight of the hidden-state cosine term (0: off)
    init_from_teacher: bool = False  # copy embeddings, ln_f and every other block

    def __post_init__(self):
        if not 0.0 <= self.alpha <= 1.0:
            raise ConfigError(f"alpha must be in [0, 1], got {self.alpha}")
        if self.temperature <= 0:
            raise ConfigError(f"temperature must be positive, got {self.temperature}")
        if self.cosine < 0:
            raise ConfigError(f"the cosine weight must not be negative, got {self.cosine}")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

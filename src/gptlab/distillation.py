"""Knowledge distillation: a small student GPT trained on a larger teacher's predictions.

A label says only which token came next; the teacher's distribution over the vocabulary also
says which other tokens were plausible and by how much ("dark knowledge", Hinton et al. 2015).
Softening both distributions with a temperature T > 1 brings those small probabilities up to
where their gradients count. The loss is

    alpha * KL(softmax(teacher / T) || softmax(student / T)) * T^2  +  (1 - alpha) * CE(student, labels)
        + cosine * (1 - cos(student hidden, teacher hidden))

The T^2 keeps the soft term's gradients the same size whatever T is: the gradient of the
softened KL with respect to a logit scales as 1/T^2 (Hinton et al. 2015, section 2). The cosine
term pulls the student's final hidden states towards the teacher's direction, as DistilBERT
did (Sanh et al. 2019, section 3), and needs the two to be of the same width.

DistilBERT and DistilGPT2 start the student from the teacher: its embeddings, its final norm,
and one block out of two. `init_from_teacher` does that here. The teacher's logits are computed
for each batch as it comes, under `no_grad`, never stored for the corpus: a corpus of N tokens
would need N x V floats.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from gptlab.errors import ConfigError
from gptlab.training.config import DistillConfig  # torch-free, for the command line's parser

# -- the loss terms (pure functions) -------------------------------------------------------


def soft_target_loss(student_logits: Tensor, teacher_logits: Tensor, temperature: float) -> Tensor:
    """KL(teacher || student), both softened by `temperature`, times temperature^2, averaged
    over positions. Logits: (..., V); computed in float32."""
    V = student_logits.size(-1)
    log_q = F.log_softmax(student_logits.float().reshape(-1, V) / temperature, dim=-1)  # (N, V)
    log_p = F.log_softmax(teacher_logits.float().reshape(-1, V) / temperature, dim=-1)  # (N, V)
    # kl_div(input=log q, target=log p) is sum p (log p - log q); "batchmean" divides by N rows.
    kl = F.kl_div(log_q, log_p, log_target=True, reduction="batchmean")
    return kl * temperature**2


def hidden_cosine_loss(student_hidden: Tensor, teacher_hidden: Tensor) -> Tensor:
    """1 - cosine similarity of the hidden states (B, T, C), averaged over positions."""
    cos = F.cosine_similarity(student_hidden.float(), teacher_hidden.float(), dim=-1)  # (B, T)
    return (1.0 - cos).mean()


def distillation_loss(
    student_logits: Tensor,
    teacher_logits: Tensor,
    targets: Tensor,
    config: DistillConfig,
    student_hidden: Tensor | None = None,
    teacher_hidden: Tensor | None = None,
) -> Tensor:
    """The whole loss (see the module's docstring). Logits (B, T, V), targets (B, T)."""
    V = student_logits.size(-1)
    loss = student_logits.new_zeros((), dtype=torch.float32)
    if config.alpha > 0:
        loss = loss + config.alpha * soft_target_loss(
            student_logits, teacher_logits, config.temperature
        )
    if config.alpha < 1:
        hard = F.cross_entropy(student_logits.float().reshape(-1, V), targets.reshape(-1))
        loss = loss + (1.0 - config.alpha) * hard
    if config.cosine > 0:
        loss = loss + config.cosine * hidden_cosine_loss(student_hidden, teacher_hidden)
    return loss


def distill_loss_fn(teacher: nn.Module, config: DistillConfig):
    """A `loss_fn(student, batch)` for the Trainer: the teacher's logits (and hidden states)
    for this batch under no_grad, then `distillation_loss`. The trainer's autocast covers the
    teacher too, so on a GPU it runs in bf16."""
    teacher.eval().requires_grad_(False)

    def loss_fn(student: nn.Module, batch) -> Tensor:
        idx, targets = batch
        if config.cosine > 0:
            # The hidden states are not an output of forward, so this path calls the models'
            # own `hidden_states` (torch.compile's wrapper hands it to the module, uncompiled).
            with torch.no_grad():
                teacher_hidden = teacher.hidden_states(idx)  # (B, T, C)
                teacher_logits = teacher.lm_head(teacher_hidden)  # (B, T, V)
            student_hidden = student.hidden_states(idx)  # (B, T, C)
            student_logits = student.lm_head(student_hidden)
        else:
            # Through forward, so that a compiled teacher or student (or DDP) runs as such.
            with torch.no_grad():
                teacher_logits, _ = teacher(idx, all_logits=True)  # (B, T, V)
            student_hidden = teacher_hidden = None
            student_logits, _ = student(idx, all_logits=True)  # (B, T, V)
        return distillation_loss(
            student_logits, teacher_logits, targets, config, student_hidden, teacher_hidden
        )

    return loss_fn


# -- the student ---------------------------------------------------------------------------


def student_layers(n_teacher: int, n_student: int) -> list[int]:
    """Which teacher blocks the student's blocks start from: evenly spaced from the first, so
    one out of two for half the depth (6 -> 3: [0, 2, 4]; 12 -> 6: [0, 2, ..., 10])."""
    if not 0 < n_student <= n_teacher:
        raise ConfigError(
            f"a student initialised from the teacher needs 1..{n_teacher} layers, got {n_student}"
        )
    return [i * n_teacher // n_student for i in range(n_student)]


def check_compatible(teacher_config, student_config, init_from_teacher: bool, cosine: float):
    """One clear error for a student that cannot learn from this teacher as asked."""
    t, s = teacher_config, student_config
    if s.vocab_size != t.vocab_size:
        raise ConfigError(
            f"the student's vocabulary ({s.vocab_size}) differs from the teacher's ({t.vocab_size}): "
            "they must share the tokenizer"
        )
    if s.context_length > t.context_length:
        raise ConfigError(
            f"the student's context ({s.context_length}) is longer than the teacher's "
            f"({t.context_length}): add --context-length {t.context_length}"
        )
    if cosine > 0 and s.n_embd != t.n_embd:
        raise ConfigError(
            f"the cosine loss compares hidden states: the widths differ ({s.n_embd} vs {t.n_embd})"
        )
    if init_from_teacher:
        for name in ("n_embd", "n_head", "bias", "positions"):
            if getattr(s, name) != getattr(t, name):
                raise ConfigError(
                    f"a student initialised from the teacher needs the teacher's {name} "
                    f"({getattr(t, name)}), got {getattr(s, name)}"
                )
        student_layers(t.n_layer, s.n_layer)


@torch.no_grad()
def init_from_teacher(student: nn.Module, teacher: nn.Module) -> list[int]:
    """Copy into `student` the teacher's embeddings (positions cropped to the student's context),
    final norm and every other block; returns the teacher blocks used."""
    check_compatible(teacher.config, student.config, True, 0.0)
    layers = student_layers(teacher.config.n_layer, student.config.n_layer)
    student.wte.load_state_dict(teacher.wte.state_dict())  # the tied lm_head comes with it
    positions = {
        name: value[: student.config.context_length] if value.dim() else value
        for name, value in teacher.wpe.state_dict().items()
    }
    student.wpe.load_state_dict(positions)
    student.ln_f.load_state_dict(teacher.ln_f.state_dict())
    for block, source in zip(student.h, layers, strict=True):
        block.load_state_dict(teacher.h[source].state_dict())
    return layers

# %% [markdown]
# # Lesson 13: two more training objectives, distillation and masked language modelling
#
# Everything so far trained a GPT on one objective: predict the next token, with cross-entropy
# against the token that came. This lesson changes what the model learns from, not the model.
#
# - **Knowledge distillation** (Hinton et al. 2015): a small *student* learns from a big
#   *teacher*'s whole predicted distribution, not only from the one token that came.
# - **Masked language modelling** (BERT, Devlin et al. 2019): an *encoder* sees the whole text,
#   with some tokens hidden, and learns to fill them in. It reads both ways, so it cannot write
#   text, but it understands text it is given.

# %%
import math

import matplotlib.pyplot as plt
import torch
import torch.nn.functional as F
from lesson_mode import quick_or_full, save_figure

from gptlab.config import EncoderConfig, GPTConfig
from gptlab.data.masking import mask_tokens
from gptlab.distillation import DistillConfig, distill_loss_fn, soft_target_loss
from gptlab.models.encoder import IGNORE_INDEX, MaskedLM
from gptlab.models.gpt import GPT
from gptlab.nn.attention import causal_mask
from gptlab.tokenizers import CharTokenizer, with_mask_token
from gptlab.training.config import TrainConfig
from gptlab.training.trainer import Trainer

torch.manual_seed(0)
torch.set_num_threads(1)  # small matrices: one thread is faster than two that wait on each other

# %% [markdown]
# ## What a teacher's soft targets carry
#
# A label says "the next token is `cat`". A trained model's distribution says more: `dog` is
# nearly as likely, `the` is impossible. Those near-misses are what Hinton et al. called *dark
# knowledge*. Raising the softmax's temperature T spreads the distribution so the student sees
# them. Here is one teacher prediction over ten tokens at three temperatures.

# %%
teacher_logits = torch.tensor([6.0, 5.2, 3.5, 2.0, 1.0, 0.5, 0.0, -1.0, -2.0, -3.0])
figure, axes = plt.subplots(1, 3, figsize=(11, 3), sharey=True)
for ax, T in zip(axes, (1.0, 2.0, 4.0)):
    p = torch.softmax(teacher_logits / T, dim=-1)
    ax.bar(range(10), p)
    ax.set_title(f"T = {T:g}: top token {p[0]:.0%}")
    ax.set_xlabel("token")
axes[0].set_ylabel("probability")
figure.suptitle("one teacher prediction, softened by the temperature")
save_figure(figure, "13_temperature.png")

# %% [markdown]
# The student's soft loss is KL(teacher || student), both softened by the same T. Its gradient
# with respect to the student's logits shrinks like 1/T^2, so the loss is multiplied by T^2 to
# keep its pull comparable with the labels' cross-entropy whatever T is. By hand, against
# `gptlab.distillation.soft_target_loss`:

# %%
student_logits = torch.randn(4, 10)
teachers = teacher_logits.expand(4, 10)
T = 2.0
p = torch.softmax(teachers / T, dim=-1)
by_hand = (p * (p.log() - F.log_softmax(student_logits / T, dim=-1))).sum(-1).mean() * T**2
print(f"KL x T^2 by hand {by_hand:.6f}, gptlab {soft_target_loss(student_logits, teachers, T):.6f}")
torch.testing.assert_close(by_hand, soft_target_loss(student_logits, teachers, T))

# %% [markdown]
# ## Distilling a tiny GPT
#
# The teacher: a 2-layer GPT trained on sequences where the next id is mostly the last id + 1 or
# + 2. The students have one layer; one learns from the labels, one from the teacher too
# (loss = alpha x soft loss + (1 - alpha) x cross-entropy), for the same steps on the same
# batches. `distill_loss_fn` is the trainer's `loss_fn`: nothing else changes.

# %%
VOCAB, BLOCK, BATCH = 32, 16, 16
steps = quick_or_full(30, 300)
generator = torch.Generator().manual_seed(0)
stream = torch.cumsum(torch.randint(1, 3, (20_000,), generator=generator), 0) % VOCAB


def batch(step: int, index: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(step * 1000 + index)
    starts = torch.randint(len(stream) - BLOCK - 1, (BATCH,), generator=g)
    rows = torch.stack([stream[s : s + BLOCK + 1] for s in starts.tolist()])
    return rows[:, :-1], rows[:, 1:]


def trained(layers: int, loss_fn=None, seed: int = 1) -> tuple[GPT, float]:
    torch.manual_seed(seed)
    model = GPT(
        GPTConfig(vocab_size=VOCAB, context_length=BLOCK, n_layer=layers, n_head=2, n_embd=32)
    )
    config = TrainConfig(max_iters=steps, batch_size=BATCH, lr=3e-3, warmup_iters=5, eval_interval=0,
                         device="cpu", dtype="float32")  # fmt: skip
    options = {} if loss_fn is None else {"loss_fn": loss_fn}
    trainer = Trainer(model, config, train_batch=batch, device=torch.device("cpu"), **options)
    for step in range(steps):
        trainer.step = step
        trainer.train_step(config.lr)
    model.eval()
    with torch.no_grad():
        held_out = [batch(10**6 + i) for i in range(8)]
        loss = sum(model(x, y)[1].item() for x, y in held_out) / len(held_out)
    return model, loss


teacher, teacher_loss = trained(layers=2, seed=0)
scratch, scratch_loss = trained(layers=1)
distilled, distilled_loss = trained(
    layers=1, loss_fn=distill_loss_fn(teacher, DistillConfig(alpha=0.5, temperature=2.0))
)
print(f"held-out loss: teacher {teacher_loss:.3f}, student from the labels {scratch_loss:.3f}, "
      f"distilled student {distilled_loss:.3f}")  # fmt: skip

# %% [markdown]
# On this task the best possible loss is log 2 = 0.693 (two equally likely next ids), and a
# well-trained teacher's soft targets say exactly that, where a label says only one of the two.
# The task is easy enough that all three models get close to that floor in the full run, so the
# soft targets have little left to add here; how much a student gains depends on the task and
# the budget. `benchmarks/distill.py` measures it on TinyShakespeare, where the student
# initialised from the teacher's layers (DistilGPT2's recipe) gains the most.
#
# ## Masked language modelling
#
# An encoder's attention has no look-ahead mask: every token sees every other. Side by side
# with a decoder's:

# %%
figure, axes = plt.subplots(1, 2, figsize=(7, 3.4))
for ax, mask, title in zip(
    axes, (causal_mask(6), torch.ones(6, 6, dtype=torch.bool)), ("decoder (GPT)", "encoder (BERT)")
):
    ax.imshow(mask.int(), cmap="Greens", vmin=0, vmax=1)
    ax.set_title(title)
    ax.set_xlabel("key position")
    ax.set_ylabel("query position")
figure.suptitle("green: may look at")
save_figure(figure, "13_masks.png")

# %% [markdown]
# Predicting the next token is trivial for a model that can see it, so an encoder is trained
# differently: 15% of the tokens are chosen, and of those 80% become `[MASK]`, 10% a random
# token and 10% stay as they are (so the model cannot learn that only `[MASK]` needs
# predicting). The labels hold the original ids at the chosen positions and IGNORE_INDEX
# elsewhere. Over many draws the shares come out as designed:

# %%
text = "to be, or not to be, that is the question: whether 'tis nobler in the mind to suffer"
tokenizer = with_mask_token(CharTokenizer.from_text(text))
ids = torch.tensor([tokenizer.encode(text)] * 200)  # (200, T)
inputs, labels = mask_tokens(
    ids,
    tokenizer.mask_id,
    tokenizer.vocab_size,
    tokenizer.special_ids,
    torch.Generator().manual_seed(0),
)
chosen = labels != IGNORE_INDEX
masked = (inputs == tokenizer.mask_id) & chosen
kept = (inputs == ids) & chosen
shares = [chosen.float().mean(), masked.sum() / chosen.sum(), kept.sum() / chosen.sum()]
print("chosen {:.3f}, of which [MASK] {:.3f}, unchanged {:.3f}".format(*shares))
print("one masked row:", tokenizer.decode(inputs[0].tolist()))

# %% [markdown]
# A tiny `MaskedLM` (post-LN blocks, BERT's prediction head, the embedding tied to the output)
# learns to fill in the masks of this one line. With targets, the head runs only at the chosen
# positions: the vocabulary projection is most of the work and 85% of the positions have
# nothing to predict.

# %%
encoder = MaskedLM(
    EncoderConfig(vocab_size=tokenizer.vocab_size, context_length=ids.size(1), n_layer=2, n_head=2,
                  n_embd=32, dropout=0.0, mask_id=tokenizer.mask_id)
)  # fmt: skip
optimizer = torch.optim.AdamW(encoder.parameters(), lr=3e-3)
losses = []
for step in range(quick_or_full(40, 400)):
    generator = torch.Generator().manual_seed(step)
    x, y = mask_tokens(
        ids[:16], tokenizer.mask_id, tokenizer.vocab_size, tokenizer.special_ids, generator
    )
    _, loss = encoder(x, y)
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    losses.append(loss.item())
print(f"masked-token loss: first step {losses[0]:.2f}, last {losses[-1]:.2f}")

query = list(text)
position = text.index("question") + 2
query[position] = "[MASK]"
query_ids = torch.tensor([tokenizer.encode("".join(query[:position])) + [tokenizer.mask_id]
                          + tokenizer.encode("".join(query[position + 1 :]))])  # fmt: skip
encoder.eval()
with torch.no_grad():
    probabilities = torch.softmax(encoder(query_ids)[0][0, position], dim=-1)
top = probabilities.topk(3)
print(
    "fillers of 'qu[MASK]stion':",
    [(tokenizer.decode([int(i)]), round(float(p), 3)) for p, i in zip(*top)],
)

# %% [markdown]
# `gptlab train --objective mlm` does this at scale, `gptlab fill-mask RUN "The [MASK] of
# Denmark"` prints the fillers, `gptlab export` writes a folder `transformers.BertForMaskedLM`
# loads with equal logits, and `gptlab finetune classify` takes an encoder run as a body.
#
# ## Checks

# %%
assert 0.12 < shares[0] < 0.18 and 0.75 < shares[1] < 0.85 and 0.06 < shares[2] < 0.14
assert not (
    inputs[labels == IGNORE_INDEX] != ids[labels == IGNORE_INDEX]
).any()  # only chosen change
assert losses[-1] < losses[0]
uniform = math.log(VOCAB)  # the loss of a model that has learned nothing
assert max(teacher_loss, scratch_loss, distilled_loss) < uniform
print("all checks passed")

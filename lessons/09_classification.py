# %% [markdown]
# # Lesson 9: fine-tuning a GPT to classify text
#
# A GPT turns a text into one hidden state per token, and its language-model head turns each
# hidden state into scores for the next token. To sort whole texts into classes (spam or not,
# positive or negative), we keep the body, put a small new head on it that maps *one* hidden
# state to one score per class, and train on labelled examples: **fine-tuning**.
#
# Three questions decide how well that works and what it costs: which hidden state the head
# reads, which parameters train, and how the result is measured. This lesson answers each with
# gptlab's `GPTClassifier` on a tiny, untrained GPT body, so it runs in seconds on a laptop;
# the docs page "Classification fine-tuning" does the same with a pretrained body through
# `gptlab finetune classify`.

# %%
import copy
import time

import torch
from lesson_mode import quick_or_full, save_figure

from gptlab.config import GPTConfig
from gptlab.data.labelled import pad_batch
from gptlab.evaluation import classification_metrics, classify_batches
from gptlab.models.gpt import GPT
from gptlab.tasks.classification import (
    DataSpec,
    classifier_from_body,
    encode_texts,
    evaluate_split,
    prepare_data,
)
from gptlab.tokenizers import get_tokenizer
from gptlab.training.freezing import freeze
from gptlab.viz import confusion_matrix_figure

torch.manual_seed(0)
STEPS = quick_or_full(60, 400)  # optimizer steps of each fine-tuning run
MAX_LENGTH = quick_or_full(48, 128)  # tokens kept of each message

tokenizer = get_tokenizer("gpt2")  # GPT-2's BPE: from GPTLAB_DATA's gpt2-tokenizer, or downloaded
PAD = tokenizer.eos_id  # GPT-2 has no padding token: <|endoftext|> (50256) fills the gaps
config = GPTConfig(
    vocab_size=tokenizer.vocab_size, context_length=128, n_layer=2, n_head=2, n_embd=32
)
body = GPT(config).eval()  # untrained: the lesson is about the head, not about pretraining
model = classifier_from_body(body, ["ham", "spam"], pad_id=PAD).eval()
print(model.score)
print(f"body {body.num_params():,} parameters, head {model.score.weight.numel():,}")

# %% [markdown]
# ## Which hidden state the head reads
#
# Attention in a GPT is causal: position t sees tokens 0..t and nothing after (lesson 8). So
# the hidden state at the first token knows one token, and only the **last** position has seen
# the whole text. `GPTClassifier` reads that one, as GPT-1 was fine-tuned (Radford et al.
# 2018, 3.3) and as Hugging Face's `GPT2ForSequenceClassification` does.
#
# Texts differ in length, so a batch pads the short ones to the longest. With padding on the
# **right**, a row's last real token is at its length minus one, not at T - 1: the head must
# find it, which `GPTClassifier.pool` does from the padding mask. The padding needs no
# attention mask: a real token never attends to the pads that come after it, so its hidden
# state is exactly what it would be with the row alone.

# %%
texts = [
    "WINNER! You have won a free prize, call now",
    "Ok lar, see you soon",
    "Are we still meeting for lunch today?",
]
rows = [tokenizer.encode(text) for text in texts]
idx, mask = pad_batch(rows, PAD, side="right")  # (B, T) each
print("lengths:", [len(row) for row in rows])
print("padding mask (1: a real token):\n", mask.int())

with torch.no_grad():
    hidden = body.hidden_states(idx)  # (B, T, C)
    pooled = model.pool(hidden, mask)  # (B, C): each row's last real token
    alone = [body.hidden_states(torch.tensor([row]))[0] for row in rows]  # each (T_i, C)
last_alone = torch.stack([states[-1] for states in alone])  # (B, C)
right_matches = [torch.allclose(pooled[i], last_alone[i], atol=1e-5) for i in range(len(rows))]
at_t_minus_1 = [torch.allclose(hidden[i, -1], last_alone[i], atol=1e-5) for i in range(len(rows))]
print("last real token, padded batch = row alone:", right_matches)
print("position T - 1 instead (a pad for short rows):", at_t_minus_1)

# %% [markdown]
# With padding on the **left**, every row ends at T - 1, but two things break: the real tokens
# come after the pads and would attend to them, and they would sit at positions shifted by the
# number of pads, where pretraining never put a first word. So left padding needs the padding
# mask in attention *and* position ids that restart at 0 on each row's first real token, which
# is what `GPTClassifier` gives the body when `padding_side="left"`.

# %%
left_idx, left_mask = pad_batch(rows, PAD, side="left")
positions = (left_mask.long().cumsum(-1) - 1).clamp(min=0)  # (B, T): 0 at the first real token
print("left-padded positions:\n", positions)
with torch.no_grad():
    left_fixed = body.hidden_states(left_idx, positions=positions, padding_mask=left_mask)[:, -1]
    left_naive = body.hidden_states(left_idx)[:, -1]  # (B, C): no mask, positions 0..T-1
left_matches = [torch.allclose(left_fixed[i], last_alone[i], atol=1e-5) for i in range(len(rows))]
naive_matches = [torch.allclose(left_naive[i], last_alone[i], atol=1e-5) for i in range(len(rows))]
print("left padding with mask and positions = row alone:", left_matches)
print("left padding with neither:", naive_matches)

# %% [markdown]
# The alternative is **mean pooling**: average the hidden states of the real tokens
# (`pooling="mean"`). It suits encoders that see both ways (BERT's tokens all see the whole
# text); in a causal model the early positions saw only a prefix, so the average mixes partial
# views into the full one. gptlab offers it (`--pooling mean`), but a mean-pooling classifier
# cannot be exported as a `GPT2ForSequenceClassification`, which reads the last token.

# %%
mean_model = classifier_from_body(body, ["ham", "spam"], pad_id=PAD, pooling="mean")
with torch.no_grad():
    mean_pooled = mean_model.pool(hidden, mask)  # (B, C)
mean_alone = torch.stack([states.mean(dim=0) for states in alone])
print("mean of the real tokens = row alone:", torch.allclose(mean_pooled, mean_alone, atol=1e-5))

# %% [markdown]
# ## Which parameters train
#
# `freeze(model, policy)` switches `requires_grad` from outside the model. The optimizer then
# holds only what trains, and autograd stops at the first layer that needs no gradient: a
# frozen body costs one forward pass, no backward, no optimizer state.
#
# - `head`: the new head alone, a *linear probe* of what the body already computes;
# - `last-block`: the last transformer block, the final LayerNorm and the head, the recipe of
#   the published reference (Raschka 2024, chapter 6);
# - `last-N`: the last N blocks, `ln_f` and the head;
# - `all`: everything, embeddings included.
#
# In this tiny model the embedding table (50,257 x 32) is most of the parameters; in GPT-2
# (124M) one block is 5.7% of them (the docs page lists the counts).

# %%
block_size = sum(p.numel() for p in body.h[-1].parameters())
for policy in ("head", "last-block", "last-2", "all"):
    trainable, total = freeze(model, policy)
    print(f"{policy:>10}: {trainable:>9,} of {total:,} parameters train ({trainable / total:.1%})")
head_count, _ = freeze(model, "head")
last_block_count, _ = freeze(model, "last-block")
ln_f_size = sum(p.numel() for p in body.ln_f.parameters())

# %% [markdown]
# ## The data: the SMS Spam Collection
#
# 5,572 text messages, 747 of them spam. The reference split (`DataSpec("sms-spam")`)
# undersamples ham to 747 so the classes are even, shuffles with seed 123 and cuts 70/10/20:
# 1,045 messages to train on, 149 to validate, 300 to test. `prepare_data` reads them (from
# `GPTLAB_DATA`, or downloaded), splits them and encodes each message, keeping its first
# `MAX_LENGTH` tokens; any CSV, TSV or JSONL file with a text and a label column works the
# same way (`DataSpec("reviews.csv", text_column="review", label_column="stars")`).

# %%
data = prepare_data(DataSpec("sms-spam", max_length=MAX_LENGTH), tokenizer, MAX_LENGTH)
print("classes:", data.names)
for split, counts in data.counts.items():
    print(f"{split:>5}: {counts}")

# %% [markdown]
# ## Fine-tuning
#
# Each run starts from a copy of the same untrained body, freezes it by a policy and trains
# with AdamW on batches of 16 messages, padded on the right; the loss is the cross-entropy of
# the class scores. Two policies, compared on the validation split:

# %%
initial_body = copy.deepcopy(body)


def fine_tune(policy: str):
    """A classifier on a copy of the untrained body, trained `STEPS` steps with `policy`."""
    torch.manual_seed(1)
    classifier = classifier_from_body(copy.deepcopy(initial_body), data.names, pad_id=PAD)
    trainable, _ = freeze(classifier, policy)
    optimizer = torch.optim.AdamW(
        [p for p in classifier.parameters() if p.requires_grad], lr=3e-3, weight_decay=0.01
    )
    batches = data.batches("train", batch_size=16, pad_id=PAD, seed=0)
    classifier.train()
    started = time.perf_counter()
    for step in range(STEPS):
        batch_idx, batch_mask, labels = batches.train_batch(step, 0)
        _, loss = classifier(batch_idx, batch_mask, labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    seconds = time.perf_counter() - started
    validation = evaluate_split(classifier, data.batches("val", 64, PAD), data.names, "cpu")
    print(
        f"{policy:>10}: {trainable:>9,} trainable, {seconds:5.1f} s, last batch loss "
        f"{loss.item():.3f}, validation accuracy {validation['accuracy']:.1%}"
    )
    return classifier, validation


runs = {policy: fine_tune(policy) for policy in ("last-block", "all")}

# %% [markdown]
# `last-block` trains faster per step (no gradient for the embedding table, no backward
# through the first block), but here the frozen parts are *random*: they keep token identity
# and little else, so training everything does better. Freezing pays when the body is
# pretrained: then the frozen layers hold what pretraining learned, and training only the top
# keeps it while costing a fraction of the compute and memory. The frozen weights did not move:

# %%
frozen_run = runs["last-block"][0].transformer
frozen_kept = torch.equal(frozen_run.wte.weight, initial_body.wte.weight) and torch.equal(
    frozen_run.h[0].attn.c_attn.weight, initial_body.h[0].attn.c_attn.weight
)
last_block_moved = not torch.equal(
    frozen_run.h[-1].attn.c_attn.weight, initial_body.h[-1].attn.c_attn.weight
)
print(
    "embeddings and first block unchanged:", frozen_kept, "| last block trained:", last_block_moved
)

# %% [markdown]
# ## Measuring: accuracy, F1 and the confusion matrix
#
# The policy is chosen on the validation split; the test split is looked at once, at the end.
# Accuracy alone hides *which* mistakes a classifier makes: for spam, calling a friend's
# message spam is worse than letting one advert through. Per-class **precision** (of the
# messages called spam, how many are) and **recall** (of the spam, how much was caught) show
# it, **macro-F1** averages each class's F1 so a small class counts as much as a large one,
# and the **confusion matrix** shows every kind of mistake: true class down, predicted across.

# %%
best_policy = max(runs, key=lambda policy: runs[policy][1]["accuracy"])
best = runs[best_policy][0]
probabilities, labels, _ = classify_batches(best, data.batches("test", 64, PAD).eval_batches())
report = classification_metrics(probabilities.argmax(-1).tolist(), labels.tolist(), data.names)
print(
    f"{best_policy} on the test split: accuracy {report['accuracy']:.1%}, "
    f"macro-F1 {report['macro_f1']:.3f}"
)
for name, row in report["per_class"].items():
    print(f"{name:>5}: precision {row['precision']:.3f}, recall {row['recall']:.3f}")
print("confusion (rows: true, columns: predicted):", report["confusion"])

figure = confusion_matrix_figure(
    report, title=f"lesson 9: tiny GPT, no pretraining ({best_policy}), sms-spam test split"
)
save_figure(figure, "09_confusion.png")

# %% [markdown]
# ## Classifying new messages
#
# New texts are encoded and cut like the training ones, padded, and turned into class
# probabilities: what `gptlab classify RUN "text"` does.

# %%
new_texts = ["Congratulations! Claim your FREE cash prize now, text WIN", "See you at lunch?"]
encoded = encode_texts(new_texts, tokenizer, data.names, MAX_LENGTH)
new_idx, new_mask = pad_batch(encoded.ids, PAD)
best.eval()
for text, probs in zip(new_texts, best.predict_proba(new_idx, new_mask)):
    print(f"P(spam) = {probs[data.names.index('spam')]:.2f}  {text}")

# %% [markdown]
# ## Check

# %%
assert all(right_matches), "with right padding, the last real token sees what the row alone sees"
assert not any(at_t_minus_1[i] for i, row in enumerate(rows) if len(row) < idx.size(1))
assert all(left_matches), "left padding is exact with the mask and restarted positions"
assert not all(naive_matches), "and not without them"
assert torch.allclose(mean_pooled, mean_alone, atol=1e-5)
assert head_count == config.n_embd * 2  # 2 classes, no bias
assert last_block_count == block_size + ln_f_size + head_count
assert [len(data.splits[split]) for split in ("train", "val", "test")] == [1045, 149, 300]
assert frozen_kept and last_block_moved
assert sum(map(sum, report["confusion"])) == 300
assert report["accuracy"] > 0.75, "far better than the 50% of a guess on balanced classes"
print("lesson 9 checks passed")

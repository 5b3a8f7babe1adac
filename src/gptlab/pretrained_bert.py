"""gptlab's masked-language model <-> Hugging Face `BertForMaskedLM`.

The encoder (`gptlab.models.encoder`) mirrors BERT where the numbers depend on it, so the
mapping is names and one split:

    gptlab                               BertForMaskedLM
    encoder.wte / wpe / wtt              bert.embeddings.word_ / position_ / token_type_embeddings
    encoder.ln_emb                       bert.embeddings.LayerNorm
    encoder.h.N.self_attn.c_attn         bert.encoder.layer.N.attention.self.query | key | value
                                         (one fused (3C, C) projection, split in three)
    encoder.h.N.self_attn.c_proj         ...attention.output.dense
    encoder.h.N.attn_norm.norm           ...attention.output.LayerNorm   (post-LN)
    encoder.h.N.mlp.c_fc / c_proj        ...intermediate.dense / output.dense
    encoder.h.N.mlp_norm.norm            ...output.LayerNorm
    head_dense / head_ln                 cls.predictions.transform.dense / .LayerNorm
    lm_head.weight / .bias               cls.predictions.decoder.weight (tied) / cls.predictions.bias

BERT has biases everywhere, a 4x intermediate layer and absolute positions; gptlab's encoder
can differ (no biases), and such a model does not export. The GELU form is a setting on both
sides: BERT's exact `gelu`, or the tanh approximation (`gelu_new`).

A classifier on the encoder (`EncoderClassifier`) exports to `BertForSequenceClassification`,
which always reads the first token through BERT's pooler (dense + tanh) and then a linear
layer with a bias. So the classifier must have first-token pooling and the pooler (the defaults
of `gptlab finetune classify` on an encoder); its head has no bias, which exports as zeros:

    encoder.*  (the body, as above)      bert.*
    pooler.weight / .bias                bert.pooler.dense.weight / .bias
    score.weight                         classifier.weight   (classifier.bias: zeros)

A mean-pooled classifier has no counterpart (no tanh layer can be made to pass a mean through
unchanged), nor has a pooler-less one; both are refused with the reason.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path

from torch import Tensor

from gptlab.config import EncoderConfig
from gptlab.errors import CheckpointError

BERT_ARCHITECTURE = "BertForMaskedLM"
BERT_CLASSIFIER_ARCHITECTURE = "BertForSequenceClassification"
HF_ACT = {"none": "gelu", "tanh": "gelu_new"}  # our GELU form -> transformers' hidden_act
GELU_OF_ACT = {"gelu": "none", "gelu_new": "tanh", "gelu_pytorch_tanh": "tanh"}

# gptlab name inside a block -> BERT name inside bert.encoder.layer.N
BLOCK_NAMES = {
    "self_attn.c_proj": "attention.output.dense",
    "attn_norm.norm": "attention.output.LayerNorm",
    "mlp.c_fc": "intermediate.dense",
    "mlp.c_proj": "output.dense",
    "mlp_norm.norm": "output.LayerNorm",
}
OTHER_NAMES = {
    "encoder.wte.weight": "bert.embeddings.word_embeddings.weight",
    "encoder.wpe.weight": "bert.embeddings.position_embeddings.weight",
    "encoder.wtt.weight": "bert.embeddings.token_type_embeddings.weight",
    "encoder.ln_emb.weight": "bert.embeddings.LayerNorm.weight",
    "encoder.ln_emb.bias": "bert.embeddings.LayerNorm.bias",
    "head_dense.weight": "cls.predictions.transform.dense.weight",
    "head_dense.bias": "cls.predictions.transform.dense.bias",
    "head_ln.weight": "cls.predictions.transform.LayerNorm.weight",
    "head_ln.bias": "cls.predictions.transform.LayerNorm.bias",
    "lm_head.bias": "cls.predictions.bias",
}
QKV = ("query", "key", "value")


def is_bert_config(values: Mapping) -> bool:
    return values.get("model_type") == "bert"


def config_to_bert(config: EncoderConfig) -> dict:
    """The `config.json` values of a transformers `BertConfig` of this encoder's shape."""
    if not config.bias:
        raise CheckpointError(
            "BERT has biases in every layer: an encoder without them cannot export"
        )
    return {
        "model_type": "bert",
        "architectures": [BERT_ARCHITECTURE],
        "vocab_size": config.vocab_size,
        "hidden_size": config.n_embd,
        "num_hidden_layers": config.n_layer,
        "num_attention_heads": config.n_head,
        "intermediate_size": 4 * config.n_embd,
        "hidden_act": HF_ACT[config.gelu],
        "hidden_dropout_prob": config.dropout,
        "attention_probs_dropout_prob": 0.0,  # gptlab's encoder drops no attention weights
        "max_position_embeddings": config.context_length,
        "type_vocab_size": config.type_vocab_size,
        "layer_norm_eps": config.layer_norm_eps,
        "initializer_range": 0.02,
        "position_embedding_type": "absolute",
        "pad_token_id": None,
        "tie_word_embeddings": True,
        "mask_token_id": config.mask_id,
    }


def config_from_bert(values: Mapping, mask_id: int) -> EncoderConfig:
    """An EncoderConfig from a `BertConfig`'s values; `mask_id` from the tokenizer."""
    act = values.get("hidden_act", "gelu")
    if act not in GELU_OF_ACT:
        raise CheckpointError(f"gptlab's encoder uses GELU; this checkpoint uses {act!r}")
    if values.get("intermediate_size", 4 * values["hidden_size"]) != 4 * values["hidden_size"]:
        raise CheckpointError("gptlab's encoder has a 4x feed-forward layer; this BERT has another")
    if values.get("position_embedding_type", "absolute") != "absolute":
        raise CheckpointError("gptlab's encoder learns absolute positions, as BERT's default")
    return EncoderConfig(
        vocab_size=values["vocab_size"],
        context_length=values["max_position_embeddings"],
        n_layer=values["num_hidden_layers"],
        n_head=values["num_attention_heads"],
        n_embd=values["hidden_size"],
        dropout=values.get("hidden_dropout_prob", 0.1),
        layer_norm_eps=values.get("layer_norm_eps", 1e-12),
        type_vocab_size=values.get("type_vocab_size", 2),
        gelu=GELU_OF_ACT[act],
        mask_id=mask_id,
    )


def state_dict_to_bert(state: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """gptlab's MaskedLM state dict in BertForMaskedLM's names (the tied decoder left out)."""
    hf = {}
    for name, tensor in state.items():
        if name == "lm_head.weight":
            continue
        if name in OTHER_NAMES:
            hf[OTHER_NAMES[name]] = tensor
            continue
        index, rest = name.removeprefix("encoder.h.").split(".", 1)
        layer = f"bert.encoder.layer.{index}"
        module, kind = rest.rsplit(".", 1)  # e.g. "self_attn.c_attn", "weight"
        if module == "self_attn.c_attn":
            for part, piece in zip(QKV, tensor.chunk(3, dim=0), strict=True):
                hf[f"{layer}.attention.self.{part}.{kind}"] = piece.contiguous()
        else:
            hf[f"{layer}.{BLOCK_NAMES[module]}.{kind}"] = tensor
    return hf


def state_dict_from_bert(hf_state: Mapping[str, Tensor], n_layer: int) -> dict[str, Tensor]:
    """A BertForMaskedLM state dict in gptlab's names (query, key, value fused)."""
    hf_state = dict(hf_state)
    state = {}
    for ours, theirs in OTHER_NAMES.items():
        if theirs in hf_state:
            state[ours] = hf_state[theirs]
    for i in range(n_layer):
        layer = f"bert.encoder.layer.{i}"
        for kind in ("weight", "bias"):
            parts = [f"{layer}.attention.self.{part}.{kind}" for part in QKV]
            if all(part in hf_state for part in parts):
                state[f"encoder.h.{i}.self_attn.c_attn.{kind}"] = _cat([hf_state[p] for p in parts])
            for module, theirs in BLOCK_NAMES.items():
                if f"{layer}.{theirs}.{kind}" in hf_state:
                    state[f"encoder.h.{i}.{module}.{kind}"] = hf_state[f"{layer}.{theirs}.{kind}"]
    # Older checkpoints keep the decoder's bias under its own name only.
    if "lm_head.bias" not in state and "cls.predictions.decoder.bias" in hf_state:
        state["lm_head.bias"] = hf_state["cls.predictions.decoder.bias"]
    return state


def _cat(tensors: list[Tensor]) -> Tensor:
    import torch

    return torch.cat(tensors, dim=0)


def classifier_to_bert(model) -> tuple[dict, dict[str, Tensor]]:
    """(config.json values, state dict) of BertForSequenceClassification for an
    EncoderClassifier with first-token pooling and BERT's pooler; any other is a CheckpointError
    that says why."""
    import torch

    from gptlab.training.checkpoint import unique_state_dict

    head = model.head
    if head.pooling != "first":
        raise CheckpointError(
            f"this encoder classifier reads its tokens' {head.pooling} "
            "(--pooling); BertForSequenceClassification reads the first token through BERT's "
            "pooler (dense + tanh), which cannot carry a mean or another token: only "
            "first-token classifiers export"
        )
    if not head.pooler:
        raise CheckpointError(
            "this encoder classifier has no pooler (dense + tanh), which "
            "BertForSequenceClassification always applies: fine-tune with --pooler (the "
            "default for first-token pooling) to export"
        )
    config = config_to_bert(model.config)
    config.update(
        architectures=[BERT_CLASSIFIER_ARCHITECTURE],
        id2label=dict(enumerate(head.labels)),
        label2id={name: i for i, name in enumerate(head.labels)},
        problem_type="single_label_classification",
    )
    state = unique_state_dict(model)
    body = {
        f"encoder.{name.removeprefix('transformer.')}": tensor
        for name, tensor in state.items()
        if name.startswith("transformer.")
    }
    score = state["score.weight"]  # (K, C)
    hf = {
        **state_dict_to_bert(body),
        "bert.pooler.dense.weight": state["pooler.weight"],
        "bert.pooler.dense.bias": state["pooler.bias"],
        "classifier.weight": score,
        "classifier.bias": torch.zeros(score.size(0), dtype=score.dtype),
    }
    return config, hf


def export_bert(model, tokenizer, out: str | Path) -> Path:
    """Write a folder that `BertForMaskedLM.from_pretrained` loads with the same logits (or, for
    an encoder classifier, `BertForSequenceClassification.from_pretrained`); the tokenizer is
    the model's own, saved beside it."""
    from safetensors.torch import save_file

    from gptlab.atomic import atomic_path
    from gptlab.training.checkpoint import unique_state_dict, write_json

    if hasattr(model, "score"):
        values, state = classifier_to_bert(model)
    else:
        values, state = config_to_bert(model.config), state_dict_to_bert(unique_state_dict(model))
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "config.json", values)
    state = {name: t.detach().cpu().contiguous() for name, t in state.items()}
    with atomic_path(out / "model.safetensors") as tmp:
        save_file(state, str(tmp), metadata={"format": "pt"})
    tokenizer.save(out)
    return out


def load_bert_folder(folder: str | Path, weights: Path, hf_state: Mapping[str, Tensor]):
    """(MaskedLM, tokenizer) of a BertForMaskedLM folder. The tokenizer is gptlab's when the
    folder has one (`export_bert` writes it), else BERT's WordPiece (`WordPieceTokenizer`)."""
    from gptlab.models.encoder import MaskedLM
    from gptlab.tokenizers import WordPieceTokenizer, load_tokenizer
    from gptlab.tokenizers.base import CONFIG_FILE, read_json
    from gptlab.training.checkpoint import load_state_into

    folder = Path(folder)
    values = json.loads((folder / "config.json").read_text())
    architectures = values.get("architectures") or [BERT_ARCHITECTURE]
    if BERT_ARCHITECTURE not in architectures:
        raise CheckpointError(
            f"{folder} holds a {architectures[0]}; gptlab imports BertForMaskedLM folders "
            "(fine-tune the imported encoder with `gptlab finetune classify`)"
        )
    tokenizer_config = folder / CONFIG_FILE
    if tokenizer_config.is_file() and "kind" in read_json(tokenizer_config):
        tokenizer = load_tokenizer(folder)
    else:
        tokenizer = WordPieceTokenizer.from_bert_folder(folder)
    if tokenizer.mask_id is None:
        raise CheckpointError(f"the tokenizer in {folder} has no [MASK] token")
    if tokenizer.vocab_size > values["vocab_size"]:
        raise CheckpointError(
            f"the tokenizer in {folder} has {tokenizer.vocab_size:,} tokens, more than the "
            f"model's {values['vocab_size']:,} embeddings"
        )
    config = config_from_bert(values, tokenizer.mask_id)
    model = MaskedLM(config)
    load_state_into(model, state_dict_from_bert(hf_state, config.n_layer), source=str(weights))
    return model, tokenizer

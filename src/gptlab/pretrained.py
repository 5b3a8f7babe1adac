"""Hugging Face GPT-2 <-> gptlab: configs and state dicts.

gptlab's parameter names are GPT-2's without the `transformer.` prefix. The one real difference
is the layout of the projections: GPT-2 stores them as `Conv1D` with weights (in, out), where
`nn.Linear` keeps (out, in), so those four weights are transposed on the way in and out.
"""

from __future__ import annotations

from collections.abc import Mapping

from torch import Tensor

from gptlab.config import GPTConfig
from gptlab.errors import CheckpointError

# The Conv1D weights of a GPT-2 block, which nn.Linear stores transposed.
CONV1D_SUFFIXES = ("attn.c_attn.weight", "attn.c_proj.weight", "mlp.c_fc.weight", "mlp.c_proj.weight")
# Buffers older transformers versions keep in the state dict: a causal mask and a constant.
HF_BUFFER_SUFFIXES = (".attn.bias", ".attn.masked_bias")


def config_from_hf(hf_config) -> GPTConfig:
    """A GPTConfig from a transformers `GPT2Config` (or its dict form)."""
    values = hf_config if isinstance(hf_config, Mapping) else hf_config.to_dict()
    model_type = values.get("model_type", "gpt2")
    if model_type != "gpt2":
        raise CheckpointError(f"expected a GPT-2 checkpoint (model_type 'gpt2'), got model_type {model_type!r}")
    activation = values.get("activation_function", "gelu_new")
    if activation not in ("gelu_new", "gelu_pytorch_tanh"):
        raise CheckpointError(f"gptlab's GPT uses GPT-2's tanh GELU; this checkpoint uses {activation!r}")
    if values.get("n_inner") not in (None, 4 * values["n_embd"]):
        raise CheckpointError(f"gptlab's GPT has a 4x MLP; this checkpoint has n_inner={values['n_inner']}")
    return GPTConfig(
        vocab_size=values["vocab_size"],
        context_length=values["n_positions"],
        n_layer=values["n_layer"],
        n_head=values["n_head"],
        n_embd=values["n_embd"],
        dropout=0.0,
        layer_norm_eps=values.get("layer_norm_epsilon", 1e-5),
    )


def config_to_hf(config: GPTConfig) -> dict:
    """The `config.json` values of a transformers `GPT2Config` with the shape of `config`."""
    if config.positions != "learned" or not config.bias:
        raise CheckpointError("only GPT-2's own architecture (learned positions, biases) exports to GPT-2 format")
    return {
        "model_type": "gpt2",
        "architectures": ["GPT2LMHeadModel"],
        "vocab_size": config.vocab_size,
        "n_positions": config.context_length,
        "n_ctx": config.context_length,
        "n_embd": config.n_embd,
        "n_layer": config.n_layer,
        "n_head": config.n_head,
        "n_inner": None,
        "activation_function": "gelu_new",
        "resid_pdrop": config.dropout,
        "embd_pdrop": config.dropout,
        "attn_pdrop": config.dropout,
        "layer_norm_epsilon": config.layer_norm_eps,
        "initializer_range": 0.02,
        "bos_token_id": 50256,
        "eos_token_id": 50256,
        "tie_word_embeddings": True,
    }


def state_dict_from_hf(hf_state: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """Rename and transpose a GPT2LMHeadModel (or GPT2Model) state dict into gptlab's."""
    state = {}
    for name, tensor in hf_state.items():
        if name.endswith(HF_BUFFER_SUFFIXES):
            continue
        name = name.removeprefix("transformer.")
        state[name] = tensor.t() if name.endswith(CONV1D_SUFFIXES) else tensor
    state.setdefault("lm_head.weight", state.get("wte.weight"))  # tied: GPT2Model has no head
    return state


def state_dict_to_hf(state: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """gptlab's state dict in GPT2LMHeadModel's names and layouts (the tied head left out)."""
    hf_state = {}
    for name, tensor in state.items():
        if name == "lm_head.weight":
            continue
        hf_state[f"transformer.{name}"] = tensor.t().contiguous() if name.endswith(CONV1D_SUFFIXES) else tensor
    return hf_state

"""Getting a tokenizer: by name for a new run, or from the folder a run saved it in."""

from __future__ import annotations

from pathlib import Path

from gptlab.errors import TokenizerError
from gptlab.tokenizers.base import MASK_TOKEN, Tokenizer, read_config
from gptlab.tokenizers.bpe import ByteLevelBPE
from gptlab.tokenizers.char import CharTokenizer
from gptlab.tokenizers.gpt2 import GPT2_NAMES, GPT2Tokenizer
from gptlab.tokenizers.symbols import SymbolTokenizer
from gptlab.tokenizers.trained import TrainedBPE
from gptlab.tokenizers.wordpiece import WordPieceTokenizer

TOKENIZER_KINDS: dict[str, type[Tokenizer]] = {
    tokenizer_class.kind: tokenizer_class
    for tokenizer_class in (
        CharTokenizer,
        GPT2Tokenizer,
        ByteLevelBPE,
        SymbolTokenizer,
        TrainedBPE,
        WordPieceTokenizer,
    )
}


def get_tokenizer(name: str, text: str | None = None) -> Tokenizer:
    """A tokenizer by name: "char" (built from `text`) or "gpt2" (also any GPT-2 model name, e.g. "gpt2-xl")."""
    if name == "char":
        if text is None:
            raise TokenizerError(
                'the "char" tokenizer is built from a text: pass the corpus it will encode'
            )
        return CharTokenizer.from_text(text)
    if name in GPT2_NAMES:
        return GPT2Tokenizer.from_pretrained(name)
    raise TokenizerError(f'unknown tokenizer {name!r}: choose "char" or "gpt2"')


def load_tokenizer(directory: str | Path) -> Tokenizer:
    """The tokenizer saved in `directory`, of whichever kind its `tokenizer_config.json` names."""
    kind = read_config(directory)["kind"]
    if kind not in TOKENIZER_KINDS:
        raise TokenizerError(
            f"{Path(directory)} holds a tokenizer of unknown kind {kind!r}; known kinds: {', '.join(TOKENIZER_KINDS)}"
        )
    return TOKENIZER_KINDS[kind].load(directory)


def with_mask_token(tokenizer: Tokenizer) -> Tokenizer:
    """The same tokenizer with [MASK] added as a special token of its own, after the vocabulary
    (a masked-language model's input); one that has it already is returned as it is."""
    if tokenizer.mask_id is not None:
        return tokenizer
    if isinstance(tokenizer, CharTokenizer):
        return CharTokenizer(tokenizer.chars, [*tokenizer.special_tokens, MASK_TOKEN])
    if isinstance(tokenizer, GPT2Tokenizer):
        extra = [*tokenizer.extra_special_tokens, MASK_TOKEN]
        return GPT2Tokenizer(tokenizer._vocab, tokenizer._merges, extra)
    raise TokenizerError(
        f"a {tokenizer.kind!r} tokenizer cannot take a mask token: use char or gpt2"
    )

"""Tokenizers: text to token ids and back, behind one small interface (`Tokenizer`).

- `CharTokenizer`: one id per character of a corpus (65 for TinyShakespeare), as in nanoGPT.
- `GPT2Tokenizer`: GPT-2's byte-level BPE on the Rust `tokenizers` library; ids exactly GPT-2's.
- `ByteLevelBPE`: the same algorithm from scratch, with training, written to be read.
- `TrainedBPE`: a byte-level BPE trained on your text with `tokenizers`, with <pad> <bos> <eos>
  <unk>; `train_parallel_tokenizers` makes a joint or a separate pair of them for translation.
- `WordPieceTokenizer`: BERT's WordPiece, read from a BERT folder (an imported encoder's).

`get_tokenizer("gpt2")` makes one by name; `tokenizer.save(folder)` and `load_tokenizer(folder)`
store one with a model.
"""

from gptlab.tokenizers.base import MASK_TOKEN, Tokenizer
from gptlab.tokenizers.bpe import ByteLevelBPE, bytes_to_unicode, pretokenize
from gptlab.tokenizers.bpe_files import END_OF_TEXT
from gptlab.tokenizers.char import CharTokenizer
from gptlab.tokenizers.gpt2 import GPT2_NAMES, GPT2Tokenizer
from gptlab.tokenizers.loading import get_tokenizer, load_tokenizer, with_mask_token
from gptlab.tokenizers.parallel import (
    load_parallel_tokenizers,
    save_parallel_tokenizers,
    train_parallel_tokenizers,
)
from gptlab.tokenizers.trained import TrainedBPE
from gptlab.tokenizers.wordpiece import WordPieceTokenizer

__all__ = [
    "END_OF_TEXT",
    "GPT2_NAMES",
    "MASK_TOKEN",
    "ByteLevelBPE",
    "CharTokenizer",
    "GPT2Tokenizer",
    "Tokenizer",
    "TrainedBPE",
    "WordPieceTokenizer",
    "bytes_to_unicode",
    "get_tokenizer",
    "load_parallel_tokenizers",
    "load_tokenizer",
    "with_mask_token",
    "pretokenize",
    "save_parallel_tokenizers",
    "train_parallel_tokenizers",
]

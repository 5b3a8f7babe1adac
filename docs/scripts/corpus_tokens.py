"""Print the table of docs/local-base.md: each corpus's size in GPT-2 tokens, and the mix's split.

    GPTLAB_DATA=../shared/data uv run python docs/scripts/corpus_tokens.py

The corpora are built (into GPTLAB_HOME) and tokenized as `gptlab train` would, so the counts are
the ones training sees.
"""

from __future__ import annotations

from gptlab.data.corpora import CORPORA
from gptlab.data.text import TokenData, resolve_text, tokenize_corpus
from gptlab.tokenizers import get_tokenizer


def main() -> None:
    tokenizer = get_tokenizer("gpt2")
    print("| `--data` | characters | GPT-2 tokens |\n| --- | ---: | ---: |")
    for name in ["tinyshakespeare", *CORPORA]:
        path = resolve_text(name)
        characters = len(path.read_text(encoding="utf-8"))
        print(f"| `{name}` | {characters:,} | {len(tokenize_corpus(path, tokenizer)):,} |")
    mix = TokenData.from_file(resolve_text("english-mix"), tokenizer)
    print(f"\nenglish-mix: {len(mix.train):,} train / {len(mix.val):,} validation tokens")


if __name__ == "__main__":
    main()

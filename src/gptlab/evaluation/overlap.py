"""Scoring generated text against references: BLEU, chrF and ROUGE, through the libraries the
field reports them with (sacrebleu, rouge-score), each on a 0-100 scale.

- **sacreBLEU** (`bleu`; Papineni et al. 2002, Post 2018): corpus BLEU of the *detokenized*,
  *cased* text, as a person would write it; sacrebleu cuts both sides with its own `13a`
  tokenizer (the one of WMT's mteval-v13a script), so the number does not depend on how the
  model tokenized. This is the figure to compare with papers, printed with its signature
  (`nrefs:1|case:mixed|eff:no|tok:13a|smooth:exp|version:...`) that says exactly how it was made.
- **Lower-cased tokenized BLEU** (`bleu_lc_tok`): the figure older tutorials print (the PyTorch
  seq2seq tutorials on Multi30K call torchtext's `bleu_score` on spaCy tokens of lower-cased text).
  Here it is sacrebleu with `lowercase=True, tokenize="13a", smooth_method="none"`: both sides
  lower-cased, cut into words and punctuation by `13a`, then plain corpus BLEU: the geometric
  mean of the 1- to 4-gram precisions times the brevity penalty, and 0 when some order has no
  match at all (no smoothing, as torchtext). It differs from the tutorials' number only where
  13a and spaCy cut a sentence differently (spaCy splits "don't" into "do" "n't"; 13a keeps it),
  which in Multi30K's captions is rare. Lower-casing forgives "A man" for "a man", so it reads
  a point or two above sacreBLEU; see docs/metrics.md.
- **chrF** (`chrf`; Popović 2015): the F-score (recall weighted twice, beta = 2) of character
  1- to 6-grams; kinder than BLEU to a right word with a wrong ending, which matters for German.
- **ROUGE-1 / 2 / L** (`rouge1`, `rouge2`, `rougeL`; Lin 2004): the mean over sentences of the F1
  of unigram overlap, bigram overlap, and the longest common subsequence of words. In English
  (`language="en"`) it is rouge-score's own: lower-cased, letters and digits only, Porter-stemmed.
  That tokenizer drops every non-ASCII letter ("Männer" becomes "m nner"), so for any other
  language the words are Unicode `\\w+` runs, lower-cased, unstemmed.

All take `hypotheses` (one generated text each) and `references` (the one reference of each).
sacrebleu and rouge-score are optional: `pip install 'gptlab[metrics]'`.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from gptlab.errors import ConfigError, DataError

ROUGE_TYPES = ("rouge1", "rouge2", "rougeL")
# The options of the tutorials' lower-cased tokenized BLEU, as sacrebleu options (see above).
LC_TOK_BLEU_OPTIONS = {"lowercase": True, "tokenize": "13a", "smooth_method": "none"}


def metric_libraries():
    """rouge_score's `rouge_scorer` and `sacrebleu`, or one error that says how to install them."""
    return _rouge_scorer(), _sacrebleu()


def _sacrebleu():
    try:
        import sacrebleu
    except ImportError:
        raise ConfigError(_INSTALL.format(library="sacrebleu")) from None
    return sacrebleu


def _rouge_scorer():
    try:
        from rouge_score import rouge_scorer
    except ImportError:
        raise ConfigError(_INSTALL.format(library="rouge-score")) from None
    return rouge_scorer


_INSTALL = (
    "scoring generated text needs {library} (with rouge-score and sacrebleu): install them with "
    "`pip install 'gptlab[metrics]'` (or `uv sync --extra metrics`)"
)


def _check(hypotheses: Sequence[str], references: Sequence[str]) -> None:
    if len(hypotheses) != len(references):
        raise DataError(f"{len(hypotheses):,} generations for {len(references):,} references")
    if not references:
        raise DataError("no generations to score")


def bleu(hypotheses: Sequence[str], references: Sequence[str], **options) -> dict:
    """Corpus BLEU: {"bleu", "bleu_signature"}; sacreBLEU's defaults unless `options` (sacrebleu's
    `BLEU` arguments) say otherwise."""
    _check(hypotheses, references)
    metric = _sacrebleu().metrics.BLEU(**options)
    score = metric.corpus_score(list(hypotheses), [list(references)])
    return {"bleu": score.score, "bleu_signature": str(metric.get_signature())}


def lowercase_tokenized_bleu(hypotheses: Sequence[str], references: Sequence[str]) -> dict:
    """The tutorials' BLEU: lower-cased, 13a-tokenized, unsmoothed (see the module docstring):
    {"bleu_lc_tok", "bleu_lc_tok_signature"}."""
    result = bleu(hypotheses, references, **LC_TOK_BLEU_OPTIONS)
    return {"bleu_lc_tok": result["bleu"], "bleu_lc_tok_signature": result["bleu_signature"]}


def chrf(hypotheses: Sequence[str], references: Sequence[str]) -> dict:
    """Corpus chrF (sacrebleu's chrF2): {"chrf", "chrf_signature"}."""
    _check(hypotheses, references)
    metric = _sacrebleu().metrics.CHRF()
    score = metric.corpus_score(list(hypotheses), [list(references)])
    return {"chrf": score.score, "chrf_signature": str(metric.get_signature())}


class _UnicodeWords:
    """A rouge-score tokenizer for any language: lower-cased runs of Unicode letters and digits."""

    def tokenize(self, text: str) -> list[str]:
        return re.findall(r"\w+", text.lower())


def rouge(
    hypotheses: Sequence[str],
    references: Sequence[str],
    types: Sequence[str] = ROUGE_TYPES,
    language: str = "en",
) -> dict:
    """The mean F1 of each ROUGE type over the sentences, 0-100: {"rouge1", "rouge2", "rougeL"}."""
    _check(hypotheses, references)
    rouge_scorer = _rouge_scorer()
    if language == "en":
        scorer = rouge_scorer.RougeScorer(list(types), use_stemmer=True)
    else:
        scorer = rouge_scorer.RougeScorer(list(types), tokenizer=_UnicodeWords())
    totals = dict.fromkeys(types, 0.0)
    for hypothesis, reference in zip(hypotheses, references):
        scores = scorer.score(reference, hypothesis)  # rouge-score takes the reference first
        for name in types:
            totals[name] += scores[name].fmeasure
    return {name: 100 * total / len(references) for name, total in totals.items()}


def text_metrics(
    hypotheses: Sequence[str], references: Sequence[str], language: str = "en"
) -> dict:
    """sacreBLEU, the tutorials' lower-cased tokenized BLEU, chrF and ROUGE-1/2/L of
    `hypotheses` against `references`, with the sacrebleu signatures; `language` is the
    references' (for ROUGE's tokenizer)."""
    metric_libraries()  # both, or the error, before any work
    return {
        **bleu(hypotheses, references),
        **lowercase_tokenized_bleu(hypotheses, references),
        **chrf(hypotheses, references),
        **rouge(hypotheses, references, language=language),
        "sentences": len(references),
    }


def format_text_metrics(result: dict) -> str:
    """The scores of `text_metrics` as a person reads them: one figure a line, signatures after."""
    return "\n".join(
        [
            f"sacreBLEU            {result['bleu']:6.2f}   (detokenized, cased)",
            f"BLEU (lc, tokenized) {result['bleu_lc_tok']:6.2f}   (lower-cased, 13a tokens: "
            "the tutorials' figure)",
            f"chrF                 {result['chrf']:6.2f}",
            f"ROUGE-1 / 2 / L      {result['rouge1']:6.2f} / {result['rouge2']:.2f} / "
            f"{result['rougeL']:.2f}   (mean F1)",
            f"  sacreBLEU signature: {result['bleu_signature']}",
            f"  lc BLEU signature:   {result['bleu_lc_tok_signature']}",
            f"  chrF signature:      {result['chrf_signature']}",
        ]
    )

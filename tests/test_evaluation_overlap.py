"""gptlab.evaluation's text metrics (sacreBLEU, lower-cased tokenized BLEU, chrF, ROUGE) and
`gptlab eval --generations`. One file, so one test process pays for importing rouge-score."""

from __future__ import annotations

import json
import math
import sys

import pytest

pytest.importorskip("sacrebleu")
pytest.importorskip("rouge_score")

import sacrebleu  # noqa: E402

from gptlab import cli  # noqa: E402
from gptlab.errors import ConfigError, DataError  # noqa: E402
from gptlab.evaluation import (  # noqa: E402
    bleu,
    chrf,
    format_text_metrics,
    lowercase_tokenized_bleu,
    rouge,
    text_metrics,
)

HYPOTHESES = ["The cat sat on the mat.", "A dog runs."]
REFERENCES = ["The cat is on the mat.", "A dog is running."]


def test_identical_text_scores_100_on_every_metric():
    result = text_metrics(REFERENCES, REFERENCES)
    for name in ("bleu", "bleu_lc_tok", "chrf", "rouge1", "rouge2", "rougeL"):
        assert math.isclose(result[name], 100), name
    assert result["sentences"] == 2


def test_bleu_is_the_geometric_mean_of_ngram_precisions_times_the_brevity_penalty():
    # 13a tokens: "The cat sat on the mat ." (7) and "A dog runs ." (4) against 7 + 5 tokens.
    # Matches: 1-grams 6/7 + 3/4, 2-grams 4/6 + 1/3, 3-grams 2/5 + 0/2, 4-grams 1/4 + 0/1.
    precisions = [9 / 11, 5 / 9, 2 / 7, 1 / 5]
    brevity = math.exp(1 - 12 / 11)
    by_hand = 100 * brevity * math.exp(sum(map(math.log, precisions)) / 4)
    assert math.isclose(bleu(HYPOTHESES, REFERENCES)["bleu"], by_hand, rel_tol=1e-9)


def test_sacrebleu_figure_and_signature_are_sacrebleus_own():
    result = bleu(HYPOTHESES, REFERENCES)
    expected = sacrebleu.corpus_bleu(HYPOTHESES, [REFERENCES])
    assert result["bleu"] == expected.score
    assert result["bleu_signature"].startswith("nrefs:1|case:mixed|eff:no|tok:13a|smooth:exp")
    chrf_result = chrf(HYPOTHESES, REFERENCES)
    assert chrf_result["chrf"] == sacrebleu.corpus_chrf(HYPOTHESES, [REFERENCES]).score
    assert "nc:6|nw:0" in chrf_result["chrf_signature"]


def test_lowercase_tokenized_bleu_forgives_case_and_sacrebleu_does_not():
    shouted = [text.upper() for text in REFERENCES]
    assert math.isclose(lowercase_tokenized_bleu(shouted, REFERENCES)["bleu_lc_tok"], 100)
    assert bleu(shouted, REFERENCES)["bleu"] < 10


def test_lowercase_tokenized_bleu_is_plain_corpus_bleu_over_lowercased_13a_tokens():
    # The tutorials' torchtext `bleu_score`: corpus BLEU of token lists, no smoothing. NLTK's
    # corpus_bleu over the same tokens is the same formula, written by others.
    from nltk.translate.bleu_score import corpus_bleu
    from sacrebleu.tokenizers.tokenizer_13a import Tokenizer13a

    tokenize = Tokenizer13a()
    hypotheses = HYPOTHESES + ["Two men, in blue shirts, play football on the beach."]
    references = REFERENCES + ["Two Men in blue shirts play soccer on a beach."]
    words = [tokenize(text.lower()).split() for text in hypotheses]
    reference_words = [[tokenize(text.lower()).split()] for text in references]
    expected = 100 * corpus_bleu(reference_words, words)
    assert math.isclose(lowercase_tokenized_bleu(hypotheses, references)["bleu_lc_tok"], expected)
    assert "case:lc" in lowercase_tokenized_bleu(hypotheses, references)["bleu_lc_tok_signature"]


def test_lowercase_tokenized_bleu_is_zero_when_an_order_has_no_match():
    # No 4-gram in common: unsmoothed BLEU is 0, as torchtext's; sacreBLEU smooths it.
    hypotheses, references = ["a b c d e"], ["a b c x d e"]
    assert lowercase_tokenized_bleu(hypotheses, references)["bleu_lc_tok"] == 0
    assert bleu(hypotheses, references)["bleu"] > 0


def test_rouge_is_the_f1_of_unigrams_bigrams_and_longest_common_subsequence():
    # "the cat sat on the mat" against "the cat is on the mat": 5 of 6 words shared both ways;
    # bigrams "the cat", "on the", "the mat": 3 of 5; the LCS "the cat on the mat": 5 of 6.
    result = rouge(["the cat sat on the mat"], ["the cat is on the mat"])
    assert math.isclose(result["rouge1"], 100 * 5 / 6)
    assert math.isclose(result["rouge2"], 100 * 3 / 5)
    assert math.isclose(result["rougeL"], 100 * 5 / 6)


def test_rouge_averages_sentences_and_weighs_precision_and_recall_equally():
    # One word of two (P 1/1, R 1/2: F1 2/3) and an exact match (F1 1): the mean is 5/6.
    result = rouge(["dog", "a cat"], ["dog runs", "a cat"], types=("rouge1",))
    assert math.isclose(result["rouge1"], 100 * (2 / 3 + 1) / 2)


def test_rouge_outside_english_keeps_accented_letters_as_words():
    hypotheses, references = ["Männer laufen"], ["Männer gehen"]
    assert math.isclose(rouge(hypotheses, references, language="de")["rouge1"], 50)
    # rouge-score's English tokenizer cuts "Männer" into "m" "nner": 2 of 3 "words" then match.
    assert math.isclose(rouge(hypotheses, references)["rouge1"], 100 * 2 / 3)


def test_unequal_lengths_and_no_text_are_data_errors():
    with pytest.raises(DataError, match="2 generations for 1 references"):
        text_metrics(HYPOTHESES, REFERENCES[:1])
    with pytest.raises(DataError, match="no generations"):
        bleu([], [])


def test_missing_library_is_one_error_naming_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "sacrebleu", None)
    with pytest.raises(ConfigError, match=r"pip install 'gptlab\[metrics\]'"):
        text_metrics(HYPOTHESES, REFERENCES)


def test_bleu_and_chrf_need_only_sacrebleu(monkeypatch):
    monkeypatch.setitem(sys.modules, "rouge_score", None)
    assert math.isclose(bleu(REFERENCES, REFERENCES)["bleu"], 100)
    assert math.isclose(chrf(REFERENCES, REFERENCES)["chrf"], 100)
    with pytest.raises(ConfigError, match="needs rouge-score"):
        rouge(REFERENCES, REFERENCES)


def test_the_printed_report_carries_the_signatures():
    report = format_text_metrics(text_metrics(HYPOTHESES, REFERENCES))
    assert "sacreBLEU signature: nrefs:1|case:mixed" in report
    assert "case:lc" in report and "chrF2" not in report


# -- gptlab eval --generations --------------------------------------------------------------


def eval_cli(capsys, *args) -> tuple[int, str, str]:
    status = cli.main(["eval", *map(str, args)])
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def test_eval_scores_a_generations_file_against_a_references_file(tmp_path, capsys):
    (tmp_path / "hyp.txt").write_text("\n".join(HYPOTHESES) + "\n")
    (tmp_path / "ref.txt").write_text("\n".join(REFERENCES) + "\n")
    status, out, _ = eval_cli(
        capsys,
        "--generations",
        tmp_path / "hyp.txt",
        "--references",
        tmp_path / "ref.txt",
        "--json",
    )
    assert status == 0
    assert json.loads(out)["bleu"] == pytest.approx(text_metrics(HYPOTHESES, REFERENCES)["bleu"])
    status, out, _ = eval_cli(
        capsys, "--generations", tmp_path / "hyp.txt", "--references", tmp_path / "ref.txt"
    )
    assert "sacreBLEU" in out and "ROUGE-1 / 2 / L" in out and "signature" in out


def test_eval_reads_references_from_a_saved_generations_jsonl(tmp_path, capsys):
    rows = [{"generation": h, "reference": r} for h, r in zip(HYPOTHESES, REFERENCES)]
    (tmp_path / "answers.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
    status, out, _ = eval_cli(capsys, "--generations", tmp_path / "answers.jsonl", "--json")
    assert status == 0 and json.loads(out)["rougeL"] == pytest.approx(
        rouge(HYPOTHESES, REFERENCES)["rougeL"]
    )


@pytest.mark.parametrize(
    ("references", "extra", "message"),
    [
        ("A dog is running.\n", [], "has 2 generations but"),
        (None, [], "--generations needs references"),
        ("A\nB\n", ["--generate"], "pick one"),
    ],
)
def test_eval_generations_refusals_are_one_line(tmp_path, capsys, references, extra, message):
    (tmp_path / "hyp.txt").write_text("\n".join(HYPOTHESES) + "\n")
    args = ["--generations", tmp_path / "hyp.txt", *extra]
    if references is not None:
        (tmp_path / "ref.txt").write_text(references)
        args += ["--references", tmp_path / "ref.txt"]
    status, _, err = eval_cli(capsys, *args)
    assert status == 2 and message in err
    assert len(err.strip().splitlines()) == 1, err


def test_eval_without_a_model_or_generations_is_one_line(capsys):
    status, _, err = eval_cli(capsys)
    assert status == 2 and "name a MODEL" in err


def test_eval_generations_of_a_seq2seq_run_are_scored_against_its_split(tmp_path, capsys):
    from gptlab.data.toy_seq2seq import ToyTask

    data = {"task": "reverse", "max_len": 8, "digits": 3, "test_size": 5, "seed": 0}
    run = tmp_path / "reverse"
    run.mkdir()
    (run / "config.json").write_text(json.dumps({"task": "seq2seq", "model": {}, "data": data}))
    targets = [target for _, target in ToyTask("reverse", 8, 3).pairs("test", 5, 0)]
    (tmp_path / "hyp.txt").write_text("\n".join(targets) + "\n")
    status, out, _ = eval_cli(capsys, run, "--generations", tmp_path / "hyp.txt", "--json")
    result = json.loads(out)
    assert status == 0 and math.isclose(result["chrf"], 100) and result["sentences"] == 5
    assert result["references"] == "reverse (test split)"

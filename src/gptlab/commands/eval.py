"""`gptlab eval`: loss and perplexity of a language model on its validation split or a file;
masked-token loss, perplexity and accuracy of a masked-language model (an encoder) likewise;
accuracy, F1 and the confusion matrix of a classifier on its test split or a labelled file;
the response-only loss of an instruction run, and with --generate the BLEU, chrF and ROUGE of its
greedy responses; with --generations, any model's generated text scored against references
(`eval_generations`)."""

from __future__ import annotations

import argparse
import json

EXAMPLES = """\
examples:
  gptlab eval runs/shakespeare-cpu                 # the run's own validation split
  gptlab eval runs/shakespeare-cpu --data other.txt
  gptlab eval runs/shakespeare-cpu --json          # one JSON object on stdout
  gptlab eval runs/spam                            # a classifier: its test split
  gptlab eval runs/spam --split val
  gptlab eval runs/spam --data more_messages.csv --text-column body --label-column label
  gptlab eval runs/instruct                        # an instruction run: response-only loss, test split
  gptlab eval runs/instruct --generate --save-generations answers.jsonl   # and BLEU, chrF, ROUGE
  gptlab eval --generations hyp.txt --references ref.txt   # any model's text: BLEU, chrF, ROUGE
  gptlab eval --generations answers.jsonl          # a file with "generation" and "reference" fields
  gptlab eval runs/instruct --generations answers.txt      # against the run's test-split outputs
  gptlab eval runs/reverse --split test --beam 5   # a seq2seq run: loss, perplexity, exact match
  gptlab eval runs/mlm                             # an encoder: masked loss, perplexity, accuracy
  gptlab eval runs/mlm --mask-seed 1 --json        # the same text, other tokens masked
"""


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "eval",
        help="loss and perplexity of a model on text; accuracy and F1 of a classifier",
        description="Measure the next-token loss and perplexity of a language model over every "
        "token of its validation split, or of a text file you give. For a classifier: accuracy, "
        "macro-F1, per-class precision and recall, and the confusion matrix on its test split, "
        "another split, or a labelled file.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "model",
        metavar="MODEL",
        nargs="?",
        help="a run directory, a Hugging Face GPT-2 folder, or a model name (gpt2, ...); "
        "optional with --generations",
    )
    parser.add_argument(
        "--data",
        help="a text file (or dataset name) to evaluate on instead of the validation split; "
        "for a classifier, a labelled .csv/.tsv/.jsonl file (or sms-spam), every row of it",
    )
    parser.add_argument(
        "--split",
        choices=["train", "val", "test"],
        help="a classifier's, instruction or seq2seq run's split to evaluate (default test); "
        "a masked-language model's (train or val, default val)",
    )
    parser.add_argument(
        "--text-column", help="a classifier's --data text column (default: the run's)"
    )
    parser.add_argument(
        "--label-column", help="a classifier's --data label column (default: the run's)"
    )
    parser.add_argument(
        "--checkpoint",
        choices=["best", "last"],
        default="best",
        help="which weights (default best)",
    )
    parser.add_argument(
        "--batch-size", type=int, default=8, help="windows per forward pass (default 8)"
    )
    parser.add_argument(
        "--generate",
        action="store_true",
        help="an instruction run only: also answer each instruction greedily and score the "
        "responses against the references (ROUGE-L and BLEU, 0-100)",
    )
    parser.add_argument(
        "--max-new-tokens",
        type=int,
        default=128,
        help="with --generate: the longest response, in tokens (default 128)",
    )
    parser.add_argument(
        "--save-generations",
        metavar="FILE.jsonl",
        help="with --generate: write each instruction, input, reference and response to FILE",
    )
    parser.add_argument(
        "--generations",
        metavar="FILE",
        help="score text that was already generated, by any model: a text file (one generation "
        'a line) or a .jsonl with "generation" (and "reference") fields; prints sacreBLEU, '
        "lower-cased tokenized BLEU, chrF and ROUGE-1/2/L",
    )
    parser.add_argument(
        "--references",
        metavar="FILE",
        help="with --generations: the references, one a line (default: the .jsonl's "
        '"reference" fields, or the --split of an instruction or seq2seq MODEL)',
    )
    parser.add_argument(
        "--language",
        help="with --generations: the references' language, for ROUGE's words (default: a "
        "seq2seq run's target language, else en; en is stemmed English, any other Unicode "
        "words, unstemmed)",
    )
    parser.add_argument(
        "--beam",
        type=int,
        default=1,
        help="a seq2seq run: decode with beam search of this width (default 1: greedy)",
    )
    parser.add_argument(
        "--mask-seed",
        type=int,
        default=0,
        help="a masked-language model: the seed of the tokens masked (default 0; the same seed "
        "masks the same tokens, so the figures repeat)",
    )
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or mps (default auto)")
    parser.add_argument("--json", action="store_true", help="print the result as one JSON object")
    parser.set_defaults(run=run, command="eval")


def run(args: argparse.Namespace) -> int:
    from gptlab.device import resolve_device
    from gptlab.errors import ConfigError
    from gptlab.evaluation import perplexity
    from gptlab.pretrained import load_model
    from gptlab.runs import run_task

    asked_split, args.split = args.split, args.split or "test"
    if args.generations:
        from gptlab.commands.eval_generations import score_generations

        if args.generate:
            raise ConfigError("--generate makes responses and --generations reads them: pick one")
        return score_generations(args)
    if args.references:
        raise ConfigError("--references goes with --generations FILE")
    if args.model is None:
        raise ConfigError("name a MODEL to evaluate, or score text with --generations FILE")
    if args.batch_size < 1:
        raise ConfigError(f"--batch-size must be positive, got {args.batch_size}")
    if args.save_generations and not args.generate:
        raise ConfigError("--save-generations needs --generate")
    if args.max_new_tokens < 1:
        raise ConfigError(f"--max-new-tokens must be at least 1, got {args.max_new_tokens}")
    device = resolve_device(args.device)
    from gptlab.tasks.seq2seq import is_seq2seq_run

    if is_seq2seq_run(args.model):
        return _seq2seq(args, device)
    if args.beam != 1:
        raise ConfigError("--beam is for seq2seq runs (encoder-decoders)")
    model, tokenizer, info = load_model(args.model, device, args.checkpoint, task="any")
    if info["task"] == "mlm":
        if args.generate:
            raise ConfigError(
                "--generate answers instructions; a masked-language model fills masks"
            )
        return _masked_lm(args, model, tokenizer, info, device, asked_split or "val")
    if args.generate and run_task(info.get("config", {})) != "instruct":
        raise ConfigError(
            f"{args.model} is not an instruction run: --generate answers the instructions of one "
            f"(make it with `gptlab finetune instruct {args.model} --out RUN`)"
        )
    if info["task"] == "classify":
        return _classifier(args, model, tokenizer, info, device)
    if run_task(info.get("config", {})) == "instruct":
        return _instruction(args, model, tokenizer, info, device)
    source, tokens = _text_tokens(args, tokenizer, info, "val")
    result = perplexity(
        model, tokens, model.config.context_length, args.batch_size, device, progress=not args.json
    )
    result["data"] = source
    if args.json:
        print(json.dumps(result))
    else:
        print(
            f"{source}: loss {result['loss']:.4f}, perplexity {result['perplexity']:.3f} over {result['tokens']:,} tokens"
        )
    return 0


def _text_tokens(args, tokenizer, info: dict, split: str):
    """(what it is, token array): --data's tokens, or a split ("train" or "val") of the text the
    run was trained on, cut where training cut it."""
    from gptlab.data.text import TokenData, resolve_text, tokenize_corpus
    from gptlab.errors import ConfigError

    if args.data:
        return str(resolve_text(args.data)), tokenize_corpus(resolve_text(args.data), tokenizer)
    if "data" not in info.get("config", {}).get("data", {}):
        raise ConfigError(
            f"{args.model} has no training data to take a validation split from: pass --data FILE"
        )
    data = info["config"]["data"]
    tokens = TokenData.from_file(
        resolve_text(data["data"]), tokenizer, data.get("val_fraction", 0.1)
    )
    name = "validation" if split == "val" else split
    return f"{data['data']} ({name} split)", tokens.val if split == "val" else tokens.train


def _masked_lm(args, model, tokenizer, info, device, split: str) -> int:
    """Masked-token loss, perplexity and accuracy of an encoder over every token of a split of
    its corpus (or of --data), masked as in training (15%; 80/10/10) with --mask-seed's draws."""
    from gptlab.errors import ConfigError
    from gptlab.tasks.masked_lm import masked_report

    if split == "test":
        raise ConfigError(
            "a masked-language model's corpus is split in train and val only: use --split val"
        )
    source, tokens = _text_tokens(args, tokenizer, info, split)
    result = masked_report(
        model, tokens, tokenizer, args.batch_size, device, args.mask_seed, progress=not args.json
    )
    result.update(data=source, mask_seed=args.mask_seed)
    if args.json:
        print(json.dumps(result))
        return 0
    print(
        f"{source}: masked loss {result['loss']:.4f}, perplexity {result['perplexity']:.3f}, "
        f"accuracy {result['accuracy']:.2%} over {result['masked']:,} masked of "
        f"{result['tokens']:,} tokens (mask seed {args.mask_seed})"
    )
    return 0


def _seq2seq(args, device) -> int:
    """Loss, perplexity and exact match of an encoder-decoder on a split of its data, greedy or
    with --beam; and BLEU, chrF and ROUGE where `text_scores` has them."""
    from gptlab.errors import ConfigError
    from gptlab.tasks.seq2seq import eval_pairs, evaluate_pairs, load_seq2seq_run

    if args.data or args.generate:
        raise ConfigError("a seq2seq run is evaluated on a split of its data: use --split")
    if args.beam < 1:
        raise ConfigError(f"--beam must be at least 1, got {args.beam}")
    model, src_tokenizer, tgt_tokenizer, config = load_seq2seq_run(
        args.model, device, args.checkpoint
    )
    pairs = eval_pairs(config, args.split)
    result = evaluate_pairs(
        model,
        src_tokenizer,
        tgt_tokenizer,
        pairs,
        device=device,
        batch_size=args.batch_size,
        num_beams=args.beam,
        language=config["data"].get("tgt"),
    )
    result.pop("hypotheses")
    result["data"] = f"{config['data']['task']} ({args.split} split)"
    if args.json:
        print(json.dumps(result))
        return 0
    decoding = f"beam {args.beam}" if args.beam > 1 else "greedy"
    print(
        f"{result['data']}, {result['examples']:,} pairs: loss {result['loss']:.4f}, perplexity "
        f"{result['perplexity']:.3f}, exact match {result['exact_match']:.2%} ({decoding})"
    )
    if "bleu" in result:
        from gptlab.evaluation import format_text_metrics

        print(format_text_metrics(result))
    return 0


def _classifier(args, model, tokenizer, info, device) -> int:
    """Accuracy, macro-F1, per-class precision / recall and the confusion matrix."""
    report = classifier_report(
        model,
        tokenizer,
        info,
        device,
        args.split,
        args.data,
        args.text_column,
        args.label_column,
        args.batch_size,
    )
    if args.json:
        print(json.dumps(report))
        return 0
    print(format_report(report))
    return 0


def _instruction(args, model, tokenizer, info, device) -> int:
    """An instruction run's loss on the response tokens (and their end-of-text), and its
    perplexity, on a split of its data or on every entry of --data; with --generate, the
    ROUGE-L and BLEU of its greedy responses."""
    from gptlab.data.instructions import load_instructions, split_instructions
    from gptlab.evaluation import metric_libraries
    from gptlab.tasks.instruction import InstructionSpec

    if args.generate:
        metric_libraries()  # missing ones are an error now, not after generating every response
    spec = InstructionSpec.from_dict(info["config"].get("data", {}))
    result = instruction_report(
        model, tokenizer, spec, device, args.split, args.data, args.batch_size
    )
    if args.generate:
        entries = load_instructions(args.data or spec.data, spec.format)
        entries = entries if args.data else split_instructions(entries)[args.split]
        result.update(_generation_scores(args, model, tokenizer, info, device, entries))
    if args.json:
        print(json.dumps(result))
        return 0
    print(
        f"{result['data']}: {result['targets']} loss {result['loss']:.4f}, "
        f"perplexity {result['perplexity']:.3f} over {result['tokens']:,} tokens of "
        f"{result['examples']:,} examples"
    )
    if args.generate:
        from gptlab.evaluation import format_text_metrics

        print(
            f"greedy responses to {result['generated']:,} instructions (at most "
            f"{args.max_new_tokens} tokens): ROUGE-L {result['rouge_l']:.2f}, "
            f"BLEU {result['bleu']:.2f} (0-100)"
        )
        print(format_text_metrics(result))
    return 0


def instruction_report(
    model,
    tokenizer,
    spec,
    device,
    split: str = "test",
    data: str | None = None,
    batch_size: int = 8,
) -> dict:
    """The loss (`response_loss`) of a language model on a split of the instructions `spec`
    (an InstructionSpec) names, or on every entry of the file `data`; its "data" says which."""
    from gptlab.data.instructions import InstructionBatches, encode_instructions, load_instructions
    from gptlab.errors import ConfigError
    from gptlab.tasks.instruction import prepare_data, response_loss

    context = model.config.context_length
    if data:
        entries = load_instructions(data, spec.format)
        examples = encode_instructions(entries, tokenizer, context, spec.train_on_prompt)
        source = f"{data} (every entry)"
    else:
        examples = prepare_data(spec, tokenizer, context).splits[split]
        source = f"{spec.data} ({split} split)"
    if not len(examples):
        raise ConfigError(f"{source} has no examples to evaluate")
    batches = InstructionBatches(examples, batch_size, tokenizer.eos_id)
    result = response_loss(model, batches, device)
    learned = "prompt and response" if spec.train_on_prompt else "response"
    result.update(data=source, examples=len(examples), targets=learned)
    return result


def _generation_scores(args, model, tokenizer, info, device, entries) -> dict:
    """BLEU, chrF and ROUGE (`text_metrics`) of the run's greedy responses to `entries` against
    their outputs, and `rouge_l` (= rougeL, the figure this report printed first); the responses
    go to --save-generations, a JSON object a line."""
    from gptlab.atomic import atomic_write
    from gptlab.evaluation import text_metrics
    from gptlab.generation import GenerationConfig
    from gptlab.tasks.instruction import generate_responses

    # "slide", as sample's default: an instruction too long for the context is still answered.
    config = GenerationConfig(args.max_new_tokens, strategy="greedy", overflow="slide")
    responses = generate_responses(
        model, tokenizer, info["config"], entries, config, args.batch_size, progress=not args.json
    )
    references = [entry.output for entry in entries]
    if args.save_generations:
        with atomic_write(args.save_generations, "w") as file:
            for entry, response in zip(entries, responses, strict=True):
                row = {
                    "instruction": entry.instruction,
                    "input": entry.input,
                    "reference": entry.output,
                    "generation": response,
                }
                file.write(json.dumps(row) + "\n")
    scores = text_metrics(responses, references)
    return {
        **scores,
        "rouge_l": scores["rougeL"],
        "generated": len(responses),
        "max_new_tokens": args.max_new_tokens,
    }


def classifier_report(
    model,
    tokenizer,
    info: dict,
    device,
    split: str = "test",
    data: str | None = None,
    text_column: str | None = None,
    label_column: str | None = None,
    batch_size: int = 8,
) -> dict:
    """A classifier's report (`evaluate_split`) on a split of the data its run was trained on,
    or on every row of the labelled file `data`; its "data" says which."""
    from gptlab.data.labelled import (
        ClassificationBatches,
        encode_examples,
        load_labelled,
    )
    from gptlab.errors import ConfigError
    from gptlab.tasks.classification import (
        DataSpec,
        evaluate_split,
        max_text_tokens,
        prepare_data,
    )

    saved = info.get("config", {}).get("data")
    head = model.head
    if data:
        spec = DataSpec.from_dict(saved or {})
        labelled = load_labelled(
            data,
            text_column or spec.text_column,
            label_column or spec.label_column,
            min_classes=1,  # a file of one class (only spam, say) measures that class's recall
        )
        examples = encode_examples(
            labelled, tokenizer, head.labels, max_text_tokens(model, info), data
        )
        source = f"{data} (every row)"
    elif saved is None or "data" not in saved:
        raise ConfigError(
            f"{info['source']} does not say what it was trained on: pass a labelled file with --data"
        )
    else:
        spec = DataSpec.from_dict(saved)
        examples = prepare_data(spec, tokenizer, model.config.context_length, head.labels).splits[
            split
        ]
        source = f"{spec.data} ({split} split)"
        if not len(examples):
            raise ConfigError(f"the {split} split of {spec.data} is empty")
    batches = ClassificationBatches(examples, batch_size, head.pad_id, head.padding_side)
    report = evaluate_split(model, batches, head.labels, device)
    report["data"] = source
    return report


def format_report(report: dict) -> str:
    """A classification report as a person reads it: the headline, a table per class, the
    confusion matrix (rows: the true class; columns: the predicted one)."""
    names = report["labels"]
    width = max(12, *(len(name) + 2 for name in names))
    lines = [
        f"{report['data']}: {report['examples']:,} examples, accuracy {report['accuracy']:.2%}, "
        f"macro-F1 {report['macro_f1']:.4f}, loss {report['loss']:.4f}",
        "",
        f"{'class':<{width}}{'precision':>10}{'recall':>10}{'F1':>10}{'support':>10}",
    ]
    for name, row in report["per_class"].items():
        lines.append(
            f"{name:<{width}}{row['precision']:>10.4f}{row['recall']:>10.4f}{row['f1']:>10.4f}{row['support']:>10,}"
        )
    lines += ["", "confusion matrix (rows: true class, columns: predicted)"]
    lines.append(" " * width + "".join(f"{name:>{width}}" for name in names))
    for name, row in zip(names, report["confusion"], strict=True):
        lines.append(f"{name:<{width}}" + "".join(f"{count:>{width},}" for count in row))
    return "\n".join(lines)

"""The `gptlab` command line: one argparse subcommand per module in `gptlab.commands`.

Each command module defines `add_parser(subparsers)`, which builds its parser and sets
`run=<function taking the parsed args and returning an exit status>`. Command modules import
torch and friends inside `run`, so `gptlab --help` answers at once.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from gptlab.errors import GptlabError

# The order here is the order of `gptlab --help`.
COMMANDS = [
    "train",
    "seq2seq",
    "finetune",
    "distill",
    "sample",
    "translate",
    "classify",
    "fill_mask",
    "eval",
    "compare",
    "data",
    "convert",
    "merge",
    "quantize",
    "viz",
    "inspect",
    "demo",
    "serve",
]


class OneLineErrorParser(argparse.ArgumentParser):
    """An ArgumentParser whose usage errors are one line on stderr and exit status 2."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineErrorParser(
        prog="gptlab",
        description="gptlab: train, sample, evaluate and serve GPT-2-class models.",
        epilog="Run `gptlab COMMAND --help` for the options and examples of each command.",
    )
    parser.add_argument("--version", action="version", version=f"gptlab {_version()}")
    subparsers = parser.add_subparsers(
        title="commands", metavar="COMMAND", parser_class=OneLineErrorParser
    )
    for name in COMMANDS:
        importlib.import_module(f"gptlab.commands.{name}").add_parser(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not hasattr(args, "run"):
        parser.print_help()
        return 2
    try:
        return args.run(args) or 0
    except GptlabError as error:
        print(f"gptlab {args.command}: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"gptlab {args.command}: interrupted", file=sys.stderr)
        return 130


def _version() -> str:
    from gptlab import __version__

    return __version__

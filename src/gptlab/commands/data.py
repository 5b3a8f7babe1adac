"""`gptlab data list|fetch|verify`: the datasets gptlab knows, where they are, and whether they are intact."""

from __future__ import annotations

import argparse

from gptlab.errors import DataError

EXAMPLES = """\
examples:
  gptlab data list                          what is known, and where each dataset was found
  gptlab train --data english-mix ...       a corpus made from datasets is a --data name too
  gptlab data fetch tinyshakespeare         download into GPTLAB_HOME (or find it in GPTLAB_DATA)
  gptlab data fetch gpt2-tokenizer poetry   several at once
  gptlab data verify                        check the sha256 of every dataset found locally
  gptlab data verify tinyshakespeare        check one; exit status 2 if missing or corrupt
  GPTLAB_DATA=/data/shared gptlab data list look in a read-only shared folder first

Files are looked for in each folder of GPTLAB_DATA (colon-separated, laid out as
<folder>/<dataset>/<file>), then in GPTLAB_HOME/data (default ~/.cache/gptlab/data), and
downloaded into GPTLAB_HOME when missing. Without a network, put the files in one of those places.
"""


def add_parser(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "data",
        help="list, fetch and verify the datasets gptlab knows",
        description="List, fetch and verify the datasets gptlab knows (files, URLs and sha256 checksums).",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    actions = parser.add_subparsers(title="actions", metavar="ACTION", dest="action", required=True)
    actions.add_parser(
        "list", help="every known dataset and corpus: files, size, and where it was found"
    )
    fetch = actions.add_parser(
        "fetch", help="make datasets available locally, downloading if needed"
    )
    fetch.add_argument(
        "names", nargs="+", metavar="NAME", help="dataset names (see `gptlab data list`)"
    )
    verify = actions.add_parser(
        "verify", help="check local copies against their sha256 (exit 2 if not ok)"
    )
    verify.add_argument(
        "names",
        nargs="*",
        metavar="NAME",
        help="dataset names; default: every dataset found locally",
    )
    parser.set_defaults(run=run, command="data")
    return parser


def run(args: argparse.Namespace) -> int:
    return {"list": _list, "fetch": _fetch, "verify": _verify}[args.action](args)


def _list(args: argparse.Namespace) -> int:
    from gptlab.data.corpora import CORPORA
    from gptlab.data.sources import REGISTRY, find_local

    rows = [("name", "files", "size", "where")]
    for source in REGISTRY.values():
        found = [find_local(source.name, remote.name) for remote in source.files]
        folders = sorted({str(path.parent) for path in found if path is not None})
        where = ", ".join(folders) or "not downloaded"
        if folders and None in found:
            where = f"{len(found) - found.count(None)} of {len(found)} files in {where}"
        rows.append((source.name, str(len(source.files)), _human_size(source.size), where))
    _print_table(rows)
    print("\ncorpora, also names for --data: made from those datasets the first time one is used")
    rows = [("name", "files", "size", "where")]
    for corpus in CORPORA.values():
        path = corpus.path()
        if path.is_file():
            size, where = _human_size(path.stat().st_size), str(path)
        else:
            size, where = "-", f"not built; made from {', '.join(corpus.datasets)}"
        rows.append((corpus.name, str(len(corpus.documents)), size, where))
    _print_table(rows)
    return 0


def _print_table(rows: list[tuple[str, str, str, str]]) -> None:
    widths = [max(len(row[column]) for row in rows) for column in range(3)]
    for name, files, size, where in rows:
        print(f"{name:<{widths[0]}}  {files:>{widths[1]}}  {size:>{widths[2]}}  {where}")


def _fetch(args: argparse.Namespace) -> int:
    from gptlab.data.sources import fetch, get_source

    for name in args.names:
        get_source(name)  # every name is checked before anything is downloaded
    for name in args.names:
        print(f"{name}: {fetch(name)}")
    return 0


def _verify(args: argparse.Namespace) -> int:
    from gptlab.data.sources import REGISTRY, find_local, get_source, verify

    names = args.names or [
        name
        for name, source in REGISTRY.items()
        if any(find_local(name, remote.name) for remote in source.files)
    ]
    if not names:
        print("no dataset is available locally: nothing to verify (see `gptlab data list`)")
        return 0
    for name in names:
        get_source(name)
    failed = []
    for name in names:
        for filename, status in verify(name):
            word, _, detail = status.partition(": ")
            if status == "ok":
                detail = str(find_local(name, filename))
            else:
                failed.append(f"{name}/{filename} ({word})")
            print(f"{word:<8} {name}/{filename}  {detail}".rstrip())
    if failed:
        raise DataError(
            f"{len(failed)} file(s) failed verification: {', '.join(failed)}; "
            "`gptlab data fetch NAME` downloads missing files and replaces corrupt ones in GPTLAB_HOME, "
            "corrupt files in GPTLAB_DATA must be replaced by hand"
        )
    return 0


def _human_size(size: int) -> str:
    value, unit = float(size), "B"
    for bigger in ("kB", "MB", "GB"):
        if value < 1000:
            break
        value, unit = value / 1000, bigger
    return f"{size} B" if unit == "B" else f"{value:.1f} {unit}"

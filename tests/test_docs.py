"""The docs: lesson pages made from the lesson files, every lesson in the nav, small figures."""

from __future__ import annotations

import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LESSONS = sorted((ROOT / "lessons").glob("[0-9][0-9]_*.py"))


def load_hook():
    spec = importlib.util.spec_from_file_location(
        "lesson_pages", ROOT / "docs/hooks/lesson_pages.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_a_lesson_becomes_markdown_and_python_blocks():
    source = (
        "# %% [markdown]\n# # Title\n#\n# Some *text*.\n\n"
        "# %%\nimport torch\n\n\nx = 1\n\n"
        "# %% [markdown]\n# ## Check\n"
    )
    page = load_hook().lesson_to_markdown(source, "99_example.py")
    assert page.startswith("# Title\n")
    assert "`lessons/99_example.py`" in page  # the note saying how to run it
    assert "Some *text*." in page and "## Check" in page
    assert "```python\nimport torch\n\n\nx = 1\n```" in page
    assert not any(line.startswith("# %%") for line in page.splitlines())


def test_every_lesson_is_in_the_nav():
    nav = (ROOT / "mkdocs.yml").read_text()
    for lesson in LESSONS:
        assert f"lessons/{lesson.stem}.md" in nav, f"{lesson.name} is missing from mkdocs.yml's nav"


def test_every_lesson_page_has_a_title_and_code():
    hook = load_hook()
    for lesson in LESSONS:
        page = hook.lesson_to_markdown(lesson.read_text(), lesson.name)
        assert page.startswith("# Lesson "), lesson.name
        assert "```python" in page


def test_committed_figures_are_pngs_under_300_kb():
    for figure in (ROOT / "docs").rglob("*"):
        if figure.suffix.lower() in (".png", ".jpg", ".jpeg", ".gif", ".svg"):
            assert figure.suffix == ".png", f"{figure} should be a PNG"
            assert figure.stat().st_size < 300 * 1024, f"{figure} is over 300 KB"

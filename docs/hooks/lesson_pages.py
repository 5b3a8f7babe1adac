"""MkDocs hook: one page per lesson, made from the lesson file at build time.

The lesson files in `lessons/` are the single source: each `# %% [markdown]` cell becomes
markdown (its `# ` prefixes removed) and each code cell a Python code block, so a page can
never drift from the code the test suite runs. The pages appear as `lessons/<name>.md`.
"""

from __future__ import annotations

import re
from pathlib import Path

from mkdocs.structure.files import File

CELL = re.compile(r"^# %%(?P<kind>.*)$", re.MULTILINE)
RUN_NOTE = (
    '!!! note "Run this lesson"\n'
    "    This page is the file `lessons/{name}`, shown cell by cell. Run it with "
    "`uv run python lessons/{name}` (add `--quick` for a run of seconds), or open it in Jupyter "
    "or VS Code, where each `# %%` line starts a cell. Its figures go to `lessons/out/`.\n"
)


def lesson_to_markdown(source: str, name: str) -> str:
    """The markdown page of one lesson file written in `# %%` cell form."""
    markers = list(CELL.finditer(source))
    blocks = []
    for index, marker in enumerate(markers):
        end = markers[index + 1].start() if index + 1 < len(markers) else len(source)
        body = source[marker.end() : end].strip("\n")
        if "[markdown]" in marker.group("kind"):
            lines = [re.sub(r"^# ?", "", line) for line in body.splitlines()]
            blocks.append("\n".join(lines).strip())
        elif body.strip():
            blocks.append(f"```python\n{body.strip()}\n```")
    if blocks and blocks[0].startswith("# "):  # keep the title first, then the note
        title, _, rest = blocks[0].partition("\n")
        blocks[0] = f"{title}\n\n{RUN_NOTE.format(name=name)}\n{rest.strip()}"
    return "\n\n".join(blocks) + "\n"


def on_files(files, config):
    lessons = Path(config.config_file_path).parent / "lessons"
    for path in sorted(lessons.glob("[0-9][0-9]_*.py")):
        page = lesson_to_markdown(path.read_text(encoding="utf-8"), path.name)
        files.append(File.generated(config, f"lessons/{path.stem}.md", content=page))
    return files

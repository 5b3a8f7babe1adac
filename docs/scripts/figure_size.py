"""The size limit of the figures the repository keeps, for the scripts that make them."""

from __future__ import annotations

import sys
from pathlib import Path

MAX_BYTES = 300 * 1024  # the largest figure the repository keeps (tests/test_docs.py)


def check_size(path: Path) -> int:
    """0 when the figure at `path` is within the limit (saying so), else 1 with the reason."""
    size = path.stat().st_size
    if size > MAX_BYTES:
        print(
            f"{path} is {size / 1024:.0f} KB, over the {MAX_BYTES // 1024} KB limit",
            file=sys.stderr,
        )
        return 1
    print(f"wrote {path} ({size / 1024:.0f} KB)")
    return 0

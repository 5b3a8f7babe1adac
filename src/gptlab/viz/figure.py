"""Figures that become PNG files, with a fixed size in pixels.

Figures are built with matplotlib's object-oriented `Figure`, never `pyplot`: no window opens,
no global state is shared between plots, and a script, a test or a server can draw without a
display. The constrained layout keeps titles and labels inside a canvas of exactly the size asked
for (`bbox_inches="tight"` would crop it to a size that depends on the labels).
"""

from __future__ import annotations

from pathlib import Path

from matplotlib.figure import Figure

from gptlab.errors import ConfigError

DPI = 100  # a figure of (w, h) inches is a PNG of (100 w, 100 h) pixels


def new_figure(width: float, height: float) -> Figure:
    """A blank figure of width x height inches with the constrained layout."""
    return Figure(figsize=(width, height), dpi=DPI, layout="constrained")


def save_png(figure: Figure, out: str | Path) -> Path:
    """Write `figure` to `out` (a .png path; parent folders are created) and return the path."""
    out = checked_png_path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(out, dpi=DPI, format="png")
    return out


def checked_png_path(out: str | Path) -> Path:
    """`out` as a Path, checked to end in .png (a command checks before its long work)."""
    out = Path(out)
    if out.suffix.lower() != ".png":
        raise ConfigError(f"pictures are written as PNG: give an --out ending in .png, not {out}")
    return out


def png_bytes(figure: Figure) -> bytes:
    """`figure` as the bytes of a PNG file, for a page that embeds it or a writer of its own."""
    import io

    buffer = io.BytesIO()
    figure.savefig(buffer, dpi=DPI, format="png")
    return buffer.getvalue()


def display_token(token: str) -> str:
    """A token as a label that can be read: whitespace and control characters made visible."""
    visible = {" ": "␣", "\n": "\\n", "\t": "\\t", "\r": "\\r"}
    text = "".join(
        visible.get(char, char if char.isprintable() else f"\\x{ord(char):02x}") for char in token
    )
    return text or "∅"

"""Models built from `gptlab.nn` blocks."""

"""The `gptlab` subcommands, one module each (see `gptlab.cli`)."""

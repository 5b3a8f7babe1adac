"""Errors a user can cause, as one family.

Everything a person can get wrong (a bad flag value, a missing or corrupt file, a checkpoint of
another shape, an empty dataset, a prompt longer than the context) raises a `GptlabError`. The
command line prints its message on one line and exits with status 2; programming errors stay
ordinary exceptions with their tracebacks.
"""


class GptlabError(Exception):
    """Something the user can fix; the message says what and how."""


class ConfigError(GptlabError):
    """An unknown preset, an invalid value, or an inconsistent configuration."""


class DataError(GptlabError):
    """A dataset that is missing, corrupt, empty, or cannot be downloaded."""


class CheckpointError(GptlabError):
    """A run directory or checkpoint that is missing, corrupt, or of another shape."""


class TokenizerError(GptlabError):
    """Text the tokenizer cannot encode, or tokenizer files that cannot be read."""


class ContextLengthError(GptlabError):
    """A sequence longer than the model's context window."""

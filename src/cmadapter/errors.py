"""Errors a user can act on.

Everything the library raises on bad input derives from ``CmadapterError`` so the CLI can print the
message alone, without a traceback from deep inside torch.
"""


class CmadapterError(ValueError):
    """Bad input or configuration; the message says what was wrong and where."""


class CheckpointError(CmadapterError):
    """A file is not a checkpoint we can read, or does not fit the model."""


class DataError(CmadapterError):
    """An annotation file, a video or a frame cache is missing, malformed or undecodable."""


class ConfigError(CmadapterError):
    """A run configuration holds a value that cannot work; the message names the key and the value."""

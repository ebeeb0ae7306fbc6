"""One exception type per kind of user error.

The CLI catches :class:`SelfnasError` and prints ``error: <message>`` on one line
with exit code 2; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations


class SelfnasError(Exception):
    """Base class of every user-facing error. The message says what to do."""


class DatasetError(SelfnasError):
    """A dataset is missing, truncated, malformed or asked for something it lacks."""


class ConfigError(SelfnasError):
    """A config file or a CLI override has an invalid value."""


class GenotypeError(SelfnasError):
    """A genotype JSON is malformed, hostile or names an unknown op."""


class RegistryError(SelfnasError):
    """An unknown or duplicate name in one of the registries."""


class RunDirError(SelfnasError):
    """A run directory is missing, incomplete, or exists when it should not."""


class TrainingError(SelfnasError):
    """Training cannot continue (NaN loss, collapsed representation in strict mode)."""


class ExportError(SelfnasError):
    """An exported file does not reproduce the model (the export is not written)."""

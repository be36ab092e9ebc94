"""Exception types. Every error xterramind raises on purpose is an ``XterramindError``.

Each message says what was wrong and how to fix it.
"""

__all__ = [
    "CheckpointError",
    "ConfigError",
    "ForeignStoreError",
    "GridMismatchError",
    "InputError",
    "InputWarning",
    "Interrupted",
    "MissingBandsError",
    "MissingCRSError",
    "MissingDependencyError",
    "NoValidDataError",
    "OptionError",
    "StoreError",
    "StoreExistsError",
    "UnknownModalityError",
    "UnknownModelError",
    "WeightsUnavailableError",
    "XterramindError",
]


class XterramindError(Exception):
    """Base class of every error raised by xterramind."""


class UnknownModelError(XterramindError, KeyError):
    """A model name that is not in the registry."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0])


class UnknownModalityError(XterramindError, KeyError):
    """A modality name that TerraMind does not know."""

    def __str__(self) -> str:
        return str(self.args[0])


class InputError(XterramindError, ValueError):
    """Input data of the wrong shape, type or content."""


class MissingCRSError(InputError):
    """A cube, token grid or area without a coordinate reference system."""


class GridMismatchError(InputError):
    """Modalities (or a source and its plan) on different pixel grids: align them first, never silently."""


class MissingBandsError(InputError):
    """A modality asked for, or found, without all of its bands."""


class NoValidDataError(InputError):
    """Input without a single valid pixel: every value NaN or its band's nodata."""


class OptionError(InputError):
    """An option (keyword argument, CLI flag) that is misspelt, unknown, missing or of the wrong kind."""


class ConfigError(InputError):
    """A run config file that is missing, malformed, or holds an unknown or wrong key."""


class InputWarning(UserWarning):
    """Input that is probably, not certainly, wrong (a DEM that may be in km); ``check_input=False`` silences it."""


class CheckpointError(XterramindError):
    """A checkpoint file that cannot be loaded safely or does not fit the model."""


class WeightsUnavailableError(XterramindError, FileNotFoundError):
    """Official weights that are neither on disk nor reachable."""


class MissingDependencyError(XterramindError, ImportError):
    """An optional dependency that the requested feature needs."""


class StoreError(XterramindError):
    """A store that exists and holds something else (or is not an xterramind store): never overwritten
    unless asked (``overwrite=True``)."""


class StoreExistsError(StoreError):
    """Something is at the path already and the call may not replace or resume it (``resume=False``, an export
    folder): pass ``overwrite=True`` or write elsewhere."""


class ForeignStoreError(StoreError):
    """The path holds something xterramind did not write, or a store of another result (another plan, verb or
    model): it is never mixed in or overwritten unless asked."""


class Interrupted(KeyboardInterrupt):
    """Ctrl-C during a write: the regions in flight were finished, nothing new started, and the message says
    how many are done. A ``KeyboardInterrupt``, so it stops scripts and notebooks as Ctrl-C always does."""

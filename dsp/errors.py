"""Typed errors. Every message says what is wrong, where (file or parameter) and how to fix it."""


class FxmixError(Exception):
    """Base class of every error fxmix raises on purpose."""


class AudioInputError(FxmixError):
    """An audio input cannot be used as it is (unreadable, NaN/inf, too many channels, ...)."""


class ConfigError(FxmixError):
    """A configuration, profile or preset is invalid; the message names the key."""


class OutputError(FxmixError):
    """An output cannot be written (disk full, read-only folder, ...); nothing half-written is left behind."""


class ModelLoadError(FxmixError):
    """A model file cannot be loaded (missing, wrong format, hash mismatch)."""

"""Typed, validated stage parameters: what the offline chain applies, the streaming normalizer smooths,
presets export and the OSC bridge reports. Every class has ``to_dict()`` / ``from_dict()`` (JSON-able,
units in key names) and checks its ranges, naming the key in the error.
"""

from __future__ import annotations

import math
from dataclasses import MISSING, asdict, dataclass, fields

import numpy as np

from .errors import ConfigError


def _check_range(cls_name: str, key: str, value, lo: float, hi: float) -> None:
    if value is None:
        return
    v = float(value)
    if not (math.isfinite(v) and lo <= v <= hi):
        raise ConfigError(f"{cls_name}.{key} = {value!r} is out of range [{lo}, {hi}]")


def _check_curve(cls_name: str, key: str, values, lo: float, hi: float) -> None:
    arr = np.asarray(values, dtype=float)
    if arr.ndim != 1 or not np.all(np.isfinite(arr)) or np.any(arr < lo) or np.any(arr > hi):
        raise ConfigError(f"{cls_name}.{key} must be a list of finite numbers in [{lo}, {hi}]")


class _Params:
    """Mixin: dict round trip with key checking."""

    stage: str = ""

    def to_dict(self) -> dict:
        d = asdict(self)
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in d.items()}

    @classmethod
    def from_dict(cls, d: dict):
        if not isinstance(d, dict):
            raise ConfigError(f"{cls.__name__}: expected a table/object, got {type(d).__name__}")
        names = {f.name for f in fields(cls)}
        unknown = set(d) - names
        if unknown:
            raise ConfigError(f"{cls.__name__}: unknown key(s) {sorted(unknown)}; known: {sorted(names)}")
        missing = [f.name for f in fields(cls) if f.name not in d and f.default is MISSING]
        if missing:
            raise ConfigError(f"{cls.__name__}: missing key(s) {missing}")
        kw = {k: (tuple(v) if isinstance(v, list) else v) for k, v in d.items() if k != "stage"}
        if d.get("stage", cls.stage) != cls.stage:
            raise ConfigError(f"{cls.__name__}: key 'stage' must be {cls.stage!r}, got {d['stage']!r}")
        try:
            return cls(**kw)
        except TypeError as exc:
            raise ConfigError(f"{cls.__name__}: {exc}") from exc


@dataclass(frozen=True)
class EqParams(_Params):
    """Linear-phase EQ curve: ``gain_db`` at ``freqs_hz`` (log-interpolated between, held outside)."""

    freqs_hz: tuple
    gain_db: tuple
    stage: str = "eq"

    def __post_init__(self):
        if len(self.freqs_hz) != len(self.gain_db):
            raise ConfigError("EqParams: freqs_hz and gain_db must have the same length")
        _check_curve("EqParams", "freqs_hz", self.freqs_hz, 1.0, 96000.0)
        _check_curve("EqParams", "gain_db", self.gain_db, -60.0, 60.0)


@dataclass(frozen=True)
class CompressorParams(_Params):
    """Stereo-linked feed-forward compressor (pedalboard.Compressor) after an input gain.

    ``input_gain_db`` brings the stem to the level the threshold was searched at (-10 dBFS peak).
    ``ratio == 1`` means bypass.
    """

    threshold_db: float
    ratio: float
    attack_ms: float
    release_ms: float
    input_gain_db: float = 0.0
    stage: str = "compression"

    def __post_init__(self):
        _check_range("CompressorParams", "threshold_db", self.threshold_db, -80.0, 0.0)
        _check_range("CompressorParams", "ratio", self.ratio, 1.0, 100.0)
        _check_range("CompressorParams", "attack_ms", self.attack_ms, 0.01, 1000.0)
        _check_range("CompressorParams", "release_ms", self.release_ms, 1.0, 5000.0)
        _check_range("CompressorParams", "input_gain_db", self.input_gain_db, -120.0, 120.0)


@dataclass(frozen=True)
class PanParams(_Params):
    """Per-channel static gain curves (dB) at ``freqs_hz``; above ``cutoff_hz`` both are 0 dB.

    A centred source is widened by spreading bands alternately left and right (curves of opposite sign),
    so its overall balance stays centred; ``balance_db`` is an extra broadband R/L level difference.
    """

    freqs_hz: tuple
    left_gain_db: tuple
    right_gain_db: tuple
    cutoff_hz: float
    balance_db: float = 0.0
    stage: str = "panning"

    def __post_init__(self):
        if not (len(self.freqs_hz) == len(self.left_gain_db) == len(self.right_gain_db)):
            raise ConfigError("PanParams: freqs_hz, left_gain_db and right_gain_db must have the same length")
        _check_curve("PanParams", "left_gain_db", self.left_gain_db, -60.0, 60.0)
        _check_curve("PanParams", "right_gain_db", self.right_gain_db, -60.0, 60.0)
        _check_range("PanParams", "cutoff_hz", self.cutoff_hz, 10.0, 96000.0)
        _check_range("PanParams", "balance_db", self.balance_db, -60.0, 60.0)


@dataclass(frozen=True)
class LoudnessParams(_Params):
    """Gain to the class target LUFS; optional limiter to hold the true-peak ceiling."""

    gain_db: float
    target_lufs: float | None = None
    measured_lufs: float | None = None
    limiter_threshold_db: float | None = None
    true_peak_db: float | None = None
    missed_lu: float = 0.0
    stage: str = "loudness"

    def __post_init__(self):
        _check_range("LoudnessParams", "gain_db", self.gain_db, -120.0, 120.0)
        _check_range("LoudnessParams", "target_lufs", self.target_lufs, -70.0, 0.0)
        _check_range("LoudnessParams", "limiter_threshold_db", self.limiter_threshold_db, -60.0, 0.0)


@dataclass(frozen=True)
class ReverbParams(_Params):
    """Parallel, band-limited reverb send (training augmentation): x + Reverb(Shelves(x)) * wet."""

    low_shelf_hz: float
    high_shelf_hz: float
    shelf_gain_db: float = -30.0
    room_size: float = 0.8
    damping: float = 0.5
    width: float = 1.0
    wet_db: float = 0.0
    ir_path: str | None = None
    stage: str = "reverb"

    def __post_init__(self):
        _check_range("ReverbParams", "low_shelf_hz", self.low_shelf_hz, 20.0, 20000.0)
        _check_range("ReverbParams", "high_shelf_hz", self.high_shelf_hz, 20.0, 22000.0)
        _check_range("ReverbParams", "room_size", self.room_size, 0.0, 1.0)
        _check_range("ReverbParams", "damping", self.damping, 0.0, 1.0)
        _check_range("ReverbParams", "width", self.width, 0.0, 1.0)
        _check_range("ReverbParams", "wet_db", self.wet_db, -60.0, 12.0)


PARAM_TYPES = {
    "reverb": ReverbParams,
    "eq": EqParams,
    "compression": CompressorParams,
    "panning": PanParams,
    "loudness": LoudnessParams,
}


def params_from_dict(d: dict):
    """Rebuild a stage's params from its dict; the ``stage`` key picks the type."""
    stage = d.get("stage") if isinstance(d, dict) else None
    if stage not in PARAM_TYPES:
        raise ConfigError(f"stage params: key 'stage' must be one of {sorted(PARAM_TYPES)}, got {stage!r}")
    return PARAM_TYPES[stage].from_dict(d)

"""Per-class normalization targets (a *profile*): data type, JSON files, factory profiles.

A profile holds, for each stem class, the dataset-average features that the chain normalizes to:
integrated loudness (LUFS), long-term band spectrum (dB, loudness-referenced), per-band stereo similarity φ,
and onset-peak dynamics (mean, std in dB). Files are versioned JSON with provenance; smoothing is applied once,
when a profile is fitted, and never again on load (the reference smoothed twice, fxnorm-spec.md §8.5).
Fitting over a dataset lives in :mod:`fxmix.dsp.profile_fit`.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field, replace
from importlib import resources
from pathlib import Path

import numpy as np

from .audio import write_text_atomic
from .bands import band_centers_hz
from .constants import CLASSES, STAGES
from .errors import ConfigError

PROFILE_FORMAT = "fxmix-profile"
PROFILE_VERSION = 1
STAGE_KEYS = {
    "eq": ("spectrum_db",),
    "compression": ("onset_peak_mean_db", "onset_peak_std_db"),
    "panning": ("phi",),
    "loudness": ("loudness_lufs",),
}
FIT_STAGES = STAGES


@dataclass(frozen=True)
class ClassTargets:
    """Targets for one class; a field is None until its stage has been fitted."""

    loudness_lufs: float | None = None
    spectrum_db: np.ndarray | None = field(default=None, repr=False)
    phi: np.ndarray | None = field(default=None, repr=False)
    onset_peak_mean_db: float | None = None
    onset_peak_std_db: float | None = None

    def to_dict(self) -> dict:
        d = {}
        for key in ("loudness_lufs", "onset_peak_mean_db", "onset_peak_std_db"):
            v = getattr(self, key)
            d[key] = None if v is None else round(float(v), 4)
        for key in ("spectrum_db", "phi"):
            v = getattr(self, key)
            d[key] = None if v is None else [round(float(x), 4) for x in v]
        return d

    @classmethod
    def from_dict(cls, d: dict, n_bands: int, where: str) -> ClassTargets:
        if not isinstance(d, dict):
            raise ConfigError(f"{where}: expected an object of targets")
        unknown = set(d) - {"loudness_lufs", "spectrum_db", "phi", "onset_peak_mean_db", "onset_peak_std_db"}
        if unknown:
            raise ConfigError(f"{where}: unknown key(s) {sorted(unknown)}")
        kw: dict = {}
        for key, lo, hi in (
            ("loudness_lufs", -70.0, 0.0),
            ("onset_peak_mean_db", -80.0, 0.0),
            ("onset_peak_std_db", 0.0, 40.0),
        ):
            v = d.get(key)
            if v is not None and not (isinstance(v, int | float) and math.isfinite(v) and lo <= v <= hi):
                raise ConfigError(f"{where}.{key} = {v!r} is out of range [{lo}, {hi}]")
            kw[key] = None if v is None else float(v)
        for key, lo, hi in (("spectrum_db", -200.0, 200.0), ("phi", 0.0, 1.0)):
            v = d.get(key)
            if v is None:
                kw[key] = None
                continue
            arr = np.asarray(v, dtype=float)
            if arr.shape != (n_bands,) or not np.all(np.isfinite(arr)) or arr.min() < lo or arr.max() > hi:
                raise ConfigError(f"{where}.{key} must be {n_bands} finite numbers in [{lo}, {hi}]")
            kw[key] = arr
        return cls(**kw)


@dataclass(frozen=True)
class Profile:
    """Per-class targets on the band grid ``bands_hz``, with provenance."""

    name: str
    classes: tuple[str, ...]
    bands_hz: np.ndarray = field(repr=False)
    targets: dict = field(repr=False)
    provenance: dict = field(default_factory=dict, repr=False)
    stages_fitted: tuple[str, ...] = FIT_STAGES

    def targets_for(self, class_name: str) -> ClassTargets:
        if class_name not in self.targets:
            raise ConfigError(
                f"profile {self.name!r} has no class {class_name!r}; its classes are {list(self.classes)} "
                "(rename the stem or assign it with --track PATH=CLASS)"
            )
        return self.targets[class_name]

    def with_targets(self, class_name: str, **changes) -> Profile:
        targets = dict(self.targets)
        targets[class_name] = replace(self.targets_for(class_name), **changes)
        return replace(self, targets=targets)

    def to_dict(self) -> dict:
        return {
            "format": PROFILE_FORMAT,
            "version": PROFILE_VERSION,
            "name": self.name,
            "classes": list(self.classes),
            "bands_hz": [round(float(f), 4) for f in self.bands_hz],
            "stages_fitted": list(self.stages_fitted),
            "provenance": self.provenance,
            "targets": {c: self.targets[c].to_dict() for c in self.classes},
        }

    @classmethod
    def from_dict(cls, d: dict, where: str = "profile") -> Profile:
        if not isinstance(d, dict):
            raise ConfigError(f"{where}: not a JSON object")
        if d.get("format") != PROFILE_FORMAT:
            raise ConfigError(f"{where}: key 'format' must be {PROFILE_FORMAT!r}, got {d.get('format')!r}")
        if d.get("version") != PROFILE_VERSION:
            raise ConfigError(
                f"{where}: key 'version' = {d.get('version')!r} is not supported (this fxmix reads "
                f"version {PROFILE_VERSION}); re-create the profile with `fxmix profile`"
            )
        for key in ("name", "classes", "bands_hz", "targets"):
            if key not in d:
                raise ConfigError(f"{where}: missing key {key!r}")
        bands = np.asarray(d["bands_hz"], dtype=float)
        if bands.shape != band_centers_hz().shape or not np.allclose(bands, band_centers_hz(), rtol=1e-4):
            raise ConfigError(f"{where}: key 'bands_hz' does not match this fxmix's band grid")
        classes = tuple(d["classes"])
        missing = [c for c in classes if c not in d["targets"]]
        if missing:
            raise ConfigError(f"{where}: key 'targets' lacks class(es) {missing}")
        targets = {
            c: ClassTargets.from_dict(d["targets"][c], bands.size, f"{where}: targets.{c}") for c in classes
        }
        stages = tuple(d.get("stages_fitted", FIT_STAGES))
        bad = [s for s in stages if s not in FIT_STAGES]
        if bad:
            raise ConfigError(f"{where}: key 'stages_fitted' has unknown stage(s) {bad}")
        return cls(str(d["name"]), classes, bands, targets, dict(d.get("provenance", {})), stages)

    def save(self, path: str | Path) -> Path:
        return write_text_atomic(path, json.dumps(self.to_dict(), indent=1) + "\n")


def empty_profile(name: str, classes=CLASSES, provenance: dict | None = None) -> Profile:
    return Profile(
        name, tuple(classes), band_centers_hz(), {c: ClassTargets() for c in classes}, provenance or {}, ()
    )


def factory_names(package: str, folder: str) -> list[str]:
    """Names of the ``*.json`` files shipped in ``package/folder`` (factory profiles, presets)."""
    return sorted(
        p.name[: -len(".json")]
        for p in resources.files(package).joinpath(folder).iterdir()
        if p.name.endswith(".json")
    )


def read_named_json(name_or_path: str | Path, package: str, folder: str, kind: str) -> tuple[dict, str]:
    """Resolve a factory name or a JSON path (the rule every ``--profile``/``--preset`` flag follows).

    Returns the parsed JSON and a ``where`` string for error messages; errors name the file or list the
    factory names.
    """
    p = Path(name_or_path)
    if p.suffix.lower() == ".json" or p.exists():
        if not p.is_file():
            raise ConfigError(f"{p}: {kind} file not found")
        try:
            return json.loads(p.read_text(encoding="utf-8")), str(p)
        except (OSError, ValueError) as exc:
            raise ConfigError(f"{p}: not a readable JSON {kind} ({exc})") from exc
    name = str(name_or_path)
    res = resources.files(package).joinpath(folder, f"{name}.json")
    if not res.is_file():
        raise ConfigError(
            f"unknown {kind} {name!r}; factory {kind}s: {factory_names(package, folder)} (or pass a .json path)"
        )
    return json.loads(res.read_text(encoding="utf-8")), f"factory {kind} {name}"


def factory_profiles() -> list[str]:
    return factory_names("fxmix.dsp", "profiles")


def load_profile(name_or_path: str | Path) -> Profile:
    """Load a factory profile by name (``musdb18-reference``, ...) or a profile JSON file by path."""
    data, where = read_named_json(name_or_path, "fxmix.dsp", "profiles", "profile")
    return Profile.from_dict(data, where)


def smooth_bands(values: np.ndarray) -> np.ndarray:
    """The one smoothing applied to fitted spectra/φ: a 3-band binomial (1/4, 1/2, 1/4), edges held."""
    v = np.asarray(values, dtype=float)
    padded = np.concatenate([[v[0]], v, [v[-1]]])
    return 0.25 * padded[:-2] + 0.5 * padded[1:-1] + 0.25 * padded[2:]

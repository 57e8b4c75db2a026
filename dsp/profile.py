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

#: Largest JSON file (profile, preset, model sidecar or card) read; real ones are a few kB.
MAX_JSON_BYTES = 8 << 20
#: Deepest nesting of objects/lists accepted in such a file; real ones nest 4 levels at most.
MAX_JSON_DEPTH = 32
_TARGET_KEYS = ("loudness_lufs", "spectrum_db", "phi", "onset_peak_mean_db", "onset_peak_std_db")


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
            raise ConfigError(f"{where}: expected an object of targets, got {_kind(d)}")
        unknown = set(d) - set(_TARGET_KEYS)
        if unknown:
            raise ConfigError(f"{where}: unknown key(s) {sorted(unknown)}")
        kw: dict = {}
        for key, lo, hi in (
            ("loudness_lufs", -70.0, 0.0),
            ("onset_peak_mean_db", -80.0, 0.0),
            ("onset_peak_std_db", 0.0, 40.0),
        ):
            v = d.get(key)
            if v is not None and not (_is_number(v) and math.isfinite(v) and lo <= v <= hi):
                raise ConfigError(f"{where}.{key} = {v!r} is out of range [{lo}, {hi}]")
            kw[key] = None if v is None else float(v)
        for key, lo, hi in (("spectrum_db", -200.0, 200.0), ("phi", 0.0, 1.0)):
            v = d.get(key)
            if v is None:
                kw[key] = None
                continue
            ok = isinstance(v, list) and len(v) == n_bands and all(_is_number(x) for x in v)
            arr = np.asarray(v, dtype=float) if ok else np.zeros(0)
            if not ok or not np.all(np.isfinite(arr)) or arr.min() < lo or arr.max() > hi:
                raise ConfigError(f"{where}.{key} must be a list of {n_bands} finite numbers in [{lo}, {hi}]")
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
        """Validate a profile object (types, ranges, band grid, nesting depth); errors name ``where`` and the key.

        Raises:
            ConfigError: anything that does not match the schema :meth:`to_dict` writes.
        """
        if not isinstance(d, dict):
            raise ConfigError(f"{where}: not a JSON object (got {_kind(d)})")
        check_json_depth(d, where)
        if d.get("format") != PROFILE_FORMAT:
            raise ConfigError(f"{where}: key 'format' must be {PROFILE_FORMAT!r}, got {d.get('format')!r}")
        if d.get("version") != PROFILE_VERSION or isinstance(d.get("version"), bool):
            raise ConfigError(
                f"{where}: key 'version' = {d.get('version')!r} is not supported (this fxmix reads "
                f"version {PROFILE_VERSION}); re-create the profile with `fxmix profile`"
            )
        for key in ("name", "classes", "bands_hz", "targets"):
            if key not in d:
                raise ConfigError(f"{where}: missing key {key!r}")
        _expect(d, "name", str, where, "a string")
        _expect(d, "targets", dict, where, "an object: class -> targets")
        _expect(d, "provenance", dict, where, "an object", optional=True)
        bands_ok = isinstance(d["bands_hz"], list) and all(_is_number(f) for f in d["bands_hz"])
        bands = np.asarray(d["bands_hz"], dtype=float) if bands_ok else np.zeros(0)
        if bands.shape != band_centers_hz().shape or not np.allclose(bands, band_centers_hz(), rtol=1e-4):
            raise ConfigError(f"{where}: key 'bands_hz' does not match this fxmix's band grid")
        classes = _string_list(d, "classes", where)
        missing = [c for c in classes if c not in d["targets"]]
        if missing:
            raise ConfigError(f"{where}: key 'targets' lacks class(es) {missing}")
        targets = {
            c: ClassTargets.from_dict(d["targets"][c], bands.size, f"{where}: targets.{c}") for c in classes
        }
        stages = _string_list(d, "stages_fitted", where) if "stages_fitted" in d else FIT_STAGES
        bad = [s for s in stages if s not in FIT_STAGES]
        if bad:
            raise ConfigError(f"{where}: key 'stages_fitted' has unknown stage(s) {bad}")
        return cls(d["name"], classes, bands, targets, dict(d.get("provenance", {})), stages)

    def save(self, path: str | Path) -> Path:
        return write_text_atomic(path, json.dumps(self.to_dict(), indent=1) + "\n")


def _kind(value) -> str:
    return "null" if value is None else type(value).__name__


def _is_number(v) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


def _expect(d: dict, key: str, typ: type, where: str, what: str, *, optional: bool = False) -> None:
    if optional and key not in d:
        return
    if not isinstance(d[key], typ):
        raise ConfigError(f"{where}: key {key!r} must be {what}, got {_kind(d[key])}")


def _string_list(d: dict, key: str, where: str) -> tuple[str, ...]:
    v = d[key]
    if not isinstance(v, list) or not all(isinstance(x, str) for x in v):
        raise ConfigError(f"{where}: key {key!r} must be a list of strings, got {v!r:.80}")
    return tuple(v)


def check_json_depth(value, where: str, max_depth: int = MAX_JSON_DEPTH) -> None:
    """Refuse objects/lists nested deeper than ``max_depth`` (checked without recursion).

    Raises:
        ConfigError: names ``where`` and the key path where the limit is crossed.
    """
    todo = [(value, 1, "")]
    while todo:
        node, depth, path = todo.pop()
        if not isinstance(node, dict | list):
            continue
        if depth > max_depth:
            raise ConfigError(
                f"{where}: nested deeper than {max_depth} levels at {path or 'the top'}; "
                "this is not a file fxmix wrote, re-create it"
            )
        items = node.items() if isinstance(node, dict) else enumerate(node)
        todo.extend((v, depth + 1, f"{path}.{k}" if path else str(k)) for k, v in items)


def parse_json_text(raw: bytes, where: str, kind: str):
    """Parse a JSON file's bytes: UTF-8, at most :data:`MAX_JSON_BYTES`, nested at most :data:`MAX_JSON_DEPTH`.

    Raises:
        ConfigError: too large, not UTF-8, not JSON, or nested too deep (names ``where`` and ``kind``).
    """
    if len(raw) > MAX_JSON_BYTES:
        raise ConfigError(f"{where}: {len(raw)} bytes is too large for a {kind} (limit {MAX_JSON_BYTES})")
    try:
        data = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{where}: not a UTF-8 {kind} file ({exc.reason} at byte {exc.start})") from None
    except RecursionError:
        raise ConfigError(f"{where}: nested deeper than {MAX_JSON_DEPTH} levels; not a valid {kind}") from None
    except ValueError as exc:
        raise ConfigError(f"{where}: not a readable JSON {kind} ({exc})") from None
    check_json_depth(data, where)
    return data


def read_json_file(path: str | Path, kind: str):
    """Read and parse a JSON file with the limits of :func:`parse_json_text`; only regular files are opened.

    Raises:
        ConfigError: missing, not a regular file, unreadable, or not a valid JSON ``kind``.
    """
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"{p}: {kind} file not found (or not a regular file)")
    try:
        with open(p, "rb") as fh:
            raw = fh.read(MAX_JSON_BYTES + 1)
    except OSError as exc:
        raise ConfigError(f"{p}: cannot read the {kind} ({exc.strerror or exc})") from None
    return parse_json_text(raw, str(p), kind)


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
        return read_json_file(p, kind), str(p)
    name = str(name_or_path)
    res = resources.files(package).joinpath(folder, f"{name}.json")
    if not res.is_file():
        raise ConfigError(
            f"unknown {kind} {name!r}; factory {kind}s: {factory_names(package, folder)} (or pass a .json path)"
        )
    where = f"factory {kind} {name}"
    return parse_json_text(res.read_bytes(), where, kind), where


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

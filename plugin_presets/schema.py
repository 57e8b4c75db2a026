"""fxmix presets: versioned JSON that says *how* to mix (profile, stages, model) and optionally *what* was decided.

Schema (``format`` "fxmix-preset", ``version`` 1)::

    {
      "format": "fxmix-preset",          # required, exactly this
      "version": 1,                      # required; other versions are refused
      "name": "musdb18-reference",       # required, non-empty string
      "description": "...",              # optional string
      "profile": "musdb18-reference",    # required: factory profile name, profile JSON path, or an inline
                                         #   fxmix-profile object (see fxmix.dsp.profile)
      "stages": {                        # required; keys from eq, compression, panning, loudness, reverb
        "eq": {"enabled": true, "amount": 1.0},   # enabled: bool; amount: 0..1 (1 = full decision;
        ...                                        #   amount scales the EQ/pan curves and the
      },                                           #   compressor's threshold depth)
      "model": "default",                # required: "default" | "none" | path to an exported model
      "decisions": {                     # optional: recorded per-track/class stage params
        "<track or class>": {"class": "vocals", "params": {"eq": {...EqParams...}, ...}}
      }
    }

:func:`load_preset` accepts a factory preset name (``plugin_presets/factory/<name>.json``) or a path;
every problem raises :class:`~fxmix.dsp.errors.ConfigError` naming the key.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

from ..dsp.audio import write_text_atomic
from ..dsp.chain import ALL_STAGES
from ..dsp.errors import ConfigError
from ..dsp.params import PARAM_TYPES
from ..dsp.profile import Profile, check_json_depth, factory_names, load_profile, read_named_json

PRESET_FORMAT = "fxmix-preset"
PRESET_VERSION = 1
REQUIRED_KEYS = ("format", "version", "name", "profile", "stages", "model")
OPTIONAL_KEYS = ("description", "decisions")


@dataclass(frozen=True)
class StageSwitch:
    enabled: bool = True
    amount: float = 1.0


@dataclass(frozen=True)
class Preset:
    """A validated preset. ``profile`` is a name/path string or an inline profile dict."""

    name: str
    profile: str | dict
    stages: dict
    model: str = "default"
    description: str = ""
    decisions: dict = field(default_factory=dict)

    def enabled_stages(self) -> tuple[str, ...]:
        return tuple(s for s in ALL_STAGES if s in self.stages and self.stages[s].enabled)

    def load_profile(self) -> Profile:
        if isinstance(self.profile, dict):
            return Profile.from_dict(self.profile, f"preset {self.name!r}: profile")
        return load_profile(self.profile)

    def to_dict(self) -> dict:
        d = {
            "format": PRESET_FORMAT,
            "version": PRESET_VERSION,
            "name": self.name,
            "profile": self.profile,
            "stages": {s: {"enabled": v.enabled, "amount": v.amount} for s, v in self.stages.items()},
            "model": self.model,
        }
        if self.description:
            d["description"] = self.description
        if self.decisions:
            d["decisions"] = self.decisions
        return d


def _where(where: str, key: str) -> str:
    return f"{where}: key {key!r}"


def _check_stages(d, where: str) -> dict:
    if not isinstance(d, dict) or not d:
        raise ConfigError(f"{_where(where, 'stages')} must be a non-empty object of stage switches")
    out = {}
    for stage, sw in d.items():
        key = f"stages.{stage}"
        if stage not in ALL_STAGES:
            raise ConfigError(f"{_where(where, key)}: unknown stage; stages are {list(ALL_STAGES)}")
        if not isinstance(sw, dict):
            raise ConfigError(f"{_where(where, key)} must be an object {{'enabled': bool, 'amount': 0..1}}")
        unknown = set(sw) - {"enabled", "amount"}
        if unknown:
            raise ConfigError(f"{_where(where, key)}: unknown key(s) {sorted(unknown)}")
        if "enabled" not in sw:
            raise ConfigError(f"{where}: missing key '{key}.enabled'")
        if not isinstance(sw["enabled"], bool):
            raise ConfigError(f"{_where(where, key + '.enabled')} must be true or false")
        amount = sw.get("amount", 1.0)
        if not (isinstance(amount, int | float) and not isinstance(amount, bool) and math.isfinite(amount)):
            raise ConfigError(f"{_where(where, key + '.amount')} must be a number in [0, 1]")
        if not 0.0 <= amount <= 1.0:
            raise ConfigError(f"{_where(where, key + '.amount')} = {amount!r} is out of range [0, 1]")
        out[stage] = StageSwitch(sw["enabled"], float(amount))
    return out


def _check_decisions(d, where: str) -> dict:
    if not isinstance(d, dict):
        raise ConfigError(f"{_where(where, 'decisions')} must be an object: track -> {{class, params}}")
    for track, dec in d.items():
        key = f"decisions.{track}"
        if not isinstance(dec, dict) or "params" not in dec or not isinstance(dec["params"], dict):
            raise ConfigError(f"{where}: missing key '{key}.params' (an object of stage params)")
        if "class" in dec and not isinstance(dec["class"], str):
            raise ConfigError(f"{_where(where, key + '.class')} must be a string")
        for stage, p in dec["params"].items():
            if stage not in PARAM_TYPES:
                raise ConfigError(f"{_where(where, f'{key}.params.{stage}')}: unknown stage")
            if p is None:
                continue
            try:
                PARAM_TYPES[stage].from_dict(p)
            except (ConfigError, TypeError, ValueError) as exc:  # a wrong type inside a params object
                raise ConfigError(f"{_where(where, f'{key}.params.{stage}')}: {exc}") from None
    return d


def preset_from_dict(d, where: str = "preset") -> Preset:
    """Validate a preset dict (see the module docstring); raise ConfigError naming the bad key."""
    if not isinstance(d, dict):
        raise ConfigError(f"{where}: not a JSON object")
    check_json_depth(d, where)
    for key in REQUIRED_KEYS:
        if key not in d:
            raise ConfigError(f"{where}: missing key {key!r}")
    unknown = set(d) - set(REQUIRED_KEYS) - set(OPTIONAL_KEYS)
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {sorted(unknown)}")
    if d["format"] != PRESET_FORMAT:
        raise ConfigError(f"{_where(where, 'format')} must be {PRESET_FORMAT!r}, got {d['format']!r}")
    if d["version"] != PRESET_VERSION or isinstance(d["version"], bool):
        raise ConfigError(
            f"{_where(where, 'version')} = {d['version']!r} is not supported (this fxmix reads version "
            f"{PRESET_VERSION}); re-export the preset with `fxmix preset export`"
        )
    if not isinstance(d["name"], str) or not d["name"].strip():
        raise ConfigError(f"{_where(where, 'name')} must be a non-empty string")
    prof = d["profile"]
    if isinstance(prof, dict):
        Profile.from_dict(prof, f"{where}: key 'profile'")
    elif not isinstance(prof, str) or not prof:
        raise ConfigError(f"{_where(where, 'profile')} must be a profile name, a path or an inline profile")
    model = d["model"]
    if not isinstance(model, str) or not model:
        raise ConfigError(f"{_where(where, 'model')} must be 'default', 'none' or a model path")
    desc = d.get("description", "")
    if not isinstance(desc, str):
        raise ConfigError(f"{_where(where, 'description')} must be a string")
    return Preset(
        d["name"],
        prof,
        _check_stages(d["stages"], where),
        model,
        desc,
        _check_decisions(d.get("decisions", {}), where),
    )


def factory_presets() -> list[str]:
    return factory_names("fxmix.plugin_presets", "factory")


def load_preset(name_or_path: str | Path) -> Preset:
    """Load a factory preset by name or a preset JSON file by path."""
    data, where = read_named_json(name_or_path, "fxmix.plugin_presets", "factory", "preset")
    return preset_from_dict(data, where)


def save_preset(preset: Preset, path: str | Path) -> Path:
    """Validate and write atomically (never over an input: write_text_atomic's temp-file + rename)."""
    d = preset.to_dict()
    preset_from_dict(d, str(path))
    return write_text_atomic(path, json.dumps(d, indent=1) + "\n")

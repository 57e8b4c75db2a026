"""Per-track mixing decisions as one JSON document (``decisions.json``): what a person reads, edits and takes
into a DAW (Reaper write-back, presets).

Schema ``fxmix-decisions-1`` (all levels in dB, pans in [-1, 1], frequencies in Hz)::

    {"format": "fxmix-decisions-1", "sample_rate": 44100, "profile": NAME, "stages": [...],
     "model": TEXT, "mixer": "console" | "bus" | "none",
     "master_gain_db": G,                     # on the sum (console mixer; 0 otherwise)
     "master": {...} | null,                  # console mixer: the master stage's filled plan
                                              # (fxmix.dsp.stages.master: glue threshold, gain, ceiling)
     "console": {...},                        # console mixer only: pan law, EQ band centres, FIR, reverb IR
     "band_edges_hz": [...],                  # bus networks only: the bands of "band_gain_db"
     "tracks": [{"name": N, "file": PATH | null, "class": C,
                 "normalization": {"scope": "track" | "class bus", STAGE: params, ...},
                 "mixer": {...}}]}

``normalization`` holds every stage's parameters (:meth:`fxmix.dsp.chain.StemResult.params_dict`): the
track's own with the console mixer, else those of its class bus (the four-stem networks normalize buses).
``mixer`` is, for the console mixer, the track's console parameters (:meth:`ConsoleParams.to_dict`: gain_db,
pan, eq_db on ``console.eq_band_hz``, comp_threshold_db, comp_ratio, comp_attack_ms, comp_release_ms,
reverb_send_db); for a bus network the contribution of the track's class bus to the network's mix, estimated
by per-band complex least squares (:class:`fxmix.model.balance.Contributions`, the evaluation's estimate) as
``band_gain_db`` per band (null where the bus has no energy) and ``gain_db`` (its K-weighted energy ratio);
for the normalized sum ``gain_db`` 0 and ``pan`` 0.

streaming-safe: no (whole-mix estimates).
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
from fxmix.dsp import constants as C
from fxmix.dsp.errors import ConfigError
from fxmix.dsp.profile import read_json_file

from .balance import Contributions
from .losses import CONTRIB_BAND_EDGES_HZ

#: The schema name every decisions document carries (bump on an incompatible change).
DECISIONS_FORMAT = "fxmix-decisions-1"
#: File name of the decisions document next to a song's mix.
DECISIONS_NAME = "decisions.json"
#: The per-track mixer fields of the console mixer (also what the Reaper write-back and presets read).
CONSOLE_FIELDS = ("gain_db", "pan", "eq_db", "comp_threshold_db", "comp_ratio", "comp_attack_ms",
                  "comp_release_ms", "reverb_send_db")


def bus_band_gains(mix: np.ndarray, buses: Mapping[str, np.ndarray]) -> dict[str, dict]:
    """Each bus's contribution to ``mix`` (2, n): ``{"band_gain_db": [...], "gain_db": g}`` per bus that is not
    silent (see the module docstring); bands are :data:`fxmix.model.losses.CONTRIB_BAND_EDGES_HZ`."""
    contrib = Contributions(dict(buses))
    if not contrib.names:
        return {}
    n_bands = len(CONTRIB_BAND_EDGES_HZ) - 1
    if contrib.banded:
        mags = np.abs(contrib.band_gains([mix])[0])  # (parts, bands)
        energies = contrib.energy
    else:  # shorter than one STFT frame: one broadband gain
        mags = np.repeat(np.abs(contrib._broadband([mix])[0])[:, None], n_bands, axis=1)
        energies = np.ones_like(mags)
    out = {}
    for i, name in enumerate(contrib.names):
        e = energies[i]
        band_db = [round(20 * math.log10(max(float(g), 1e-6)), 3) if e[k] > 0 else None for k, g in enumerate(mags[i])]
        total = float(e.sum())
        gain_db = 10 * math.log10(max(float((mags[i] ** 2 * e).sum()) / total, 1e-12)) if total > 0 else 0.0
        out[name] = {"band_gain_db": band_db, "gain_db": round(gain_db, 3)}
    return out


def build_decisions(
    res,
    files: Mapping[str, str | os.PathLike | None],
    classes: Mapping[str, str],
    *,
    stages: Sequence[str] = C.STAGES,
) -> dict:
    """The decisions document of one mix.

    Args:
        res: the :class:`fxmix.model.automix.MixResult` of the mix.
        files: track name -> its input file (None for an array); the order is the document's track order.
        classes: track name -> class.
        stages: the normalization stages that ran.
    """
    doc: dict = {"format": DECISIONS_FORMAT, "sample_rate": C.SAMPLE_RATE, "profile": res.profile,
                 "stages": list(stages), "model": res.model}
    tracks = []
    if res.per_track:
        console = {t["name"]: t for t in res.console["tracks"]}
        doc |= {"mixer": "console", "master_gain_db": res.console["master_gain_db"],
                "master": res.console.get("master"), "console": res.console["console"]}
        for key in ("bus_eq_db", "bus_eq_hz", "exciter_db", "transient_cut_db"):  # the class-bus stages it measured
            if res.console.get(key):
                doc[key] = res.console[key]
        if res.console.get("render_input") == "levelled":  # the console rendered the loudness stage's tracks
            doc["stages"] = ["loudness"]
        for name, file in files.items():
            mixer = {k: console[name][k] for k in CONSOLE_FIELDS}
            if "exciter" in console[name]:  # the class-bus exciter's level constants for this track
                mixer["exciter"] = console[name]["exciter"]
            tracks.append(_track(name, file, classes[name], {"scope": "track", **res.params[name]}, mixer))
    else:
        bus = "none" if res.model.startswith("none") else "bus"
        doc |= {"mixer": bus, "master_gain_db": 0.0, "master": None}
        gains = bus_band_gains(res.mix, res.normalized) if bus == "bus" else {}
        if bus == "bus":
            doc["band_edges_hz"] = [round(float(f), 3) for f in CONTRIB_BAND_EDGES_HZ]
        for name, file in files.items():
            c = classes[name]
            mixer = gains.get(c, {"band_gain_db": None, "gain_db": None}) if bus == "bus" else {"gain_db": 0.0,
                                                                                              "pan": 0.0}
            norm = {"scope": "class bus", **(res.params.get(c) or {})}
            tracks.append(_track(name, file, c, norm, dict(mixer, scope="class bus") if bus == "bus" else mixer))
    doc["tracks"] = tracks
    return doc


def _track(name: str, file, cls: str, normalization: dict, mixer: dict) -> dict:
    return {"name": name, "file": None if file is None else str(file), "class": cls,
            "normalization": normalization, "mixer": mixer}


def write_decisions(path: str | os.PathLike, doc: dict) -> Path:
    """Write ``doc`` as JSON (plain write: callers put it inside their atomic output unit)."""
    path = Path(path)
    path.write_text(json.dumps(doc, indent=1) + "\n", encoding="utf-8")
    return path


def read_decisions(path: str | os.PathLike) -> dict:
    """Read and check a decisions document.

    Raises:
        ConfigError: not a decisions document, another schema, or a track without name/class/mixer.
    """
    path = Path(path)
    doc = read_json_file(path, "decisions")
    fix = f"write it again with `fxmix mix ... -o OUT` ({DECISIONS_NAME} next to the mix)"
    if not isinstance(doc, dict) or doc.get("format") != DECISIONS_FORMAT:
        got = doc.get("format") if isinstance(doc, dict) else type(doc).__name__
        raise ConfigError(f"{path}: not a {DECISIONS_FORMAT} document (format {got!r}); {fix}")
    tracks = doc.get("tracks")
    if not isinstance(tracks, list) or not tracks:
        raise ConfigError(f"{path}: 'tracks' must be a non-empty list; {fix}")
    for k, t in enumerate(tracks):
        missing = [key for key in ("name", "class", "normalization", "mixer") if not isinstance(t, dict) or key not in t]
        if missing:
            raise ConfigError(f"{path}: tracks[{k}] has no {missing}; {fix}")
        if doc.get("mixer") == "console":
            bad = [f for f in CONSOLE_FIELDS if not _finite(t["mixer"].get(f))]
            if bad:
                raise ConfigError(f"{path}: tracks[{k}] ({t['name']}): console fields {bad} missing or not numbers")
    return doc


def _finite(v) -> bool:
    if isinstance(v, list):
        return bool(v) and all(_finite(x) for x in v)
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def unique_names(bases: Sequence[str]) -> list[str]:
    """Each name as given, with `` (2)``, `` (3)``... on repeats (so every track has its own key)."""
    names: list[str] = []
    for base in bases:
        name, k = base, 2
        while name in names:
            name, k = f"{base} ({k})", k + 1
        names.append(name)
    return names


def track_names(paths: Sequence[str | os.PathLike]) -> list[str]:
    """A unique name per input file: its stem (:func:`unique_names`)."""
    return unique_names([Path(p).stem for p in paths])

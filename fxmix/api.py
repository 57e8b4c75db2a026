"""``fxmix.automix``: the library call behind ``fxmix mix``, for scripts and notebooks.

    import fxmix
    result = fxmix.automix("stems/")                    # a folder of tracks (names give classes)
    result = fxmix.automix(["Lead Vox.wav", "bass.wav"])  # files
    result = fxmix.automix({"vocals": v, "bass": b}, sample_rate=48000)   # (2, n) or (n,) arrays per class
    result.mix                # (2, n) float32 at result.sample_rate
    result.decisions          # per class (per track with model="console"): each stage's normalization parameters
    result.document           # the decisions.json document: per track, normalization and mixer decisions
    fxmix.automix("stems/", model="console")            # every track normalized and mixed by the console mixer
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from fxmix.dsp import constants as C
from fxmix.dsp.audio import check_audio, resample
from fxmix.dsp.chain import DEFAULT_STAGES
from fxmix.dsp.errors import ConfigError
from fxmix.dsp.profile import Profile
from fxmix.dsp.stems import StemFile, StemMap, load_buses, resolve_stems
from fxmix.model.automix import automix as _automix_buses
from fxmix.model.automix import automix_tracks as _automix_tracks
from fxmix.model.decisions import build_decisions, track_names
from fxmix.model.runtime import resolve_model


@dataclass
class Result:
    """What :func:`automix` decided and made."""

    mix: np.ndarray  # (2, n) float32 at sample_rate
    sample_rate: int
    decisions: dict[str, dict]  # class (track with a track-level mixer) -> {stage: params}
    tracks: list[dict] = field(default_factory=list)  # file -> class, and why (inputs given as files)
    normalized: dict[str, np.ndarray] = field(default_factory=dict)  # class -> (2, n) at 44.1 kHz
    notes: list[str] = field(default_factory=list)
    profile: str = ""
    model: str = ""
    document: dict = field(default_factory=dict)  # decisions.json (fxmix.model.decisions)


def _stem_map(source) -> StemMap | None:
    """A folder, a list of files, or a mapping name -> file: the same resolver as ``fxmix mix``."""
    if isinstance(source, (str, os.PathLike)):
        return resolve_stems(source)
    if isinstance(source, Mapping) and all(isinstance(v, (str, os.PathLike)) for v in source.values()):
        files = [StemFile(Path(p), str(c), "given") for c, p in source.items()]
        return StemMap(files, tuple(dict.fromkeys([*C.CLASSES, *(f.cls for f in files)])))
    if isinstance(source, Sequence) and all(isinstance(v, (str, os.PathLike)) for v in source):
        return resolve_stems(None, files=[Path(p) for p in source])
    return None


def automix(
    stems_or_paths,
    *,
    sample_rate: int | None = None,
    model="default",
    profile: str | Path | Profile | None = None,
    stages: Sequence[str] = DEFAULT_STAGES,
    seed: int = 0,
) -> Result:
    """Effect-normalize and mix tracks; returns the mix and every decision.

    Args:
        stems_or_paths: a folder of tracks, a list of audio files, a mapping class -> file, or a mapping
            class -> array ((2, n) or mono (n,), float) at ``sample_rate``.
        sample_rate: the arrays' rate (default 44100); files carry their own.
        model: ``default`` | ``offline`` | ``causal`` | ``console`` (track-level mixer: every file is one track)
            | ``none`` (the normalized sum) | a model folder | a loaded runtime.
        profile: factory profile name, JSON path or :class:`Profile`; default the model's training profile.
    """
    stem_map = _stem_map(stems_or_paths)
    if isinstance(model, (str, os.PathLike)) or model is None:
        model = resolve_model(None if model is None else str(model))
    if stem_map is not None and getattr(model, "mixes_tracks", False):
        return _automix_files(stem_map, model, profile, stages, seed)
    if stem_map is not None:
        loaded = load_buses(stem_map.by_class(), stem_map.classes)
        buses, rate, notes, tracks = loaded.buses, loaded.input_rate, loaded.notes, stem_map.to_list()
    elif isinstance(stems_or_paths, Mapping):
        rate = int(sample_rate or C.SAMPLE_RATE)
        buses = {str(c): _as_stereo(x, str(c), rate) for c, x in stems_or_paths.items()}
        notes, tracks = [], []
    else:
        raise ConfigError(
            "automix: pass a folder, a list of audio files, {class: file} or {class: (2, n) array}"
        )
    res = _automix_buses(buses, model=model, profile=profile, stages=stages, seed=seed)
    if stem_map is not None:
        names = track_names([f.path for f in stem_map.files])
        files = {n: f.path for n, f in zip(names, stem_map.files)}
        classes = {n: f.cls for n, f in zip(names, stem_map.files)}
    else:  # arrays: one track per class
        files, classes = dict.fromkeys(buses), {c: c for c in buses}
    doc = build_decisions(res, files, classes, stages=stages)
    return Result(
        resample(res.mix, C.SAMPLE_RATE, rate), rate, res.params, tracks, res.normalized, notes + res.notes,
        res.profile, res.model, doc,
    )


def _automix_files(stem_map: StemMap, mixer, profile, stages, seed) -> Result:
    """Every file one track, normalized on its own and mixed by a track-level mixer."""
    names = track_names([f.path for f in stem_map.files])
    loaded = load_buses({n: [f.path] for n, f in zip(names, stem_map.files)}, names)
    tracks = [(n, f.cls, loaded.buses[n]) for n, f in zip(names, stem_map.files)]
    res = _automix_tracks(tracks, model=mixer, profile=profile, stages=stages, seed=seed)
    files = {n: f.path for n, f in zip(names, stem_map.files)}
    doc = build_decisions(res, files, {n: f.cls for n, f in zip(names, stem_map.files)}, stages=stages)
    return Result(
        resample(res.mix, C.SAMPLE_RATE, loaded.input_rate), loaded.input_rate, res.params, stem_map.to_list(),
        res.normalized, loaded.notes + res.notes, res.profile, res.model, doc,
    )


def _as_stereo(x, name: str, rate: int) -> np.ndarray:
    a = np.asarray(x, np.float32)
    if a.ndim == 1:
        a = np.stack([a, a])
    a = check_audio(a, name)
    return resample(a, rate, C.SAMPLE_RATE)

"""The offline library call: class buses -> effect normalization -> mixing network (or the normalized sum)."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from fxmix.dsp import constants as C
from fxmix.dsp.audio import align_lengths
from fxmix.dsp.chain import DEFAULT_STAGES, normalize_stems
from fxmix.dsp.errors import ConfigError
from fxmix.dsp.profile import Profile, load_profile

from .console_runtime import mix_tracks
from .names import DEFAULT_PROFILE, model_profile
from .runtime import resolve_model


@dataclass
class MixResult:
    """A mix and what made it. ``normalized`` and ``params`` are keyed by class bus, or by track when the
    mixer works per track (then ``track_classes`` maps each track to its class and ``console`` holds the
    mixer's per-track decisions, :meth:`fxmix.model.console.ConsoleParams.to_dict`)."""

    mix: np.ndarray
    normalized: dict[str, np.ndarray]
    params: dict[str, dict]
    notes: list[str]
    model: str
    timings_s: dict[str, float] = field(default_factory=dict)
    profile: str = DEFAULT_PROFILE
    track_classes: dict[str, str] = field(default_factory=dict)
    console: dict | None = None

    @property
    def per_track(self) -> bool:
        return bool(self.track_classes)


def peak_note(peak: float) -> str | None:
    """The note for a mix whose sample peak (linear) is above full scale, else None."""
    if peak <= 1.0:
        return None
    return f"mix peaked at {20 * np.log10(peak):+.2f} dBFS; written as float (no clipping applied)"


def automix(
    stems: Mapping[str, np.ndarray],
    sample_rate: int = C.SAMPLE_RATE,
    *,
    model="default",
    profile: str | Path | Profile | None = None,
    stages: Sequence[str] = DEFAULT_STAGES,
    seed: int = 0,
    progress: bool = False,
    on_stem_done: Callable[[str], None] | None = None,
) -> MixResult:
    """Effect-normalize class buses and mix them (network, or the normalized sum with ``model=None/'none'``).

    Args:
        stems: class -> (2, n) float32 bus at ``sample_rate`` (44.1 kHz); missing classes are silence.
        model: "default", "none"/None, a path, or an already loaded runtime (has ``.mix``).
        profile: factory name, path or :class:`Profile`; ``None`` takes the profile the model was trained
            with (its sidecar's ``training.profile``), else ``DEFAULT_PROFILE``.
        progress: a progress bar over the network's chunks.
        on_stem_done: called with each class name as its normalization finishes (a progress bar).
    """
    if sample_rate != C.SAMPLE_RATE:
        raise ConfigError(
            f"automix works at {C.SAMPLE_RATE} Hz; resample the buses first (got {sample_rate})"
        )
    runtime = model if hasattr(model, "mix") or hasattr(model, "mixes_tracks") else resolve_model(model)
    if getattr(runtime, "mixes_tracks", False):  # a track-level mixer takes each class bus as one track
        tracks = [(c, c, np.asarray(x, np.float32)) for c, x in stems.items() if np.any(x)]
        return automix_tracks(tracks, sample_rate, model=runtime, profile=profile, stages=stages, seed=seed,
                              on_stem_done=on_stem_done)
    if profile is None:
        profile = model_profile(runtime)
    prof = profile if isinstance(profile, Profile) else load_profile(profile)
    n = max(x.shape[-1] for x in stems.values())
    buses = {c: np.asarray(stems.get(c, np.zeros((2, n), np.float32)), np.float32) for c in prof.classes}
    buses, _ = align_lengths(buses)
    t0 = time.perf_counter()
    results = normalize_stems(buses, sample_rate, prof, stages=stages, seed=seed, on_stem_done=on_stem_done)
    t1 = time.perf_counter()
    normalized = {c: r.audio for c, r in results.items()}
    notes = [m for r in results.values() for m in r.notes]
    if runtime is None:
        mix = np.sum(list(normalized.values()), axis=0)
        name = "none (normalized sum)"
    else:
        order = list(C.CLASSES)
        x = np.stack([normalized.get(c, np.zeros((2, n), np.float32)) for c in order])
        mix = np.asarray(runtime.mix(x, progress=progress), dtype=np.float32)
        name = str(getattr(runtime, "name", getattr(runtime, "path", "model")))
    t2 = time.perf_counter()
    note = peak_note(float(np.max(np.abs(mix))) if mix.size else 0.0)
    if note:
        notes.append(note)
    return MixResult(
        mix.astype(np.float32),
        normalized,
        {c: r.params_dict() for c, r in results.items()},
        notes,
        name,
        {"normalize_s": t1 - t0, "mix_s": t2 - t1},
        prof.name,
    )


def automix_tracks(
    tracks: Sequence[tuple[str, str, np.ndarray]],
    sample_rate: int = C.SAMPLE_RATE,
    *,
    model="console",
    profile: str | Path | Profile | None = None,
    stages: Sequence[str] = DEFAULT_STAGES,
    seed: int = 0,
    on_stem_done: Callable[[str], None] | None = None,
    master: bool = True,
) -> MixResult:
    """Effect-normalize every track to its class target, then let a track-level mixer decide and render.

    Args:
        tracks: ``(name, class, audio)`` per track, audio (2, n) float32 at 44.1 kHz (lengths may differ:
            zero-padded to the longest); names must be unique.
        model: ``console``, a console mixer folder, or a loaded :class:`fxmix.model.console_runtime.MixerRunner`.
        profile: as :func:`automix`; default the mixer's training profile.
        on_stem_done: called with each track's name as its normalization finishes.
        master: the mixer's sum through the mean master stage (:func:`fxmix.model.console_runtime.mix_tracks`).

    Returns:
        a :class:`MixResult` keyed by track, with ``console`` the mixer's decisions.
    """
    if sample_rate != C.SAMPLE_RATE:
        raise ConfigError(f"automix_tracks works at {C.SAMPLE_RATE} Hz; resample the tracks first (got {sample_rate})")
    runner = model if hasattr(model, "mixes_tracks") else resolve_model(model)
    if not getattr(runner, "mixes_tracks", False):
        raise ConfigError(f"model {model!r} mixes class buses, not tracks; use model='console' (or automix)")
    names = [str(t[0]) for t in tracks]
    if not names or len(set(names)) != len(names):
        raise ConfigError(f"automix_tracks: give one or more tracks with unique names (got {names})")
    prof = profile if isinstance(profile, Profile) else load_profile(profile or model_profile(runner))
    classes = {str(name): str(cls) for name, cls, _ in tracks}
    audio, _ = align_lengths({str(name): np.asarray(x, np.float32) for name, _, x in tracks})
    t0 = time.perf_counter()
    results = normalize_stems(audio, sample_rate, prof, stages=stages, seed=seed, on_stem_done=on_stem_done,
                              classes=classes, silence_gate=False)
    t1 = time.perf_counter()
    normalized = {k: r.audio for k, r in results.items()}
    notes = [m for r in results.values() for m in r.notes]
    levelled = None
    if runner.net.config.render_levelled:  # the console renders the recordings at their class loudness
        lv = normalize_stems(audio, sample_rate, prof, stages=("loudness",), seed=seed, classes=classes,
                             silence_gate=False)
        levelled = [lv[k].audio for k in names]
    mix, console = mix_tracks([(k, classes[k], normalized[k]) for k in names], runner.folder, runner=runner,
                              master=master, dry=[audio[k] for k in names], levelled=levelled, profile=prof)
    if levelled is not None:  # the result holds what the console rendered, and how it was normalized
        results, normalized = lv, dict(zip(names, levelled))
    t2 = time.perf_counter()
    note = peak_note(float(np.max(np.abs(mix))) if mix.size else 0.0)
    if note:
        notes.append(note)
    return MixResult(mix.astype(np.float32), normalized, {k: r.params_dict() for k, r in results.items()}, notes,
                     str(runner.name), {"normalize_s": t1 - t0, "mix_s": t2 - t1}, prof.name, classes, console)

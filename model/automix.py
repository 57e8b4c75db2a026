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

from .runtime import DEFAULT_PROFILE, model_profile, resolve_model


@dataclass
class MixResult:
    mix: np.ndarray
    normalized: dict[str, np.ndarray]
    params: dict[str, dict]
    notes: list[str]
    model: str
    timings_s: dict[str, float] = field(default_factory=dict)
    profile: str = DEFAULT_PROFILE


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
    runtime = model if hasattr(model, "mix") else resolve_model(model)
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
    peak = float(np.max(np.abs(mix))) if mix.size else 0.0
    if peak > 1.0:
        notes.append(f"mix peaked at {20 * np.log10(peak):+.2f} dBFS; written as float (no clipping applied)")
    return MixResult(
        mix.astype(np.float32),
        normalized,
        {c: r.params_dict() for c, r in results.items()},
        notes,
        name,
        {"normalize_s": t1 - t0, "mix_s": t2 - t1},
        prof.name,
    )

"""The effect-normalization chain: ordered stages, on/off switches, and the parameters each stage applied.

Default order (reference): reverb -> eq -> compression -> panning -> loudness; reverb is a training
augmentation and off unless asked for. Every stage is a pure ``plan`` (measure + decide, returns typed params)
and a pure ``apply(audio, sample_rate, params)``; :func:`apply_params` replays recorded params, which is how
presets, the streaming normalizer and exports reproduce a decision.

streaming-safe: no (whole-stem planning); see ``fxmix.dsp.streaming``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace

import numpy as np

from . import constants as C
from .audio import check_audio
from .bands import band_centers_hz
from .errors import ConfigError
from .features import (
    integrated_loudness,
    is_silent,
    peak_normalize_gain_db,
)
from .params import PARAM_TYPES, EqParams
from .profile import Profile
from .stages import compression, eq, loudness, panning, reverb

log = logging.getLogger("fxmix.dsp")

ALL_STAGES = ("reverb", "eq", "compression", "panning", "loudness")
DEFAULT_STAGES = C.STAGES
#: closed-loop EQ corrections after the later stages have coloured the spectrum
EQ_REFINE_PASSES = 1

_APPLY = {
    "reverb": reverb.apply,
    "eq": eq.apply,
    "compression": compression.apply,
    "panning": panning.apply,
    "loudness": loudness.apply,
}


@dataclass
class StemResult:
    """A normalized stem, the params each stage applied (in order) and notes (limits reached, warnings)."""

    audio: np.ndarray
    params: dict = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    silent: bool = False
    timings_s: dict = field(default_factory=dict)

    def params_dict(self) -> dict:
        return {name: (p.to_dict() if p is not None else None) for name, p in self.params.items()}


def check_stages(stages: Sequence[str]) -> tuple[str, ...]:
    unknown = [s for s in stages if s not in ALL_STAGES]
    if unknown:
        raise ConfigError(f"unknown stage(s) {unknown}; stages are {list(ALL_STAGES)}")
    return tuple(s for s in ALL_STAGES if s in stages)  # canonical order


def normalize_stem(
    audio: np.ndarray,
    sample_rate: int,
    class_name: str,
    profile: Profile,
    *,
    stages: Sequence[str] = DEFAULT_STAGES,
    rng: np.random.Generator | None = None,
    reverb_options: Mapping | None = None,
    where: str | None = None,
) -> StemResult:
    """Effect-normalize one stereo stem of class ``class_name`` to ``profile``'s targets.

    Args:
        audio: (2, n) or (n,) float audio at ``sample_rate`` (mono is duplicated).
        sample_rate: Hz; the profile's band grid is in Hz, so any rate works, 44.1 kHz is the reference.
        class_name: one of ``profile.classes``.
        profile: per-class targets; stages whose target the profile lacks are skipped with a note.
        stages: subset of :data:`ALL_STAGES`, applied in canonical order.
        rng: randomness for the reverb augmentation (required when "reverb" is in ``stages``).
        reverb_options: ``ir_dir``, ``p_reverb``, ``p_eq`` for :func:`fxmix.dsp.stages.reverb.draw`.
        where: name for messages (a file or track).
    """
    where = where or class_name
    x = check_audio(audio, where)
    stages = check_stages(stages)
    targets = profile.targets_for(class_name)
    audio_in = x
    result = StemResult(x)
    if is_silent(x):
        result.silent = True
        result.notes.append(f"{where}: silent (peak < {C.SILENCE_PEAK_DB:.0f} dBFS), passed through")
        log.warning(result.notes[-1])
        return result
    for stage in stages:
        t0 = time.perf_counter()
        p = _plan_stage(stage, x, sample_rate, class_name, targets, result.notes, where, rng, reverb_options)
        if p is None:
            continue
        x = _run(stage, x, sample_rate, p, in_place=x is not audio_in)
        result.params[stage] = p
        result.timings_s[stage] = time.perf_counter() - t0
    if "eq" in result.params and any(s in result.params for s in ("compression", "panning")):
        t0 = time.perf_counter()
        x = _refine(x, audio_in, sample_rate, class_name, targets, result, stages, where)
        result.timings_s["eq_refine"] = time.perf_counter() - t0
    result.audio = x
    return result


def _plan_stage(stage, x, sample_rate, class_name, targets, notes: list, where, rng, reverb_options):
    """One stage's params for the stem ``x`` as it reaches that stage; None (and a note) when the profile has
    no target for it. Limits reached and warnings go to ``notes``."""
    if stage == "reverb":
        if rng is None:
            raise ConfigError("the reverb stage needs an rng (pass seed=... or rng=...)")
        return reverb.draw(rng, **dict(reverb_options or {}))
    missing = {
        "eq": targets.spectrum_db is None,
        "compression": targets.onset_peak_mean_db is None,
        "panning": targets.phi is None,
        "loudness": targets.loudness_lufs is None,
    }
    if missing[stage]:
        what = "EQ" if stage == "eq" else stage
        notes.append(f"{where}: profile has no {what} target, {stage} skipped")
        return None
    if stage == "eq":
        return eq.plan(x, sample_rate, targets.spectrum_db)
    if stage == "compression":
        rep = compression.plan(
            x, sample_rate, targets.onset_peak_mean_db, targets.onset_peak_std_db, class_name
        )
        if rep.note and not rep.in_band:
            notes.append(f"{where}: compression: {rep.note}")
        return rep.params
    if stage == "panning":
        return panning.plan(x, sample_rate, targets.phi, class_name)
    p = loudness.plan(x, sample_rate, targets.loudness_lufs, loudness_lufs=integrated_loudness(x, sample_rate))
    if abs(p.missed_lu) > 0.1:
        notes.append(
            f"{where}: loudness target missed by {p.missed_lu:.2f} LU to hold the "
            f"{C.TRUE_PEAK_CEILING_DB:.0f} dBTP ceiling"
        )
    return p


def _refine(x, audio_in, sample_rate, class_name, targets, result: StemResult, stages, where) -> np.ndarray:
    """The closed-loop EQ passes (:data:`EQ_REFINE_PASSES`) on the finished stem ``x``; after the first, the
    compressor is searched again when the refined EQ moved the onset feature out of the band."""
    for i in range(EQ_REFINE_PASSES):
        refined = _refined_eq(x, sample_rate, targets, result)
        if refined is None:
            break
        result.params["eq"] = refined
        x = None  # the replay starts again from the input: let the finished stem go first (memory)
        x = _replay([audio_in], sample_rate, result, stages, relevel_compressor=True, owned=False)
        if (
            i == 0
            and "compression" in result.params
            and not compression.in_band(x, sample_rate, targets.onset_peak_mean_db, targets.onset_peak_std_db)
        ):
            x = None
            x = _recheck_compression(audio_in, sample_rate, targets, class_name, result, stages, where)
    return x


def _run(stage: str, x: np.ndarray, sample_rate: int, params, *, in_place: bool) -> np.ndarray:
    """Apply one stage; into ``x`` itself where ``in_place`` (an intermediate the chain owns, never the
    caller's input) and the stage can (all but reverb): one copy of the stem instead of two."""
    if in_place and stage != "reverb":
        return _APPLY[stage](x, sample_rate, params, out=x)
    return _APPLY[stage](x, sample_rate, params)


def _replay(
    start: list[np.ndarray],
    sample_rate: int,
    result: StemResult,
    stages,
    *,
    relevel_compressor: bool,
    owned: bool,
    first_stage: str | None = None,
) -> np.ndarray:
    """Re-run the recorded stages (loudness re-planned; the compressor optionally re-levelled to the
    -10 dBFS peak its threshold was searched at), from ``first_stage`` on (default: all).

    ``start`` is a one-element list holding the audio to start from; it is emptied, so that the replay
    holds the only reference to an intermediate it ``owned`` and can process it in place (the stages
    write into the chain's own intermediates, never into the caller's input).
    """
    y = start.pop()
    keep = None if owned else y  # the array that must not be written
    first = ALL_STAGES.index(first_stage) if first_stage is not None else 0
    for stage in stages:
        if stage not in result.params or ALL_STAGES.index(stage) < first:
            continue
        if stage == "loudness":
            result.params[stage] = loudness.plan(y, sample_rate, result.params[stage].target_lufs)
        elif stage == "compression" and relevel_compressor:
            gain_db = peak_normalize_gain_db(y)
            result.params[stage] = replace(result.params[stage], input_gain_db=gain_db or 0.0)
        y = _run(stage, y, sample_rate, result.params[stage], in_place=y is not keep)
    return y


def _refined_eq(x, sample_rate, targets, result: StemResult) -> EqParams | None:
    """A closed-loop EQ correction: compression and panning colour the spectrum after the EQ, so the
    residual of the finished stem ``x`` is folded back into the EQ curve (the caller replays the stages with
    their params, compressor re-levelled, loudness re-planned). None when the residual is already under
    0.5 dB (100 Hz-10 kHz)."""
    residual = eq.residual_db(targets.spectrum_db, eq.shape_spectrum_db(x, sample_rate))
    centers = band_centers_hz()
    if np.max(np.abs(residual[(centers >= 100) & (centers <= 10000)])) < 0.5:
        return None
    old = result.params["eq"]
    curve = np.asarray(old.gain_db) + residual
    curve = np.clip(curve - 0.5 * (curve.max() + curve.min()), -C.EQ_MAX_GAIN_DB, C.EQ_MAX_GAIN_DB)
    return EqParams(old.freqs_hz, tuple(float(g) for g in curve))


def _recheck_compression(audio_in, sample_rate, targets, class_name, result: StemResult, stages, where):
    """After EQ refinement the compressor sees a new spectrum and the onset feature left the band: search
    the threshold again on the refined EQ's output and replay the later stages."""
    y = audio_in
    for stage in stages:
        if stage in result.params and ALL_STAGES.index(stage) < ALL_STAGES.index("compression"):
            y = _run(stage, y, sample_rate, result.params[stage], in_place=y is not audio_in)
    rep = compression.plan(y, sample_rate, targets.onset_peak_mean_db, targets.onset_peak_std_db, class_name)
    result.params["compression"] = rep.params
    if rep.note and not rep.in_band:
        result.notes.append(f"{where}: compression (after EQ refinement): {rep.note}")
    start, owned = [y], y is not audio_in
    del y
    return _replay(
        start, sample_rate, result, stages, relevel_compressor=False, owned=owned, first_stage="compression"
    )


def apply_params(audio: np.ndarray, sample_rate: int, params: Mapping[str, object]) -> np.ndarray:
    """Replay recorded stage params (objects or their dicts) on a stem, in canonical stage order."""
    x = audio_in = check_audio(audio)
    for stage in ALL_STAGES:
        if stage not in params or params[stage] is None:
            continue
        p = params[stage]
        if isinstance(p, dict):
            p = PARAM_TYPES[stage].from_dict(p)
        x = _run(stage, x, sample_rate, p, in_place=x is not audio_in)
    return x


def normalize_stems(
    stems: Mapping[str, np.ndarray],
    sample_rate: int,
    profile: Profile,
    *,
    stages: Sequence[str] = DEFAULT_STAGES,
    seed: int | None = 0,
    reverb_options: Mapping | None = None,
    workers: int = 2,
    on_stem_done: Callable[[str], None] | None = None,
) -> dict[str, StemResult]:
    """Normalize a dict class -> (2, n) stem; stems run in parallel threads (the DSP releases the GIL).

    Each stem gets its own child generator of ``seed`` so results do not depend on ``workers``.
    ``on_stem_done`` is called with each stem's name as it finishes (from its worker thread).
    """
    names = list(stems)
    seeds = np.random.SeedSequence(seed).spawn(len(names)) if seed is not None else [None] * len(names)

    def one(i: int) -> StemResult:
        rng = np.random.default_rng(seeds[i]) if seeds[i] is not None else None
        result = normalize_stem(
            stems[names[i]],
            sample_rate,
            names[i],
            profile,
            stages=stages,
            rng=rng,
            reverb_options=reverb_options,
        )
        if on_stem_done is not None:
            on_stem_done(names[i])
        return result

    if workers <= 1 or len(names) <= 1:
        results = [one(i) for i in range(len(names))]
    else:
        with ThreadPoolExecutor(max_workers=workers) as pool:
            results = list(pool.map(one, range(len(names))))
    return dict(zip(names, results))

"""The effect-normalization chain: ordered stages, on/off switches, and the parameters each stage applied.

Default order (reference): reverb -> eq -> compression -> panning -> loudness; reverb is a training
augmentation and off unless asked for. Every stage is a pure ``plan`` (measure + decide, returns typed params)
and a pure ``apply(audio, sample_rate, params)``; :func:`apply_params` replays recorded params, which is how
presets, the streaming normalizer and exports reproduce a decision.

streaming-safe: no (whole-stem planning); see ``fxmix.dsp.streaming``.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace

import numpy as np
import scipy.fft

from . import constants as C
from .audio import check_audio, peak_db
from .bands import band_centers_hz
from .errors import ConfigError
from .features import (
    active_seconds,
    is_silent,
    k_weighted,
    k_weighting_response,
    peak_normalize_gain_db,
    spectrum_from_mean_power,
    stft_power_sums,
)
from .fir import fir_power_response
from .params import PARAM_TYPES, EqParams
from .profile import Profile
from .scratch import ScratchCopy, ScratchPool
from .stages import compression, eq, loudness, panning, reverb

log = logging.getLogger("fxmix.dsp")

ALL_STAGES = ("reverb", "eq", "compression", "panning", "loudness")
DEFAULT_STAGES = C.STAGES

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
    in_place: bool = False,
    scratch: ScratchPool | None = None,
    fft_workers: Callable[[], int] | None = None,
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
        in_place: the caller gives ``audio`` up: where it is (2, n) float32 already, the result is written
            into it and ``result.audio`` is that array (one stem of working memory instead of two).
        scratch: files for the copies the EQ refinement sets aside while it works in the input's array
            (the stems of a song share them); a pool of this stem's own where None.
        fft_workers: the threads each step's FFTs may use, asked at every step (:func:`normalize_stems`
            lends a song's idle workers to its last stem); one where None.
    """
    where = where or class_name
    x0 = check_audio(audio, where)
    stages = check_stages(stages)
    pool = ScratchPool() if scratch is None else scratch
    st = _Stem(sample_rate, class_name, profile.targets_for(class_name), StemResult(x0), where, pool=pool,
               fft_workers=fft_workers or _one)
    st.owned = in_place or x0 is not audio
    if is_silent(x0):
        st.result.silent = True
        st.result.notes.append(f"{where}: silent (peak < {C.SILENCE_PEAK_DB:.0f} dBFS), passed through")
        log.warning(st.result.notes[-1])
        return st.result
    active = active_seconds(x0, sample_rate)
    if active < C.MIN_ACTIVE_S:
        st.result.silent = True
        st.result.notes.append(f"{where}: only {active * 1000:.1f} ms of audio above the silence level, "
                               f"too short to measure its loudness (< {C.MIN_ACTIVE_S * 1000:.0f} ms), passed through")
        log.warning(st.result.notes[-1])
        return st.result
    refine = "eq" in stages and st.has_target("eq") and any(
        s in stages and st.has_target(s) for s in ("compression", "panning")
    )
    try:
        x, sums = _first_pass(x0, st, stages, rng, reverb_options, defer=refine)
        if refine:
            t0, staged = time.perf_counter(), sum(st.result.timings_s.values())
            work = [x]
            del x  # _refine holds the first pass's stem alone, so that it can let it go before the replay
            x = _refine(work, sums, x0, st, stages)
            # the stages' own plans and applies in the replay are timed as theirs; the rest is the refinement's
            spent = time.perf_counter() - t0 - (sum(st.result.timings_s.values()) - staged)
            st.result.timings_s["eq_refine"] = spent
    finally:
        for copy in st.scratch.values():
            pool.give_back(copy)
        if scratch is None:
            pool.close()
    st.result.audio = x
    return st.result


def _one() -> int:
    return 1


@dataclass
class _Stem:
    """What every step of one stem's normalization needs."""

    sample_rate: int
    class_name: str
    targets: object
    result: StemResult
    where: str
    owned: bool = False  # the input array may be written
    #: what the refinement needs again while the input's array is worked in, by slot: "stem" (the input,
    #: later the refined EQ's output), "finished" (the replay's finished stem)
    scratch: dict = field(default_factory=dict)
    pool: ScratchPool | None = None
    fft_workers: Callable[[], int] = _one  # the threads a step's FFTs may use, asked at each step
    #: the compressor's gain curve its plan computed, for the apply of those very params (one compressor run
    #: less): (params, (n,) float32), taken by :meth:`run`
    compressor_gain: tuple | None = None

    def set_aside(self, x: np.ndarray, slot: str = "stem") -> bool:
        """Keep a copy of ``x`` in the stem's scratch file ``slot``, so that its array can be worked in;
        False where it cannot be (the caller did not give the input up, or no scratch file could be
        written): the caller then works in a new array."""
        if not self.owned:
            return False
        held = self.scratch.pop(slot, None)
        copy = self.pool.copy_of(x) if held is None else ScratchCopy.of(x, held)
        if copy is not None:
            self.scratch[slot] = copy
        return copy is not None

    def bring_back(self, out: np.ndarray, slot: str = "stem") -> np.ndarray:
        """The copy set aside in ``slot``, read into ``out``."""
        return self.scratch[slot].load(out)

    def has_target(self, stage: str) -> bool:
        t = self.targets
        return stage == "reverb" or {
            "eq": t.spectrum_db,
            "compression": t.onset_peak_mean_db,
            "panning": t.phi,
            "loudness": t.loudness_lufs,
        }[stage] is not None

    def threads(self):
        """Context of the next step: its FFTs use :attr:`fft_workers` threads (scipy's setting is per
        thread, so the song's other stems keep theirs)."""
        return scipy.fft.set_workers(self.fft_workers())

    def run(self, stage: str, x: np.ndarray, *, in_place: bool, out=None) -> np.ndarray:
        """Apply ``stage``'s recorded params to ``x`` (timed)."""
        t0 = time.perf_counter()
        params = self.result.params[stage]
        kw = {}
        if stage == "compression":
            kept, self.compressor_gain = self.compressor_gain, None
            if kept is not None and kept[0] is params:  # planned on this very x
                kw["gain_curve"] = kept[1]
        with self.threads():
            y = _run(stage, x, self.sample_rate, params, in_place=in_place, out=out, **kw)
        self.add_time(stage, t0)
        return y

    def plan(self, stage: str, x: np.ndarray, **kw):
        """Plan ``stage`` on ``x`` (timed), record its params; None when the profile has no target."""
        t0 = time.perf_counter()
        with self.threads():
            p = _plan_stage(stage, x, self.sample_rate, self.class_name, self.targets, self.result.notes,
                            self.where, stem=self, **kw)
        if p is not None:
            self.result.params[stage] = p
            self.add_time(stage, t0)
        return p

    def add_time(self, stage: str, t0: float) -> None:
        timings = self.result.timings_s
        timings[stage] = timings.get(stage, 0.0) + time.perf_counter() - t0


def _first_pass(x0, st: _Stem, stages, rng, reverb_options, *, defer: bool):
    """Plan and apply the stages in order. With ``defer`` (an EQ refinement follows, which replays the
    stages from the input): the panning is planned from the compressor output's STFT sums, which are
    returned for the refinement, and neither panning nor loudness is applied (the replay does both).
    Returns (stem, STFT sums or None)."""
    x, sums = x0, None
    for stage in stages:
        if defer and stage == "loudness":
            continue
        if defer and stage == "panning" and st.has_target("panning"):
            t0 = time.perf_counter()
            with st.threads():
                sums = stft_power_sums(x)
            t = st.targets
            st.result.params["panning"] = panning.plan_from_sums(
                sums.power[0], sums.power[1], sums.cross, st.sample_rate, t.phi, st.class_name
            )
            st.add_time("panning", t0)
            continue
        if st.plan(stage, x, rng=rng, reverb_options=reverb_options) is not None:
            # with a refinement to follow, the input is set aside (scratch file) before its array is used
            in_place = x is not x0 or (st.owned and not defer)
            if not in_place and defer and st.owned and stage != "reverb":
                in_place = "stem" in st.scratch or st.set_aside(x0)
            x = st.run(stage, x, in_place=in_place)
    return x, sums


def _plan_stage(
    stage, x, sample_rate, class_name, targets, notes: list, where, rng=None, reverb_options=None, stem=None
):
    """One stage's params for the stem ``x`` as it reaches that stage; None (and a note) when the profile has
    no target for it. Limits reached and warnings go to ``notes``; the compressor's gain curve, where its
    plan computed it, to ``stem`` (its :attr:`_Stem.compressor_gain`)."""
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
            x, sample_rate, targets.onset_peak_mean_db, targets.onset_peak_std_db, class_name,
            keep_gain=stem is not None,
        )
        if rep.note and not rep.in_band:
            notes.append(f"{where}: compression: {rep.note}")
        if stem is not None:
            stem.compressor_gain = None if rep.gain is None else (rep.params, rep.gain)
        return rep.params
    if stage == "panning":
        return panning.plan(x, sample_rate, targets.phi, class_name)
    p = loudness.plan(x, sample_rate, targets.loudness_lufs)
    if abs(p.missed_lu) > 0.1:
        notes.append(
            f"{where}: loudness target missed by {p.missed_lu:.2f} LU to hold the "
            f"{C.TRUE_PEAK_CEILING_DB:.0f} dBTP ceiling"
        )
    return p


def _finish(x: np.ndarray, st: _Stem, stages, *, from_stage: str) -> np.ndarray:
    """Apply the recorded stages from ``from_stage`` on into ``x`` (the chain's own array), the loudness
    planned on what reaches it."""
    for stage in stages:
        if ALL_STAGES.index(stage) < ALL_STAGES.index(from_stage):
            continue
        if stage == "loudness":
            st.result.params.pop("loudness", None)
            if st.plan("loudness", x) is None:
                continue
        if stage in st.result.params:
            x = st.run(stage, x, in_place=True)
    return x


def _refine(work: list, sums, x0, st: _Stem, stages) -> np.ndarray:
    """The closed-loop EQ correction and the replay from the input ``x0`` (see :func:`_refined_eq`).

    ``work`` holds (and is emptied of) the first pass's compressor output (or EQ output without
    compression), not yet panned:
    the finished stem's spectrum is predicted from ``sums`` (its STFT sums) and the panning FIRs'
    response, so the first pass neither pans nor levels, except where the limiter may act
    (:func:`_limiter_may_act`): that stem is panned and levelled and its spectrum measured. The replay
    re-levels the compressor to the -10 dBFS peak its threshold was searched at and plans the loudness
    once; where the refined EQ moved the onset feature out of the band, the threshold is searched again
    on the refined EQ's output.
    """
    x = work.pop()
    if _limiter_may_act(x, sums, st, stages):  # its effect on the spectrum is measured, not predicted
        x = _finish(x, st, stages, from_stage="panning")
        refined = _refined_eq(x, st.sample_rate, st.targets, st.result)
        if refined is None:
            return _into_input(x, x0, st)
    else:
        refined = _refined_eq(x, st.sample_rate, st.targets, st.result, shape_db=_finished_shape_db(x, sums, st))
        if refined is None:
            return _into_input(_finish(x, st, stages, from_stage="panning"), x0, st)
    st.result.params["eq"] = refined
    del x  # the first pass's work goes before the replay's
    if "stem" in st.scratch:  # the first pass worked in the input's array: the input comes back
        st.bring_back(x0)
    y = _up_to_eq(x0, st, stages)
    if "compression" not in st.result.params:
        return _into_input(_finish(y, st, stages, from_stage="panning"), x0, st)
    gain_db = peak_normalize_gain_db(y)
    st.result.params["compression"] = replace(st.result.params["compression"], input_gain_db=gain_db or 0.0)
    # the refined EQ's output is kept for a second threshold search: where the input was given up it
    # sits in the input's array, set aside in the scratch file (else in a new array the compressor writes);
    # where it was not, the compressor writes into it and it is made again if needed
    aside = y is x0 and "stem" in st.scratch and st.set_aside(y)
    kept = False  # the finished stem z is in the scratch's "finished" slot
    fresh = st.owned and not aside
    z = st.run("compression", y, in_place=not fresh, out=np.empty_like(y) if fresh else None)
    z = _finish(z, st, stages, from_stage="panning")
    t = st.targets
    with st.threads():
        done = compression.in_band(z, st.sample_rate, t.onset_peak_mean_db, t.onset_peak_std_db)
    if done:
        return _into_input(z, x0, st)
    if not st.owned:
        y = _up_to_eq(x0, st, stages)
    elif aside:  # the finished stem z is in y's array: z is set aside and y comes back
        kept = st.set_aside(z, "finished")
        y, z = st.bring_back(x0), None
    with st.threads():
        rep = compression.plan(y, st.sample_rate, t.onset_peak_mean_db, t.onset_peak_std_db, st.class_name,
                               keep_gain=True)
    if rep.note and not rep.in_band:
        st.result.notes.append(f"{st.where}: compression (after EQ refinement): {rep.note}")
    if rep.params == st.result.params["compression"] and (z is not None or kept):  # lands where it was
        return _into_input(z, x0, st) if z is not None else st.bring_back(x0, "finished")
    st.result.params["compression"] = rep.params
    st.compressor_gain = None if rep.gain is None else (rep.params, rep.gain)
    z = None
    return _finish(y, st, stages, from_stage="compression")


#: how close (dB) the stem's predicted true peak, at the gain its loudness target asks for, may come to the
#: ceiling before the finished spectrum is measured (the panning FIRs' effect on the peaks is not predicted)
LIMITER_MARGIN_DB = 3.0


def _limiter_may_act(x: np.ndarray, sums, st: _Stem, stages) -> bool:
    """Whether the loudness stage's limiter may act on the finished stem (``x`` panned and levelled).

    The limiter is the one non-linear step after the compressor: where it acts, the finished spectrum
    cannot be predicted from ``x``'s (its gain dips take the tops off the hits, which a transient stem's
    spectrum shows), so the stem is panned and levelled and its spectrum measured."""
    if "loudness" not in stages or not st.has_target("loudness"):
        return False
    lufs = _panned_loudness(x, sums, st)
    if not np.isfinite(lufs):
        return False
    peak = loudness.true_peak_db(x) + st.targets.loudness_lufs - lufs
    return bool(peak > C.TRUE_PEAK_CEILING_DB - LIMITER_MARGIN_DB)


def _panned_loudness(x: np.ndarray, sums, st: _Stem) -> float:
    """BS.1770 loudness (LUFS) of ``x`` after the panning FIRs, ungated, from ``sums`` (``x``'s STFT sums):
    each bin's power through the FIRs and the K-weighting, scaled so that the unweighted power is ``x``'s
    mean square. The gates only drop quiet blocks, so this is at most the gated loudness: the gain it
    implies is never under the loudness stage's. Without sums or panning: ``x``'s gated loudness, measured."""
    if sums is None or "panning" not in st.result.params:
        return k_weighted(x, st.sample_rate).lufs()
    raw = float(sums.power.sum())
    mean_square = sum(float(np.einsum("i,i->", c, c)) for c in x) / x.shape[-1]  # not BLAS (see weigh_bins)
    if raw <= 0.0 or mean_square <= 0.0:
        return float("-inf")
    bins_hz = np.fft.rfftfreq(C.ANALYSIS_FFT, 1.0 / st.sample_rate)
    k2 = np.abs(k_weighting_response(bins_hz, st.sample_rate)) ** 2
    taps = panning.taps(st.result.params["panning"], st.sample_rate)
    weighted = sum(float(np.dot(p * fir_power_response(h, C.ANALYSIS_FFT), k2)) for p, h in zip(sums.power, taps))
    return -0.691 + 10.0 * np.log10(max(mean_square * weighted / raw, 1e-30))


def _up_to_eq(x0: np.ndarray, st: _Stem, stages) -> np.ndarray:
    """The recorded stages up to the EQ (reverb, EQ) on the input: into the input where it was given up."""
    y = x0
    for stage in stages:
        if stage in st.result.params and ALL_STAGES.index(stage) <= ALL_STAGES.index("eq"):
            y = st.run(stage, y, in_place=y is not x0 or st.owned)
    return y


def _into_input(z: np.ndarray, x0: np.ndarray, st: _Stem) -> np.ndarray:
    """The finished stem ``z``, moved into the input's array where the caller gave it up."""
    if st.owned and z is not x0:
        np.copyto(x0, z)
        return x0
    return z


def _finished_shape_db(x: np.ndarray, sums, st: _Stem) -> np.ndarray:
    """Band spectrum shape of the finished stem: ``x`` through the panning FIRs (predicted from the STFT
    sums of ``x``, ``sums``, and the FIRs' |H|^2: they are linear) and a gain (no shape)."""
    if sums is None or "panning" not in st.result.params:
        return eq.shape_spectrum_db(x, st.sample_rate)
    h2 = [fir_power_response(h, C.ANALYSIS_FFT) for h in panning.taps(st.result.params["panning"], st.sample_rate)]
    mean_power = sum(p * h for p, h in zip(sums.power, h2)) / (sums.power.shape[0] * sums.n_frames)
    return spectrum_from_mean_power(mean_power, st.sample_rate, C.ANALYSIS_FFT, 0.0)


def _run(stage: str, x: np.ndarray, sample_rate: int, params, *, in_place: bool, out=None, **kw) -> np.ndarray:
    """Apply one stage; into ``x`` itself where ``in_place`` (an intermediate the chain owns, never the
    caller's input), into ``out`` where given, and the stage can (all but reverb). ``kw`` go to the stage's
    apply (the compressor's ``gain_curve``)."""
    if stage != "reverb" and (in_place or out is not None):
        return _APPLY[stage](x, sample_rate, params, out=x if in_place else out, **kw)
    return _APPLY[stage](x, sample_rate, params, **kw)


def _refined_eq(x, sample_rate, targets, result: StemResult, shape_db=None) -> EqParams | None:
    """A closed-loop EQ correction: compression and panning colour the spectrum after the EQ, so the
    residual of the finished stem ``x`` (its band shape ``shape_db`` where the caller has it) is folded
    back into the EQ curve (the caller replays the stages with their params, compressor re-levelled,
    loudness re-planned). None when the residual is already under 0.5 dB (100 Hz-10 kHz)."""
    shape = eq.shape_spectrum_db(x, sample_rate) if shape_db is None else shape_db
    residual = eq.residual_db(targets.spectrum_db, shape)
    centers = band_centers_hz()
    if np.max(np.abs(residual[(centers >= 100) & (centers <= 10000)])) < 0.5:
        return None
    old = result.params["eq"]
    curve = np.asarray(old.gain_db) + residual
    curve = np.clip(curve - 0.5 * (curve.max() + curve.min()), -C.EQ_MAX_GAIN_DB, C.EQ_MAX_GAIN_DB)
    return EqParams(old.freqs_hz, tuple(float(g) for g in curve))


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


def stem_rngs(seed: int | None, n: int) -> list[np.random.Generator | None]:
    """One child generator of ``seed`` per stem of a song (so results do not depend on the workers)."""
    if seed is None:
        return [None] * n
    return [np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(n)]


def silence_gate_db(peaks: Mapping[str, float]) -> float:
    """Sample peak (dBFS) under which a stem is near-silent next to the song's loudest stem."""
    return max(peaks.values(), default=0.0) - C.RELATIVE_SILENCE_DB


def near_silent_result(name: str, audio: np.ndarray, peak: float, gate: float) -> StemResult | None:
    """A stem near-silent next to the others (``peak`` under ``gate``, not silent) is passed through untouched,
    with a note: normalizing it would boost noise by tens of dB. None for any other stem."""
    if not C.SILENCE_PEAK_DB <= peak < gate:
        return None
    result = StemResult(check_audio(audio, name), silent=True)
    result.notes.append(f"{name}: peak {peak:.1f} dBFS, more than {C.RELATIVE_SILENCE_DB:.0f} dB under the "
                        "loudest stem: silent, passed through")
    log.warning(result.notes[-1])
    return result


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
    on_result: Callable[[str, StemResult], None] | None = None,
    in_place: bool = False,
    classes: Mapping[str, str] | None = None,
    silence_gate: bool = True,
) -> dict[str, StemResult]:
    """Normalize a dict class -> (2, n) stem; stems run in parallel threads (the DSP releases the GIL).

    ``classes`` maps each key to its class where the keys are track names (track-level normalization);
    ``silence_gate=False`` normalizes every stem, however quiet next to the others (the tracks of a session,
    as the console mixer is trained).

    Each stem gets its own child generator of ``seed`` so results do not depend on ``workers``.
    ``on_stem_done`` is called with each stem's name as it finishes (from its worker thread), after
    ``on_result`` with its name and result (a caller that writes each stem while the others are at work).
    ``in_place``: the caller gives the arrays up; each result is written into its stem's array where that
    is (2, n) float32 (peak memory: the stems plus about one stem of work per worker).
    """
    names = list(stems)
    rngs = stem_rngs(seed, len(names))
    peaks = {k: peak_db(np.asarray(stems[k])) for k in names}
    gate = silence_gate_db(peaks) if silence_gate else float("-inf")
    classes = classes or {k: k for k in names}

    unfinished = [len(names)]
    lock = threading.Lock()

    def fft_workers() -> int:  # one thread per idle worker joins the last stems' FFTs
        return max(1, workers - unfinished[0] + 1)

    def one(i: int) -> StemResult:
        result = near_silent_result(names[i], stems[names[i]], peaks[names[i]], gate)
        if result is None:
            result = normalize_stem(
                stems[names[i]],
                sample_rate,
                classes[names[i]],
                profile,
                stages=stages,
                rng=rngs[i],
                reverb_options=reverb_options,
                where=names[i],
                in_place=in_place,
                scratch=scratch,
                fft_workers=fft_workers,
            )
        with lock:
            unfinished[0] -= 1
        if on_result is not None:
            on_result(names[i], result)
        if on_stem_done is not None:
            on_stem_done(names[i])
        return result

    scratch = ScratchPool()  # the stems pass their scratch files on (see normalize_stem)
    try:
        if workers <= 1 or len(names) <= 1:
            results = [one(i) for i in range(len(names))]
        else:
            with ThreadPoolExecutor(max_workers=workers) as pool:
                results = list(pool.map(one, range(len(names))))
    finally:
        scratch.close()
    return dict(zip(names, results))

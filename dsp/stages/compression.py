"""Compression stage: reach the class's onset-peak band with a bisection on the threshold.

Reference (fxnorm-spec.md §1.3): unlinked per-channel grid search over up to ~1000 (ratio, threshold)
settings with a numba compressor and aubio onsets re-run every step. Here: one stereo-linked pedalboard
``Compressor`` (the same effect runs in real time and in exported chains) at the class ratio, onsets found
once on the input and reused (compression does not move onsets), and a bisection on the threshold
(<= 10 compressor runs) between 0 dB and COMPRESSOR_MIN_THRESHOLD_DB. Downward only, like the reference:
compression lowers the feature (the peaks above the 75th percentile get closer to the rest, under the
-10 dBFS peak normalization), so a stem already below the band is left alone, and one still above it at the
threshold limit gets the limit; both are reported.

streaming-safe: plan no; apply yes (pedalboard Compressor with reset=False).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np
import pedalboard

from .. import constants as C
from ..features import (
    db_to_gain32,
    linked_envelope,
    linked_envelope_at,
    measure_dynamics,
    onset_boundaries_from,
    peak_gain_db,
    peak_normalize,
    peak_normalized_bounds,
    peak_stats_db,
    segment_peaks,
)
from ..params import CompressorParams

MAX_STEPS = 9
VERIFY_STEPS = 3


@dataclass(frozen=True)
class CompressionReport:
    params: CompressorParams
    before_db: float
    after_db: float
    target_low_db: float
    target_high_db: float
    in_band: bool
    note: str = ""
    #: with ``plan(..., keep_gain=True)``: the linked gain curve (n,) float32 of ``params`` on the input, where
    #: the search computed it (the compressor run :func:`apply` would make again), else None
    gain: np.ndarray | None = field(default=None, repr=False, compare=False)


def class_settings(class_name: str) -> dict:
    return dict(C.COMPRESSOR_SETTINGS.get(class_name, C.COMPRESSOR_DEFAULT))


#: samples per compressor call: pedalboard with reset=False continues its state, so chunked runs give the
#: same gain as one call (a multiple of pedalboard's 8192-sample buffer) with bounded temporaries
_CHUNK_SAMPLES = 1 << 16


def _chunk_edges(n: int) -> list[int]:
    edges = [*range(0, n, _CHUNK_SAMPLES), n]
    if len(edges) > 2 and edges[-1] - edges[-2] < 2:  # a (1, 1) buffer is ambiguous to pedalboard
        del edges[-2]
    return edges


def held_ratio(y: np.ndarray, detector: np.ndarray, held) -> np.ndarray:
    """A compressor's gain recovered from its output ``y`` for a non-negative ``detector`` input, per sample of
    (n,) or (rows, n) arrays: ``y / detector`` where the detector is live (> 1e-7), else the row's last live
    value (``held``, a scalar or (rows,), before the first), at most 1; float32."""
    d = np.atleast_2d(detector)
    if d.size and d.min() > 1e-7:  # all live (the usual case): a plain division, no mask
        g = np.divide(np.atleast_2d(y), d, dtype=np.float32)
    else:
        live = d > 1e-7
        g = np.ones(d.shape, np.float32)
        np.divide(np.atleast_2d(y), d, out=g, where=live, casting="unsafe")
        before = np.broadcast_to(np.reshape(np.asarray(held, np.float32), (-1,)), (d.shape[0],))
        for row, mask, first in zip(g, live, before):
            _hold(row, mask, first)
    np.minimum(g, np.float32(1.0), out=g)
    return g if np.ndim(detector) > 1 else g[0]


def _hold(g: np.ndarray, live: np.ndarray, first: np.float32) -> None:
    """In place: every sample of ``g`` where ``live`` is False takes the last live sample's value (``first``
    before any); only those samples are touched (a detector is dead in a few places, if any)."""
    dead = np.flatnonzero(~live)
    if dead.size == 0:
        return
    alive = np.flatnonzero(live)
    last = np.searchsorted(alive, dead) - 1  # the live sample before each dead one (-1: none)
    g[dead] = np.where(last >= 0, g[alive[np.maximum(last, 0)]] if alive.size else first, first)


class _LinkedGain:
    """:func:`linked_gain` one chunk at a time; the compressor state and the held gain carry over."""

    def __init__(self, comp: pedalboard.Compressor, sample_rate: int, reset: bool):
        self.comp, self.sample_rate, self.reset = comp, sample_rate, reset
        self.held = np.float32(1.0)  # gain of the last live sample so far (1 before any)

    def __call__(self, detector: np.ndarray) -> np.ndarray:
        y = self.comp.process(np.asarray(detector, np.float32)[None, :], self.sample_rate, reset=self.reset)[
            0
        ]
        self.reset = False
        g = held_ratio(y, detector, self.held)
        if g.size:
            self.held = g[-1]
        return g

    def prime(self, head: np.ndarray) -> None:
        """Settle the compressor on the mirror image of ``head`` (the detector's first samples), as if the
        stem had been playing before its first sample; the output is dropped."""
        pre = np.asarray(head[1 : 1 + int(PRIME_S * self.sample_rate)], np.float32)[::-1]
        if pre.size > 1:  # a (1, 1) buffer is ambiguous to pedalboard
            self(np.ascontiguousarray(pre))


#: seconds of pre-roll that settle the compressor before a stem's first sample (>> every attack time)
PRIME_S = 0.5


def linked_gain(
    detector: np.ndarray,
    sample_rate: int,
    comp: pedalboard.Compressor,
    reset: bool = True,
    *,
    prime: bool = False,
):
    """Per-sample gain of a pedalboard Compressor driven by a (n,) non-negative detector signal.

    JUCE's compressor (inside pedalboard) is unlinked per channel and returns ``gain * input``; feeding it
    the channel-wise max |x| and dividing recovers the gain, which is then applied to both channels
    (stereo-linked). Samples where the detector is ~0 hold the previous gain. Runs in chunks of
    _CHUNK_SAMPLES (the same result as one call, bounded temporaries); returns (n,) float32.

    ``prime``: the detector is a whole stem, which may start abruptly at full level; the compressor is
    first settled on its mirrored start (:data:`PRIME_S`), so that the first attack is not passed
    through uncompressed (a click above the compressed rest). Offline only: a stream has no mirror.
    """
    gain = _LinkedGain(comp, sample_rate, reset)
    if prime:
        gain.prime(detector)
    if 1 < detector.shape[-1] <= _CHUNK_SAMPLES:  # one chunk (every streaming hop): no chunk bookkeeping
        return gain(detector)
    edges = _chunk_edges(detector.shape[-1])
    g = np.empty(detector.shape[-1], np.float32)
    for a, b in zip(edges[:-1], edges[1:]):
        g[a:b] = gain(detector[a:b])
    return g


def _compress(
    x: np.ndarray, sample_rate: int, threshold_db: float, settings: dict, *, out=None, detector=None,
    input_gain: np.float32 | None = None,
) -> np.ndarray:
    """Stereo-linked compression of ``x`` (channels, n) into ``out`` (may be ``x`` itself) or a new array.

    ``detector`` is ``linked_envelope(x)`` where the caller has it; otherwise it is made chunk by chunk.
    ``input_gain``: compress ``x * input_gain`` (float32), each chunk scaled on the way (one pass over the
    stem instead of two; ``detector`` is then that of the scaled stem).
    """
    comp = pedalboard.Compressor(
        threshold_db=threshold_db,
        ratio=settings["ratio"],
        attack_ms=settings["attack_ms"],
        release_ms=settings["release_ms"],
    )
    if out is None:
        out = np.empty(x.shape, np.result_type(x.dtype, np.float32))
    gain = _LinkedGain(comp, sample_rate, True)
    n_head = 1 + int(PRIME_S * sample_rate)
    head = x[:, :n_head] if input_gain is None else np.multiply(x[:, :n_head], input_gain, dtype=np.float32)
    gain.prime(linked_envelope(head) if detector is None else detector[:n_head])
    edges = _chunk_edges(x.shape[-1])
    for a, b in zip(edges[:-1], edges[1:]):
        c = x[:, a:b] if input_gain is None else np.multiply(x[:, a:b], input_gain, out=out[:, a:b])
        d = linked_envelope(c) if detector is None else detector[a:b]
        np.multiply(c, gain(d)[None, :], out=out[:, a:b])
    return out


def _gains(env_at, n: int, sample_rate: int, comp: pedalboard.Compressor):
    """``linked_gain(env, ..., prime=True)`` of an envelope made chunk by chunk (``env_at(a, b)``):
    yields (a, b, envelope a..b, gain a..b)."""
    gain = _LinkedGain(comp, sample_rate, True)
    gain.prime(env_at(0, min(n, 1 + int(PRIME_S * sample_rate))))
    edges = _chunk_edges(n)
    for a, b in zip(edges[:-1], edges[1:]):
        d = env_at(a, b)
        yield a, b, d, gain(d)


def _compressed_dynamics(audio, x_gain, env_at, g: np.ndarray | None, sample_rate: int):
    """Mean onset-peak dB of the compressed stem, ``measure_dynamics(x * g)[0]`` with
    ``x = (audio * x_gain).astype(float32)`` (the peak-normalized stem; ``audio`` where x_gain is None),
    ``env_at(a, b)`` = samples a..b of ``linked_envelope(x)`` and ``g`` a linked gain (None = 1), computed
    chunk by chunk without the (channels, n) copies x and x * g nor a whole envelope.

    The float32 arithmetic is the same element for element; the output's peak and envelope come from
    ``env * g`` (|x_c| * g rounds monotonically, so max_c |x_c * g| == max_c |x_c| * g exactly).
    """
    n = audio.shape[-1]
    edges = [*range(0, n, _CHUNK_SAMPLES), n]

    def env_g(a: int, b: int) -> np.ndarray:
        return env_at(a, b) if g is None else env_at(a, b) * g[a:b]

    peak = max(float(env_g(a, b).max()) for a, b in zip(edges[:-1], edges[1:]))
    y_gain = db_to_gain32(peak_gain_db(peak))

    def mono_at(a: int, b: int) -> np.ndarray:
        c = audio[:, a:b] if x_gain is None else (audio[:, a:b] * x_gain).astype(np.float32, copy=False)
        if g is not None:
            c = c * g[None, a:b]
        if y_gain is not None:
            c = (c * y_gain).astype(np.float32, copy=False)
        return c.mean(axis=0)

    def y_env(a: int, b: int) -> np.ndarray:
        y = env_g(a, b)
        return y if y_gain is None else y * y_gain

    bounds = onset_boundaries_from(mono_at, n, sample_rate)
    return peak_stats_db(segment_peaks(y_env, n, bounds, edges))[0]


def target_band(target_mean_db: float, target_std_db: float) -> tuple[float, float]:
    """(low, high) dB of the class's onset-peak band: the target mean ± one standard deviation."""
    return target_mean_db - target_std_db, target_mean_db + target_std_db


def feature_in_band(mean_db: float, target_mean_db: float, target_std_db: float) -> bool:
    """Whether an onset-peak mean (dB) lies in the class band (edges included).

    The one in-band rule: the threshold search, the offline chain's re-check after EQ refinement and the
    streaming planner's keep-or-re-plan check all decide with it.
    """
    lo, hi = target_band(target_mean_db, target_std_db)
    return lo <= mean_db <= hi


def in_band(audio: np.ndarray, sample_rate: int, target_mean_db: float, target_std_db: float) -> bool:
    """Whether ``audio``'s onset-peak feature (measured peak-normalized to -10 dBFS) is in the class band."""
    mean_db, _ = measure_dynamics(audio, sample_rate)
    return feature_in_band(mean_db, target_mean_db, target_std_db)


def setting_in_band(
    audio: np.ndarray, sample_rate: int, params: CompressorParams, target_mean_db: float, target_std_db: float
) -> bool:
    """Whether ``params`` put ``audio``'s onset feature in the band, with the threshold taken at the -10 dBFS
    peak level the search uses (``audio`` is peak-normalized first, the params' input gain ignored)."""
    x, _ = peak_normalize(audio)
    y = apply(x, sample_rate, replace(params, input_gain_db=0.0))
    return in_band(y, sample_rate, target_mean_db, target_std_db)


def leave_uncompressed(report: CompressionReport, target_std_db: float) -> bool:
    """Whether a stem the search could not bring into the band is better left uncompressed: even the
    threshold limit moved its onset feature by less than half the band's standard deviation, so compressing
    would only change the sound.

    The streaming planner applies it when it re-plans a window of running audio. The offline chain does not
    call it: offline, a stem the search cannot bring into the band keeps the threshold limit the search
    reached (reported in the notes), and applying this rule there would change offline mixes and presets
    (the bundled demo's "other" stem is such a stem: its mix would change by up to 0.5 in sample value).
    """
    return not report.in_band and report.before_db - report.after_db < 0.5 * target_std_db


def uncompressed(params: CompressorParams) -> CompressorParams:
    """``params`` with the compressor off (threshold 0 dB, ratio 1); the input gain is kept."""
    return replace(params, threshold_db=0.0, ratio=1.0)


class _Search:
    """The onset feature of the peak-normalized stem compressed at a given threshold, as the search needs it:
    :meth:`fast` reuses the input's onsets, :meth:`full` re-detects onsets on the output. The linked
    detector (also max_ch |y| of the output: gain >= 0) is made once (half a stem of memory) and read by
    the bisection's steps; :meth:`release` lets it go before the verification, whose gain curve takes
    that memory (each step then makes the detector chunk by chunk).

    ``keep_gain``: the gain curve of the latest step made without the whole detector (after :meth:`release`,
    so that it takes the detector's memory) is kept (:attr:`kept`: (threshold dB, (n,) float32)), so that
    the compressor run at the threshold the search ends on need not be made again by :func:`apply` (the
    same compressor on the same detector: the same curve, sample for sample)."""

    def __init__(self, audio: np.ndarray, sample_rate: int, class_name: str, keep_gain: bool = False):
        self.audio, self.sample_rate = audio, sample_rate
        self.settings = class_settings(class_name)
        self.bounds, self.gain, self.gain_db = peak_normalized_bounds(audio, sample_rate)
        self.n = audio.shape[-1]
        self._plain = None
        self.keep_gain = keep_gain
        self.kept: tuple[float, np.ndarray] | None = None
        self.env = linked_envelope(audio, self.gain)

    def kept_gain(self, threshold_db: float) -> np.ndarray | None:
        """The kept gain curve where the latest step was at ``threshold_db``, else None."""
        return self.kept[1] if self.kept is not None and self.kept[0] == threshold_db else None

    def env_at(self, a: int, b: int) -> np.ndarray:
        return self.env[a:b] if self.env is not None else linked_envelope_at(self.audio, self.gain, a, b)

    def release(self) -> None:
        self.env = None

    def restore(self) -> None:
        """The whole detector again (for more bisection steps), the kept gain curve let go."""
        self.kept = None
        self.env = linked_envelope(self.audio, self.gain)

    def _keeping(self) -> bool:
        return self.keep_gain and self.env is None

    def _compressor(self, threshold_db: float) -> pedalboard.Compressor:
        s = self.settings
        return pedalboard.Compressor(
            threshold_db=threshold_db, ratio=s["ratio"], attack_ms=s["attack_ms"], release_ms=s["release_ms"]
        )

    def fast(self, threshold_db: float) -> float:
        if threshold_db >= 0.0:
            if self._plain is None:
                self._plain = peak_stats_db(segment_peaks(self.env_at, self.n, self.bounds))[0]
            return self._plain
        steps = _gains(self.env_at, self.n, self.sample_rate, self._compressor(threshold_db))
        self.kept = None
        kept = np.empty(self.n, np.float32) if self._keeping() else None

        def y_at(a: int, b: int) -> np.ndarray:  # segment_peaks asks for the chunks in order
            _, _, d, g = next(steps)
            if kept is not None:
                kept[a:b] = g
            return g * d

        peaks = segment_peaks(y_at, self.n, self.bounds, _chunk_edges(self.n))
        if kept is not None:
            self.kept = (threshold_db, kept)
        peaks *= np.float32(10 ** (C.DYNAMICS_PEAK_NORM_DB / 20) / max(float(peaks.max()), 1e-12))
        return peak_stats_db(peaks)[0]

    def full(self, threshold_db: float) -> float:
        g = None
        self.kept = None
        if threshold_db < 0.0:
            g = np.empty(self.n, np.float32)
            for a, b, _, gc in _gains(self.env_at, self.n, self.sample_rate, self._compressor(threshold_db)):
                g[a:b] = gc
            if self._keeping():
                self.kept = (threshold_db, g)
        return _compressed_dynamics(self.audio, self.gain, self.env_at, g, self.sample_rate)

    def params(self, threshold_db: float) -> CompressorParams:
        s = self.settings
        ratio = s["ratio"] if threshold_db < 0 else 1.0
        return CompressorParams(min(threshold_db, 0.0), ratio, s["attack_ms"], s["release_ms"], self.gain_db)


def _bisect(measure, target_mean_db: float, target_std_db: float) -> float:
    """Threshold found by bisection towards the band centre (``measure`` decreases as the threshold drops);
    the threshold limit when no step lands in the band."""
    t_lo, t_hi = C.COMPRESSOR_MIN_THRESHOLD_DB, 0.0
    best_t = t_lo
    for _ in range(MAX_STEPS):
        mid = 0.5 * (t_lo + t_hi)
        f_mid = measure(mid)
        if feature_in_band(f_mid, target_mean_db, target_std_db):
            best_t = mid
            if abs(f_mid - target_mean_db) < 0.25 * target_std_db:
                break
        if f_mid > target_mean_db:
            t_hi = mid
        else:
            t_lo = mid
    return best_t


def _verify(measure_full, best_t: float, target_mean_db: float, target_std_db: float) -> tuple[float, float]:
    """(threshold, full feature): the search reused the input's onsets; check ``best_t`` with the full
    feature (onsets re-detected on the output) and take up to VERIFY_STEPS more bisection steps on it."""
    t_lo, t_hi = C.COMPRESSOR_MIN_THRESHOLD_DB, 0.0
    best_f = float("nan")
    for _ in range(VERIFY_STEPS):
        best_f = measure_full(best_t)
        if feature_in_band(best_f, target_mean_db, target_std_db):
            break
        if best_f > target_mean_db:
            t_hi = best_t
        else:
            t_lo = best_t
        best_t = 0.5 * (t_lo + t_hi) if t_hi - t_lo > 0.2 else best_t
    return best_t, best_f


def plan(
    audio: np.ndarray,
    sample_rate: int,
    target_mean_db: float,
    target_std_db: float,
    class_name: str,
    *,
    keep_gain: bool = False,
) -> CompressionReport:
    """Search the threshold that brings the onset feature into the class band (see the module docstring).

    ``keep_gain``: the report carries the gain curve of its params where the search computed it
    (``report.gain``, for :func:`apply`'s ``gain``: one compressor run less, a stem's length of float32
    held until then)."""
    search = _Search(audio, sample_rate, class_name, keep_gain=keep_gain)
    lo_t, hi_t = target_band(target_mean_db, target_std_db)
    before = search.fast(0.0)

    def report(threshold_db: float, after_db: float, note: str) -> CompressionReport:
        hit = feature_in_band(after_db, target_mean_db, target_std_db)
        params = search.params(threshold_db)
        gain = search.kept_gain(threshold_db) if params.ratio > 1.0 and params.threshold_db < 0.0 else None
        return CompressionReport(params, before, after_db, lo_t, hi_t, hit, note, gain)

    if feature_in_band(before, target_mean_db, target_std_db):
        return report(0.0, before, "already in band")
    if before < lo_t:
        # compression only lowers the feature (peaks evened out under the -10 dBFS peak normalization)
        return report(
            0.0,
            before,
            f"onset peaks {before:.2f} dB already below the band; downward compression cannot raise them",
        )
    t_min = C.COMPRESSOR_MIN_THRESHOLD_DB
    if keep_gain:  # this step's gain curve may be the one applied: kept in the detector's memory
        search.release()
    at_min = search.fast(t_min)
    if at_min > hi_t:
        note = f"band not reached at the {t_min:.0f} dB threshold limit (limit of search: {at_min:.2f} dB)"
        return report(t_min, at_min, note)
    if keep_gain:
        search.restore()
    best_t = _bisect(search.fast, target_mean_db, target_std_db)
    search.release()
    best_t, best_f = _verify(search.full, best_t, target_mean_db, target_std_db)
    hit = feature_in_band(best_f, target_mean_db, target_std_db)
    return report(best_t, best_f, "" if hit else f"bisection ended outside the band at {best_f:.2f} dB")


def apply(
    audio: np.ndarray,
    sample_rate: int,
    params: CompressorParams,
    *,
    out: np.ndarray | None = None,
    gain_curve: np.ndarray | None = None,
) -> np.ndarray:
    """Input gain then the stereo-linked compressor (bypassed when ratio == 1).

    ``out``: (channels, n) float32 array for the result, may be ``audio`` itself (processed in place).
    ``gain_curve``: the compressor's linked gain for this ``audio`` and ``params``, where the caller has it
    (``plan(..., keep_gain=True).gain``): applied instead of running the compressor again.
    """
    gain = np.float32(10 ** (params.input_gain_db / 20))
    if params.ratio <= 1.0 or params.threshold_db >= 0.0:
        return (audio * gain).astype(np.float32, copy=False) if out is None else np.multiply(audio, gain, out=out)
    if out is None:
        out = np.empty(np.shape(audio), np.float32)
    if gain_curve is not None:
        edges = _chunk_edges(audio.shape[-1])
        for a, b in zip(edges[:-1], edges[1:]):
            c = np.multiply(audio[:, a:b], gain, out=out[:, a:b])  # what _compress makes of each chunk
            np.multiply(c, gain_curve[None, a:b], out=out[:, a:b])
        return out
    settings = {"ratio": params.ratio, "attack_ms": params.attack_ms, "release_ms": params.release_ms}
    return _compress(audio, sample_rate, params.threshold_db, settings, out=out, input_gain=gain)

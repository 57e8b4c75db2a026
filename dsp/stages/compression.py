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

from dataclasses import dataclass

import numpy as np
import pedalboard

from .. import constants as C
from ..features import (
    db_to_gain32,
    envelope_peak_stats,
    linked_envelope,
    onset_boundaries_from,
    peak_gain_db,
    peak_normalized_onsets,
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


def class_settings(class_name: str) -> dict:
    return dict(C.COMPRESSOR_SETTINGS.get(class_name, C.COMPRESSOR_DEFAULT))


#: samples per compressor call: pedalboard with reset=False continues its state, so chunked runs give the
#: same gain as one call (a multiple of pedalboard's 8192-sample buffer) with bounded temporaries
_CHUNK_SAMPLES = 1 << 18


def _chunk_edges(n: int) -> list[int]:
    edges = [*range(0, n, _CHUNK_SAMPLES), n]
    if len(edges) > 2 and edges[-1] - edges[-2] < 2:  # a (1, 1) buffer is ambiguous to pedalboard
        del edges[-2]
    return edges


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
        live = detector > 1e-7
        g = np.ones(detector.shape, np.float32)
        np.divide(y, detector, out=g, where=live, casting="unsafe")
        if not live.all():
            idx = np.where(live, np.arange(live.size), -1)
            np.maximum.accumulate(idx, out=idx)
            g = np.where(idx >= 0, g[idx], self.held).astype(np.float32, copy=False)
        if g.size:
            self.held = g[-1]
        return np.minimum(g, np.float32(1.0), out=g)


def linked_gain(detector: np.ndarray, sample_rate: int, comp: pedalboard.Compressor, reset: bool = True):
    """Per-sample gain of a pedalboard Compressor driven by a (n,) non-negative detector signal.

    JUCE's compressor (inside pedalboard) is unlinked per channel and returns ``gain * input``; feeding it
    the channel-wise max |x| and dividing recovers the gain, which is then applied to both channels
    (stereo-linked). Samples where the detector is ~0 hold the previous gain. Runs in chunks of
    _CHUNK_SAMPLES (the same result as one call, bounded temporaries); returns (n,) float32.
    """
    gain = _LinkedGain(comp, sample_rate, reset)
    if 1 < detector.shape[-1] <= _CHUNK_SAMPLES:  # one chunk (every streaming hop): no chunk bookkeeping
        return gain(detector)
    edges = _chunk_edges(detector.shape[-1])
    g = np.empty(detector.shape[-1], np.float32)
    for a, b in zip(edges[:-1], edges[1:]):
        g[a:b] = gain(detector[a:b])
    return g


def _compress(
    x: np.ndarray, sample_rate: int, threshold_db: float, settings: dict, *, out=None, detector=None
) -> np.ndarray:
    """Stereo-linked compression of ``x`` (channels, n) into ``out`` (may be ``x`` itself) or a new array.

    ``detector`` is ``linked_envelope(x)`` where the caller has it; otherwise it is made chunk by chunk.
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
    edges = _chunk_edges(x.shape[-1])
    for a, b in zip(edges[:-1], edges[1:]):
        d = linked_envelope(x[:, a:b]) if detector is None else detector[a:b]
        np.multiply(x[:, a:b], gain(d)[None, :], out=out[:, a:b])
    return out


def _compressed_dynamics(audio, gain_db: float, env: np.ndarray, g: np.ndarray | None, sample_rate: int):
    """Mean onset-peak dB of the compressed stem, ``measure_dynamics(x * g)[0]`` with
    ``x = peak_normalize(audio)[0]`` (gain ``gain_db``), ``env`` = ``linked_envelope(x)`` and ``g`` a
    linked gain (None = 1), computed chunk by chunk without the (channels, n) copies x and x * g.

    The float32 arithmetic is the same element for element; the output's peak and envelope come from
    ``env * g`` (|x_c| * g rounds monotonically, so max_c |x_c * g| == max_c |x_c| * g exactly). ``g`` is
    overwritten.
    """
    n = env.shape[-1]
    chunks = [(a, min(a + _CHUNK_SAMPLES, n)) for a in range(0, n, _CHUNK_SAMPLES)]
    if g is None:
        peak = float(env.max())
    else:
        peak = max(float((env[a:b] * g[a:b]).max()) for a, b in chunks)
    x_gain = db_to_gain32(gain_db) if np.any(env) else None  # peak_normalize leaves silence alone
    y_gain = db_to_gain32(peak_gain_db(peak))

    def mono_at(a: int, b: int) -> np.ndarray:
        c = audio[:, a:b] if x_gain is None else (audio[:, a:b] * x_gain).astype(np.float32, copy=False)
        if g is not None:
            c = c * g[None, a:b]
        if y_gain is not None:
            c = (c * y_gain).astype(np.float32, copy=False)
        return c.mean(axis=0)

    bounds = onset_boundaries_from(mono_at, n, sample_rate)
    y_env = env if g is None else np.multiply(env, g, out=g)
    if y_gain is not None:
        y_env = np.multiply(y_env, y_gain, out=None if g is None else g)
    return envelope_peak_stats(y_env, bounds)[0]


def plan(
    audio: np.ndarray, sample_rate: int, target_mean_db: float, target_std_db: float, class_name: str
) -> CompressionReport:
    settings = class_settings(class_name)
    # the peak-normalized stem's onsets and linked detector (also max_ch |y| of the output, since gain >= 0)
    bounds, env, gain_db = peak_normalized_onsets(audio, sample_rate)
    lo_t, hi_t = target_mean_db - target_std_db, target_mean_db + target_std_db

    def measure(threshold_db: float) -> float:
        if threshold_db >= 0.0:
            return envelope_peak_stats(env, bounds)[0]
        comp = pedalboard.Compressor(
            threshold_db=threshold_db,
            ratio=settings["ratio"],
            attack_ms=settings["attack_ms"],
            release_ms=settings["release_ms"],
        )
        y_env = linked_gain(env, sample_rate, comp)
        y_env *= env
        y_env *= np.float32(10 ** (C.DYNAMICS_PEAK_NORM_DB / 20) / max(float(y_env.max()), 1e-12))
        return envelope_peak_stats(y_env, bounds)[0]

    def measure_full(threshold_db: float) -> float:
        comp = pedalboard.Compressor(
            threshold_db=threshold_db,
            ratio=settings["ratio"],
            attack_ms=settings["attack_ms"],
            release_ms=settings["release_ms"],
        )
        g = linked_gain(env, sample_rate, comp) if threshold_db < 0.0 else None
        return _compressed_dynamics(audio, gain_db, env, g, sample_rate)

    def params(threshold_db: float) -> CompressorParams:
        ratio = settings["ratio"] if threshold_db < 0 else 1.0
        return CompressorParams(
            min(threshold_db, 0.0), ratio, settings["attack_ms"], settings["release_ms"], gain_db
        )

    before = measure(0.0)
    if lo_t <= before <= hi_t:
        return CompressionReport(params(0.0), before, before, lo_t, hi_t, True, "already in band")
    if before < lo_t:
        # compression only lowers the feature (peaks evened out under the -10 dBFS peak normalization)
        return CompressionReport(
            params(0.0),
            before,
            before,
            lo_t,
            hi_t,
            False,
            f"onset peaks {before:.2f} dB already below the band; downward compression cannot raise them",
        )
    t_lo, t_hi = C.COMPRESSOR_MIN_THRESHOLD_DB, 0.0
    at_min = measure(t_lo)
    if at_min > hi_t:
        return CompressionReport(
            params(t_lo),
            before,
            at_min,
            lo_t,
            hi_t,
            False,
            f"band not reached at the {t_lo:.0f} dB threshold limit (limit of search: {at_min:.2f} dB)",
        )
    best_t, best_f = t_lo, at_min
    for _ in range(MAX_STEPS):  # bisection towards the band centre; f decreases as the threshold drops
        mid = 0.5 * (t_lo + t_hi)
        f_mid = measure(mid)
        if lo_t <= f_mid <= hi_t:
            best_t, best_f = mid, f_mid
            if abs(f_mid - target_mean_db) < 0.25 * target_std_db:
                break
        if f_mid > target_mean_db:
            t_hi = mid
        else:
            t_lo = mid
    # the search reused the input's onsets; verify with the full feature (onsets re-detected on the output)
    # and take up to VERIFY_STEPS more bisection steps on it
    t_lo, t_hi = C.COMPRESSOR_MIN_THRESHOLD_DB, 0.0
    for _ in range(VERIFY_STEPS):
        best_f = measure_full(best_t)
        if lo_t <= best_f <= hi_t:
            break
        if best_f > target_mean_db:
            t_hi = best_t
        else:
            t_lo = best_t
        best_t = 0.5 * (t_lo + t_hi) if t_hi - t_lo > 0.2 else best_t
    in_band = lo_t <= best_f <= hi_t
    note = "" if in_band else f"bisection ended outside the band at {best_f:.2f} dB"
    return CompressionReport(params(best_t), before, best_f, lo_t, hi_t, in_band, note)


def apply(
    audio: np.ndarray, sample_rate: int, params: CompressorParams, *, out: np.ndarray | None = None
) -> np.ndarray:
    """Input gain then the stereo-linked compressor (bypassed when ratio == 1).

    ``out``: (channels, n) float32 array for the result, may be ``audio`` itself (processed in place).
    """
    gain = np.float32(10 ** (params.input_gain_db / 20))
    if out is None:
        x = (audio * gain).astype(np.float32, copy=False)  # a new array
    else:
        x = np.multiply(audio, gain, out=out)
    if params.ratio <= 1.0 or params.threshold_db >= 0.0:
        return x
    settings = {"ratio": params.ratio, "attack_ms": params.attack_ms, "release_ms": params.release_ms}
    return _compress(x, sample_rate, params.threshold_db, settings, out=x)

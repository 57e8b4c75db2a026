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
from ..features import measure_dynamics, onset_boundaries, onset_peak_stats, peak_normalize
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


def linked_gain(detector: np.ndarray, sample_rate: int, comp: pedalboard.Compressor, reset: bool = True):
    """Per-sample gain of a pedalboard Compressor driven by a (n,) non-negative detector signal.

    JUCE's compressor (inside pedalboard) is unlinked per channel and returns ``gain * input``; feeding it
    the channel-wise max |x| and dividing recovers the gain, which is then applied to both channels
    (stereo-linked). Samples where the detector is ~0 hold the previous gain.
    """
    y = comp.process(detector[None, :].astype(np.float32), sample_rate, reset=reset)[0]
    live = detector > 1e-7
    g = np.ones_like(detector, dtype=np.float32)
    g[live] = y[live] / detector[live]
    if not live.all():
        idx = np.where(live, np.arange(live.size), 0)
        np.maximum.accumulate(idx, out=idx)
        g = np.where(live | (idx > 0) | live[0], g[idx], 1.0).astype(np.float32)
    return np.minimum(g, 1.0)


def _compress(x: np.ndarray, sample_rate: int, threshold_db: float, settings: dict) -> np.ndarray:
    comp = pedalboard.Compressor(
        threshold_db=threshold_db,
        ratio=settings["ratio"],
        attack_ms=settings["attack_ms"],
        release_ms=settings["release_ms"],
    )
    return x * linked_gain(np.max(np.abs(x), axis=0), sample_rate, comp)[None, :]


def plan(
    audio: np.ndarray, sample_rate: int, target_mean_db: float, target_std_db: float, class_name: str
) -> CompressionReport:
    settings = class_settings(class_name)
    x, gain_db = peak_normalize(audio)
    bounds = onset_boundaries(x, sample_rate)
    lo_t, hi_t = target_mean_db - target_std_db, target_mean_db + target_std_db

    env = np.max(np.abs(x), axis=0)  # the linked detector; also max_ch |y| of the output, since gain >= 0

    def measure(threshold_db: float) -> float:
        if threshold_db >= 0.0:
            return onset_peak_stats(env[None], bounds)[0]
        comp = pedalboard.Compressor(
            threshold_db=threshold_db,
            ratio=settings["ratio"],
            attack_ms=settings["attack_ms"],
            release_ms=settings["release_ms"],
        )
        y_env = env * linked_gain(env, sample_rate, comp)
        y_env *= np.float32(10 ** (C.DYNAMICS_PEAK_NORM_DB / 20) / max(float(y_env.max()), 1e-12))
        return onset_peak_stats(y_env[None], bounds)[0]

    def measure_full(threshold_db: float) -> float:
        y = _compress(x, sample_rate, threshold_db, settings) if threshold_db < 0.0 else x
        return measure_dynamics(y, sample_rate)[0]

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


def apply(audio: np.ndarray, sample_rate: int, params: CompressorParams) -> np.ndarray:
    """Input gain then the stereo-linked compressor (bypassed when ratio == 1)."""
    x = (audio * np.float32(10 ** (params.input_gain_db / 20))).astype(np.float32)
    if params.ratio <= 1.0 or params.threshold_db >= 0.0:
        return x
    return _compress(
        x,
        sample_rate,
        params.threshold_db,
        {"ratio": params.ratio, "attack_ms": params.attack_ms, "release_ms": params.release_ms},
    )

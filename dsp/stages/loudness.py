"""Loudness stage: gain to the class target (BS.1770 integrated, pyloudnorm), then a -1 dBTP ceiling.

Reference: gain to target, then divide by the sample peak if it exceeds 1.0 (missing the target silently).
Here the true peak (4x oversampled) is held under the ceiling by a pedalboard Limiter, loudness is re-measured
and re-gained once; whatever is still missed is reported in ``missed_lu`` (never silent).

streaming-safe: plan no; apply yes (gain + pedalboard Limiter).
"""

from __future__ import annotations

import numpy as np
import pedalboard
from scipy.signal import resample_poly

from .. import constants as C
from ..features import integrated_loudness
from ..params import LoudnessParams

LIMITER_RELEASE_MS = 100.0


def true_peak_db(audio: np.ndarray, skip_below_db: float = -200.0) -> float:
    """True peak (dBTP) estimated with 4x polyphase oversampling (BS.1770-4 Annex 2 style).

    Where the sample peak is under ``skip_below_db`` the sample peak is returned (callers pass the ceiling
    minus 6 dB: inter-sample overs of real audio stay well under that).
    """
    if not np.any(audio):
        return float("-inf")
    sample_peak = float(np.max(np.abs(audio)))
    if 20 * np.log10(sample_peak) < skip_below_db:
        return 20 * np.log10(sample_peak)  # far below the ceiling: inter-sample overs cannot reach it
    up = resample_poly(audio.astype(np.float64), 4, 1, axis=-1)
    return float(20 * np.log10(max(np.max(np.abs(up)), np.max(np.abs(audio)), 1e-12)))


def _limit(x: np.ndarray, sample_rate: int, threshold_db: float) -> np.ndarray:
    lim = pedalboard.Limiter(threshold_db=threshold_db, release_ms=LIMITER_RELEASE_MS)
    return lim.process(x.astype(np.float32), sample_rate)


def apply(audio: np.ndarray, sample_rate: int, params: LoudnessParams) -> np.ndarray:
    y = (audio * np.float32(10 ** (params.gain_db / 20))).astype(np.float32)
    if params.limiter_threshold_db is not None:
        y = _limit(y, sample_rate, params.limiter_threshold_db)
    return y


def plan(
    audio: np.ndarray,
    sample_rate: int,
    target_lufs: float,
    *,
    ceiling_db: float = C.TRUE_PEAK_CEILING_DB,
    loudness_lufs: float | None = None,
) -> LoudnessParams:
    measured = integrated_loudness(audio, sample_rate) if loudness_lufs is None else loudness_lufs
    if not np.isfinite(measured):
        return LoudnessParams(0.0, target_lufs, None, None, None, 0.0)
    gain = float(np.clip(target_lufs - measured, -120.0, 120.0))
    params = LoudnessParams(gain, target_lufs, measured)
    y = apply(audio, sample_rate, params)
    tp = true_peak_db(y, skip_below_db=ceiling_db - 6.0)
    if tp <= ceiling_db:
        return LoudnessParams(gain, target_lufs, measured, None, tp, 0.0)
    # hold the ceiling with a limiter (threshold a little under it for inter-sample overs), re-gain once
    threshold = max(ceiling_db - 1.0, -60.0)
    for _ in range(2):
        params = LoudnessParams(gain, target_lufs, measured, threshold)
        y = apply(audio, sample_rate, params)
        lufs_after = integrated_loudness(y, sample_rate)
        gain = float(np.clip(gain + (target_lufs - lufs_after), -120.0, 120.0))
    params = LoudnessParams(gain, target_lufs, measured, threshold)
    y = apply(audio, sample_rate, params)
    tp = true_peak_db(y)
    if tp > ceiling_db:  # the limiter's own overshoot: trim the gain and report the miss
        gain -= tp - ceiling_db
        params = LoudnessParams(gain, target_lufs, measured, threshold)
        y = apply(audio, sample_rate, params)
        tp = true_peak_db(y)
    missed = float(target_lufs - integrated_loudness(y, sample_rate))
    return LoudnessParams(gain, target_lufs, measured, threshold, tp, round(missed, 3))

"""Loudness stage: gain to the class target (BS.1770 integrated, pyloudnorm), then a -1 dBTP ceiling.

Reference: gain to target, then divide by the sample peak if it exceeds 1.0 (missing the target silently).
Here the true peak (4x oversampled) is held under the ceiling by a look-ahead peak limiter, loudness is
re-measured and re-gained twice; whatever is still missed is reported in ``missed_lu`` (never silent).

streaming-safe: plan no; apply: the gain yes, the limiter with LOOKAHEAD_MS of latency.
"""

from __future__ import annotations

import numpy as np
from scipy.ndimage import minimum_filter1d, uniform_filter1d
from scipy.signal import resample_poly

from .. import constants as C
from ..features import integrated_loudness
from ..params import LoudnessParams

LOOKAHEAD_MS = 5.0
#: margin under the ceiling for the sample-peak limiter, so 4x-oversampled true peaks stay under it
TP_MARGIN_DB = 0.5


_TP_TAPS = 32  # windowed-sinc interpolator half-length (samples each side)
_TP_PHASES = (0.25, 0.5, 0.75)


def _interp_kernel() -> np.ndarray:
    k = np.arange(-_TP_TAPS + 1, _TP_TAPS + 1)
    return np.stack([np.sinc(k - f) * np.kaiser(2 * _TP_TAPS, 8.0) for f in _TP_PHASES])


_KERNEL = _interp_kernel()


def true_peak_db(audio: np.ndarray, skip_below_db: float = -200.0, max_candidates: int = 4096) -> float:
    """True peak (dBTP): the sample peak and 4x-oversampled points around the loudest samples.

    Inter-sample peaks can only exceed the sample peak near loud samples, so only samples within 6 dB of the
    sample peak (at most ``max_candidates``, loudest first) are interpolated (windowed sinc, 64 taps, phases
    1/4, 1/2, 3/4), which is ~100x cheaper than oversampling the whole file. Where the sample peak is under
    ``skip_below_db`` the sample peak is returned (callers pass the ceiling minus 6 dB).
    """
    if not np.any(audio):
        return float("-inf")
    mag = np.abs(audio)
    sample_peak = float(mag.max())
    if 20 * np.log10(sample_peak) < skip_below_db:
        return 20 * np.log10(sample_peak)
    n = audio.shape[-1]
    padded = np.pad(audio.astype(np.float64), ((0, 0), (_TP_TAPS, _TP_TAPS)))
    best = sample_peak
    for ch in range(audio.shape[0]):
        cand = np.flatnonzero(mag[ch] >= sample_peak * 0.5)
        if cand.size > max_candidates:
            cand = cand[np.argsort(mag[ch, cand])[-max_candidates:]]
        idx = cand[:, None] + np.arange(2 * _TP_TAPS)[None, :] + 1  # window around sample i .. i+1
        idx = np.minimum(idx, n + 2 * _TP_TAPS - 1)
        values = padded[ch][idx] @ _KERNEL.T
        best = max(best, float(np.abs(values).max()))
    return float(20 * np.log10(max(best, 1e-12)))


def _true_peak_envelope(x: np.ndarray) -> np.ndarray:
    """Per-sample max of |x| over both channels and the 4x-oversampled points after each sample."""
    up = np.abs(resample_poly(x.astype(np.float64), 4, 1, axis=-1))
    n = x.shape[-1]
    return np.maximum(np.abs(x).max(axis=0), up[:, : 4 * n].reshape(x.shape[0], n, 4).max(axis=(0, 2)))


def peak_limit(
    x: np.ndarray, sample_rate: int, ceiling_db: float, lookahead_ms: float = LOOKAHEAD_MS
) -> np.ndarray:
    """Stereo-linked look-ahead true-peak limiter: no sample (nor 4x-oversampled point) exceeds ``ceiling_db``.

    Gain = moving average (L+1) of a running minimum (2L+1) of the required gain min(1, ceiling/|x|); every
    averaged value is a mean of minima whose windows contain the sample, so it never exceeds the required
    gain (no overshoot), and gain changes take L samples (L = look-ahead). pedalboard's Limiter is a
    loudness maximizer (its output peaks at 0 dBFS whatever the threshold), so it cannot serve as a ceiling.
    Offline it is zero-latency (centred windows); a streaming version delays by L samples.
    """
    det = _true_peak_envelope(x)
    ceiling = 10 ** (ceiling_db / 20)
    if det.max() <= ceiling:
        return x
    lookahead = max(1, int(lookahead_ms * 1e-3 * sample_rate))
    required = np.minimum(1.0, ceiling / np.maximum(det, 1e-12))
    gain = uniform_filter1d(
        minimum_filter1d(required, 2 * lookahead + 1, mode="nearest"), lookahead + 1, mode="nearest"
    )
    return (x * np.minimum(gain, required)[None, :]).astype(np.float32)


def apply(audio: np.ndarray, sample_rate: int, params: LoudnessParams) -> np.ndarray:
    y = (audio * np.float32(10 ** (params.gain_db / 20))).astype(np.float32)
    if params.limiter_threshold_db is not None:
        y = peak_limit(y, sample_rate, params.limiter_threshold_db)
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
    if tp <= ceiling_db:  # a plain gain: the target is met exactly, no need to measure again
        return LoudnessParams(gain, target_lufs, measured, None, tp, 0.0)
    # hold the ceiling with the peak limiter (a little under it for inter-sample overs), re-gain twice
    threshold = max(ceiling_db - TP_MARGIN_DB, -60.0)
    for _ in range(2):
        params = LoudnessParams(gain, target_lufs, measured, threshold)
        y = apply(audio, sample_rate, params)
        lufs_after = integrated_loudness(y, sample_rate)
        gain = float(np.clip(gain + (target_lufs - lufs_after), -120.0, 120.0))
    params = LoudnessParams(gain, target_lufs, measured, threshold)
    y = apply(audio, sample_rate, params)
    tp = true_peak_db(y)
    if tp > ceiling_db:  # inter-sample overs beyond the margin: trim the gain and report the miss
        gain -= tp - ceiling_db
        params = LoudnessParams(gain, target_lufs, measured, threshold)
        y = apply(audio, sample_rate, params)
        tp = true_peak_db(y)
    missed = float(target_lufs - integrated_loudness(y, sample_rate))
    return LoudnessParams(gain, target_lufs, measured, threshold, tp, round(missed, 3))

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

#: input samples per chunk of the 4x-oversampled envelope, and the context read on each side (>= the
#: resampler's filter half-length of 10 input samples), so chunks give the same values as one call
_ENV_CHUNK = 1 << 17
_ENV_MARGIN = 64


def true_peak_db(audio: np.ndarray, skip_below_db: float = -200.0, max_candidates: int = 4096) -> float:
    """True peak (dBTP): the sample peak and 4x-oversampled points around the loudest samples.

    Inter-sample peaks can only exceed the sample peak near loud samples, so only samples within 6 dB of the
    sample peak (at most ``max_candidates``, loudest first) are interpolated (windowed sinc, 64 taps, phases
    1/4, 1/2, 3/4), which is ~100x cheaper than oversampling the whole file. Where the sample peak is under
    ``skip_below_db`` the sample peak is returned (callers pass the ceiling minus 6 dB).
    """
    return _true_peak_db(audio, None, skip_below_db, max_candidates)


def _true_peak_db(
    audio: np.ndarray, gain: np.float32 | None, skip_below_db: float, max_candidates: int
) -> float:
    """:func:`true_peak_db` of ``(audio * gain).astype(float32)`` (of ``audio`` where gain is None), made
    chunk by chunk and only around the candidates, never as a whole copy (the same values element for
    element; max |x * g| is max |x| * g exactly, since rounding is monotonic)."""

    def gained(v: np.ndarray) -> np.ndarray:
        return v if gain is None else (v * gain).astype(np.float32, copy=False)

    peak = np.maximum(audio.max(), -audio.min()) if audio.size else np.float32(0.0)
    sample_peak = float(gained(np.asarray(peak)))
    if sample_peak == 0.0:
        return float("-inf")
    if 20 * np.log10(sample_peak) < skip_below_db:
        return 20 * np.log10(sample_peak)
    n = audio.shape[-1]
    best = sample_peak
    for ch in range(audio.shape[0]):
        cand = np.concatenate(
            [
                np.flatnonzero(np.abs(gained(audio[ch, a : a + _ENV_CHUNK])) >= sample_peak * 0.5) + a
                for a in range(0, n, _ENV_CHUNK)
            ]
        )
        if cand.size == 0:  # this channel stays below half the stem's peak: it cannot hold the true peak
            continue
        if cand.size > max_candidates:
            cand = cand[np.argsort(np.abs(gained(audio[ch, cand])))[-max_candidates:]]
        # window around sample i .. i+1, in the signal zero-padded by _TP_TAPS on both sides
        idx = cand[:, None] + np.arange(2 * _TP_TAPS)[None, :] + 1 - _TP_TAPS
        inside = (idx >= 0) & (idx < n)
        window = np.where(inside, gained(audio[ch][np.clip(idx, 0, n - 1)]), 0.0).astype(np.float64)
        values = window @ _KERNEL.T
        best = max(best, float(np.abs(values).max()))
    return float(20 * np.log10(max(best, 1e-12)))


def _true_peak_envelope(x: np.ndarray) -> np.ndarray:
    """Per-sample max of |x| over both channels and the 4x-oversampled points after each sample.

    Computed in chunks (float64 only per chunk: one call would hold a 4x float64 copy of the stem).
    """
    n = x.shape[-1]
    env = np.empty(n)
    for a in range(0, n, _ENV_CHUNK):
        b = min(a + _ENV_CHUNK, n)
        lo, hi = max(a - _ENV_MARGIN, 0), min(b + _ENV_MARGIN, n)
        up = np.abs(resample_poly(x[:, lo:hi].astype(np.float64), 4, 1, axis=-1))
        up = up[:, 4 * (a - lo) : 4 * (b - lo)].reshape(x.shape[0], b - a, 4).max(axis=(0, 2))
        env[a:b] = np.maximum(np.abs(x[:, a:b]).max(axis=0), up)
    return env


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
    np.minimum(gain, required, out=gain)
    return (x * gain[None, :]).astype(np.float32, copy=False)


def apply(
    audio: np.ndarray, sample_rate: int, params: LoudnessParams, *, out: np.ndarray | None = None
) -> np.ndarray:
    """Gain, then the peak limiter where planned. ``out``: (channels, n) float32 array for the gained
    stem, may be ``audio`` itself (the limiter, where it acts, returns a new array)."""
    gain = np.float32(10 ** (params.gain_db / 20))
    y = (audio * gain).astype(np.float32, copy=False) if out is None else np.multiply(audio, gain, out=out)
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
    tp = _true_peak_db(audio, np.float32(10 ** (gain / 20)), ceiling_db - 6.0, 4096)  # no gained copy
    if tp <= ceiling_db:  # a plain gain: the target is met exactly, no need to measure again
        return LoudnessParams(gain, target_lufs, measured, None, tp, 0.0)
    # hold the ceiling with the peak limiter (a little under it for inter-sample overs), re-gain twice
    threshold = max(ceiling_db - TP_MARGIN_DB, -60.0)
    y = None
    for _ in range(2):
        params = LoudnessParams(gain, target_lufs, measured, threshold)
        y = None  # one gained copy at a time
        y = apply(audio, sample_rate, params)
        lufs_after = integrated_loudness(y, sample_rate)
        gain = float(np.clip(gain + (target_lufs - lufs_after), -120.0, 120.0))
    params = LoudnessParams(gain, target_lufs, measured, threshold)
    y = None
    y = apply(audio, sample_rate, params)
    tp = true_peak_db(y)
    if tp > ceiling_db:  # inter-sample overs beyond the margin: trim the gain and report the miss
        gain -= tp - ceiling_db
        params = LoudnessParams(gain, target_lufs, measured, threshold)
        y = None
        y = apply(audio, sample_rate, params)
        tp = true_peak_db(y)
    missed = float(target_lufs - integrated_loudness(y, sample_rate))
    return LoudnessParams(gain, target_lufs, measured, threshold, tp, round(missed, 3))

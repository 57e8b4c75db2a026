"""Loudness stage: gain to the class target (BS.1770 integrated, pyloudnorm), then a -1 dBTP ceiling.

Reference: gain to target, then divide by the sample peak if it exceeds 1.0 (missing the target silently).
Here the true peak is held under the ceiling by a look-ahead peak limiter, loudness is re-measured and
re-gained twice; whatever is still missed is reported in ``missed_lu`` (never silent).

One true-peak measure serves everything (:func:`true_peaks`: the sample and the 4x-oversampled points after
it, max over channels): the limiter's detector, :func:`true_peak_db` and the reported ``true_peak_db``, so
the limiter's output reads under its ceiling by the same measure. The measure is made once per plan, on
the stem before its gain (the envelope of ``x * g`` is ``g`` times that of ``x``), only the places where it
exceeds the ceiling are limited, and each re-measurement of the loudness re-filters only those places
(:meth:`fxmix.dsp.features.KWeighted.patched`): the cost hardly depends on how often the limiter acts.

streaming-safe: plan no; apply: the gain yes, the limiter with LOOKAHEAD_MS of latency.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import scipy.fft
from scipy.ndimage import minimum_filter1d, uniform_filter1d

from .. import constants as C
from ..features import KWeighted, k_weighted
from ..params import LoudnessParams

LOOKAHEAD_MS = 5.0
#: the limiter's threshold under the ceiling when the loudness stage limits (kept from the sample-peak
#: limiter it replaced, so the loudness decisions stay where they were)
TP_MARGIN_DB = 0.5

_TP_TAPS = 32  # windowed-sinc interpolator half-length (samples each side)
_TP_PHASES = (0.25, 0.5, 0.75)


def _interp_kernel() -> np.ndarray:
    k = np.arange(-_TP_TAPS + 1, _TP_TAPS + 1)
    kernel = np.stack([np.sinc(k - f) * np.kaiser(2 * _TP_TAPS, 8.0) for f in _TP_PHASES])
    return np.ascontiguousarray(kernel.T, np.float32)  # (2 * _TP_TAPS, phases)


_KERNEL = _interp_kernel()

#: samples per chunk of the true-peak scan, and candidates interpolated per batch (bounded temporaries; a
#: batch's (batch, 64) x (64, 3) product stays under the size at which a multi-threaded BLAS wakes its
#: threads, whose spinning afterwards costs more CPU than the product)
_SCAN_CHUNK = 1 << 16
_BATCH = 1 << 10
#: overs closer than this many samples are limited in one window (the gain is 1 between them anyway)
_DIP_GAP = 1 << 14


def true_peaks(audio: np.ndarray, floor: float, *, points: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """The samples whose true-peak envelope reaches ``floor``: (positions (k,) int64, values (k,) float32).

    The envelope at sample i is the largest |x| over the channels at i and at the 4x-oversampled points
    i + 1/4, 1/2, 3/4 (windowed sinc, 64 taps, Kaiser beta 8; the stem is mirrored past its edges). The
    points after i are interpolated only where |x_i| or |x_i+1| reaches floor / 2: an inter-sample peak
    more than 6 dB over both neighbours does not occur in audio (BS.1770's own assumption), which makes
    the scan a pass over |x| plus a few dot products around the loud samples. ``points=False``: the
    samples whose own level reaches ``floor``, with that level (no interpolation).
    """
    x = np.asarray(audio, np.float32)
    x = x[None] if x.ndim == 1 else x
    n = x.shape[-1]
    pos, val = [], []
    for a in range(0, n, _SCAN_CHUNK):
        b = min(a + _SCAN_CHUNK, n)
        level = np.abs(x[:, a : min(b + 1, n)]).max(axis=0)
        if not points:
            keep = np.flatnonzero(level[: b - a] >= floor)
            pos.append(keep + a)
            val.append(level[keep])
            continue
        near = level >= 0.5 * floor
        cand = np.flatnonzero(near[: b - a] | np.append(near[1:], False)[: b - a])
        if cand.size == 0:
            continue
        env = level[cand]
        for ch in range(x.shape[0]):
            np.maximum(env, _interpolated(x[ch], a, b, cand), out=env)
        keep = env >= floor
        pos.append(cand[keep] + a)
        val.append(env[keep])
    if not pos:
        return np.zeros(0, np.int64), np.zeros(0, np.float32)
    return np.concatenate(pos), np.concatenate(val)


def _interpolated(c: np.ndarray, a: int, b: int, cand: np.ndarray) -> np.ndarray:
    """max |c| over the oversampled points after samples ``a + cand`` of channel ``c`` (samples a..b)."""
    t = _TP_TAPS
    if cand.size <= (b - a) // 8:
        return _points_at(c, a + cand)
    # dense: every point of the chunk by FFT convolution
    lo, hi = max(a - t + 1, 0), min(b + t, c.shape[0])
    seg = np.pad(c[lo:hi], (lo - (a - t + 1), (b + t) - hi), mode="reflect" if hi - lo > 1 else "edge")
    n_fft = scipy.fft.next_fast_len(seg.size, real=True)
    points = scipy.fft.irfft(scipy.fft.rfft(seg, n_fft) * _kernel_spectrum(n_fft), n_fft, axis=1)
    return np.abs(points[:, 2 * t - 1 + cand]).max(axis=0)


def _points_at(c: np.ndarray, idx: np.ndarray) -> np.ndarray:
    """max |c| over the oversampled points after samples ``idx`` of channel ``c`` (mirrored past its
    edges), in batches of window gathers."""
    n = c.shape[0]
    out = np.empty(idx.size, np.float32)
    offsets = np.arange(1 - _TP_TAPS, _TP_TAPS + 1)
    for s in range(0, idx.size, _BATCH):
        w = idx[s : s + _BATCH, None] + offsets
        if n > 1:  # mirror: x[-k] = x[k], x[n-1+k] = x[n-1-k]
            w = np.abs(w)
            w = np.where(w > n - 1, 2 * (n - 1) - w, w) % (2 * (n - 1))
            w = np.where(w > n - 1, 2 * (n - 1) - w, w)
        else:
            w = np.zeros_like(w)
        out[s : s + w.shape[0]] = np.abs(c[w] @ _KERNEL).max(axis=1)
    return out


@lru_cache(maxsize=4)
def _kernel_spectrum(n_fft: int) -> np.ndarray:
    """rfft of the interpolator's phases, reversed for convolution: (phases, n_fft // 2 + 1)."""
    spec = scipy.fft.rfft(_KERNEL.T[:, ::-1], n_fft, axis=1)
    spec.setflags(write=False)
    return spec


def true_peak_db(audio: np.ndarray, max_points: int = 4096) -> float:
    """True peak (dBTP) by :func:`true_peaks` (its largest value); -inf for silence.

    The oversampled points are evaluated after the ``max_points`` loudest samples within 6 dB of the
    sample peak: a compressed or limited stem can have millions of those, and scanning them all would
    cost more than the rest of the loudness stage.
    """
    x = np.asarray(audio, np.float32)
    x = x[None] if x.ndim == 1 else x
    peak = _sample_peak(x)
    if peak == 0.0:
        return float("-inf")
    pos, val = true_peaks(x, 0.5 * peak, points=False)
    if pos.size > max_points:
        pos = pos[np.argpartition(val, -max_points)[-max_points:]]
    best = peak
    for ch in range(x.shape[0]):
        best = max(best, float(_points_at(x[ch], pos).max(initial=0.0)))
    return float(20 * np.log10(best))


def _sample_peak(x: np.ndarray) -> float:
    """max |x| without an |x| copy."""
    return max(float(x.max()), -float(x.min())) if x.size else 0.0


@dataclass(frozen=True)
class _Dip:
    """The limiter's gain (< 1 somewhere) over samples a..b; 1 everywhere else."""

    a: int
    b: int
    gain: np.ndarray  # (b - a,) float32


def _dips(pos: np.ndarray, val: np.ndarray, gain: float, ceiling: float, n: int, lookahead: int) -> list:
    """Gain dips holding ``gain * envelope`` under ``ceiling``: the envelope is known at ``pos`` (``val``)
    and under ``ceiling / gain`` everywhere else.

    Per window around the overs: gain = moving average (L+1) of a running minimum (2L+1) of the required
    gain min(1, ceiling / (gain * envelope)); every averaged value is a mean of minima whose windows contain
    the sample, so it never exceeds the required gain (no overshoot), and gain changes take L samples
    (L = look-ahead). The windows reach 2L + 2 samples past the overs, where the gain is back at 1, so
    they give what one pass over the whole stem gives.
    """
    over = val * np.float32(gain) > ceiling
    if not np.any(over):
        return []
    p, v = pos[over], val[over]
    reach = 2 * lookahead + 2
    gap = max(2 * reach, _DIP_GAP)  # overs closer than this share a window: fewer, longer windows
    starts = np.flatnonzero(np.diff(p, prepend=-(gap + 1)) > gap)
    dips = []
    for i, s in enumerate(starts):
        e = starts[i + 1] if i + 1 < starts.size else p.size
        a, b = max(int(p[s]) - reach, 0), min(int(p[e - 1]) + reach + 1, n)
        required = np.ones(b - a, np.float32)
        required[p[s:e] - a] = np.minimum(1.0, ceiling / (gain * v[s:e]))
        g = uniform_filter1d(minimum_filter1d(required, 2 * lookahead + 1, mode="nearest"), lookahead + 1,
                             mode="nearest")
        dips.append(_Dip(a, b, np.minimum(g, required, out=g)))
    return dips


def _limit(
    x: np.ndarray, gain: float, ceiling: float, sample_rate: int, lookahead_ms: float, peaks=None, verify=True
):
    """(gain dips, true peak of the limited stem) for ``x * gain`` under ``ceiling`` (linear).

    ``peaks``: ``true_peaks(x, floor)`` with ``floor <= ceiling / (2 * gain)``, when the caller has them.
    With ``verify`` the limited places are measured again by the same measure and limited again until
    they read under the ceiling (the gain changes inside a window move the oversampled points a little;
    without it, the true peak returned is the ceiling where the limiter acts).
    """
    n = x.shape[-1]
    pos, val = true_peaks(x, 0.5 * ceiling / gain) if peaks is None else peaks
    lookahead = max(1, int(lookahead_ms * 1e-3 * sample_rate))
    dips = _dips(pos, val, gain, ceiling, n, lookahead)
    top = ceiling if dips else 0.0
    for _ in range(4 if verify else 0):
        top, overs = 0.0, []
        for d in dips:  # each limited window, with the samples its interpolation reads (windows > 128 apart)
            lo, hi = max(d.a - 2 * _TP_TAPS, 0), min(d.b + 2 * _TP_TAPS, n)
            p2, v2 = true_peaks(_limited(x, gain, [d], lo, hi), 0.5 * ceiling)
            sel = (p2 + lo >= d.a - _TP_TAPS) & (p2 + lo < d.b + _TP_TAPS)
            top = max(top, float(v2[sel].max()) if np.any(sel) else 0.0)
            overs.append((p2[sel] + lo, v2[sel]))
        if top <= ceiling or not dips:
            break
        more = [_dips(p, v, 1.0, ceiling, n, lookahead) for p, v in overs]
        dips = _combine(dips + [d for m in more for d in m])
    inside = np.zeros(pos.size, bool)
    for d in dips:
        inside |= (pos >= d.a - _TP_TAPS) & (pos < d.b + _TP_TAPS)
    outside = float(val[~inside].max()) * gain if np.any(~inside) else 0.0
    return dips, max(top, outside)


def _combine(dips: list) -> list:
    """Dips with overlapping windows merged into one (their gains multiplied), sorted."""
    out: list[_Dip] = []
    for d in sorted(dips, key=lambda d: d.a):
        if out and d.a < out[-1].b:
            last = out[-1]
            a, b = last.a, max(last.b, d.b)
            g = np.ones(b - a, np.float32)
            g[: last.b - a] = last.gain
            g[d.a - a : d.b - a] *= d.gain
            out[-1] = _Dip(a, b, g)
        else:
            out.append(d)
    return out


def _limited(x: np.ndarray, gain: float, dips: list, a: int, b: int) -> np.ndarray:
    """Samples a..b of the limited stem ``x * gain * dips`` (float32, as :func:`apply` makes it)."""
    y = (x[:, a:b] * np.float32(gain)).astype(np.float32, copy=False)
    for d in dips:
        lo, hi = max(d.a, a), min(d.b, b)
        if lo < hi:
            y[:, lo - a : hi - a] *= d.gain[lo - d.a : hi - d.a]
    return y


def peak_limit(
    x: np.ndarray, sample_rate: int, ceiling_db: float, lookahead_ms: float = LOOKAHEAD_MS, *, out=None
) -> np.ndarray:
    """Stereo-linked look-ahead true-peak limiter: nothing exceeds ``ceiling_db`` by :func:`true_peaks`.

    Only the places where the envelope exceeds the ceiling are touched (see :func:`_dips`). pedalboard's
    Limiter is a loudness maximizer (its output peaks at 0 dBFS whatever the threshold), so it cannot serve
    as a ceiling. Offline it is zero-latency (centred windows); a streaming version delays by L samples.
    ``out``: (channels, n) float32 for the result, may be ``x`` itself; else ``x`` is returned where the
    limiter does not act, and a new array where it does.
    """
    dips, _ = _limit(np.asarray(x, np.float32), 1.0, 10 ** (ceiling_db / 20), sample_rate, lookahead_ms)
    if out is None and not dips:
        return x
    y = np.array(x, np.float32) if out is None else out
    if out is not None and out is not x:
        np.copyto(out, x)
    for d in dips:
        y[:, d.a : d.b] *= d.gain
    return y


def peak_limit_gain(
    x: np.ndarray, sample_rate: int, ceiling_db: float, lookahead_ms: float = LOOKAHEAD_MS
) -> np.ndarray:
    """(n,) float32 gain that :func:`peak_limit` applies to ``x`` (1 where it does not act): for a group of
    signals limited together (one gain from their sum, on each of them)."""
    dips, _ = _limit(np.asarray(x, np.float32), 1.0, 10 ** (ceiling_db / 20), sample_rate, lookahead_ms)
    g = np.ones(x.shape[-1], np.float32)
    for d in dips:
        g[d.a : d.b] *= d.gain
    return g


def apply(
    audio: np.ndarray, sample_rate: int, params: LoudnessParams, *, out: np.ndarray | None = None
) -> np.ndarray:
    """Gain, then the peak limiter where planned. ``out``: (channels, n) float32 array for the result,
    may be ``audio`` itself."""
    gain = np.float32(10 ** (params.gain_db / 20))
    y = (audio * gain).astype(np.float32, copy=False) if out is None else np.multiply(audio, gain, out=out)
    if params.limiter_threshold_db is not None:
        y = peak_limit(y, sample_rate, params.limiter_threshold_db, out=y)
    return y


def plan(
    audio: np.ndarray,
    sample_rate: int,
    target_lufs: float,
    *,
    ceiling_db: float = C.TRUE_PEAK_CEILING_DB,
    meter: KWeighted | None = None,
) -> LoudnessParams:
    """Gain to ``target_lufs`` and, where that gain would exceed ``ceiling_db`` (true peak), the limiter
    threshold, re-gaining twice for the loudness the limiter takes. ``meter``: ``k_weighted(audio)`` where
    the caller has it. No gained copy of the stem is made."""
    x = np.asarray(audio, np.float32)
    x = x[None] if x.ndim == 1 else x
    meter = k_weighted(x, sample_rate) if meter is None else meter
    measured = meter.lufs()
    if not np.isfinite(measured):
        return LoudnessParams(0.0, target_lufs, None, None, None, 0.0)
    gain = float(np.clip(target_lufs - measured, -120.0, 120.0))
    g = float(np.float32(10 ** (gain / 20)))
    peaks = true_peaks(x, 0.5 * 10 ** (ceiling_db / 20) / g)  # nothing under half the ceiling can reach it
    tp_lin = max(_sample_peak(x), float(peaks[1].max(initial=0.0))) * g
    tp = float(20 * np.log10(max(tp_lin, 1e-12)))
    if tp <= ceiling_db:  # a plain gain: the target is met exactly, no need to measure again
        return LoudnessParams(gain, target_lufs, measured, None, tp, 0.0)
    threshold = max(ceiling_db - TP_MARGIN_DB, -60.0)
    ceiling = 10 ** (threshold / 20)
    if x.shape[-1] < meter.n:  # a stem shorter than one block is measured zero-padded
        x = np.pad(x, ((0, 0), (0, meter.n - x.shape[-1])))
    floor_gain = 10 ** ((gain + 6.0) / 20)  # the scan holds for gains up to 6 dB over the first
    peaks = true_peaks(x, 0.5 * ceiling / floor_gain)
    for step in range(3):
        g = float(np.float32(10 ** (gain / 20)))
        if g > floor_gain:
            floor_gain = 10 ** ((gain + 6.0) / 20)
            peaks = true_peaks(x, 0.5 * ceiling / floor_gain)
        dips, tp_lin = _limit(x, g, ceiling, sample_rate, LOOKAHEAD_MS, peaks, verify=step == 2)
        ranges = [(d.a, d.b) for d in dips]
        lufs_after = meter.patched(lambda a, b, d=dips: _limited(x, 1.0, d, a, b), ranges).lufs(g)
        if step < 2:
            gain = float(np.clip(gain + (target_lufs - lufs_after), -120.0, 120.0))
    missed = float(target_lufs - lufs_after)
    tp = float(20 * np.log10(max(tp_lin, 1e-12)))
    return LoudnessParams(gain, target_lufs, measured, threshold, tp, round(missed, 3))

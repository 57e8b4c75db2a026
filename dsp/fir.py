"""Linear-phase FIR filters from dB curves (frequency sampling + Hann window) and FFT convolution.

Shared by the EQ stage (one curve, both channels) and the panning stage (one curve per channel).
Offline application is zero-phase (the (taps-1)/2 delay is trimmed); the streaming path reports that delay
as latency instead.

A finite stem is filtered as if it went on past its edges (:func:`edge_extension`): filtered against
silence instead, an abrupt start or end (a stem cut at full level) makes the filter ring, and with the EQ's
low-frequency boosts those clicks can stand well above everything else in the stem.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import scipy.fft
from scipy.linalg import solve_toeplitz

from .constants import EQ_FIR_TAPS


@lru_cache(maxsize=8)
def _hann(n: int) -> np.ndarray:
    w = np.hanning(n)
    w.setflags(write=False)
    return w


def design_fir(
    freqs_hz: np.ndarray,
    gain_db: np.ndarray,
    sample_rate: int,
    n_taps: int = EQ_FIR_TAPS,
    *,
    cutoff_hz: float | None = None,
) -> np.ndarray:
    """Odd-length linear-phase FIR whose magnitude follows ``gain_db`` (log-interpolated between points).

    Above ``cutoff_hz`` the response is 0 dB (with a half-octave raised-cosine transition).
    """
    n_fft = n_taps - 1
    f = np.fft.rfftfreq(n_fft, 1.0 / sample_rate)
    g = np.interp(
        np.log2(np.maximum(f, 1e-3)), np.log2(np.asarray(freqs_hz, float)), np.asarray(gain_db, float)
    )
    if cutoff_hz is not None:
        t = np.clip(np.log2(np.maximum(f, 1e-3) / cutoff_hz) / 0.5 + 0.5, 0.0, 1.0)
        g = g * 0.5 * (1 + np.cos(np.pi * t))
    h = np.fft.irfft(10.0 ** (g / 20.0), n_fft)
    h = np.roll(h, n_fft // 2)
    h = np.append(h, h[0]) * _hann(n_taps)
    return h.astype(np.float64)


def fir_power_response(taps: np.ndarray, n_fft: int) -> np.ndarray:
    """|H|^2 of ``taps`` on the rfft grid of size ``n_fft`` (n_fft >= len(taps))."""
    h = scipy.fft.rfft(taps, n_fft)
    return h.real**2 + h.imag**2


#: linear-prediction order and the history (samples) it is fitted on, for the edge extension
EDGE_LPC_ORDER = 512
EDGE_LPC_HISTORY = 1 << 15


def edge_extension(x: np.ndarray, n_pad: int) -> tuple[np.ndarray, np.ndarray]:
    """The ``n_pad`` samples before and after a signal ``x`` (..., n), as filtered offline: each edge
    continued by linear prediction and faded out (raised cosine over ``n_pad``).

    An all-pole model (order :data:`EDGE_LPC_ORDER`, autocorrelation method, fitted on the last
    :data:`EDGE_LPC_HISTORY` samples next to the edge; stable by construction) extrapolates the waveform
    from the edge on, so level, slope and spectrum go on across the cut. Zeros there would make a step
    whose low-frequency content a boosting EQ multiplies into a click; a mirror image doubles the low
    frequencies next to the edge (the reflected half adds coherently), which does the same on bass-heavy
    material. Signals too short to fit the model (under ``4 * order`` samples) are mirrored instead.

    Returns (head, tail), each (..., n_pad) float32.
    """
    xs = np.asarray(x, np.float32)
    flat = xs.reshape(-1, xs.shape[-1])
    head = np.empty((flat.shape[0], n_pad), np.float32)
    tail = np.empty((flat.shape[0], n_pad), np.float32)
    fade = _fade_out(n_pad)
    for i, c in enumerate(flat):
        hist = min(c.shape[0], EDGE_LPC_HISTORY)
        tail[i] = _extrapolate(c[c.shape[0] - hist :], n_pad) * fade
        head[i] = (_extrapolate(c[:hist][::-1], n_pad) * fade)[::-1]
    shape = xs.shape[:-1] + (n_pad,)
    return head.reshape(shape), tail.reshape(shape)


@lru_cache(maxsize=4)
def _fade_out(n: int) -> np.ndarray:
    w = np.cos(0.5 * np.pi * np.arange(n) / max(n, 1)) ** 2
    w.setflags(write=False)
    return w


def _extrapolate(history: np.ndarray, n_pad: int) -> np.ndarray:
    """``n_pad`` samples continuing ``history`` (its last sample is the edge) by linear prediction
    (float64); the mirror image where the history is too short or silent."""
    order = EDGE_LPC_ORDER
    h = history.astype(np.float64)
    if h.shape[0] < 4 * order or not np.any(h):
        return _mirrored(h, n_pad)
    spec = scipy.fft.rfft(h * _hann(h.shape[0]), scipy.fft.next_fast_len(h.shape[0] + order, real=True))
    r = scipy.fft.irfft(spec.real**2 + spec.imag**2)[: order + 1]
    r[0] *= 1.0 + 1e-6  # a -60 dB noise floor keeps the normal equations well conditioned
    try:
        a = solve_toeplitz(r[:order], r[1:])  # x[t] ~ sum_k a[k] x[t-1-k]
    except np.linalg.LinAlgError:  # a history of a few isolated samples: nothing to predict from
        return _mirrored(h, n_pad)
    y = _all_pole_run(a, h, n_pad)
    if not np.all(np.isfinite(y)) or np.abs(y).max() > 2.0 * np.abs(h).max():  # not a continuation
        return _mirrored(h, n_pad)
    return y


#: samples per block of :func:`_all_pole_run`
_RUN_BLOCK = 64


def _all_pole_run(a: np.ndarray, history: np.ndarray, n: int) -> np.ndarray:
    """``n`` samples of y[t] = sum_k a[k] y[t-1-k] after ``history`` (at least ``a.size`` samples): what
    ``lfilter([1], [1, -a], zeros(n), zi)`` gives, by blocks of :data:`_RUN_BLOCK` samples, each one
    matrix-vector product with the ``a.size`` samples before it (the recursion inside a block resolved
    once for all blocks, row by row), and no scipy.signal (whose import costs most of a second).

    The products are numpy's own loops (einsum), not BLAS: a multi-threaded BLAS wakes its threads for
    every one of these small products, and their spinning afterwards costs more CPU than the products.
    """
    p, m = a.size, _RUN_BLOCK
    i, j = np.arange(m)[:, None], np.arange(p)[None, :]
    step = np.where(j >= i, a[np.clip(i + p - 1 - j, 0, p - 1)], 0.0)  # lags reaching back before the block
    for k in range(1, m):  # sample k of a block: its lags inside the block through the samples before it
        step[k] += np.einsum("i,ij->j", a[k - 1 :: -1], step[:k])
    y = np.concatenate([history[-p:], np.zeros(-(-n // m) * m)])
    for s in range(p, p + n, m):
        y[s : s + m] = np.einsum("ij,j->i", step, y[s - p : s])
    return y[p : p + n]


def _mirrored(h: np.ndarray, n_pad: int) -> np.ndarray:
    """``n_pad`` samples continuing ``h`` as its mirror image about its last sample (repeated)."""
    return np.pad(h[-min(h.shape[0], n_pad + 1) :], (0, n_pad), mode="reflect")[-n_pad:]


def extend_edges(audio: np.ndarray, n_pad: int) -> np.ndarray:
    """``audio`` (channels, n) with :func:`edge_extension` on both sides: (channels, n + 2 n_pad) float32.

    For filters that cannot take the extension piecewise (a plugin's convolution): filter this and keep
    samples n_pad .. n_pad + n of the zero-phase result, which is what :func:`apply_fir` returns.
    """
    head, tail = edge_extension(audio, n_pad)
    return np.concatenate([head, np.asarray(audio, np.float32), tail], axis=-1)


def apply_fir(
    audio: np.ndarray, taps: np.ndarray | list[np.ndarray], *, out: np.ndarray | None = None
) -> np.ndarray:
    """Zero-phase application of linear-phase FIR(s): one filter for all channels or one per channel.

    Args:
        audio: (channels, n) audio.
        taps: one odd-length filter or a list with one per channel; applied in float32.
        out: (channels, n) float32 array for the result; may be ``audio`` itself (filtered in place).

    Returns:
        (channels, n) float32 (``out`` where given): the convolution of the edge-extended signal
        (:func:`edge_extension`), delayed back by (taps - 1) / 2 and cut to the input's n samples.

    Overlap-save FFT convolution in batches of blocks, written straight into the output, so the working
    memory is a few MB whatever the stem length (scipy's ``oaconvolve`` holds several padded float32/complex
    copies of the whole channel).
    """
    per_channel = taps if isinstance(taps, list) else [taps] * audio.shape[0]
    if out is None:
        out = np.empty(audio.shape, dtype=np.float32)
    spectra: dict[int, tuple[np.ndarray, int]] = {}
    for ch, h in enumerate(per_channel):
        key = id(h)
        if key not in spectra:  # one FFT of a filter shared by all channels
            spectra[key] = _filter_spectrum(np.asarray(h, np.float32), audio.shape[1])
        _convolve_same(np.asarray(audio[ch], np.float32), spectra[key], len(h), out[ch])
    return out


#: output samples per batch of overlap-save blocks (bounds the temporaries of :func:`apply_fir` to a
#: few MB; fewer, larger batches cost less Python per sample)
_BATCH_SAMPLES = 1 << 18
#: overlap-save block size in filter lengths: 3 (m - 1) keeps each block's transform in cache; measured
#: faster per output sample than 8 (m - 1), whose larger blocks waste less on the overlap
_BLOCK_FACTOR = 3


def _filter_spectrum(h: np.ndarray, n: int) -> tuple[np.ndarray, int]:
    """rfft of ``h`` on the block size used for a signal of ``n`` samples: (spectrum, n_fft)."""
    m = len(h)
    n_fft = scipy.fft.next_fast_len(min(max(_BLOCK_FACTOR * (m - 1), 1 << 12), n + m - 1), real=True)
    n_fft = max(n_fft, m)
    return scipy.fft.rfft(h, n_fft), n_fft


def _convolve_same(x: np.ndarray, spectrum: tuple[np.ndarray, int], m: int, out: np.ndarray) -> None:
    """out[i] = sum_k h[k] x[i + (m-1)/2 - k] (x edge-extended outside, :func:`edge_extension`), by
    overlap-save blocks of n_fft.

    ``out`` may be ``x`` itself: each batch reads its input span before writing, the input samples the
    next batch needs from before its start are kept aside (``left``), and the extension past the end is
    taken before anything is written.
    """
    hf, n_fft = spectrum
    delay = (m - 1) // 2
    n = x.shape[0]
    block = n_fft - m + 1  # valid outputs per block
    per_batch = max(1, _BATCH_SAMPLES // block)
    left, right = edge_extension(x, delay)  # input samples s0 - delay .. s0 and n .. n + delay
    for s0 in range(0, n, per_batch * block):
        k = min(per_batch, -(-(n - s0) // block))  # blocks in this batch
        hi = s0 - delay + (k - 1) * block + n_fft  # end of the batch's input span
        past = max(hi - n, 0)  # samples past the end: the extension, then zeros (they reach no output)
        seg = np.concatenate(
            [left, x[s0 : min(hi, n)], right[:past], np.zeros(max(past - delay, 0), np.float32)]
        )
        e = min(s0 + k * block, n)
        left = seg[e - s0 : e - s0 + delay].copy()  # input e - delay .. e, before it is overwritten
        blocks = np.lib.stride_tricks.as_strided(
            seg, shape=(k, n_fft), strides=(seg.strides[0] * block, seg.strides[0]), writeable=False
        )
        spec = scipy.fft.rfft(blocks, axis=-1)
        spec *= hf
        y = scipy.fft.irfft(spec, n_fft, axis=-1, overwrite_x=True)[:, m - 1 :]
        full = (e - s0) // block  # whole blocks straight into the output, then the last part
        out[s0 : s0 + full * block].reshape(full, block)[:] = y[:full]
        if s0 + full * block < e:
            out[s0 + full * block : e] = y[full, : e - s0 - full * block]

"""Linear-phase FIR filters from dB curves (frequency sampling + Hann window) and FFT convolution.

Shared by the EQ stage (one curve, both channels) and the panning stage (one curve per channel).
Offline application is zero-phase (the (taps-1)/2 delay is trimmed); the streaming path reports that delay
as latency instead.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import scipy.fft

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


def apply_fir(
    audio: np.ndarray, taps: np.ndarray | list[np.ndarray], *, out: np.ndarray | None = None
) -> np.ndarray:
    """Zero-phase application of linear-phase FIR(s): one filter for all channels or one per channel.

    Args:
        audio: (channels, n) audio.
        taps: one odd-length filter or a list with one per channel; applied in float32.
        out: (channels, n) float32 array for the result; may be ``audio`` itself (filtered in place).

    Returns:
        (channels, n) float32 (``out`` where given): the full convolution delayed back by (taps - 1) / 2.

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


#: output samples per batch of overlap-save blocks (bounds the temporaries of :func:`apply_fir`)
_BATCH_SAMPLES = 1 << 19


def _filter_spectrum(h: np.ndarray, n: int) -> tuple[np.ndarray, int]:
    """rfft of ``h`` on the block size used for a signal of ``n`` samples: (spectrum, n_fft)."""
    m = len(h)
    n_fft = scipy.fft.next_fast_len(min(max(8 * (m - 1), 1 << 12), n + m - 1), real=True)
    n_fft = max(n_fft, m)
    return scipy.fft.rfft(h, n_fft), n_fft


def _convolve_same(x: np.ndarray, spectrum: tuple[np.ndarray, int], m: int, out: np.ndarray) -> None:
    """out[i] = sum_k h[k] x[i + (m-1)/2 - k] (x zero outside), by overlap-save blocks of n_fft.

    ``out`` may be ``x`` itself: each batch reads its input span before writing, and the input samples the
    next batch needs from before its start are kept aside (``left``).
    """
    hf, n_fft = spectrum
    delay = (m - 1) // 2
    n = x.shape[0]
    block = n_fft - m + 1  # valid outputs per block
    per_batch = max(1, _BATCH_SAMPLES // block)
    left = np.zeros(delay, np.float32)  # input samples s0 - delay .. s0 (zeros before the start)
    for s0 in range(0, n, per_batch * block):
        k = min(per_batch, -(-(n - s0) // block))  # blocks in this batch
        hi = s0 - delay + (k - 1) * block + n_fft  # end of the batch's input span
        seg = np.concatenate([left, x[s0 : min(hi, n)], np.zeros(max(hi - n, 0), np.float32)])
        e = min(s0 + k * block, n)
        left = seg[e - s0 : e - s0 + delay].copy()  # input e - delay .. e, before it is overwritten
        blocks = np.lib.stride_tricks.as_strided(
            seg, shape=(k, n_fft), strides=(seg.strides[0] * block, seg.strides[0]), writeable=False
        )
        y = scipy.fft.irfft(scipy.fft.rfft(blocks, axis=-1) * hf, n_fft, axis=-1)[:, m - 1 :]
        out[s0:e] = y.reshape(-1)[: e - s0]

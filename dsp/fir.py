"""Linear-phase FIR filters from dB curves (frequency sampling + Hann window) and FFT convolution.

Shared by the EQ stage (one curve, both channels) and the panning stage (one curve per channel).
Offline application is zero-phase (the (taps-1)/2 delay is trimmed); the streaming path reports that delay
as latency instead.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import scipy.fft
from scipy.signal import oaconvolve

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


def apply_fir(audio: np.ndarray, taps: np.ndarray | list[np.ndarray]) -> np.ndarray:
    """Zero-phase application of linear-phase FIR(s): one filter for all channels or one per channel."""
    per_channel = taps if isinstance(taps, list) else [taps] * audio.shape[0]
    out = np.empty_like(audio, dtype=np.float32)
    for ch, h in enumerate(per_channel):
        delay = (len(h) - 1) // 2
        y = oaconvolve(audio[ch].astype(np.float32), h.astype(np.float32), mode="full")
        out[ch] = y[delay : delay + audio.shape[1]]
    return out

"""Log-frequency band grid shared by spectrum and panning features, EQ curves and profiles.

Why a band grid: the reference averages 32,769 linear bins (0.67 Hz each) and then smooths them with a
100-270 Hz wide linear moving fit, which smears the low end and lets loud/bright files dominate. A 1/6-octave
grid has constant relative resolution (what EQ decisions are made on), is 600x smaller to store and average,
and lets dataset averages be taken in dB (a geometric mean), which is robust to a few loud files.
Band powers are triangular-weighted (in log frequency) sums of STFT bin powers, like a mel filterbank.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from .constants import BAND_FMAX_HZ, BAND_FMIN_HZ, BANDS_PER_OCTAVE


def band_centers_hz() -> np.ndarray:
    """Centre frequencies (Hz) of the band grid: BANDS_PER_OCTAVE per octave, BAND_FMIN_HZ..BAND_FMAX_HZ."""
    n = int(round(np.log2(BAND_FMAX_HZ / BAND_FMIN_HZ) * BANDS_PER_OCTAVE)) + 1
    return BAND_FMIN_HZ * 2.0 ** (np.arange(n) / BANDS_PER_OCTAVE)


@lru_cache(maxsize=16)
def _band_weights_cached(n_fft: int, sample_rate: int) -> np.ndarray:
    centers = band_centers_hz()
    freqs = np.fft.rfftfreq(n_fft, 1.0 / sample_rate)
    logc = np.log2(centers)
    step = 1.0 / BANDS_PER_OCTAVE
    with np.errstate(divide="ignore"):
        logf = np.log2(np.maximum(freqs, 1e-6))
    w = np.maximum(0.0, 1.0 - np.abs(logf[None, :] - logc[:, None]) / step)
    # a band too narrow to contain a bin takes the nearest bin
    for b in np.flatnonzero(w.sum(axis=1) == 0):
        w[b, np.argmin(np.abs(freqs - centers[b]))] = 1.0
    w /= w.sum(axis=1, keepdims=True)
    w.setflags(write=False)
    return w


def band_weights(n_fft: int, sample_rate: int) -> np.ndarray:
    """(n_bands, n_fft//2+1) row-normalized triangular weights mapping bin powers to band powers."""
    return _band_weights_cached(int(n_fft), int(sample_rate))


def bins_to_bands(bin_values: np.ndarray, n_fft: int, sample_rate: int) -> np.ndarray:
    """Weighted average of per-bin values (last axis) into bands."""
    return weigh_bins(band_weights(n_fft, sample_rate), bin_values)


def weigh_bins(weights: np.ndarray, bin_values: np.ndarray) -> np.ndarray:
    """``bin_values @ weights.T`` (band values from per-bin values on the last axis) in numpy's own loops:
    a multi-threaded BLAS wakes its threads for a product this size, and their spinning afterwards costs
    more CPU than the product (the normalizer makes dozens of these per stem, two stems at a time)."""
    return np.einsum("bk,...k->...b", weights, bin_values)


def bands_to_bins(band_values: np.ndarray, freqs_hz: np.ndarray) -> np.ndarray:
    """Interpolate per-band values to arbitrary frequencies (linear in log frequency, held at the ends)."""
    centers = band_centers_hz()
    return np.interp(np.log2(np.maximum(freqs_hz, 1e-6)), np.log2(centers), band_values)

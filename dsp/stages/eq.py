"""EQ stage: match the long-term band spectrum to the class target with one linear-phase FIR.

Differences from the reference (fxnorm-spec.md §1.3): stereo-linked (one curve for both channels, so the
inter-channel balance survives), boost/cut limited to ±EQ_MAX_GAIN_DB, FFT convolution instead of a
time-domain filtfilt, an 8193-tap FIR (5.4 Hz resolution instead of 44 Hz), and the curve is refined in the
frequency domain (the filtered stem's spectrum is predicted from the input PSD and the designed FIR's actual
response), so the stem is filtered only once. The EQ matches the spectral *shape*; its overall level is free
(centred in the ±limit range) because the loudness stage sets the level afterwards.

streaming-safe: no (plan needs the whole stem); apply is a static linear filter.
"""

from __future__ import annotations

import numpy as np

from .. import constants as C
from ..bands import band_centers_hz, band_weights, weigh_bins
from ..features import spectrum_from_mean_power, stft_power_sums
from ..fir import apply_fir, design_fir, fir_power_response
from ..params import EqParams

N_REFINE = 4


def plan(
    audio: np.ndarray,
    sample_rate: int,
    target_spectrum_db: np.ndarray,
    *,
    max_gain_db: float = C.EQ_MAX_GAIN_DB,
    power: np.ndarray | None = None,
) -> EqParams:
    """Find the EQ curve (dB per band) that brings the stem's loudness-referenced spectrum to the target."""
    n_fft = C.ANALYSIS_FFT
    if power is None:  # sums over frames, chunk by chunk: the (2, frames, bins) power is never materialised
        psd = stft_power_sums(audio).mean_power
    else:
        psd = power.reshape(-1, power.shape[-1]).mean(axis=0).astype(np.float64)
    w = band_weights(n_fft, sample_rate)
    target = np.asarray(target_spectrum_db, dtype=np.float64)
    centers = band_centers_hz()
    # Shapes are matched, levels are the loudness stage's job: every iteration removes the median residual,
    # and the curve is centred in the allowed range so clipping eats as little of the shape as possible.
    curve = np.zeros_like(target)
    for _ in range(N_REFINE):
        h2 = fir_power_response(design_fir(centers, curve, sample_rate), n_fft)
        residual = target - 10.0 * np.log10(weigh_bins(w, psd * h2) + 1e-20)
        curve = curve + residual - np.median(residual)
        curve = np.clip(curve - 0.5 * (curve.max() + curve.min()), -max_gain_db, max_gain_db)
    return EqParams(tuple(float(f) for f in centers), tuple(float(g) for g in curve))


def shape_spectrum_db(audio: np.ndarray, sample_rate: int) -> np.ndarray:
    """Band spectrum (dB) of ``audio`` with no loudness reference: its shape, what the EQ matches."""
    return spectrum_from_mean_power(stft_power_sums(audio).mean_power, sample_rate, C.ANALYSIS_FFT, 0.0)


def residual_db(target_db: np.ndarray, measured_db: np.ndarray) -> np.ndarray:
    """Shape residual ``target - measured`` (dB per band) with its median over all bands removed: the EQ
    matches shapes, the loudness stage sets the level.

    The one residual rule of both closed loops: the offline chain's EQ refinement (target vs finished stem)
    and the streaming planner's colouring of the later stages (stem output vs EQ output).
    """
    residual = np.asarray(target_db, dtype=np.float64) - measured_db
    residual -= np.median(residual)
    return residual


def taps(params: EqParams, sample_rate: int) -> np.ndarray:
    """The curve's linear-phase FIR (one filter for both channels: stereo-linked), float64."""
    return design_fir(np.asarray(params.freqs_hz), np.asarray(params.gain_db), sample_rate)


def apply(
    audio: np.ndarray, sample_rate: int, params: EqParams, *, out: np.ndarray | None = None
) -> np.ndarray:
    """Filter both channels with the curve's linear-phase FIR (zero-phase offline)."""
    return apply_fir(audio, taps(params, sample_rate), out=out)

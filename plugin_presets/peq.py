"""Parametric fit of an fxmix EQ curve: high-pass, low/high shelves and up to 6 peaking bands.

The EQ stage designs an 8193-tap linear-phase FIR from a dB curve on the 1/6-octave band grid; DAWs and
pedalboard chains want a handful of knobs instead. :func:`fit_parametric_eq` finds them by least squares
(``scipy.optimize.least_squares``, trust-region reflective with bounds) on a log-frequency grid, after a
greedy initialisation (shelves from the curve's ends, then one peak at a time where the residual is largest).

Filters are exactly pedalboard's (JUCE ``IIR::Coefficients``): ``HighpassFilter`` is the first-order bilinear
high-pass (6 dB/octave, no Q), ``LowShelfFilter``/``HighShelfFilter``/``PeakFilter`` are the RBJ Audio-EQ
cookbook biquads with ``A = 10^(gain_db/40)`` and the given ``q`` (frequency floored at 2 Hz, as JUCE does).
:func:`biquad_coefficients` returns those coefficients, so the fitted response is what pedalboard (and the
shipped JSFX, which use the same formulas) produce; the tests check that against pedalboard's impulse
response.

Fit range: 30 Hz - 16 kHz by default (the band grid's span: the FIR holds the end values outside it, where
musical energy is small and a parametric EQ cannot follow a held ±24 dB plateau anyway). Optional per-point
``weights`` (e.g. the stem's band energy after EQ) let the fit spend its bands where the stem has energy;
the reported error is always the *unweighted* RMS over the fit range, the honest figure.

streaming-safe: not applicable (fitting); the fitted filters are ordinary IIR biquads (streaming-safe).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.optimize import least_squares

from ..dsp.bands import band_centers_hz
from ..dsp.constants import BANDS_PER_OCTAVE
from ..dsp.errors import ConfigError
from ..dsp.features import stft_power

FILTER_KINDS = ("highpass", "low_shelf", "high_shelf", "peak")
#: pedalboard class name for each filter kind.
PEDALBOARD_TYPES = {
    "highpass": "HighpassFilter",
    "low_shelf": "LowShelfFilter",
    "high_shelf": "HighShelfFilter",
    "peak": "PeakFilter",
}
MAX_PEAKS = 6
FIT_FMIN_HZ = 30.0
FIT_FMAX_HZ = 16000.0
#: fit grid density (points per octave)
GRID_PER_OCTAVE = 24
#: a fitted high-pass below this cutoff has < 0.5 dB effect at 30 Hz and is dropped
HIGHPASS_OFF_HZ = 12.0

# bounds (gain dB, Q) of the fitted filters
_SHELF_GAIN_DB = 30.0
_PEAK_GAIN_DB = 48.0
_SHELF_Q = (0.3, 1.5)
_PEAK_Q = (0.2, 12.0)
#: weight of the raw-curve residual when fitting the stem's band spectrum (keeps silent regions sane)
_CURVE_PULL = 0.1


@dataclass(frozen=True)
class Biquad:
    """One filter: ``kind`` in FILTER_KINDS, pedalboard parameters (``q``/``gain_db`` unused by highpass)."""

    kind: str
    cutoff_frequency_hz: float
    gain_db: float = 0.0
    q: float = 0.7071067811865476

    def to_dict(self) -> dict:
        d = {"type": PEDALBOARD_TYPES[self.kind], "cutoff_frequency_hz": round(self.cutoff_frequency_hz, 4)}
        if self.kind != "highpass":
            d["gain_db"] = round(self.gain_db, 4)
            d["q"] = round(self.q, 5)
        return d


@dataclass(frozen=True)
class ParametricEq:
    """A fitted parametric EQ: broadband ``gain_db`` plus ``filters`` (highpass, shelves, peaks)."""

    filters: tuple[Biquad, ...]
    gain_db: float
    rms_error_db: float
    max_error_db: float
    fmin_hz: float
    fmax_hz: float
    stem_rms_error_db: float | None = None

    def response_db(self, freqs_hz: np.ndarray, sample_rate: int) -> np.ndarray:
        return self.gain_db + response_db(self.filters, freqs_hz, sample_rate)


def biquad_coefficients(f: Biquad, sample_rate: int) -> tuple[np.ndarray, np.ndarray]:
    """(b, a), a[0] = 1, of pedalboard's filter (JUCE IIR::Coefficients; RBJ cookbook for the biquads)."""
    if f.kind == "highpass":
        n = np.tan(np.pi * f.cutoff_frequency_hz / sample_rate)
        b, a = np.array([1.0, -1.0, 0.0]), np.array([n + 1.0, n - 1.0, 0.0])
        return b / a[0], a / a[0]
    big_a = 10.0 ** (f.gain_db / 40.0)
    w = 2.0 * np.pi * max(f.cutoff_frequency_hz, 2.0) / sample_rate
    c, s = np.cos(w), np.sin(w)
    if f.kind == "peak":
        al = s / (2.0 * f.q)
        b = np.array([1 + al * big_a, -2 * c, 1 - al * big_a])
        a = np.array([1 + al / big_a, -2 * c, 1 - al / big_a])
    elif f.kind in ("low_shelf", "high_shelf"):
        be = s * np.sqrt(big_a) / f.q
        am, ap = big_a - 1.0, big_a + 1.0
        if f.kind == "low_shelf":
            b = big_a * np.array([ap - am * c + be, 2 * (am - ap * c), ap - am * c - be])
            a = np.array([ap + am * c + be, -2 * (am + ap * c), ap + am * c - be])
        else:
            b = big_a * np.array([ap + am * c + be, -2 * (am + ap * c), ap + am * c - be])
            a = np.array([ap - am * c + be, 2 * (am - ap * c), ap - am * c - be])
    else:
        raise ConfigError(f"filter kind {f.kind!r} is not one of {list(FILTER_KINDS)}")
    return b / a[0], a / a[0]


def _biquad_db(b: np.ndarray, a: np.ndarray, z1: np.ndarray, z2: np.ndarray) -> np.ndarray:
    num = b[0] + b[1] * z1 + b[2] * z2
    den = a[0] + a[1] * z1 + a[2] * z2
    return 20.0 * np.log10(np.maximum(np.abs(num), 1e-12) / np.maximum(np.abs(den), 1e-12))


def response_db(filters, freqs_hz: np.ndarray, sample_rate: int) -> np.ndarray:
    """Summed magnitude response (dB) of ``filters`` at ``freqs_hz``."""
    w = 2.0 * np.pi * np.asarray(freqs_hz, float) / sample_rate
    z1, z2 = np.exp(-1j * w), np.exp(-2j * w)
    out = np.zeros(w.shape)
    for f in filters:
        out += _biquad_db(*biquad_coefficients(f, sample_rate), z1, z2)
    return out


def fit_grid_hz(fmin_hz: float = FIT_FMIN_HZ, fmax_hz: float = FIT_FMAX_HZ) -> np.ndarray:
    n = int(np.ceil(np.log2(fmax_hz / fmin_hz) * GRID_PER_OCTAVE)) + 1
    return fmin_hz * (fmax_hz / fmin_hz) ** (np.arange(n) / (n - 1))


def curve_on_grid(freqs_hz, gain_db, grid_hz: np.ndarray) -> np.ndarray:
    """The EQ stage's curve at ``grid_hz``: linear in log frequency between points, held at the ends."""
    return np.interp(np.log2(grid_hz), np.log2(np.asarray(freqs_hz, float)), np.asarray(gain_db, float))


# ------------------------------------------------------------------------------------------- fitting
# Parameter vector: [gain_db, log2 hp_hz, log2 ls_hz, ls_db, ln ls_q, log2 hs_hz, hs_db, ln hs_q,
#                    (log2 f, db, ln q) * n_peaks]


def _unpack(x: np.ndarray, n_peaks: int, highpass: bool) -> tuple[float, list[Biquad]]:
    filters = []
    if highpass:
        filters.append(Biquad("highpass", float(2.0 ** x[1])))
    filters.append(Biquad("low_shelf", float(2.0 ** x[2]), float(x[3]), float(np.exp(x[4]))))
    filters.append(Biquad("high_shelf", float(2.0 ** x[5]), float(x[6]), float(np.exp(x[7]))))
    for k in range(n_peaks):
        f, g, q = x[8 + 3 * k : 11 + 3 * k]
        filters.append(Biquad("peak", float(2.0**f), float(g), float(np.exp(q))))
    return float(x[0]), filters


def _bounds(n_peaks: int, fmin_hz: float, fmax_hz: float, sample_rate: int):
    nyq = 0.45 * sample_rate
    lo = [-60.0, np.log2(1.0), np.log2(20.0), -_SHELF_GAIN_DB, np.log(_SHELF_Q[0])]
    hi = [60.0, np.log2(max(fmin_hz * 16, 40.0)), np.log2(2000.0), _SHELF_GAIN_DB, np.log(_SHELF_Q[1])]
    lo += [np.log2(1000.0), -_SHELF_GAIN_DB, np.log(_SHELF_Q[0])]
    hi += [np.log2(min(20000.0, nyq)), _SHELF_GAIN_DB, np.log(_SHELF_Q[1])]
    for _ in range(n_peaks):
        lo += [np.log2(max(fmin_hz * 0.8, 10.0)), -_PEAK_GAIN_DB, np.log(_PEAK_Q[0])]
        hi += [np.log2(min(fmax_hz * 1.25, nyq)), _PEAK_GAIN_DB, np.log(_PEAK_Q[1])]
    return np.array(lo), np.array(hi)


def grid_power(audio: np.ndarray, sample_rate: int, grid_hz: np.ndarray) -> np.ndarray:
    """Long-term power of a (channels, n) stem collected at the fit grid (each STFT bin to its nearest point)."""
    power = stft_power(audio)
    psd = power.reshape(-1, power.shape[-1]).mean(axis=0).astype(np.float64)
    freqs = np.fft.rfftfreq(2 * (psd.size - 1), 1.0 / sample_rate)
    edges = np.sqrt(grid_hz[1:] * grid_hz[:-1])
    lo, hi = grid_hz[0] ** 2 / edges[0], grid_hz[-1] ** 2 / edges[-1]
    keep = (freqs >= lo) & (freqs < hi)
    idx = np.searchsorted(edges, freqs[keep])
    return np.bincount(idx, weights=psd[keep], minlength=grid_hz.size)


def _band_matrix(grid_hz: np.ndarray, power: np.ndarray, fmin_hz: float, fmax_hz: float) -> np.ndarray:
    """(bands, grid) power-weighted triangular band weights (the band grid's, in log frequency)."""
    centers = band_centers_hz()
    centers = centers[(centers >= fmin_hz) & (centers <= fmax_hz)]
    tri = np.maximum(
        0.0, 1.0 - np.abs(np.log2(grid_hz)[None, :] - np.log2(centers)[:, None]) * BANDS_PER_OCTAVE
    )
    m = tri * power[None, :]
    return m[m.sum(axis=1) > 0]


def _solve(x0, lo, hi, grid, target, sw, n_peaks, highpass, sample_rate, max_nfev, bands=None):
    w = 2.0 * np.pi * grid / sample_rate
    z1, z2 = np.exp(-1j * w), np.exp(-2j * w)
    ref = None if bands is None else 10.0 * np.log10(bands @ 10.0 ** (target / 10.0))

    def resid(x):
        g, filters = _unpack(x, n_peaks, highpass)
        model = np.full(grid.shape, g)
        for f in filters:
            model += _biquad_db(*biquad_coefficients(f, sample_rate), z1, z2)
        if bands is None:
            return sw * (model - target)
        # error of the stem's band spectrum, plus a light pull toward the curve where the stem is silent
        band_err = 10.0 * np.log10(bands @ 10.0 ** (model / 10.0)) - ref
        return np.concatenate([band_err, _CURVE_PULL * (model - target)])

    x0 = np.clip(x0, lo + 1e-9, hi - 1e-9)
    return least_squares(resid, x0, bounds=(lo, hi), method="trf", max_nfev=max_nfev, x_scale="jac").x


def _fit_inputs(freqs_hz, gain_db, grid, weights, stem_power, fmin_hz: float, fmax_hz: float):
    """Checked fit inputs on the fit grid -> (target dB, sqrt weights, band matrix or None)."""
    freqs = np.asarray(freqs_hz, float)
    gains = np.asarray(gain_db, float)
    if freqs.shape != gains.shape or freqs.ndim != 1 or freqs.size < 2 or not np.all(np.isfinite(gains)):
        raise ConfigError("fit_parametric_eq: freqs_hz and gain_db must be equal-length finite 1-D curves")
    target = curve_on_grid(freqs, gains, grid)
    if weights is None:
        sw = np.ones_like(grid)
    else:
        wts = np.asarray(weights, float)
        if wts.shape != freqs.shape or np.any(wts < 0) or not np.any(wts > 0):
            raise ConfigError("fit_parametric_eq: weights must be non-negative, one per curve point")
        sw = np.sqrt(np.maximum(curve_on_grid(freqs, wts / wts.max(), grid), 1e-3))
    bands = None
    if stem_power is not None:
        sp = np.asarray(stem_power, float)
        if sp.shape != grid.shape or np.any(sp < 0):
            raise ConfigError("fit_parametric_eq: stem_power must be non-negative, one per fit-grid point")
        bands = _band_matrix(grid, sp / max(sp.max(), 1e-30), fmin_hz, fmax_hz)
    return target, sw, bands


def fit_parametric_eq(
    freqs_hz,
    gain_db,
    sample_rate: int,
    *,
    n_peaks: int = MAX_PEAKS,
    fmin_hz: float = FIT_FMIN_HZ,
    fmax_hz: float = FIT_FMAX_HZ,
    weights: np.ndarray | None = None,
    highpass: bool = True,
    stem_power: np.ndarray | None = None,
) -> ParametricEq:
    """Least-squares parametric approximation of an EQ curve.

    Args:
        freqs_hz, gain_db: the curve (e.g. ``EqParams.freqs_hz`` / ``.gain_db``), dB at each frequency.
        sample_rate: Hz; the biquads are digital, so the fit is for this rate.
        n_peaks: peaking bands, 0..6 (placed greedily, then all parameters refined together).
        fmin_hz, fmax_hz: fit range (see the module docstring).
        weights: optional non-negative weights per *curve point* (same length as ``freqs_hz``), interpolated
            to the fit grid; None = uniform in log frequency.
        highpass: allow a first-order high-pass (kept only if its cutoff ends above HIGHPASS_OFF_HZ).
        stem_power: the stem's long-term power at :func:`fit_grid_hz` points (:func:`grid_power`); when
            given, the fit minimises the error of the *filtered stem's band spectrum* (what the EQ stage
            itself matches to the profile), so spikes of the curve between a stem's harmonics, where it has
            no energy, do not take peaks away from where it has; ``stem_rms_error_db`` reports that error.

    Returns:
        :class:`ParametricEq` with the unweighted RMS and max error (dB) over ``fmin_hz..fmax_hz``.
    """
    if not 0 <= n_peaks <= MAX_PEAKS:
        raise ConfigError(f"n_peaks = {n_peaks} must be in [0, {MAX_PEAKS}]")
    grid = fit_grid_hz(fmin_hz, fmax_hz)
    target, sw, bands = _fit_inputs(freqs_hz, gain_db, grid, weights, stem_power, fmin_hz, fmax_hz)
    lo, hi = _bounds(n_peaks, fmin_hz, fmax_hz, sample_rate)
    lg = np.log2(grid)
    # greedy initialisation: level from the median, shelves from the ends, no high-pass effect yet
    g0 = float(np.median(target))
    low = target[grid < 120.0].mean() - g0 if np.any(grid < 120.0) else 0.0
    high = target[grid > 6000.0].mean() - g0 if np.any(grid > 6000.0) else 0.0
    x = np.array([g0, np.log2(2.0), np.log2(120.0), low, np.log(0.7), np.log2(6000.0), high, np.log(0.7)])
    x = _solve(x, lo[:8], hi[:8], grid, target, sw, 0, highpass, sample_rate, 200, bands)
    for k in range(n_peaks):
        g, filters = _unpack(np.append(x, []), k, highpass)
        res = target - (g + response_db(filters, grid, sample_rate))
        smooth = np.convolve(res * sw, np.ones(5) / 5, mode="same")
        i = int(np.argmax(np.abs(smooth)))
        x = np.concatenate([x, [lg[i], res[i], np.log(1.4)]])
        x = _solve(
            x, lo[: 11 + 3 * k], hi[: 11 + 3 * k], grid, target, sw, k + 1, highpass, sample_rate, 300, bands
        )
    x = _solve(x, lo, hi, grid, target, sw, n_peaks, highpass, sample_rate, 2000, bands)
    g, filters = _unpack(x, n_peaks, highpass)
    filters = [f for f in filters if f.kind != "highpass" or f.cutoff_frequency_hz >= HIGHPASS_OFF_HZ]
    filters = [f for f in filters if f.kind == "highpass" or abs(f.gain_db) >= 0.05]
    model = g + response_db(filters, grid, sample_rate)
    err = model - target
    stem_rms = None
    if bands is not None:
        band_err = 10.0 * np.log10(bands @ 10.0 ** (model / 10.0)) - 10.0 * np.log10(
            bands @ 10.0 ** (target / 10.0)
        )
        stem_rms = float(np.sqrt(np.mean(band_err**2)))
    return ParametricEq(
        tuple(filters),
        g,
        float(np.sqrt(np.mean(err**2))),
        float(np.max(np.abs(err))),
        float(fmin_hz),
        float(fmax_hz),
        stem_rms,
    )

"""Parametric fit of an fxmix EQ curve: high-pass, low/high shelves and up to 6 peaking bands.

The EQ stage designs an 8193-tap linear-phase FIR from a dB curve on the 1/6-octave band grid; DAWs and
pedalboard chains want a handful of knobs instead. :func:`fit_parametric_eq` finds them by bounded least
squares (``scipy.optimize.least_squares``, trust-region reflective; the Jacobian per filter, all filters'
derivatives in one batch) on a log-frequency grid, after a greedy initialisation (shelves from the curve's
ends, then one peak at a time, each tried at the few places where the error is largest and the best
kept) and followed by a local search over the peaks' places (each peak in turn taken out and placed again
where the error is largest, kept when that helps), all of it from a broad and from a narrow start for new
peaks (:data:`_START_Q`), the lower cost kept: the least-squares refinement alone stops in the nearest local
minimum, and nearby curves can otherwise land in minima 0.4 dB apart.

The result is meant to be read and edited by a person, so it is constrained like a hand-set EQ:

* every shelf and peak within ±:data:`FILTER_GAIN_LIMIT_DB`, peaks at Q :data:`PEAK_Q_RANGE`, shelves at Q
  :data:`SHELF_Q_RANGE` (above 0.71 a shelf bumps where it turns); every range inside the shipped PEQ JSFX's
  sliders (``plugin_presets/jsfx/fxmix_peq.jsfx``: one high-pass, two shelves, :data:`MAX_PEAKS` peaks), so
  the fit renders unchanged in pedalboard, the ``.RfxChain`` and by hand;
* the output gain within ±:data:`OUTPUT_GAIN_LIMIT_DB` and penalised (a curve's level is not its shape), and a
  light penalty on every filter's gain, so that two large filters never cancel each other to draw a small
  detail;
* neighbouring peaks that fight (opposite gains, centres nearer than the mean of their half-bandwidths) or
  duplicate each other (same sign, nearer than :data:`DUPLICATE_FRACTION` of that) are merged into one and
  the fit refined again; the freed peak is placed again where the error is largest, merged again if it
  fights.

Filters are exactly pedalboard's (JUCE ``IIR::Coefficients``): ``HighpassFilter`` is the first-order bilinear
high-pass (6 dB/octave, no Q), ``LowShelfFilter``/``HighShelfFilter``/``PeakFilter`` are the RBJ Audio-EQ
cookbook biquads with ``A = 10^(gain_db/40)`` and the given ``q`` (frequency floored at 2 Hz, as JUCE does).
:func:`biquad_coefficients` returns those coefficients, so the fitted response is what pedalboard (and the
shipped JSFX, which use the same formulas) produce; the tests check that against pedalboard's impulse response.
The JSFX computes in double precision, as :func:`response_db` does; pedalboard filters in float32, which
is not exact below ~60 Hz where narrow peaks stack (on the demo's bass fit: up to 1.6 dB off at single
points, filter by filter, and more within one ``Pedalboard`` call).

Fit range: 30 Hz - 16 kHz by default (the band grid's span: the FIR holds the end values outside it).

Two errors are reported, both RMS and max in dB:

* the **curve error**: fitted response minus the EQ curve (as the EQ stage applies it: linear in log
  frequency between its band points) over the fit range, every grid point alike. An EQ stage curve can hold
  bands at ±24 dB and jump 30 dB between neighbouring 1/6-octave bands where the stem has no energy; no
  constrained parametric EQ follows that exactly;
* the **stem error** (when the stem's power is given, :func:`grid_power`): per 1/6-octave band, the level
  of the stem filtered by the fit minus the level of the stem filtered by the curve; the RMS weights each
  band by whether the stem has energy there (:func:`stem_band_weights`: full within :data:`STEM_FLOOR_DB`
  of its loudest band, fading below), the max is over the bands within it. That is what the stem hears
  (and what the EQ stage itself matches to the profile).

Without the stem the fit minimises the curve error; with it, the stem error and the curve error together
(:data:`_CURVE_PULL`), so that the exported EQ both sounds like the curve on this stem and reads like it.

streaming-safe: not applicable (fitting); the fitted filters are ordinary IIR biquads (streaming-safe).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.optimize import least_squares

from ..dsp.bands import band_centers_hz
from ..dsp.constants import BANDS_PER_OCTAVE
from ..dsp.errors import ConfigError
from ..dsp.features import stft_power_sums

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
#: limits of the fitted EQ (what a person sets by hand)
FILTER_GAIN_LIMIT_DB = 15.0
OUTPUT_GAIN_LIMIT_DB = 12.0
PEAK_Q_RANGE = (0.3, 10.0)
SHELF_Q_RANGE = (0.3, 2.0)
#: peaks fight when their centres are nearer than the mean of their half-bandwidths (opposite gains), and
#: duplicate each other when nearer than this fraction of it (same sign)
DUPLICATE_FRACTION = 0.5
#: stem error: a band counts fully when the stem's power there is within this many dB of its loudest band,
#: half at that depth and fading below it (w = P / (P + P_floor)): bands without energy do not matter
STEM_FLOOR_DB = 40.0

#: penalty weights w: the fit minimises the mean squared error (dB^2) plus (w * gain_db)^2 for the output
#: gain and for each filter's gain (12 dB of output gain cost as much as 1.2 dB RMS error)
_OUTPUT_GAIN_PENALTY = 0.1
_FILTER_GAIN_PENALTY = 0.02
#: weight of the curve residual beside the stem's band residual when the stem is given (both normalised to
#: unit weight: 1.5 = the curve error counts 1.5 times the stem error; at 1 the demo's vocals could trade
#: 0.4 dB of curve error for 0.5 dB of stem error, and an EQ should read like its curve)
_CURVE_PULL = 1.5
#: relative cost change at which a refinement stops (far below what a person reads off an EQ)
_FTOL = 3e-4
#: a fit this close (RMS dB, penalties included) gets no further peak
_ENOUGH_RMS_DB = 0.3
#: places tried for each new peak (largest residual extremes this far apart, in octaves) and the refinement
#: each trial gets before the best is kept
_CANDIDATES = 3
_CANDIDATE_SPACING_OCT = 0.5
_TRIAL_NFEV = 30
#: starting Q of new peaks: the whole search runs once from each, the lowest cost is kept (the cost surface
#: has many local minima; a broad and a narrow start reach different ones)
_START_Q = (1.4, 4.0)
#: passes of the local search over the peaks' places (:func:`_reseat`), while a pass helps
_ROUNDS = 1
#: positions in the fit vector x: high-pass (log2 f), low and high shelf (log2 f, gain dB, ln q), first peak
_HP, _LS, _HS, _PEAK = 1, 2, 5, 8


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
    """A fitted parametric EQ: broadband ``gain_db`` plus ``filters`` (highpass, shelves, peaks).

    ``rms_error_db``/``max_error_db``: the curve error over ``fmin_hz..fmax_hz``; ``stem_rms_error_db``/
    ``stem_max_error_db``: the stem error (None without the stem); see the module docstring.
    """

    filters: tuple[Biquad, ...]
    gain_db: float
    rms_error_db: float
    max_error_db: float
    fmin_hz: float
    fmax_hz: float
    stem_rms_error_db: float | None = None
    stem_max_error_db: float | None = None

    def response_db(self, freqs_hz: np.ndarray, sample_rate: int) -> np.ndarray:
        return self.gain_db + response_db(self.filters, freqs_hz, sample_rate)

    def error_dict(self) -> dict:
        """The fit's errors (dB, rounded) and the range they were measured over."""
        d = {
            "rms_error_db": round(self.rms_error_db, 3),
            "max_error_db": round(self.max_error_db, 3),
            "fit_range_hz": [round(self.fmin_hz, 2), round(self.fmax_hz, 2)],
        }
        if self.stem_rms_error_db is not None:
            d["stem_rms_error_db"] = round(self.stem_rms_error_db, 3)
            d["stem_max_error_db"] = round(self.stem_max_error_db, 3)
        return d

    def summary(self) -> str:
        """One line: filters, output gain and the errors, for printing next to an export."""
        peaks = sum(f.kind == "peak" for f in self.filters)
        text = (
            f"parametric EQ: {len(self.filters)} filters ({peaks} peaks), output gain {self.gain_db:+.1f} dB; "
            f"curve error RMS {self.rms_error_db:.2f} dB, max {self.max_error_db:.1f} dB "
            f"({self.fmin_hz:.0f} Hz-{self.fmax_hz / 1000:.0f} kHz)"
        )
        if self.stem_rms_error_db is not None:
            text += f"; stem error RMS {self.stem_rms_error_db:.2f} dB, max {self.stem_max_error_db:.1f} dB"
        return text


def _coefficients(kinds, f, g, q, sample_rate: int) -> tuple[np.ndarray, np.ndarray]:
    """(b, a), each (K, 3) with a[:, 0] = 1, of K filters given as arrays (kinds: FILTER_KINDS indices)."""
    kinds = np.asarray(kinds)
    f, g, q = (np.asarray(v, float) for v in (f, g, q))
    big_a = 10.0 ** (g / 40.0)
    w = 2.0 * np.pi * np.maximum(f, 2.0) / sample_rate
    c, s = np.cos(w), np.sin(w)
    one, zero = np.ones_like(f), np.zeros_like(f)
    # peak
    al = s / (2.0 * q)
    b = np.stack([1 + al * big_a, -2 * c, 1 - al * big_a], axis=-1)
    a = np.stack([1 + al / big_a, -2 * c, 1 - al / big_a], axis=-1)
    # shelves
    be = s * np.sqrt(big_a) / q
    am, ap = big_a - 1.0, big_a + 1.0
    for code, sign in ((1, -1.0), (2, 1.0)):  # low shelf: c -> -c relative to the high shelf
        sel = kinds == code
        if np.any(sel):
            cc = sign * c
            bs = big_a[:, None] * np.stack(
                [ap + am * cc + be, -2 * sign * (am + ap * cc), ap + am * cc - be], -1
            )
            as_ = np.stack([ap - am * cc + be, 2 * sign * (am - ap * cc), ap - am * cc - be], -1)
            b, a = np.where(sel[:, None], bs, b), np.where(sel[:, None], as_, a)
    # first-order bilinear high-pass
    sel = kinds == 0
    if np.any(sel):
        n = np.tan(np.pi * f / sample_rate)
        b = np.where(sel[:, None], np.stack([one, -one, zero], -1), b)
        a = np.where(sel[:, None], np.stack([n + 1.0, n - 1.0, zero], -1), a)
    return b / a[:, :1], a / a[:, :1]


def biquad_coefficients(f: Biquad, sample_rate: int) -> tuple[np.ndarray, np.ndarray]:
    """(b, a), a[0] = 1, of pedalboard's filter (JUCE IIR::Coefficients; RBJ cookbook for the biquads)."""
    if f.kind not in FILTER_KINDS:
        raise ConfigError(f"filter kind {f.kind!r} is not one of {list(FILTER_KINDS)}")
    b, a = _coefficients(
        [FILTER_KINDS.index(f.kind)], [f.cutoff_frequency_hz], [f.gain_db], [f.q], sample_rate
    )
    return b[0], a[0]


def _responses_db(b: np.ndarray, a: np.ndarray, z: np.ndarray) -> np.ndarray:
    """(K, N) dB magnitude of K filters at the N points ``z`` = (z^-1, z^-2)."""
    num = b[:, :1] + b[:, 1:2] * z[0] + b[:, 2:] * z[1]
    den = a[:, :1] + a[:, 1:2] * z[0] + a[:, 2:] * z[1]
    return 20.0 * np.log10(np.maximum(np.abs(num), 1e-12) / np.maximum(np.abs(den), 1e-12))


def _z(freqs_hz: np.ndarray, sample_rate: int) -> np.ndarray:
    w = 2.0 * np.pi * np.asarray(freqs_hz, float) / sample_rate
    return np.stack([np.exp(-1j * w), np.exp(-2j * w)])


def response_db(filters, freqs_hz: np.ndarray, sample_rate: int) -> np.ndarray:
    """Summed magnitude response (dB) of ``filters`` at ``freqs_hz``."""
    filters = list(filters)
    z = _z(freqs_hz, sample_rate)
    if not filters:
        return np.zeros(z.shape[1])
    for f in filters:
        if f.kind not in FILTER_KINDS:
            raise ConfigError(f"filter kind {f.kind!r} is not one of {list(FILTER_KINDS)}")
    b, a = _coefficients(
        [FILTER_KINDS.index(f.kind) for f in filters],
        [f.cutoff_frequency_hz for f in filters],
        [f.gain_db for f in filters],
        [f.q for f in filters],
        sample_rate,
    )
    return _responses_db(b, a, z).sum(axis=0)


def fit_grid_hz(fmin_hz: float = FIT_FMIN_HZ, fmax_hz: float = FIT_FMAX_HZ) -> np.ndarray:
    n = int(np.ceil(np.log2(fmax_hz / fmin_hz) * GRID_PER_OCTAVE)) + 1
    return fmin_hz * (fmax_hz / fmin_hz) ** (np.arange(n) / (n - 1))


def curve_on_grid(freqs_hz, gain_db, grid_hz: np.ndarray) -> np.ndarray:
    """The EQ stage's curve at ``grid_hz``: linear in log frequency between points, held at the ends."""
    return np.interp(np.log2(grid_hz), np.log2(np.asarray(freqs_hz, float)), np.asarray(gain_db, float))


def grid_power(audio: np.ndarray, sample_rate: int, grid_hz: np.ndarray) -> np.ndarray:
    """Long-term power of a (channels, n) stem collected at the fit grid (each STFT bin to its nearest point)."""
    psd = stft_power_sums(audio).mean_power
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
    return tri * power[None, :]


def _band_db(bands: np.ndarray, response: np.ndarray) -> np.ndarray:
    return 10.0 * np.log10(np.maximum(bands @ 10.0 ** (response / 10.0), 1e-300))


def stem_band_weights(band_power: np.ndarray) -> np.ndarray:
    """Weight of each band in the stem error: P / (P + P_floor), P_floor :data:`STEM_FLOOR_DB` below the
    loudest band (1 where the stem has energy, 0.5 at the floor, 0.01 20 dB under it)."""
    p = np.asarray(band_power, float)
    floor = p.max() * 10.0 ** (-STEM_FLOOR_DB / 10.0)
    return p / (p + floor)


def peak_bandwidth_octaves(q) -> np.ndarray:
    """Bandwidth (octaves) of an RBJ peaking filter of quality ``q`` (the cookbook's Q <-> BW relation)."""
    return 2.0 * np.arcsinh(0.5 / np.asarray(q, float)) / np.log(2.0)


# ------------------------------------------------------------------------------------------- fitting
# Parameter vector x: [gain_db, log2 hp_hz, log2 ls_hz, ls_db, ln ls_q, log2 hs_hz, hs_db, ln hs_q,
#                      (log2 f, db, ln q) * n_peaks]


@dataclass(frozen=True)
class _Problem:
    """What one fit works on: the grid, the target curve, the point weights and (stem fit) the bands."""

    grid: np.ndarray
    z: np.ndarray
    target: np.ndarray
    sw: np.ndarray  # sqrt point weights of the curve residual, normalised to unit sum of squares
    bands: np.ndarray | None  # (bands, grid) stem-power band matrix, or None
    ref_db: np.ndarray | None  # band levels of the stem through the curve
    bw: np.ndarray | None  # sqrt band weights (stem energy, STEM_FLOOR_DB), normalised to unit sum of squares
    highpass: bool
    sample_rate: int


def _filter_arrays(x: np.ndarray, n_peaks: int, highpass: bool):
    """(kinds, log2 f, gain, ln q) arrays of the filters in ``x`` (the high-pass first when enabled)."""
    kinds = [0, 1, 2] + [3] * n_peaks
    lf = [x[_HP], x[_LS], x[_HS]] + [x[_PEAK + 3 * k] for k in range(n_peaks)]
    g = [0.0, x[_LS + 1], x[_HS + 1]] + [x[_PEAK + 3 * k + 1] for k in range(n_peaks)]
    lq = [0.0, x[_LS + 2], x[_HS + 2]] + [x[_PEAK + 3 * k + 2] for k in range(n_peaks)]
    s = 0 if highpass else 1
    return tuple(np.array(v[s:], float) for v in (kinds, lf, g, lq))


def _unpack(x: np.ndarray, n_peaks: int, highpass: bool) -> tuple[float, list[Biquad]]:
    kinds, lf, g, lq = _filter_arrays(x, n_peaks, highpass)
    filters = [
        Biquad(FILTER_KINDS[int(k)], float(2.0**f), float(gg), float(np.exp(q)))
        for k, f, gg, q in zip(kinds, lf, g, lq)
    ]
    return float(x[0]), filters


def _bounds(n_peaks: int, fmin_hz: float, fmax_hz: float, sample_rate: int):
    nyq = 0.45 * sample_rate
    gl, sq, pq = FILTER_GAIN_LIMIT_DB, np.log(SHELF_Q_RANGE), np.log(PEAK_Q_RANGE)
    lo = [-OUTPUT_GAIN_LIMIT_DB, np.log2(1.0), np.log2(20.0), -gl, sq[0], np.log2(1000.0), -gl, sq[0]]
    hi = [OUTPUT_GAIN_LIMIT_DB, np.log2(max(fmin_hz * 16, 40.0)), np.log2(2000.0), gl, sq[1]]
    hi += [np.log2(min(20000.0, nyq)), gl, sq[1]]
    for _ in range(n_peaks):
        lo += [np.log2(max(fmin_hz * 0.8, 10.0)), -gl, pq[0]]
        hi += [np.log2(min(fmax_hz * 1.25, nyq)), gl, pq[1]]
    return np.array(lo), np.array(hi)


def _model(pb: _Problem, x: np.ndarray, n_peaks: int, *, jacobian: bool):
    """Fitted response on the grid and, with ``jacobian``, its (grid, len(x)) derivative."""
    kinds, lf, g, lq = _filter_arrays(x, n_peaks, pb.highpass)
    b, a = _coefficients(kinds, 2.0**lf, g, np.exp(lq), pb.sample_rate)
    resp = _responses_db(b, a, pb.z)
    model = x[0] + resp.sum(axis=0)
    if not jacobian:
        return model, None
    # forward differences per filter parameter, all perturbed filters in one batch
    h = 1e-6
    k = kinds.size
    rep = np.repeat(np.arange(k), 3)
    dlf, dg, dlq = (np.tile(np.eye(3)[i], k) * h for i in range(3))
    bp, ap = _coefficients(
        kinds[rep], 2.0 ** (lf[rep] + dlf), g[rep] + dg, np.exp(lq[rep] + dlq), pb.sample_rate
    )
    cols = (_responses_db(bp, ap, pb.z) - resp[rep]) / h  # (3k, grid)
    jac = np.zeros((pb.grid.size, x.size))
    jac[:, 0] = 1.0
    idx = ([_HP, _HP, _HP] if pb.highpass else []) + [_LS + i for i in range(3)] + [_HS + i for i in range(3)]
    idx += [_PEAK + i for i in range(3 * n_peaks)]
    keep = np.ones(3 * k, bool)
    if pb.highpass:
        keep[1:3] = False  # the high-pass has only its cutoff
    jac[:, np.array(idx)[keep]] = cols[keep].T
    return model, jac


def _gain_indices(n_peaks: int) -> np.ndarray:
    return np.array([_LS + 1, _HS + 1] + [_PEAK + 3 * k + 1 for k in range(n_peaks)])


def _residual(pb: _Problem, model: np.ndarray, jm: np.ndarray | None):
    """The fit residual of a modelled response and, given d model / d x (``jm``), its Jacobian."""
    curve = pb.sw * (model - pb.target)
    dcurve = None if jm is None else pb.sw[:, None] * jm
    if pb.bands is None:
        return curve, dcurve
    p = 10.0 ** (model / 10.0)
    bp = pb.bands @ p
    r = np.concatenate([pb.bw * (10.0 * np.log10(bp) - pb.ref_db), _CURVE_PULL * curve])
    if jm is None:
        return r, None
    d_band = (pb.bands * p[None, :] * (pb.bw / bp)[:, None]) @ jm
    return r, np.vstack([d_band, _CURVE_PULL * dcurve])


def _solve(pb: _Problem, x0: np.ndarray, lo: np.ndarray, hi: np.ndarray, n_peaks: int, max_nfev: int):
    gi = _gain_indices(n_peaks)
    pen = np.zeros((1 + gi.size, x0.size))
    pen[0, 0] = _OUTPUT_GAIN_PENALTY
    pen[np.arange(1, 1 + gi.size), gi] = _FILTER_GAIN_PENALTY

    def resid(x):
        r, _ = _residual(pb, _model(pb, x, n_peaks, jacobian=False)[0], None)
        return np.concatenate([r, pen @ x])

    def jac(x):
        _, dr = _residual(pb, *_model(pb, x, n_peaks, jacobian=True))
        return np.vstack([dr, pen])

    x0 = np.clip(x0, lo + 1e-9, hi - 1e-9)
    return least_squares(
        resid, x0, jac=jac, bounds=(lo, hi), method="trf", max_nfev=max_nfev, x_scale="jac", ftol=_FTOL
    )


def _worst_points(pb: _Problem, x: np.ndarray, n_peaks: int) -> list[tuple[float, float]]:
    """(log2 f, dB) where a new peak may help most: the :data:`_CANDIDATES` largest local extremes of the
    smoothed curve residual, at least :data:`_CANDIDATE_SPACING_OCT` apart, and (stem given) the stem's band
    with the largest weighted error."""
    model = _model(pb, x, n_peaks, jacobian=False)[0]
    lg = np.log2(pb.grid)
    res = pb.target - model
    smooth = np.abs(np.convolve(res * pb.sw, np.ones(5) / 5, mode="same"))
    out: list[tuple[float, float]] = []
    for i in np.argsort(-smooth):
        if len(out) == _CANDIDATES:
            break
        if all(abs(lg[i] - f) >= _CANDIDATE_SPACING_OCT for f, _ in out):
            out.append((float(lg[i]), float(res[i])))
    if pb.bands is not None:
        band_res = pb.ref_db - _band_db(pb.bands, model)
        i = int(np.argmax(np.abs(band_res * pb.bw)))
        out.append((float((pb.bands[i] @ lg) / pb.bands[i].sum()), float(band_res[i])))
    return out


def _fighting_pair(x: np.ndarray, n_peaks: int) -> tuple[int, int] | None:
    """The two closest peaks that fight (opposite gains, centres nearer than the mean of their
    half-bandwidths: one undoes the other) or duplicate each other (same sign, nearer than half that: one
    filter split in two); None when no pair does."""
    peaks = x[_PEAK : _PEAK + 3 * n_peaks].reshape(-1, 3)
    half_bw = 0.5 * peak_bandwidth_octaves(np.exp(peaks[:, 2]))
    best = None
    for i in range(n_peaks):
        for j in range(i + 1, n_peaks):
            closeness = abs(peaks[i, 0] - peaks[j, 0]) / (0.5 * (half_bw[i] + half_bw[j]))
            if peaks[i, 1] * peaks[j, 1] > 0:
                closeness /= DUPLICATE_FRACTION
            if closeness < 1.0 and (best is None or closeness < best[0]):
                best = (closeness, i, j)
    return None if best is None else (best[1], best[2])


def _merge(x: np.ndarray, n_peaks: int, i: int, j: int) -> np.ndarray:
    """``x`` with peaks i and j replaced by one (gain-weighted centre, summed gain, the broader Q)."""
    peaks = x[_PEAK : _PEAK + 3 * n_peaks].reshape(-1, 3).copy()
    (fi, gi, qi), (fj, gj, qj) = peaks[i], peaks[j]
    wsum = abs(gi) + abs(gj)
    f = (abs(gi) * fi + abs(gj) * fj) / wsum if wsum > 0 else 0.5 * (fi + fj)
    g = float(np.clip(gi + gj, -FILTER_GAIN_LIMIT_DB, FILTER_GAIN_LIMIT_DB))
    peaks[i] = (f, g, min(qi, qj))
    peaks = np.delete(peaks, j, axis=0)
    return np.concatenate([x[:_PEAK], peaks.ravel()])


def _fit_inputs(freqs_hz, gain_db, weights, stem_power, fmin_hz, fmax_hz, highpass, sample_rate) -> _Problem:
    """The checked fit problem on the fit grid."""
    grid = fit_grid_hz(fmin_hz, fmax_hz)
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
    sw = sw / np.sqrt(np.sum(sw**2))
    bands = ref = bw = None
    if stem_power is not None:
        sp = np.asarray(stem_power, float)
        if sp.shape != grid.shape or np.any(sp < 0) or not np.all(np.isfinite(sp)):
            raise ConfigError("fit_parametric_eq: stem_power must be non-negative, one per fit-grid point")
        if np.any(sp > 0):
            bands = _band_matrix(grid, sp / sp.max(), fmin_hz, fmax_hz)
            bands = bands[bands.sum(axis=1) > 0]
            ref = _band_db(bands, target)
            bw = np.sqrt(stem_band_weights(bands.sum(axis=1)))
            bw /= np.sqrt(np.sum(bw**2))
    return _Problem(grid, _z(grid, sample_rate), target, sw, bands, ref, bw, highpass, sample_rate)


def _initial(pb: _Problem) -> np.ndarray:
    """Level from the median of the curve, shelves from its ends, no high-pass effect yet."""
    t, grid = pb.target, pb.grid
    g0 = float(np.median(t))
    low = t[grid < 120.0].mean() - g0 if np.any(grid < 120.0) else 0.0
    high = t[grid > 6000.0].mean() - g0 if np.any(grid > 6000.0) else 0.0
    return np.array([g0, np.log2(2.0), np.log2(120.0), low, np.log(0.7), np.log2(6000.0), high, np.log(0.7)])


def _good_enough(res) -> bool:
    """Whether a solve's cost (half the sum of squared residuals: mean squared error plus penalties) is
    already under :data:`_ENOUGH_RMS_DB`: another peak would add a knob and nothing audible."""
    return float(np.sqrt(2.0 * res.cost)) <= _ENOUGH_RMS_DB


def _add_peaks(pb: _Problem, res, n_from: int, n_to: int, lo, hi, q0: float = 1.4):
    """Greedy peaks n_from+1..n_to, until the fit is good enough: each new peak tried at every candidate
    place (:func:`_worst_points`) with a short refinement of all filters, the best kept.
    Returns (last solve, peaks)."""
    n = n_from
    while n < n_to and not _good_enough(res):
        n += 1
        sl = slice(0, _PEAK + 3 * n)
        trials = [
            _solve(pb, np.concatenate([res.x, [f, g, np.log(q0)]]), lo[sl], hi[sl], n, _TRIAL_NFEV)
            for f, g in _worst_points(pb, res.x, n - 1)
        ]
        res = _solve(pb, min(trials, key=lambda r: r.cost).x, lo[sl], hi[sl], n, 300)
    return res, n


def _merge_all(pb: _Problem, res, n: int, lo: np.ndarray, hi: np.ndarray):
    """Merge fighting or duplicate peaks one pair at a time, refining after each: (result, peaks left)."""
    while (pair := _fighting_pair(res.x, n)) is not None:
        n -= 1
        res = _solve(pb, _merge(res.x, n + 1, *pair), lo[: _PEAK + 3 * n], hi[: _PEAK + 3 * n], n, 1000)
    return res, n


def _reseat(pb: _Problem, res, n: int, n_peaks: int, k: int, lo: np.ndarray, hi: np.ndarray, q0: float):
    """Peak ``k`` taken out, the others refined briefly, then every free peak placed again where the error
    is largest (:func:`_add_peaks`), refined and merged where peaks fight: (result, peaks)."""
    peaks = np.delete(res.x[_PEAK : _PEAK + 3 * n].reshape(-1, 3), k, axis=0).ravel()
    sl = slice(0, _PEAK + 3 * (n - 1))
    trial = _solve(pb, np.concatenate([res.x[:_PEAK], peaks]), lo[sl], hi[sl], n - 1, _TRIAL_NFEV)
    trial, m = _add_peaks(pb, trial, n - 1, n_peaks, lo, hi, q0)
    trial = _solve(pb, trial.x, lo[: _PEAK + 3 * m], hi[: _PEAK + 3 * m], m, 1000)
    return _merge_all(pb, trial, m, lo, hi)


def _fit(pb: _Problem, n_peaks: int, lo: np.ndarray, hi: np.ndarray, q0: float):
    """Greedy peaks and a joint refinement, fighting or duplicate peaks merged and the freed peaks placed
    again (kept if that lowers the cost); then a local search over the peaks' places: up to _ROUNDS passes,
    each peak in turn taken out and the free peaks placed again where the error is largest
    (:func:`_reseat`), a change kept when it lowers the cost, until a pass changes nothing or the fit is
    good enough. New peaks start at Q ``q0``. Returns (least-squares result, number of peaks)."""
    res, n = _add_peaks(pb, _solve(pb, _initial(pb), lo[:_PEAK], hi[:_PEAK], 0, 200), 0, n_peaks, lo, hi, q0)
    res, n = _merge_all(pb, _solve(pb, res.x, lo[: _PEAK + 3 * n], hi[: _PEAK + 3 * n], n, 1000), n, lo, hi)
    if n < n_peaks and not _good_enough(res):  # peaks freed by merging: place them again
        trial, m = _add_peaks(pb, res, n, n_peaks, lo, hi, q0)
        trial, m = _merge_all(
            pb, _solve(pb, trial.x, lo[: _PEAK + 3 * m], hi[: _PEAK + 3 * m], m, 1000), m, lo, hi
        )
        if trial.cost < res.cost:
            res, n = trial, m
    for _ in range(_ROUNDS):
        improved = False
        k = 0
        while k < n and not _good_enough(res):
            trial, m = _reseat(pb, res, n, n_peaks, k, lo, hi, q0)
            if trial.cost < res.cost * (1.0 - _FTOL):
                res, n, improved = trial, m, True
            k += 1
        if not improved:
            break
    return res, n


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
    """Constrained least-squares parametric approximation of an EQ curve (limits: see the module docstring).

    Args:
        freqs_hz, gain_db: the curve (e.g. ``EqParams.freqs_hz`` / ``.gain_db``), dB at each frequency.
        sample_rate: Hz; the biquads are digital, so the fit is for this rate.
        n_peaks: peaking bands at most, 0..6 (placed greedily, refined together; fighting ones merged;
            then moved where that helps).
        fmin_hz, fmax_hz: fit range (see the module docstring).
        weights: optional non-negative weights per *curve point* (same length as ``freqs_hz``), interpolated
            to the fit grid; None = uniform in log frequency.
        highpass: allow a first-order high-pass (kept only if its cutoff ends above HIGHPASS_OFF_HZ).
        stem_power: the stem's long-term power at :func:`fit_grid_hz` points (:func:`grid_power`); when
            given, the fit minimises the stem error (the band spectrum of the filtered stem against the
            stem through the curve) together with the curve error (module docstring);
            ``stem_rms_error_db``/``stem_max_error_db`` report it.

    Returns:
        :class:`ParametricEq` with the curve error (every point of ``fmin_hz..fmax_hz`` alike) and, with
        ``stem_power``, the stem error.
    """
    if not 0 <= n_peaks <= MAX_PEAKS:
        raise ConfigError(f"n_peaks = {n_peaks} must be in [0, {MAX_PEAKS}]")
    if not 0 < fmin_hz < fmax_hz < 0.5 * sample_rate:
        raise ConfigError(f"fit range {fmin_hz}..{fmax_hz} Hz must be inside 0..{sample_rate / 2:g} Hz")
    pb = _fit_inputs(freqs_hz, gain_db, weights, stem_power, fmin_hz, fmax_hz, highpass, sample_rate)
    lo, hi = _bounds(n_peaks, fmin_hz, fmax_hz, sample_rate)
    res, n_kept = min((_fit(pb, n_peaks, lo, hi, q0) for q0 in _START_Q), key=lambda r: r[0].cost)
    x = res.x
    g, filters = _unpack(x, n_kept, highpass)
    filters = [f for f in filters if f.kind != "highpass" or f.cutoff_frequency_hz >= HIGHPASS_OFF_HZ]
    filters = [f for f in filters if f.kind == "highpass" or abs(f.gain_db) >= 0.05]
    model = g + response_db(filters, pb.grid, sample_rate)
    err = model - pb.target
    stem_rms = stem_max = None
    if pb.bands is not None:
        band_err = _band_db(pb.bands, model) - pb.ref_db
        has_energy = stem_band_weights(pb.bands.sum(axis=1)) >= 0.5
        stem_rms = float(np.sqrt(np.sum((pb.bw * band_err) ** 2)))
        stem_max = float(np.max(np.abs(band_err[has_energy])))
    return ParametricEq(
        tuple(filters),
        g,
        float(np.sqrt(np.mean(err**2))),
        float(np.max(np.abs(err))),
        float(fmin_hz),
        float(fmax_hz),
        stem_rms,
        stem_max,
    )

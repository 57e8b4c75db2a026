"""Half-octave graphic EQ toward a tonal target: the corpus engineer's class-bus EQ
(``training/engineer/tonal.py``: pedalboard peak filters) and, as a linear-phase FIR of the same magnitude on the
profile's 1/6-octave grid, the console's fine class-bus EQ (:mod:`fxmix.model.console.bus`).

Gains are fitted by least squares on the filters' RBJ magnitude responses evaluated on the dsp band grid (three
Gauss-Newton steps, since a peak filter's dB response is nearly, not exactly, linear in its gain), with a penalty
on the second difference of neighbouring gains (a smooth curve, no alternating +/-12 dB pairs) and a small ridge.
Bands outside MATCH_RANGE_HZ stay at 0 dB.
"""

from __future__ import annotations

import numpy as np
from fxmix.dsp.bands import band_centers_hz
from fxmix.dsp.constants import SAMPLE_RATE

#: the band range the match looks at; outside it the curve follows the fitted octaves' interpolation
MATCH_RANGE_HZ = (60.0, 16000.0)
#: bands this far under the bus's strongest band count as empty: the EQ may cut there, never boost
EMPTY_BELOW_DB = 55.0
#: Graphic EQ bands: half-octave centres 40 Hz .. 16 kHz, Q for half-octave spacing, gain limit (dB).
GEQ_HZ = tuple(float(40.0 * 2 ** (k / 2)) for k in range(18))
GEQ_Q = 2.87
GEQ_MAX_CUT_DB = 24.0
GEQ_MAX_BOOST_DB = 15.0
#: Weights of the least-squares fit: on the second difference of neighbouring gains, and on the gains.
SMOOTH = 0.5
RIDGE = 0.05


def peak_response_db(hz: float, gain_db: float, q: float, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """RBJ peaking-EQ magnitude (dB) on the band grid (the filter pedalboard's PeakFilter implements)."""
    f = band_centers_hz()
    a = 10 ** (gain_db / 40)
    w0 = 2 * np.pi * hz / sample_rate
    alpha = np.sin(w0) / (2 * q)
    b = np.array([1 + alpha * a, -2 * np.cos(w0), 1 - alpha * a])
    d = np.array([1 + alpha / a, -2 * np.cos(w0), 1 - alpha / a])
    z = np.exp(-1j * 2 * np.pi * f / sample_rate)
    h = (b[0] + b[1] * z + b[2] * z**2) / (d[0] + d[1] * z + d[2] * z**2)
    return 20 * np.log10(np.abs(h) + 1e-12)


def eq_response_db(bands: list[dict]) -> np.ndarray:
    out = np.zeros(band_centers_hz().size)
    for b in bands:
        out += peak_response_db(b["hz"], b["db"], b["q"])
    return out


def tonal_eq(measured_db: np.ndarray, target_db: np.ndarray, amount: float) -> list[dict]:
    """Graphic-EQ bands that move ``measured_db`` (a bus's band spectrum, :func:`~fxmix.model.console.bus.
    bus_spectrum_db`) ``amount`` of the way to ``target_db`` (its class's tonal target), level-aligned over
    MATCH_RANGE_HZ."""
    sel = match_bands()
    diff = tonal_gap_db(measured_db, target_db, amount)
    use = [k for k, h in enumerate(GEQ_HZ) if MATCH_RANGE_HZ[0] <= h <= MATCH_RANGE_HZ[1]]
    gains = np.zeros(len(GEQ_HZ))
    basis = np.stack([peak_response_db(GEQ_HZ[k], 1.0, GEQ_Q) for k in use], axis=1)[sel]
    # second differences keep neighbouring bands from fighting each other; the ridge keeps gains small
    d2 = SMOOTH * np.diff(np.eye(len(use)), n=2, axis=0)
    ridge = RIDGE * np.eye(len(use))
    for _ in range(3):
        resp = sum(peak_response_db(h, g, GEQ_Q) for h, g in zip(GEQ_HZ, gains))
        a = np.vstack([basis, d2, ridge])
        b = np.concatenate([(diff - resp)[sel], -d2 @ gains[use], -RIDGE * gains[use]])
        step, *_ = np.linalg.lstsq(a, b, rcond=None)
        gains[use] = np.clip(gains[use] + step, -GEQ_MAX_CUT_DB, GEQ_MAX_BOOST_DB)
    return [{"hz": round(h, 2), "db": round(float(g), 3), "q": GEQ_Q} for h, g in zip(GEQ_HZ, gains)]


def match_bands() -> np.ndarray:
    """(bands,) bool: the grid bands inside MATCH_RANGE_HZ."""
    f = band_centers_hz()
    return (f >= MATCH_RANGE_HZ[0]) & (f <= MATCH_RANGE_HZ[1])


def tonal_gap_db(measured_db: np.ndarray, target_db: np.ndarray, amount: float) -> np.ndarray:
    """``amount`` of the gap from a bus's band spectrum to its tonal target, level-aligned over MATCH_RANGE_HZ,
    and no boost where the bus has (next to) nothing (a high-passed range stays high-passed): the curve the
    console's bus EQ and the corpus engineer's graphic EQ fit."""
    sel = match_bands()
    measured = np.asarray(measured_db, float)
    gap = np.asarray(target_db, float) - measured
    gap = amount * (gap - gap[sel].mean())
    return np.where(measured < measured[sel].max() - EMPTY_BELOW_DB, np.minimum(gap, 0.0), gap)

"""Class-bus tonal balance: a half-octave graphic EQ (cuts and boosts to 12 dB) (pedalboard peak filters) that moves a bus part of the
way toward its class's tonal target, the long-term class spectrum of commercial mixes (the reference's
MUSDB18 averages, ``musdb18-reference``).

Gains are fitted by least squares on the filters' RBJ magnitude responses evaluated on the dsp band grid
(three Gauss-Newton steps, since a peak filter's dB response is nearly, not exactly, linear in its gain;
a small ridge term keeps neighbouring bands from alternating). Bands outside MATCH_RANGE_HZ stay at 0 dB.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from ...dsp.bands import band_centers_hz
from ...dsp.constants import REFERENCE_PROFILE, SAMPLE_RATE
from ...dsp.profile import load_profile

#: Graphic EQ bands: half-octave centres 40 Hz .. 16 kHz, Q for half-octave spacing, gain limit (dB).
GEQ_HZ = tuple(float(40.0 * 2 ** (k / 2)) for k in range(18))
GEQ_Q = 2.87
GEQ_MAX_CUT_DB = 12.0
GEQ_MAX_BOOST_DB = 12.0
#: The band range the tonal match looks at (outside it the buses keep their own balance).
MATCH_RANGE_HZ = (60.0, 14000.0)
#: Bands this far under the bus's strongest band count as empty: the EQ may cut there, never boost.
EMPTY_BELOW_DB = 45.0
#: Tikhonov weight on the band gains of the least-squares fit.
RIDGE = 0.3


@lru_cache(maxsize=1)
def tonal_targets() -> dict[str, np.ndarray]:
    prof = load_profile(REFERENCE_PROFILE)
    return {c: np.asarray(prof.targets_for(c).spectrum_db, float) for c in prof.classes}


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


def tonal_eq(measured_db: np.ndarray, cls: str, amount: float) -> list[dict]:
    """Graphic-EQ bands that move ``measured_db`` (a -30 LUFS-referenced band spectrum) ``amount`` of the way
    to the class target, level-aligned over MATCH_RANGE_HZ."""
    f = band_centers_hz()
    sel = (f >= MATCH_RANGE_HZ[0]) & (f <= MATCH_RANGE_HZ[1])
    diff = tonal_targets()[cls] - measured_db
    diff = amount * (diff - diff[sel].mean())
    # no boost where the bus has (next to) nothing: a high-passed range stays high-passed
    diff = np.where(measured_db < measured_db[sel].max() - EMPTY_BELOW_DB, np.minimum(diff, 0.0), diff)
    use = [k for k, h in enumerate(GEQ_HZ) if MATCH_RANGE_HZ[0] <= h <= MATCH_RANGE_HZ[1]]
    gains = np.zeros(len(GEQ_HZ))
    basis = np.stack([peak_response_db(GEQ_HZ[k], 1.0, GEQ_Q) for k in use], axis=1)[sel]
    ridge = RIDGE * np.eye(len(use))  # keeps neighbouring bands from fighting each other
    for _ in range(3):
        resp = sum(peak_response_db(h, g, GEQ_Q) for h, g in zip(GEQ_HZ, gains))
        a = np.vstack([basis, ridge])
        b = np.concatenate([(diff - resp)[sel], -RIDGE * gains[use]])
        step, *_ = np.linalg.lstsq(a, b, rcond=None)
        gains[use] = np.clip(gains[use] + step, -GEQ_MAX_CUT_DB, GEQ_MAX_BOOST_DB)
    return [{"hz": round(h, 2), "db": round(float(g), 3), "q": GEQ_Q} for h, g in zip(GEQ_HZ, gains)]

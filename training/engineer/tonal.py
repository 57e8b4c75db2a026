"""Class-bus tonal balance: a harmonic exciter where the bus lacks top end, then a half-octave graphic EQ
(pedalboard peak filters) that moves the bus part of the way toward its class's tonal target, the long-term
class spectrum of commercial mixes (the reference's MUSDB18 averages, ``musdb18-reference``).

- Exciter (the "aural exciter" of mixing practice): each track's content above the class's exciter corner is
  saturated (pedalboard ``Distortion``) and the new harmonics, high-passed again, are mixed in at one level
  per bus, chosen so the bus's band levels above the corner come closest to the target. An EQ cannot boost
  content a synthesized source does not have; saturation makes it from the content just below.
- Graphic EQ gains are fitted by least squares on the filters' RBJ magnitude responses evaluated on the dsp
  band grid (three Gauss-Newton steps, since a peak filter's dB response is nearly, not exactly, linear in
  its gain), with a penalty on the second difference of neighbouring gains (a smooth curve, no alternating
  +/-12 dB pairs) and a small ridge. Bands outside MATCH_RANGE_HZ stay at 0 dB.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
from pedalboard import Distortion, HighpassFilter, Pedalboard

from ...dsp.bands import band_centers_hz
from ...dsp.constants import REFERENCE_PROFILE, SAMPLE_RATE
from ...dsp.profile import load_profile
from ...dsp.profile_fit import mean_stft_magnitude, reference_style_spectrum
from ...model.console.bus import MATCH_RANGE_HZ, match_bands, tonal_gap_db

#: Graphic EQ bands: half-octave centres 40 Hz .. 16 kHz, Q for half-octave spacing, gain limit (dB).
GEQ_HZ = tuple(float(40.0 * 2 ** (k / 2)) for k in range(18))
GEQ_Q = 2.87
GEQ_MAX_CUT_DB = 24.0
GEQ_MAX_BOOST_DB = 15.0
#: Weights of the least-squares fit: on the second difference of neighbouring gains, and on the gains.
SMOOTH = 0.5
RIDGE = 0.05
#: Exciter corner per class (Hz): content above it is saturated into harmonics above it.
EXCITER_HZ = {"vocals": 2500.0, "drums": 3000.0, "bass": 500.0, "other": 2500.0}
EXCITER_DRIVE_DB = 24.0
#: Exciter mix levels tried (dB re the high-passed band it is made from); the lowest means "off".
EXCITER_MIX_DB = tuple(float(v) for v in range(-36, 1, 2))


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
    """Graphic-EQ bands that move ``measured_db`` (a band spectrum, :func:`bus_spectrum_db`) ``amount`` of the
    way to the class target, level-aligned over MATCH_RANGE_HZ."""
    sel = match_bands()
    diff = tonal_gap_db(measured_db, tonal_targets()[cls], amount)
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


def excitation(x: np.ndarray, cls: str, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """The exciter's harmonics of one (2, n) track at 0 dB mix: its content above the class corner,
    saturated at EXCITER_DRIVE_DB at a fixed level (so their colour does not depend on the track's level),
    high-passed again, scaled back to the track's level. Zeros for a track with no such content."""
    hz = EXCITER_HZ[cls]
    hp = Pedalboard([HighpassFilter(hz), HighpassFilter(hz)])
    h = hp(np.ascontiguousarray(x, np.float32), sample_rate)
    peak = float(np.max(np.abs(h)))
    if peak < 1e-7:
        return np.zeros_like(h)
    sat = Pedalboard([Distortion(drive_db=EXCITER_DRIVE_DB), HighpassFilter(hz), HighpassFilter(hz)])
    e = sat(np.ascontiguousarray(h / np.float32(peak), np.float32), sample_rate)
    # the saturated band back at the level of the band it was made from
    gain = np.sqrt(
        np.mean(np.square(h, dtype=np.float64)) / max(np.mean(np.square(e, dtype=np.float64)), 1e-30)
    )
    return (e * np.float32(gain)).astype(np.float32)


def bus_spectrum_db(x: np.ndarray, cls: str, sample_rate: int = SAMPLE_RATE) -> np.ndarray | None:
    """A bus's band spectrum (dB, at its own level) measured the way its tonal target was: the mean STFT
    magnitude, smoothed and banded as the reference's published spectra (``reference_style_spectrum``).

    Measured with dsp's power spectrum instead, a bus matched to its target reads 2-3 dB brighter at
    7-9 kHz on that target's own scale (the reference smooths magnitudes along linear frequency, which lowers
    harmonic low mids more than a noisy top; training/DATA.md, calibration). None for silence."""
    if not np.any(x):
        return None
    return reference_style_spectrum(mean_stft_magnitude(x), cls, sample_rate)


def exciter_mix_db(
    bus: np.ndarray, excited: np.ndarray, cls: str, sample_rate: int = SAMPLE_RATE
) -> float | None:
    """The exciter level (dB) that brings the bus's bands above the class corner closest (least squares, after
    level alignment over MATCH_RANGE_HZ) to the class target; None when the lowest level tried is best."""
    f = band_centers_hz()
    px, pe = bus_spectrum_db(bus, cls, sample_rate), bus_spectrum_db(excited, cls, sample_rate)
    if px is None or pe is None:
        return None
    target = tonal_targets()[cls]
    sel = match_bands()
    top = sel & (f >= EXCITER_HZ[cls])
    best, best_err = None, np.inf
    for k, mix in enumerate(EXCITER_MIX_DB):
        comb = 10 * np.log10(10 ** (px / 10) + (10 ** ((pe + mix) / 10) if k else 0.0))
        d = target - comb
        err = float(np.mean((d[top] - d[sel].mean()) ** 2))
        if err < best_err - 1e-9:
            best, best_err = (mix if k else None), err
    return best

"""Class-bus tonal EQ of the console: after the track chains, each class bus (the sum of its panned tracks) is
EQ'd part of the way toward its class's tonal target in the profile, as a mixing engineer's bus EQ (and the
corpus engineer's, ``training/engineer/tonal.py``) does.

The curve is measured, not learned: the bus's band spectrum is taken the way the target was
(:func:`fxmix.dsp.profile_fit.reference_style_spectrum` of the mean STFT magnitude), the gap to the target is
level-aligned over MATCH_RANGE_HZ, scaled by BUS_EQ_AMOUNT, never a boost where the bus is (next to) empty, and
fitted by least squares onto the console EQ's octave bands (:func:`~fxmix.model.console.designs.eq_fir`, the
same linear-phase design as the track EQ), shifted to keep the bus's K-weighted loudness (the engineer's bus EQ
keeps it with a make-up gain). The EQ is linear, so it is rendered on each track of the class after
its pan, which equals EQ'ing the bus; the reverb send is taken after it. The curve is a constant to the
gradient (the torch console renders it, the twin renders it with pedalboard, from the same numbers).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
from fxmix.dsp.bands import band_centers_hz
from fxmix.dsp.constants import SAMPLE_RATE
from fxmix.dsp.features import measure_spectrum
from fxmix.dsp.profile_fit import mean_stft_magnitude, reference_style_spectrum

from .designs import eq_to_grid_matrix, k_band_weights
from .geq import eq_response_db, match_bands, tonal_eq, tonal_gap_db

#: how far toward the target (the corpus engineer's mean taste moves its buses 0.95 of the way)
BUS_EQ_AMOUNT = 0.95
#: octave gain limits (dB) and the ridge of the least-squares fit
MAX_CUT_DB, MAX_BOOST_DB, RIDGE = 24.0, 15.0, 0.05


def bus_curve_db(
    bus: np.ndarray, target_db: np.ndarray, cls: str, sample_rate: int = SAMPLE_RATE, *, fine: bool = False
) -> np.ndarray:
    """The class-bus EQ curve (dB) that moves ``bus`` (2, n) toward ``target_db`` (the class's band spectrum on
    the profile grid): octave-band gains (the console EQ's bands, :func:`curve_toward`), or with ``fine`` the
    half-octave graphic EQ's response on the whole grid (:func:`fine_curve_toward`); zeros for a silent bus."""
    if not np.any(bus):
        return np.zeros(band_centers_hz().size if fine else eq_to_grid_matrix().shape[0])
    x = np.asarray(bus, np.float32)
    measured = bus_spectrum_db(x, cls, sample_rate)
    power_db = measure_spectrum(x, sample_rate, 0.0)  # mean band power: what the loudness weights apply to
    toward = fine_curve_toward if fine else curve_toward
    return toward(measured, target_db, k_band_weights(sample_rate), power_db)


def bus_spectrum_db(x: np.ndarray, cls: str, sample_rate: int = SAMPLE_RATE) -> np.ndarray | None:
    """A bus's band spectrum (dB, at its own level) measured the way its tonal target was: the mean STFT
    magnitude, smoothed and banded as the reference's published spectra (``reference_style_spectrum``).

    Measured with dsp's power spectrum instead, a bus matched to its target reads 2-3 dB brighter at
    7-9 kHz on that target's own scale (the reference smooths magnitudes along linear frequency, which lowers
    harmonic low mids more than a noisy top; training/DATA.md, calibration). None for silence."""
    if not np.any(x):
        return None
    return reference_style_spectrum(mean_stft_magnitude(np.asarray(x, np.float32)), cls, sample_rate)


def curve_toward(measured_db: np.ndarray, target_db: np.ndarray, k_band: np.ndarray | None = None,
                 power_db: np.ndarray | None = None) -> np.ndarray:
    """Octave-band gains (dB) that move a bus's band spectrum ``measured_db`` (on the profile grid, any level)
    :data:`BUS_EQ_AMOUNT` of the way toward ``target_db``: the level-aligned gap over MATCH_RANGE_HZ, never a
    boost where the bus is (next to) empty, least squares on the EQ's interpolation between its octaves. With
    ``k_band`` (:func:`~fxmix.model.console.designs.k_band_weights`) the curve is shifted to keep the bus's
    K-weighted loudness: a tone control, not a fader (the class balance stays the tracks' faders'), reckoned on
    ``power_db`` (the bus's mean band power on the grid, any level; default ``measured_db``)."""
    g = eq_to_grid_matrix()  # (octaves, bands)
    sel = match_bands()
    measured = np.asarray(measured_db, float)
    gap = tonal_gap_db(measured, target_db, BUS_EQ_AMOUNT)
    a = np.vstack([g[:, sel].T, RIDGE * np.eye(g.shape[0])])
    b = np.concatenate([gap[sel], np.zeros(g.shape[0])])
    gains, *_ = np.linalg.lstsq(a, b, rcond=None)
    gains = np.clip(gains, -MAX_CUT_DB, MAX_BOOST_DB)
    if k_band is not None:
        gains = gains - loudness_change_db(gains @ g, measured if power_db is None else power_db, k_band)
    return gains


def fine_curve_toward(measured_db: np.ndarray, target_db: np.ndarray, k_band: np.ndarray | None = None,
                      power_db: np.ndarray | None = None) -> np.ndarray:
    """:func:`curve_toward` at the corpus engineer's resolution: the response on the profile grid (dB per band) of
    the half-octave graphic EQ that moves ``measured_db`` :data:`BUS_EQ_AMOUNT` of the way toward ``target_db``
    (:func:`fxmix.model.console.geq.tonal_eq`), shifted to keep the K-weighted loudness where ``k_band`` is
    given. The console renders it as a linear-phase FIR of that magnitude."""
    curve = eq_response_db(tonal_eq(measured_db, target_db, BUS_EQ_AMOUNT))
    if k_band is not None:
        curve = curve - loudness_change_db(curve, measured_db if power_db is None else power_db, k_band)
    return curve


def loudness_change_db(curve_db: np.ndarray, power_db: np.ndarray, k_band: np.ndarray) -> float:
    """How much a curve on the grid (dB per band) changes the K-weighted loudness (dB) of a bus whose mean band
    power is ``power_db`` (any level)."""
    p = np.asarray(power_db, float)
    kp = 10 ** ((p - p.max()) / 10) * np.asarray(k_band, float)
    return float(10 * np.log10((kp * 10 ** (np.asarray(curve_db, float) / 10)).sum() / kp.sum()))


def bus_curves(
    buses: Mapping[str, np.ndarray], targets: Mapping[str, np.ndarray], sample_rate: int = SAMPLE_RATE, *,
    fine: bool = False,
) -> dict[str, np.ndarray]:
    """:func:`bus_curve_db` of every class bus ``{class: (2, n)}``."""
    return {c: bus_curve_db(x, targets[c], c, sample_rate, fine=fine) for c, x in buses.items()}


def class_tracks(names: Sequence[str], n_tracks: int) -> dict[str, list[int]]:
    """Each class's track indices among the first ``n_tracks`` of ``names`` (a batch item's classes; tracks past
    the list's end are padding), classes in order of first appearance."""
    out: dict[str, list[int]] = {}
    for i, c in enumerate(list(names)[:n_tracks]):
        out.setdefault(c, []).append(i)
    return out


def track_curves(
    panned: np.ndarray, classes: Sequence[Sequence[str]], targets: Mapping[str, np.ndarray],
    sample_rate: int = SAMPLE_RATE, *, fine: bool = False,
) -> np.ndarray:
    """(batch, tracks, octaves, or grid bands with ``fine``): each track's class-bus curve for panned tracks
    (batch, tracks, 2, n) of ``classes`` (nested per batch item; silent padding tracks add nothing to their
    bus)."""
    out = np.zeros((*panned.shape[:2], band_centers_hz().size if fine else eq_to_grid_matrix().shape[0]))
    for b, names in enumerate(classes):
        groups = class_tracks(names, panned.shape[1])
        curves = bus_curves({c: np.sum(panned[b, idx], axis=0) for c, idx in groups.items()}, targets, sample_rate,
                            fine=fine)
        for c, idx in groups.items():
            out[b, idx] = curves[c]
    return out


def profile_targets(profile) -> dict[str, np.ndarray]:
    """Each class's tonal target (band dB on the grid) of a :class:`fxmix.dsp.profile.Profile`."""
    return {c: np.asarray(profile.targets_for(c).spectrum_db, float) for c in profile.classes}

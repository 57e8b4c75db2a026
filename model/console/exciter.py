"""Class-bus harmonic exciter (the "aural exciter" of mixing practice), shared by the console and the corpus
engineer (``training/engineer/tonal.py``, whose buses have it): each track's content above its class's corner
is saturated (pedalboard ``Distortion``) and the new harmonics, high-passed again, are added to the track at one
level per class bus, the level that brings the bus's bands above the corner closest to the class's tonal target.
An EQ cannot boost content a synthesized or dull source does not have; saturation makes it from the content
just below.

The level is measured, not learned (like the console's bus EQ, :mod:`fxmix.model.console.bus`): the console
takes it from the sum of each class's panned tracks, a constant to the gradient, and the harmonics of a track
are a fixed function of its panned signal, rendered with pedalboard by the torch console and its twin alike.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
from fxmix.dsp.bands import band_centers_hz
from fxmix.dsp.constants import SAMPLE_RATE
from pedalboard import Distortion, HighpassFilter, Pedalboard

from .bus import bus_spectrum_db, class_tracks
from .geq import match_bands

#: Exciter corner per class (Hz): content above it is saturated into harmonics above it.
EXCITER_HZ = {"vocals": 2500.0, "drums": 3000.0, "bass": 500.0, "other": 2500.0}
EXCITER_DRIVE_DB = 24.0
#: Exciter mix levels tried (dB re the high-passed band it is made from); the lowest means "off".
EXCITER_MIX_DB = tuple(float(v) for v in range(-36, 1, 2))


def excitation(x: np.ndarray, cls: str, sample_rate: int = SAMPLE_RATE, *, gains: dict | None = None) -> np.ndarray:
    """The exciter's harmonics of one (2, n) track at 0 dB mix: its content above the class corner,
    saturated at EXCITER_DRIVE_DB at a fixed level (so their colour does not depend on the track's level),
    high-passed again, scaled back to the track's level. Zeros for a track with no such content.
    ``gains`` receives the two level constants (dB) a plug-in needs to make the same harmonics
    (``fxmix_exciter.jsfx``): ``in_db`` (the high-passed band's peak to 0 dBFS) and ``out_db`` (the saturated
    band back to the band's RMS); nothing for such a track."""
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
    if gains is not None:
        gains.update(in_db=-20.0 * float(np.log10(np.float32(peak))), out_db=20.0 * float(np.log10(gain)))
    return (e * np.float32(gain)).astype(np.float32)


def exciter_mix_db(
    bus: np.ndarray, excited: np.ndarray, cls: str, target_db: np.ndarray, sample_rate: int = SAMPLE_RATE
) -> float | None:
    """The exciter level (dB) that brings the bus's bands above the class corner closest (least squares, after
    level alignment over the match range) to the class's tonal target ``target_db``; None when the lowest
    level tried is best. ``excited``: the sum of the bus's tracks' :func:`excitation`."""
    f = band_centers_hz()
    px, pe = bus_spectrum_db(bus, cls, sample_rate), bus_spectrum_db(excited, cls, sample_rate)
    if px is None or pe is None:
        return None
    target = np.asarray(target_db, float)
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


def track_excitation(
    panned: np.ndarray, classes: Sequence[Sequence[str]], targets: Mapping[str, np.ndarray],
    sample_rate: int = SAMPLE_RATE, levels: list[dict] | None = None,
) -> np.ndarray:
    """(batch, tracks, 2, n) float32: what the exciter adds to each of the panned tracks (batch, tracks, 2, n)
    of ``classes`` (nested per batch item; padding tracks past a list's end, and silent ones, get nothing), at
    its class bus's level, measured on the bus (:func:`exciter_mix_db`) toward ``targets`` (class -> band dB).
    ``levels``: a list that receives each batch item's ``{class: level dB or None}``."""
    x = np.asarray(panned, np.float32)
    out = np.zeros_like(x)
    for b, names in enumerate(classes):
        found = {}
        for cls, idx in class_tracks(names, x.shape[1]).items():
            exc = [excitation(x[b, i], cls, sample_rate) if np.any(x[b, i]) else None for i in idx]
            live = [e for e in exc if e is not None]
            mix = exciter_mix_db(x[b, idx].sum(axis=0), np.sum(live, axis=0), cls, targets[cls], sample_rate) \
                if live else None
            found[cls] = mix
            if mix is not None:
                g = np.float32(10 ** (mix / 20))
                for i, e in zip(idx, exc):
                    if e is not None:
                        out[b, i] = e * g
        if levels is not None:
            levels.append(found)
    return out

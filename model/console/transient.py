"""Transient cut on a class bus (an attack control, as a "transient designer"), shared by the console and the
corpus engineer (``training/engineer/render.py``, whose buses have it after their glue compressor): one gain
curve computed from the bus sum and applied to every track of the class (side-chained group processing), so
the bus stays the sum of its tracks.

The gain is measured, not learned: the console computes it from each class's bus (a constant to the
gradient) and multiplies its tracks by it, in torch and in its pedalboard twin alike.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np
from scipy.ndimage import maximum_filter1d
from scipy.signal import lfilter

from .bus import class_tracks

#: Transient cut per class bus (dB): the bus's peak envelope (held over TRANSIENT_HOLD_MS, centred, so the cut
#: starts before the attack) against its slow average (one-pole, TRANSIENT_SLOW_MS); where the envelope rises
#: TRANSIENT_KNEE_DB or more above the average (an onset) the gain dips by the class's depth (dB), less on smaller
#: rises, smoothed over TRANSIENT_SMOOTH_MS. Every onset loses the same dB whatever its level, so the onsets keep
#: their spread (the onset-peak feature) while the peaks come closer to the body: synthesized and sampled notes
#: start harder above their body than played and mixed ones (training/DATA.md, calibration).
BUS_TRANSIENT_DB = {"vocals": 3.0, "drums": 7.0, "bass": 4.0, "other": 3.0}
TRANSIENT_HOLD_MS = 15.0
TRANSIENT_SLOW_MS = 100.0
TRANSIENT_KNEE_DB = 3.0
TRANSIENT_SMOOTH_MS = 2.0


def _one_pole(x: np.ndarray, tau_ms: float, sr: int) -> np.ndarray:
    a = math.exp(-1000.0 / (tau_ms * sr))
    return lfilter([1.0 - a], [1.0, -a], x)


def transient_gain(x: np.ndarray, sr: int, cut_db: float) -> np.ndarray:
    """(n,) gain that lowers every onset of ``x`` (2, n) by ``cut_db`` whatever its level (the peaks come
    closer to the body of the notes; how loud one onset is against another is kept), body untouched."""
    env = maximum_filter1d(
        np.abs(x).max(axis=0).astype(np.float64), size=max(1, int(TRANSIENT_HOLD_MS * sr / 1000))
    )
    slow = _one_pole(env, TRANSIENT_SLOW_MS, sr)
    rise_db = 20.0 * np.log10(np.maximum(env, 1e-9) / np.maximum(slow, 1e-9))
    g_db = _one_pole(-cut_db * np.clip(rise_db / TRANSIENT_KNEE_DB, 0.0, 1.0), TRANSIENT_SMOOTH_MS, sr)
    return (10.0 ** (g_db / 20.0)).astype(np.float32)


def track_transient_gains(
    panned: np.ndarray, classes: Sequence[Sequence[str]], sample_rate: int,
    depths_db: Mapping[str, float] = BUS_TRANSIENT_DB,
) -> np.ndarray:
    """(batch, tracks, n) float32: each panned track's (batch, tracks, 2, n) class-bus transient gain
    (:func:`transient_gain` of its class's bus at its class's depth), 1 for padding tracks past a list's
    end of ``classes`` (nested per batch item) and for a silent bus."""
    x = np.asarray(panned, np.float32)
    out = np.ones((x.shape[0], x.shape[1], x.shape[-1]), np.float32)
    for b, names in enumerate(classes):
        for cls, idx in class_tracks(names, x.shape[1]).items():
            bus = x[b, idx].sum(axis=0)
            if np.any(bus):
                out[b, idx] = transient_gain(bus, sample_rate, depths_db[cls])
    return out

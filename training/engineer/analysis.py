"""What the engineer listens for before deciding: per-track loudness, dynamics, register, activity and band
spectrum, and the arrangement around each track (how many parts play with it, how much they mask it).

Everything is measured on the dry tracks once (:func:`analyse_session`); the rules in :mod:`.rules` only read
these numbers, so a decision can be traced to a measured property of the music.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from ...dsp.bands import band_centers_hz
from ...dsp.features import integrated_loudness, measure_spectrum

#: Analysis frame for activity and density (s): long enough to bridge note gaps inside a phrase.
FRAME_S = 0.1
#: A frame is active when its RMS is within this many dB of the track's loudest frame (and above the floor).
ACTIVE_RANGE_DB = 30.0
ACTIVE_FLOOR_DB = -60.0
#: Register: the lowest band within this many dB of the track's strongest band (its lowest own content;
#: rumble, bleed and hum further down do not count).
LOW_RANGE_DB = 20.0


@dataclass(frozen=True)
class TrackAnalysis:
    """Measured properties of one dry track (levels in dB re the dry recording)."""

    loudness_lufs: float
    peak_db: float
    crest_db: float  # peak over RMS of the active frames
    centroid_hz: float  # power-weighted mean band frequency
    low_hz: float  # lowest frequency of its own content (LOW_RANGE_DB)
    band_db: np.ndarray = field(repr=False)  # absolute band power (dB), the dsp band grid
    active: np.ndarray = field(repr=False)  # (frames,) bool

    @property
    def silent(self) -> bool:
        return not math.isfinite(self.loudness_lufs)


def frame_rms_db(x: np.ndarray, sample_rate: int) -> np.ndarray:
    """RMS (dB) of FRAME_S frames of the channel mean; (frames,)."""
    hop = int(FRAME_S * sample_rate)
    n = x.shape[-1] // hop
    if n == 0:
        return np.full(1, -200.0)
    m = x[:, : n * hop].reshape(x.shape[0], n, hop)
    return 10 * np.log10(np.mean(np.square(m, dtype=np.float64), axis=(0, 2)) + 1e-20)


def analyse_track(x: np.ndarray, sample_rate: int) -> TrackAnalysis:
    """Measure one dry (2, n) track."""
    lufs = integrated_loudness(x, sample_rate)
    rms = frame_rms_db(x, sample_rate)
    active = (rms > ACTIVE_FLOOR_DB) & (rms > rms.max() - ACTIVE_RANGE_DB)
    peak = float(np.max(np.abs(x))) if x.size else 0.0
    peak_db = 20 * math.log10(peak) if peak > 0 else -200.0
    centers = band_centers_hz()
    if not math.isfinite(lufs) or not active.any():
        return TrackAnalysis(lufs, peak_db, 0.0, 1000.0, centers[0], np.full(centers.size, -200.0), active)
    act_rms = 10 * math.log10(np.mean(10 ** (rms[active] / 10)))
    band_db = measure_spectrum(x, sample_rate, lufs) + (lufs + 30.0)
    p = 10 ** (band_db / 10)
    centroid = float(np.exp(np.sum(p * np.log(centers)) / np.sum(p)))
    low = float(centers[int(np.argmax(band_db >= band_db.max() - LOW_RANGE_DB))])
    return TrackAnalysis(lufs, peak_db, peak_db - act_rms, centroid, low, band_db, active)


def analyse_session(tracks, sample_rate: int) -> list[TrackAnalysis]:
    return [analyse_track(t.audio, sample_rate) for t in tracks]


def arrangement_density(analyses: list[TrackAnalysis], i: int, parts: list | None = None) -> float:
    """Mean number of other *parts* playing while track ``i`` plays (0 when it never plays).

    ``parts[j]`` names the part track ``j`` belongs to (tracks of one drum kit are one part); by default
    every track is its own part. A part plays in a frame when any of its tracks does.
    """
    parts = list(range(len(analyses))) if parts is None else parts
    own = analyses[i].active
    if not own.any():
        return 0.0
    by_part: dict = {}
    for j, a in enumerate(analyses):
        if parts[j] != parts[i] and not a.silent:
            by_part.setdefault(parts[j], []).append(a.active)
    if not by_part:
        return 0.0
    n = min(own.size, *(x.size for acts in by_part.values() for x in acts))
    count = np.sum([np.any([x[:n] for x in acts], axis=0) for acts in by_part.values()], axis=0)
    return float(count[own[:n]].mean())


def masking_excess_db(own_db: np.ndarray, others_db: list[np.ndarray]) -> np.ndarray:
    """Per band, how far the strongest other track lies above this track (dB; negative = exposed).

    All spectra are absolute band levels *at their mixed gains*; a positive value means another track
    covers this track's content in that band (the level-difference masking model of the rule-based
    multitrack EQ literature, see training/DATA.md; the strongest masker dominates).
    """
    if not others_db:
        return np.full(own_db.shape, -200.0)
    return np.max(others_db, axis=0) - own_db

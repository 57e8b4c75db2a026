"""The dry session handed to the engineer: one song as N tracks of raw instrument audio.

A session is what a mixing engineer receives: every track dry (no level, pan, EQ, compression or
reverb applied beyond what the instrument itself makes), labelled with its class, its instrument
and, where known, its musical role. For the ``human`` family the composer's own per-track level and
pan ride along as ``level_db`` / ``pan``: those are the mix decisions a human made, and the engineer
keeps them instead of drawing its own.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from fxmix.dsp.constants import CLASSES, SAMPLE_RATE

SPLITS = ("train", "valid", "test")


@dataclass
class DryTrack:
    """One dry track: stereo audio at ``SAMPLE_RATE`` plus what is known about it.

    Args:
        name: unique within the session, safe as a file name (``03_piano``).
        cls: one of ``CLASSES`` (vocals, drums, bass, other).
        instrument: human-readable instrument label (``"Acoustic Grand Piano"``, ``"kick"``).
        audio: ``(2, n)`` float32 at 44100 Hz; dry, composer level removed unless ``level_db`` says so.
        source: where the sound and the notes come from (package/file/preset).
        licence: licence of the sound source (SPDX-like string).
        role: musical role as known ("lead", "bass", "drums", "chords", "pad", "arpeggio",
            "counter", "fx"); empty when unknown.
        level_db: the composer's level for this track (human family), else None.
        pan: the composer's pan in [-1, 1] (human family), else None.
    """

    name: str
    cls: str
    instrument: str
    audio: np.ndarray
    source: str
    licence: str
    role: str = ""
    level_db: float | None = None
    pan: float | None = None

    def __post_init__(self) -> None:
        if self.cls not in CLASSES:
            raise ValueError(f"track {self.name!r}: class {self.cls!r} is not one of {CLASSES}")
        if self.audio.ndim != 2 or self.audio.shape[0] != 2:
            raise ValueError(f"track {self.name!r}: audio must be (2, n), got {self.audio.shape}")
        if self.audio.dtype != np.float32:
            raise ValueError(f"track {self.name!r}: audio must be float32, got {self.audio.dtype}")
        if self.pan is not None and not -1.0 <= self.pan <= 1.0:
            raise ValueError(f"track {self.name!r}: pan {self.pan} outside [-1, 1]")


@dataclass
class DrySession:
    """One song as the engineer receives it: its tracks, all the same length, at ``SAMPLE_RATE``."""

    name: str
    family: str
    split: str
    seed: int
    tempo_bpm: float | None
    tracks: list[DryTrack] = field(default_factory=list)

    @property
    def sample_rate(self) -> int:
        return SAMPLE_RATE

    @property
    def n_samples(self) -> int:
        return self.tracks[0].audio.shape[1] if self.tracks else 0

    def validate(self) -> None:
        """Raise ValueError when the session breaks the contract the engineer relies on."""
        if self.split not in SPLITS:
            raise ValueError(f"session {self.name!r}: split {self.split!r} is not one of {SPLITS}")
        if not 2 <= len(self.tracks) <= 24:
            raise ValueError(f"session {self.name!r}: {len(self.tracks)} tracks, need 2 to 24")
        lengths = {t.audio.shape[1] for t in self.tracks}
        if len(lengths) != 1:
            raise ValueError(f"session {self.name!r}: tracks differ in length {sorted(lengths)}")
        names = [t.name for t in self.tracks]
        if len(set(names)) != len(names):
            raise ValueError(f"session {self.name!r}: duplicate track names {names}")

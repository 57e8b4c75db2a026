"""Per-song taste: the engineer's free choices, drawn once per song around calibrated defaults.

The content rules (:mod:`.rules`) fix the *direction* of every decision from the music; taste sets how far
(how many LU the lead sits above the band, how deep a masking cut goes, how wide the stereo picture is).
``Taste.mean()`` is the default engineer (every value at its mean) that the "mean engineer" baseline and the
calibration use; :func:`draw_taste` is what a corpus song gets.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from ...dsp.stages.master import MASTER_GLUE_GR_DB, MASTER_LUFS

#: (mean, std, lo, hi) of each taste value; the means are the calibrated defaults (training/DATA.md).
TASTE_SPEC: dict[str, tuple[float, float, float, float]] = {
    "anchor_lufs": (-20.0, 0.0, -20.0, -20.0),  # accompaniment reference level before the master
    "lead_gap_lu": (3.0, 1.0, 1.0, 5.5),  # lead above the accompaniment at density 2
    "density_slope_lu": (0.6, 0.15, 0.3, 1.0),  # extra lead level per further accompanying part
    "drums_lu": (0.0, 1.0, -2.5, 2.5),  # role offsets re the anchor (per role group)
    "bass_lu": (-1.0, 1.0, -3.5, 1.5),
    "chords_lu": (-3.0, 1.0, -5.5, -0.5),
    "pad_lu": (-5.0, 1.0, -8.0, -2.5),
    "arpeggio_lu": (-4.0, 1.0, -7.0, -1.5),
    "counter_lu": (-3.5, 1.0, -6.0, -1.0),
    "backing_lu": (-4.0, 1.0, -7.0, -1.5),
    "fx_lu": (-8.0, 1.5, -12.0, -5.0),
    "hpf_ratio": (0.5, 0.06, 0.35, 0.65),  # high-pass at this fraction of the track's lowest own content
    "mask_threshold_db": (3.0, 1.0, 0.0, 6.0),  # cut only where the others lie this far above the track
    "mask_depth": (0.35, 0.08, 0.15, 0.6),  # dB of cut per dB of masking excess
    "mask_max_db": (6.0, 1.0, 3.0, 9.0),
    "comp_amount": (0.75, 0.12, 0.4, 0.95),  # fraction of the crest excess taken off as gain reduction
    "ratio_scale": (1.0, 0.12, 0.75, 1.3),
    "width": (0.8, 0.1, 0.55, 1.0),  # pan magnitude of the highest-register parts
    "reverb_db": (0.0, 2.0, -5.0, 4.0),  # offset on every reverb send
    "room": (0.5, 0.08, 0.3, 0.7),  # reverb room size at 100 BPM
    "delay_db": (0.0, 2.5, -6.0, 5.0),
    "tonal_amount": (0.95, 0.04, 0.85, 1.0),  # how far each class bus is EQ'd toward the tonal target
    "bus_gr_db": (1.5, 0.5, 0.5, 3.0),  # class-bus glue gain reduction at the bus peaks
    "bus_plr_db": (0.0, 1.0, -2.0, 2.0),  # offset on the drum bus's peak-to-loudness ceiling
    "master_gr_db": (MASTER_GLUE_GR_DB, 0.6, 0.5, 3.5),
    "master_lufs": (MASTER_LUFS, 1.2, -14.0, -9.0),
}


@dataclass(frozen=True)
class Taste:
    anchor_lufs: float
    lead_gap_lu: float
    density_slope_lu: float
    drums_lu: float
    bass_lu: float
    chords_lu: float
    pad_lu: float
    arpeggio_lu: float
    counter_lu: float
    backing_lu: float
    fx_lu: float
    hpf_ratio: float
    mask_threshold_db: float
    mask_depth: float
    mask_max_db: float
    comp_amount: float
    ratio_scale: float
    width: float
    reverb_db: float
    room: float
    delay_db: float
    tonal_amount: float
    bus_gr_db: float
    bus_plr_db: float
    master_gr_db: float
    master_lufs: float
    side: float = 1.0  # which side the first spread part goes to (+1 right, -1 left)
    delay_beats: float = 0.75  # lead delay: dotted eighth (0.75) or quarter (1.0)

    @classmethod
    def mean(cls) -> Taste:
        return cls(**{k: v[0] for k, v in TASTE_SPEC.items()})

    def role_offset_lu(self, role: str) -> float:
        return float(getattr(self, f"{role}_lu", self.chords_lu))

    def to_dict(self) -> dict:
        return {k: round(float(v), 4) for k, v in asdict(self).items()}


def draw_taste(rng: np.random.Generator) -> Taste:
    """One song's taste: truncated normals around the defaults, plus the spread side and delay feel."""
    vals = {k: float(np.clip(rng.normal(m, s), lo, hi)) for k, (m, s, lo, hi) in TASTE_SPEC.items()}
    vals["side"] = float(rng.choice([-1.0, 1.0]))
    vals["delay_beats"] = float(rng.choice([0.75, 1.0]))
    return Taste(**vals)

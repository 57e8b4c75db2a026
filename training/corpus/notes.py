"""Note material shared by every source of the session corpus: parts of timed notes, ready to render.

A :class:`Part` is one future track: its notes (seconds, MIDI pitch, MIDI velocity), the General MIDI program
that plays it (or a drum kit), controller events that belong to the performance, and its labels. Sources
(MMA grooves, Debian MIDI songs, music21 chorales, the procedural scores) all produce parts; the SoundFont
renderer turns each part into one dry track.
"""

from __future__ import annotations

from dataclasses import dataclass, field

#: General MIDI drum-map notes grouped the way a drum kit is close-miked: one track per group.
DRUM_GROUPS: dict[str, tuple[int, ...]] = {
    "kick": (35, 36),
    "snare": (37, 38, 39, 40),
    "hihat": (42, 44, 46),
    "toms": (41, 43, 45, 47, 48, 50),
    "cymbals": (49, 51, 52, 53, 55, 57, 59),
    "percussion": tuple(range(54, 82)),
}


@dataclass(frozen=True)
class NoteEvent:
    """One note: start and duration in seconds, MIDI pitch 0..127, MIDI velocity 1..127."""

    start_s: float
    dur_s: float
    pitch: int
    velocity: int


@dataclass
class Part:
    """One track's note material and labels.

    ``ccs`` holds (time s, controller, value) events replayed during the render (expression CC11, sustain
    CC64, pitch-wheel range is left at its default); channel volume CC7 and pan CC10 are never replayed: for
    human-composed MIDI they become the track's ``level_db`` / ``pan`` decisions instead.
    """

    name: str
    cls: str
    instrument: str
    notes: list[NoteEvent]
    program: int = 0
    drum: bool = False
    role: str = ""
    ccs: list[tuple[float, int, int]] = field(default_factory=list)
    level_db: float | None = None
    pan: float | None = None
    source: str = ""
    licence: str = ""

    def active_in(self, start_s: float, end_s: float) -> bool:
        return any(n.start_s < end_s and n.start_s + n.dur_s > start_s for n in self.notes)


def split_drums(part: Part) -> list[Part]:
    """One part per kit-piece group (kick, snare, hi-hat ...), like close microphones on a drum kit."""
    out: list[Part] = []
    for group, pitches in DRUM_GROUPS.items():
        notes = [n for n in part.notes if n.pitch in pitches]
        if notes:
            out.append(
                Part(f"{part.name}-{group}", "drums", group, notes, part.program, True, "drums",
                     list(part.ccs), part.level_db, part.pan, part.source, part.licence)
            )
    rest = [n for n in part.notes if not any(n.pitch in p for p in DRUM_GROUPS.values())]
    if rest:
        out.append(Part(f"{part.name}-other", "drums", "percussion", rest, part.program, True, "drums",
                        list(part.ccs), part.level_db, part.pan, part.source, part.licence))
    return out


def shift(part: Part, start_s: float, end_s: float) -> Part:
    """The part cut to [start_s, end_s) and moved to start at 0 (notes that began before are dropped)."""
    notes = [
        NoteEvent(n.start_s - start_s, min(n.dur_s, end_s - n.start_s), n.pitch, n.velocity)
        for n in part.notes
        if start_s <= n.start_s < end_s
    ]
    ccs = [(max(t - start_s, 0.0), c, v) for t, c, v in part.ccs if t < end_s]
    return Part(part.name, part.cls, part.instrument, notes, part.program, part.drum, part.role, ccs,
                part.level_db, part.pan, part.source, part.licence)

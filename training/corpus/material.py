"""Human-written and procedural note material as parts: MMA grooves, music21 chorales, procedural scores.

- **MMA grooves** (Debian ``mma``, GPL-2+): a 4/4 groove from MMA's standard library plays the chords of a
  procedural song; MMA writes drums, bass, chords, arpeggios with its own fills and humanisation (seeded with
  ``RndSeed``). The drum track is split into kit pieces (kick, snare, hi-hat ...), one track each.
- **Bach chorales** (PyPI ``music21``'s bundled corpus, public-domain compositions): soprano, alto, tenor and
  bass each become a track; drums from the procedural groove are added to half of them.
- **Procedural scores** (:mod:`fxmix.training.synth_sources`): the project's own composer, here played by
  SoundFont instruments instead of numpy synthesizers.

Every song has a melody for the lead (vocals class): MMA and procedural songs take the procedural melody,
chorales their soprano line.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
import zlib
from dataclasses import replace
from functools import lru_cache
from pathlib import Path

import numpy as np
from fxmix.dsp.errors import ConfigError

from ..synth_sources import Score, compose
from .midi import read_midi
from .notes import NoteEvent, Part, split_drums

MMA_LIB = Path("/usr/share/mma/lib/stdlib")
MMA_INSTALL = "apt-get install -y --no-install-recommends mma"
MMA_LICENCE = "GPL-2.0-or-later (MMA groove library)"
CHORALE_LICENCE = "public domain composition (music21 corpus encoding, BSD-3-Clause code)"
PROCEDURAL_LICENCE = "MIT (fxmix procedural composer)"
_NAMES = ("C", "C#", "D", "Eb", "E", "F", "F#", "G", "Ab", "A", "Bb", "B")
#: GM programs for the lead melody (0-based): choir aahs, voice oohs, synth voice, flute, sax, lead synths.
LEAD_PROGRAMS = (52, 53, 54, 73, 65, 66, 80, 81, 85, 56, 71)
#: Singing registers of the lead: (share of songs, centre MIDI pitch). Male leads centre on E3 (165 Hz, a
#: baritone's tessitura; range roughly A2-A4), female on F4 (349 Hz); MUSDB18's vocals are mostly male, and
#: their average spectrum carries the 100-200 Hz fundamentals that a C4-G5 melody lacks (on a 20-s corpus, a
#: G3 centre left the 100-125 Hz band 8.6 dB short of MUSDB18's, E3 6.6 dB: training/DATA.md). The lead moves
#: by octaves (harmony unchanged).
SINGER_REGISTERS = {"male": (0.6, 52.0), "female": (0.4, 65.0)}
#: GM programs for chorale inner voices: organ, strings, brass, reeds, piano, guitars.
INNER_PROGRAMS = (19, 48, 49, 61, 68, 70, 0, 24, 42, 57)
#: Low voicing of the accompaniment: a pianist's left hand, a guitarist's low strings. MMA's and the procedural
#: composer's chord parts are voiced from C4 up, while real accompaniment (and MUSDB18's "other" stems, whose
#: average spectrum is within 3 dB of its maximum down to 90 Hz) carries chord roots in the second octave.
#: A share of the songs gets each chord's root doubled in LOW_VOICING_RANGE (MIDI E2..D#3) on its piano,
#: organ and guitar chord parts.
LOW_VOICING_PROGRAMS = frozenset(range(0, 32))
LOW_VOICING_SHARE = 0.6
LOW_VOICING_RANGE = (40, 52)
#: Notes starting within this many seconds form one chord.
CHORD_GAP_S = 0.03


def gm_class(program: int, drum: bool) -> str:
    """Class of a GM program: drum channel -> drums, 32..39 -> bass, the rest -> other."""
    if drum:
        return "drums"
    return "bass" if 32 <= program <= 39 else "other"


def gm_role(program: int, drum: bool, name: str = "") -> str:
    """Role from an MMA track name or the GM program family."""
    low = name.lower()
    for key, role in (("arpeggio", "arpeggio"), ("walk", "bass"), ("bass", "bass"), ("chord", "chords"),
                      ("scale", "counter"), ("aria", "counter"), ("solo", "lead"), ("melody", "lead")):
        if key in low:
            return role
    if drum:
        return "drums"
    if 32 <= program <= 39:
        return "bass"
    if 88 <= program <= 95 or 48 <= program <= 51:
        return "pad"
    if 96 <= program <= 103 or program >= 112:
        return "fx"
    return "chords"


# ----------------------------------------------------------------------------------------------- MMA
@lru_cache(maxsize=1)
def mma_grooves() -> tuple[str, ...]:
    """Main 4/4 grooves of MMA's standard library (no intros, endings, fills or metronome clicks), sorted."""
    if not MMA_LIB.is_dir() or shutil.which("mma") is None:
        raise ConfigError(f"MMA not found ({MMA_LIB}); install it: {MMA_INSTALL}")
    out = []
    for f in sorted(MMA_LIB.glob("*.mma")):
        text = f.read_text(encoding="latin-1")
        if not re.search(r"^\s*Time\s+4\b", text, re.M | re.I):
            continue
        for name in re.findall(r"^\s*DefGroove\s+(\S+)", text, re.M | re.I):
            # a metronome groove plays only a click (nothing the kits sound): a song of its lead alone
            if not re.search(r"(intro|end|fill|break|metronome)", name, re.I):
                out.append(name)
    return tuple(sorted(set(out)))


def groove_split(groove: str) -> str:
    """Held-out grooves: a stable hash of the name puts ~1/10 in test and ~1/10 in valid."""
    h = zlib.crc32(groove.lower().encode()) % 10
    return "test" if h == 0 else "valid" if h == 1 else "train"


def chord_name(chord: list[int]) -> str:
    """MMA chord symbol of a close-voiced triad (root found from its thirds and fifth)."""
    pcs = {p % 12 for p in chord}
    for root in sorted(pcs):
        if (root + 7) % 12 in pcs:
            return _NAMES[root] + ("m" if (root + 3) % 12 in pcs else "" if (root + 4) % 12 in pcs else "dim")
    return _NAMES[min(pcs)] + "dim"


def mma_parts(score: Score, groove: str, rng: np.random.Generator) -> list[Part]:
    """Accompaniment parts from ``groove`` over the score's chords, at its tempo (4/4 scores only)."""
    if score.beats_per_bar != 4:
        raise ValueError("MMA grooves here are 4/4: compose a 4/4 score")
    lines = [f"RndSeed {int(rng.integers(1 << 30))}", f"Tempo {score.bpm:.3f}", f"Groove {groove}"]
    lines += [f"{b + 1} {chord_name(ch)}" for b, ch in enumerate(score.chords)]
    with tempfile.TemporaryDirectory(prefix="fxmix-mma-") as td:
        src, mid = Path(td) / "song.mma", Path(td) / "song.mid"
        src.write_text("\n".join(lines) + "\n")
        run = subprocess.run(["mma", "-f", str(mid), str(src)], capture_output=True, text=True, cwd=td)
        if run.returncode != 0 or not mid.exists():
            raise RuntimeError(f"mma failed on groove {groove}: {run.stdout[-400:]} {run.stderr[-400:]}")
        tracks, _, _ = read_midi(mid)
    parts: list[Part] = []
    source = f"mma groove {groove}"
    for tr in tracks:
        cls = gm_class(tr.program, tr.drum)
        part = Part(tr.name or tr.key, cls, "drum kit" if tr.drum else f"GM {tr.program}", tr.notes,
                    tr.program, tr.drum, gm_role(tr.program, tr.drum, tr.name), list(tr.ccs),
                    source=source, licence=MMA_LICENCE)
        parts.extend(split_drums(part) if tr.drum else [part])
    return parts


# ----------------------------------------------------------------------------------------------- scores
def score_parts(score: Score, rng: np.random.Generator, with_melody: bool = True) -> list[Part]:
    """The procedural score's classes as GM parts (drums split into kit pieces)."""
    def events(cls: str, transpose: int = 0) -> list[NoteEvent]:
        return [NoteEvent(n.start_s, n.dur_s, n.pitch + transpose, int(np.clip(round(n.velocity * 127), 1, 127)))
                for n in score.notes.get(cls, [])]

    src = f"procedural score ({score.family})"
    bass_prog = int(rng.choice((32, 33, 34, 35, 38, 39)))
    comp_prog = int(rng.choice((0, 1, 4, 5, 16, 24, 25, 26, 27, 46, 48, 50, 88, 89, 90)))
    parts = split_drums(Part("drums", "drums", "drum kit", events("drums"), 0, True, "drums",
                             source=src, licence=PROCEDURAL_LICENCE))
    parts.append(Part("bass", "bass", f"GM {bass_prog}", events("bass"), bass_prog, False, "bass",
                      source=src, licence=PROCEDURAL_LICENCE))
    parts.append(Part("comp", "other", f"GM {comp_prog}", events("other"), comp_prog, False,
                      gm_role(comp_prog, False), source=src, licence=PROCEDURAL_LICENCE))
    if with_melody:
        parts.append(melody_part(score, rng))
    return parts


def root_pc(pitches) -> int:
    """Pitch class of a chord's root: the lowest pitch class whose fifth is in the chord, else the lowest note's."""
    pcs = {p % 12 for p in pitches}
    return next((r for r in sorted(pcs, key=lambda q: (q - min(pitches)) % 12) if (r + 7) % 12 in pcs),
                min(pitches) % 12)


def low_voiced(part: Part) -> Part:
    """``part`` with each chord's root doubled in LOW_VOICING_RANGE (a left hand under the chord)."""
    chords: list[list[NoteEvent]] = []
    for n in sorted(part.notes, key=lambda e: e.start_s):
        if chords and n.start_s - chords[-1][0].start_s < CHORD_GAP_S:
            chords[-1].append(n)
        else:
            chords.append([n])
    lo, hi = LOW_VOICING_RANGE
    added = []
    for ch in chords:
        pitch = lo + (root_pc([n.pitch for n in ch]) - lo) % 12
        if pitch < hi and pitch < min(n.pitch for n in ch):
            added.append(NoteEvent(ch[0].start_s, max(n.dur_s for n in ch), pitch, max(n.velocity for n in ch)))
    return replace(part, notes=sorted(part.notes + added, key=lambda e: e.start_s))


def with_low_voicing(parts: list[Part], rng: np.random.Generator) -> list[Part]:
    """In LOW_VOICING_SHARE of the songs (one draw from ``rng``), the piano/organ/guitar chord parts of the
    "other" class voiced low (:func:`low_voiced`)."""
    if rng.random() >= LOW_VOICING_SHARE:
        return parts
    return [low_voiced(p) if p.cls == "other" and p.role == "chords" and not p.drum
            and p.program in LOW_VOICING_PROGRAMS else p for p in parts]


def melody_part(score: Score, rng: np.random.Generator) -> Part:
    lead = int(rng.choice(LEAD_PROGRAMS))
    notes = [NoteEvent(n.start_s, n.dur_s, n.pitch, int(np.clip(round(n.velocity * 127), 1, 127)))
             for n in score.notes.get("vocals", [])]
    return Part("lead", "vocals", f"GM {lead}", notes, lead, False, "lead",
                source=f"procedural melody ({score.family})", licence=PROCEDURAL_LICENCE)


def register_octaves(pitches, rng: np.random.Generator, singer: str | None = None) -> tuple[int, str]:
    """Whole octaves that move a lead's median pitch nearest a drawn singer's register centre (``singer``
    forces one of SINGER_REGISTERS), and the singer."""
    names = list(SINGER_REGISTERS)
    if singer is None:
        shares = np.array([SINGER_REGISTERS[k][0] for k in names])
        singer = names[int(rng.choice(len(names), p=shares / shares.sum()))]
    if len(pitches) == 0:
        return 0, singer
    return int(round((SINGER_REGISTERS[singer][1] - float(np.median(pitches))) / 12.0)), singer


def in_register(part: Part, rng: np.random.Generator, singer: str | None = None) -> Part:
    """The lead part moved by :func:`register_octaves`."""
    octaves, _ = register_octaves([n.pitch for n in part.notes], rng, singer)
    return replace(part, notes=[NoteEvent(n.start_s, n.dur_s, n.pitch + 12 * octaves, n.velocity)
                                for n in part.notes])


def procedural_score(seconds: float, rng: np.random.Generator, family: str = "pop") -> Score:
    return compose(family, seconds, rng)


# ----------------------------------------------------------------------------------------------- chorales
@lru_cache(maxsize=1)
def chorale_names() -> tuple[str, ...]:
    """The Bach chorales of music21's bundled corpus (needs ``pip install music21``)."""
    try:
        from music21 import corpus  # lazy: music21 takes ~1 s to import and is optional
    except ImportError as exc:
        raise ConfigError("the chorale source needs music21: pip install music21") from exc
    paths = (Path(str(p)) for p in corpus.getComposer("bach"))
    return tuple(sorted(f"bach/{p.name.split('.mxl')[0]}" for p in paths if p.name.startswith("bwv")))


def chorale_split(name: str) -> str:
    h = zlib.crc32(Path(name).name.encode()) % 10
    return "test" if h == 0 else "valid" if h == 1 else "train"


def chorale_parts(name: str, bpm: float, rng: np.random.Generator) -> list[Part]:
    """Soprano -> lead (vocals), alto/tenor -> other, bass -> bass (an octave down), one track per voice."""
    from music21 import corpus  # lazy, see chorale_names

    score = corpus.parse(name).stripTies()
    spb = 60.0 / bpm
    voices = list(score.parts)
    parts: list[Part] = []
    src = f"music21 corpus {name}"
    for i, voice in enumerate(voices):
        last = i == len(voices) - 1
        if i == 0:
            cls, role, prog, shift = "vocals", "lead", int(rng.choice(LEAD_PROGRAMS)), 0
        elif last:
            cls, role, prog, shift = "bass", "bass", int(rng.choice((32, 33, 42, 43, 58))), -12
        else:
            cls, role, prog, shift = "other", "counter", int(rng.choice(INNER_PROGRAMS)), 0
        notes = []
        for n in voice.flatten().notes:
            for p in n.pitches:
                vel = int(np.clip(80 + rng.normal(0, 8), 40, 120))
                notes.append(NoteEvent(float(n.offset) * spb, float(n.quarterLength) * spb * 0.97, p.midi + shift, vel))
        label = (voice.partName or f"voice{i}").strip()
        parts.append(Part(label.lower().replace(" ", "-"), cls, f"GM {prog}", notes, prog, False, role,
                          source=src, licence=CHORALE_LICENCE))
    return parts

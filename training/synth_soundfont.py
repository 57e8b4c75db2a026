"""Optional pip-only SoundFont renderer for the synthetic corpus (TinySoundFont + pretty_midi's TimGM6mb.sf2).

Used only when importable: ``pip install pretty_midi`` (its wheel ships ``pretty_midi/TimGM6mb.sf2``, GPL-2) and
``pip install --no-deps tinysoundfont`` (MIT; ``--no-deps`` skips pyaudio, which needs portaudio headers).
Nothing is downloaded at run time; ``pretty_midi`` is not imported, only its bundled SoundFont file is located.

The same procedural :class:`~.synth_sources.Score` is played with General MIDI programs, one stem per class,
events scheduled sample-accurately through ``Synth.generate`` between note events (no MIDI file, no
sequencer timing drift). Train/valid and test use disjoint program sets, so the test split hears instruments
that training never did.
"""

from __future__ import annotations

import importlib.util
from functools import lru_cache
from pathlib import Path

import numpy as np

from ..dsp.constants import CLASSES
from .synth_sources import Note, Score

#: GM programs (0-based) per class; test programs never occur in train/valid.
PROGRAMS_TRAIN = {"vocals": (52, 53), "other": (0, 4, 25), "bass": (33, 34)}
PROGRAMS_TEST = {"vocals": (54, 85), "other": (48, 89, 5), "bass": (35, 38)}
_DRUM_CHANNEL = 9


@lru_cache(maxsize=1)
def soundfont_path() -> Path | None:
    """pretty_midi's bundled TimGM6mb.sf2, or None when pretty_midi or tinysoundfont is not installed."""
    if importlib.util.find_spec("tinysoundfont") is None:
        return None
    spec = importlib.util.find_spec("pretty_midi")
    if spec is None or not spec.submodule_search_locations:
        return None
    p = Path(next(iter(spec.submodule_search_locations))) / "TimGM6mb.sf2"
    return p if p.exists() else None


def soundfont_available() -> bool:
    return soundfont_path() is not None


def _render_channel(notes: list[Note], n: int, sample_rate: int, program: int, drums: bool) -> np.ndarray:
    import tinysoundfont

    synth = tinysoundfont.Synth(samplerate=sample_rate)
    sfid = synth.sfload(str(soundfont_path()))
    chan = _DRUM_CHANNEL if drums else 0
    synth.program_select(chan, sfid, 128 if drums else 0, 0 if drums else program, is_drums=drums)
    events: list[tuple[int, int, int, int]] = []  # (sample, order, key, velocity); note-offs first at a tie
    for note in notes:
        on = max(int(round(note.start_s * sample_rate)), 0)
        off = max(int(round((note.start_s + note.dur_s) * sample_rate)), on + 1)
        vel = int(np.clip(round(note.velocity * 127), 1, 127))
        events.append((on, 1, note.pitch, vel))
        if not drums:
            events.append((off, 0, note.pitch, 0))
    events.sort()
    out = np.zeros((n, 2), np.float32)
    pos = 0
    for at, kind, key, vel in events:
        at = min(at, n)
        if at > pos:
            out[pos:at] = np.frombuffer(synth.generate(at - pos), dtype=np.float32).reshape(-1, 2)
            pos = at
        if pos >= n:
            break
        if kind == 1:
            synth.noteon(chan, key, vel)
        else:
            synth.noteoff(chan, key)
    if pos < n:
        out[pos:] = np.frombuffer(synth.generate(n - pos), dtype=np.float32).reshape(-1, 2)
    return np.ascontiguousarray(out.T)


def render_dry_soundfont(
    score: Score, seconds: float, sample_rate: int, rng: np.random.Generator, held_out: bool
) -> tuple[dict[str, np.ndarray], dict]:
    """Render a score with GM programs through TinySoundFont (same contract as ``render_dry``).

    Args:
        score: note material.
        seconds: output length (s).
        sample_rate: Hz.
        rng: seeded generator (program choice, recording level).
        held_out: use the test program set instead of the train one.

    Returns:
        (stems, timbres): (2, n) float32 per class, peak-normalized to -12..-3 dBFS; JSON-ready programs.
    """
    if not soundfont_available():
        raise RuntimeError(
            "SoundFont path needs `pip install pretty_midi` and `pip install --no-deps tinysoundfont`"
        )
    n = int(round(seconds * sample_rate))
    table = PROGRAMS_TEST if held_out else PROGRAMS_TRAIN
    stems: dict[str, np.ndarray] = {}
    timbres: dict[str, dict] = {}
    for name in CLASSES:
        drums = name == "drums"
        program = 0 if drums else int(rng.choice(table[name]))
        x = _render_channel(score.notes.get(name, []), n, sample_rate, program, drums)
        peak = float(np.max(np.abs(x)))
        level_db = float(rng.uniform(-12.0, -3.0))
        if peak > 0:
            x = x * np.float32(10 ** (level_db / 20) / peak)
        stems[name] = x.astype(np.float32)
        timbres[name] = {
            "soundfont": "TimGM6mb.sf2",
            "program": "drum kit (bank 128)" if drums else program,
            "record_peak_db": round(level_db, 3),
        }
    return stems, timbres

"""Sung vocals with words: Festival's singing mode on the lead melody (Debian ``festival festvox-kallpc16k``).

Festival reads a SINGING XML file (notes, beats, one word per note) and sings it with the kal diphone voice at
16 kHz; the result is resampled to 44.1 kHz. Each phrase (notes separated by a rest) is sung on its own and
placed at the phrase's start, so the sung line keeps the melody's timing even where Festival's durations
drift. Festival plays beats about 16 % short of the BPM it is given (measured), so the BPM is scaled down.
The voice sings the notes' pitches (give it a male-register line: kal is a male voice) and each phrase's level
follows its notes' velocities the way a SoundFont's does (:data:`.notes.VELOCITY_DB`), so performed dynamics
reach the sung lead too.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np
from fxmix.dsp.audio import read_audio

from .notes import NoteEvent
from .performance import VELOCITY_DB

FESTIVAL_INSTALL = "apt-get install -y --no-install-recommends festival festvox-kallpc16k"
FESTIVAL_LICENCE = "X11-style free licence (Festival, CSTR; festvox kal voice, CMU)"
_BPM_SCALE = 0.84
_NAMES = ("C", "Cs", "D", "Ds", "E", "F", "Fs", "G", "Gs", "A", "As", "B")
#: Plain one-syllable words (written for this project) that the diphone voice pronounces clearly. ("away", two
#: syllables on one note, crashed Festival 2.5's singing mode on some phrases: heap corruption, no output.)
WORDS = ("love", "light", "night", "day", "home", "road", "rain", "sun", "heart", "time", "stay", "go", "fly",
         "run", "dream", "sky", "blue", "gold", "fire", "sea", "now", "here", "you", "me", "we", "on", "and",
         "the", "through", "down", "high", "low", "all", "way", "know", "feel", "hold", "walk", "find")
#: A phrase Festival fails on is sung again with new words, this many times in all, before the song fails.
TRIES = 3


def festival_available() -> bool:
    return shutil.which("text2wave") is not None


def _note(pitch: int) -> str:
    return f"{_NAMES[pitch % 12]}{pitch // 12 - 1}"


def phrases(notes: list[NoteEvent], gap_s: float = 0.25) -> list[list[NoteEvent]]:
    """Split a melody where a rest longer than ``gap_s`` falls between two notes."""
    out: list[list[NoteEvent]] = []
    for n in sorted(notes, key=lambda e: e.start_s):
        if out and n.start_s - (out[-1][-1].start_s + out[-1][-1].dur_s) < gap_s:
            out[-1].append(n)
        else:
            out.append([n])
    return out


def _singing_xml(phrase: list[NoteEvent], bpm: float, rng: np.random.Generator) -> str:
    """Festival's SINGING document for one phrase: each note's pitch and beats, a word drawn per note."""
    spb = 60.0 / bpm
    body = []
    for i, note in enumerate(phrase):
        nxt = phrase[i + 1].start_s if i + 1 < len(phrase) else note.start_s + note.dur_s
        beats = max(nxt - note.start_s, 0.05) / spb
        word = WORDS[int(rng.integers(len(WORDS)))]
        body.append(f'<PITCH NOTE="{_note(note.pitch)}"><DURATION BEATS="{beats:.3f}">{word}'
                    "</DURATION></PITCH>")
    return ('<?xml version="1.0"?>\n<!DOCTYPE SINGING PUBLIC "-//SINGING//DTD SINGING mark up//EN" '
            f'"Singing.v0_1.dtd" []>\n<SINGING BPM="{bpm * _BPM_SCALE:.3f}">\n' + "\n".join(body)
            + "\n</SINGING>\n")


def sing(notes: list[NoteEvent], n: int, bpm: float, sample_rate: int, rng: np.random.Generator) -> np.ndarray:
    """The melody sung with random words, ``(2, n)`` float32 (mono voice, centred)."""
    if not festival_available():
        raise RuntimeError(f"text2wave not found; install Festival: {FESTIVAL_INSTALL}")
    out = np.zeros(n, np.float32)
    with tempfile.TemporaryDirectory(prefix="fxmix-festival-") as td:
        for k, phrase in enumerate(phrases(notes)):
            start = max(int(round(phrase[0].start_s * sample_rate)), 0)
            if start >= n:
                break
            src, wav = Path(td) / f"p{k}.xml", Path(td) / f"p{k}.wav"
            for attempt in range(TRIES):
                src.write_text(_singing_xml(phrase, bpm, rng))
                wav.unlink(missing_ok=True)
                run = subprocess.run(["text2wave", "-mode", "singing", str(src), "-o", str(wav)],
                                     capture_output=True, text=True)
                if run.returncode == 0 and wav.exists():
                    break
                if attempt == TRIES - 1:
                    raise RuntimeError(f"Festival failed on a phrase {TRIES} times (new words each time): "
                                       f"{run.stderr[-300:]}\nlast input:\n{src.read_text()}")
            voice = read_audio(wav, sample_rate).audio[0] if wav.stat().st_size > 44 else np.zeros(0, np.float32)
            level_db = VELOCITY_DB * np.log10(np.mean([e.velocity for e in phrase]) / 127.0)
            end = min(n, start + voice.shape[-1])
            out[start:end] += voice[: end - start] * np.float32(10 ** (level_db / 20))
    return np.stack([out, out])

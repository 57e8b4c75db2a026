"""Procedural dry multitrack songs in numpy: chords, grooves, bass lines and a phrased lead (vocals slot).

Three source *families* differ in meter, tempo, groove and synthesis timbres, so a split can hold one family out:

- ``pop``: 4/4, 88-128 BPM, straight 8ths; subtractive saw pads/plucks, saw+sub bass, punchy kit, saw "voice"
  through vowel formants.
- ``folk``: 3/4 or 6/8, 70-108 BPM; Karplus-Strong guitar arpeggios, plucked upright-ish bass, soft/brush kit,
  additive "ooh" voice.
- ``fmshuffle`` (held out for the test split): swung 4/4, 96-136 BPM; FM electric piano, FM bass, electronic
  kit with metallic FM hats and a clap, pulse lead through "aah" formants.

Everything is seeded by the caller's ``np.random.Generator``; the same generator state gives the same audio.
Dry stems are stereo (2, n) float32, peak-normalized to a random "recording level" between -12 and -3 dBFS.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
from scipy import signal

from ..dsp.constants import CLASSES

FAMILIES: tuple[str, ...] = ("pop", "folk", "fmshuffle")
#: Families used for train/valid songs and the one held out for the test split.
TRAIN_FAMILIES: tuple[str, ...] = ("pop", "folk")
TEST_FAMILIES: tuple[str, ...] = ("fmshuffle",)

MAJOR = (0, 2, 4, 5, 7, 9, 11)
MINOR = (0, 2, 3, 5, 7, 8, 10)
#: Chord progressions as scale degrees (0-based), four bars each.
PROGRESSIONS = (
    (0, 4, 5, 3),
    (0, 5, 3, 4),
    (5, 3, 0, 4),
    (0, 3, 4, 3),
    (0, 3, 0, 4),
    (1, 4, 0, 0),
    (0, 6, 5, 4),
)
#: Vowel formants (Hz, relative gain) for the lead "voice".
VOWELS = {
    "a": ((800, 1.0), (1150, 0.5), (2900, 0.25)),
    "o": ((450, 1.0), (800, 0.35), (2830, 0.1)),
    "u": ((325, 1.0), (700, 0.2), (2530, 0.08)),
    "e": ((400, 1.0), (1700, 0.45), (2600, 0.3)),
    "i": ((300, 1.0), (2200, 0.35), (3000, 0.3)),
}


@dataclass
class Note:
    """One note event: start/duration in seconds, MIDI pitch, velocity 0..1."""

    start_s: float
    dur_s: float
    pitch: int
    velocity: float
    pan: float = 0.0


@dataclass
class Score:
    """Note material of one song (per class) plus musical metadata."""

    family: str
    bpm: float
    beats_per_bar: int
    swing: float
    key_root: int
    minor: bool
    chords: list[list[int]]
    notes: dict[str, list[Note]] = field(default_factory=dict)

    def meta(self) -> dict:
        return {
            "family": self.family,
            "bpm": round(self.bpm, 3),
            "beats_per_bar": self.beats_per_bar,
            "swing": round(self.swing, 3),
            "key_root": self.key_root,
            "mode": "minor" if self.minor else "major",
            "n_notes": {k: len(v) for k, v in self.notes.items()},
        }


def midi_hz(pitch: float) -> float:
    return 440.0 * 2.0 ** ((pitch - 69.0) / 12.0)


# ----------------------------------------------------------------------------------------------- composition
def _scale(root: int, minor: bool) -> tuple[int, ...]:
    return tuple((root + d) % 12 for d in (MINOR if minor else MAJOR))


def _triad(root: int, minor: bool, degree: int, base: int = 48) -> list[int]:
    steps = MINOR if minor else MAJOR
    pcs = [root + steps[(degree + k) % 7] + 12 * ((degree + k) // 7) for k in (0, 2, 4)]
    # close voicing around `base`
    return sorted(base + (p - base) % 12 for p in pcs)


def compose(family: str, seconds: float, rng: np.random.Generator) -> Score:
    """Draw the note material of one song of ``family`` (see module docstring)."""
    if family == "pop":
        bpm, bpb, swing = float(rng.uniform(88, 128)), 4, 0.0
    elif family == "folk":
        bpm, bpb, swing = float(rng.uniform(70, 108)), int(rng.choice([3, 6])), 0.0
    elif family == "fmshuffle":
        bpm, bpb, swing = float(rng.uniform(96, 136)), 4, float(rng.uniform(0.55, 0.67))
    else:
        raise ValueError(f"unknown family {family!r}")
    spb = 60.0 / bpm * (0.5 if bpb == 6 else 1.0)  # 6/8 counts eighths
    bar_s = bpb * spb
    n_bars = int(np.ceil(seconds / bar_s)) + 1
    key_root = int(rng.integers(12))
    minor = bool(rng.random() < (0.6 if family == "fmshuffle" else 0.35))
    prog = PROGRESSIONS[int(rng.integers(len(PROGRESSIONS)))]
    chords = [_triad(key_root, minor, prog[b % 4]) for b in range(n_bars)]
    sc = Score(family, bpm, bpb, swing, key_root, minor, chords)
    sc.notes = {
        "drums": _drums(sc, spb, n_bars, rng),
        "bass": _bass(sc, spb, n_bars, rng),
        "other": _comp(sc, spb, n_bars, rng),
        "vocals": _melody(sc, spb, n_bars, rng),
    }
    return sc


def _t(sc: Score, bar: int, beat: float, spb: float) -> float:
    """Time (s) of `beat` in `bar`, with swing applied to off-beat 8ths."""
    whole, frac = divmod(beat, 1.0)
    if sc.swing and abs(frac - 0.5) < 1e-6:
        frac = sc.swing
    return (bar * sc.beats_per_bar + whole + frac) * spb


def _hum(rng: np.random.Generator, amount_s: float = 0.006) -> float:
    return float(rng.normal(0.0, amount_s))


# drum "pitches": 36 kick, 38 snare, 39 clap, 42 closed hat, 46 open hat, 51 ride, 45 tom
def _drums(sc: Score, spb: float, n_bars: int, rng: np.random.Generator) -> list[Note]:
    out: list[Note] = []
    bpb = sc.beats_per_bar
    style = int(rng.integers(3))
    for b in range(n_bars):
        hits: list[tuple[float, int, float]] = []
        if sc.family == "folk":
            if bpb == 3:
                hits += [(0, 36, 0.8), (1, 38, 0.45), (2, 38, 0.4)]
            else:
                hits += [(0, 36, 0.8), (3, 38, 0.55)]
            hits += [(float(k), 51, 0.35 + 0.1 * (k == 0)) for k in range(bpb)]
        else:
            eighths = np.arange(0, bpb, 0.5)
            hat = 46 if (sc.family == "pop" and style == 2) else 42
            hits += [(float(e), hat, 0.5 + 0.2 * (e % 1 == 0)) for e in eighths]
            kicks = {0: [0, 2], 1: [0, 1.5, 2, 2.5], 2: [0, 0.75, 2, 2.5]}[style]
            if sc.family == "fmshuffle":
                kicks = [0, 2.5] if style else [0, 1.5, 2]
            hits += [(float(k), 36, 0.9) for k in kicks]
            back = 39 if sc.family == "fmshuffle" else 38
            hits += [(1.0, back, 0.85), (3.0, back, 0.9)]
        if b % 4 == 3 and rng.random() < 0.7:  # fill on the last beat of a phrase
            hits = [h for h in hits if h[0] < bpb - 1]
            hits += [(bpb - 1 + i / 4, 45 if i < 2 else 38, 0.7) for i in range(4)]
        for beat, pitch, vel in hits:
            v = float(np.clip(vel + rng.normal(0, 0.06), 0.1, 1.0))
            out.append(Note(_t(sc, b, beat, spb) + _hum(rng, 0.003), 0.25, pitch, v))
    return out


def _bass(sc: Score, spb: float, n_bars: int, rng: np.random.Generator) -> list[Note]:
    out: list[Note] = []
    bpb = sc.beats_per_bar
    pattern = int(rng.integers(3))
    for b, ch in enumerate(sc.chords):
        root = 28 + (ch[0] - 28) % 12  # E1..D#2
        fifth = root + 7
        if sc.family == "folk":
            seq = [(0.0, 1.0, root), (float(bpb - 1) if bpb == 3 else 3.0, 1.0, fifth)]
        elif pattern == 0:
            seq = [(i * 0.5, 0.45, root) for i in range(bpb * 2)]
        elif pattern == 1:
            seq = [(0, 1, root), (1, 0.5, root), (1.5, 0.5, fifth), (2, 1, root + 12), (3, 1, fifth)]
        else:
            seq = [(0, 0.75, root), (0.75, 0.75, root), (1.5, 1, fifth), (2.5, 0.5, root + 12), (3, 1, root)]
        for st, du, p in seq:
            if st < bpb:
                vel = float(np.clip(0.8 + rng.normal(0, 0.07), 0.3, 1.0))
                out.append(Note(_t(sc, b, st, spb) + _hum(rng), du * spb * 0.92, int(p), vel))
    return out


def _comp(sc: Score, spb: float, n_bars: int, rng: np.random.Generator) -> list[Note]:
    out: list[Note] = []
    bpb = sc.beats_per_bar
    sustained = sc.family == "pop" and rng.random() < 0.5
    for b, ch in enumerate(sc.chords):
        if sc.family == "folk":  # arpeggio, spread across the stereo field
            voicing = ch + [ch[0] + 12, ch[1] + 12]
            order = rng.permutation(len(voicing)) if rng.random() < 0.3 else np.arange(len(voicing))
            n_steps = bpb * 2
            for i in range(n_steps):
                p = voicing[int(order[i % len(voicing)])]
                pan = -0.5 + (i % len(voicing)) / max(len(voicing) - 1, 1)
                out.append(Note(_t(sc, b, i * 0.5, spb) + _hum(rng), spb * 1.5, p, 0.6, pan * 0.6))
            continue
        hits = [(0.0, float(bpb))] if sustained else [(0.0, 1.5), (1.5, 1.0), (2.5, 1.5)]
        if sc.family == "fmshuffle":
            hits = [(0.5, 0.5), (1.5, 1.0), (3.0, 0.5)]
        for st, du in hits:
            for k, p in enumerate(ch):
                pan = (k - 1) * 0.35
                vel = float(np.clip(0.6 + rng.normal(0, 0.06), 0.2, 1.0))
                out.append(Note(_t(sc, b, st, spb) + _hum(rng, 0.004), du * spb * 0.97, p, vel, pan))
    return out


def _melody(sc: Score, spb: float, n_bars: int, rng: np.random.Generator) -> list[Note]:
    """Phrased melody in C4..G5: chord tones on strong beats, steps elsewhere, breath rests between phrases."""
    out: list[Note] = []
    scale = [p for p in range(57, 80) if p % 12 in _scale(sc.key_root, sc.minor)]
    cur = int(rng.choice([p for p in scale if 62 <= p <= 72]))
    bpb = sc.beats_per_bar
    rhythms4 = [[1, 1, 1, 1], [1.5, 0.5, 1, 1], [0.5, 0.5, 1, 2], [2, 1, 1], [1, 0.5, 0.5, 2]]
    rhythms3 = [[1, 1, 1], [2, 1], [1.5, 0.5, 1], [3]]
    rhythms6 = [[3, 3], [2, 1, 3], [1, 1, 1, 3], [3, 2, 1]]
    pool = {4: rhythms4, 3: rhythms3, 6: rhythms6}[bpb]
    for b, ch in enumerate(sc.chords):
        if b % 4 == 3 or (b % 2 == 1 and rng.random() < 0.35):  # breathe at the phrase end
            rh = [bpb / 2]  # one long note, then silence to the bar end
        else:
            rh = pool[int(rng.integers(len(pool)))]
        pos = 0.0
        for du in rh:
            strong = pos == 0.0 or (bpb == 4 and pos == 2.0)
            cands = [p for p in scale if abs(p - cur) <= 4]
            if strong:
                cands = [p for p in cands if p % 12 in {c % 12 for c in ch}] or cands
            cur = int(rng.choice(cands))
            vel = float(np.clip(0.75 + rng.normal(0, 0.08), 0.3, 1.0))
            out.append(Note(_t(sc, b, pos, spb) + _hum(rng), du * spb * 0.9, cur, vel))
            pos += du
    return out


# ----------------------------------------------------------------------------------------------- synthesis
def _env(
    n: int, sample_rate: int, attack_s: float, decay_s: float, sustain: float, release_s: float
) -> np.ndarray:
    """ADSR envelope over n samples (release starts at n - release)."""
    a = max(int(attack_s * sample_rate), 1)
    r = max(int(release_s * sample_rate), 1)
    t = np.arange(n, dtype=np.float32)
    env = np.where(t < a, t / a, sustain + (1 - sustain) * np.exp(-(t - a) / max(decay_s * sample_rate, 1.0)))
    tail = np.clip((n - t) / r, 0.0, 1.0)
    return (env * tail).astype(np.float32)


def _phase(freq_hz: np.ndarray | float, n: int, sample_rate: int) -> np.ndarray:
    if np.isscalar(freq_hz):
        return (2 * np.pi * float(freq_hz) / sample_rate) * np.arange(n, dtype=np.float64)
    return 2 * np.pi * np.cumsum(freq_hz) / sample_rate


def _saw(ph: np.ndarray) -> np.ndarray:
    return (2.0 * ((ph / (2 * np.pi)) % 1.0) - 1.0).astype(np.float32)


def _pulse(ph: np.ndarray, width: float) -> np.ndarray:
    return np.where((ph / (2 * np.pi)) % 1.0 < width, 1.0, -1.0).astype(np.float32)


@functools.lru_cache(maxsize=64)
def _formant_filters(vowel: str, sample_rate: int) -> tuple[tuple[np.ndarray, np.ndarray, float], ...]:
    out = []
    for f_hz, g in VOWELS[vowel]:
        bw = 80.0 + 0.08 * f_hz
        b, a = signal.iirpeak(f_hz, f_hz / bw, fs=sample_rate)
        out.append((b, a, g))
    return tuple(out)


def _formants(x: np.ndarray, vowel: str, sample_rate: int, direct: float = 0.04) -> np.ndarray:
    y = direct * x
    for b, a, g in _formant_filters(vowel, sample_rate):
        y = y + g * signal.lfilter(b, a, x)
    return y.astype(np.float32)


def _karplus(f_hz: float, n: int, sample_rate: int, decay: float, rng: np.random.Generator) -> np.ndarray:
    """Plucked string (Karplus-Strong): y[k] = x[k] + decay * (y[k-P] + y[k-P-1]) / 2, one period per step."""
    period = max(int(round(sample_rate / f_hz)), 2)
    exc = np.zeros(n, np.float64)
    burst = rng.uniform(-1, 1, min(period, n))
    exc[: len(burst)] = signal.lfilter([0.5, 0.5], [1.0], burst)
    off = period + 1
    buf = np.zeros(off + n)
    for start in range(0, n, period):
        length = min(period, n - start)
        i = off + start
        buf[i : i + length] = exc[start : start + length] + 0.5 * decay * (
            buf[i - period : i - period + length] + buf[i - period - 1 : i - period - 1 + length]
        )
    return buf[off:].astype(np.float32)


def _note_len(note: Note, sample_rate: int, tail_s: float) -> int:
    return int((note.dur_s + tail_s) * sample_rate)


def _render_tonal(
    notes: list[Note], n: int, sample_rate: int, voice: Callable[[Note, int], np.ndarray], tail_s: float
) -> np.ndarray:
    out = np.zeros((2, n), np.float32)
    for note in notes:
        i0 = int(round(note.start_s * sample_rate))
        if i0 >= n:
            continue
        i0 = max(i0, 0)
        m = min(_note_len(note, sample_rate, tail_s), n - i0)
        if m <= 8:
            continue
        y = voice(note, m) * note.velocity
        th = (note.pan + 1.0) * np.pi / 4.0
        out[0, i0 : i0 + m] += y * np.float32(np.cos(th) * np.sqrt(2.0))
        out[1, i0 : i0 + m] += y * np.float32(np.sin(th) * np.sqrt(2.0))
    return out


def _drum_kit(family: str, sample_rate: int, rng: np.random.Generator) -> dict[int, tuple[np.ndarray, float]]:
    """One-shot samples (mono) and stereo pans per drum pitch, drawn once per song."""
    sr = sample_rate
    kit: dict[int, tuple[np.ndarray, float]] = {}

    def t(sec: float) -> np.ndarray:
        return np.arange(int(sec * sr), dtype=np.float64) / sr

    tk = t(0.45)
    f0, f1 = (rng.uniform(45, 60), rng.uniform(110, 180))
    if family == "folk":
        f1 = rng.uniform(80, 110)
    freq = f0 + (f1 - f0) * np.exp(-tk / rng.uniform(0.02, 0.05))
    kick = np.sin(2 * np.pi * np.cumsum(freq) / sr) * np.exp(-tk / rng.uniform(0.12, 0.25))
    click = rng.standard_normal(len(tk)) * np.exp(-tk / 0.002) * (0.15 if family == "folk" else 0.5)
    kit[36] = ((kick + click).astype(np.float32), 0.0)

    ts = t(0.35)
    noise = rng.standard_normal(len(ts))
    if family == "folk":  # brush: long soft noise sweep
        b, a = signal.butter(2, [1500, 9000], btype="band", fs=sr)
        snare = signal.lfilter(b, a, noise) * np.exp(-ts / 0.12) * 0.7
    else:
        b, a = signal.butter(2, [1000, 7000], btype="band", fs=sr)
        body = np.sin(2 * np.pi * rng.uniform(170, 220) * ts) * np.exp(-ts / 0.05)
        snare = 0.8 * signal.lfilter(b, a, noise) * np.exp(-ts / rng.uniform(0.06, 0.12)) + 0.6 * body
    kit[38] = (snare.astype(np.float32), rng.uniform(-0.1, 0.1))

    # clap: three noise bursts then a tail
    clap = np.zeros(len(ts))
    for k in range(3):
        i = int(k * 0.011 * sr)
        clap[i:] += np.exp(-ts[: len(ts) - i] / 0.006)
    clap += 0.6 * np.exp(-ts / 0.08)
    b, a = signal.butter(2, [900, 5000], btype="band", fs=sr)
    kit[39] = ((signal.lfilter(b, a, noise * clap)).astype(np.float32) * 1.5, 0.0)

    th = t(0.5)
    if family == "fmshuffle":  # metallic FM hats
        mod = np.sin(2 * np.pi * 1.41 * 5400 * th) * 5.0
        hat_src = np.sin(2 * np.pi * 5400 * th + mod) + 0.3 * rng.standard_normal(len(th))
    else:
        hat_src = rng.standard_normal(len(th))
    b, a = signal.butter(2, 7000, btype="high", fs=sr)
    hat = signal.lfilter(b, a, hat_src)
    pan_hat = rng.uniform(0.15, 0.4) * rng.choice([-1, 1])
    kit[42] = ((hat * np.exp(-th / 0.03) * 0.25).astype(np.float32), pan_hat)
    kit[46] = ((hat * np.exp(-th / 0.18) * 0.2).astype(np.float32), pan_hat)
    b, a = signal.butter(2, [3000, 12000], btype="band", fs=sr)
    ride = signal.lfilter(b, a, rng.standard_normal(len(th)) + np.sin(2 * np.pi * 3200 * th))
    kit[51] = ((ride * np.exp(-th / 0.35) * 0.2).astype(np.float32), -pan_hat)
    tt = t(0.4)
    tom = np.sin(2 * np.pi * np.cumsum(90 + 60 * np.exp(-tt / 0.03)) / sr) * np.exp(-tt / 0.18)
    kit[45] = (tom.astype(np.float32), rng.uniform(-0.3, 0.3))
    return kit


def _render_drums(notes: list[Note], n: int, sample_rate: int, kit: dict) -> np.ndarray:
    out = np.zeros((2, n), np.float32)
    for note in notes:
        sample, pan = kit[note.pitch]
        i0 = max(int(round(note.start_s * sample_rate)), 0)
        if i0 >= n:
            continue
        m = min(len(sample), n - i0)
        th = (pan + 1.0) * np.pi / 4.0
        y = sample[:m] * note.velocity
        out[0, i0 : i0 + m] += y * np.float32(np.cos(th) * np.sqrt(2.0))
        out[1, i0 : i0 + m] += y * np.float32(np.sin(th) * np.sqrt(2.0))
    return out


@dataclass(frozen=True)
class _Timbre:
    """One song's random timbre choices (drawn in a fixed order by :func:`_draw_timbre`, so a seed gives the
    same song)."""

    vib_hz: float
    vib_cents: float
    pulse_width: float
    cutoff_hz: float
    detune_cents: float
    ks_decay: float
    fm_ratio: float
    fm_index: float
    sub_mix: float
    bass_cutoff_hz: float


def _draw_timbre(rng: np.random.Generator) -> _Timbre:
    vib_hz, vib_cents = float(rng.uniform(4.5, 6.0)), float(rng.uniform(15, 40))
    pulse_width = float(rng.uniform(0.2, 0.4))
    cutoff_hz = float(rng.uniform(1500, 4000))
    detune_cents = float(rng.uniform(4, 12))
    ks_decay = float(rng.uniform(0.990, 0.997))
    fm_ratio, fm_index = float(rng.choice([1.0, 2.0, 3.0])), float(rng.uniform(1.5, 4.0))
    sub_mix = float(rng.uniform(0.3, 0.7))
    bass_cutoff_hz = float(rng.uniform(400, 1200))
    return _Timbre(
        vib_hz,
        vib_cents,
        pulse_width,
        cutoff_hz,
        detune_cents,
        ks_decay,
        fm_ratio,
        fm_index,
        sub_mix,
        bass_cutoff_hz,
    )


def _lead_voices(tb: _Timbre, sr: int) -> dict[str, Callable]:
    """The lead (vocals) note renderers: ``pop`` (saw + formants), ``folk`` (additive "ooh"), ``fm`` (pulse)."""
    vowels = list(VOWELS)

    def vib_freq(pitch: int, m: int) -> np.ndarray:
        tt = np.arange(m) / sr
        depth = np.clip(tt / 0.25, 0, 1) * tb.vib_cents  # vibrato fades in
        return midi_hz(pitch) * 2.0 ** (depth * np.sin(2 * np.pi * tb.vib_hz * tt) / 1200.0)

    def lead_pop(note: Note, m: int) -> np.ndarray:
        x = _saw(_phase(vib_freq(note.pitch, m), m, sr))
        y = _formants(x, vowels[(note.pitch + int(note.start_s * 3)) % len(vowels)], sr)
        return y * _env(m, sr, 0.03, 0.3, 0.8, 0.08)

    n_harm = 12
    harm_w = np.array([1.0 / (k**1.2) for k in range(1, n_harm + 1)])

    def lead_folk(note: Note, m: int) -> np.ndarray:
        ph = _phase(vib_freq(note.pitch, m), m, sr)
        f0 = midi_hz(note.pitch)
        y = np.zeros(m)
        for k in range(1, n_harm + 1):
            if k * f0 > 0.45 * sr:
                break
            # "ooh": weight harmonics near the first formant
            w = harm_w[k - 1] * (1.0 + 2.0 * np.exp(-((((k * f0) - 400.0) / 250.0) ** 2)))
            y += w * np.sin(k * ph)
        return (0.35 * y).astype(np.float32) * _env(m, sr, 0.06, 0.4, 0.85, 0.12)

    def lead_fm(note: Note, m: int) -> np.ndarray:
        x = _pulse(_phase(vib_freq(note.pitch, m), m, sr), tb.pulse_width)
        return _formants(x, "a", sr, direct=0.03) * _env(m, sr, 0.02, 0.2, 0.75, 0.06)

    return {"pop": lead_pop, "folk": lead_folk, "fm": lead_fm}


def _comp_voices(tb: _Timbre, sr: int, rng: np.random.Generator) -> dict[str, Callable]:
    """The accompaniment (other) note renderers: ``pad``, ``pluck``, ``guitar`` (Karplus-Strong, draws from
    ``rng`` per note), ``epiano`` (FM)."""
    b_lp, a_lp = signal.butter(2, tb.cutoff_hz, fs=sr)
    detune = tb.detune_cents

    def pad(note: Note, m: int) -> np.ndarray:
        f = midi_hz(note.pitch)
        x = _saw(_phase(f * 2 ** (detune / 1200), m, sr)) + _saw(_phase(f * 2 ** (-detune / 1200), m, sr))
        return signal.lfilter(b_lp, a_lp, 0.5 * x).astype(np.float32) * _env(m, sr, 0.15, 0.5, 0.8, 0.3)

    def pluck(note: Note, m: int) -> np.ndarray:
        f = midi_hz(note.pitch)
        tt = np.arange(m) / sr
        bright = np.exp(-tt / 0.12)
        x = _saw(_phase(f, m, sr)) * (0.3 + 0.7 * bright) + (1 - bright) * np.sin(_phase(f, m, sr))
        return signal.lfilter(b_lp, a_lp, x).astype(np.float32) * _env(m, sr, 0.003, 0.35, 0.25, 0.1)

    def guitar(note: Note, m: int) -> np.ndarray:
        return _karplus(midi_hz(note.pitch), m, sr, tb.ks_decay, rng) * _env(m, sr, 0.001, 5.0, 1.0, 0.05)

    def epiano(note: Note, m: int) -> np.ndarray:
        f = midi_hz(note.pitch)
        tt = np.arange(m) / sr
        index = tb.fm_index * np.exp(-tt / 0.25)
        y = np.sin(_phase(f, m, sr) + index * np.sin(_phase(f * tb.fm_ratio, m, sr)))
        return (0.6 * y).astype(np.float32) * _env(m, sr, 0.002, 0.6, 0.35, 0.15)

    return {"pad": pad, "pluck": pluck, "guitar": guitar, "epiano": epiano}


def _bass_voices(tb: _Timbre, sr: int) -> dict[str, Callable]:
    """The bass note renderers: ``saw`` (saw + sub, low-passed), ``upright``, ``fm``."""
    b_bass, a_bass = signal.butter(2, tb.bass_cutoff_hz, fs=sr)

    def bass_saw(note: Note, m: int) -> np.ndarray:
        f = midi_hz(note.pitch)
        x = (1 - tb.sub_mix) * _saw(_phase(f, m, sr)) + tb.sub_mix * np.sin(_phase(f, m, sr))
        return signal.lfilter(b_bass, a_bass, x).astype(np.float32) * _env(m, sr, 0.005, 0.3, 0.7, 0.04)

    def bass_upright(note: Note, m: int) -> np.ndarray:
        f = midi_hz(note.pitch)
        ph = _phase(f, m, sr)
        tt = np.arange(m) / sr
        y = (
            np.sin(ph)
            + 0.35 * np.sin(2 * ph) * np.exp(-tt / 0.15)
            + 0.15 * np.sin(3 * ph) * np.exp(-tt / 0.08)
        )
        return y.astype(np.float32) * _env(m, sr, 0.004, 0.5, 0.3, 0.06)

    def bass_fm(note: Note, m: int) -> np.ndarray:
        f = midi_hz(note.pitch)
        tt = np.arange(m) / sr
        y = np.sin(_phase(f, m, sr) + 2.5 * np.exp(-tt / 0.08) * np.sin(_phase(f, m, sr)))
        return y.astype(np.float32) * _env(m, sr, 0.002, 0.25, 0.6, 0.03)

    return {"saw": bass_saw, "upright": bass_upright, "fm": bass_fm}


def _voices(
    family: str, sample_rate: int, rng: np.random.Generator
) -> dict[str, tuple[Callable, float, dict]]:
    """Per class: (note renderer, release tail in s, timbre parameters for params.json)."""
    tb = _draw_timbre(rng)
    lead = _lead_voices(tb, sample_rate)
    comp = _comp_voices(tb, sample_rate, rng)
    bass = _bass_voices(tb, sample_rate)
    vib = {"vib_hz": tb.vib_hz, "vib_cents": tb.vib_cents}
    if family == "pop":
        c = comp["pad"] if rng.random() < 0.5 else comp["pluck"]
        return {
            "vocals": (lead["pop"], 0.1, {"lead": "saw+formants", **vib}),
            "other": (
                c,
                0.3,
                {"comp": c.__name__, "cutoff_hz": tb.cutoff_hz, "detune_cents": tb.detune_cents},
            ),
            "bass": (bass["saw"], 0.05, {"bass": "saw+sub", "sub_mix": tb.sub_mix}),
        }
    if family == "folk":
        return {
            "vocals": (lead["folk"], 0.15, {"lead": "additive-ooh", **vib}),
            "other": (comp["guitar"], 0.05, {"comp": "karplus-strong", "decay": tb.ks_decay}),
            "bass": (bass["upright"], 0.08, {"bass": "upright"}),
        }
    return {
        "vocals": (
            lead["fm"],
            0.08,
            {"lead": "pulse+formants", "pulse_width": tb.pulse_width, "vib_hz": tb.vib_hz},
        ),
        "other": (
            comp["epiano"],
            0.2,
            {"comp": "fm-epiano", "fm_ratio": tb.fm_ratio, "fm_index": tb.fm_index},
        ),
        "bass": (bass["fm"], 0.04, {"bass": "fm"}),
    }


def render_dry(score: Score, seconds: float, sample_rate: int, rng: np.random.Generator) -> tuple[dict, dict]:
    """Render a score to dry stems.

    Args:
        score: note material from :func:`compose`.
        seconds: song length (s); output has ``round(seconds * sample_rate)`` samples.
        sample_rate: Hz.
        rng: seeded generator (timbre choices, noise).

    Returns:
        (stems, timbre_params): stems maps each class to (2, n) float32, peak-normalized to a random
        recording level in -12..-3 dBFS; timbre_params is JSON-ready.
    """
    n = int(round(seconds * sample_rate))
    voices = _voices(score.family, sample_rate, rng)
    kit = _drum_kit(score.family, sample_rate, rng)
    stems: dict[str, np.ndarray] = {}
    timbres: dict[str, dict] = {"drums": {"kit": score.family}}
    for name in CLASSES:
        notes = score.notes.get(name, [])
        if name == "drums":
            x = _render_drums(notes, n, sample_rate, kit)
        else:
            fn, tail_s, tp = voices[name]
            x = _render_tonal(notes, n, sample_rate, fn, tail_s)
            timbres[name] = {k: (round(v, 4) if isinstance(v, float) else v) for k, v in tp.items()}
        peak = float(np.max(np.abs(x)))
        level_db = float(rng.uniform(-12.0, -3.0))
        if peak > 0:
            x = x * np.float32(10 ** (level_db / 20) / peak)
        timbres[name]["record_peak_db"] = round(level_db, 3)
        stems[name] = np.ascontiguousarray(x, dtype=np.float32)
    return stems, timbres

"""Performed dynamics: the level variation players put into their notes, for machine-regular material.

Fixed-velocity or sample-replay parts repeat one peak; players do not (a drummer's accents, a singer's phrase
swells), and the onset-peak statistics of real stems show it: MUSDB18's loud onsets sit 3-5 dB under each
stem's loudest one (fxnorm-spec.md §1.4), those of uniform parts within 1 dB. :func:`performance_db` draws a
part's note-level offsets (a slow phrase swell, accents on a share of the notes, a per-note spread);
:func:`perform` / :func:`perform_parts` put them into MIDI velocities, :func:`perform_audio` into a rendered
track (tracker-module solos, whose notes are not at hand), keeping the track's loudness.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
from fxmix.dsp.features import integrated_loudness, onset_boundaries

from .notes import NoteEvent, Part

#: SoundFont 2.0's default velocity modulator attenuates by 40*log10(127/velocity) dB (concave, 96 dB range),
#: so a level change of d dB is a velocity factor of 10**(d/40).
VELOCITY_DB = 40.0
#: Performed dynamics, in dB of note level (the defaults of :func:`perform`): a slow phrase swell (std, one
#: value per PHRASE_S, linearly interpolated), accents on a share of the struck gestures (CHORD_S), a spread
#: per gesture, a voicing spread per note, and headroom taken off every note so accents are not clipped at
#: velocity 127.
PERFORMANCE = {"swell_db": 2.5, "accent_db": 5.0, "accent_share": 0.12, "spread_db": 1.5, "voicing_db": 0.5,
               "headroom_db": 3.0}
PHRASE_S = 2.0
#: Notes whose starts lie within CHORD_S of a struck group's first note are one gesture (a chord, a strum, a
#: flam): they share its accent and its spread, and differ only by the small voicing spread ``voicing_db``
#: (a pianist voices a chord's notes a few dB apart, not by independent accents).
CHORD_S = 0.03
#: Gain ramps of :func:`perform_audio` end at each onset (s): short, so a note's level is set by its onset.
RAMP_S = 0.005


def _swell(rng: np.random.Generator, end_s: float, std_db: float) -> np.ndarray:
    """Phrase-swell knots (dB), one per PHRASE_S from 0 to past ``end_s``."""
    return rng.normal(0.0, std_db, int(end_s / PHRASE_S) + 2)


def performance_db(starts_s, rng: np.random.Generator, swell: np.ndarray | None = None,
                   **amounts: float) -> np.ndarray:
    """Performed dynamics of notes starting at ``starts_s``: dB offsets from a phrase swell, accents on a share
    of the struck groups (:func:`struck_groups`) and a spread per group, a small voicing spread per note, less
    the headroom (amounts: see PERFORMANCE). ``swell`` (knots every PHRASE_S) shares one player's swell
    between parts (the pieces of a drum kit)."""
    a = {**PERFORMANCE, **amounts}
    starts = np.asarray(starts_s, float)
    if starts.size == 0:
        return np.zeros(0)
    if swell is None:
        swell = _swell(rng, float(starts.max()), a["swell_db"])
    d = np.interp(starts / PHRASE_S, np.arange(swell.size), swell)
    group = struck_groups(starts)
    k = int(group.max()) + 1
    accented = rng.random(k) < a["accent_share"]
    gesture = np.where(accented, a["accent_db"] * rng.uniform(0.5, 1.0, k), 0.0) + rng.normal(0.0, a["spread_db"], k)
    return d + gesture[group] + rng.normal(0.0, a["voicing_db"], starts.size) - a["headroom_db"]


def struck_groups(starts_s) -> np.ndarray:
    """Group index of each start (in the given order): notes starting within CHORD_S of a group's first
    note (in time order) belong to it."""
    starts = np.asarray(starts_s, float)
    order = np.argsort(starts, kind="stable")
    group = np.empty(starts.size, np.int64)
    g, first = -1, -np.inf
    for i in order:
        if starts[i] - first > CHORD_S:
            g, first = g + 1, starts[i]
        group[i] = g
    return group


def perform(part: Part, rng: np.random.Generator, swell: np.ndarray | None = None, **amounts: float) -> Part:
    """The part with :func:`performance_db` in its velocities (SoundFont velocity law, VELOCITY_DB)."""
    d = performance_db([n.start_s for n in part.notes], rng, swell, **amounts)
    notes = [NoteEvent(n.start_s, n.dur_s, n.pitch, int(np.clip(round(n.velocity * 10 ** (x / VELOCITY_DB)), 1, 127)))
             for n, x in zip(part.notes, d)]
    return replace(part, notes=notes)


def perform_parts(parts: list[Part], rng: np.random.Generator, **amounts: float) -> list[Part]:
    """:func:`perform` on every part; the drum parts (one kit, one player) share one phrase swell."""
    ends = [n.start_s for p in parts for n in p.notes]
    std = {**PERFORMANCE, **amounts}["swell_db"]
    kit = _swell(rng, max(ends, default=0.0), std)
    return [perform(p, rng, kit if p.drum else None, **amounts) for p in parts]


def perform_audio(x: np.ndarray, sample_rate: int, rng: np.random.Generator, **amounts: float) -> np.ndarray:
    """A rendered track ``(channels, n)`` with performed dynamics: :func:`performance_db` at its detected
    onsets (dsp's spectral-flux detector), held to the next onset, ramped over RAMP_S into each onset; then
    scaled back to the track's integrated loudness, so a composer's balance between tracks is kept."""
    bounds = onset_boundaries(x, sample_rate)
    d = performance_db(bounds / sample_rate, rng, **amounts)
    gain_db = np.repeat(d, np.diff(np.append(bounds, x.shape[-1])))
    ramp = max(int(RAMP_S * sample_rate), 1)
    kernel = np.ones(ramp) / ramp
    gain_db = np.convolve(np.pad(gain_db, (0, ramp - 1), mode="edge"), kernel, mode="valid")  # ends at onsets
    y = (x * (10 ** (gain_db / 20)).astype(np.float32)).astype(np.float32)
    before, after = integrated_loudness(x, sample_rate), integrated_loudness(y, sample_rate)
    if np.isfinite(before) and np.isfinite(after):
        y *= np.float32(10 ** ((before - after) / 20))
    return y

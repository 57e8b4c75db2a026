"""Procedural dry sessions for calibrating the engineer when no built corpus is at hand.

One procedural score (:mod:`fxmix.training.synth_sources`) is rendered part by part into a session of 6-10
tracks: lead (vocals slot), optionally a backing double, kick / snare / hats, bass, and 1-4 accompaniment
parts (the chord part in independently drawn timbres, so two parts may be doubles of one instrument).
"""

from __future__ import annotations

import copy
import dataclasses

import numpy as np

from ...dsp.constants import SAMPLE_RATE
from ..corpus.session import DrySession, DryTrack
from ..synth_sources import compose, render_dry

DRUM_PARTS = {"kick": (36,), "snare": (38, 39, 45), "hi-hat": (42, 46, 51)}
LICENCE = "MIT (procedural, fxmix)"


def _render_part(score, cls: str, notes, seconds: float, rng: np.random.Generator) -> tuple[np.ndarray, dict]:
    sc = copy.copy(score)
    sc.notes = {cls: notes}
    stems, timbres = render_dry(sc, seconds, SAMPLE_RATE, rng)
    return stems[cls], timbres.get(cls, {})


def procedural_session(
    index: int, seed: int, seconds: float, family: str | None = None, split: str = "train"
) -> DrySession:
    """Session ``index`` of corpus seed ``seed`` (deterministic in both)."""
    rng = np.random.default_rng([seed, index])
    family = family or str(rng.choice(["pop", "folk"]))
    score = compose(family, seconds, rng)
    src = f"fxmix procedural/{family}"
    tracks: list[DryTrack] = []

    def add(name, cls, notes, role, label=None):
        x, tb = _render_part(score, cls, notes, seconds, rng)
        inst = label or str(tb.get("lead") or tb.get("comp") or tb.get("bass") or cls)
        tracks.append(DryTrack(f"{len(tracks):02d}_{name}", cls, inst, x, src, LICENCE, role))

    add("lead", "vocals", score.notes["vocals"], "lead")
    if rng.random() < 0.4:
        add(
            "backing",
            "vocals",
            [dataclasses.replace(n, pitch=n.pitch - 12) for n in score.notes["vocals"]],
            "backing",
        )
    for name, pitches in DRUM_PARTS.items():
        part = [n for n in score.notes["drums"] if n.pitch in pitches]
        if part:
            add(name, "drums", part, "drums", name)
    add("bass", "bass", score.notes["bass"], "bass")
    for k in range(int(rng.integers(1, 5))):
        add(f"chords{k}", "other", score.notes["other"], "pad" if k == 1 else "chords")
    return DrySession(f"proc-{seed}-{index:04d}", "procedural", split, seed, score.bpm, tracks)

"""Performed dynamics and singing registers of the session corpus, and the `fxmix data remix` verb."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from fxmix.dsp.audio import read_audio
from fxmix.dsp.constants import SAMPLE_RATE
from fxmix.dsp.errors import ConfigError
from fxmix.dsp.features import integrated_loudness, measure_dynamics
from fxmix.training.corpus.build import build_corpus
from fxmix.training.corpus.material import SINGER_REGISTERS, in_register
from fxmix.training.corpus.notes import NoteEvent, Part
from fxmix.training.corpus.performance import perform_audio, perform_parts

from fxmix.verbs.data import main as data_main


def _repeated_notes(seconds: float = 8.0, every_s: float = 0.25) -> np.ndarray:
    """A sample-replay part: one decaying 220-Hz note repeated at one level (identical peaks)."""
    n = int(seconds * SAMPLE_RATE)
    t = np.arange(int(0.2 * SAMPLE_RATE)) / SAMPLE_RATE
    note = (0.5 * np.sin(2 * np.pi * 220 * t) * np.exp(-15 * t)).astype(np.float32)
    x = np.zeros((2, n), np.float32)
    for k in range(0, n - note.size, int(every_s * SAMPLE_RATE)):
        x[:, k : k + note.size] += note
    return x


def test_performed_audio_spreads_the_onset_peaks_and_keeps_the_loudness():
    x = _repeated_notes()
    before, _ = measure_dynamics(x, SAMPLE_RATE)
    after = [measure_dynamics(perform_audio(x, SAMPLE_RATE, np.random.default_rng(s)), SAMPLE_RATE)[0]
             for s in range(6)]
    # uniform peaks sit at the -10 dBFS normalisation; performed ones lie dB under the loudest one
    assert before > -11.0
    assert np.mean(after) < before - 1.5
    y = perform_audio(x, SAMPLE_RATE, np.random.default_rng(0))
    assert abs(integrated_loudness(y, SAMPLE_RATE) - integrated_loudness(x, SAMPLE_RATE)) < 0.01


def test_performed_parts_vary_velocities_and_a_kit_shares_its_swell():
    notes = [NoteEvent(0.25 * k, 0.2, 38, 100) for k in range(64)]
    kick = Part("kick", "drums", "kick", [NoteEvent(e.start_s, e.dur_s, 36, 100) for e in notes], drum=True)
    snare = Part("snare", "drums", "snare", notes, drum=True)
    pad = Part("pad", "other", "GM 89", notes, 89)
    out = perform_parts([kick, snare, pad], np.random.default_rng(3), accent_share=0.0, spread_db=0.0)
    vel = [np.array([e.velocity for e in p.notes]) for p in out]
    assert all(v.std() > 3 and v.max() <= 127 and v.min() >= 1 for v in vel)
    # with accents and spread off only the phrase swell is left: one player's kit moves together
    np.testing.assert_array_equal(vel[0], vel[1])
    assert not np.array_equal(vel[0], vel[2])


@pytest.mark.parametrize("singer", list(SINGER_REGISTERS))
def test_lead_moves_by_octaves_into_the_singers_register(singer):
    melody = Part("lead", "vocals", "GM 52", [NoteEvent(0.5 * k, 0.4, p, 90) for k, p in
                                               enumerate([67, 69, 72, 74, 76, 72, 71, 67])], 52, role="lead")
    moved = in_register(melody, np.random.default_rng(0), singer)
    shift = {b.pitch - a.pitch for a, b in zip(melody.notes, moved.notes)}
    assert len(shift) == 1 and next(iter(shift)) % 12 == 0
    centre = SINGER_REGISTERS[singer][1]
    assert abs(np.median([e.pitch for e in moved.notes]) - centre) <= 6


def test_remix_verb_remixes_a_built_corpus_and_names_a_missing_split(tmp_path: Path, capsys):
    build_corpus(tmp_path / "built", 1, 2.0, 5, families=("procedural",), progress=False)
    split = next(p.name for p in (tmp_path / "built").iterdir() if p.is_dir())
    assert data_main(["remix", str(tmp_path / "built"), "--out", str(tmp_path / "re"), "--splits", split,
                      "--jobs", "1", "--no-progress"]) == 0
    assert "fxmix data stats" in capsys.readouterr().out
    song = next((tmp_path / "built" / split).iterdir())
    a = read_audio(song / "mixture.flac").audio
    b = read_audio(tmp_path / "re" / split / song.name / "mixture.flac").audio
    np.testing.assert_allclose(b, a, atol=1e-3)
    other = "valid" if split != "valid" else "test"
    with pytest.raises(ConfigError, match=f"no split folder {other}"):
        data_main(["remix", str(tmp_path / "built"), "--out", str(tmp_path / "re2"), "--splits", other])

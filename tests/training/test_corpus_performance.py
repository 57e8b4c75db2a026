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
from fxmix.training.corpus.material import (
    LOW_VOICING_RANGE,
    SINGER_REGISTERS,
    in_register,
    low_voiced,
    with_low_voicing,
)
from fxmix.training.corpus.notes import NoteEvent, Part
from fxmix.training.corpus.performance import perform_audio, perform_parts, struck_groups

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
    out = perform_parts([kick, snare, pad], np.random.default_rng(3), accent_share=0.0, spread_db=0.0,
                        voicing_db=0.0)
    vel = [np.array([e.velocity for e in p.notes]) for p in out]
    assert all(v.std() > 3 and v.max() <= 127 and v.min() >= 1 for v in vel)
    # with accents, spread and voicing off only the phrase swell is left: one player's kit moves together
    np.testing.assert_array_equal(vel[0], vel[1])
    assert not np.array_equal(vel[0], vel[2])


def test_notes_struck_together_share_their_accent_and_spread():
    # three-note chords (each spread over 4 ms, as a strum) every half second
    notes = [NoteEvent(0.5 * k + 0.002 * j, 0.4, 60 + 4 * j, 90) for k in range(40) for j in range(3)]
    pad = Part("keys", "other", "GM 0", notes, 0, role="chords")
    out = perform_parts([pad], np.random.default_rng(5), swell_db=0.0, voicing_db=0.0, accent_share=0.3)
    vel = np.array([e.velocity for e in out[0].notes]).reshape(40, 3)
    assert np.all(vel == vel[:, :1])  # one gesture per chord
    assert vel[:, 0].std() > 3  # and gestures differ
    assert np.array_equal(struck_groups([0.0, 0.02, 0.05, 0.051, 0.2]), [0, 0, 1, 1, 2])


@pytest.mark.parametrize("singer", list(SINGER_REGISTERS))
def test_lead_moves_by_octaves_into_the_singers_register(singer):
    melody = Part("lead", "vocals", "GM 52", [NoteEvent(0.5 * k, 0.4, p, 90) for k, p in
                                               enumerate([67, 69, 72, 74, 76, 72, 71, 67])], 52, role="lead")
    moved = in_register(melody, np.random.default_rng(0), singer)
    shift = {b.pitch - a.pitch for a, b in zip(melody.notes, moved.notes)}
    assert len(shift) == 1 and next(iter(shift)) % 12 == 0
    centre = SINGER_REGISTERS[singer][1]
    assert abs(np.median([e.pitch for e in moved.notes]) - centre) <= 6


def _chords(program: int = 0, role: str = "chords", cls: str = "other") -> Part:
    """C major (second inversion), D minor, G major: close-voiced from C4 up, as MMA and the composer write."""
    voicings = [(67, 72, 76), (62, 65, 69), (67, 71, 74)]
    notes = [NoteEvent(1.0 * k + 0.002 * j, 0.9, p, 80 + k) for k, ch in enumerate(voicings) for j, p in enumerate(ch)]
    return Part("comp", cls, f"GM {program}", notes, program, False, role)


def test_low_voicing_doubles_each_chord_root_in_the_second_octave():
    out = low_voiced(_chords())
    low = [n for n in out.notes if n.pitch < 60]
    assert [n.pitch % 12 for n in low] == [0, 2, 7]  # roots C, D, G, not the inversion's bass note
    assert all(LOW_VOICING_RANGE[0] <= n.pitch < LOW_VOICING_RANGE[1] for n in low)
    assert [n.start_s for n in low] == [0.0, 1.0, 2.0] and [n.velocity for n in low] == [80, 81, 82]
    assert len(out.notes) == len(_chords().notes) + 3


def test_low_voicing_leaves_pads_bass_and_other_programs_alone():
    parts = [_chords(), _chords(role="pad"), _chords(33, "bass", "bass"), _chords(56)]  # piano, pad, bass, trumpet
    for seed in range(20):
        out = with_low_voicing(parts, np.random.default_rng(seed))
        assert out[1:] == parts[1:]
        if out[0] != parts[0]:
            break
    else:
        raise AssertionError("no song of 20 got a low-voiced piano")


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

"""`fxmix mix` on the streamed path: a lone mix leaves no work files, and removes those of a killed run."""

from __future__ import annotations

import json

import numpy as np
import soundfile as sf
from fxmix.dsp import constants as C
from fxmix.dsp.audio import write_audio

from fxmix.cli import main
from tests.support import signals


def test_lone_mix_cleans_a_killed_runs_work_folder_and_leaves_none(tmp_path, capsys):
    song = tmp_path / "song"
    for c, x in signals.song(3.0, seed=4).items():
        write_audio(song / f"{c}.wav", x, C.SAMPLE_RATE)
    stale = tmp_path / ".m.wav.abc123.work"  # what a kill -9 during the normalization leaves
    stale.mkdir()
    (stale / "vocals.f32").write_bytes(b"\0" * 64)
    assert main(["mix", str(song), "-o", str(tmp_path / "m.wav"), "--model", "none"]) == 0
    assert "Traceback" not in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.decisions.json", "m.params.json", "m.wav", "song"]
    mix, rate = sf.read(tmp_path / "m.wav", dtype="float32", always_2d=True)
    assert rate == C.SAMPLE_RATE and mix.shape == (3 * C.SAMPLE_RATE, 2) and np.max(np.abs(mix)) > 0.01
    doc = json.loads((tmp_path / "m.params.json").read_text())
    assert doc["mix_lufs"] is not None and abs(doc["mix_lufs"]) < 70

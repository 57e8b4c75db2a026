"""``fxmix.automix``: the documented library call, on folders, file lists and arrays."""

import numpy as np
import pytest
import soundfile as sf
from fxmix.dsp.errors import ConfigError
from fxmix.dsp.features import integrated_loudness
from fxmix.dsp.profile import load_profile
from support import signals

import fxmix

SR = signals.SR


@pytest.fixture
def song_dir(tmp_path):
    song = signals.song(3.0)
    for name, cls in {"Lead Vox.wav": "vocals", "Kick.wav": "drums", "bass.wav": "bass"}.items():
        sf.write(tmp_path / name, song[cls].T, SR, subtype="FLOAT")
    return tmp_path


def test_folder_in_mix_and_decisions_out(song_dir):
    r = fxmix.automix(song_dir, model="none")
    assert r.mix.shape == (2, 3 * SR) and r.sample_rate == SR
    assert {t["class"] for t in r.tracks} == {"vocals", "drums", "bass"}
    assert set(r.decisions) >= {"vocals", "drums", "bass"}
    assert set(r.decisions["vocals"]) == {"eq", "compression", "panning", "loudness"}
    target = load_profile(r.profile).targets["vocals"].loudness_lufs
    assert abs(integrated_loudness(r.normalized["vocals"], SR) - target) < 0.6
    # the normalized sum is what model="none" mixes
    assert np.max(np.abs(r.mix - np.sum(list(r.normalized.values()), axis=0))) < 1e-4


def test_files_and_arrays_give_the_same_mix(song_dir):
    files = sorted(song_dir.glob("*.wav"))
    by_files = fxmix.automix(files, model="none")
    arrays = {"vocals": sf.read(song_dir / "Lead Vox.wav")[0].T, "drums": sf.read(song_dir / "Kick.wav")[0].T,
              "bass": sf.read(song_dir / "bass.wav")[0].T}
    by_arrays = fxmix.automix(arrays, model="none")
    assert np.max(np.abs(by_files.mix - by_arrays.mix)) < 1e-5


def test_mono_arrays_at_another_rate_come_back_at_that_rate():
    song = signals.song(2.0)
    r = fxmix.automix({"vocals": song["vocals"][0], "bass": song["bass"]}, sample_rate=48000, model="none")
    assert r.sample_rate == 48000 and r.mix.shape[0] == 2


def test_bad_input_is_a_clear_error():
    with pytest.raises(ConfigError, match="pass a folder"):
        fxmix.automix(42)

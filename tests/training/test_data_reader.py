"""MUSDB-layout reader: splits, lazy loading, resampling, missing stems, bad and short songs skipped."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import soundfile as sf
from fxmix.dsp.errors import AudioInputError, ConfigError
from fxmix.training.data import DatasetWarning, MultitrackDataset, list_songs, load_song, musdb_valid_songs

CLASSES = ("vocals", "drums", "bass", "other")


def _tone(seed: int, seconds: float, sample_rate: int = 44100) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * sample_rate)) / sample_rate
    f = rng.uniform(100, 1000)
    x = 0.2 * np.sin(2 * np.pi * f * t) * (1 + 0.1 * rng.standard_normal(t.shape))
    return np.stack([x, 0.7 * x]).astype(np.float32)


def _write_song(
    folder, seed: int, seconds: float = 1.5, sample_rate: int = 44100, classes=CLASSES, mixture=True
):
    folder.mkdir(parents=True)
    stems = {}
    for k, c in enumerate(classes):
        stems[c] = _tone(seed * 10 + k, seconds, sample_rate)
        sf.write(folder / f"{c}.wav", stems[c].T, sample_rate, subtype="FLOAT")
    if mixture:
        sf.write(folder / "mixture.wav", sum(stems.values()).T, sample_rate, subtype="FLOAT")
    return stems


def test_reads_songs_lazily_with_missing_stems_and_resampling(tmp_path):
    stems = _write_song(tmp_path / "test" / "a", 1)
    _write_song(tmp_path / "test" / "b", 2, sample_rate=22050, classes=("vocals", "bass"), mixture=False)
    ds = MultitrackDataset(tmp_path, "test")
    assert len(ds) == 2 and ds.skipped == []
    a = ds[0]
    assert a.name == "a" and a.sample_rate == 44100 and a.path == tmp_path / "test" / "a"
    assert abs(a.duration_s - 1.5) < 1e-6
    for c in CLASSES:
        assert a.stems[c].shape == (2, 66150) and a.stems[c].dtype == np.float32
        np.testing.assert_allclose(a.stems[c], stems[c], atol=1e-7)
    np.testing.assert_allclose(a.mixture, sum(stems.values()), atol=1e-6)
    b = ds[1]
    assert b.stems["drums"].shape == b.stems["vocals"].shape and not np.any(b.stems["drums"])
    assert abs(b.stems["vocals"].shape[1] - 66150) <= 2  # resampled 22.05 -> 44.1 kHz
    np.testing.assert_allclose(b.mixture, b.stems["vocals"] + b.stems["bass"], atol=1e-6)  # no mixture file


def test_bad_and_short_songs_are_skipped_with_a_warning(tmp_path):
    _write_song(tmp_path / "train" / "good", 3)
    _write_song(tmp_path / "train" / "short", 4, seconds=0.2)
    broken = tmp_path / "train" / "broken"
    broken.mkdir(parents=True)
    (broken / "vocals.wav").write_bytes(b"RIFF\x00\x00not really a wave file")
    (tmp_path / "train" / "notes.txt").write_text("not a song")
    (tmp_path / "train" / "x.stem.mp4").write_bytes(b"\x00" * 64)
    with pytest.warns(DatasetWarning) as rec:
        ds = MultitrackDataset(tmp_path, "train", min_duration_s=1.0)
    assert [p.name for p in ds.songs] == ["good"]
    skipped = {p.name for p, _ in ds.skipped}
    assert skipped == {"broken", "short", "x.stem.mp4"}
    messages = " ".join(str(w.message) for w in rec)
    assert "broken" in messages and "shorter than" in messages
    assert ds[0].stems["vocals"].shape == (2, 66150)


def test_unreadable_audio_at_load_time_is_skipped_while_iterating(tmp_path):
    _write_song(tmp_path / "valid" / "a", 5)
    stems = _write_song(tmp_path / "valid" / "b", 6)
    bad = stems["drums"].copy()
    bad[0, 100] = np.nan  # header fine, samples invalid
    sf.write(tmp_path / "valid" / "b" / "drums.wav", bad.T, 44100, subtype="FLOAT")
    ds = MultitrackDataset(tmp_path, "valid")
    assert len(ds) == 2
    with pytest.raises(AudioInputError, match="NaN"):
        ds[1]
    with pytest.warns(DatasetWarning, match="NaN"):
        names = [s.name for s in ds.iter_songs()]
    assert names == ["a"]


def test_musdb_valid_split_from_train_folder(tmp_path):
    valid_names = musdb_valid_songs()
    assert len(valid_names) == 14 and "Actions - One Minute Smile" in valid_names
    _write_song(tmp_path / "train" / "Actions - One Minute Smile", 7)
    _write_song(tmp_path / "train" / "Some Band - Some Song", 8)
    _write_song(tmp_path / "test" / "Other Band - Test Song", 9)
    with warnings.catch_warnings():
        warnings.simplefilter("error", DatasetWarning)
        assert [p.name for p in list_songs(tmp_path, "valid")] == ["Actions - One Minute Smile"]
        assert [p.name for p in list_songs(tmp_path, "train")] == ["Some Band - Some Song"]
        assert len(MultitrackDataset(tmp_path, "test")) == 1
    with pytest.raises(ConfigError, match="split"):
        list_songs(tmp_path, "dev")
    with pytest.raises(ConfigError, match="not found"):
        list_songs(tmp_path / "nope", "train")
    with pytest.raises(AudioInputError, match="no stem files"):
        load_song(tmp_path / "empty-song-folder")

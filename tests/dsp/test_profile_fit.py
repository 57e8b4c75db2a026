"""The profile fitter on a small procedurally made dataset of wet stems with known features: fitted targets
match what was put in, a sharded fit merged equals the unsharded fit, bad input raises typed errors."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from fxmix.dsp import constants as C
from fxmix.dsp.bands import band_centers_hz
from fxmix.dsp.errors import AudioInputError, ConfigError
from fxmix.dsp.features import integrated_loudness, measure_dynamics
from fxmix.dsp.profile import FIT_STAGES, Profile
from fxmix.dsp.profile_fit import (
    PartialStats,
    finalize_stage,
    find_songs,
    fit_profile,
    merge_partials,
    new_profile,
    parse_shard,
    run_pass,
    save_partial,
)

SR = C.SAMPLE_RATE
SECONDS = 3.0
CENTERS = band_centers_hz()
MID = (CENTERS >= 100) & (CENTERS <= 10000)
#: what goes in, per class: spectral tilt (dB/octave), per-song (left, right) gains and loudness (LUFS)
DESIGN = {
    "vocals": {"tilt": 3.0, "pans": [(1.0, 1.0), (1.0, 0.5), (1.0, 1.0), (0.5, 1.0)], "lufs": [-20, -22, -21, -23]},
    "bass": {"tilt": -6.0, "pans": [(1.0, 0.25), (1.0, 1.0), (0.25, 1.0), (1.0, 1.0)], "lufs": [-26, -24, -25, -25]},
}
N_SONGS = 4


def _phi(gains) -> float:
    g_l, g_r = gains
    return 2 * g_l * g_r / (g_l**2 + g_r**2)


def _stem(tilt_db_per_oct: float, gains, lufs: float, seed: int) -> np.ndarray:
    """Noise with a spectral tilt, beats every 0.5 s (onsets for the dynamics feature), panned by constant
    (left, right) gains (so φ = 2·gL·gR / (gL² + gR²) in every band), scaled to ``lufs``."""
    rng = np.random.default_rng(seed)
    n = int(SECONDS * SR)
    spec = np.fft.rfft(rng.standard_normal(n))
    f = np.maximum(np.fft.rfftfreq(n, 1 / SR), 20.0)
    mono = np.fft.irfft(spec * 10 ** (tilt_db_per_oct * np.log2(f / 1000.0) / 20), n)
    t = np.arange(n) / SR
    mono *= 0.4 + np.exp(-((t % 0.5) / 0.05))  # beats (the same per class: shared dynamics)
    x = np.stack([gains[0] * mono, gains[1] * mono]).astype(np.float32)
    return (x * 10 ** ((lufs - integrated_loudness(x, SR)) / 20)).astype(np.float32)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("wet") / "set"
    for i in range(N_SONGS):
        song = root / "train" / f"song{i}"
        song.mkdir(parents=True)
        for c, d in DESIGN.items():
            x = _stem(d["tilt"], d["pans"][i], d["lufs"][i], seed=10 * i + len(c))
            sf.write(song / f"{c}.wav", x.T, SR, subtype="FLOAT")
    return root


def _raw_pass(root: Path, stage: str):
    """One stage's pass over the raw stems (a base with no stage fitted normalizes nothing first)."""
    base = new_profile(root, split="train")
    return base, run_pass(find_songs(root, "train"), stage, base)


def test_finds_the_song_folders(dataset):
    songs = find_songs(dataset, "train")
    assert [s.name for s in songs] == [f"song{i}" for i in range(N_SONGS)]


def test_loudness_targets_are_the_mean_loudness_put_in(dataset):
    base, stats = _raw_pass(dataset, "loudness")
    assert stats.counts == {c: N_SONGS for c in DESIGN} and stats.songs == N_SONGS and not stats.skipped
    prof = finalize_stage(base, stats)
    for c, d in DESIGN.items():
        assert prof.targets[c].loudness_lufs == pytest.approx(np.mean(d["lufs"]), abs=0.02)
    assert prof.targets["drums"].loudness_lufs is None  # no drums stems: its target stays empty
    assert prof.stages_fitted == ("loudness",)


def test_spectrum_targets_carry_the_tilt_put_in(dataset):
    prof = finalize_stage(*_raw_pass(dataset, "eq"))
    for c, d in DESIGN.items():
        put_in = d["tilt"] * np.log2(CENTERS / 1000.0)
        diff = (prof.targets[c].spectrum_db - put_in)[MID]
        assert np.ptp(diff) < 1.0, c  # the shape is the tilt (the level is loudness-referenced)


def test_panning_targets_are_the_mean_phi_put_in(dataset):
    prof = finalize_stage(*_raw_pass(dataset, "panning"))
    for c, d in DESIGN.items():
        expected = np.mean([_phi(g) for g in d["pans"]])
        assert np.allclose(prof.targets[c].phi, expected, atol=1e-6), c  # constant gains: φ exact in every band
        assert np.all((prof.targets[c].phi >= 0) & (prof.targets[c].phi <= 1))


def test_compression_targets_are_the_mean_measured_dynamics(dataset):
    base, stats = _raw_pass(dataset, "compression")
    prof = finalize_stage(base, stats)
    for c in DESIGN:
        measured = [measure_dynamics(sf.read(s / f"{c}.wav", dtype="float32")[0].T, SR) for s in find_songs(dataset)]
        assert prof.targets[c].onset_peak_mean_db == pytest.approx(np.mean([m for m, _ in measured]), abs=1e-6)
        assert prof.targets[c].onset_peak_std_db == pytest.approx(np.mean([s for _, s in measured]), abs=1e-6)


@pytest.fixture(scope="module")
def full_fit(dataset) -> Profile:
    return fit_profile(dataset, split="train", name="wet")


def test_full_fit_fits_every_stage_in_order(full_fit):
    assert full_fit.stages_fitted == FIT_STAGES and full_fit.name == "wet"
    assert full_fit.provenance["songs"] == N_SONGS
    for c, d in DESIGN.items():
        t = full_fit.targets[c]
        # the stages before panning (EQ, stereo-linked compression) do not move φ
        assert np.allclose(t.phi, np.mean([_phi(g) for g in d["pans"]]), atol=1e-3)
        assert np.ptp((t.spectrum_db - d["tilt"] * np.log2(CENTERS / 1000.0))[MID]) < 1.0
        assert all(np.isfinite(v) for v in (t.loudness_lufs, t.onset_peak_mean_db, t.onset_peak_std_db))


def test_sharded_fit_merged_equals_the_unsharded_fit(dataset, full_fit, tmp_path):
    base = new_profile(dataset, split="train", name="wet")
    n_shards = 3  # 4 songs: shards of 2, 1 and 1
    for stage in FIT_STAGES:
        paths = []
        for k in range(1, n_shards + 1):
            stats = fit_profile(dataset, split="train", shard=f"{k}/{n_shards}", base=base)
            assert isinstance(stats, PartialStats) and stats.stage == stage
            paths.append(save_partial(tmp_path / f"{stage}-{k}.json", stats, base, f"{k}/{n_shards}"))
        base = merge_partials(paths)
    assert base.stages_fitted == FIT_STAGES
    for c in full_fit.classes:
        a, b = full_fit.targets[c], base.targets[c]
        for key in ("loudness_lufs", "onset_peak_mean_db", "onset_peak_std_db", "spectrum_db", "phi"):
            va, vb = getattr(a, key), getattr(b, key)
            assert (va is None) == (vb is None), (c, key)
            if va is not None:  # the merged base went through its JSON form (4 decimals) between stages
                assert np.allclose(va, vb, atol=2e-3), (c, key)
    assert base.provenance["stems_per_class"] == full_fit.provenance["stems_per_class"]


def test_a_song_with_an_unreadable_stem_is_skipped_and_reported(dataset, tmp_path):
    root = tmp_path / "mixed"
    for i in range(2):
        song = root / f"song{i}"
        song.mkdir(parents=True)
        sf.write(song / "vocals.wav", _stem(3.0, (1.0, 1.0), -20.0, seed=i).T, SR, subtype="FLOAT")
    (root / "song1" / "vocals.wav").write_bytes(b"RIFF not really a wav file")
    base = new_profile(root)
    stats = run_pass(find_songs(root), "loudness", base)
    assert stats.songs == 1 and stats.skipped == [str(root / "song1")] and stats.counts == {"vocals": 1}


def test_bad_input_raises_typed_errors(dataset, tmp_path, full_fit):
    with pytest.raises(AudioInputError, match="dataset folder not found"):
        find_songs(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(AudioInputError, match="no songs found"):
        fit_profile(tmp_path / "empty")
    for text in ("3/2", "0/4", "x", "1/2/3"):
        with pytest.raises(ConfigError, match="--shard"):
            parse_shard(text)
    assert parse_shard(None) == (1, 1) and parse_shard("2/8") == (2, 8)
    with pytest.raises(ConfigError, match="already complete"):
        fit_profile(dataset, split="train", shard="1/2", base=full_fit)
    with pytest.raises(ConfigError, match="at least one"):
        merge_partials([])
    garbage = tmp_path / "garbage.json"
    garbage.write_text("{not json")
    with pytest.raises(ConfigError, match="not a readable partial"):
        merge_partials([garbage])
    wrong = tmp_path / "wrong.json"
    wrong.write_text(json.dumps({"format": "something-else"}))
    with pytest.raises(ConfigError, match="format"):
        merge_partials([wrong])
    base = new_profile(dataset)
    one = save_partial(tmp_path / "a.json", PartialStats("eq"), base, "1/2")
    other = save_partial(tmp_path / "b.json", PartialStats("eq"), replace(base, name="other"), "2/2")
    with pytest.raises(ConfigError, match="different --base"):
        merge_partials([one, other])
    with pytest.raises(ConfigError, match="cannot merge"):
        PartialStats("eq").merge(PartialStats("loudness"))

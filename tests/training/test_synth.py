"""Synthetic wet corpus: stem sums, determinism, loudness, class-aware chains, held-out family, CLI."""

from __future__ import annotations

import json

import numpy as np
import pytest
from fxmix.dsp.errors import ConfigError
from fxmix.training.data import MultitrackDataset, crest_factor_db, list_songs, spectral_centroid_hz
from fxmix.training.synth import (
    plan_corpus,
    render_song,
    resolve_sources,
    split_counts,
    synthesize_corpus,
    write_song,
)
from fxmix.training.synth_chains import MIX_PEAK_CEILING_DB, replay_bus
from fxmix.training.synth_soundfont import soundfont_available
from fxmix.training.synth_sources import TEST_FAMILIES, TRAIN_FAMILIES

from fxmix.bench.synth import main as bench_synth_main
from fxmix.verbs.data import main as data_main

SR = 44100
CLASSES = ("vocals", "drums", "bass", "other")


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """Three 3-second songs (one per split) rendered in memory and written with write_song."""
    root = tmp_path_factory.mktemp("synth")
    specs = plan_corpus(3, 3.0, seed=11)
    songs = {s.split: render_song(s) for s in specs}
    for song in songs.values():
        write_song(root, song)
    return root, songs


def test_split_plan_and_held_out_family():
    specs = plan_corpus(10, 3.0, seed=1, split_ratios=(0.8, 0.1, 0.1))
    assert [s.split for s in specs] == ["train"] * 8 + ["valid"] + ["test"]
    assert all(s.family in TRAIN_FAMILIES for s in specs if s.split != "test")
    assert all(s.family in TEST_FAMILIES for s in specs if s.split == "test")
    assert not set(TRAIN_FAMILIES) & set(TEST_FAMILIES)
    assert split_counts(3, (0.8, 0.1, 0.1)) == {"train": 1, "valid": 1, "test": 1}
    with pytest.raises(ConfigError, match="split-ratios"):
        split_counts(10, (0.5, 0.5))


def test_wet_stems_read_back_sum_to_prebus_and_bus_replays(corpus):
    root, songs = corpus
    for split, rendered in songs.items():
        ds = MultitrackDataset(root, split)
        assert len(ds) == 1
        song = ds[0]
        stem_sum = np.sum(np.stack([song.stems[c] for c in CLASSES]), axis=0)
        assert stem_sum.shape == rendered.prebus.shape
        assert np.max(np.abs(stem_sum - rendered.prebus)) < 1e-5
        assert np.max(np.abs(song.mixture - rendered.mixture)) < 1e-5
        # the recorded bus parameters turn the stored stems back into the stored mixture
        params = json.loads((song.path / "params.json").read_text())
        replay = replay_bus(stem_sum, params["bus"], SR)
        assert np.max(np.abs(replay - song.mixture)) < 1e-4
        # the mixture is not just the sum: the bus changed it
        assert np.max(np.abs(song.mixture - stem_sum)) > 1e-2


def test_mixture_loudness_and_peak(corpus):
    _, songs = corpus
    for rendered in songs.values():
        loud = rendered.params["loudness"]
        assert -14.5 <= loud["mixture_lufs"] <= -8.5
        assert loud["mixture_peak_db"] <= MIX_PEAK_CEILING_DB + 1e-3
        assert np.max(np.abs(rendered.mixture)) <= 1.0
        for c in CLASSES:  # wet stems leave room for PCM storage
            assert np.max(np.abs(rendered.wet[c])) < 1.0


def test_same_seed_same_audio_and_different_seed_differs():
    spec = plan_corpus(2, 2.0, seed=5)[1]
    a, b = render_song(spec), render_song(spec)
    for c in CLASSES:
        np.testing.assert_array_equal(a.wet[c], b.wet[c])
        np.testing.assert_array_equal(a.dry[c], b.dry[c])
    np.testing.assert_array_equal(a.mixture, b.mixture)
    assert a.params == b.params
    other = render_song(plan_corpus(2, 2.0, seed=6)[1])
    assert np.max(np.abs(other.mixture[:, : a.mixture.shape[1]] - a.mixture)) > 1e-2


def test_corpus_independent_of_job_count(tmp_path):
    one = synthesize_corpus(tmp_path / "j1", 3, 2.0, seed=2, jobs=1, progress=False)
    two = synthesize_corpus(tmp_path / "j2", 3, 2.0, seed=2, jobs=2, progress=False)
    assert one.sources_used == ["procedural"] and two.split_counts == one.split_counts
    for split in ("train", "valid", "test"):
        a, b = MultitrackDataset(tmp_path / "j1", split), MultitrackDataset(tmp_path / "j2", split)
        assert len(a) == len(b) == 1
        sa, sb = a[0], b[0]
        assert sa.name == sb.name
        np.testing.assert_array_equal(sa.mixture, sb.mixture)
        for c in CLASSES:
            np.testing.assert_array_equal(sa.stems[c], sb.stems[c])
    meta = json.loads((tmp_path / "j1" / "corpus.json").read_text())
    assert meta["sources_used"] == ["procedural"] and meta["n_songs"] == 3
    with pytest.raises(ConfigError, match="already exists"):
        synthesize_corpus(tmp_path / "j1", 3, 2.0, seed=2, jobs=1, progress=False)


def test_class_aware_chains_sound_like_a_mix():
    """Bass is darker than vocals and drums; vocals and bass centred; other panned; drums most transient."""
    cents = {c: [] for c in CLASSES}
    crest = {c: [] for c in CLASSES}
    side = {c: [] for c in CLASSES}
    for spec in plan_corpus(3, 4.0, seed=21):
        song = render_song(spec)
        for c in CLASSES:
            x = song.wet[c]
            cents[c].append(spectral_centroid_hz(x, SR))
            crest[c].append(crest_factor_db(x))
            left, right = np.sum(x[0].astype(np.float64) ** 2), np.sum(x[1].astype(np.float64) ** 2)
            side[c].append(abs(10 * np.log10(left / right)))  # L/R level difference, dB
        p = song.params["stems"]
        assert (
            abs(p["vocals"]["pan"]) < 0.1 and abs(p["bass"]["pan"]) < 0.1 and abs(p["other"]["pan"]) >= 0.15
        )
        assert p["bass"]["comp_ratio"] >= 3.0
    m = {c: float(np.mean(v)) for c, v in cents.items()}
    assert m["bass"] < 0.5 * m["vocals"] and m["bass"] < 0.5 * m["drums"]
    assert max(side["vocals"]) < 1.0 and max(side["bass"]) < 1.0
    assert np.mean(side["other"]) > 1.0
    assert np.mean(crest["drums"]) > np.mean(crest["bass"])


def test_params_json_records_the_chain(corpus):
    root, _ = corpus
    (song_dir,) = list_songs(root, "test")
    params = json.loads((song_dir / "params.json").read_text())
    assert params["family"] in TEST_FAMILIES and params["source"] == "procedural"
    assert params["corpus_seed"] == 11 and params["split"] == "test"
    for c in CLASSES:
        for key in ("hpf_hz", "comp_threshold_db", "comp_ratio", "gain_db", "pan", "reverb"):
            assert key in params["stems"][c]
        assert (song_dir / "dry" / f"{c}.flac").exists()
    assert {"glue_ratio", "drive_gain_db", "trim_db", "target_lufs"} <= set(params["bus"])


def test_cli_synth_stats_and_bench(tmp_path, capsys):
    out = tmp_path / "cli"
    argv = ["synth", "-o", str(out), "--songs", "3", "--seconds", "2", "--jobs", "1", "--no-progress"]
    assert data_main([*argv, "--sources", "procedural"]) == 0
    assert "sources used: procedural" in capsys.readouterr().out
    assert data_main(["stats", str(out), "--json", str(tmp_path / "stats.json")]) == 0
    text = capsys.readouterr().out
    assert "sources used: procedural" in text and "mixture" in text and "[test]" in text
    stats = json.loads((tmp_path / "stats.json").read_text())
    mix = stats["splits"]["train"]["classes"]["mixture"]
    assert -16.0 <= mix["lufs"]["mean"] <= -8.0
    assert bench_synth_main(["--songs", "2", "--seconds", "2", "--jobs", "1", "--no-progress"]) == 0
    text = capsys.readouterr().out
    assert "songs/minute" in text and "reproduce: fxmix bench synth" in text


def test_sources_resolution_names_what_is_used():
    auto = resolve_sources("auto")
    assert auto[0] == "procedural"
    assert ("soundfont" in auto) == soundfont_available()
    assert resolve_sources("procedural") == ("procedural",)
    with pytest.raises(ConfigError, match="--sources"):
        resolve_sources("fluidsynth")
    if not soundfont_available():
        with pytest.raises(ConfigError, match="tinysoundfont"):
            resolve_sources("procedural,soundfont")
    specs = plan_corpus(6, 2.0, seed=3, sources=auto)
    assert {s.source for s in specs} <= set(auto)

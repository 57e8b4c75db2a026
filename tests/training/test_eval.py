"""Evaluation harness: balance estimates (class and track level), baselines, per-family tables, cache, CLI."""

from __future__ import annotations

import json

import numpy as np
import pytest
from fxmix.training.corpus.build import build_corpus
from fxmix.training.eval_balance import (
    BALANCE_FLOOR_LU,
    Contributions,
    balance_error_lu,
    estimate_contributions,
    exact_balance_lu,
)
from fxmix.training.evaluate import BASELINES, BOUNDS, METRICS
from support.corpus import tiny_corpus


def test_contributions_recover_gains_and_balance():
    rng = np.random.default_rng(0)
    stems = {c: rng.standard_normal((2, 44100)).astype(np.float32) * 0.05 for c in ("vocals", "bass")}
    mix = 2.0 * stems["vocals"] + 0.5 * stems["bass"]
    contrib = estimate_contributions(mix, stems)
    assert np.allclose(contrib["vocals"], 2.0 * stems["vocals"], atol=1e-3)
    bal = Contributions(stems).balances([mix])[0]
    assert bal["vocals"] - bal["bass"] == pytest.approx(20 * np.log10(4.0), abs=0.05)
    assert bal == pytest.approx(exact_balance_lu({"vocals": 2.0 * stems["vocals"], "bass": 0.5 * stems["bass"]}),
                                abs=0.01)


def test_banded_balance_follows_per_class_eq():
    """A mixer that EQs each stem: per-band gains recover the class balance, one broadband gain does not."""
    import pedalboard
    from support.signals import song

    stems = song(6.0)
    chains = {
        "vocals": [pedalboard.PeakFilter(3000, 9, 1.0), pedalboard.Gain(-3)],
        "drums": [pedalboard.HighShelfFilter(6000, 8, 0.7), pedalboard.Gain(2)],
        "bass": [pedalboard.LowShelfFilter(120, -8, 0.7), pedalboard.Gain(4)],
        "other": [pedalboard.HighpassFilter(400), pedalboard.Gain(-6)],
    }
    wet = {c: pedalboard.Pedalboard(chains[c])(stems[c], 44100) for c in stems}
    mix = np.sum(list(wet.values()), axis=0)
    truth = exact_balance_lu(wet)
    banded = Contributions(stems).balances([mix])[0]
    names = list(stems)
    a = np.stack([stems[c].reshape(-1) for c in names], axis=1).astype(np.float64)
    g, *_ = np.linalg.lstsq(a, mix.reshape(-1).astype(np.float64), rcond=None)
    broadband = exact_balance_lu({c: g[i] * stems[c] for i, c in enumerate(names)})
    err_banded, err_broadband = balance_error_lu(banded, truth), balance_error_lu(broadband, truth)
    print(f"class balance error: per-band {err_banded:.3f} LU, broadband {err_broadband:.3f} LU")
    assert err_banded < 0.2
    assert err_broadband > 0.5  # what the per-band estimator is for


def test_track_balance_of_many_tracks_and_a_missing_one():
    """Twelve tracks at known gains: every track's balance within 0.05 LU; a track the mix leaves out reads
    as the floor, and the error it adds is bounded."""
    from support.signals import song

    base = song(5.0)
    tracks = {f"{c}{k}": np.roll(x, 7919 * k, axis=1) * np.float32(0.5 + 0.2 * k)
              for k in range(3) for c, x in base.items()}
    gains = {t: 10 ** (((i * 7) % 13 - 6) / 20) for i, t in enumerate(tracks)}
    mix = np.sum([gains[t] * x for t, x in tracks.items()], axis=0)
    truth = exact_balance_lu({t: gains[t] * x for t, x in tracks.items()})
    est = Contributions(tracks).balances([mix, mix - gains["bass1"] * tracks["bass1"]])
    assert max(abs(est[0][t] - truth[t]) for t in tracks) < 0.05
    assert est[1]["bass1"] == BALANCE_FLOOR_LU
    assert balance_error_lu(est[1], truth) <= BOUNDS["track_balance_err_lu"]


def test_eval_cli_prints_baselines_and_json(tmp_path_factory, tmp_path, capsys):
    from fxmix.verbs.eval import main as eval_main

    root = tiny_corpus(tmp_path_factory.getbasetemp())
    out = tmp_path / "eval.json"
    assert eval_main([str(root), "--split", "test", "--json", str(out), "--no-progress", "--jobs", "1"]) == 0
    text = capsys.readouterr().out
    for name in BASELINES[:3]:
        assert name in text
    res = json.loads(out.read_text())
    assert res["n_songs"] == 1 and res["songs"][0]["inputs"] == "dry"
    for name in BASELINES[:3]:
        assert all(np.isfinite(res["median"][name][m]) for m in METRICS if m != "track_balance_err_lu")
    # the plain sum of dry stems is far from the wet mix's loudness; the equal-loudness sum is a different mix
    assert res["mean"]["sum"]["mrstft"] != res["mean"]["equal_loudness_sum"]["mrstft"]


@pytest.fixture(scope="module")
def sessions(tmp_path_factory):
    """Two session songs (procedural and a freedroid-data module excerpt), both in the train split."""
    root = tmp_path_factory.mktemp("sessions")
    build_corpus(root, 2, 4.0, 19, families=("procedural", "human"), progress=False)
    return root


def test_eval_sessions_per_family_tracks_and_cache(sessions, tmp_path, capsys):
    from fxmix.verbs.eval import main as eval_main

    out, cache = tmp_path / "eval.json", tmp_path / "cache"
    argv = [str(sessions), "--split", "train", "--no-progress", "--jobs", "2", "--cache", str(cache)]
    assert eval_main([*argv, "--json", str(out)]) == 0
    text = capsys.readouterr().out
    assert "family human" in text and "family procedural" in text and "track" in text
    res = json.loads(out.read_text())
    assert set(res["families"]) == {"human", "procedural"} and res["methods"][:4] == list(BASELINES)
    for row in res["songs"]:
        assert row["inputs"] == "dry" and row["n_tracks"] >= 2
        assert len(row["target_track_balance"]) >= 2
        for name, m in row["methods"].items():
            assert all(np.isfinite(m[k]) and m[k] <= BOUNDS[k] for k in METRICS), (row["song"], name)
            assert set(m["track_balance"]) <= set(row["target_track_balance"])
    assert not res["bound_violations"]
    manifest = json.loads((cache / "manifest.json").read_text())
    assert len(manifest["songs"]) == 2
    # the second run reads the normalized stems from the cache and gives the same figures
    stamp = {p: p.stat().st_mtime_ns for p in cache.rglob("*.npy")}
    assert eval_main([*argv, "--json", str(tmp_path / "again.json")]) == 0
    again = json.loads((tmp_path / "again.json").read_text())
    assert {p: p.stat().st_mtime_ns for p in cache.rglob("*.npy")} == stamp
    assert again["mean"]["normalized_sum"] == pytest.approx(res["mean"]["normalized_sum"], rel=1e-6)


def test_a_method_that_reproduces_the_target_scores_zero_balance_error(sessions):
    """Track balance of the target and of a method are read by the same estimate: the target itself, used as
    a method's mix, has zero track-level error."""
    from fxmix.training.eval_songs import load_eval_song

    song = load_eval_song(next((sessions / "train").iterdir()))
    est = Contributions({t.name: t.audio for t in song.tracks}).balances([song.target, song.target.copy()])
    assert balance_error_lu(est[1], est[0]) == pytest.approx(0.0, abs=1e-9)


def test_eval_runs_a_console_mixer_on_track_normalized_tracks(sessions, tmp_path):
    """A console mixer is evaluated from the songs' dry tracks, each normalized to its class target, and its sum
    mastered as `fxmix mix` does; a neutral (untrained) console's mix is then the master of the sum of those
    normalized tracks (its compressors at their neutral settings and its flat FIR EQ barely act: the difference
    stays 30 dB under the mix, where a wrong profile or a bus instead of per-track normalization would differ by
    whole dB). `--no-master` adds the same decisions' bare sum as a method of its own, on the same songs."""
    import torch
    from fxmix.dsp.chain import normalize_stem
    from fxmix.dsp.constants import SAMPLE_RATE
    from fxmix.dsp.profile import load_profile
    from fxmix.dsp.stages.master import default_plan, master
    from fxmix.model.mixer import ConsoleMixer
    from fxmix.model.states import save_model
    from fxmix.training.eval_metrics import loudness
    from fxmix.training.eval_songs import load_eval_song
    from fxmix.training.evaluate import NO_MASTER, _console_mix, _console_mixes, _load_model

    from fxmix.verbs.eval import main as eval_main

    torch.manual_seed(0)
    folder = save_model(tmp_path / "neutral", ConsoleMixer().eval())
    runner = _load_model(str(folder))
    song = load_eval_song(next((sessions / "train").iterdir()))
    prof = load_profile("musdb18-reference")
    mix, bare = _console_mixes(song, runner, prof, True)
    summed = sum(np.nan_to_num(normalize_stem(t.audio, SAMPLE_RATE, t.cls, prof).audio) for t in song.tracks)
    expected = master(summed, default_plan(), SAMPLE_RATE)
    assert np.sqrt(np.mean((mix - expected) ** 2)) < 3e-2 * np.sqrt(np.mean(expected**2))
    assert np.sqrt(np.mean((bare - summed) ** 2)) < 3e-2 * np.sqrt(np.mean(summed**2))
    # the mastered mix of the pair is the one `fxmix mix` makes (one decision, mastered the same way)
    assert np.max(np.abs(mix - _console_mix(song, runner, prof))) <= 1e-6
    assert loudness(bare) < loudness(mix) - 3  # the master's gain to its loudness target
    out = tmp_path / "eval.json"
    assert eval_main([str(sessions), "--split", "train", "--models", str(folder), "--no-master", "--jobs", "1",
                      "--no-progress", "--json", str(out)]) == 0
    res = json.loads(out.read_text())
    name = str(folder)
    assert res["methods"][-2:] == [name, name + NO_MASTER]
    for row in res["songs"]:
        for method in (name, name + NO_MASTER):
            m = row["methods"][method]
            assert all(np.isfinite(m[k]) and m[k] <= BOUNDS[k] for k in METRICS), (row["song"], method)
            assert set(m["track_balance"]) == set(row["target_track_balance"])
        # the master moves the level (its decisions are the same): the two rows differ in loudness
        assert row["methods"][name]["loudness_err_lu"] != row["methods"][name + NO_MASTER]["loudness_err_lu"]

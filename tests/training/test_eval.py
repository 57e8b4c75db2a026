"""Evaluation harness: baselines on a tiny synthetic corpus, contribution estimates, CLI table + JSON."""

from __future__ import annotations

import json

import numpy as np
import pytest
from fxmix.training.evaluate import BASELINES, METRICS, class_balance_lu, estimate_contributions
from support.corpus import tiny_corpus  # noqa: E402


def test_contributions_recover_gains_and_balance():
    rng = np.random.default_rng(0)
    stems = {c: rng.standard_normal((2, 44100)).astype(np.float32) * 0.05 for c in ("vocals", "bass")}
    mix = 2.0 * stems["vocals"] + 0.5 * stems["bass"]
    contrib = estimate_contributions(mix, stems)
    assert np.allclose(contrib["vocals"], 2.0 * stems["vocals"], atol=1e-3)
    bal = class_balance_lu(contrib)
    assert bal["vocals"] - bal["bass"] == pytest.approx(20 * np.log10(4.0), abs=0.2)


def test_banded_contributions_follow_per_class_eq():
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
    truth = class_balance_lu(wet)
    banded = class_balance_lu(estimate_contributions(mix, stems))
    names = list(stems)
    a = np.stack([stems[c].reshape(-1) for c in names], axis=1).astype(np.float64)
    g, *_ = np.linalg.lstsq(a, mix.reshape(-1).astype(np.float64), rcond=None)
    broadband = class_balance_lu({c: g[i] * stems[c] for i, c in enumerate(names)})
    err_banded = max(abs(banded[c] - truth[c]) for c in names)
    err_broadband = max(abs(broadband[c] - truth[c]) for c in names)
    print(f"class balance error: per-band {err_banded:.3f} LU, broadband {err_broadband:.3f} LU")
    assert err_banded < 0.2
    assert err_broadband > 1.0  # what the per-band estimator is for


def test_eval_cli_prints_baselines_and_json(tmp_path_factory, tmp_path, capsys):
    from fxmix.verbs.eval import main as eval_main

    root = tiny_corpus(tmp_path_factory.getbasetemp())
    out = tmp_path / "eval.json"
    assert eval_main([str(root), "--split", "test", "--json", str(out), "--no-progress"]) == 0
    text = capsys.readouterr().out
    for name in BASELINES:
        assert name in text
    res = json.loads(out.read_text())
    assert res["n_songs"] == 1 and res["songs"][0]["inputs"] == "dry"
    for name in BASELINES:
        assert all(np.isfinite(res["mean"][name][m]) for m in METRICS)
    # the plain sum of dry stems is far from the wet mix's loudness; the equal-loudness sum is a different mix
    assert res["mean"]["sum"]["mrstft"] != res["mean"]["equal_loudness_sum"]["mrstft"]

"""Evaluation harness: baselines on a tiny synthetic corpus, contribution estimates, CLI table + JSON."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
from fxmix.training.evaluate import BASELINES, METRICS, class_balance_lu, estimate_contributions

sys.path.insert(0, str(Path(__file__).parent))
from train_corpus import tiny_corpus  # noqa: E402


def test_contributions_recover_gains_and_balance():
    rng = np.random.default_rng(0)
    stems = {c: rng.standard_normal((2, 44100)).astype(np.float32) * 0.05 for c in ("vocals", "bass")}
    mix = 2.0 * stems["vocals"] + 0.5 * stems["bass"]
    contrib = estimate_contributions(mix, stems)
    assert np.allclose(contrib["vocals"], 2.0 * stems["vocals"], atol=1e-3)
    bal = class_balance_lu(contrib)
    assert bal["vocals"] - bal["bass"] == pytest.approx(20 * np.log10(4.0), abs=0.2)


def test_eval_cli_prints_baselines_and_json(tmp_path_factory, tmp_path, capsys):
    from fxmix.training.cli_eval import eval_main

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

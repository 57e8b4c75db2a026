"""Listening-test analysis on simulated listeners: a known effect is found, no effect is not, a listener who
rates at random is screened out; Holm's correction; the CLI's table, JSON and box plots."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from fxmix.training.listening.analysis import analyze, holm
from fxmix.training.listening.build import build_test, read_key
from fxmix.training.listening.stimuli import TARGET_LABEL
from support.listening import make_saved_audio

BETTER = "zebramix"


@pytest.fixture(scope="module")
def test_dir(tmp_path_factory) -> Path:
    base = tmp_path_factory.mktemp("listen_analysis")
    src = make_saved_audio(base / "saved", n_songs=3, seconds=0.6)
    return build_test(src, base / "test", excerpt_s=0.5, seed=1, progress=False)


def simulate(
    test_dir: Path, folder: Path, seed: int, effect: float, n: int = 12, random_listener: bool = False
):
    """Results files of ``n`` listeners: each hears a method-and-song quality (plus ``effect`` points for
    BETTER), with a personal offset and small noise per presentation, so the repeated trial agrees with its
    original within a few points; an optional extra listener rates at random."""
    key = read_key(test_dir / "key.json")
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    for who in range(n + int(random_listener)):
        erratic = who == n
        offset = rng.normal(0, 8)
        heard = {}  # (song, method) -> the listener's lasting impression
        trials = []
        for t in key["trials"]:
            ratings = {}
            for sid, s in t["stimuli"].items():
                m = s["method"]
                base = heard.setdefault(
                    (t["song"], m), 50 + offset + rng.normal(0, 8) + effect * (m == BETTER)
                )
                ratings[sid] = {
                    a: float(
                        np.clip(round(rng.uniform(0, 100) if erratic else base + rng.normal(0, 3)), 0, 100)
                    )
                    for a in key["attributes"]
                }
            trials.append(
                {
                    "id": t["id"],
                    "kind": t["kind"],
                    "ratings": ratings,
                    **({"repeat_of": t["repeat_of"]} if "repeat_of" in t else {}),
                }
            )
        res = {
            "format": "fxmix-listening-results",
            "version": 1,
            "test_id": key["test_id"],
            "participant": f"L{who:02d}",
            "trials": trials,
        }
        (folder / f"L{who:02d}-1.json").write_text(json.dumps(res))
    return folder


def test_known_effect_is_significant(test_dir, tmp_path):
    res = analyze([simulate(test_dir, tmp_path / "r", seed=0, effect=20.0)], test_dir / "key.json")
    assert len(res["listeners"]) == 12 and not res["dropped"]
    for a, st in res["attributes"].items():
        assert st["friedman"]["significant"], a
        means = {m: d["mean"] for m, d in st["methods"].items()}
        assert means[BETTER] - max(v for m, v in means.items() if m != BETTER) > 10
        for p in st["pairs"]:
            involves = BETTER in (p["a"], p["b"])
            assert p["significant"] == involves, (a, p)
        lo, hi = st["methods"][BETTER]["ci95"]
        assert lo < means[BETTER] < hi


def test_no_effect_is_not_significant(test_dir, tmp_path):
    res = analyze([simulate(test_dir, tmp_path / "r", seed=1, effect=0.0)], test_dir / "key.json")
    for a, st in res["attributes"].items():
        assert st["friedman"]["p"] > 0.05, a
        assert not any(p["significant"] for p in st["pairs"]), a


def test_random_listener_is_screened_out(test_dir, tmp_path):
    folder = simulate(test_dir, test_dir / "results", seed=2, effect=20.0, random_listener=True)
    res = analyze([folder])  # the key is found next to the results
    assert [d["participant"] for d in res["dropped"]] == ["L12"]
    assert res["dropped"][0]["repeat_diff"] > 20
    assert max(w["repeat_diff"] for w in res["listeners"]) < 10
    for f in folder.glob("*.json"):
        f.unlink()


def test_holm_matches_hand_computation():
    assert holm([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])
    assert holm([0.2, 0.001]) == pytest.approx([0.2, 0.002])


def test_analyze_cli_table_json_plot(test_dir, tmp_path, capsys):
    from fxmix.dsp.errors import ConfigError

    from fxmix.verbs.listen import main

    folder = simulate(test_dir, tmp_path / "r", seed=3, effect=20.0)
    png, out = tmp_path / "box.png", tmp_path / "a.json"
    assert (
        main(
            [
                "analyze",
                str(folder),
                "--key",
                str(test_dir / "key.json"),
                "--json",
                str(out),
                "--plot",
                "--plot-file",
                str(png),
            ]
        )
        == 0
    )
    text = capsys.readouterr().out
    assert "Friedman" in text and "Holm" in text and BETTER in text and TARGET_LABEL in text
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000
    assert json.loads(out.read_text())["methods"]
    other = json.loads((folder / "L00-1.json").read_text())
    other["test_id"] = "0000000000000000"
    (folder / "L00-1.json").write_text(json.dumps(other))
    with pytest.raises(ConfigError, match="L00-1.json.*another|L00-1.json: results of test"):
        analyze([folder], test_dir / "key.json")

"""Listening-test build: excerpt choice, loudness matching, anonymity, determinism, the eval --save-audio layout."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
from fxmix.dsp.audio import read_audio
from fxmix.dsp.errors import ConfigError
from fxmix.dsp.features import integrated_loudness
from fxmix.dsp.stages.loudness import true_peak_db
from fxmix.training.listening.build import build_test, read_key
from fxmix.training.listening.stimuli import (
    LISTENING_LUFS,
    LOUDNESS_TOLERANCE_LU,
    TARGET_LABEL,
    TRUE_PEAK_CEILING_DB,
    pick_excerpt,
)
from support.corpus import tiny_corpus
from support.listening import METHODS, make_saved_audio, stimulus_audio

SR = 44100


def test_excerpt_is_where_most_classes_play():
    n = 8 * SR
    t = np.arange(n) / SR
    tone = (0.1 * np.sin(2 * np.pi * 220 * t)).astype(np.float32)
    gate = {"vocals": (0, 8), "drums": (4, 7), "bass": (4.5, 8), "other": (1, 2)}
    stems = {
        c: np.stack([tone, tone]) * ((t >= a) & (t < b)).astype(np.float32) for c, (a, b) in gate.items()
    }
    start, stop = pick_excerpt(n, SR, 2.0, stems)
    assert stop - start == 2 * SR
    assert 4.5 * SR <= start and stop <= 7 * SR  # the only stretch where three classes play
    assert pick_excerpt(SR, SR, 2.0, stems) == (0, SR)  # a shorter song is used whole


def test_build_levels_anonymity_and_determinism(tmp_path):
    src = make_saved_audio(tmp_path / "saved")
    a, b, c = (
        build_test(src, tmp_path / n, excerpt_s=1.5, seed=s, progress=False)
        for n, s in (("a", 5), ("b", 5), ("c", 6))
    )
    files = sorted(p.relative_to(a) for p in a.rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(b) for p in b.rglob("*") if p.is_file())
    assert all((a / f).read_bytes() == (b / f).read_bytes() for f in files), "same seed, different bytes"
    assert (a / "page" / "test.js").read_bytes() != (c / "page" / "test.js").read_bytes()

    key = read_key(a / "key.json")
    kinds = [t["kind"] for t in key["trials"]]
    assert kinds == ["training", "trial", "trial", "trial", "repeat"]
    assert {t["song"] for t in key["trials"]} == {"song0", "song1", "song2"}
    names = [*METHODS, TARGET_LABEL]
    orders = {tuple(s["method"] for s in t["stimuli"].values()) for t in key["trials"]}
    assert len(orders) > 1, "the stimuli are not shuffled per trial"
    page = a / "page"
    leak = re.compile("|".join(rf"(?<![A-Za-z0-9]){re.escape(m)}(?![A-Za-z0-9])" for m in names), re.I)
    for f in page.rglob("*"):
        assert not leak.search(f.name), f
        if f.suffix in (".html", ".js"):
            assert not leak.search(f.read_text()), f"a method name in {f}"
    for t in key["trials"]:
        assert sorted(s["method"] for s in t["stimuli"].values()) == sorted(names)
        for sid, s in t["stimuli"].items():
            x = stimulus_audio(page / "audio" / f"{sid}.js", tmp_path / "x.flac")
            assert x.shape[1] == int(1.5 * SR)
            lufs = integrated_loudness(x, SR)
            assert abs(lufs - LISTENING_LUFS) <= LOUDNESS_TOLERANCE_LU, (sid, s["method"], lufs)
            assert true_peak_db(x) <= TRUE_PEAK_CEILING_DB + 0.1


def test_true_peak_safe_level_is_shared(tmp_path):
    """A stimulus too spiky for -23 LUFS under the ceiling lowers the level of its trial's stimuli together."""
    src = make_saved_audio(tmp_path / "saved", n_songs=1, seconds=2.0, spiky=True)
    out = build_test(src, tmp_path / "t", excerpt_s=2.0, seed=0, progress=False)
    key = read_key(out / "key.json")
    trial = key["trials"][1]
    assert trial["level_lufs"] < LISTENING_LUFS - 1.0
    for sid in trial["stimuli"]:
        x = stimulus_audio(out / "page" / "audio" / f"{sid}.js", tmp_path / "x.flac")
        assert abs(integrated_loudness(x, SR) - trial["level_lufs"]) <= LOUDNESS_TOLERANCE_LU
        assert true_peak_db(x) <= TRUE_PEAK_CEILING_DB + 0.1


def test_build_refuses_bad_requests(tmp_path):
    src = make_saved_audio(tmp_path / "saved", n_songs=1, seconds=1.0)
    with pytest.raises(ConfigError, match="song0.*nosuchmix"):
        build_test(src, tmp_path / "t", methods=["zebramix", "nosuchmix"], progress=False)
    with pytest.raises(ConfigError, match="overlaps"):
        build_test(src, src / "test", progress=False)
    out = build_test(src, tmp_path / "t", excerpt_s=1.0, progress=False)
    (out / "results" / "anna-1.json").write_text("{}")
    with pytest.raises(ConfigError, match="results"):
        build_test(src, out, excerpt_s=1.0, progress=False)
    assert (out / "results" / "anna-1.json").is_file()


def test_eval_save_audio_keeps_each_method_target_and_stems(tmp_path_factory, tmp_path):
    from fxmix.verbs.eval import main as eval_main

    root = tiny_corpus(tmp_path_factory.getbasetemp())
    with pytest.raises(ConfigError, match="inside the dataset"):
        eval_main([str(root), "--split", "test", "--save-audio", str(root / "test"), "--no-progress"])
    out = tmp_path / "saved"
    assert eval_main([str(root), "--split", "test", "--save-audio", str(out), "--no-progress"]) == 0
    (song,) = [p for p in (root / "test").iterdir() if p.is_dir()]
    meta = json.loads((out / song.name / "stimuli.json").read_text())
    assert set(meta["methods"]) == {TARGET_LABEL, "sum", "equal_loudness_sum", "normalized_sum"}
    target = read_audio(out / song.name / meta["methods"][TARGET_LABEL]).audio
    mixture = read_audio(next(song.glob("mixture.*"))).audio
    assert np.array_equal(target, mixture[:, : target.shape[1]]) and target.shape == mixture.shape
    dry = {c: read_audio(p).audio for p in (song / "dry").iterdir() if (c := p.stem)}
    plain = read_audio(out / song.name / meta["methods"]["sum"]).audio
    assert np.allclose(plain, np.sum(list(dry.values()), axis=0)[:, : plain.shape[1]], atol=1e-6)
    assert set(meta["stems"]) <= {"vocals", "drums", "bass", "other"} and meta["stems"]
    from fxmix.verbs.listen import main as listen_main

    test = tmp_path / "test"
    assert listen_main(["build", str(out), "-o", str(test), "--excerpt-s", "1", "--no-progress"]) == 0
    assert len(list((test / "page" / "audio").glob("*.js"))) == 3 * 4  # training, 1 song, repeat: 4 each

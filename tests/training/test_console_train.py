"""Console mixer training: a session cached from a real corpus v2 song folder (real normalization), the
parameter targets, the loss terms' zero points, a run with checkpoints, resume and the log, and the eval."""

from __future__ import annotations

import csv
import dataclasses
import json
import math
import shutil

import numpy as np
import pyloudnorm
import pytest
import torch
from fxmix.dsp.audio import read_audio, write_audio
from fxmix.dsp.bands import band_centers_hz
from fxmix.dsp.errors import ConfigError
from fxmix.dsp.profile import load_profile
from fxmix.model.config import MixerConfig
from fxmix.model.mixer import colour_of
from fxmix.model.states import load_model
from fxmix.training.console_data import crop_batch, load_sessions, prepare_song
from fxmix.training.console_train import (
    ConsoleTrainConfig,
    _resumed_best,
    balance_error,
    console_config_path,
    evaluate_console,
    train_console,
)
from support import signals

SR = signals.SR
CLASSES = ("vocals", "bass", "drums")


def _song_folder(root, seconds: float = 1.5):
    """A corpus v2 session folder: dry tracks, wet tracks (the dry ones re-levelled and panned), song.json."""
    s = signals.song(seconds)
    folder = root / "train" / "song-a"
    tracks = []
    for i, c in enumerate(CLASSES):
        name = f"{i:02d}_{c}"
        dry = (0.2 * s[c]).astype(np.float32)
        wet = dry * np.array([[0.5], [0.9]], np.float32) * (0.5 + 0.3 * i)
        write_audio(folder / "tracks" / f"{name}.dry.flac", dry, SR, subtype="PCM_24")
        write_audio(folder / "tracks" / f"{name}.wet.flac", wet, SR, subtype="PCM_24")
        tracks.append({"name": name, "class": c, "dry": f"tracks/{name}.dry.flac", "wet": f"tracks/{name}.wet.flac",
                       "decisions": {"target_lufs": -20.0 - 2 * i, "pan": 0.25 * i}})
    song = {"corpus_version": 2, "name": "song-a", "family": "procedural", "split": "train", "index": 0,
            "tracks": tracks}
    (folder / "song.json").write_text(json.dumps(song), encoding="utf-8")
    return folder


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    root = tmp_path_factory.mktemp("corpus")
    out = root / "cache"
    prepare_song(_song_folder(root), out / "train" / "song-a", load_profile("musdb18-reference"))
    shutil.copytree(out / "train" / "song-a", out / "valid" / "song-a")
    return out


def test_cache_holds_normalized_tracks_and_gain_targets(cache):
    (s,) = load_sessions(cache, "train")
    assert s.norm.shape == s.wet.shape == (3, 2, int(1.5 * SR)) and s.norm.dtype == np.float16
    meter = pyloudnorm.Meter(SR)
    for k, c in enumerate(CLASSES):
        level = meter.integrated_loudness(np.asarray(s.norm[k], np.float64).T)
        target = load_profile("musdb18-reference").targets_for(c).loudness_lufs
        assert abs(level - target) < 1.0  # normalized to the class target
        assert abs(s.meta["gain_db"][k] - (-20.0 - 2 * k - level)) < 0.01
    assert s.meta["pan"] == [0.0, 0.25, 0.5]


def test_balance_error_is_zero_for_the_target_itself(cache):
    (s,) = load_sessions(cache, "train")
    b = crop_batch([s, s], np.random.default_rng(0), 22050)
    wet, mask = torch.from_numpy(b["wet"]), torch.from_numpy(b["mask"])
    assert float(balance_error(wet, wet.sum(dim=1), wet, mask).abs().max()) < 1e-3
    louder = wet * torch.tensor([2.0, 1.0, 1.0])[None, :, None, None]
    assert float(balance_error(louder, louder.sum(dim=1), wet, mask).min()) > 0.5


def test_run_checkpoints_resumes_logs_and_evaluates(cache, tmp_path):
    net = MixerConfig(conv_channels=8, d_model=16, n_heads=2, n_layers=1, ff_size=16)
    cfg = ConsoleTrainConfig(cache=str(cache), out_dir=str(tmp_path / "run"), steps=4, batch=1, crop_s=0.5,
                             valid_every=2, checkpoint_every=2, lr=1e-3, net=net)
    res = train_console(cfg, progress=False, stop_after=2)
    assert res["step"] == 2
    with pytest.raises(ConfigError, match="resume"):
        train_console(cfg, progress=False)
    # resumed with a decaying rate: the config's rate acts, not the one the checkpoint's optimizer holds
    cfg = dataclasses.replace(cfg, lr_final_ratio=0.1, decay_from=2)
    res = train_console(cfg, resume=True, progress=False)
    assert res["step"] == 4 and np.isfinite(res["best_valid"])
    rows = list(csv.DictReader(open(tmp_path / "run" / "log.csv", encoding="utf-8")))
    assert [int(r["step"]) for r in rows] == [1, 2, 3, 4]
    assert [float(r["lr"]) for r in rows] == pytest.approx([1e-3, 1e-3, 1e-3, 0.55e-3])
    assert all(np.isfinite(float(r["loss"])) for r in rows) and rows[-1]["valid_loss"]
    model, sidecar = load_model(tmp_path / "run" / "best")
    assert sidecar["arch"] == "console" and sidecar["training_step"] in (2, 4)
    report = evaluate_console(tmp_path / "run" / "best", cache, "valid")
    fam = report["families"]["all"]
    assert set(fam) == {"console", "normalized_sum"}
    assert all(np.isfinite(v["mrstft"]) and v["balance_db"] >= 0 for v in fam.values())


def test_a_resume_on_other_validation_sessions_or_loss_weights_does_not_compare_their_losses(cache, tmp_path):
    """A rebuilt corpus validates on other sessions, and a fine-tune with other loss weights scores on another
    scale: in both cases the resumed run's best loss is not the one to beat."""
    net = MixerConfig(conv_channels=8, d_model=16, n_heads=2, n_layers=1, ff_size=16)
    cfg = ConsoleTrainConfig(cache=str(cache), out_dir=str(tmp_path / "run"), steps=2, batch=1, crop_s=0.5,
                             valid_every=2, checkpoint_every=2, lr=1e-3, net=net)
    train_console(cfg, progress=False)
    state = json.loads((tmp_path / "run" / "checkpoints" / "step-0000002" / "state.json").read_text())
    assert state["valid_sessions"] == ["song-a"]
    valid = load_sessions(cache, "valid")
    assert _resumed_best(state, valid, cfg) == state["best_valid"]
    assert _resumed_best(dict(state, valid_sessions=["song-b"]), valid, cfg) == math.inf
    assert _resumed_best({k: v for k, v in state.items() if k != "valid_sessions"}, valid, cfg) == math.inf
    assert _resumed_best(state, valid, dataclasses.replace(cfg, w_balance=3.0)) == math.inf
    assert _resumed_best(None, valid, cfg) == math.inf


def test_console_configs_are_recognised(tmp_path):
    assert console_config_path("console-small") is not None
    assert console_config_path("tiny-cpu") is None
    bad = tmp_path / "c.toml"
    bad.write_text('kind = "console"\n[train]\nstepz = 3\n', encoding="utf-8")
    with pytest.raises(ConfigError, match="stepz"):
        ConsoleTrainConfig.from_toml(bad)


def test_cache_holds_each_tracks_colour_and_a_colour_run_starts_from_a_colourless_one(cache, tmp_path):
    """The cache's colour is colour_of(dry, normalized) per track; a run whose network reads it can start from a
    saved colourless mixer (init_from) and then trains."""
    (s,) = load_sessions(cache, "train")
    assert s.colour.shape == (3, len(band_centers_hz())) and np.isfinite(s.colour).all()
    dry = read_audio(cache.parent / "train" / "song-a" / "tracks" / "00_vocals.dry.flac").audio
    ref = colour_of(torch.from_numpy(dry), torch.from_numpy(np.asarray(s.norm[0], np.float32)), MixerConfig())
    np.testing.assert_allclose(s.colour[0], ref.numpy(), atol=2e-3)  # the cache's norm is float16
    b = crop_batch([s], np.random.default_rng(0), 22050)
    np.testing.assert_array_equal(b["colour"][0], s.colour)
    net = MixerConfig(conv_channels=8, d_model=16, n_heads=2, n_layers=1, ff_size=16)
    base = ConsoleTrainConfig(cache=str(cache), out_dir=str(tmp_path / "plain"), steps=2, batch=1, crop_s=0.5,
                              valid_every=2, checkpoint_every=2, lr=1e-3, net=net)
    train_console(base, progress=False)
    cfg = dataclasses.replace(base, out_dir=str(tmp_path / "colour"), init_from=str(tmp_path / "plain" / "best"),
                              net=dataclasses.replace(net, colour=True))
    assert train_console(cfg, progress=False)["step"] == 2
    model, _ = load_model(tmp_path / "colour" / "best")
    assert model.config.colour and model.encoder[0].in_channels == 3 * len(band_centers_hz())

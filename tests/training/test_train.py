"""Training: config, tiny end-to-end run (loss falls), reproducibility, kill + resume, 2-rank gloo DDP, formats."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch
from fxmix.dsp.errors import ConfigError
from fxmix.training.config import load_train_config, parse_override
from fxmix.training.train import CropSampler, read_csv_log, train
from safetensors.torch import load_file
from support.corpus import tiny_config_text, tiny_corpus  # noqa: E402


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return tiny_corpus(tmp_path_factory.getbasetemp())


def _cfg(tmp_path, corpus, name="run", overrides=(), **train_kw):
    path = tmp_path / f"{name}.toml"
    cache = corpus.parent / "fx_tiny_cache"
    path.write_text(tiny_config_text(corpus, cache, tmp_path / name, **train_kw))
    return path, load_train_config(path, overrides)


def test_config_overrides_and_errors(tmp_path, corpus):
    path, cfg = _cfg(tmp_path, corpus, overrides=["train.steps=7", "model.overrides.n_filters=8"])
    assert cfg.steps == 7 and cfg.model_overrides == {"n_filters": 8}
    assert parse_override("data.root=/x/y") == (["data", "root"], "/x/y")
    with pytest.raises(ConfigError, match="train.stepz"):
        load_train_config(path, ["train.stepz=3"])
    with pytest.raises(ConfigError, match="batch_size"):
        load_train_config(path, ["train.batch_size=0"])


def test_crop_sampler_deterministic_and_swaps(tmp_path, corpus):
    from fxmix.training.preprocess import CachedSplit, preprocess

    cache = corpus.parent / "fx_tiny_cache"
    preprocess(corpus, cache, profile="synthetic-v1", input_source="dry", progress=False)
    split = CachedSplit(cache, "train")
    a = CropSampler(split, 4410, seed=3, swap_prob=1.0, gain_db=0.0)
    b = CropSampler(split, 4410, seed=3, swap_prob=0.0, gain_db=0.0)
    xa, ya = a.batch(5, 0, 1, 2)
    xb, yb = b.batch(5, 0, 1, 2)
    assert torch.equal(xa, xb.flip(2)) and torch.equal(ya, yb.flip(1))  # a real L/R swap of inputs and target
    assert torch.equal(a.batch(5, 0, 1, 2)[0], xa)  # same step -> same batch
    assert not torch.equal(a.batch(5, 1, 2, 2)[0], xa)  # another rank draws other items


def test_tiny_training_loss_falls_reproducible_and_formats(tmp_path, corpus):
    _, cfg = _cfg(tmp_path, corpus, "a", steps=24, steps_per_epoch=12)
    t0 = time.perf_counter()
    res = train(cfg, progress=False)
    assert time.perf_counter() - t0 < 120
    rows = read_csv_log(tmp_path / "a" / "train_log.csv")
    losses = [r["loss"] for r in rows]
    assert np.mean(losses[-3:]) < 0.9 * np.mean(losses[:3]), losses
    valid = read_csv_log(tmp_path / "a" / "valid_log.csv")
    assert [int(r["step"]) for r in valid] == [12, 24]
    # checkpoint = safetensors model + optimizer state + JSON; loads with the safe loaders
    ckpt = (
        tmp_path
        / "a"
        / "checkpoints"
        / json.loads((tmp_path / "a/checkpoints/latest.json").read_text())["path"]
    )
    assert set(load_file(str(ckpt / "optimizer.safetensors"))) >= {"rng.torch_cpu"}
    from fxmix.model.states import load_model

    model, sidecar = load_model(tmp_path / "a" / "final")
    assert sidecar["training"]["input_source"] == "dry" and sidecar["training"]["step"] == 24
    for k, v in model.state_dict().items():
        assert torch.equal(v, res["model"].state_dict()[k])
    from fxmix.training.tfevents import read_scalars

    (events,) = list((tmp_path / "a" / "tb").glob("events.out.tfevents.*"))
    tags = {t for t, _, _ in read_scalars(events)}
    assert {"train/loss", "valid/loss"} <= tags
    # the same seed reproduces the run on CPU (a shorter run is a prefix of the longer one's log)
    _, cfg_b = _cfg(tmp_path, corpus, "b", steps=24, steps_per_epoch=12)
    res_b = train(cfg_b, progress=False, stop_after=6)
    rows_b = read_csv_log(tmp_path / "b" / "train_log.csv")
    assert [r["loss"] for r in rows_b] == pytest.approx(losses[: len(rows_b)], rel=1e-5)
    assert res_b["step"] == 6
    with pytest.raises(ConfigError, match="--resume"):
        train(cfg_b, progress=False)


def test_kill_and_resume_loses_at_most_checkpoint_every(tmp_path, corpus):
    path, cfg = _cfg(tmp_path, corpus, "k", steps=30, checkpoint_every=5, log_every=1, steps_per_epoch=100)
    train(cfg, progress=False, stop_after=0)  # preprocess once outside the timed subprocess
    (tmp_path / "k").rename(tmp_path / "k0")
    cmd = [sys.executable, "-m", "fxmix.verbs.train", "--config", str(path), "--no-progress"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    latest = tmp_path / "k" / "checkpoints" / "latest.json"
    deadline = time.time() + 90
    while time.time() < deadline and not (latest.is_file() and json.loads(latest.read_text())["step"] >= 10):
        time.sleep(0.2)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    saved = json.loads(latest.read_text())["step"]
    logged = max(int(r["step"]) for r in read_csv_log(tmp_path / "k" / "train_log.csv"))
    assert saved >= 10 and logged - saved <= cfg.checkpoint_every
    res = train(cfg, resume=True, progress=False)
    assert res["step"] == 30
    steps = [int(r["step"]) for r in read_csv_log(tmp_path / "k" / "train_log.csv")]
    assert steps == list(range(1, 31))  # rows the kill lost were dropped and re-done exactly once


def _ddp_worker(rank: int, cfg_path: str, port: int, out: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), WORLD_SIZE="2", RANK=str(rank))
    os.environ["LOCAL_RANK"] = str(rank)
    torch.set_num_threads(1)
    cfg = load_train_config(cfg_path, [f"train.out_dir={out!r}"])
    res = train(cfg, progress=False)
    from safetensors.torch import save_file

    save_file(
        {k: v.contiguous() for k, v in res["model"].state_dict().items()}, f"{out}/rank{rank}.safetensors"
    )
    torch.distributed.destroy_process_group()


def test_ddp_gloo_two_ranks_hold_identical_weights(tmp_path, corpus):
    import socket

    path, cfg = _cfg(tmp_path, corpus, "d", steps=1, checkpoint_every=1, steps_per_epoch=1)
    train(cfg, progress=False, stop_after=0)  # build the cache before the ranks start
    out = tmp_path / "ddp"
    out.mkdir()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    torch.multiprocessing.spawn(_ddp_worker, args=(str(path), port, str(out)), nprocs=2, join=True)
    w0, w1 = load_file(str(out / "rank0.safetensors")), load_file(str(out / "rank1.safetensors"))
    from fxmix.training.config import build_network

    torch.manual_seed(cfg.seed)
    init = build_network(cfg)[0].state_dict()
    assert all(torch.equal(w0[k], w1[k]) for k in w0)
    assert any(not torch.equal(w0[k], init[k]) for k in w0)  # the step did change the weights


def test_warm_start_adds_faders_and_rejects_other_shapes(tmp_path, corpus):
    from fxmix.model.states import load_model
    from fxmix.training.config import build_network
    from fxmix.training.train import warm_start

    _, cfg0 = _cfg(tmp_path, corpus, "w0", steps=4, steps_per_epoch=4)
    train(cfg0, progress=False)
    base, _ = load_model(tmp_path / "w0" / "final")
    _, cfg1 = _cfg(
        tmp_path,
        corpus,
        "w1",
        overrides=[
            "model.overrides.stem_faders=true",
            f"train.init_from='{tmp_path / 'w0' / 'final'}'",
            'train.train_only=["faders."]',
        ],
        steps=6,
        steps_per_epoch=6,
    )
    model, _, _ = build_network(cfg1)
    assert warm_start(model, cfg1.init_from) == ["faders.log10_gain"]
    for k, v in base.state_dict().items():
        assert torch.equal(model.state_dict()[k], v)
    res = train(cfg1, progress=False)  # only the faders are trained (train_only)
    gains_db = res["model"].faders.gains_db()
    assert gains_db.shape == (4,) and float(gains_db.abs().max()) > 0.0
    for k, v in base.state_dict().items():
        assert torch.equal(res["model"].state_dict()[k], v), k
    _, cfg2 = _cfg(tmp_path, corpus, "w2", overrides=["model.overrides.n_filters=8"])
    other, _, _ = build_network(cfg2)
    with pytest.raises(ConfigError, match="shapes differ"):
        warm_start(other, tmp_path / "w0" / "final")


def test_balance_weight_adds_the_class_balance_term(tmp_path, corpus):
    """train.balance_weight: the objective is the mix loss + weight x ClassBalanceLoss, and trains."""
    from fxmix.model.losses import MultiResolutionSumDiffLoss
    from fxmix.training.train import Objective

    path, cfg = _cfg(
        tmp_path, corpus, "bal", overrides=["train.balance_weight=2.0"], steps=3, steps_per_epoch=3
    )
    assert cfg.balance_weight == 2.0
    with pytest.raises(ConfigError, match="balance_weight"):
        load_train_config(path, ["train.balance_weight=-1"])
    x = torch.randn(2, 4, 2, 8192, generator=torch.Generator().manual_seed(1))
    y = x.sum(1)
    pred = (x * torch.tensor([1.5, 1.0, 1.0, 0.5]).view(1, 4, 1, 1)).sum(1)
    mix = MultiResolutionSumDiffLoss()
    plain, weighted = Objective(mix), Objective(mix, 2.0)
    assert float(weighted(pred, y, x)) - float(plain(pred, y, x)) > 1.0  # the +3.5/-6 dB classes cost LU
    res = train(cfg, progress=False)
    rows = read_csv_log(tmp_path / "bal" / "valid_log.csv")
    assert res["step"] == 3 and all(np.isfinite(r["valid_loss"]) for r in rows)

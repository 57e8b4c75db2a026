"""Checkpoints: verified on resume (sha256, finite weights), fallback to the last good one with a message,
never rotated away while they are the last good one, and a run killed at random moments resumes exactly."""

from __future__ import annotations

import json
import logging
import os
import random
import shutil
import signal
import subprocess
import sys
import time

import pytest
import torch
from fxmix.dsp.errors import FxmixError, ModelLoadError
from fxmix.model.states import load_model, sha256_file
from fxmix.training.checkpoints import checkpoint_dirs, save_checkpoint
from fxmix.training.config import load_train_config
from fxmix.training.train import read_csv_log, train
from safetensors.torch import load_file, save_file
from support.corpus import tiny_config_text, tiny_corpus

STEPS = 25


@pytest.fixture(scope="module")
def base_run(tmp_path_factory):
    """A tiny run stopped at step 20 of 25 (checkpoints at steps 15 and 20 are kept)."""
    base = tmp_path_factory.mktemp("ckpt")
    corpus = tiny_corpus(tmp_path_factory.getbasetemp())
    cache = corpus.parent / "fx_tiny_cache"
    path = base / "run.toml"
    path.write_text(tiny_config_text(corpus, cache, base / "run", steps=STEPS, steps_per_epoch=100))
    res = train(load_train_config(path), progress=False, stop_after=20)
    assert res["step"] == 20
    return path, base / "run"


def _copy(base_run, tmp_path):
    path, run = base_run
    out = tmp_path / "run"
    shutil.copytree(run, out)
    return load_train_config(path, [f"train.out_dir={str(out)!r}"]), out


def _nan_weights(ckpt):
    state = load_file(str(ckpt / "model.safetensors"))
    state["encoder.weight"][0, 0, 0] = float("nan")
    save_file(state, str(ckpt / "model.safetensors"))
    sidecar = json.loads((ckpt / "model.json").read_text())
    sidecar["sha256"] = sha256_file(ckpt / "model.safetensors")  # a valid hash of NaN weights
    (ckpt / "model.json").write_text(json.dumps(sidecar))


def _flip_byte(file):
    data = bytearray(file.read_bytes())
    data[-7] ^= 0x40  # in the tensor data; the header stays valid
    file.write_bytes(bytes(data))


CORRUPTIONS = {
    "nan weights": (_nan_weights, "NaN/inf"),
    "byte-flipped weights": (lambda c: _flip_byte(c / "model.safetensors"), "sha256"),
    "truncated weights": (lambda c: (c / "model.safetensors").write_bytes(b"\x10\x00"), "sha256"),
    "empty weights": (lambda c: (c / "model.safetensors").write_bytes(b""), "sha256"),
    "missing weights": (lambda c: (c / "model.safetensors").unlink(), "not found"),
    "byte-flipped optimizer": (lambda c: _flip_byte(c / "optimizer.safetensors"), "optimizer.safetensors: sha256"),
    "corrupt state": (lambda c: (c / "state.json").write_text('{"step": '), "state.json"),
    "missing sidecar": (lambda c: (c / "model.json").unlink(), "model.json"),
}


@pytest.mark.parametrize("name", sorted(CORRUPTIONS))
def test_resume_falls_back_to_the_last_checkpoint_that_verifies(base_run, tmp_path, caplog, name):
    cfg, out = _copy(base_run, tmp_path)
    corrupt, why = CORRUPTIONS[name]
    corrupt(out / "checkpoints" / "step-0000020")
    with caplog.at_level(logging.WARNING, logger="fxmix"):
        res = train(cfg, resume=True, progress=False)
    assert res["step"] == STEPS
    text = caplog.text
    assert "step-0000020 does not verify" in text and why in text and "step-0000015" in text, text
    assert (out / "checkpoints" / "rejected-step-0000020").is_dir()
    assert [s for s, _ in checkpoint_dirs(out)] == [25, 20]
    steps = [int(r["step"]) for r in read_csv_log(out / "train_log.csv")]
    assert steps == sorted(set(steps)) and steps[-1] == STEPS  # rows after step 15 re-done exactly once
    model, _ = load_model(out / "final")
    assert all(torch.isfinite(v).all() for v in model.state_dict().values())


@pytest.mark.parametrize("latest", ["missing", "corrupt", "dangling"])
def test_latest_json_is_not_a_point_of_failure(base_run, tmp_path, caplog, latest):
    cfg, out = _copy(base_run, tmp_path)
    pointer = out / "checkpoints" / "latest.json"
    {"missing": pointer.unlink, "corrupt": lambda: pointer.write_text("{"), "dangling": lambda: pointer.write_text(
        json.dumps({"step": 40, "path": "step-0000040"})
    )}[latest]()
    with caplog.at_level(logging.WARNING, logger="fxmix"):
        res = train(cfg, resume=True, progress=False, stop_after=1)
    assert res["step"] == 21 and "does not verify" not in caplog.text  # step 20 was intact
    assert json.loads(pointer.read_text())["path"] == "step-0000021"


def test_no_checkpoint_verifies_is_one_clear_error(base_run, tmp_path):
    cfg, out = _copy(base_run, tmp_path)
    for _, ckpt in checkpoint_dirs(out):
        _nan_weights(ckpt)
    with pytest.raises(ModelLoadError, match=r"no checkpoint verifies \(step-0000020: .*NaN/inf.*step-0000015"):
        train(cfg, resume=True, progress=False)
    assert [s for s, _ in checkpoint_dirs(out)] == [20, 15]  # nothing deleted or renamed


def test_diverged_weights_are_never_written_and_nothing_is_rotated(base_run, tmp_path):
    cfg, out = _copy(base_run, tmp_path)
    model, _ = load_model(out / "checkpoints" / "step-0000020")
    opt = torch.optim.Adam(model.parameters())
    with torch.no_grad():
        next(model.parameters()).fill_(float("nan"))
    with pytest.raises(FxmixError, match=r"NaN/inf.*training diverged.*steps \[20, 15\] are kept"):
        save_checkpoint(out, 21, model, opt, {"format": "fxmix-train-state-1"}, keep=2)
    assert [s for s, _ in checkpoint_dirs(out)] == [20, 15]


def _cli(args, **kw):
    cmd = [sys.executable, "-m", "fxmix", "train", *args, "--no-progress"]
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kw)


def test_cli_resume_reports_the_fallback_and_the_dead_end_without_traceback(base_run, tmp_path):
    cfg, out = _copy(base_run, tmp_path)
    config = ["--config", str(base_run[0]), "--out", str(out), "--resume"]
    _flip_byte(out / "checkpoints" / "step-0000020" / "model.safetensors")
    _, err = _cli([*config, "--stop-after", "1"]).communicate(timeout=300)
    assert "step-0000020 does not verify" in err and "step-0000015" in err and "Traceback" not in err, err
    for _, ckpt in checkpoint_dirs(out):
        (ckpt / "state.json").write_text("")
    proc = _cli(config)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 1 and "no checkpoint verifies" in err and "Traceback" not in err, err


def test_kill_at_random_moments_then_resume_ends_at_the_right_step(base_run, tmp_path):
    """kill -9 a few times at random moments (during steps, logs, validation and checkpoint writes)."""
    path, _ = base_run
    out = tmp_path / "killed"
    steps = 16
    overrides = [f"train.out_dir={str(out)!r}", f"train.steps={steps}", "train.checkpoint_every=2"]
    overrides += ["train.log_every=1", "train.steps_per_epoch=4"]
    args = ["--config", str(path), "--resume"] + [a for o in overrides for a in ("--set", o)]
    log_file = out / "train_log.csv"
    rng = random.Random(11)
    for _ in range(3):
        rows_before = len(read_csv_log(log_file)) if log_file.is_file() else 0
        proc = _cli(args)
        deadline = time.time() + 120
        while time.time() < deadline and proc.poll() is None:  # wait until this run trains, then a random moment
            if log_file.is_file() and len(log_file.read_text().splitlines()) > rows_before + 1:
                break
            time.sleep(0.05)
        time.sleep(rng.uniform(0.0, 1.5))
        os.kill(proc.pid, signal.SIGKILL)
        proc.communicate()
    cfg = load_train_config(path, overrides)
    res = train(cfg, resume=True, progress=False)
    assert res["step"] == steps
    assert [int(r["step"]) for r in read_csv_log(log_file)] == list(range(1, steps + 1))
    assert [int(r["step"]) for r in read_csv_log(out / "valid_log.csv")] == [4, 8, 12, 16]
    for folder in ("final", "best", f"checkpoints/step-{steps:07d}"):
        load_model(out / folder)  # complete and verified

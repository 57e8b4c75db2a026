"""Weights files, TorchScript/ONNX export parity, runtime loader and the model CLI verbs."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from fxmix.dsp.errors import ModelLoadError
from fxmix.model.export import PARITY_TOL
from fxmix.model.registry import build_model
from fxmix.model.runtime import load_runtime
from fxmix.model.states import load_model, save_model
from safetensors import safe_open

from fxmix.bench.model import main as bench_model_main
from fxmix.verbs.export import main as export_main


def _stems(n: int, seed: int = 0) -> np.ndarray:
    return (0.1 * np.random.default_rng(seed).standard_normal((4, 2, n))).astype(np.float32)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    torch.manual_seed(0)
    model = build_model("fxmix-tiny").eval()
    path = tmp_path_factory.mktemp("ckpt")
    save_model(path, model, extra={"training": "synthetic test corpus", "metrics": {"val_loss": 1.0}})
    return path, model


@pytest.fixture(scope="module")
def exported(checkpoint, tmp_path_factory):
    out = tmp_path_factory.mktemp("export")
    # 10-s parity on the tiny config keeps CI fast (the paper net is checked manually, see README)
    assert (
        export_main([str(checkpoint[0]), "-o", str(out), "--torchscript", "--onnx", "--parity-s", "10"]) == 0
    )
    return out


def test_save_load_round_trip_and_sidecar(checkpoint):
    path, model = checkpoint
    loaded, sidecar = load_model(path)
    x = torch.from_numpy(_stems(16 * 300))[None]
    with torch.no_grad():
        assert torch.equal(loaded(x), model(x))
    assert sidecar["arch"] == "paper" and sidecar["sample_rate"] == 44100
    assert {"config", "fxmix_version", "sha256", "training"} <= set(sidecar)
    with safe_open(str(path / "model.safetensors"), "pt") as fh:  # plain safetensors, no pickle
        assert "encoder.weight" in fh.keys()
    # the .safetensors path works as well as the folder
    assert load_model(path / "model.safetensors")[1]["sha256"] == sidecar["sha256"]


def test_hash_mismatch_names_the_file(checkpoint, tmp_path):
    path, model = checkpoint
    weights = save_model(tmp_path / "m.safetensors", model)
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0xFF
    weights.write_bytes(bytes(data))
    with pytest.raises(ModelLoadError, match="m.safetensors.*sha256"):
        load_model(weights)
    with pytest.raises(ModelLoadError, match="not found"):
        load_model(tmp_path / "missing")


def test_export_parity_and_model_card(exported):
    card = json.loads((exported / "model_card.json").read_text())
    assert card["parity"]["ok"] and card["parity"]["seconds"] == 10.0
    assert card["parity"]["torchscript_max_abs"] <= PARITY_TOL
    assert card["parity"]["onnx_max_abs"] <= PARITY_TOL
    assert card["parity"]["fast_max_abs"] <= PARITY_TOL
    for key in (
        "arch",
        "sample_rate",
        "latency_samples",
        "receptive_field_samples",
        "training_data",
        "licence",
    ):
        assert key in card
    assert card["metrics"] == {"val_loss": 1.0}


def test_runtime_backends_agree_at_another_length(exported):
    stems = _stems(44100 * 2 + 37, seed=5)  # not a multiple of the model's 16-sample frame, 3 chunks
    outs = {
        b: load_runtime(exported, b).mix(stems, chunk_s=1.0, overlap_s=0.05)
        for b in ("eager", "fast", "torchscript", "onnx")
    }
    for y in outs.values():
        assert y.shape == (2, stems.shape[-1]) and y.dtype == np.float32 and np.isfinite(y).all()
    for backend in ("fast", "torchscript", "onnx"):
        assert np.abs(outs[backend] - outs["eager"]).max() <= PARITY_TOL
    rt = load_runtime(exported)  # the paper network runs on its fast runtime unless told otherwise
    assert rt.backend == "fast" and rt.sample_rate == 44100 and rt.latency_samples == 0


def test_runtime_on_checkpoint_is_fast_for_the_paper_net(checkpoint):
    rt = load_runtime(checkpoint[0])
    assert rt.backend == "fast" and load_runtime(checkpoint[0], "eager").backend == "eager"
    with pytest.raises(ModelLoadError, match="export"):
        load_runtime(checkpoint[0], backend="onnx")


def test_bench_model_cli_runs_and_prints_command(capsys):
    assert bench_model_main(["--nets", "fxmix-tiny", "--durations", "2", "--threads", "1", "--no-gpu"]) == 0
    out = capsys.readouterr().out
    assert "per audio s" in out and "reproduce: fxmix bench model --nets fxmix-tiny" in out

"""Model folders with bad sidecars, cards, exports or weights: ModelLoadErrors naming the file and the fix,
raised before a network of an unchecked size is built."""

from __future__ import annotations

import json
import time

import numpy as np
import pytest
import soundfile as sf
import torch
from fxmix.dsp.constants import SAMPLE_RATE
from fxmix.dsp.errors import ModelLoadError
from fxmix.model.names import training_profile
from fxmix.model.registry import build_model
from fxmix.model.runtime import load_runtime
from fxmix.model.states import CARD_NAME, ONNX_NAME, TS_NAME, load_model, save_model, sha256_file
from safetensors.torch import load_file, save_file

from fxmix.cli import main


@pytest.fixture()
def folder(tmp_path):
    torch.manual_seed(0)
    path = tmp_path / "model"
    save_model(path, build_model("fxmix-tiny").eval(), extra={"training": {"profile": "synthetic-v1"}})
    return path


def _edit_sidecar(folder, **changes):
    sidecar = json.loads((folder / "model.json").read_text())
    for key, value in changes.items():
        if key.startswith("config."):
            sidecar["config"][key.split(".", 1)[1]] = value
        else:
            sidecar[key] = value
    (folder / "model.json").write_text(json.dumps(sidecar))


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"config": None}, "'config' must be an object"),
        ({"sample_rate": 0}, "'sample_rate' must be an integer in"),
        ({"receptive_field_samples": "32636"}, "'receptive_field_samples' must be an integer"),
        ({"receptive_field_samples": 10**12}, "'receptive_field_samples' must be an integer"),
        ({"sha256": 5}, "'sha256' must be 64"),
        ({"arch": ["paper"]}, "'arch' must be one of"),
        ({"training": {"profile": 3}}, "'training.profile' must be a profile name"),
        ({"config.n_filters": "16"}, "n_filters must be an integer"),
        ({"config.lstm_dropout": None}, "lstm_dropout must be a finite number"),
        ({"config.frontend_kernel": 8}, "tensor shapes do not match"),
        ({"config.n_blocks": 2}, "tensors do not match arch"),
        ({"receptive_field_samples": 5}, "receptive_field_samples = 5 but its config builds"),
    ],
)
def test_sidecar_fields_of_the_wrong_type_or_range(folder, changes, message):
    _edit_sidecar(folder, **changes)
    with pytest.raises(ModelLoadError, match=message) as err:
        load_model(folder)
    assert "model.json" in str(err.value) or "model.safetensors" in str(err.value)


@pytest.mark.parametrize("key, value", [("n_filters", 200_000), ("n_repeats", 10_000_000), ("pool", 10**9)])
def test_unbounded_sizes_are_refused_before_building(folder, key, value):
    _edit_sidecar(folder, **{f"config.{key}": value})
    t0 = time.process_time()
    with pytest.raises(ModelLoadError, match=rf"model.json: .*{key} = {value}: must be in \[1, \d+\]"):
        load_model(folder)
    assert time.process_time() - t0 < 1.0


def test_unreadable_sidecars(folder):
    (folder / "model.json").write_bytes(b'{"arch": "caf\xe9"}')
    with pytest.raises(ModelLoadError, match="model.json: not a UTF-8 model sidecar"):
        load_model(folder)
    (folder / "model.json").write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(ModelLoadError, match="model.json: nested deeper"):
        load_model(folder)
    (folder / "model.json").write_text("[1, 2]")
    with pytest.raises(ModelLoadError, match="model.json: not a JSON object"):
        training_profile(str(folder))


def _replace_weights(folder, tensors):
    save_file(tensors, str(folder / "model.safetensors"))
    _edit_sidecar(folder, sha256=sha256_file(folder / "model.safetensors"))


def test_nan_weights_are_the_models_fault(folder):
    state = load_file(str(folder / "model.safetensors"))
    state["encoder.weight"][0, 0, 0] = float("nan")
    _replace_weights(folder, state)
    with pytest.raises(ModelLoadError, match=r"model: weights hold NaN/inf .*encoder.weight.*re-export or retrain"):
        load_model(folder)


def test_a_sidecar_claiming_more_parameters_than_the_file_holds(folder):
    _edit_sidecar(folder, n_parameters=10**9)
    with pytest.raises(ModelLoadError, match="n_parameters = 1000000000 but model.safetensors holds"):
        load_model(folder)


def _card(folder, files):
    card = {"arch": "paper", "sample_rate": SAMPLE_RATE, "receptive_field_samples": 100, "files": files}
    (folder / CARD_NAME).write_text(json.dumps(card))


@pytest.mark.parametrize("name, backend", [(ONNX_NAME, "onnx"), (TS_NAME, "torchscript")])
def test_corrupt_exports_and_cards(folder, name, backend):
    (folder / name).write_bytes(b"\x08\x07garbage that is no model" * 10)
    _card(folder, {name: sha256_file(folder / name)})
    with pytest.raises(ModelLoadError, match=rf"{name}: cannot be loaded .*re-export"):
        load_runtime(folder, backend)
    _card(folder, {name: "0" * 64})
    with pytest.raises(ModelLoadError, match=rf"{name}: sha256 does not match {CARD_NAME}"):
        load_runtime(folder, backend)
    _card(folder, {})
    with pytest.raises(ModelLoadError, match=rf"{name}: not listed with its sha256"):
        load_runtime(folder, backend)
    (folder / CARD_NAME).write_text('{"files": ')
    with pytest.raises(ModelLoadError, match=rf"{CARD_NAME}: not a readable JSON model card.*re-export"):
        load_runtime(folder)
    _card(folder, {name: None})
    with pytest.raises(ModelLoadError, match=rf"{CARD_NAME}: 'files' must be"):
        load_runtime(folder)


def test_cli_names_the_bad_model_folder_without_a_traceback(folder, tmp_path, capsys):
    song = tmp_path / "song"
    song.mkdir()
    rng = np.random.default_rng(0)
    for c in ("vocals", "drums", "bass", "other"):
        sf.write(song / f"{c}.wav", 0.1 * rng.standard_normal((SAMPLE_RATE, 2)), SAMPLE_RATE)
    _edit_sidecar(folder, **{"config.n_filters": 200_000})
    out = tmp_path / "mix.wav"
    assert main(["mix", str(song), "-o", str(out), "--model", str(folder), "--profile", "synthetic-v1"]) == 1
    err = capsys.readouterr().err
    assert "model.json" in err and "n_filters = 200000" in err and "Traceback" not in err
    assert not out.exists()


def test_sidecar_arch_names_are_the_registry():
    """The torch-free sidecar check accepts exactly the registered architectures."""
    from fxmix.model.registry import ARCHS
    from fxmix.model.sidecar import ARCH_NAMES

    assert sorted(ARCH_NAMES) == sorted(ARCHS)

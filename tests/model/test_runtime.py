"""Model resolvers (model/runtime.py) and the cached ONNX Runtime streaming step (model/streaming_runtime.py)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from fxmix.dsp.errors import ModelLoadError
from fxmix.model.causal import CausalMixer
from fxmix.model.config import CausalConfig
from fxmix.model.names import packaged_kind
from fxmix.model.registry import build_model
from fxmix.model.runtime import resolve_model, resolve_model_path, resolve_streaming_model
from fxmix.model.states import save_model
from fxmix.model.streaming_runtime import OrtStep, realtime_step, step_graph

TINY = CausalConfig(n_latent=8, bottleneck=8, hidden=8, skip=8, n_blocks=2, n_repeats=1, lstm_layers=1)


def _tiny_causal(seed: int = 0) -> CausalMixer:
    torch.manual_seed(seed)
    return CausalMixer(TINY).eval()


def test_packaged_names_and_paths():
    assert packaged_kind("default") == "offline" and packaged_kind("default", streaming=True) == "causal"
    assert packaged_kind("Causal") == "causal" and packaged_kind("offline") == "offline"
    assert packaged_kind("some/folder") is None and packaged_kind(Path("default")) is None
    assert resolve_model_path("some/folder") == Path("some/folder")
    assert resolve_model("none") is None and resolve_model(None) is None


def test_streaming_resolver_takes_nets_paths_and_refuses_offline_nets(tmp_path):
    net = _tiny_causal()
    assert resolve_streaming_model(None) == (None, "none")
    assert resolve_streaming_model("none") == (None, "none")
    same, label = resolve_streaming_model(net)
    assert same is net and label == "CausalMixer"
    save_model(tmp_path / "causal", net)
    loaded, label = resolve_streaming_model(tmp_path / "causal")
    assert isinstance(loaded, CausalMixer) and label == str(tmp_path / "causal") and not loaded.training
    with pytest.raises(ModelLoadError, match="not a streaming network"):
        resolve_streaming_model(build_model("fxmix-tiny"))


def test_step_graph_is_built_once_per_weights_and_block_size():
    net = _tiny_causal()
    first = step_graph(net, 256)
    assert step_graph(net, 256) is first  # cached: no second export
    assert step_graph(_tiny_causal(), 256) is first  # same weights, another object: same graph
    assert step_graph(net, 128) is not first
    with torch.no_grad():
        net.encoder.weight.mul_(0.5)
    assert step_graph(net, 256) != first  # changed weights: a new export


def test_ort_step_equals_the_eager_step_and_sessions_keep_their_own_state():
    net = _tiny_causal(1)
    block = 256
    a, b = realtime_step(net, block), OrtStep(net, block)
    assert isinstance(a, OrtStep) and a.session is not b.session
    rng = np.random.default_rng(0)
    x = (0.1 * rng.standard_normal((1, 4, 2, block * 6))).astype(np.float32)
    eager_state, state_a = net.init_state(1), [np.asarray(s) for s in net.init_state(1)]
    state_b = list(state_a)
    for i in range(6):
        blk = x[..., i * block : (i + 1) * block]
        with torch.inference_mode():
            ref, eager_state = net.step(torch.from_numpy(blk), eager_state)
        out_a = a(blk, *state_a)
        state_a = out_a[1:]
        if i < 3:  # b runs only half the blocks: a's state must not leak into it
            out_b = b(blk, *state_b)
            state_b = out_b[1:]
            assert np.max(np.abs(out_b[0] - ref.numpy())) <= 1e-4
        assert np.max(np.abs(out_a[0] - ref.numpy())) <= 1e-4
    assert realtime_step(build_model("fxmix-tiny"), block) is None

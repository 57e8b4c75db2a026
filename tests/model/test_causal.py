"""Causal streaming network (model/causal.py): block parity, causality, export parity, training, configs."""

from __future__ import annotations

import json

import numpy as np
import onnxruntime as ort
import pytest
import torch
from fxmix.dsp.errors import AudioInputError, ConfigError
from fxmix.model.causal import CausalMixer, export_streaming
from fxmix.model.config import CONFIG_DIR, MAX_LOOKAHEAD_SAMPLES, CausalConfig
from fxmix.model.params import count_trainable_parameters
from fxmix.model.registry import ARCHS

CONFIGS = CONFIG_DIR
SR = 44100


def procedural_stems(n_samples: int, seed: int, batch: int = 1) -> torch.Tensor:
    """(batch, 4, 2, n) seeded stems: vocal-ish tone, drum-ish noise bursts, bass sine, noisy pad."""
    rng = np.random.default_rng(seed)
    t = np.arange(n_samples) / SR
    out = np.zeros((batch, 4, 2, n_samples), dtype=np.float32)
    for b in range(batch):
        f0 = rng.uniform(180.0, 400.0)
        vocals = 0.3 * np.sin(2 * np.pi * f0 * t) * (0.6 + 0.4 * np.sin(2 * np.pi * 3.0 * t))
        hits = np.zeros(n_samples)
        hits[:: int(SR * 0.25)] = 1.0
        env = np.convolve(hits, np.exp(-np.arange(2000) / 300.0))[:n_samples]
        drums = 0.5 * env * rng.standard_normal(n_samples)
        bass = 0.4 * np.sin(2 * np.pi * rng.uniform(40.0, 90.0) * t)
        other = 0.1 * rng.standard_normal(n_samples) + 0.2 * np.sin(2 * np.pi * 660.0 * t)
        for s, sig in enumerate((vocals, drums, bass, other)):
            pan = rng.uniform(0.3, 0.7)
            out[b, s, 0] = (1 - pan) * sig
            out[b, s, 1] = pan * sig
    return torch.from_numpy(out)


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Many tiny ops per step: one intra-op thread is faster, and robust on a shared 2-core runner."""
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


@pytest.fixture(scope="module")
def model() -> CausalMixer:
    torch.manual_seed(0)
    return CausalMixer(CausalConfig.from_toml(CONFIGS / "causal.toml")).eval()


@pytest.fixture(scope="module")
def stems() -> torch.Tensor:
    return procedural_stems(SR, seed=1)


@pytest.fixture(scope="module")
def whole(model, stems) -> torch.Tensor:
    with torch.no_grad():
        return model(stems)


def run_blocks(model: CausalMixer, stems: torch.Tensor, block_samples: int) -> torch.Tensor:
    state = model.init_state(stems.shape[0])
    outs = []
    with torch.no_grad():
        for start in range(0, stems.shape[-1], block_samples):
            y, state = model.step(stems[..., start : start + block_samples], state)
            outs.append(y)
    return torch.cat(outs, dim=-1)


def test_attributes_and_registry(model):
    assert ARCHS["causal"] is CausalMixer and CausalMixer.config_class is CausalConfig
    assert model.sample_rate == 44100 and model.n_stems == 4
    assert model.latency_samples == model.config.encoder_kernel - 1 == 31
    assert 0 <= model.latency_samples <= MAX_LOOKAHEAD_SAMPLES
    assert model.receptive_field_samples > 10 * model.config.hop_samples
    assert 200_000 < count_trainable_parameters(model) < 2_000_000
    assert len(model.init_state(3)) == len(model.state_names())


def test_forward_shape_and_range(whole, stems):
    assert whole.shape == (1, 2, stems.shape[-1])
    assert torch.isfinite(whole).all()
    assert float(whole.abs().max()) < 1.0  # tanh output
    assert float(whole.std()) > 1e-3  # not silent


@pytest.mark.parametrize("block_samples", [64, 65, 480, 512, 4096])
def test_blocks_equal_whole_sequence(model, stems, whole, block_samples):
    streamed = run_blocks(model, stems, block_samples)
    lat = model.latency_samples
    n = stems.shape[-1]
    err = (streamed[..., lat:] - whole[..., : n - lat]).abs().max().item()
    assert err <= 1e-4, f"block {block_samples}: max abs difference {err:.3g}"
    # the first `latency_samples` streamed samples come before any mix sample is due: the decoder's warm-up
    assert float(streamed[..., :lat].abs().max()) < float(whole.abs().max())


def test_variable_block_sizes(model, stems, whole):
    sizes = [1, 63, 64, 200, 1000, 7, 4096, 333]
    state = model.init_state(1)
    outs, start = [], 0
    with torch.no_grad():
        while start < 12000:
            size = sizes[len(outs) % len(sizes)]
            y, state = model.step(stems[..., start : start + size], state)
            outs.append(y)
            start += size
    streamed = torch.cat(outs, dim=-1)
    lat = model.latency_samples
    err = (streamed[..., lat:] - whole[..., : streamed.shape[-1] - lat]).abs().max().item()
    assert err <= 1e-4


def test_causal(model, stems, whole):
    t0 = 20000
    changed = stems.clone()
    changed[..., t0:] = procedural_stems(stems.shape[-1] - t0, seed=7)
    with torch.no_grad():
        other = model(changed)
    lat = model.latency_samples
    before = (other[..., : t0 - lat] - whole[..., : t0 - lat]).abs().max().item()
    assert before <= 1e-6, f"past output changed by {before:.3g}"
    # the look-ahead is exactly `latency_samples`: the sample due then already reacts, and later ones clearly
    assert (other[..., t0 - lat : t0] - whole[..., t0 - lat : t0]).abs().max().item() > 1e-6
    assert (other[..., t0:] - whole[..., t0:]).abs().max().item() > 1e-2


def test_state_restart_is_deterministic(model, stems):
    a = run_blocks(model, stems[..., :5000], 512)
    b = run_blocks(model, stems[..., :5000], 512)
    assert torch.equal(a, b)


def test_batch_items_independent(model):
    x = procedural_stems(6000, seed=3, batch=2)
    with torch.no_grad():
        both = model(x)
        single = model(x[1:])
    assert (both[1:] - single).abs().max().item() <= 1e-5


def test_export_matches_eager(model, tmp_path):
    block = 480  # not a multiple of the 64-sample frame: the frame count per block alternates 7 / 8
    paths = export_streaming(model, tmp_path, block)
    card = json.loads(paths["card"].read_text())
    assert card["latency_samples"] == model.latency_samples and card["block_samples"] == block
    assert card["inputs"][0] == "blocks" and len(card["state"]) == len(model.state_names())

    scripted = torch.jit.load(str(paths["torchscript"]))
    session = ort.InferenceSession(str(paths["onnx"]), providers=["CPUExecutionProvider"])
    names = [i.name for i in session.get_inputs()]
    assert names == ["blocks", *model.state_names()]

    x = procedural_stems(block * 16, seed=5)
    st_eager = model.init_state(1)
    st_ts = model.init_state(1)
    st_ort = [s.numpy() for s in model.init_state(1)]
    err_ts = err_ort = 0.0
    with torch.no_grad():
        for i in range(16):
            blk = x[..., i * block : (i + 1) * block]
            y, st_eager = model.step(blk, st_eager)
            out = scripted(blk, *st_ts)
            st_ts = out[1:]
            res = session.run(None, dict(zip(names, [blk.numpy(), *st_ort])))
            st_ort = res[1:]
            err_ts = max(err_ts, (out[0] - y).abs().max().item())
            err_ort = max(err_ort, float(np.abs(res[0] - y.numpy()).max()))
    assert err_ts <= 1e-4, f"TorchScript differs by {err_ts:.3g}"
    assert err_ort <= 1e-4, f"ONNX Runtime differs by {err_ort:.3g}"
    assert float(np.abs(res[0]).max()) > 1e-3


def test_tiny_config_trains():
    torch.manual_seed(0)
    net = CausalMixer(CausalConfig.from_toml(CONFIGS / "causal_tiny.toml"))
    assert count_trainable_parameters(net) < 50_000
    x = procedural_stems(4096, seed=11, batch=2)
    gains = torch.tensor([1.0, 0.5, 0.8, 0.3]).view(1, 4, 1, 1)
    target = torch.tanh((x * gains).sum(1))
    opt = torch.optim.Adam(net.parameters(), lr=3e-3)
    losses = []
    for _ in range(20):
        opt.zero_grad()
        loss = torch.nn.functional.l1_loss(net(x), target)
        loss.backward()
        assert all(torch.isfinite(p.grad).all() for p in net.parameters() if p.grad is not None)
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.7 * losses[0], losses


def test_silence_gives_finite_gradients():
    torch.manual_seed(0)
    net = CausalMixer(CausalConfig.from_toml(CONFIGS / "causal_tiny.toml"))
    out = net(torch.zeros(1, 4, 2, 1000))
    out.pow(2).sum().backward()
    assert float(out.detach().abs().max()) == 0.0
    assert all(torch.isfinite(p.grad).all() for p in net.parameters() if p.grad is not None)


def test_config_errors(tmp_path):
    assert CausalConfig.from_toml(CONFIGS / "causal.toml").arch == "causal"
    bad = tmp_path / "bad.toml"
    bad.write_text('arch = "causal"\nn_latnt = 3\n')
    with pytest.raises(ConfigError, match="n_latnt"):
        CausalConfig.from_toml(bad)
    with pytest.raises(ConfigError, match="look-ahead"):
        CausalConfig(encoder_kernel=MAX_LOOKAHEAD_SAMPLES + 2)
    with pytest.raises(ConfigError, match="arch"):
        CausalConfig(arch="paper")
    with pytest.raises(ConfigError, match="hop_samples"):
        CausalConfig(hop_samples=0)
    flat = tmp_path / "flat.toml"
    flat.write_text('arch = "causal"\nn_latent = 8\n')
    assert CausalConfig.from_toml(flat).n_latent == 8
    wrong = tmp_path / "wrong.toml"
    wrong.write_text('arch = "paper"\n[net]\nn_latent = 8\n')
    with pytest.raises(ConfigError, match="expected 'causal'"):
        CausalConfig.from_toml(wrong)
    assert CausalConfig.from_dict(CausalConfig().to_dict()) == CausalConfig()


def test_input_errors(model):
    with pytest.raises(AudioInputError, match="batch, 4, 2"):
        model(torch.zeros(1, 8, 1000))
    with pytest.raises(AudioInputError, match="state"):
        model.step(torch.zeros(1, 4, 2, 64), model.init_state(1)[:-1])

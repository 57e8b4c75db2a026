"""Networks and their TOML configs: parameter counts, shapes, the BLSTM mask path, config validation."""

from __future__ import annotations

import pytest
import torch
from fxmix.dsp.errors import ConfigError
from fxmix.model.config import PaperNetConfig, WaveUNetConfig
from fxmix.model.nets import PaperNet, WaveUNet
from fxmix.model.params import count_parameters
from fxmix.model.registry import build_model, get_arch, load_net_config


def _stems(n: int, seed: int = 0, batch: int = 1) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return 0.1 * torch.randn(batch, 4, 2, n, generator=g)


def test_paper_parameter_count_matches_reference():
    assert count_parameters(build_model("paper")) == 2_752_817


def test_wave_unet_parameter_count_matches_reference():
    assert count_parameters(build_model("wave_unet")) == 2_477_162


def test_registry_and_named_configs():
    assert get_arch("paper") is PaperNet and get_arch("wave_unet") is WaveUNet
    arch, cfg = load_net_config("fxmix-tiny")
    assert arch == "paper" and isinstance(cfg, PaperNetConfig) and cfg.n_filters == 16
    assert load_net_config("paper")[1] == PaperNetConfig()
    assert load_net_config("wave_unet")[1] == WaveUNetConfig()


def test_tiny_forward_shape_range_and_determinism():
    torch.manual_seed(0)
    model = build_model("fxmix-tiny").eval()
    x = _stems(16 * 200, batch=2)
    with torch.no_grad():
        y1, y2 = model(x), model(x)
    assert y1.shape == (2, 2, 16 * 200)
    assert torch.isfinite(y1).all() and y1.abs().max() < 1.0
    assert torch.equal(y1, y2)
    assert model.latency_samples == 0 and model.sample_rate == 44100 and model.n_stems == 4


def test_mask_comes_from_blstm_branch():
    """Published forward fix: the BLSTM output is the mask, so its weights change the mix."""
    torch.manual_seed(0)
    model = build_model("fxmix-tiny").eval()
    x = _stems(16 * 100)
    with torch.no_grad():
        before = model(x)
        for name, p in model.lstm.named_parameters():
            if name.startswith("weight_hh"):
                p.add_(0.5)
        after = model(x)
    assert (after - before).abs().max() > 1e-4


def test_every_trainable_parameter_gets_a_gradient():
    """The reference's unused last residual conv is frozen, so DDP sees no unused trainable parameter."""
    torch.manual_seed(0)
    model = build_model("fxmix-tiny").train()
    model(_stems(16 * 64)).square().mean().backward()
    missing = [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]
    assert missing == []
    assert not model.tcn[-1].res_conv.weight.requires_grad


def test_receptive_field_of_paper_net():
    model = build_model("paper")
    # reference guard 505 latent frames * 64 + 2 * 63 = 32,446; ours also counts the 128-tap conv and pool
    assert 32_446 <= model.receptive_field_samples <= 32_446 + 128 + 64


def test_wave_unet_output_aligned_length_and_clamped():
    torch.manual_seed(0)
    model = WaveUNet(WaveUNetConfig(n_levels=3, features_root=8)).eval()
    x = _stems(1000)
    with torch.no_grad():
        y = model(x)
    assert y.shape == (1, 2, 1000) and y.abs().max() <= 1.0
    assert model.context_samples == 18  # 9 valid k=5 convs, 2 samples each per side
    assert WaveUNet().context_samples == 34  # the reference's 34 samples per side


def test_config_rejects_unknown_key_wrong_type_and_bad_values(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text('arch = "paper"\n[net]\nn_filtres = 3\n')
    with pytest.raises(ConfigError, match="n_filtres"):
        load_net_config(bad)
    bad.write_text('arch = "paper"\n[net]\nn_filters = "many"\n')
    with pytest.raises(ConfigError, match="n_filters"):
        load_net_config(bad)
    bad.write_text('arch = "paper"\n[net]\ntcn_kernel = 4\n')
    with pytest.raises(ConfigError, match="tcn_kernel"):
        load_net_config(bad)
    bad.write_text("[net]\n")
    with pytest.raises(ConfigError, match="arch"):
        load_net_config(bad)
    with pytest.raises(ConfigError, match="lstm_dropout"):
        PaperNetConfig(lstm_dropout=1.5)


def test_config_dict_round_trip():
    cfg = PaperNetConfig(n_filters=32, lstm_hidden=16)
    assert PaperNetConfig.from_dict(cfg.to_dict()) == cfg

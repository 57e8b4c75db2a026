"""Stereo-invariant losses: L/R swap invariance, zero on identical inputs, finite gradients on silence."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from fxmix.dsp.errors import ConfigError
from fxmix.model.losses import MultiResolutionSumDiffLoss, PreEmphasis, get_loss

N = 16384
NAMES = ["La", "Lb", "mrstft"]


def _pair(seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    target = 0.1 * torch.randn(2, 2, N, generator=g)
    pred = target + 0.02 * torch.randn(2, 2, N, generator=g)
    return pred, target


@pytest.mark.parametrize("name", NAMES)
def test_invariant_to_left_right_swap(name):
    loss = get_loss(name)
    pred, target = _pair()
    a, b = loss(pred, target), loss(pred.flip(1), target.flip(1))
    assert a > 0
    assert torch.allclose(a, b, rtol=1e-6, atol=0)


@pytest.mark.parametrize("name", NAMES)
def test_zero_for_identical_inputs(name):
    _, target = _pair(1)
    assert get_loss(name)(target, target).item() == 0.0


@pytest.mark.parametrize("name", NAMES)
def test_finite_gradients_on_silence(name):
    pred = torch.zeros(1, 2, N, requires_grad=True)
    loss = get_loss(name)(pred, torch.zeros(1, 2, N))
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(pred.grad).all()
    # silent target, non-silent prediction: still finite value and gradients
    pred2 = (0.1 * torch.randn(1, 2, N, generator=torch.Generator().manual_seed(2))).requires_grad_()
    loss2 = get_loss(name)(pred2, torch.zeros(1, 2, N))
    loss2.backward()
    assert torch.isfinite(loss2) and loss2 > 0 and torch.isfinite(pred2.grad).all()


@pytest.mark.parametrize("name", NAMES)
def test_same_value_under_bf16_autocast(name):
    loss = get_loss(name)
    pred, target = _pair(3)
    ref = loss(pred, target)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        low = loss(pred.bfloat16(), target.bfloat16())
    assert torch.isfinite(low) and abs(low.item() - ref.item()) / ref.item() < 0.05


def test_components_sum_to_total_and_grow_with_error():
    loss = get_loss("La")
    pred, target = _pair(4)
    comps = loss.components(pred, target)
    assert set(comps) == {"sum_sc", "sum_log_mag", "diff_sc", "diff_log_mag", "total"}
    parts = sum(v for k, v in comps.items() if k != "total")
    assert torch.allclose(parts, comps["total"])
    worse = target + 3 * (pred - target)
    assert loss(worse, target) > loss(pred, target)


def test_per_example_normalisation():
    """A quiet example weighs as much in SC as a loud one (the reference normalised over the batch)."""
    loss = get_loss("La", reduction="none")
    pred, target = _pair(5)
    scaled_t, scaled_p = target.clone(), pred.clone()
    scaled_t[1] *= 100.0
    scaled_p[1] *= 100.0
    a = loss.components(pred, target)["sum_sc"]
    b = loss.components(scaled_p, scaled_t)["sum_sc"]
    assert torch.allclose(a, b, rtol=1e-3)


def test_pre_emphasis_a_weighting_shape():
    """101-tap A-weighting fit: 1 kHz within 1 dB of 0 dB, 50 Hz cut by > 15 dB (analog: -30 dB)."""
    pre = PreEmphasis(("aw",))
    t = torch.arange(44100) / 44100
    gains = {}
    for f in (50.0, 1000.0):
        x = torch.sin(2 * np.pi * f * t).repeat(1, 2, 1)
        y = pre(x)[..., 2000:-2000]
        gains[f] = 20 * np.log10(float(y.square().mean().sqrt() / x[..., 2000:-2000].square().mean().sqrt()))
    assert abs(gains[1000.0]) < 1.0
    assert gains[50.0] < -15.0


def test_bad_arguments_raise_config_error():
    with pytest.raises(ConfigError):
        get_loss("L_unknown")
    with pytest.raises(ConfigError):
        get_loss("La", eps=1e-30)
    with pytest.raises(ConfigError):
        get_loss("La")(torch.zeros(1, 2, N), torch.zeros(1, 1, N))
    with pytest.raises(ConfigError):
        MultiResolutionSumDiffLoss()(torch.zeros(1, 2, 100), torch.zeros(1, 2, 100))


def test_class_balance_loss_measures_level_balance():
    """ClassBalanceLoss: 0 for the target itself; a +6 dB class among four equally loud ones is the analytic
    balance error (+3.59 LU for it, -2.43 LU for the others, mean 2.72); silent classes are left out."""
    from fxmix.model.losses import ClassBalanceLoss

    g = torch.Generator().manual_seed(0)
    stems = torch.randn(2, 4, 2, 44100, generator=g) * 0.1  # equal K-weighted energy per class
    target = stems.sum(1)
    loss = ClassBalanceLoss()
    assert float(loss(target, target, stems)) < 1e-4
    gains = torch.tensor([2.0, 1.0, 1.0, 1.0]).view(1, 4, 1, 1)  # +6.02 dB on class 0
    pred = (stems * gains).sum(1).requires_grad_()
    expected = (10 * np.log10(16 / 7) + 3 * 10 * np.log10(7 / 4)) / 4
    value = loss(pred, target, stems)
    assert abs(float(value.detach()) - expected) < 0.05, float(value.detach())
    value.backward()
    assert torch.isfinite(pred.grad).all() and float(pred.grad.abs().sum()) > 0
    stems[:, 3] = 0.0  # a silent class: no balance, no NaN
    pred = (stems * gains).sum(1).requires_grad_()
    value = loss(pred, stems.sum(1), stems)
    value.backward()
    expected3 = 10 * np.log10(2.0)  # 4 of 6 vs 1 of 3 for class 0, 1 of 6 vs 1 of 3 for the others
    assert abs(float(value) - expected3) < 0.05 and torch.isfinite(pred.grad).all()

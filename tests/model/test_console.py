"""Differentiable console: parameter ranges and JSON, the fixed designs, the torch renderer's behaviour and
its gradients (the pedalboard parity is in test_console_twin.py)."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest
import torch
from fxmix.dsp import constants as C
from fxmix.dsp.errors import ConfigError
from fxmix.dsp.fir import design_fir
from fxmix.model.console import (
    EQ_FIR_TAPS,
    RANGES,
    UNIT_SIZE,
    ConsoleParams,
    eq_band_centers_hz,
    eq_fir_torch,
    render_console,
    render_console_stages,
    reverb_ir,
)
from fxmix.model.console.designs import compressor_envelope, reverb_board
from support import signals

SR = signals.SR


def _tracks(seconds: float = 1.0) -> torch.Tensor:
    song = signals.song(seconds)
    return torch.from_numpy(np.stack([song[k] for k in ("vocals", "drums", "bass", "other")]))[None]


def _params(**values) -> ConsoleParams:
    """Neutral console for 4 tracks with some fields replaced ((4,) lists, eq (4, 10), master float)."""
    p = ConsoleParams.neutral(1, 4, ["vocals", "drums", "bass", "other"], dtype=torch.float64)
    return replace(p, **{k: torch.tensor([v], dtype=torch.float64) for k, v in values.items()})


# ---------------------------------------------------------------- parameters


def test_unit_zero_is_the_neutral_console_and_any_unit_stays_in_range():
    p = ConsoleParams.from_unit(torch.zeros(2, 3, UNIT_SIZE), ["vocals", "bass", "guitar"])
    for name in ("gain_db", "pan", "eq_db", "comp_threshold_db", "comp_ratio", "reverb_send_db"):
        assert torch.allclose(getattr(p, name), torch.full_like(getattr(p, name), RANGES[name][2]), atol=1e-4)
    assert p.comp_attack_ms[0].tolist() == [7.5, 10.0, 10.0]  # vocals, bass, default for an unknown class
    per_item = ConsoleParams.from_unit(torch.zeros(2, 2, UNIT_SIZE), [["vocals", "drums"], ["other", "bass"]])
    assert per_item.comp_release_ms.tolist() == [[400.0, 180.0], [666.0, 500.0]]
    wild = ConsoleParams.from_unit(1e3 * torch.randn(2, 3, UNIT_SIZE), master_u=1e3 * torch.randn(2))
    wild.check()  # every value inside its range, even for saturated outputs
    u = torch.randn(2, 3, UNIT_SIZE)
    assert torch.allclose(ConsoleParams.from_unit(u).to_unit(), u, atol=1e-3)
    s = ConsoleParams.from_unit(u).normalized()
    assert s.shape == (2, 3, UNIT_SIZE) and bool((s > 0).all() and (s < 1).all())


def test_decisions_round_trip_through_json_and_bad_ones_name_the_key():
    u = torch.randn(1, 4, UNIT_SIZE)
    p = ConsoleParams.from_unit(u, ["vocals", "drums", "bass", "other"], master_u=torch.randn(1))
    d = json.loads(json.dumps(p.to_dict(0, names=["Lead Vox", "Kit", "Bass DI", "Keys"])))
    assert d["tracks"][0]["name"] == "Lead Vox" and len(d["tracks"][2]["eq_db"]) == len(eq_band_centers_hz())
    assert d["console"]["eq_fir_taps"] == EQ_FIR_TAPS and "sin/cos" in d["console"]["pan_law"]
    q = ConsoleParams.from_dict(d)
    for name in p.__dataclass_fields__:
        assert torch.allclose(getattr(q, name), getattr(p, name), atol=1e-5), name
    d["tracks"][1]["pan"] = 1.5
    with pytest.raises(ConfigError, match="pan"):
        ConsoleParams.from_dict(d)
    del d["tracks"][1]["pan"]
    with pytest.raises(ConfigError, match=r"tracks\[1\] has no 'pan'"):
        ConsoleParams.from_dict(d)


def test_shape_errors_are_clear():
    p = ConsoleParams.neutral(1, 3)
    with pytest.raises(ValueError, match=r"\(batch, tracks\)"):
        render_console(torch.zeros(1, 4, 2, 1000), p)
    with pytest.raises(ValueError, match="2, samples"):
        render_console(torch.zeros(1, 3, 1000), p)
    with pytest.raises(ValueError, match=f"{UNIT_SIZE}"):
        ConsoleParams.from_unit(torch.zeros(1, 3, UNIT_SIZE + 1))


# ---------------------------------------------------------------- designs


def test_torch_eq_fir_is_the_dsp_design():
    eq = torch.from_numpy(np.random.default_rng(0).uniform(-12, 12, (3, len(eq_band_centers_hz()))))
    taps = eq_fir_torch(eq, SR).numpy()
    for k in range(3):
        ref = design_fir(eq_band_centers_hz(), eq[k].numpy(), SR, EQ_FIR_TAPS)
        assert np.max(np.abs(taps[k] - ref)) < 1e-12 * np.max(np.abs(ref)) + 1e-15


def test_eq_fir_follows_a_musical_curve():
    curve = np.array([3.0, 4.0, 2.0, -1.0, -3.0, 0.0, 2.0, 4.0, 3.0, 1.0])
    taps = eq_fir_torch(torch.from_numpy(curve), SR).numpy()
    f = np.fft.rfftfreq(1 << 20, 1.0 / SR)
    resp = 20 * np.log10(np.interp(eq_band_centers_hz(), f, np.abs(np.fft.rfft(taps, 1 << 20))))
    assert np.max(np.abs(resp - curve)[1:]) < 0.5  # 62.5 Hz .. 16 kHz
    assert abs(resp[0] - curve[0]) < 1.5  # 31 Hz: the FIR's resolution


def test_reverb_ir_is_the_engineer_mean_return_and_decays():
    from fxmix.training.engineer import rules
    from fxmix.training.engineer.taste import Taste

    mean = rules.returns(rules.DEFAULT_BPM, 3.0, Taste.mean())["reverb"]
    assert mean == C.REVERB_RETURN  # the corpus engineer's reverb at its mean taste and tempo
    ir = reverb_ir(SR)
    assert np.array_equal(ir, reverb_ir.__wrapped__(SR))
    assert ir.shape == (2, int(1.5 * SR))
    energy = np.cumsum(ir.astype(np.float64) ** 2, axis=-1)
    assert np.all(energy[:, int(1.3 * SR)] > (1 - 1e-6) * energy[:, -1])  # 60 dB down by 1.3 s
    assert np.abs(ir[:, : int(0.02 * SR)]).max() == 0.0  # freeverb's shortest comb: no output before 20 ms
    # the reverb sums its inputs: a send in either channel, or split between them, returns the same
    rng = np.random.default_rng(3)
    x = rng.standard_normal(SR // 2).astype(np.float32)
    left = reverb_board().process(np.stack([x, np.zeros_like(x)]), SR)
    split = reverb_board().process(np.stack([0.3 * x, 0.7 * x]), SR)
    assert np.abs(left - split).max() < 1e-4 * np.abs(left).max()
    conv = np.stack([np.convolve(x, ir[c])[: x.size] for c in range(2)])
    assert np.sqrt(np.mean((conv - left) ** 2) / np.mean(left**2)) < 1e-3  # linear, time invariant: its IR


def _juce_envelope(x: np.ndarray, attack_ms: float, release_ms: float, sr: int) -> np.ndarray:
    """JUCE BallisticsFilter (peak), written out sample by sample."""
    ca, cr = (np.exp(-2 * np.pi * 1000 / (sr * t)) for t in (attack_ms, release_ms))
    y, out = 0.0, np.empty(x.shape[-1])
    for i, v in enumerate(np.abs(x.astype(np.float64))):
        y = v + (ca if v > y else cr) * (y - v)
        out[i] = y
    return out


def test_compressor_envelope_is_juce_ballistics():
    x = signals.drums(0.25)[0]
    env = compressor_envelope(np.abs(x), 5.0, 120.0, SR)
    ref = _juce_envelope(x, 5.0, 120.0, SR)
    live = ref > 1e-5
    assert live.mean() > 0.9
    assert np.max(np.abs(env[live] / ref[live] - 1)) < 1e-4


# ---------------------------------------------------------------- renderer


def test_neutral_console_passes_the_tracks_through():
    x = _tracks().double()
    p = _params(reverb_send_db=[-60.0] * 4)
    mix = render_console(x, p)[0]
    ref = x[0].sum(dim=0)
    assert torch.linalg.norm(mix - ref) / torch.linalg.norm(ref) < 2e-3  # the -60 dB reverb


def test_pan_law_gain_and_master():
    x = _tracks(0.5).double()
    st = render_console_stages(x, _params(pan=[-1.0, 1.0, 0.0, 0.5], gain_db=[-6.0, 0.0, 3.0, 0.0]))
    v, d, b, o = st.compressed[0]
    pv, pd, pb, po = st.panned[0]
    assert torch.allclose(pv[0], 2**0.5 * 10 ** (-6 / 20) * v[0]) and pv[1].abs().max() < 1e-12
    assert torch.allclose(pd[1], 2**0.5 * d[1]) and pd[0].abs().max() < 1e-12
    assert torch.allclose(pb, 10 ** (3 / 20) * b)  # centre: 0 dB on both channels
    theta = 1.5 * np.pi / 4  # constant power: cos^2 + sin^2 = 1 (x 2 for the 0 dB centre)
    assert torch.allclose(po[0], 2**0.5 * np.cos(theta) * o[0]) and torch.allclose(
        po[1], 2**0.5 * np.sin(theta) * o[1]
    )
    loud = render_console(x, _params(master_gain_db=6.0))
    assert torch.allclose(loud, 10 ** (6 / 20) * render_console(x, _params()))


def test_compressor_reduces_a_steady_tone_by_its_static_curve():
    t = np.arange(SR // 2) / SR
    tone = 0.5 * np.sin(2 * np.pi * 200 * t)
    x = torch.from_numpy(np.stack([tone, tone])[None, None])
    one = torch.ones(1, 1, dtype=torch.float64)
    fast = replace(  # instant attack, slow release: the envelope sits on the tone's peak
        ConsoleParams.neutral(1, 1, dtype=torch.float64),
        comp_ratio=4 * one,
        comp_attack_ms=0.1 * one,
        comp_release_ms=2000 * one,
    )

    def gain_db(threshold_db: float) -> float:
        y = render_console_stages(x, replace(fast, comp_threshold_db=threshold_db * one)).compressed
        return 20 * np.log10(float(y[0, 0, 0, SR // 4 :].abs().max()) / np.abs(tone[SR // 4 :]).max())

    assert abs(gain_db(-26.0) - (1 / 4 - 1) * (20 * np.log10(0.5) + 26.0)) < 0.1
    assert abs(gain_db(-26.0) - gain_db(-20.0) - (1 - 1 / 4) * -6.0) < 0.01
    assert abs(gain_db(0.0)) < 1e-9  # below the threshold: untouched


def test_batch_items_are_independent_and_track_order_does_not_matter():
    x = _tracks(0.5).double()
    u = torch.randn(2, 4, UNIT_SIZE, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    p = ConsoleParams.from_unit(u, ["vocals", "drums", "bass", "other"])
    both = render_console(torch.cat([x, x.flip(1)]), p)
    for b in range(2):
        xb = x if b == 0 else x.flip(1)
        assert torch.allclose(both[b], render_console(xb, p.select(b))[0], atol=1e-9)
    perm = [2, 0, 3, 1]
    shuffled = p.select(0).map(lambda t: t[:, perm] if t.ndim > 1 else t)
    assert torch.allclose(render_console(x[:, perm], shuffled), both[:1], atol=1e-9)


# ---------------------------------------------------------------- gradients


def _small(n: int = 2048) -> torch.Tensor:
    song = signals.song(n / SR + 0.01)
    return torch.from_numpy(np.stack([song["vocals"], song["drums"]])[..., :n]).double()[None]


def _leaf(values, requires_grad=True):
    return torch.tensor(values, dtype=torch.float64, requires_grad=requires_grad)


def test_gradients_of_gain_pan_compressor_send_and_master_are_exact():
    x = _small()
    eq = torch.zeros(1, 2, len(eq_band_centers_hz()), dtype=torch.float64)
    timing = (
        torch.tensor([[5.0, 10.0]], dtype=torch.float64),
        torch.tensor([[80.0, 150.0]], dtype=torch.float64),
    )

    def mix(gain, pan, thr, ratio, send, master):
        p = ConsoleParams(gain, pan, eq, thr, ratio, *timing, send, master)
        return render_console(x, p)

    gain, pan, thr, ratio = (
        _leaf([[-3.0, 2.0]]),
        _leaf([[-0.3, 0.6]]),
        _leaf([[-31.0, -27.0]]),
        _leaf([[3.0, 5.0]]),
    )
    send, master = _leaf([[-12.0, -20.0]]), _leaf([1.5])
    p = ConsoleParams(gain, pan, eq, thr, ratio, *timing, send, master).map(torch.Tensor.detach)
    stages = render_console_stages(x, p)
    assert float((stages.compressed - stages.eq).abs().max()) > 1e-3  # the compressor is working
    inputs = (gain, pan, thr, ratio, send, master)
    assert torch.autograd.gradcheck(mix, inputs, eps=1e-6, atol=1e-6, rtol=1e-4, fast_mode=True)


def test_gradients_of_the_eq_are_exact():
    x = _small()
    ones = torch.ones(1, 2, dtype=torch.float64)

    def mix(eq):  # compressor at 1:1, whose gain does not depend on the envelope
        p = ConsoleParams(
            0 * ones, 0 * ones, eq, -30 * ones, ones, 10 * ones, 100 * ones, -20 * ones, ones[:, 0]
        )
        return render_console(x, p)[..., ::8]

    eq = _leaf(np.random.default_rng(0).uniform(-6, 6, (1, 2, len(eq_band_centers_hz()))))
    assert torch.autograd.gradcheck(mix, (eq,), eps=1e-6, atol=1e-6, rtol=1e-4, fast_mode=True)


def test_every_network_output_gets_a_gradient_through_the_console():
    x = _tracks(0.5)
    u = (0.5 * torch.randn(1, 4, UNIT_SIZE, generator=torch.Generator().manual_seed(0))).requires_grad_()
    master = torch.zeros(1, requires_grad=True)
    p = ConsoleParams.from_unit(u, ["vocals", "drums", "bass", "other"], master_u=master)
    p = replace(p, comp_threshold_db=p.comp_threshold_db - 30)  # compressing
    render_console(x, p).square().mean().backward()
    assert torch.isfinite(u.grad).all() and bool((u.grad.abs() > 0).all()) and master.grad.abs() > 0


def test_gradient_of_the_level_into_the_compressor_is_exact():
    x = _small(4096)
    k = len(eq_band_centers_hz())
    shape = torch.from_numpy(np.random.default_rng(1).uniform(-4, 4, (1, 2, k)))
    w = torch.randn(1, 2, 4096, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    base = replace(
        ConsoleParams.neutral(1, 2, ["vocals", "drums"], dtype=torch.float64),
        comp_threshold_db=torch.tensor([[-34.0, -30.0]], dtype=torch.float64),
        comp_ratio=torch.tensor([[4.0, 6.0]], dtype=torch.float64),
    )

    def loss(offset_db: torch.Tensor, envelope_gradient: bool = True) -> torch.Tensor:
        p = replace(base, eq_db=shape + offset_db)  # the same dB on every band: the level into the compressor
        return (render_console(x, p, envelope_gradient=envelope_gradient) * w).sum()

    offset = _leaf(0.0)
    loss(offset).backward()
    h = 0.01
    numeric = (loss(torch.tensor(h, dtype=torch.float64)) - loss(torch.tensor(-h, dtype=torch.float64))) / (
        2 * h
    )
    assert abs(float(offset.grad) - float(numeric)) < 2e-3 * abs(float(numeric))
    offset.grad = None
    loss(offset, envelope_gradient=False).backward()  # without the estimate: the compression is missed
    assert abs(float(offset.grad) - float(numeric)) > 0.05 * abs(float(numeric))

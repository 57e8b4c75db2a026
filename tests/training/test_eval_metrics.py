"""Evaluation metrics stay inside their documented bounds: mono targets, silent and extreme mixes."""

from __future__ import annotations

import numpy as np
import torch
from fxmix.model.losses import MultiResolutionSumDiffLoss
from fxmix.training.eval_metrics import (
    BOUNDS,
    LN_LUFS,
    Reference,
    ln,
    loudness,
    out_of_bounds,
    signal_metrics,
)
from support.signals import song

SR = 44100


def _mix(stems: dict, pans: dict) -> np.ndarray:
    out = 0
    for c, x in stems.items():
        th = (pans[c] + 1) * np.pi / 4
        out = out + x.mean(axis=0) * np.array([[np.cos(th)], [np.sin(th)]], np.float32) * np.float32(np.sqrt(2))
    return out.astype(np.float32)


def test_mono_target_does_not_explode():
    """A mono target's difference channel is empty: the training loss's spectral convergence divides by it and
    reads thousands; the evaluation's guarded distance stays in the range of a stereo target's."""
    stems = song(4.0)
    mono = _mix(stems, dict.fromkeys(stems, 0.0))
    assert np.array_equal(mono[0], mono[1])
    wide = _mix(stems, {"vocals": 0.0, "drums": 0.3, "bass": 0.0, "other": -0.6})
    stereo_target = _mix(stems, {"vocals": 0.1, "drums": -0.3, "bass": 0.0, "other": 0.5})

    def loss(target):
        return float(MultiResolutionSumDiffLoss()(torch.from_numpy(ln(wide, loudness(wide)))[None],
                                                  torch.from_numpy(ln(target, loudness(target)))[None]))

    on_mono = signal_metrics(wide, Reference.of(mono))["mrstft"]
    on_stereo = signal_metrics(wide, Reference.of(stereo_target))["mrstft"]
    print(f"mrstft vs mono target: loss {loss(mono):.1f}, guarded {on_mono:.2f}; "
          f"vs a stereo target: loss {loss(stereo_target):.3f}, guarded {on_stereo:.3f}")
    assert loss(mono) > 1000
    # the guard: the side channel's spectral convergence reads on the mid's scale (the log-magnitude term,
    # bounded, still tells that the mix is wide where the target is mono)
    assert on_stereo < on_mono < 10
    # a stereo target is judged exactly as the training loss judges it
    assert abs(on_stereo - loss(stereo_target)) < 1e-4


def test_every_metric_within_its_bound_on_extreme_mixes():
    stems = song(3.0)
    target = _mix(stems, dict.fromkeys(stems, 0.0))  # mono
    rng = np.random.default_rng(0)
    preds = {
        "silence": np.zeros_like(target),
        "one click": np.pad(np.ones((2, 1), np.float32), ((0, 0), (0, target.shape[1] - 1))),
        "anti-phase": np.stack([target[0], -target[0]]),
        "loud noise": rng.standard_normal(target.shape).astype(np.float32) * 30,
        "side only": np.stack([stems["drums"][0], -stems["drums"][0]]),
    }
    ref = Reference.of(target)
    for name, p in preds.items():
        m = signal_metrics(p, ref)
        print(name, {k: round(v, 2) for k, v in m.items()})
        assert not out_of_bounds(m), (name, m)
        assert all(np.isfinite(v) or k == "dynamics_err_db" for k, v in m.items()), name
    assert set(BOUNDS) >= set(m)


def test_ln_reference_level():
    x = song(2.0)["other"]
    assert abs(loudness(ln(x, loudness(x))) - LN_LUFS) < 0.01

"""Chunked inference: exact for a local network, any length, bounded error for the paper net."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from fxmix.dsp.errors import AudioInputError, ConfigError
from fxmix.model.apply import chunk_weights, chunking_error, mix_stems, plan_chunks, run_whole
from fxmix.model.registry import build_model


class LocalConvNet(torch.nn.Module):
    """A purely convolutional network (no global statistics): chunking must reproduce it exactly."""

    sample_rate = 1000
    n_stems = 4
    length_multiple = 4
    receptive_field_samples = 33

    def __init__(self):
        super().__init__()
        g = torch.Generator().manual_seed(0)
        self.weight = torch.nn.Parameter(0.1 * torch.randn(2, 8, 33, generator=g))

    def forward(self, stems):
        x = stems.reshape(stems.shape[0], 8, -1)
        return F.conv1d(F.pad(x, (16, 16)), self.weight)


def _stems(n: int, seed: int = 0, batch: int | None = None) -> np.ndarray:
    shape = (4, 2, n) if batch is None else (batch, 4, 2, n)
    return (0.1 * np.random.default_rng(seed).standard_normal(shape)).astype(np.float32)


@pytest.mark.parametrize("n", [1, 5, 199, 200, 201, 1234, 5003])
@pytest.mark.parametrize("batch_size", [1, 3])
def test_chunked_equals_whole_for_local_network(n, batch_size):
    model = LocalConvNet().eval()
    x = _stems(n, seed=n)
    whole = run_whole(model, x)
    chunked = mix_stems(model, x, chunk_s=0.3, overlap_s=0.02, batch_size=batch_size)
    assert chunked.shape == (2, n)
    assert float((chunked - whole).abs().max()) < 1e-5


def test_batched_input_and_plan():
    model = LocalConvNet().eval()
    x = _stems(3000, seed=1, batch=2)
    y = mix_stems(model, x, chunk_s=0.3, overlap_s=0.02)
    assert y.shape == (2, 2, 3000)
    assert float((y - run_whole(model, x)).abs().max()) < 1e-5
    plan = plan_chunks(model, 3000, chunk_s=0.3, overlap_s=0.02)
    assert plan.guard >= model.receptive_field_samples and plan.n_chunks > 5
    assert plan.starts[-1] + plan.core == 3000


@pytest.mark.parametrize("extra", [1, 37, 150, 299, 301, 1000])
@pytest.mark.parametrize("overlap_s", [0.02, 0.074])  # 0.074: the longest cross-fade these chunks allow
def test_plan_covers_every_sample(extra, overlap_s):
    """Cores start at 0, end at the song's end, overlap by a fade and their weights sum to 1 everywhere."""
    model = LocalConvNet()
    chunk = plan_chunks(model, 1, chunk_s=0.3, overlap_s=overlap_s).chunk
    plan = plan_chunks(model, chunk + extra, chunk_s=0.3, overlap_s=overlap_s)
    assert plan.starts[0] == 0 and plan.starts[-1] + plan.core == chunk + extra
    assert all(0 < b - a <= plan.core - plan.fade for a, b in zip(plan.starts, plan.starts[1:]))
    total = torch.zeros(chunk + extra)
    for k, s in enumerate(plan.starts):
        total[s : s + plan.core] += chunk_weights(plan, k)
    assert float((total - 1).abs().max()) < 1e-6


def test_paper_net_chunking_error_is_small_and_reported():
    torch.manual_seed(0)
    model = build_model("fxmix-tiny").eval()
    x = _stems(44100 * 3, seed=2)
    report = chunking_error(model, x, chunk_s=1.0, overlap_s=0.05)
    assert report["n_chunks"] >= 3
    assert report["snr_db"] > 25.0 and np.isfinite(report["max_abs"])
    # a song shorter than one chunk core takes one pass, identical to the whole-sequence output
    short = _stems(20000, seed=3)
    assert torch.equal(mix_stems(model, short, chunk_s=1.0), run_whole(model, short))


def test_rejects_bad_input_and_settings():
    model = LocalConvNet().eval()
    with pytest.raises(AudioInputError):
        mix_stems(model, np.zeros((3, 2, 100), np.float32))
    bad = _stems(100)
    bad[0, 0, 5] = np.nan
    with pytest.raises(AudioInputError):
        mix_stems(model, bad)
    with pytest.raises(ConfigError, match="receptive field"):
        mix_stems(model, _stems(100), guard_s=0.001)
    with pytest.raises(ConfigError, match="too short"):
        mix_stems(model, _stems(100), chunk_s=0.05)

"""Stems that start and end abruptly at full level: no click at their edges after the FIRs or the chain."""

import numpy as np
import pytest
from fxmix.dsp import constants as C
from fxmix.dsp.bands import band_centers_hz
from fxmix.dsp.chain import normalize_stem
from fxmix.dsp.fir import apply_fir, design_fir, edge_extension
from fxmix.dsp.profile import load_profile
from fxmix.dsp.stages import eq, panning
from support import signals

SR = signals.SR
EDGE = int(0.05 * SR)  # the first and last 50 ms


@pytest.fixture(scope="module")
def profile():
    return load_profile(C.REFERENCE_PROFILE)


def _edge_excess_db(y: np.ndarray) -> tuple[float, float]:
    """Peak of the first and of the last 50 ms over the peak of the rest (dB)."""
    inner = np.abs(y[:, EDGE:-EDGE]).max()
    head, tail = np.abs(y[:, :EDGE]).max(), np.abs(y[:, -EDGE:]).max()
    return 20 * np.log10(head / inner), 20 * np.log10(tail / inner)


@pytest.mark.parametrize("cls", ["vocals", "drums", "bass", "other"])
def test_no_click_at_abrupt_edges(profile, cls):
    """Cut mid-waveform at full level at both ends; filtered against silence, the EQ alone put clicks of
    up to +5 dB over the rest of these stems (+8 dB through the chain, where the compressor also let the
    abrupt start through uncompressed)."""
    x = signals.cut_at_full_level(getattr(signals, cls)(4.0))
    assert np.abs(x[:, [0, -1]]).min() > 0.4 * np.abs(x).max()  # the fixture really is cut at full level
    t = profile.targets[cls]
    outputs = {
        "eq": eq.apply(x, SR, eq.plan(x, SR, t.spectrum_db)),
        "panning": panning.apply(x, SR, panning.plan(x, SR, t.phi, cls)),
        "chain": normalize_stem(x, SR, cls, profile).audio,
    }
    for name, y in outputs.items():
        head, tail = _edge_excess_db(y)
        print(f"{cls} {name}: first/last 50 ms peak {head:+.1f} / {tail:+.1f} dB re the rest")
        assert head <= 1.0 and tail <= 1.0, name


def test_edge_extension_continues_the_waveform():
    """A steady tone cut anywhere is continued across both edges (linear prediction), so filtering the cut
    tone gives the uncut tone's output up to its edges; short, silent or click-only stems still get one."""
    n, d = 3 * SR, 4096
    t = np.arange(-d, n + d) / SR
    tone = (0.5 * np.sin(2 * np.pi * 220 * t + 1.0) + 0.2 * np.sin(2 * np.pi * 1330 * t)).astype(np.float32)
    x = tone[None, d:-d]
    head, tail = edge_extension(x, d)
    fade = np.cos(0.5 * np.pi * np.arange(d) / d) ** 2
    np.testing.assert_allclose(tail[0], tone[-d:] * fade, atol=0.02)
    np.testing.assert_allclose(head[0], tone[:d] * fade[::-1], atol=0.02)
    taps = design_fir(band_centers_hz(), np.linspace(12.0, -12.0, band_centers_hz().size), SR)
    y = apply_fir(x, taps)
    ideal = apply_fir(tone[None], taps)[:, d:-d]
    for edge in (slice(0, EDGE), slice(-EDGE, None)):  # against silence: errors of 6 % of the peak
        assert np.abs(y - ideal)[:, edge].max() < 1e-3 * np.abs(ideal).max()
    click = np.zeros((2, 48000), np.float32)  # one sample in silence: nothing to predict from
    click[:, 20] = 0.5
    for short in (np.full((2, 1), 0.5, np.float32), np.zeros((2, 3000), np.float32), x[:, :1500], click):
        h, tl = edge_extension(short, d)
        assert h.shape == tl.shape == (short.shape[0], d) and np.all(np.isfinite(h)) and np.all(np.isfinite(tl))
        assert np.abs(tl).max() <= np.abs(short).max() + 1e-6

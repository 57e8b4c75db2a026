"""The EQ refinement measures the finished spectrum where the -1 dBTP limiter may act (its gain dips
change the spectrum of a transient stem), and predicts it from the compressor output elsewhere."""

import numpy as np
import pytest
from fxmix.dsp import chain
from fxmix.dsp import constants as C
from fxmix.dsp.profile import load_profile
from fxmix.dsp.stages import loudness, panning
from scipy.signal import lfilter

SR = C.SAMPLE_RATE


def _stem(hit_amplitude: float, seconds: float = 6.0, seed: int = 0) -> np.ndarray:
    """A drum-like stem (60 Hz thumps over a coloured noise bed) with 2-ms noise hits of the given
    amplitude: large hits set the stem's true peak while leaving its loudness nearly alone."""
    rng = np.random.default_rng(seed)
    n = int(seconds * SR)
    t = np.arange(n) / SR
    x = lfilter([1.0], [1.0, -0.97], rng.standard_normal((2, n)), axis=-1) * 0.02
    x += np.sin(2 * np.pi * 60 * t) * np.exp(-((t % 0.5) / 0.08)) * 0.3
    hit = np.arange(int(0.002 * SR))
    for pos in rng.integers(0, n - hit.size, size=int(seconds * 2)):
        x[:, pos : pos + hit.size] += hit_amplitude * rng.standard_normal((2, hit.size)) * np.exp(-hit / (0.0005 * SR))
    return x.astype(np.float32)


@pytest.mark.parametrize("hit_amplitude", [0.0, 6.0, 20.0, 60.0])
def test_spectrum_measured_where_the_limiter_acts(monkeypatch, hit_amplitude):
    """Never 'predicted' where the limiter acts on the finished first pass (the stem the refinement's
    spectrum is of), and no needless measuring on a stem without hits."""
    seen = []  # (measured?, does the limiter act on the compressor output panned and levelled?)
    decide = chain._limiter_may_act

    def spy(x, sums, st, stages):
        panned = panning.apply(x, SR, st.result.params["panning"])
        acts = loudness.plan(panned, SR, st.targets.loudness_lufs).limiter_threshold_db is not None
        seen.append((decide(x, sums, st, stages), acts))
        return seen[-1][0]

    monkeypatch.setattr(chain, "_limiter_may_act", spy)
    chain.normalize_stem(_stem(hit_amplitude), SR, "drums", load_profile(C.REFERENCE_PROFILE))
    assert len(seen) == 1
    measured, acts = seen[0]
    assert measured or not acts
    if hit_amplitude == 0.0:
        assert not measured
    if hit_amplitude == 60.0:
        assert acts  # the fixture does what it is for

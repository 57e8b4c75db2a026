"""Running statistics and the streaming normalizer against the offline features/normalizer."""

from __future__ import annotations

import numpy as np
import pytest
from fxmix.dsp import constants as C
from fxmix.dsp import features as F
from fxmix.dsp.bands import band_centers_hz
from fxmix.dsp.chain import normalize_stem
from fxmix.dsp.profile import load_profile
from fxmix.dsp.streaming import TAU_S, RunningStats, StreamingNormalizer
from support import signals

SR = 44100
MID = (band_centers_hz() >= 100) & (band_centers_hz() <= 10000)


def _feed(obj, x, block):
    return [obj.update(x[:, i : i + block]) for i in range(0, x.shape[1], block)]


def test_running_features_match_offline_after_30s():
    x = signals.drums(30)
    rs = RunningStats(SR)
    _feed(rs, x, 1000)
    f, off = rs.features(), F.measure(x, SR)
    assert abs(rs.loudness.integrated_lufs - off.loudness_lufs) <= 1.0
    assert abs(f.loudness_lufs - off.loudness_lufs) <= 1.0
    assert np.abs(f.spectrum_db - off.spectrum_db)[MID].max() <= 2.0
    assert abs(f.mean_phi - off.mean_phi) <= 0.05
    assert abs(f.onset_peak_mean_db - off.onset_peak_mean_db) <= 1.0


def test_level_step_followed_within_time_constant():
    x = signals.noise(40)
    x[:, 20 * SR :] *= np.float32(10 ** (10 / 20))  # +10 dB at 20 s
    rs = RunningStats(SR)
    _feed(rs, x[:, : 20 * SR], 4096)
    before = rs.loudness.long_term_lufs
    _feed(rs, x[:, 20 * SR : int((20 + 0.5) * SR)], 4096)
    assert abs(rs.loudness.momentary_lufs - (before + 10)) <= 1.0  # momentary: 400 ms
    _feed(rs, x[:, int(20.5 * SR) : int((20 + 2.0 * TAU_S) * SR)], 4096)
    assert abs(rs.loudness.long_term_lufs - (before + 10)) <= 1.0  # documented: +10 dB within 2 tau


def test_state_roundtrip_and_freeze():
    x = signals.other(6)
    a = RunningStats(SR)
    _feed(a, x[:, : 3 * SR], 777)
    b = RunningStats(SR)
    b.load_state_dict(a.state_dict())
    _feed(a, x[:, 3 * SR :], 777)
    _feed(b, x[:, 3 * SR :], 512)
    assert np.allclose(a.features().spectrum_db, b.features().spectrum_db, atol=1e-6)
    assert abs(a.loudness.integrated_lufs - b.loudness.integrated_lufs) < 1e-6
    b.freeze()
    held = b.loudness.integrated_lufs
    b.update(10 * x[:, :SR])
    assert b.loudness.integrated_lufs == held


def test_block_size_independence_and_reset():
    x = signals.drums(3.0)
    outs = []
    nz = StreamingNormalizer(SR, "drums")
    for block in (64, 65, 512, 8193):
        nz.reset()
        outs.append(
            np.concatenate([nz.process(x[:, i : i + block]) for i in range(0, x.shape[1], block)], axis=1)
        )
    for y in outs[1:]:
        assert np.max(np.abs(y - outs[0])) <= 1e-4
    assert np.all(outs[0][:, : nz.latency_samples] == 0)  # latency = one hop
    assert np.all(np.isfinite(outs[0]))


def test_silence_in_silence_out():
    nz = StreamingNormalizer(SR, "vocals")
    y = nz.process(np.zeros((2, 3 * SR), np.float32))
    assert np.max(np.abs(y)) == 0.0


def _settled_vs_offline(cls: str, prof, seconds: float = 40.0, block: int = 4096):
    """Stream a stationary stem (a seeded 2-s excerpt of ``cls`` looped) and normalize it offline; returns
    (loudness difference LU, max band-spectrum difference dB over 100 Hz-10 kHz after level alignment) on
    the last 8 s. The loop makes the statistics stationary: the streaming statistics forget with a 5-s time
    constant, so on a stem whose content changes every few seconds they follow the local content while the
    offline plan averages the whole stem (by design, not an error)."""
    x = np.tile(getattr(signals, cls)(2.0), (1, int(seconds / 2)))
    nz = StreamingNormalizer(SR, cls, prof)
    y = np.concatenate([nz.process(x[:, i : i + block]) for i in range(0, x.shape[1], block)], axis=1)
    off = normalize_stem(x, SR, cls, prof)
    lat = nz.latency_samples
    ys, yo = y[:, lat:][:, -8 * SR :], off.audio[:, : x.shape[1] - lat][:, -8 * SR :]
    ls, lo = F.integrated_loudness(ys, SR), F.integrated_loudness(yo, SR)
    # level alignment: each spectrum is referenced to its own loudness (features.measure_spectrum)
    d_spec = np.abs(F.measure_spectrum(ys, SR, ls) - F.measure_spectrum(yo, SR, lo))[MID].max()
    return ls - lo, float(d_spec), ls


@pytest.mark.timeout(300)
@pytest.mark.parametrize("cls", ["vocals", "drums", "bass", "other"])
def test_streaming_normalizer_settles_to_offline(cls):
    prof = load_profile(C.REFERENCE_PROFILE)
    d_lu, d_spec_db, lufs = _settled_vs_offline(cls, prof)
    assert abs(d_lu) <= 1.0, f"{cls}: loudness {d_lu:+.2f} LU from the offline normalizer"
    assert d_spec_db <= 2.0, f"{cls}: spectrum up to {d_spec_db:.2f} dB from the offline normalizer"
    assert abs(lufs - prof.targets_for(cls).loudness_lufs) <= 1.0


def test_realtime_mode_never_waits_for_the_planner():
    """realtime=True: a planner that has not finished is skipped (parameters stay), never waited on."""
    import threading
    from concurrent.futures import ThreadPoolExecutor

    gate = threading.Event()
    ex = ThreadPoolExecutor(max_workers=1)
    nz = StreamingNormalizer(SR, "drums", executor=ex, realtime=True)
    job = nz.planner
    nz.planner = lambda snap: (gate.wait(30), job(snap))[1]  # a planner stuck until released
    x = signals.drums(2.0)
    before = nz.applied
    y = np.concatenate([nz.process(x[:, i : i + 512]) for i in range(0, x.shape[1], 512)], axis=1)
    assert nz.plans_skipped > 0 and nz.applied is before  # kept the parameters in force, did not block
    assert np.all(np.isfinite(y)) and np.max(np.abs(y)) > 0
    gate.set()
    nz.planner = job
    for i in range(0, 3 * SR, 512):  # the plan lands and planning resumes
        nz.process(x[:, (i % x.shape[1]) : (i % x.shape[1]) + 512])
    assert nz.applied is not before
    ex.shutdown(wait=True)

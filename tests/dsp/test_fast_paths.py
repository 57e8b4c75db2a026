"""The normalization's own replacements for scipy.signal and its cheaper forms of the same sums give what
the originals give: scipy's SOS loop loaded on its own, pyloudnorm's K-weighting coefficients, the
all-pole edge continuation, the compressor gain hold, the loudness of a sum measured without the sum,
the band sums without BLAS, the limited stem's loudness re-measured around its changes only, the
compressor gain curve the threshold search kept; and `fxmix normalize` starts without scipy.signal,
pyloudnorm or torch."""

import subprocess
import sys

import numpy as np
import pytest
import scipy.signal
from fxmix.dsp import constants as C
from fxmix.dsp import features, fir
from fxmix.dsp.bands import band_weights, weigh_bins
from fxmix.dsp.stages import compression
from scipy.linalg import solve_toeplitz
from support import signals

SR = C.SAMPLE_RATE


def _noise(shape, seed=0, colour=0.97):
    rng = np.random.default_rng(seed)
    return scipy.signal.lfilter([1.0], [1.0, -colour], rng.standard_normal(shape), axis=-1).astype(np.float32)


def test_k_weighting_coefficients_are_pyloudnorms():
    import pyloudnorm

    for rate in (44100, 48000, 22050):
        meter = pyloudnorm.Meter(rate)
        ref = np.concatenate([scipy.signal.tf2sos(f.b, f.a) for f in meter._filters.values()]).astype(np.float32)
        np.testing.assert_array_equal(features.k_weighting_sos(rate), ref)


def test_k_weighting_response_is_the_filters():
    f = np.fft.rfftfreq(16384, 1 / SR)
    _, h = scipy.signal.sosfreqz(features.k_weighting_sos(SR).astype(np.float64), worN=f, fs=SR)
    np.testing.assert_allclose(features.k_weighting_response(f, SR), h, rtol=1e-9, atol=1e-12)


def test_sos_loop_is_scipys_bit_for_bit():
    x = _noise((2, 100_003), seed=1) * 0.3
    sos = features.k_weighting_sos(SR)
    zi = (np.random.default_rng(2).standard_normal((sos.shape[0], 2, 2)) * 0.01).astype(np.float32)
    y, zf = features.sosfilt(sos, x, zi)
    y_ref, zf_ref = scipy.signal.sosfilt(sos, x, axis=-1, zi=zi)
    assert y.dtype == np.float32 and zf.shape == zf_ref.shape
    np.testing.assert_array_equal(y, y_ref)
    np.testing.assert_array_equal(zf, zf_ref)
    assert x.flags.writeable and not np.shares_memory(y, x)


def _lpc(h, order=fir.EDGE_LPC_ORDER):
    r = np.correlate(h, h, "full")[h.size - 1 : h.size + order]
    r[0] *= 1.0 + 1e-6
    return solve_toeplitz(r[:order], r[1:])


@pytest.mark.parametrize("colour", [0.5, 0.97, 0.999])
def test_all_pole_continuation_is_lfilters(colour):
    h = _noise(4 * fir.EDGE_LPC_ORDER + 300, seed=3, colour=colour).astype(np.float64)
    a = _lpc(h)
    zi = np.correlate(a, h[::-1][: a.size], "full")[a.size - 1 :]
    ref, _ = scipy.signal.lfilter([1.0], np.concatenate([[1.0], -a]), np.zeros(3000), zi=zi)
    got = fir._all_pole_run(a, h, 3000)
    assert got.shape == (3000,)
    np.testing.assert_allclose(got, ref, rtol=0, atol=1e-9 * np.abs(ref).max())


def _held_ratio_reference(y, detector, held):
    """The gain hold written plainly: y / d where d > 1e-7, else the last live value (held before any)."""
    d = np.atleast_2d(detector).astype(np.float32)
    yy = np.atleast_2d(y).astype(np.float32)
    out = np.empty(d.shape, np.float32)
    h = np.broadcast_to(np.reshape(np.asarray(held, np.float32), (-1,)), (d.shape[0],))
    for r in range(d.shape[0]):
        last = h[r]
        for i in range(d.shape[1]):
            if d[r, i] > 1e-7:
                last = np.float32(yy[r, i] / d[r, i])
            out[r, i] = last
    out = np.minimum(out, np.float32(1.0))
    return out if np.ndim(detector) > 1 else out[0]


@pytest.mark.parametrize("case", ["live", "gaps", "dead start", "all dead", "rows", "sparse"])
def test_held_ratio_holds_the_last_live_gain(case):
    rng = np.random.default_rng(4)
    d = np.abs(rng.standard_normal(3000)).astype(np.float32) + np.float32(1e-3)
    held = np.float32(0.6)
    if case == "gaps":
        d[100:180] = 0.0
        d[2990:] = 1e-9
    elif case == "dead start":
        d[:50] = 0.0
    elif case == "all dead":
        d[:] = 0.0
    elif case == "rows":
        d = d.reshape(2, -1)
        d[1, :20] = 0.0
        d[0, 700:710] = 5e-8
        held = np.array([0.3, 0.8], np.float32)
    elif case == "sparse":
        d[rng.random(d.size) < 0.5] = 0.0
    y = (d * rng.uniform(0.2, 1.2, d.shape)).astype(np.float32)  # some "gains" over 1: clipped to 1
    got = compression.held_ratio(y, d, held)
    assert got.dtype == np.float32 and got.shape == d.shape
    np.testing.assert_array_equal(got, _held_ratio_reference(y, d, held))


@pytest.mark.parametrize("seconds", [0.01, 3.3])
def test_loudness_of_a_sum_is_that_of_the_summed_array(seconds):
    n = int(seconds * SR)
    stems = [_noise((2, n), seed=s) * g for s, g in enumerate((0.05, 0.2, 0.01, 0.1))]
    total = np.zeros_like(stems[0])
    for x in stems:
        total += x
    assert features.summed_loudness(stems, SR) == features.integrated_loudness(total, SR)


def test_band_sums_are_the_weight_matrix_product():
    w = band_weights(C.ANALYSIS_FFT, SR)
    v = np.abs(np.random.default_rng(6).standard_normal((3, w.shape[1])))
    np.testing.assert_allclose(weigh_bins(w, v[0]), w @ v[0], rtol=1e-12)
    np.testing.assert_allclose(weigh_bins(w, v), v @ w.T, rtol=1e-12)


def test_loudness_of_a_stem_changed_in_places_is_that_of_the_changed_stem():
    """``KWeighted.patched`` re-filters only the chunks around the changes (a limiter's dips every second
    or so) and gives the loudness a whole new measurement gives: past the chunk after a change the stored
    energies stand, which differ from a new pass by the float32 filter's rounding only (measured 4e-5 of a
    segment's energy, 1.4e-6 LU)."""
    x = _noise((2, 20 * SR), seed=7) * 0.2
    y = x.copy()
    ranges = [(int(s * SR), int(s * SR) + 300) for s in np.arange(0.7, 19.5, 1.3)]
    for a, b in ranges:
        y[:, a:b] *= np.float32(0.25)
    meter = features.k_weighted(x, SR)
    patched = meter.patched(lambda a, b: y[:, a:b], ranges)
    fresh = features.k_weighted(y, SR)
    np.testing.assert_allclose(patched.energies, fresh.energies, rtol=1e-3)
    for gain in (1.0, 3.0):
        assert abs(patched.lufs(gain) - fresh.lufs(gain)) < 1e-4


@pytest.mark.parametrize("case", ["threshold limit", "bisection"])
def test_compressor_gain_kept_by_the_search_is_the_compressors(case):
    """``plan(..., keep_gain=True)`` decides as without, and the gain curve it keeps, applied, gives the
    compressor's output to the bit (one compressor run less for the chain)."""
    x = signals.drums(8.0)
    search = compression._Search(x, SR, "drums")
    before, at_min = search.fast(0.0), search.fast(C.COMPRESSOR_MIN_THRESHOLD_DB)
    mean, std = (at_min - 2.0, 0.3) if case == "threshold limit" else (0.5 * (before + at_min), 0.3)
    rep = compression.plan(x, SR, mean, std, "drums", keep_gain=True)
    plain = compression.plan(x, SR, mean, std, "drums")
    assert rep.params == plain.params and rep.after_db == plain.after_db and plain.gain is None
    assert rep.params.threshold_db < 0.0
    if case == "threshold limit":
        assert rep.params.threshold_db == C.COMPRESSOR_MIN_THRESHOLD_DB and rep.gain is not None
    if rep.gain is not None:
        assert rep.gain.dtype == np.float32 and rep.gain.shape == (x.shape[-1],)
        ref = compression.apply(x, SR, rep.params)
        np.testing.assert_array_equal(compression.apply(x, SR, rep.params, gain_curve=rep.gain), ref)
        out = x.copy()
        compression.apply(out, SR, rep.params, out=out, gain_curve=rep.gain)
        np.testing.assert_array_equal(out, ref)


def test_normalize_verb_starts_without_scipy_signal_pyloudnorm_or_torch():
    """The K-weighting then runs scipy's SOS loop loaded on its own: the same loudness, to the bit."""
    code = (
        "import sys, numpy as np, fxmix.cli, fxmix.verbs.offline, fxmix.dsp.chain;"
        "from fxmix.dsp import features;"
        "print(sorted(m for m in ('scipy.signal', 'pyloudnorm', 'torch') if m in sys.modules));"
        "x = np.sin(np.arange(2 * 44100 * 3) * 0.01).reshape(2, -1).astype(np.float32) * 0.3;"
        "print(features._SOS_KERNEL is not None, repr(features.integrated_loudness(x, 44100)))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split("\n")
    assert out[0] == "[]"
    x = np.sin(np.arange(2 * 44100 * 3) * 0.01).reshape(2, -1).astype(np.float32) * 0.3
    assert out[1] == f"True {features.integrated_loudness(x, 44100)!r}"

"""The parametric EQ fit: pedalboard's filter formulas, the hand-editing limits, its errors on real curves."""

from __future__ import annotations

import re
from importlib import resources

import numpy as np
import pedalboard
import pytest
from fxmix.dsp.audio import read_audio
from fxmix.dsp.bands import band_centers_hz
from fxmix.dsp.chain import normalize_stem
from fxmix.dsp.errors import ConfigError
from fxmix.dsp.profile import load_profile
from fxmix.model.names import training_profile
from fxmix.plugin_presets.peq import (
    FILTER_GAIN_LIMIT_DB,
    OUTPUT_GAIN_LIMIT_DB,
    PEAK_Q_RANGE,
    SHELF_Q_RANGE,
    Biquad,
    biquad_coefficients,
    curve_on_grid,
    fit_grid_hz,
    fit_parametric_eq,
    grid_power,
    response_db,
)
from fxmix.plugin_presets.rfxchain import JSFX_DIR
from scipy.signal import lfilter

SR = 44100
#: the acceptance bound on a fit's RMS error (dB)
RMS_BOUND_DB = 2.0


@pytest.mark.parametrize(
    "f",
    [
        Biquad("highpass", 80.0),
        Biquad("low_shelf", 150.0, -9.0, 0.6),
        Biquad("high_shelf", 6000.0, 7.5, 1.1),
        Biquad("peak", 1000.0, 6.0, 2.5),
        Biquad("peak", 40.0, -12.0, 6.0),
    ],
)
def test_fitted_filter_formulas_are_pedalboards(f):
    imp = np.zeros((1, 4096), np.float32)
    imp[0, 0] = 1.0
    kw = f.to_dict()
    y = getattr(pedalboard, kw.pop("type"))(**kw)(imp, SR)[0]
    b, a = biquad_coefficients(f, SR)
    np.testing.assert_allclose(y, lfilter(b, a, imp[0].astype(np.float64)), atol=2e-5)
    # the summed response is the filter's own magnitude response
    freqs = np.array([50.0, 500.0, 5000.0])
    long_imp = np.zeros(1 << 16)
    long_imp[0] = 1.0
    spectrum = np.abs(np.fft.rfft(lfilter(b, a, long_imp)))
    bins = np.round(freqs / SR * (1 << 16)).astype(int)
    np.testing.assert_allclose(
        response_db([f], bins * SR / (1 << 16), SR), 20 * np.log10(spectrum[bins]), atol=0.01
    )


def test_unweighted_fit_of_a_smooth_curve_is_close(assert_usable):
    freqs = band_centers_hz()
    curve = (
        8 * np.exp(-((np.log2(freqs / 2500.0)) ** 2) / 0.5)
        - 6 * (freqs < 80)
        + 3 * np.tanh(np.log2(freqs / 8000))
    )
    fit = fit_parametric_eq(freqs, curve, SR)
    assert fit.rms_error_db < 0.5
    assert len([f for f in fit.filters if f.kind == "peak"]) <= 6
    assert_usable(fit, "smooth curve")


def test_limits_hold_on_a_curve_beyond_them(assert_usable):
    """A curve no hand-set EQ draws (+-30 dB, 1/6-octave spikes): every filter, the output gain and the Q stay
    inside the limits; the error says what was given up."""
    freqs = band_centers_hz()
    curve = np.where(np.arange(freqs.size) % 4 == 0, 30.0, -30.0) + 20 * np.tanh(np.log2(freqs / 1000))
    fit = fit_parametric_eq(freqs, curve, SR)
    assert_usable(fit, "spiky curve")
    grid = fit_grid_hz()
    err = fit.response_db(grid, SR) - curve_on_grid(freqs, curve, grid)
    assert fit.rms_error_db == pytest.approx(np.sqrt(np.mean(err**2)))
    assert fit.max_error_db == pytest.approx(np.abs(err).max())
    assert fit.rms_error_db > 10.0  # honest: the spikes are not drawn
    assert "curve error RMS" in fit.summary() and fit.error_dict()["fit_range_hz"] == [30.0, 16000.0]


def test_fit_limits_fit_the_shipped_jsfx_sliders():
    """Every value the fit exports lies inside the PEQ JSFX's slider ranges (the user edits it there)."""
    text = (JSFX_DIR / "fxmix_peq.jsfx").read_text()
    ranges = {
        name: (float(lo), float(hi))
        for lo, hi, name in re.findall(r"^slider\d+:[^<]*<([-\d.]+),([-\d.]+),[^>]*>(.*)$", text, re.M)
    }
    gain_names = [n for n in ranges if n.endswith("gain (dB)") and n != "Output gain (dB)"]
    assert len(gain_names) == 8
    for n in gain_names:
        assert ranges[n][0] <= -FILTER_GAIN_LIMIT_DB and ranges[n][1] >= FILTER_GAIN_LIMIT_DB, n
    assert (
        ranges["Output gain (dB)"][0]
        <= -OUTPUT_GAIN_LIMIT_DB
        <= OUTPUT_GAIN_LIMIT_DB
        <= ranges["Output gain (dB)"][1]
    )
    for n, (lo, hi) in ranges.items():
        if n.endswith(" Q"):
            want = SHELF_Q_RANGE if "shelf" in n else PEAK_Q_RANGE
            assert lo <= want[0] and hi >= want[1], n


def test_bad_fit_inputs_name_the_argument():
    freqs = band_centers_hz()
    with pytest.raises(ConfigError, match="n_peaks"):
        fit_parametric_eq(freqs, np.zeros_like(freqs), SR, n_peaks=7)
    with pytest.raises(ConfigError, match="equal-length"):
        fit_parametric_eq(freqs, np.zeros(3), SR)
    with pytest.raises(ConfigError, match="stem_power"):
        fit_parametric_eq(freqs, np.zeros_like(freqs), SR, stem_power=np.ones(5))


@pytest.fixture(scope="module")
def demo_curves():
    """The EQ stage's decisions on the bundled demo stems (as `fxmix demo` takes them: the default model's
    training profile, every stage), with each stem's power on the fit grid."""
    profile = load_profile(training_profile("default"))
    demo = resources.files("fxmix").joinpath("demo")
    out = {}
    for c in ("vocals", "drums", "bass", "other"):
        x = read_audio(demo.joinpath(f"{c}.flac")).audio
        eq = normalize_stem(x, SR, c, profile, where=c).params["eq"]
        out[c] = (eq, grid_power(x, SR, fit_grid_hz()))
    return out


def _rendered_response_db(fit, freqs_hz: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(frequencies, dB): the fitted EQ's magnitude rendered as the shipped PEQ JSFX computes it (output gain,
    then each filter's RBJ biquad, in double precision) on an impulse, at the FFT bins (2^18 points) nearest
    ``freqs_hz``."""
    n = 1 << 18
    y = np.zeros(n)
    y[0] = 10 ** (fit.gain_db / 20)
    for f in fit.filters:
        y = lfilter(*biquad_coefficients(f, SR), y)
    bins = np.round(np.asarray(freqs_hz) / SR * n).astype(int)
    return bins * SR / n, 20 * np.log10(np.abs(np.fft.rfft(y))[bins])


def test_parametric_fit_on_the_demo_curves(demo_curves, assert_usable):
    """Acceptance: on the demo's EQ curves, the fit the export writes (pedalboard chain, .RfxChain) has every
    filter within +-15 dB, the output gain within +-12 dB, no fighting or duplicate peaks, and an RMS error
    <= 2 dB: the plain curve error (every point of 30 Hz-16 kHz alike, the curve as the EQ stage applies it),
    measured here on the fit rendered as the JSFX computes it, and the stem error (what the stem hears).

    Not held: the RMS over the curve's 55 band points alone (printed): where neighbouring 1/6-octave bands
    zig-zag by 10-30 dB (the vocals between 281 Hz and 1.4 kHz) 6 peaks cannot draw every corner.
    """
    grid = fit_grid_hz()
    for c, (eq, power) in demo_curves.items():
        fit = fit_parametric_eq(eq.freqs_hz, eq.gain_db, SR, stem_power=power)
        at, rendered = _rendered_response_db(fit, grid)
        target = curve_on_grid(eq.freqs_hz, eq.gain_db, at)
        plain_rms = float(np.sqrt(np.mean((rendered - target) ** 2)))
        freqs, gains = np.asarray(eq.freqs_hz), np.asarray(eq.gain_db)
        inside = (freqs >= fit.fmin_hz) & (freqs <= fit.fmax_hz)
        band_rms = float(np.sqrt(np.mean((fit.response_db(freqs[inside], SR) - gains[inside]) ** 2)))
        print(f"{c}: {fit.summary()}; at the {inside.sum()} band points RMS {band_rms:.2f} dB")
        assert_usable(fit, c)
        assert fit.rms_error_db == pytest.approx(plain_rms, abs=0.01)  # the printed error is the rendered one
        assert plain_rms <= RMS_BOUND_DB, c
        assert fit.stem_rms_error_db <= RMS_BOUND_DB, c

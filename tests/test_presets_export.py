"""Parametric fit, exported chains and .RfxChain files measured against fxmix's own normalization."""

from __future__ import annotations

import json
import re

import numpy as np
import pedalboard
import pytest
import signals
from fxmix.dsp.bands import band_centers_hz
from fxmix.dsp.chain import apply_params, normalize_stem
from fxmix.dsp.features import integrated_loudness, measure_spectrum
from fxmix.dsp.profile import load_profile
from fxmix.plugin_presets.cli import preset_main
from fxmix.plugin_presets.exporters import (
    JSFX,
    JSFX_DIR,
    RFX_SLIDERS,
    apply_pedalboard_chain,
    build_chain,
    load_pedalboard_chain,
)
from fxmix.plugin_presets.peq import Biquad, biquad_coefficients, fit_parametric_eq
from fxmix.plugin_presets.schema import load_preset
from scipy.signal import lfilter

SR = 44100


@pytest.fixture(scope="module")
def decided():
    prof = load_profile("musdb18-reference")
    out = {}
    for c, x in signals.song(6.0, seed=0).items():
        res = normalize_stem(x, SR, c, prof)
        out[c] = (x, res, build_chain(x, SR, res.params, name=c, class_name=c))
    return out


@pytest.mark.parametrize(
    "f",
    [
        Biquad("highpass", 80.0),
        Biquad("low_shelf", 150.0, -9.0, 0.6),
        Biquad("high_shelf", 6000.0, 7.5, 1.1),
        Biquad("peak", 1000.0, 6.0, 2.5),
    ],
)
def test_fitted_filter_formulas_are_pedalboards(f):
    imp = np.zeros((1, 4096), np.float32)
    imp[0, 0] = 1.0
    kw = f.to_dict()
    y = getattr(pedalboard, kw.pop("type"))(**kw)(imp, SR)[0]
    b, a = biquad_coefficients(f, SR)
    np.testing.assert_allclose(y, lfilter(b, a, imp[0].astype(np.float64)), atol=2e-5)


def test_parametric_fit_error_on_the_test_stems(decided):
    for c, (_x, res, chain) in decided.items():
        eq = res.params["eq"]
        fit = chain.eq
        print(
            f"{c}: parametric EQ fit, {len(fit.filters)} filters: stem-spectrum RMS {fit.stem_rms_error_db:.2f} dB, "
            f"raw curve RMS {fit.rms_error_db:.2f} dB (30 Hz-16 kHz; curve span {np.ptp(eq.gain_db):.1f} dB)"
        )
        assert fit.stem_rms_error_db <= 1.5
        assert fit.rms_error_db <= 3.0


def test_unweighted_fit_of_a_smooth_curve_is_close():
    freqs = band_centers_hz()
    curve = (
        8 * np.exp(-((np.log2(freqs / 2500.0)) ** 2) / 0.5)
        - 6 * (freqs < 80)
        + 3 * np.tanh(np.log2(freqs / 8000))
    )
    fit = fit_parametric_eq(freqs, curve, SR)
    assert fit.rms_error_db < 0.5
    assert len([f for f in fit.filters if f.kind == "peak"]) <= 6


def test_pedalboard_round_trip_matches_fxmix(decided, tmp_path):
    fc = band_centers_hz()
    mid = (fc >= 100) & (fc <= 10000)
    for c, (x, res, chain) in decided.items():
        path = tmp_path / f"{c}.pedalboard.json"
        path.write_text(json.dumps(chain.pedalboard_dict()))
        y = apply_pedalboard_chain(path, x, SR)
        lufs_ref, lufs = integrated_loudness(res.audio, SR), integrated_loudness(y, SR)
        diff = measure_spectrum(y, SR, lufs_ref)[mid] - measure_spectrum(res.audio, SR, lufs_ref)[mid]
        rms = float(np.sqrt(np.mean(diff**2)))
        print(
            f"{c}: {lufs:.2f} vs {lufs_ref:.2f} LUFS; band spectrum 100 Hz-10 kHz: RMS {rms:.2f} dB, "
            f"max |diff| {np.abs(diff).max():.2f} dB"
        )
        assert abs(lufs - lufs_ref) <= 1.0
        assert rms <= 2.0
        assert np.percentile(np.abs(diff), 90) <= 3.0
        if c in ("drums", "bass"):
            assert np.abs(diff).max() <= 2.0
        board = load_pedalboard_chain(path)
        assert isinstance(board, pedalboard.Pedalboard) and len(board) == len(chain.plugins())


def test_rfxchain_structure_and_values(decided, tmp_path):
    x, res, chain = decided["vocals"]
    text = chain.rfxchain_text()
    lines = text.splitlines()
    heads = [i for i, line in enumerate(lines) if line.startswith("<JS ")]
    assert len(heads) == 3 and lines.count("BYPASS 0 0 0") == 3 and lines.count(">") == 3
    values = chain.jsfx_sliders()
    for i, key in zip(heads, ("peq", "comp", "utility")):
        path, n = JSFX[key]
        assert lines[i] == f'<JS "{path}" ""' and lines[i - 1] == "BYPASS 0 0 0" and lines[i + 2] == ">"
        assert re.fullmatch(r"FXID \{[0-9A-F-]{36}\}", lines[i + 4])
        tokens = lines[i + 1].split()
        assert len(tokens) == RFX_SLIDERS and tokens[n:] == ["-"] * (RFX_SLIDERS - n)
        np.testing.assert_allclose([float(t) for t in tokens[:n]], values[key], rtol=1e-9, atol=1e-9)
        # the shipped JSFX declares exactly n sliders
        jsfx = (JSFX_DIR / path.split("/")[-1]).read_text()
        assert sorted(int(m) for m in re.findall(r"^slider(\d+):", jsfx, re.M)) == list(range(1, n + 1))
    peq = values["peq"]
    assert peq[0] == pytest.approx(chain.eq.gain_db)
    comp = res.params["compression"]
    assert values["comp"][1:] == [comp.threshold_db, comp.ratio, comp.attack_ms, comp.release_ms]
    assert values["utility"][:3] == [chain.left_gain_db, chain.right_gain_db, chain.gain_db]


def test_json_preset_export_loads_back_and_replays(tmp_path):
    stems = tmp_path / "stems"
    stems.mkdir()
    import soundfile as sf

    x = signals.bass(5.0, seed=4)
    sf.write(stems / "bass.wav", x.T, SR, subtype="FLOAT")
    assert preset_main(["export", str(stems), "-o", str(tmp_path / "out"), "--format", "json"]) == 0
    p = load_preset(tmp_path / "out" / "bass.preset.json")
    params = p.decisions["bass"]["params"]
    ref = normalize_stem(x, SR, "bass", load_profile("musdb18-reference")).audio
    y = apply_params(x, SR, params)
    assert abs(integrated_loudness(y, SR) - integrated_loudness(ref, SR)) < 0.05

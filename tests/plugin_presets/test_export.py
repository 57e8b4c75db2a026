"""Parametric fit, exported chains and .RfxChain files measured against fxmix's own normalization."""

from __future__ import annotations

import json
import re

import numpy as np
import pedalboard
import pytest
import soundfile as sf
from fxmix.dsp.bands import band_centers_hz
from fxmix.dsp.chain import apply_params, normalize_stem
from fxmix.dsp.errors import ConfigError
from fxmix.dsp.features import integrated_loudness, measure_spectrum
from fxmix.dsp.params import CompressorParams
from fxmix.dsp.profile import load_profile
from fxmix.dsp.stages.loudness import plan as plan_loudness
from fxmix.dsp.stages.loudness import true_peak_db
from fxmix.plugin_presets.exporters import (
    LinkedCompressor,
    apply_pedalboard_chain,
    build_chain,
    load_pedalboard_chain,
)
from fxmix.plugin_presets.rfxchain import EFFECTS_SUBDIR, JSFX, JSFX_DIR, RESOURCE_PATHS, RFX_SLIDERS
from fxmix.plugin_presets.schema import load_preset
from support import signals

from fxmix.verbs.preset import main as preset_main

SR = 44100


@pytest.fixture(scope="module")
def decided():
    prof = load_profile("musdb18-reference")
    out = {}
    for c, x in signals.song(6.0, seed=0).items():
        res = normalize_stem(x, SR, c, prof)
        out[c] = (x, res, build_chain(x, SR, res.params, name=c, class_name=c))
    return out


def test_parametric_fit_error_on_the_test_stems(decided, assert_usable):
    """The exported fit stays within the hand-editing limits and close to what the stem hears on the test
    stems' curves (spans up to 48 dB)."""
    for c, (_x, res, chain) in decided.items():
        eq = res.params["eq"]
        fit = chain.eq
        print(
            f"{c}: parametric EQ fit, {len(fit.filters)} filters: stem-spectrum RMS {fit.stem_rms_error_db:.2f} dB, "
            f"raw curve RMS {fit.rms_error_db:.2f} dB (30 Hz-16 kHz; curve span {np.ptp(eq.gain_db):.1f} dB)"
        )
        assert_usable(fit, c)
        assert fit.stem_rms_error_db <= 1.5
        assert fit.rms_error_db <= 3.0


def _band_errors(y, ref):
    """(LU difference, per-band dB differences 100 Hz-10 kHz) of ``y`` against ``ref``."""
    fc = band_centers_hz()
    mid = (fc >= 100) & (fc <= 10000)
    lufs_ref = integrated_loudness(ref, SR)
    diff = measure_spectrum(y, SR, lufs_ref)[mid] - measure_spectrum(ref, SR, lufs_ref)[mid]
    return integrated_loudness(y, SR) - lufs_ref, diff


def _reaper_emulation(chain, x):
    """The .RfxChain's processing in Python: the JSFX are RBJ biquads (pedalboard's), the stereo-linked
    JUCE-ballistics compressor (LinkedCompressor) and per-channel gains."""
    plugins = [pedalboard.Gain(gain_db=chain.eq.gain_db)]
    for f in chain.eq.filters:
        kw = f.to_dict()
        plugins.append(getattr(pedalboard, kw.pop("type"))(**kw))
    y = pedalboard.Pedalboard(plugins)(x, SR)
    c = chain.compressor
    y = y * np.float32(10 ** (c.input_gain_db / 20))
    if c.ratio > 1.0 and c.threshold_db < 0.0:
        y = LinkedCompressor(c.threshold_db, c.ratio, c.attack_ms, c.release_ms)(y, SR)
    gains_db = np.array([[chain.left_gain_db], [chain.right_gain_db]]) + chain.gain_db
    return (y * 10 ** (gains_db / 20)).astype(np.float32)


def test_pedalboard_round_trip_matches_fxmix(decided, tmp_path):
    """Export -> load -> apply matches fxmix's normalization within 1 LU and every band
    (1/6 octave, 100 Hz-10 kHz) within 2 dB, for every class."""
    for c, (x, res, chain) in decided.items():
        written = chain.write_pedalboard(tmp_path / f"{c}.pedalboard.json")
        assert [p.name for p in written] == [f"{c}.eq.wav", f"{c}.pan.wav", f"{c}.pedalboard.json"]
        y = apply_pedalboard_chain(written[-1], x, SR)
        assert y.shape == res.audio.shape and y.dtype == np.float32
        lu, diff = _band_errors(y, res.audio)
        rms = float(np.sqrt(np.mean(diff**2)))
        wave_db = 20 * np.log10(np.linalg.norm(y - res.audio) / np.linalg.norm(res.audio))
        ra_lu, ra_diff = _band_errors(_reaper_emulation(chain, x), res.audio)
        print(
            f"{c}: pedalboard round trip: LU diff {lu:+.4f}, max band error {np.abs(diff).max():.4f} dB, "
            f"RMS band error {rms:.4f} dB (waveform error {wave_db:.0f} dB); parametric fit RMS "
            f"{chain.eq.stem_rms_error_db:.2f} dB (stem) / {chain.eq.rms_error_db:.2f} dB (curve); "
            f".RfxChain approximation: LU diff {ra_lu:+.2f}, max band {np.abs(ra_diff).max():.2f} dB, "
            f"RMS {np.sqrt(np.mean(ra_diff**2)):.2f} dB"
        )
        assert abs(lu) <= 1.0
        assert np.abs(diff).max() <= 2.0
        assert rms <= 0.5
        # the parametric approximation (what Reaper gets) stays a close one
        assert abs(ra_lu) <= 1.0 and np.sqrt(np.mean(ra_diff**2)) <= 2.0
        loaded = load_pedalboard_chain(written[-1])
        d = json.loads(written[-1].read_text())
        assert loaded.n_plugins == len(d["plugins"]) and loaded.sample_rate == SR
        assert all(isinstance(b, pedalboard.Pedalboard) for b in loaded.boards)
        assert [p["type"] for p in d["plugins"]][0] == "Convolution"
        assert len(d["parametric_eq"]["filters"]) == len(chain.eq.filters)
        # the fit's errors travel with it
        assert d["parametric_eq"]["rms_error_db"] == pytest.approx(chain.eq.rms_error_db, abs=1e-3)
        assert d["parametric_eq"]["max_error_db"] == pytest.approx(chain.eq.max_error_db, abs=1e-3)
        assert d["parametric_eq"]["stem_rms_error_db"] == pytest.approx(chain.eq.stem_rms_error_db, abs=1e-3)
        assert d["parametric_eq"]["fit_range_hz"] == [30.0, 16000.0]


def test_limiter_and_linked_compressor_round_trip(decided, tmp_path):
    """Every stage with the -1 dBTP limiter engaged and the compressor on: the exported chain equals
    fxmix's own replay of the params (apply_params) sample for sample (float32 rounding)."""
    x, res, _ = decided["drums"]
    params = dict(res.params)
    params["compression"] = CompressorParams(-24.0, 4.0, 5.0, 150.0, res.params["compression"].input_gain_db)
    pre = apply_params(x, SR, {k: v for k, v in params.items() if k != "loudness"})
    params["loudness"] = plan_loudness(pre, SR, -8.0)
    assert params["loudness"].limiter_threshold_db is not None  # the limiter is engaged
    ref = apply_params(x, SR, params)
    chain = build_chain(x, SR, params, name="drums", class_name="drums")
    path = chain.write_pedalboard(tmp_path / "drums.pedalboard.json")[-1]
    kinds = [p["type"] for p in json.loads(path.read_text())["plugins"]]
    assert kinds == ["Convolution", "Gain", "LinkedCompressor", "Convolution", "Gain", "TruePeakLimiter"]
    y = apply_pedalboard_chain(path, x, SR)
    wave_db = 20 * np.log10(np.linalg.norm(y - ref) / np.linalg.norm(ref))
    lu, diff = _band_errors(y, ref)
    print(f"limiter + compressor round trip: waveform error {wave_db:.0f} dB, LU diff {lu:+.4f}")
    assert wave_db < -60.0 and abs(lu) < 0.01 and np.abs(diff).max() < 0.05
    assert true_peak_db(y) <= -1.0 + 0.05


def test_bad_pedalboard_chains_name_the_key(decided, tmp_path):
    _, _, chain = decided["bass"]
    path = chain.write_pedalboard(tmp_path / "bass.pedalboard.json")[-1]
    good = json.loads(path.read_text())
    cases = [
        (lambda d: d.update(version=1), "'version'"),
        (lambda d: d.update(sample_rate="fast"), "'sample_rate'"),
        (lambda d: d["plugins"].append({"type": "Chorus"}), f"plugins[{len(good['plugins'])}]"),
        (lambda d: d["plugins"][1].update(gain_db="loud"), "'gain_db'"),
        (lambda d: d["plugins"].append({"type": "TruePeakLimiter", "threshold_db": 2.0}), "threshold_db"),
        (lambda d: d["plugins"].append({"type": "Convolution"}), "impulse_response_filename"),
        (lambda d: d["plugins"][0].update(q=1.0), "unknown ['q']"),
        (lambda d: d["plugins"][0].update(impulse_response_filename="nope.wav"), "nope.wav"),
        (
            lambda d: d["plugins"].append(
                {
                    "type": "LinkedCompressor",
                    "threshold_db": 3.0,
                    "ratio": 2.0,
                    "attack_ms": 5.0,
                    "release_ms": 50.0,
                }
            ),
            "threshold_db",
        ),
    ]
    for mutate, key in cases:
        d = json.loads(json.dumps(good))
        mutate(d)
        with pytest.raises(ConfigError) as err:
            load_pedalboard_chain(d, base_dir=tmp_path)
        assert key in str(err.value), str(err.value)
    x = signals.bass(1.0, seed=1)
    with pytest.raises(ConfigError, match="44100 Hz"):
        apply_pedalboard_chain(path, x, 48000)


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


def test_rfxchain_export_ships_its_jsfx_and_says_how_to_install(tmp_path, capsys):
    """`preset export --format rfxchain`: the JSFX every chain loads are in OUT/Effects/fxmix/, byte for byte
    the shipped ones; the output names the EQ fit's errors and the install steps for each system."""
    stems = tmp_path / "stems"
    stems.mkdir()
    sf.write(stems / "vocals.wav", signals.vocals(4.0, seed=3).T, SR, subtype="FLOAT")
    out = tmp_path / "out"
    assert preset_main(["export", str(stems), "-o", str(out), "--format", "rfxchain"]) == 0
    printed = capsys.readouterr().out
    chain = (out / "vocals.RfxChain").read_text()
    loaded = re.findall(r'^<JS "([^"]+)" ""$', chain, re.M)
    assert loaded == [JSFX[k][0] for k in ("peq", "comp", "utility")]
    for path in loaded:
        copied = out / "Effects" / path
        assert copied.parent == out / EFFECTS_SUBDIR
        assert copied.read_bytes() == (JSFX_DIR / copied.name).read_bytes(), path
        assert str(copied) in printed
    assert sorted(p.name for p in (out / EFFECTS_SUBDIR).iterdir()) == sorted(
        p.name for p in JSFX_DIR.glob("*.jsfx")
    )
    # the fit's errors, then where things go and how to load the chain
    fit_line = next(line for line in printed.splitlines() if line.strip().startswith("vocals: parametric EQ"))
    assert re.search(r"curve error RMS \d+\.\d+ dB, max \d+\.\d+ dB \(30 Hz-16 kHz\)", fit_line)
    assert re.search(r"stem error RMS \d+\.\d+ dB, max \d+\.\d+ dB", fit_line)
    for system, path in RESOURCE_PATHS.items():
        assert f"{system}:" in printed and path in printed
    assert str(out / EFFECTS_SUBDIR) in printed and "FXChains" in printed and "vocals.RfxChain" in printed
    assert "Load FX chain" in printed
    # a second export into the same folder replaces the copies (no stale temporaries)
    assert preset_main(["export", str(stems), "-o", str(out), "--format", "rfxchain"]) == 0
    assert sorted(p.name for p in (out / EFFECTS_SUBDIR).iterdir()) == sorted(
        p.name for p in JSFX_DIR.glob("*.jsfx")
    )


def test_json_preset_export_loads_back_and_replays(tmp_path):
    stems = tmp_path / "stems"
    stems.mkdir()
    x = signals.bass(5.0, seed=4)
    sf.write(stems / "bass.wav", x.T, SR, subtype="FLOAT")
    assert preset_main(["export", str(stems), "-o", str(tmp_path / "out"), "--format", "json"]) == 0
    p = load_preset(tmp_path / "out" / "bass.preset.json")
    params = p.decisions["bass"]["params"]
    ref = normalize_stem(x, SR, "bass", p.load_profile()).audio  # the default model's training profile
    y = apply_params(x, SR, params)
    assert abs(integrated_loudness(y, SR) - integrated_loudness(ref, SR)) < 0.05

"""The profile fit and the calibration compare measure what the reference measures: the dataset spectrum
as a mean of linear magnitudes, and the loudness feature after the reference's compression search."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import soundfile as sf
from fxmix.dsp import constants as C
from fxmix.dsp.bands import band_centers_hz
from fxmix.dsp.chain import normalize_stem
from fxmix.dsp.features import integrated_loudness, onset_boundaries, onset_peak_stats, peak_normalize
from fxmix.dsp.profile import load_profile
from fxmix.dsp.profile_fit import (
    finalize_stage,
    find_songs,
    fit_profile,
    linear_mean_spectra,
    reference_compressed,
    run_pass,
)
from fxmix.dsp.stages import compression
from fxmix.training.engineer.calibration import compare_profiles

SR = C.SAMPLE_RATE
CENTERS = band_centers_hz()
#: the reference's vocals onset band (features_MUSDB18: mean -14.24 dB, std 1.37 dB)
VOCALS_MEAN, VOCALS_STD = -14.24, 1.37


def _tilted_noise(tilt_db_per_oct: float, seconds: float, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    n = int(seconds * SR)
    f = np.maximum(np.fft.rfftfreq(n, 1 / SR), 20.0)
    spec = np.fft.rfft(rng.standard_normal((2, n))) * 10 ** (tilt_db_per_oct * np.log2(f / 1000.0) / 20)
    x = np.fft.irfft(spec, n)
    return (x / np.abs(x).max() * 0.3).astype(np.float32)


def _notes(seconds: float, accents: bool) -> np.ndarray:
    """Harmonic notes every 0.5 s with a 30-ms rise (so a 7.5-ms attack catches their peaks) and a decay;
    all at one level (onset peaks identical: the -10 dB feature no compression re-normalized can move) or
    with every fourth note accented by 6 dB."""
    n = int(seconds * SR)
    t = np.arange(n) / SR
    ph = t % 0.5
    env = np.minimum(ph / 0.03, 1.0) * np.exp(-np.maximum(ph - 0.03, 0.0) * 3.0)
    if accents:
        env *= np.where((t // 0.5) % 4 == 0, 2.0, 1.0)
    tone = sum(np.sin(2 * np.pi * 196.0 * k * t) / k for k in range(1, 6))
    x = (0.2 * env * tone).astype(np.float32)
    return np.stack([x, x])


def test_linear_mean_spectrum_differs_from_the_db_mean_and_the_compare_uses_it(tmp_path):
    # one bright and one dark vocal stem: the mean of their linear magnitudes follows whichever is stronger
    # in a band, 6 dB under it where the other has next to nothing; the dB mean lies halfway between them
    root = tmp_path / "set"
    for i, tilt in enumerate((6.0, -6.0)):
        x = _tilted_noise(tilt, 4.0, i)
        for where in (root, tmp_path / f"alone{i}"):
            (where / "train" / f"song{i}").mkdir(parents=True)
            sf.write(where / "train" / f"song{i}" / "vocals.wav", x.T, SR, subtype="FLOAT")
    fitted = fit_profile(root, split="train", name="two")
    linear = linear_mean_spectra(root, "train")
    assert set(linear) == {"vocals"}
    a, b = (linear_mean_spectra(tmp_path / f"alone{i}", "train")["vocals"] for i in range(2))
    expected = 20 * np.log10((10 ** (a / 20) + 10 ** (b / 20)) / 2)
    mid = (CENTERS >= 100) & (CENTERS <= 10000)
    assert np.max(np.abs(linear["vocals"] - expected)[mid]) < 1.0
    shape = lambda s: s[mid] - s[mid].mean()  # noqa: E731
    assert np.max(np.abs(shape(linear["vocals"]) - shape(fitted.targets_for("vocals").spectrum_db))) > 6.0

    # a reference whose vocals spectrum is the linear mean (at another level): the compare passes with the
    # linear spectra and fails with the profile's own dB mean
    ref = load_profile(C.REFERENCE_PROFILE)
    ref = ref.with_targets("vocals", spectrum_db=linear["vocals"] + 7.0)
    row = lambda rows: next(r for r in rows if r["class"] == "vocals" and r["item"] == "spectrum_db")  # noqa: E731
    with_linear = row(compare_profiles(fitted, ref, linear))
    with_db = row(compare_profiles(fitted, ref))
    assert with_linear["pass"] and with_linear["deviation"] < 1e-6 and "linear mean" in with_linear["note"]
    assert not with_db["pass"] and with_db["deviation"] > 6.0 and "dB mean" in with_db["note"]


def test_reference_compression_reaches_the_band_where_the_chain_hits_its_threshold_limit():
    x = _notes(6.0, accents=False)
    report = compression.plan(x, SR, VOCALS_MEAN, VOCALS_STD, "vocals")
    assert not report.in_band and report.params.threshold_db == C.COMPRESSOR_MIN_THRESHOLD_DB
    chain = compression.apply(x, SR, report.params)
    y = reference_compressed(x, SR, "vocals", VOCALS_MEAN, VOCALS_STD)
    feature = onset_peak_stats(y, onset_boundaries(peak_normalize(x)[0], SR))[0]
    top = VOCALS_MEAN + VOCALS_STD
    # the highest threshold that puts the onset peaks as they come out under the band's upper edge
    assert top - 1.0 < feature < top
    plain = integrated_loudness(peak_normalize(x)[0], SR)
    assert plain - 4.0 < integrated_loudness(y, SR) < plain
    assert integrated_loudness(chain, SR) < integrated_loudness(y, SR) - 8.0


def test_a_stem_in_or_under_the_band_is_left_peak_normalized():
    x = _notes(6.0, accents=True) * np.float32(0.3)
    y = reference_compressed(x, SR, "vocals", -10.0, 3.0)  # a band reaching up to -7 dB: already in it
    np.testing.assert_array_equal(y, peak_normalize(x)[0])


def test_the_fitted_loudness_target_is_the_loudness_after_the_reference_compression(tmp_path):
    root = tmp_path / "set"
    stems = [_notes(6.0, accents=False) * np.float32(g) for g in (0.5, 0.8)]
    for i, x in enumerate(stems):
        (root / f"song{i}").mkdir(parents=True)
        sf.write(root / f"song{i}" / "vocals.wav", x.T, SR, subtype="FLOAT")
    # a base with the reference's compression targets fitted, nothing else: the loudness pass follows it
    base = replace(load_profile(C.REFERENCE_PROFILE), stages_fitted=("compression",))
    prof = finalize_stage(base, run_pass(find_songs(root), "loudness", base))
    expected = np.mean(
        [
            integrated_loudness(reference_compressed(x, SR, "vocals", VOCALS_MEAN, VOCALS_STD), SR)
            for x in stems
        ]
    )
    crushed = np.mean(
        [
            integrated_loudness(normalize_stem(x, SR, "vocals", base, stages=["compression"]).audio, SR)
            for x in stems
        ]
    )
    assert prof.targets_for("vocals").loudness_lufs == pytest.approx(expected, abs=0.02)
    assert prof.targets_for("vocals").loudness_lufs > crushed + 8.0

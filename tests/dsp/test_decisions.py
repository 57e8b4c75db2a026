"""The stage decisions the offline chain and the streaming planner share: fed the same statistics, the
offline path and the planner decide the same way (and the one decision only streaming makes is pinned down).

* compression in band: the chain's re-check after EQ refinement (``compression.in_band`` on the compressed
  stem), the threshold search's report and the planner's keep-or-re-plan check;
* EQ shape residual: the chain's closed-loop refinement and the planner's colouring of the later stages;
* leave uncompressed: the planner's rule, which the offline chain does not apply (it keeps the limit).
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
from fxmix.dsp import constants as C
from fxmix.dsp.bands import band_centers_hz
from fxmix.dsp.chain import StemResult, _refined_eq, normalize_stem
from fxmix.dsp.features import measure_dynamics, peak_normalize
from fxmix.dsp.params import CompressorParams, EqParams
from fxmix.dsp.profile import load_profile
from fxmix.dsp.stages import compression, eq
from fxmix.dsp.stages.compression import CompressionReport
from fxmix.dsp.streaming import COMP_FADE_S
from fxmix.dsp.streaming.conv import fade_ramp
from fxmix.dsp.streaming.planner import Applied, Planner, coloring_db
from fxmix.dsp.streaming.windows import Windows
from support import signals

SR = 44100
CLS = "drums"


def _targets(mean_db: float, std_db: float):
    return replace(
        load_profile(C.REFERENCE_PROFILE).targets_for(CLS), onset_peak_mean_db=mean_db, onset_peak_std_db=std_db
    )


def _faded(x: np.ndarray) -> np.ndarray:
    """The window as the planner hands it to the compressor decisions (faded in over COMP_FADE_S)."""
    y = x.astype(np.float32, copy=True)
    n = int(COMP_FADE_S * SR)
    y[:, :n] *= fade_ramp(n)
    return y


def _planner_compression(x: np.ndarray, targets, in_force: CompressorParams) -> CompressorParams:
    """The streaming planner's compressor plan for the window ``x`` with ``in_force`` as the setting it
    holds (no EQ: only the compression stage runs)."""
    n, nb = x.shape[1], band_centers_hz().size
    win = Windows((3, 2, n))
    win.array[:] = x[None]
    snap = {
        "plan": False,
        "comp": True,
        "pl": None,
        "pr": None,
        "nb": None,
        "weight": 0.0,
        "post_lufs": float("-inf"),
        "windows": (win, (n, n, n)),
        "bypass_eq": False,
        "applied": Applied(np.zeros(nb), np.zeros(nb), np.zeros(nb), 0.0, 0.0, 0.0, 0.0),
        "planned": {"compression": in_force},
        "jump": True,
    }
    planner = Planner(SR, CLS, targets, ("compression",), 512, refine=False)
    return planner(snap)["planned"]["compression"]


def test_compression_in_band_offline_and_streaming_agree():
    """A setting is kept by the planner exactly when the offline chain, measuring the compressed stem, finds
    the onset feature in the band; targets on both sides of the band edges give both answers."""
    x = signals.drums(4.0, SR)
    settings = compression.class_settings(CLS)
    in_force = CompressorParams(-13.37, settings["ratio"], settings["attack_ms"], settings["release_ms"], 0.0)
    audio = _faded(x)
    compressed = compression.apply(peak_normalize(audio)[0], SR, in_force)  # what the chain would measure
    feature, _ = measure_dynamics(compressed, SR)
    decisions = []
    for offset in (-1.0, -0.3, 0.3, 1.0):
        targets = _targets(feature + offset, 0.5)
        offline = compression.in_band(compressed, SR, targets.onset_peak_mean_db, targets.onset_peak_std_db)
        planned = _planner_compression(x, targets, in_force)
        kept = (planned.threshold_db, planned.ratio) == (in_force.threshold_db, in_force.ratio)
        assert kept == offline, offset
        decisions.append(offline)
    assert decisions == [False, True, True, False]


@pytest.mark.parametrize("offset_db", [0.0, -1.5, -3.0, -8.0])
def test_threshold_search_report_agrees_with_the_in_band_check(offset_db):
    """The search's own in-band claim is the check the planner keeps a setting by (and the chain re-checks
    by): one rule, the same answer on the same audio."""
    x = signals.other(4.0, SR)
    feature, _ = measure_dynamics(x, SR)
    mean_db, std_db = feature + offset_db, 0.5
    rep = compression.plan(x, SR, mean_db, std_db, CLS)
    assert rep.in_band == compression.feature_in_band(rep.after_db, mean_db, std_db)
    assert rep.in_band == compression.setting_in_band(x, SR, rep.params, mean_db, std_db)
    if offset_db == 0.0:
        assert rep.in_band and rep.params.ratio == 1.0


def test_eq_residual_offline_refinement_and_streaming_colouring_agree():
    """The chain folds ``target - finished stem`` (median removed) into the EQ; the planner subtracts the
    colouring ``stem output - EQ output`` (median removed) from the target. With the same two spectra (the
    target being the stem output's shape) both come out as the same curve."""
    eq_out = signals.other(4.0, SR)
    # the later stages' colouring: a 7 dB tilt, as compression and panning might add
    freqs = tuple(float(f) for f in band_centers_hz())
    tilt = EqParams(freqs, tuple(float(g) for g in np.linspace(-4, 3, len(freqs))))
    stem_out = eq.apply(eq_out, SR, tilt)
    color = coloring_db(eq_out, stem_out, SR)
    assert abs(np.median(color)) < 1e-12 and np.ptp(color) > 3.0
    targets = replace(_targets(-10.0, 1.0), spectrum_db=eq.shape_spectrum_db(stem_out, SR))
    flat = EqParams(freqs, (0.0,) * len(freqs))
    refined = _refined_eq(eq_out, SR, targets, StemResult(eq_out, params={"eq": flat}))
    assert refined is not None  # a 7 dB tilt is far over the 0.5 dB refinement threshold
    expected = np.clip(color - 0.5 * (color.max() + color.min()), -C.EQ_MAX_GAIN_DB, C.EQ_MAX_GAIN_DB)
    # the planner measures its windows in float32, the chain sums whole stems in float64: rounding apart
    assert np.allclose(refined.gain_db, expected, atol=1e-4)
    # and the residual is shape only: a level offset of either spectrum changes nothing
    shifted = eq.residual_db(targets.spectrum_db + 6.0, eq.shape_spectrum_db(eq_out, SR))
    assert np.allclose(shifted, color, atol=1e-4)


@pytest.mark.parametrize(
    "before, after, in_band, std, leave",
    [
        (-10.0, -10.0, True, 1.0, False),  # in band: nothing to decide
        (-10.0, -11.0, False, 3.0, True),  # the limit moved the feature 1 dB < 1.5 dB: leave it
        (-10.0, -11.6, False, 3.0, False),  # 1.6 dB: compression does something, keep the limit
        (-10.0, -11.0, False, 1.0, False),
        (-12.0, -12.0, False, 1.0, True),  # below the band: no compression can raise it
    ],
)
def test_leave_uncompressed_rule(before, after, in_band, std, leave):
    p = CompressorParams(-40.0, 4.0, 10.0, 100.0, -2.0)
    rep = CompressionReport(p, before, after, -10.0 - std, -10.0 + std, in_band)
    assert compression.leave_uncompressed(rep, std) is leave


@pytest.mark.parametrize("std_db, leave", [(3.0, True), (0.5, False)])
def test_streaming_leaves_uncompressed_where_offline_keeps_the_limit(std_db, leave):
    """Drums whose onset feature the threshold limit moves by ~1.3 dB towards a band 8 dB lower: with a wide
    band (std 3 dB) the planner leaves the stem uncompressed, the offline chain keeps the limit; with a narrow
    one both keep the limit. The planner's setting is exactly the search's report with the rule applied."""
    x = signals.drums(4.0, SR)
    feature, _ = measure_dynamics(x, SR)
    targets = _targets(feature - 8.0, std_db)
    rep = compression.plan(x, SR, targets.onset_peak_mean_db, std_db, CLS)
    assert not rep.in_band and rep.params.threshold_db == C.COMPRESSOR_MIN_THRESHOLD_DB
    assert compression.leave_uncompressed(rep, std_db) is leave
    planner = Planner(SR, CLS, targets, ("compression",), 512, refine=False)
    streaming = planner.compression_setting(x)
    assert streaming == (compression.uncompressed(rep.params) if leave else rep.params)
    profile = load_profile(C.REFERENCE_PROFILE).with_targets(
        CLS, onset_peak_mean_db=targets.onset_peak_mean_db, onset_peak_std_db=std_db
    )
    offline = normalize_stem(x, SR, CLS, profile, stages=("compression",)).params["compression"]
    assert offline.threshold_db == C.COMPRESSOR_MIN_THRESHOLD_DB and offline.ratio > 1.0
    assert (streaming.ratio == 1.0) is leave

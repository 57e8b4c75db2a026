"""The torch console equals its pedalboard twin: each effect alone and the whole console on songs, within
0.1 dB per 1/6-octave band, 0.1 LU and 1e-3 relative waveform error (float32, the training dtype)."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pedalboard
import pytest
import torch
from fxmix.dsp.features import integrated_loudness, measure_spectrum
from fxmix.model.console import UNIT_SIZE, ConsoleParams, render_console_pedalboard, render_console_stages
from fxmix.model.console.designs import reverb_board
from fxmix.model.console.twin import twin_compressor, twin_eq, twin_pan
from support import signals

SR = signals.SR
CLASSES = ["vocals", "drums", "bass", "other"]


def _song_tracks(seconds: float, seeds=(0,)) -> np.ndarray:
    out = []
    for seed in seeds:
        song = signals.song(seconds, seed=seed)
        out += [song[k] for k in CLASSES]
    return np.stack(out)


def _assert_same_sound(a: np.ndarray, b: np.ndarray, what: str) -> None:
    """``a`` (torch) against ``b`` (pedalboard): waveform, 1/6-octave bands, loudness."""
    rel = np.linalg.norm(a - b) / np.linalg.norm(b)
    bands = np.abs(measure_spectrum(a, SR, -30.0) - measure_spectrum(b, SR, -30.0)).max()
    lu = abs(integrated_loudness(a, SR) - integrated_loudness(b, SR))
    assert rel < 1e-3 and bands < 0.1 and lu < 0.1, (
        f"{what}: rel {rel:.2e}, bands {bands:.3f} dB, {lu:.3f} LU"
    )


def _rms_db(x: np.ndarray) -> float:
    return float(10 * np.log10(np.mean(np.square(x, dtype=np.float64))))


def _params(tracks: int, seed: int, **shift) -> ConsoleParams:
    u = 0.8 * torch.randn(1, tracks, UNIT_SIZE, generator=torch.Generator().manual_seed(seed))
    p = ConsoleParams.from_unit(u, CLASSES * (tracks // 4), master_u=torch.tensor([-1.0]))
    return replace(p, **{k: getattr(p, k) + v for k, v in shift.items()})


def test_eq_alone():
    x = _song_tracks(1.0)
    p = _params(4, 0)
    eq = render_console_stages(torch.from_numpy(x)[None], p).eq[0].numpy()
    for i in range(4):
        _assert_same_sound(eq[i], twin_eq(x[i], p.eq_db[0, i].numpy(), SR), f"EQ of {CLASSES[i]}")


def test_compressor_alone():
    x = _song_tracks(1.5)
    p = replace(
        _params(4, 1), eq_db=torch.zeros(1, 4, 10), comp_threshold_db=torch.tensor([[-36.0, -30, -28, -34]])
    )
    st = render_console_stages(torch.from_numpy(x)[None], p)
    comp = st.compressed[0].numpy()
    for i in range(4):
        a, r = float(p.comp_attack_ms[0, i]), float(p.comp_release_ms[0, i])
        ref = twin_compressor(x[i], float(p.comp_threshold_db[0, i]), float(p.comp_ratio[0, i]), a, r, SR)
        reduction = _rms_db(x[i]) - _rms_db(ref)
        assert reduction > 2.0, f"{CLASSES[i]}: the compressor only took {reduction:.2f} dB"
        _assert_same_sound(comp[i], ref, f"compressor on {CLASSES[i]}")


def test_fader_and_pan_alone():
    x = _song_tracks(1.0)
    p = replace(_params(4, 2), pan=torch.tensor([[-1.0, -0.4, 0.3, 0.9]]))
    st = render_console_stages(torch.from_numpy(x)[None], p)
    for i in range(4):
        comp = st.compressed[0, i].numpy()
        faded = pedalboard.Gain(gain_db=float(p.gain_db[0, i])).process(comp, SR)
        ref = twin_pan(faded, float(p.pan[0, i]), SR)
        panned = st.panned[0, i].numpy()
        assert np.abs(panned - ref).max() < 1e-5 * np.abs(ref).max()
        if i > 0:  # the hard-left track has a silent right channel, which has no loudness
            _assert_same_sound(panned, ref, f"pan {float(p.pan[0, i]):+.1f}")


def test_reverb_alone():
    x = _song_tracks(1.0)
    p = _params(4, 3)
    st = render_console_stages(torch.from_numpy(x)[None], p)
    bus = (st.panned[0] * 10 ** (p.reverb_send_db[0, :, None, None] / 20)).sum(0).numpy()
    ref = reverb_board().process(np.ascontiguousarray(bus), SR)  # the real effect, not its IR
    _assert_same_sound(st.reverb[0].numpy(), ref, "reverb")


@pytest.mark.parametrize("seed", [0, 1])
def test_whole_console_on_two_songs(seed):
    x = _song_tracks(2.0, seeds=(seed, seed + 10))  # 8 tracks: two of each class
    p = _params(8, 10 + seed, comp_threshold_db=-24.0)
    mix = render_console_stages(torch.from_numpy(x)[None], p)
    comp = mix.compressed[0].numpy()
    eq = mix.eq[0].numpy()
    assert max(_rms_db(eq[i]) - _rms_db(comp[i]) for i in range(8)) > 3.0  # compressors at work
    via_json = json.loads(json.dumps(p.to_dict(0)))  # the decisions as written to decisions.json
    _assert_same_sound(mix.mix[0].numpy(), render_console_pedalboard(x, via_json), "console")


def test_class_bus_eq_twin_and_its_pull_toward_the_tonal_target():
    """The class-bus EQ (measured from the buses, the same curves for both renderers) keeps the twin parity,
    moves every bus toward its class target (the level-aligned gap over 60 Hz..16 kHz shrinks) and keeps each
    bus's loudness within 1 LU."""
    from fxmix.dsp.bands import band_centers_hz
    from fxmix.dsp.profile import load_profile
    from fxmix.dsp.profile_fit import mean_stft_magnitude, reference_style_spectrum
    from fxmix.model.console.bus import bus_curves, profile_targets, track_curves
    from fxmix.model.console.geq import MATCH_RANGE_HZ

    x = _song_tracks(2.0, seeds=(3, 13))
    classes = CLASSES * 2
    p = _params(8, 21)
    targets = profile_targets(load_profile("musdb18-reference"))
    torch_mix = render_console_stages(torch.from_numpy(x)[None], p,
                                      bus_eq=lambda panned: track_curves(panned.numpy(), [classes], targets))
    seen: dict = {}

    def measure(buses):
        seen.update(bus=buses, curves=bus_curves(buses, targets))
        return seen["curves"]

    twin = render_console_pedalboard(x, p, classes=classes, bus_eq=measure)
    _assert_same_sound(torch_mix.mix[0].numpy(), twin, "console with bus EQ")
    f = band_centers_hz()
    sel = (f >= MATCH_RANGE_HZ[0]) & (f <= MATCH_RANGE_HZ[1])
    after = torch_mix.panned[0].numpy()
    for c in CLASSES:
        def gap(bus, c=c):
            d = targets[c] - reference_style_spectrum(mean_stft_magnitude(bus), c, SR)
            return float(np.mean(np.abs(d[sel] - d[sel].mean())))
        summed = np.sum([after[i] for i, k in enumerate(classes) if k == c], axis=0)
        assert gap(summed) < 0.7 * gap(seen["bus"][c]), c
        # a tone control, not a fader: the bus keeps its loudness (the curve is shifted by its K-weighted change)
        assert abs(integrated_loudness(summed, SR) - integrated_loudness(seen["bus"][c], SR)) < 1.0, c


def test_class_bus_exciter_twin_and_its_top_end():
    """The class-bus exciter (levels measured from the buses, the harmonics made with pedalboard by both
    renderers) keeps the twin parity with the bus EQ after it, adds top end to a bus that lacks it (the
    level-aligned gap to the target above the class's corner shrinks) and leaves the rest of the spectrum."""
    from fxmix.dsp.bands import band_centers_hz
    from fxmix.dsp.profile import load_profile
    from fxmix.model.console.bus import bus_curves, bus_spectrum_db, profile_targets, track_curves
    from fxmix.model.console.exciter import EXCITER_HZ, exciter_mix_db, track_excitation
    from fxmix.model.console.geq import MATCH_RANGE_HZ

    x = _song_tracks(2.0, seeds=(4, 14))
    x[1::4] = np.stack([pedalboard.LowpassFilter(1500.0)(t, SR) for t in x[1::4]])  # dull drums: no top end
    classes = CLASSES * 2
    p = _params(8, 31)
    targets = profile_targets(load_profile("musdb18-reference"))
    levels: list = []
    plain = render_console_stages(torch.from_numpy(x)[None], p)
    excited = render_console_stages(
        torch.from_numpy(x)[None], p, exciter=lambda panned: track_excitation(panned, [classes], targets, levels=levels),
        bus_eq=lambda panned: track_curves(panned.numpy(), [classes], targets))
    seen: dict = {}

    def exciter(buses):
        seen["levels"] = {c: exciter_mix_db(bus, exc, c, targets[c]) for c, (bus, exc) in buses.items()}
        return seen["levels"]

    twin = render_console_pedalboard(x, p, classes=classes, exciter=exciter,
                                     bus_eq=lambda buses: bus_curves(buses, targets))
    assert seen["levels"] == levels[0] and levels[0]["drums"] is not None
    _assert_same_sound(excited.mix[0].numpy(), twin, "console with exciter and bus EQ")
    f = band_centers_hz()
    sel = (f >= MATCH_RANGE_HZ[0]) & (f <= MATCH_RANGE_HZ[1])
    top = sel & (f >= EXCITER_HZ["drums"])

    def drums(stages):
        return np.sum([stages.panned[0, i].numpy() for i, k in enumerate(classes) if k == "drums"], axis=0)

    def top_gap(bus):
        d = targets["drums"] - bus_spectrum_db(bus, "drums", SR)
        return float(np.mean(np.abs(d[top] - d[sel].mean())))

    before = drums(plain)
    only_exciter = render_console_stages(
        torch.from_numpy(x)[None], p, exciter=lambda panned: track_excitation(panned, [classes], targets))
    after = drums(only_exciter)
    assert top_gap(after) < top_gap(before) - 0.5  # dB closer to the target above the corner
    low = f < 0.5 * EXCITER_HZ["drums"]  # the harmonics are high-passed at the corner: nothing added below
    assert np.abs(measure_spectrum(after, SR, -80.0)[low] - measure_spectrum(before, SR, -80.0)[low]).max() < 0.1


def test_class_bus_transient_cut_twin_and_its_onsets():
    """The class-bus transient cut (one gain per class, measured from the bus after the bus EQ) keeps the twin
    parity with the exciter and bus EQ before it, and lowers the drum bus's onset peaks against its body."""
    from fxmix.dsp.profile import load_profile
    from fxmix.model.console.bus import bus_curves, profile_targets, track_curves
    from fxmix.model.console.exciter import exciter_mix_db, track_excitation
    from fxmix.model.console.transient import BUS_TRANSIENT_DB, track_transient_gains

    x = _song_tracks(2.0, seeds=(5, 15))
    classes = CLASSES * 2
    p = _params(8, 41)
    targets = profile_targets(load_profile("musdb18-reference"))
    kw = dict(exciter=lambda panned: track_excitation(panned, [classes], targets),
              bus_eq=lambda panned: track_curves(panned.numpy(), [classes], targets))
    cut = render_console_stages(torch.from_numpy(x)[None], p, transient=lambda t: track_transient_gains(t, [classes], SR),
                                **kw)
    twin = render_console_pedalboard(
        x, p, classes=classes, transient=BUS_TRANSIENT_DB, bus_eq=lambda buses: bus_curves(buses, targets),
        exciter=lambda buses: {c: exciter_mix_db(b, e, c, targets[c]) for c, (b, e) in buses.items()})
    _assert_same_sound(cut.mix[0].numpy(), twin, "console with exciter, bus EQ and transient cut")
    plain = render_console_stages(torch.from_numpy(x)[None], p, **kw)

    def crest_db(stages):
        drums = np.sum([stages.panned[0, i].numpy() for i, k in enumerate(classes) if k == "drums"], axis=0)
        return 20 * np.log10(np.abs(drums).max()) - _rms_db(drums)

    assert crest_db(cut) < crest_db(plain) - 0.5


def test_fine_class_bus_eq_is_the_engineers_graphic_eq_on_the_grid():
    """The fine class-bus EQ (the corpus engineer's half-octave graphic EQ fit, as a linear-phase FIR on the
    profile's grid) keeps the twin parity, and its curve is that graphic EQ's response shifted by one loudness
    make-up (the pedalboard peak filters' shape, within 0.5 dB in the match range)."""
    from fxmix.dsp.bands import band_centers_hz
    from fxmix.dsp.profile import load_profile
    from fxmix.model.console.bus import (
        BUS_EQ_AMOUNT,
        bus_curves,
        bus_spectrum_db,
        profile_targets,
        track_curves,
    )
    from fxmix.model.console.geq import eq_response_db, match_bands, tonal_eq

    x = _song_tracks(2.0, seeds=(6, 16))
    classes = CLASSES * 2
    p = _params(8, 51)
    targets = profile_targets(load_profile("musdb18-reference"))
    torch_mix = render_console_stages(torch.from_numpy(x)[None], p,
                                      bus_eq=lambda panned: track_curves(panned.numpy(), [classes], targets, fine=True))
    seen: dict = {}

    def measure(buses):
        seen.update(bus=buses, curves=bus_curves(buses, targets, fine=True))
        return seen["curves"]

    twin = render_console_pedalboard(x, p, classes=classes, bus_eq=measure)
    _assert_same_sound(torch_mix.mix[0].numpy(), twin, "console with the fine bus EQ")
    sel = match_bands()
    for c in CLASSES:
        curve = seen["curves"][c]
        assert curve.shape == band_centers_hz().shape
        geq = eq_response_db(tonal_eq(bus_spectrum_db(seen["bus"][c], c, SR), targets[c], BUS_EQ_AMOUNT))
        diff = curve - geq
        assert np.ptp(diff[sel]) < 0.5, c  # the same shape, moved by the loudness make-up
        assert np.ptp(geq[sel]) > 2.0, c  # the fixture's buses are EQ'd

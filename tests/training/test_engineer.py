"""Engineer v2: its content rules act in the documented direction, it is deterministic, and the mean engineer
and the calibration table behave."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from fxmix.dsp.audio import read_audio
from fxmix.dsp.bands import band_centers_hz
from fxmix.dsp.constants import REFERENCE_PROFILE, SAMPLE_RATE
from fxmix.dsp.features import integrated_loudness, measure_spectrum
from fxmix.dsp.profile import load_profile
from fxmix.model.console.exciter import excitation
from fxmix.model.console.transient import transient_gain
from fxmix.training.corpus.build import build_corpus
from fxmix.training.corpus.session import DrySession, DryTrack
from fxmix.training.engineer import (
    engineer_decisions,
    mean_engineer_decisions,
    mix_session,
    render_decisions,
)
from fxmix.training.engineer.calibration import REFERENCE_PREPAN_LU, compare_profiles, remix_corpus
from fxmix.training.engineer.render import apply_buses, track_chain
from fxmix.training.engineer.taste import Taste
from fxmix.training.engineer.tonal import exciter_mix_db

SR = SAMPLE_RATE
SECONDS = 3.0


def _tone(f0: float, seed: int, n_harm: int = 6, beat_s: float = 0.5, level: float = 0.2) -> np.ndarray:
    """A repeated harmonic note at ``f0`` with a decaying envelope, slightly different per channel."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(SECONDS * SR)) / SR
    x = sum(np.sin(2 * np.pi * f0 * k * t + rng.uniform(0, 6)) / k for k in range(1, n_harm + 1))
    env = np.exp(-(t % beat_s) * 4.0)
    y = (x * env * level).astype(np.float32)
    return np.stack([y, np.roll(y, 7)])


def _band_noise(lo: float, hi: float, seed: int, level: float = 0.1) -> np.ndarray:
    rng = np.random.default_rng(seed)
    n = int(SECONDS * SR)
    spec = np.fft.rfft(rng.standard_normal((2, n)))
    f = np.fft.rfftfreq(n, 1 / SR)
    spec[:, (f < lo) | (f > hi)] = 0
    x = np.fft.irfft(spec, n)
    return (x / np.abs(x).max() * level).astype(np.float32)


def _kick(seed: int) -> np.ndarray:
    t = np.arange(int(SECONDS * SR)) / SR
    ph = t % 0.5
    y = (np.sin(2 * np.pi * 55 * ph) * np.exp(-ph * 12) * 0.5).astype(np.float32)
    return np.stack([y, y])


def _track(name, cls, audio, role="", instrument=None, **kw) -> DryTrack:
    return DryTrack(name, cls, instrument or name, audio, "test signal", "MIT", role, **kw)


def _session(tracks, name="s") -> DrySession:
    return DrySession(name, "test", "train", 0, 120.0, tracks)


def _base_tracks() -> list[DryTrack]:
    return [
        _track("lead", "vocals", _tone(440, 1), "lead"),
        _track("kick", "drums", _kick(2), "drums", "kick"),
        _track("bass", "bass", _tone(55, 3), "bass"),
        _track("keys", "other", _tone(220, 4), "chords"),
    ]


def test_lead_sits_higher_over_a_denser_arrangement():
    sparse = _session(_base_tracks())
    extra = [
        _track(f"keys{k}", "other", _tone(220 * (k + 2) / 2, 10 + k), "chords", f"synth{k}") for k in range(3)
    ]
    dense = _session(_base_tracks() + extra)
    gaps, dens = [], []
    for s in (sparse, dense):
        mixed = render_decisions(s, *engineer_decisions(s, Taste.mean()))
        lead, kick = mixed.wet[0], mixed.wet[1]
        gaps.append(integrated_loudness(lead, SR) - integrated_loudness(kick, SR))
        dens.append(mixed.decisions[0]["why"]["density"])
    assert dens[1] > dens[0] + 2.5  # three more parts play under the lead
    # documented: +density_slope_lu (0.6 LU) per further accompanying part
    assert gaps[1] - gaps[0] > 1.0
    assert gaps[1] - gaps[0] == pytest.approx(Taste.mean().density_slope_lu * (dens[1] - dens[0]), abs=0.6)


def _cut_near(cuts: list[dict], hz: float) -> float:
    """Depth (dB, positive) of the cuts within a third of an octave of ``hz`` (the masker's band; the lead's
    third harmonic at 1.3 kHz may earn a cut of its own half an octave up)."""
    return -sum(c["db"] for c in cuts if abs(np.log2(c["hz"] / hz)) <= 1 / 3)


def test_masked_track_gets_a_deeper_cut_where_it_is_masked():
    pad = _track("pad", "other", _tone(250, 5, n_harm=12), "pad")
    masker = _band_noise(800, 1300, 6, level=0.3)
    elsewhere = _band_noise(5000, 8000, 6, level=0.3)
    cuts = {}
    for label, noise in (("masked", masker), ("free", elsewhere)):
        s = _session(
            [pad, _track("lead", "vocals", _tone(440, 1), "lead"), _track("noise", "other", noise, "fx")]
        )
        decisions, _ = engineer_decisions(s, Taste.mean())
        cuts[label] = _cut_near(decisions[0]["eq_cuts"], 1000.0)
    assert cuts["masked"] > cuts["free"] + 1.0
    assert cuts["free"] == 0.0


def test_low_end_that_is_not_the_tracks_own_is_high_passed():
    rumble = _band_noise(25, 50, 7, level=0.005)  # well under the part
    keys = _track("keys", "other", _tone(330, 8) + rumble, "chords")
    s = _session(
        [keys, _track("bass", "bass", _tone(55, 3), "bass"), _track("lead", "vocals", _tone(440, 1), "lead")]
    )
    decisions, _ = engineer_decisions(s, Taste.mean())
    assert decisions[0]["hpf_hz"] >= 150.0  # the keys' own content starts at 330 Hz
    assert decisions[1]["hpf_hz"] <= 40.0  # the bass keeps its low end
    f = band_centers_hz()
    low, mid = (f >= 25) & (f <= 50), (f >= 300) & (f <= 2000)

    def low_minus_mid(x):
        spec = measure_spectrum(x, SR)
        return 10 * np.log10(np.mean(10 ** (spec[low] / 10))) - 10 * np.log10(np.mean(10 ** (spec[mid] / 10)))

    # the track's own chain (HPF, cuts, compressor) before any bus processing
    # two first-order high-passes at half the keys' register (about 160 Hz) take about 20 dB off 25-50 Hz
    assert low_minus_mid(track_chain(keys.audio, decisions[0], SR)) < low_minus_mid(keys.audio) - 18.0


def test_decisions_are_deterministic_under_a_seed():
    s = _session(_base_tracks())
    a = mix_session(s, np.random.default_rng(3))
    b = mix_session(s, np.random.default_rng(3))
    c = mix_session(s, np.random.default_rng(4))
    assert a.decisions == b.decisions and a.master == b.master
    np.testing.assert_array_equal(a.mixture, b.mixture)
    assert a.master["taste"] != c.master["taste"]


def test_class_stems_sum_tracks_and_master_hits_its_target():
    s = _session(_base_tracks() + [_track("keys2", "other", _tone(330, 9), "pad")])
    m = mix_session(s, np.random.default_rng(0))
    other = m.wet[3] + m.wet[4]
    np.testing.assert_allclose(m.stems["other"], other, atol=1e-6)
    assert integrated_loudness(m.mixture, SR) == pytest.approx(m.master["target_lufs"], abs=0.5)
    assert np.abs(m.mixture).max() <= 10 ** (-1.0 / 20) + 1e-4
    # a replay of the recorded decisions gives the same mixture
    again = render_decisions(s, m.decisions, m.master)
    np.testing.assert_allclose(again.mixture, m.mixture, atol=1e-5)


def test_human_tracks_keep_the_composers_level_and_pan():
    tone = _tone(300, 11)
    tracks = [
        _track("a", "other", tone, "chords", "organ", level_db=0.0, pan=-0.5),
        _track("b", "other", tone.copy(), "chords", "organ", level_db=-6.0, pan=0.5),
        _track("lead", "vocals", _tone(440, 1), "lead", level_db=-3.0, pan=0.0),
    ]
    s = _session(tracks)
    m = render_decisions(s, *engineer_decisions(s, Taste.mean()))
    assert [d["pan"] for d in m.decisions] == [-0.5, 0.5, 0.0]
    gap = integrated_loudness(m.wet[0], SR) - integrated_loudness(m.wet[1], SR)
    assert gap == pytest.approx(6.0, abs=0.5)


def test_a_track_its_composer_muted_renders_silent_and_finite():
    """A MIDI composer's CC7 = 0 sets a level of -84 dB: the fader goes to its floor and the class bus sits below
    the loudness gate (-inf LUFS before and after its EQ). The bus must not turn that into NaN samples."""
    tracks = [
        _track("bass", "bass", _tone(55, 3), "bass", "GM 33", level_db=-84.0, pan=0.0),
        _track("keys", "other", _tone(300, 11), "chords", "GM 1", level_db=0.0, pan=0.0),
        _track("lead", "vocals", _tone(440, 1), "lead", "GM 74", level_db=-3.0, pan=0.0),
    ]
    s = _session(tracks)
    m = render_decisions(s, *engineer_decisions(s, Taste.mean()))
    assert all(np.isfinite(w).all() for w in m.wet) and np.isfinite(m.mixture).all()
    assert m.master["buses"]["bass"]["eq_makeup_db"] == 0.0
    assert float(np.max(np.abs(m.wet[0]))) < 10 ** (-50 / 20) < float(np.max(np.abs(m.wet[1])))


def test_human_low_end_and_lead_are_centred_whatever_the_module_pans():
    tracks = [
        _track("bass", "bass", _tone(55, 3), "bass", "bass", level_db=0.0, pan=-0.59),
        _track("lead", "vocals", _tone(440, 1), "lead", "sample 5", level_db=0.0, pan=0.59),
        _track("keys", "other", _tone(300, 11), "chords", "sample 2", level_db=0.0, pan=0.59),
    ]
    decisions, _ = engineer_decisions(_session(tracks), Taste.mean())
    assert [d["pan"] for d in decisions] == [0.0, 0.0, 0.59]


def _top_minus_mid_db(x: np.ndarray) -> float:
    f = band_centers_hz()
    spec = measure_spectrum(x, SR)
    top, mid = (f >= 6000) & (f <= 12000), (f >= 300) & (f <= 2000)
    return 10 * np.log10(np.mean(10 ** (spec[top] / 10))) - 10 * np.log10(np.mean(10 ** (spec[mid] / 10)))


def test_exciter_adds_the_top_end_a_dull_bus_lacks_and_spares_a_bright_one():
    dull = _tone(330, 5, n_harm=8)  # harmonics up to 2.6 kHz, nothing near 9 kHz
    exc = excitation(dull, "vocals")
    mix = exciter_mix_db(dull, exc, "vocals")
    assert mix is not None and mix > -30.0
    bus = {"tonal_amount": 0.0, "gr_db": 0.5, "eq": None, "threshold_db": None}
    out = apply_buses([dull], ["vocals"], {"vocals": bus}, SR)[0]
    assert bus["exciter_db"] == mix
    assert _top_minus_mid_db(out) > _top_minus_mid_db(dull) + 15.0
    bright = dull + _band_noise(2000, 16000, 6, level=0.05)
    bright_mix = exciter_mix_db(bright, excitation(bright, "vocals"), "vocals")
    assert bright_mix is None or bright_mix < mix - 6.0


def _plr_db(x: np.ndarray) -> float:
    return 20 * np.log10(np.max(np.abs(x))) - integrated_loudness(x, SR)


def test_bus_peak_control_catches_transients_beyond_the_ceiling_and_spares_a_bus_within_it():
    kit = _kick(7) * np.float32(0.2)
    spiky = kit.copy()
    spiky[:, SR : SR + 40] = 0.9  # one stray transient far above the rest of the kit
    for x, caught in ((spiky, True), (kit, False)):
        bus = {"tonal_amount": 0.0, "gr_db": 0.0, "eq": None, "threshold_db": None, "exciter_db": None,
               "peak_plr_db": 16.0, "peak_threshold_db": None}
        half = [x * np.float32(0.5), x * np.float32(0.5)]  # two tracks of one bus share one gain
        out = apply_buses(half, ["drums", "drums"], {"drums": bus}, SR)
        assert np.abs(out[0] - out[1]).max() == 0.0
        total = out[0] + out[1]
        assert bus["peak_threshold_db"] == pytest.approx(integrated_loudness(x, SR) + 16.0, abs=0.01)
        if caught:
            assert _plr_db(x) > 20.0 and _plr_db(total) < _plr_db(x) - 3.0
        else:
            assert _plr_db(x) < 16.0 and np.abs(total - x).max() < 1e-4
        again = apply_buses(half, ["drums", "drums"], {"drums": dict(bus)}, SR)  # replays the recorded threshold
        np.testing.assert_array_equal(again[0], out[0])


def _notes_at(levels: list[float], note_s: float = 0.5) -> np.ndarray:
    """Harmonic notes (2-ms attack, 0.15-s decay) one after another at the given linear levels."""
    t = np.arange(int(note_s * SR)) / SR
    note = np.sin(2 * np.pi * 220 * t) + 0.5 * np.sin(2 * np.pi * 440 * t)
    note *= np.minimum(t / 0.002, 1.0) * np.exp(-t / 0.15)
    y = np.concatenate([lv * note for lv in levels]).astype(np.float32) * np.float32(0.3)
    return np.stack([y, y])


def test_transient_cut_lowers_every_onset_by_its_depth_whatever_its_level_and_spares_the_body():
    levels = [1.0, 0.25, 1.0, 0.5, 0.25, 1.0]
    x = _notes_at(levels)
    y = x * transient_gain(x, SR, 4.0)[None, :]
    n = int(0.5 * SR)
    for k in range(1, len(levels)):  # the first note has no body before it to be measured against
        a = k * n
        onset = 20 * np.log10(np.abs(y[0, a : a + n // 10]).max() / np.abs(x[0, a : a + n // 10]).max())
        body = 20 * np.log10(np.abs(y[0, a + n // 2 : a + n]).max() / np.abs(x[0, a + n // 2 : a + n]).max())
        assert -4.5 < onset < -3.0, (k, onset)
        assert abs(body) < 0.3, (k, body)
    bus = {"tonal_amount": 0.0, "gr_db": 0.0, "eq": None, "threshold_db": None, "exciter_db": None,
           "transient_cut_db": 4.0}
    half = [x * np.float32(0.5), x * np.float32(0.5)]  # two tracks of one bus share one gain
    out = apply_buses(half, ["vocals", "vocals"], {"vocals": bus}, SR)
    assert np.abs(out[0] - out[1]).max() == 0.0
    total = out[0] + out[1]
    assert 20 * np.log10(np.abs(x).max() / np.abs(total).max()) > 3.0  # every onset, the loudest too
    assert _plr_db(total) < _plr_db(x) - 0.5  # the body keeps its level: loudness falls less than the peak


def test_mean_engineer_ignores_the_arrangement():
    sparse = _session(_base_tracks())
    dense = _session(_base_tracks() + [_track("keys2", "other", _tone(330, 9), "chords", "synth")])
    ds, dd = mean_engineer_decisions(sparse), mean_engineer_decisions(dense)
    assert ds[0]["target_lufs"] == dd[0]["target_lufs"]
    assert all(d["eq_cuts"] == [] for d in ds + dd)
    m = render_decisions(dense, dd)
    assert m.mixture.shape == (2, int(SECONDS * SR)) and np.isfinite(m.mixture).all()


def test_compare_table_tolerances():
    ref = load_profile(REFERENCE_PROFILE)
    fitted = dataclasses.replace(ref, name="fitted")
    for c in ref.classes:
        t = ref.targets_for(c)
        fitted = fitted.with_targets(
            c, spectrum_db=t.spectrum_db + 4.0, loudness_lufs=t.loudness_lufs - REFERENCE_PREPAN_LU
        )
    rows = compare_profiles(fitted, ref)
    assert len(rows) == 16 and all(r["pass"] for r in rows)
    f = ref.bands_hz
    bumped = ref.targets_for("bass").spectrum_db + np.where(np.abs(np.log2(f / 1000)) < 0.2, 5.0, 0.0)
    rows = compare_profiles(fitted.with_targets("bass", spectrum_db=bumped, onset_peak_mean_db=-10.0), ref)
    failed = {(r["class"], r["item"]) for r in rows if not r["pass"]}
    assert failed == {("bass", "spectrum_db"), ("bass", "onset_peak_mean_db")}


def test_remix_of_a_built_song_reproduces_its_stems(tmp_path):
    build_corpus(tmp_path / "built", 1, 3.0, 5, families=("procedural",), progress=False)
    split = next(p.name for p in (tmp_path / "built").iterdir() if p.is_dir())
    names = remix_corpus(tmp_path / "built", tmp_path / "remix", split=split, progress=False)
    assert len(names) == 1
    for c in ("vocals", "drums", "bass", "other"):
        a = read_audio(tmp_path / "built" / split / names[0] / f"{c}.flac").audio
        b = read_audio(tmp_path / "remix" / split / names[0] / f"{c}.flac").audio
        # the dry tracks come back from 24-bit FLAC, which may move a rounded decision by one step
        np.testing.assert_allclose(b, a, atol=1e-3)
    with pytest.raises(ValueError, match="new folder"):
        remix_corpus(tmp_path / "built", tmp_path / "built", split=split, progress=False)

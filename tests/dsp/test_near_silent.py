"""A stem just above the silence gate is not raised by tens of dB next to a song's other stems."""

from __future__ import annotations

import numpy as np
from fxmix.dsp import constants as C
from fxmix.dsp.audio import peak_db
from fxmix.dsp.chain import normalize_stems
from fxmix.dsp.features import integrated_loudness
from fxmix.dsp.profile import load_profile
from support import signals

SR = signals.SR


def test_near_silent_stem_is_passed_through_not_boosted():
    """A drum stem at -49 dBFS peak (1 dB over the absolute gate) next to stems peaking near 0 dBFS: the chain
    raised it by 40 LU to the drums target (a part the song does not have); it is passed through unchanged,
    with a note, while the same stems scaled together are still all normalized (level invariance)."""
    prof = load_profile(C.REFERENCE_PROFILE)
    stems = signals.song(4.0)
    stems = {c: (x * 10 ** ((-1.0 - peak_db(x)) / 20)).astype(np.float32) for c, x in stems.items()}
    stems["drums"] = (stems["drums"] * 10 ** ((-49.0 - peak_db(stems["drums"])) / 20)).astype(np.float32)
    res = normalize_stems(stems, SR, prof, seed=0)
    rise = integrated_loudness(res["drums"].audio, SR) - integrated_loudness(stems["drums"], SR)
    print(f"near-silent drums: {rise:+.1f} LU through the chain")
    assert res["drums"].silent and np.array_equal(res["drums"].audio, stems["drums"])
    assert any("under the loudest stem" in n for n in res["drums"].notes)
    for c in ("vocals", "bass", "other"):
        assert not res[c].silent
        assert abs(integrated_loudness(res[c].audio, SR) - prof.targets[c].loudness_lufs) < 0.5
    # the whole song 48 dB down is a quiet recording, not a near-silent stem: every stem is normalized
    quiet = {c: (x * np.float32(10 ** (-48 / 20))) for c, x in stems.items() if c != "drums"}
    res = normalize_stems(quiet, SR, prof, seed=0)
    assert all(not r.silent for r in res.values())
    for c, r in res.items():
        assert abs(integrated_loudness(r.audio, SR) - prof.targets[c].loudness_lufs) < 0.5


def test_a_click_too_short_to_measure_is_passed_through_not_raised_to_its_class_loudness():
    """A one-sample file (zero-padded to the song) has no measurable loudness: normalizing it would raise the
    click by tens of dB. It is passed through with a note; a stem with enough audio is still normalized."""
    from fxmix.dsp.chain import normalize_stem
    from fxmix.dsp.profile import load_profile

    prof = load_profile("musdb18-reference")
    click = np.zeros((2, 4 * 44100), np.float32)
    click[:, 0] = 0.1
    res = normalize_stem(click, 44100, "drums", prof)
    assert res.silent and np.array_equal(res.audio, click)
    assert any("too short to measure" in n for n in res.notes)
    rng = np.random.default_rng(0)
    noise = (0.01 * rng.normal(size=(2, 4 * 44100))).astype(np.float32)
    assert not normalize_stem(noise, 44100, "drums", prof).silent

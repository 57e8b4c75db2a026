"""The exciter JSFX (``fxmix_exciter.jsfx``), fed a console track before its fader and pan with the sliders fxmix
writes, adds the harmonics the console's class-bus exciter adds after them (its code, read line by line in
Python, against pedalboard's rendering)."""

import math
import re

import numpy as np
import pytest
from fxmix.model.console.designs import pan_gains
from fxmix.model.console.exciter import EXCITER_HZ, excitation
from fxmix.plugin_presets.exporters import exciter_sliders
from fxmix.plugin_presets.rfxchain import JSFX, JSFX_DIR

SR = 44100


class _JsfxExciter:
    """``fxmix_exciter.jsfx``'s @slider and @sample code, transcribed."""

    def __init__(self, sliders, srate=SR):
        corner, in_l, in_r, out_l, out_r = sliders
        n = math.tan(math.pi * min(corner, 0.49 * srate) / srate)
        self.b0, self.a1 = 1 / (1 + n), (n - 1) / (n + 1)
        drive = 10 ** (24 / 20)
        self.inl, self.inr = 10 ** (in_l / 20) * drive, 10 ** (in_r / 20) * drive
        self.outl = 0 if out_l <= -150 else 10 ** (out_l / 20)
        self.outr = 0 if out_r <= -150 else 10 ** (out_r / 20)
        self.mem = [0.0] * 16

    @staticmethod
    def sat(x):
        return 1 if x > 20 else -1 if x < -20 else 1 - 2 / (math.exp(2 * x) + 1)

    def hp(self, x, s):
        y = self.b0 * (x - self.mem[s]) - self.a1 * self.mem[s + 1]
        self.mem[s], self.mem[s + 1] = x, y
        return y

    def sample(self, spl0, spl1):
        hp, sat = self.hp, self.sat
        el = hp(hp(sat(self.inl * hp(hp(spl0, 0), 2)), 4), 6) * self.outl
        er = hp(hp(sat(self.inr * hp(hp(spl1, 8), 10)), 12), 14) * self.outr
        return spl0 + el, spl1 + er


@pytest.mark.parametrize("pan", [0.35, -1.0])
def test_the_exciter_jsfx_makes_the_consoles_harmonics_in_front_of_the_fader(pan):
    rng = np.random.default_rng(7)
    t = np.arange(SR // 2) / SR
    tone = sum(np.sin(2 * np.pi * f * t) / k for k, f in enumerate((220.0, 660.0, 1320.0, 2900.0), 1))
    track = (0.3 * tone * (1 + 0.3 * rng.standard_normal(t.size)) * np.array([[1.0], [0.7]])).astype(np.float32)
    gain_db, level_db = -4.0, -8.0
    left, right = pan_gains(pan)
    post = (track * np.array([[left], [right]]) * 10 ** (gain_db / 20)).astype(np.float32)  # the console's panned track
    gains: dict = {}
    want = excitation(post, "vocals", SR, gains=gains) * np.float32(10 ** (level_db / 20))
    doc = {"exciter_db": {"vocals": level_db}}
    entry = {"class": "vocals", "mixer": {"pan": pan, "gain_db": gain_db, "exciter": gains}}
    sliders = exciter_sliders(doc, entry)
    assert sliders[0] == EXCITER_HZ["vocals"] and len(sliders) == JSFX["exciter"][1]
    fx = _JsfxExciter(sliders)
    out = np.array([fx.sample(a, b) for a, b in track.astype(np.float64).T]).T
    got = (out - track) * np.array([[left], [right]]) * 10 ** (gain_db / 20)  # the harmonics, after the fader and pan
    rel = np.linalg.norm(got - want) / np.linalg.norm(want)
    print(f"exciter JSFX code vs the console's exciter (pan {pan}): relative error {rel:.2e}")
    assert np.linalg.norm(want) > 0 and rel < 1e-4
    if pan == -1.0:
        assert sliders[4] == -150.0  # the silenced channel gets no harmonics


def test_exciter_jsfx_declares_the_sliders_fxmix_writes():
    path, n = JSFX["exciter"]
    text = (JSFX_DIR / path.split("/")[-1]).read_text()
    assert sorted(int(m) for m in re.findall(r"^slider(\d+):", text, re.M)) == list(range(1, n + 1))
    assert exciter_sliders({"exciter_db": {"vocals": None}}, {"class": "vocals", "mixer": {"exciter": {"in_db": 1.0}}}) \
        is None  # the class's exciter is off

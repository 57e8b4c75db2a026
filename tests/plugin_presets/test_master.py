"""The master stage as fxmix JSFX: the limiter JSFX's processing (its Python emulation and a line-by-line reading
of its @sample code) against fxmix's master-stage limiter, and the chain's slider values."""

from __future__ import annotations

import re

import numpy as np
import pytest
from fxmix.dsp.stages.loudness import _KERNEL, _TP_TAPS, LOOKAHEAD_MS, true_peak_db
from fxmix.dsp.stages.master import default_plan, master
from fxmix.plugin_presets import master as pm
from fxmix.plugin_presets.rfxchain import JSFX, JSFX_DIR
from support import signals

SR = 44100


def _prebus(seed: int, seconds: float = 6.0) -> np.ndarray:
    return np.sum(list(signals.song(seconds, seed=seed).values()), axis=0).astype(np.float32)


def _error_db(y: np.ndarray, ref: np.ndarray) -> float:
    return float(20 * np.log10(max(np.linalg.norm(y - ref), 1e-30) / np.linalg.norm(ref)))


@pytest.mark.parametrize("target_lufs", [-11.5, -7.0])
def test_jsfx_master_chain_matches_the_master_stage(target_lufs):
    """The master chain's JSFX (compressor > utility > limiter, emulated) on the console's sum gives fxmix's
    master stage within LIMITER_TOLERANCE_DB, with the limiter acting on few samples (the mean master) and on
    many (a loud one), and its output under the -1 dBTP ceiling."""
    for seed in (0, 1):
        x = _prebus(seed)
        plan = default_plan() | {"target_lufs": target_lufs}
        ref = master(x, plan, SR)
        y = pm.process(x, plan, SR)
        s = pm.master_sliders(plan)
        unlimited = pm.process(x, plan | {"ceiling_dbtp": 0.0}, SR)
        acted = float(np.mean(np.abs(y - unlimited) > 1e-6))
        print(f"{target_lufs} LUFS, song {seed}: JSFX chain vs master stage {_error_db(y, ref):.1f} dB, "
              f"limiter acting on {100 * acted:.2f}% of the samples, true peak {true_peak_db(y):.4f} dBTP "
              f"(fxmix {true_peak_db(ref):.4f}); sliders {s}")
        assert acted > (0.1 if target_lufs > -8 else 1e-4)
        assert _error_db(y, ref) <= pm.LIMITER_TOLERANCE_DB
        assert true_peak_db(y) <= plan["ceiling_dbtp"] + 0.01


def test_a_glue_threshold_over_full_scale_moves_into_the_input_gain():
    """A sum peaking over 0 dBFS has a glue threshold the compressor JSFX cannot take (it passes the signal
    unless the threshold is under 0 dB): the input gain takes the excess, the utility gives it back, and the
    chain's output is unchanged."""
    x = _prebus(0) * np.float32(4.0)
    plan = default_plan()
    ref = master(x, plan, SR)
    s = pm.master_sliders(plan)
    assert plan["glue_threshold_db"] > 0.0
    assert s["comp"][1] < 0.0 and s["comp"][0] == pytest.approx(-(plan["glue_threshold_db"] - s["comp"][1]))
    assert s["utility"][2] == pytest.approx(plan["gain_db"] - s["comp"][0])
    assert _error_db(pm.process(x, plan, SR), ref) <= pm.LIMITER_TOLERANCE_DB


def test_limiter_jsfx_declares_the_sliders_fxmix_writes():
    path, n = JSFX["limiter"]
    text = (JSFX_DIR / path.split("/")[-1]).read_text()
    assert sorted(int(m) for m in re.findall(r"^slider(\d+):", text, re.M)) == list(range(1, n + 1))
    assert len(pm.master_sliders(default_plan() | {"glue_threshold_db": -8.0, "gain_db": 3.0, "ratio": 2.0,
                                                   "attack_ms": 25.0, "release_ms": 250.0,
                                                   "ceiling_dbtp": -1.0})["limiter"]) == n
    # the defaults are the master stage's
    assert re.search(r"^slider1:-1<", text, re.M) and re.search(rf"^slider2:{LOOKAHEAD_MS:g}<", text, re.M)
    assert f"TAPS = {_TP_TAPS};" in text


class _JsfxLimiter:
    """The limiter JSFX's @init/@slider/@sample code read line by line (rings of BUF samples indexed by an
    absolute sample counter, the running-minimum deque, the moving average of (1 - m)): sample in, sample out,
    ``latency`` samples late."""

    def __init__(self, ceiling_db: float, lookahead_ms: float, sample_rate: int):
        self.buf, taps = 16384, _TP_TAPS
        self.ceiling = 10 ** (min(ceiling_db, 0.0) / 20)
        lk = max(1, int(np.floor(lookahead_ms * 0.001 * sample_rate)))
        self.L = min(lk, int(np.floor((self.buf - 4 * taps) / 1.5)) - 1)
        self.half = self.L // 2
        self.latency = taps + self.L + self.half
        self.bl, self.br = np.zeros(self.buf), np.zeros(self.buf)
        self.rb, self.mb = np.ones(self.buf), np.ones(self.buf)
        self.dqi, self.dqv = np.zeros(self.buf), np.zeros(self.buf)
        self.n, self.head, self.tail, self.acc, self.act = 2 * self.buf, 0, 0, 0.0, 0
        self.ker = _KERNEL.T.astype(np.float64)  # (phases, taps): the JSFX computes the same kernel in @init

    def sample(self, s0: float, s1: float) -> tuple[float, float]:
        B, taps, L = self.buf, _TP_TAPS, self.L
        w = self.n % B
        self.bl[w], self.br[w] = s0, s1
        i = self.n - taps
        l0 = max(abs(self.bl[i % B]), abs(self.br[i % B]))
        l1 = max(abs(self.bl[(i + 1) % B]), abs(self.br[(i + 1) % B]))
        env = l0
        if max(l0, l1) >= 0.5 * self.ceiling:
            q = (i - (taps - 1) + np.arange(2 * taps)) % B
            for p in range(3):
                env = max(env, abs(self.bl[q] @ self.ker[p]), abs(self.br[q] @ self.ker[p]))
        r = self.ceiling / env if env > self.ceiling else 1.0
        self.rb[i % B] = r
        while self.tail > self.head and self.dqv[(self.tail - 1) % B] >= r:
            self.tail -= 1
        self.dqi[self.tail % B], self.dqv[self.tail % B] = i, r
        self.tail += 1
        while self.dqi[self.head % B] < i - 2 * L:
            self.head += 1
        c = i - L
        m = self.dqv[self.head % B]
        old = self.mb[(c - L - 1) % B]
        self.mb[c % B] = m
        self.acc += (1 - m) - (1 - old)
        self.act += int(m < 1) - int(old < 1)
        if self.act <= 0:
            self.acc, self.act = 0.0, 0
        g = c - self.half
        gain = min(1 - self.acc / (L + 1), self.rb[g % B])
        self.n += 1
        return self.bl[g % B] * gain, self.br[g % B] * gain


def test_the_limiter_jsfx_code_gives_its_emulation():
    """The JSFX's sample-by-sample code (rings, deque, running average; read line by line in Python) gives
    :func:`fxmix.plugin_presets.master.limit` once its latency is compensated, within float32 rounding."""
    x = _prebus(2, 0.6) * np.float32(3.0)  # loud: the limiter acts often
    lim = _JsfxLimiter(-1.0, LOOKAHEAD_MS, SR)
    padded = np.pad(x.astype(np.float64), ((0, 0), (0, lim.latency)))
    out = np.array([lim.sample(a, b) for a, b in padded.T]).T[:, lim.latency :]
    ref = pm.limit(x, SR, -1.0)
    acted = float(np.mean(np.abs(ref - x) > 1e-6))
    print(f"limiter JSFX code vs emulation: max |diff| {np.abs(out - ref).max():.2e}, acting on {100 * acted:.1f}%")
    assert acted > 0.2 and lim.latency == pm.latency_samples(SR)
    assert np.abs(out - ref).max() <= 1e-5

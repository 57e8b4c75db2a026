"""The console's fixed designs, shared by the torch renderer and its pedalboard twin.

- EQ: a band-gain curve on the octave bands of the profile grid (31.25 Hz .. 16 kHz, every sixth 1/6-octave
  centre of :func:`fxmix.dsp.bands.band_centers_hz`), turned into an :data:`EQ_FIR_TAPS`-tap linear-phase
  FIR by :func:`fxmix.dsp.fir.design_fir` (frequency sampling, log-frequency interpolation, Hann window);
  :func:`eq_fir_torch` is the same design in torch, differentiable in the band gains.
- Pan: :data:`PAN_LAW`.
- Reverb: one seeded stereo impulse response made here in code (:func:`reverb_ir`), no file.
- Compressor ballistics: :func:`compressor_envelope`, the envelope of pedalboard's ``Compressor`` (JUCE
  ``dsp::Compressor``: peak rectifier, one-pole attack/release) of each track's linked detector.

streaming-safe: no (offline designs; the FIRs are linear phase, (taps - 1) / 2 samples of latency).
"""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np
import pedalboard
import torch
from fxmix.dsp.bands import band_centers_hz
from fxmix.dsp.constants import BANDS_PER_OCTAVE
from fxmix.dsp.fir import design_fir
from fxmix.dsp.stages.compression import linked_gain

#: EQ FIR length (odd, linear phase): 93 ms at 44.1 kHz, enough to shape the 31 Hz octave
EQ_FIR_TAPS = 4097
#: pan law of every track (stereo input: a balance control with these channel gains)
PAN_LAW = "constant-power sin/cos, 0 dB at centre: theta = (pan + 1) pi / 4, L x sqrt2 cos, R x sqrt2 sin"
#: reverb impulse response: seed, length (s), pre-delay (s), RT60 (s) per octave band from 62.5 Hz up
REVERB_SEED = 20220
REVERB_IR_SECONDS = 1.5
REVERB_PREDELAY_S = 0.012
REVERB_RT60_S = (1.9, 1.8, 1.7, 1.6, 1.5, 1.3, 1.1, 0.85, 0.6)
#: compressor envelope probe: a threshold far below RANGES' lowest, where gain = (env / T) ** (1 / 2 - 1)
PROBE_THRESHOLD_DB = -120.0
PROBE_RATIO = 2.0


def eq_band_centers_hz() -> np.ndarray:
    """The EQ's band centres (Hz): octaves of the profile grid, 31.25 .. 16000 (10 bands)."""
    return band_centers_hz()[::BANDS_PER_OCTAVE]


def eq_fir(eq_db: np.ndarray, sample_rate: int) -> np.ndarray:
    """(EQ_FIR_TAPS,) float64 linear-phase FIR for one band-gain curve (dB on :func:`eq_band_centers_hz`)."""
    return design_fir(eq_band_centers_hz(), np.asarray(eq_db, float), sample_rate, EQ_FIR_TAPS)


@lru_cache(maxsize=8)
def _interp_matrix(sample_rate: int) -> np.ndarray:
    """(bins, bands) matrix of design_fir's interpolation: gain_bins = M @ gain_bands (np.interp is linear
    in the values)."""
    n_fft = EQ_FIR_TAPS - 1
    f = np.fft.rfftfreq(n_fft, 1.0 / sample_rate)
    centers = eq_band_centers_hz()
    eye = np.eye(len(centers))
    x = np.log2(np.maximum(f, 1e-3))
    m = np.stack([np.interp(x, np.log2(centers), eye[k]) for k in range(len(centers))], axis=1)
    m.setflags(write=False)
    return m


def eq_fir_torch(eq_db: torch.Tensor, sample_rate: int) -> torch.Tensor:
    """:func:`eq_fir` in torch for a batch of curves: (..., bands) dB -> (..., EQ_FIR_TAPS) taps."""
    n_fft = EQ_FIR_TAPS - 1
    m = torch.tensor(_interp_matrix(sample_rate), dtype=eq_db.dtype, device=eq_db.device)
    mag = torch.pow(10.0, (eq_db @ m.T) / 20.0)
    h = torch.roll(torch.fft.irfft(mag, n_fft), n_fft // 2, dims=-1)
    h = torch.cat([h, h[..., :1]], dim=-1)
    window = torch.as_tensor(np.hanning(EQ_FIR_TAPS), dtype=eq_db.dtype, device=eq_db.device)
    return h * window


def pan_gains(pan):
    """(left, right) channel gains of :data:`PAN_LAW` for ``pan`` (float, array or tensor)."""
    lib = torch if isinstance(pan, torch.Tensor) else np
    theta = (pan + 1.0) * (math.pi / 4.0)
    return math.sqrt(2.0) * lib.cos(theta), math.sqrt(2.0) * lib.sin(theta)


@lru_cache(maxsize=4)
def reverb_ir(sample_rate: int) -> np.ndarray:
    """(2, n) float32 stereo impulse response of the console's reverb, made from :data:`REVERB_SEED`.

    Decorrelated noise per channel split into octave bands (complementary raised-cosine masks in log
    frequency), each decaying at its :data:`REVERB_RT60_S`; after a :data:`REVERB_PREDELAY_S` pre-delay,
    2 ms fade-in, a fade-out over the last 10 %; each channel at unit energy, so a 0 dB send of white noise
    returns about the dry level.
    """
    rng = np.random.default_rng(REVERB_SEED)
    n = int(round(REVERB_IR_SECONDS * sample_rate))
    t = np.arange(n) / sample_rate
    spectrum = np.fft.rfft(rng.standard_normal((2, n)), axis=-1)
    logf = np.log2(np.maximum(np.fft.rfftfreq(n, 1.0 / sample_rate), 1.0) / 62.5)
    ir = np.zeros((2, n))
    n_bands = len(REVERB_RT60_S)
    for k, rt60 in enumerate(REVERB_RT60_S):
        d = np.clip(logf - k, -1.0, 1.0)  # octave k's mask, held to the ends for the first/last band
        if k == 0:
            d = np.maximum(d, 0.0)
        if k == n_bands - 1:
            d = np.minimum(d, 0.0)
        mask = 0.5 * (1.0 + np.cos(np.pi * d))
        ir += np.fft.irfft(spectrum * mask, n, axis=-1) * np.exp(-6.907755 * t / rt60)
    pre = int(round(REVERB_PREDELAY_S * sample_rate))
    ir = np.concatenate([np.zeros((2, pre)), ir[:, : n - pre]], axis=-1)
    fade_in = int(0.002 * sample_rate)
    ir[:, pre : pre + fade_in] *= np.linspace(0.0, 1.0, fade_in)
    tail = n // 10
    ir[:, n - tail :] *= np.cos(0.5 * np.pi * np.arange(tail) / tail) ** 2
    ir /= np.sqrt((ir**2).sum(axis=-1, keepdims=True))
    out = ir.astype(np.float32)
    out.setflags(write=False)
    return out


def linked_detector(audio: np.ndarray) -> np.ndarray:
    """The stereo-linked compressor's detector: max over channels of |x|, (..., 2, n) -> (..., n) float32."""
    return np.abs(np.asarray(audio, np.float32)).max(axis=-2)


def compressor_envelope(
    detector: np.ndarray, attack_ms: float, release_ms: float, sample_rate: int
) -> np.ndarray:
    """Envelope (linear, (n,) float64) of pedalboard's Compressor driven by ``detector`` (n,).

    JUCE's compressor computes ``env`` by a peak ballistics filter (``env += c * (env_prev - |x|)`` with the
    attack coefficient when |x| rises above env, the release one otherwise), then the gain
    ``(env / T) ** (1 / ratio - 1)`` above T. Run at :data:`PROBE_THRESHOLD_DB` and :data:`PROBE_RATIO`
    through :func:`fxmix.dsp.stages.compression.linked_gain` (which holds the gain where the detector is
    ~0), its gain ``g`` gives ``env = T * g ** -2`` exactly where it matters: wherever env is above the
    probe threshold, i.e. above any console threshold. Elsewhere env is reported as the probe threshold.
    """
    comp = pedalboard.Compressor(
        threshold_db=PROBE_THRESHOLD_DB,
        ratio=PROBE_RATIO,
        attack_ms=float(attack_ms),
        release_ms=float(release_ms),
    )
    g = linked_gain(np.ascontiguousarray(detector, np.float32), sample_rate, comp).astype(np.float64)
    return envelope_from_probe_gain(g)


def envelope_from_probe_gain(g: np.ndarray) -> np.ndarray:
    """The compressor envelope (linear) behind gains ``g`` of a Compressor at the probe setting: JUCE's gain
    ``(env / T) ** (1 / PROBE_RATIO - 1)`` inverted, ``env = T * g ** (1 / (1 / PROBE_RATIO - 1))``; keeps the
    dtype of ``g`` (float32 on the audio thread)."""
    exponent = 1.0 / (1.0 / PROBE_RATIO - 1.0)
    floor = 1e-30 if g.dtype == np.float64 else 1e-15
    t = np.asarray(10.0 ** (PROBE_THRESHOLD_DB / 20.0), g.dtype)
    gg = np.maximum(g, np.asarray(floor, g.dtype))
    return t / (gg * gg) if exponent == -2.0 else t * gg**exponent

"""The console's fixed designs, shared by the torch renderer and its pedalboard twin.

- EQ: a band-gain curve on the octave bands of the profile grid (31.25 Hz .. 16 kHz, every sixth 1/6-octave
  centre of :func:`fxmix.dsp.bands.band_centers_hz`), turned into an :data:`EQ_FIR_TAPS`-tap linear-phase
  FIR by :func:`fxmix.dsp.fir.design_fir` (frequency sampling, log-frequency interpolation, Hann window);
  :func:`eq_fir_torch` is the same design in torch, differentiable in the band gains.
- Pan: :data:`PAN_LAW`.
- Reverb: the corpus engineer's mean reverb return (:data:`REVERB_RETURN`): pedalboard's ``Reverb`` (JUCE's
  freeverb, fed the sum of its two input channels) after the send's high- and low-pass, linear and time
  invariant at fixed settings, so the torch console convolves with its impulse response (:func:`reverb_ir`).
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
from fxmix.dsp.constants import BANDS_PER_OCTAVE, REVERB_RETURN
from fxmix.dsp.features import k_weighting_sos
from fxmix.dsp.fir import design_fir
from fxmix.dsp.stages.compression import linked_gain

#: EQ FIR length (odd, linear phase): 93 ms at 44.1 kHz, enough to shape the 31 Hz octave
EQ_FIR_TAPS = 4097
#: pan law of every track (stereo input: a balance control with these channel gains)
PAN_LAW = "constant-power sin/cos, 0 dB at centre: theta = (pan + 1) pi / 4, L x sqrt2 cos, R x sqrt2 sin"
#: length of the reverb's impulse response: its energy is 60 dB down after 1.23 s, 65 dB by the fade-out
REVERB_IR_SECONDS = 1.5
#: compressor envelope probe: a threshold far below RANGES' lowest, where gain = (env / T) ** (1 / 2 - 1)
PROBE_THRESHOLD_DB = -120.0
PROBE_RATIO = 2.0


def eq_band_centers_hz() -> np.ndarray:
    """The EQ's band centres (Hz): octaves of the profile grid, 31.25 .. 16000 (10 bands)."""
    return band_centers_hz()[::BANDS_PER_OCTAVE]


def curve_points_hz(n_points: int) -> np.ndarray:
    """The frequencies of an EQ curve of ``n_points`` values: the console EQ's octaves
    (:func:`eq_band_centers_hz`) or the profile's whole 1/6-octave grid (the fine class-bus EQ)."""
    for points in (eq_band_centers_hz(), band_centers_hz()):
        if n_points == points.size:
            return points
    raise ValueError(f"an EQ curve has {eq_band_centers_hz().size} (octaves) or {band_centers_hz().size} "
                     f"(1/6-octave grid) values, got {n_points}")


def eq_fir(eq_db: np.ndarray, sample_rate: int) -> np.ndarray:
    """(EQ_FIR_TAPS,) float64 linear-phase FIR for one band-gain curve (dB on :func:`curve_points_hz`: the
    octaves, or the grid)."""
    eq_db = np.asarray(eq_db, float)
    return design_fir(curve_points_hz(eq_db.size), eq_db, sample_rate, EQ_FIR_TAPS)


def eq_to_grid_matrix() -> np.ndarray:
    """(EQ bands, bands): the console EQ's curve on the grid, linear in log frequency between its octaves (as its
    FIR design interpolates), held beyond the outer ones."""
    f, eq = np.log2(band_centers_hz()), np.log2(eq_band_centers_hz())
    eye = np.eye(len(eq))
    return np.stack([np.interp(f, eq, eye[j]) for j in range(len(eq))]).astype(np.float32)


def k_band_weights(sample_rate: int) -> np.ndarray:
    """(bands,) BS.1770 K-weighting power at each grid band times its width (the features are mean bin
    powers per band): band power x this = its share of the loudness."""
    import scipy.signal

    f = band_centers_hz()
    k = np.abs(scipy.signal.sosfreqz(k_weighting_sos(sample_rate), worN=f, fs=sample_rate)[1]) ** 2
    return (k * f / f.max()).astype(np.float32)


@lru_cache(maxsize=8)
def _interp_matrix(sample_rate: int, n_points: int) -> np.ndarray:
    """(bins, points) matrix of design_fir's interpolation: gain_bins = M @ gain_points (np.interp is linear
    in the values)."""
    n_fft = EQ_FIR_TAPS - 1
    f = np.fft.rfftfreq(n_fft, 1.0 / sample_rate)
    centers = curve_points_hz(n_points)
    eye = np.eye(len(centers))
    x = np.log2(np.maximum(f, 1e-3))
    m = np.stack([np.interp(x, np.log2(centers), eye[k]) for k in range(len(centers))], axis=1)
    m.setflags(write=False)
    return m


def eq_fir_torch(eq_db: torch.Tensor, sample_rate: int) -> torch.Tensor:
    """:func:`eq_fir` in torch for a batch of curves: (..., points) dB -> (..., EQ_FIR_TAPS) taps."""
    n_fft = EQ_FIR_TAPS - 1
    m = torch.tensor(_interp_matrix(sample_rate, eq_db.shape[-1]), dtype=eq_db.dtype, device=eq_db.device)
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


def reverb_board() -> pedalboard.Pedalboard:
    """A new instance of the console's reverb return as pedalboard effects: high-pass, low-pass, ``Reverb`` (wet
    only) at :data:`REVERB_RETURN`. JUCE's reverb feeds its tank with the sum of the two input channels, so a
    stereo send (2, n) returns ``(L + R)`` convolved with each channel of :func:`reverb_ir`."""
    r = REVERB_RETURN
    return pedalboard.Pedalboard([
        pedalboard.HighpassFilter(cutoff_frequency_hz=r["send_hpf_hz"]),
        pedalboard.LowpassFilter(cutoff_frequency_hz=r["send_lpf_hz"]),
        pedalboard.Reverb(room_size=r["room_size"], damping=r["damping"], wet_level=1.0, dry_level=0.0,
                          width=r["width"]),
    ])


@lru_cache(maxsize=8)
def reverb_ir(sample_rate: int) -> np.ndarray:
    """(2, n) float32 (read-only): the reverb return's response, per output channel, to a unit impulse in
    either input channel (:func:`reverb_board`), :data:`REVERB_IR_SECONDS` long with a fade-out over the last
    10 % (the response there is more than 65 dB down)."""
    n = int(round(REVERB_IR_SECONDS * sample_rate))
    impulse = np.zeros((2, n), np.float32)
    impulse[0, 0] = 1.0
    ir = reverb_board().process(impulse, sample_rate).astype(np.float64)
    tail = n // 10
    ir[:, n - tail :] *= np.cos(0.5 * np.pi * np.arange(tail) / tail) ** 2
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

"""Differentiable mixing console in torch: per track EQ -> compressor -> fader -> pan -> reverb send; sum.

Signal flow (the pedalboard twin, :mod:`fxmix.model.console.twin`, renders the same):

    track (2, n) -> EQ (linear-phase FIR, zero phase) -> compressor (stereo-linked) -> fader gain_db
      -> pan (PAN_LAW) -> dry bus, and x reverb_send_db -> reverb bus
    mix = (dry bus + reverb IR * (reverb bus L + R)) x master_gain_db   (IR: one per output channel)

With ``exciter`` each panned track first gets its class bus's exciter harmonics (:mod:`fxmix.model.console.exciter`),
with ``bus_eq`` it then goes through its class bus's EQ (:mod:`fxmix.model.console.bus`), and with ``transient`` it
is multiplied by its class bus's transient cut (:mod:`fxmix.model.console.transient`), before the dry and reverb
buses.

Convolutions are FFT convolutions. The EQ is zero phase (its (taps - 1) / 2 delay is trimmed) with silence
outside the track; the reverb is causal and its tail past the last sample is dropped.

Compressor: the gain is JUCE's static curve ``(env / T) ** (1 / ratio - 1)`` above T, computed in torch;
``env`` is the compressor's own ballistics envelope of the track's linked detector (max |L|, |R| after the
EQ), taken from pedalboard (:func:`~fxmix.model.console.designs.compressor_envelope`). So the forward
pass equals the pedalboard rendering, and the gradients with respect to threshold and ratio are exact.
The envelope's own gradient is a straight-through estimate (:func:`compressor_gain`): exact for the
track's level before the compressor, approximate for the EQ's spectral shape; attack/release get none.

Shape: tracks (batch, tracks, 2, n) -> mix (batch, 2, n); any number of tracks (silent padding tracks add
nothing). The dtype of ``tracks`` is used throughout (float64 for gradient checks).

streaming-safe: no (whole-chunk FFT convolutions, zero-phase EQ).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import scipy.fft
import torch
import torch.nn.functional as F
from fxmix.dsp.constants import SAMPLE_RATE

from .designs import compressor_envelope, eq_fir_torch, linked_detector, pan_gains, reverb_ir
from .params import ConsoleParams


@dataclass(frozen=True)
class ConsoleStages:
    """Intermediate signals of one render, for per-effect checks: each (batch, tracks, 2, n) except
    ``reverb`` (the reverb return, (batch, 2, n))."""

    eq: torch.Tensor
    compressed: torch.Tensor
    panned: torch.Tensor
    reverb: torch.Tensor
    mix: torch.Tensor


def render_console(
    tracks: torch.Tensor,
    params: ConsoleParams,
    sample_rate: int = SAMPLE_RATE,
    *,
    envelope_gradient: bool = True,
    bus_eq=None,
    exciter=None,
    transient=None,
) -> torch.Tensor:
    """Mix ``tracks`` (batch, tracks, 2, n) with ``params`` -> (batch, 2, n), differentiable in every
    parameter but attack/release (see the module docstring and :func:`compressor_gain` for the
    compressor's envelope)."""
    return render_console_stages(
        tracks, params, sample_rate, envelope_gradient=envelope_gradient, bus_eq=bus_eq, exciter=exciter,
        transient=transient,
    ).mix


def render_console_stages(
    tracks: torch.Tensor,
    params: ConsoleParams,
    sample_rate: int = SAMPLE_RATE,
    *,
    envelope_gradient: bool = True,
    bus_eq=None,
    exciter=None,
    transient=None,
) -> ConsoleStages:
    """:func:`render_console` keeping every stage's output (``panned`` after the class-bus stages).

    ``exciter``: None, or a function of the panned tracks (batch, tracks, 2, n) (numpy) that returns what the
    exciter adds to each of them (same shape; :func:`fxmix.model.console.exciter.track_excitation`), a
    constant to the gradient.
    ``bus_eq``: None, each track's bus curve (batch, tracks, EQ bands) in dB, or a function of the panned
    (and excited) tracks (batch, tracks, 2, n) that returns those curves (measured on the signal; a constant
    to the gradient).
    ``transient``: None, or a function of the panned tracks after the bus EQ (numpy) that returns each one's
    class-bus gain (batch, tracks, n) (:func:`fxmix.model.console.transient.track_transient_gains`), a constant
    to the gradient."""
    _check_shapes(tracks, params)
    db = lambda v: torch.pow(10.0, v / 20.0)  # noqa: E731
    eq = fir_same(tracks, eq_fir_torch(params.eq_db.to(tracks.dtype), sample_rate)[:, :, None, :])
    comp = eq * compressor_gain(eq, params, sample_rate, envelope_gradient)[:, :, None, :]
    left, right = pan_gains(params.pan.to(tracks.dtype))
    fader = db(params.gain_db.to(tracks.dtype))
    panned = comp * (fader[..., None] * torch.stack([left, right], dim=-1))[..., None]
    if exciter is not None:
        extra = exciter(panned.detach().cpu().numpy())
        panned = panned + torch.as_tensor(extra, dtype=tracks.dtype, device=tracks.device)
    if bus_eq is not None:
        curves = bus_eq(panned.detach()) if callable(bus_eq) else bus_eq
        curves = torch.as_tensor(curves, dtype=tracks.dtype, device=tracks.device)
        panned = fir_same(panned, eq_fir_torch(curves, sample_rate)[:, :, None, :])
    if transient is not None:
        gain = transient(panned.detach().cpu().numpy())
        panned = panned * torch.as_tensor(gain, dtype=tracks.dtype, device=tracks.device)[:, :, None, :]
    dry = panned.sum(dim=1)
    bus = (panned * db(params.reverb_send_db.to(tracks.dtype))[:, :, None, None]).sum(dim=1)
    wet = reverb(bus, sample_rate)
    mix = (dry + wet) * db(params.master_gain_db.to(tracks.dtype))[:, None, None]
    return ConsoleStages(eq=eq, compressed=comp, panned=panned, reverb=wet, mix=mix)


def compressor_gain(
    audio: torch.Tensor, params: ConsoleParams, sample_rate: int, envelope_gradient: bool = True
) -> torch.Tensor:
    """Linked compressor gain (batch, tracks, n) for ``audio`` (batch, tracks, 2, n): JUCE's static curve
    on pedalboard's envelope.

    ``envelope_gradient``: the envelope (in dB) gets the gradient of the instantaneous detector level,
    a straight-through estimate whose value is the envelope's. It is exact for a change of the track's
    level before the compressor (the ballistics are homogeneous: a track 1 dB louder has an envelope 1 dB
    higher everywhere) and approximate for a change of its spectrum; off, the gain is a constant for
    everything but threshold and ratio.
    """
    det = linked_detector(audio.detach().cpu().numpy())
    attack = params.comp_attack_ms.detach().cpu().numpy()
    release = params.comp_release_ms.detach().cpu().numpy()
    env_db = np.empty(det.shape, np.float64)
    for b in range(det.shape[0]):
        for i in range(det.shape[1]):
            env = compressor_envelope(det[b, i], attack[b, i], release[b, i], sample_rate)
            env_db[b, i] = 20.0 * np.log10(env)
    env_db = torch.as_tensor(env_db, dtype=audio.dtype, device=audio.device)
    if envelope_gradient and audio.requires_grad:
        level_db = 20.0 * torch.log10(audio.abs().amax(dim=-2).clamp_min(1e-12))
        env_db = env_db + (level_db - level_db.detach())
    thr = params.comp_threshold_db.to(audio.dtype)[..., None]
    slope = 1.0 / params.comp_ratio.to(audio.dtype)[..., None] - 1.0
    return torch.pow(10.0, slope * F.relu(env_db - thr) / 20.0)


def reverb(bus: torch.Tensor, sample_rate: int) -> torch.Tensor:
    """The reverb return for a send bus (batch, 2, n): the sum of its channels convolved with each channel of
    :func:`~fxmix.model.console.designs.reverb_ir` (JUCE's reverb sums its inputs), cut to n samples (the IR's
    spectrum is cached)."""
    n = bus.shape[-1]
    bus = bus.sum(dim=-2, keepdim=True)
    n_fft = scipy.fft.next_fast_len(n + reverb_ir(sample_rate).shape[-1] - 1, real=True)
    spectrum = _reverb_spectrum(sample_rate, n_fft, bus.dtype, bus.device)
    return torch.fft.irfft(torch.fft.rfft(bus, n_fft) * spectrum, n_fft)[..., :n]


@lru_cache(maxsize=8)
def _reverb_spectrum(sample_rate: int, n_fft: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    ir = torch.tensor(reverb_ir(sample_rate), dtype=dtype, device=device)
    return torch.fft.rfft(ir, n_fft)


def fft_convolve(x: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
    """Full linear convolution along the last axis (broadcast over the others): (..., n) * (..., m) ->
    (..., n + m - 1), by one real FFT of a fast length."""
    n, m = x.shape[-1], h.shape[-1]
    n_fft = scipy.fft.next_fast_len(n + m - 1, real=True)
    y = torch.fft.irfft(torch.fft.rfft(x, n_fft) * torch.fft.rfft(h, n_fft), n_fft)
    return y[..., : n + m - 1]


def fir_same(x: torch.Tensor, taps: torch.Tensor) -> torch.Tensor:
    """Zero-phase filtering by an odd-length linear-phase FIR: the full convolution delayed back by
    (taps - 1) / 2 and cut to n samples (silence outside ``x``)."""
    delay = (taps.shape[-1] - 1) // 2
    return fft_convolve(x, taps)[..., delay : delay + x.shape[-1]]


def _check_shapes(tracks: torch.Tensor, params: ConsoleParams) -> None:
    if tracks.ndim != 4 or tracks.shape[2] != 2:
        raise ValueError(f"tracks must be (batch, tracks, 2, samples), got {tuple(tracks.shape)}")
    if (params.batch, params.tracks) != tuple(tracks.shape[:2]):
        raise ValueError(
            f"params are for (batch, tracks) = {(params.batch, params.tracks)}, "
            f"tracks are {tuple(tracks.shape[:2])}"
        )

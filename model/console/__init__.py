"""Differentiable mixing console (torch) and its pedalboard twin: per-track EQ, compressor, fader, pan and
reverb send, with the decisions as bounded physical parameters (:class:`ConsoleParams`).

The console a mixing network drives, as in DMC (Steinmetz et al., ICASSP 2021) and Diff-MST (Vanka et al.,
ISMIR 2024), but with explicit DSP whose every effect is also a pedalboard effect, so the decisions
render the same outside torch (:func:`render_console_pedalboard`).

    u = net(features)                                   # (batch, tracks, UNIT_SIZE), any real numbers
    params = ConsoleParams.from_unit(u, classes)        # bounded, in dB / ratio / pan
    mix = render_console(tracks, params)                # (batch, tracks, 2, n) -> (batch, 2, n), differentiable
    render_console_pedalboard(tracks[0].numpy(), params.select(0))   # the same mix with pedalboard effects
    params.to_dict(0, names)                            # JSON decisions; ConsoleParams.from_dict reads them
"""

from __future__ import annotations

from .designs import EQ_FIR_TAPS, PAN_LAW, eq_band_centers_hz, eq_fir, eq_fir_torch, reverb_ir
from .params import RANGES, TIMING_RANGES, UNIT_LAYOUT, UNIT_SIZE, ConsoleParams, class_timing
from .render import ConsoleStages, render_console, render_console_stages
from .twin import render_console_pedalboard

__all__ = [
    "EQ_FIR_TAPS",
    "PAN_LAW",
    "RANGES",
    "TIMING_RANGES",
    "UNIT_LAYOUT",
    "UNIT_SIZE",
    "ConsoleParams",
    "ConsoleStages",
    "class_timing",
    "eq_band_centers_hz",
    "eq_fir",
    "eq_fir_torch",
    "render_console",
    "render_console_pedalboard",
    "render_console_stages",
    "reverb_ir",
]

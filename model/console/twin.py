"""The console rendered with pedalboard effects: the same decisions, the same sound as the torch console.

Per track: ``Convolution`` (the EQ FIR, zero phase) -> ``Compressor`` (stereo-linked through
:func:`fxmix.dsp.stages.compression.linked_gain`) -> ``Gain`` (fader) -> one ``Gain`` per channel (pan) ->
``Gain`` (reverb send); the sends' sum through the reverb return itself (high-pass, low-pass, ``Reverb``:
:func:`~fxmix.model.console.designs.reverb_board`); the sum -> ``Gain`` (master).
This is what a host applies outside torch (the OSC bridge, exported chains); the parity tests hold it to
the torch renderer within 0.1 dB per band and 0.1 LU.

JUCE's ``Convolution`` (inside pedalboard) normalises every impulse response it loads to
``0.125 / sqrt(max channel energy)``, the energy summed sample by sample in float32; a ``Gain`` after it
restores the designed level (:func:`convolution`).

streaming-safe: no (zero-phase EQ, whole-track calls; a stream takes the same effects with reset=False and
reports the EQ's (taps - 1) / 2 samples of latency).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import pedalboard
from fxmix.dsp.constants import SAMPLE_RATE
from fxmix.dsp.stages.compression import linked_gain

from .designs import eq_fir, linked_detector, pan_gains, reverb_board
from .exciter import excitation
from .params import ConsoleParams
from .transient import transient_gain


def convolution(ir: np.ndarray, sample_rate: int) -> pedalboard.Pedalboard:
    """pedalboard ``Convolution`` of ``ir`` ((m,) for every channel or (2, m) one per channel) at its
    designed level: JUCE's load-time normalisation undone by a ``Gain``."""
    ir32 = np.ascontiguousarray(ir, np.float32)
    rows = ir32.reshape(-1, ir32.shape[-1])
    energy = max(float(np.cumsum(r * r, dtype=np.float32)[-1]) for r in rows)  # JUCE's float32 running sum
    scale = np.float32(0.125) / np.sqrt(np.float32(energy))
    return pedalboard.Pedalboard(
        [
            pedalboard.Convolution(ir32, mix=1.0, sample_rate=sample_rate),
            pedalboard.Gain(gain_db=-20.0 * math.log10(float(scale))),
        ]
    )


def render_console_pedalboard(
    tracks: np.ndarray, params: ConsoleParams | dict, sample_rate: int = SAMPLE_RATE, *,
    classes: Sequence[str] | None = None, bus_eq=None, exciter=None, transient=None,
    exciter_gains: list | None = None,
) -> np.ndarray:
    """Mix ``tracks`` (tracks, 2, n) with one console's decisions (a ConsoleParams of batch 1, or the dict
    of :meth:`ConsoleParams.to_dict`) -> (2, n) float32.

    ``exciter`` (needs ``classes``): None, ``{class: level dB or None}``, or a function of
    ``{class: (bus (2, n), its tracks' excitation summed (2, n))}`` that returns those levels: each track's
    :func:`~fxmix.model.console.exciter.excitation` at its class's level is added to it after its pan (and
    goes to the reverb send with it), before the bus EQ; ``exciter_gains`` (a list) receives each track's
    excitation level constants (``gains`` of :func:`~fxmix.model.console.exciter.excitation`, {} where silent).
    ``transient`` (needs ``classes``): None or ``{class: depth dB}``: after the bus EQ, each class's dry and
    send sums are multiplied by the transient cut's gain measured on its dry sum
    (:func:`~fxmix.model.console.transient.transient_gain`), which equals multiplying each of its tracks.

    ``bus_eq`` (needs ``classes``): None, ``{class: curve}`` (dB on the EQ's octaves), or a function of
    ``{class: bus (2, n)}`` (the sums of the panned tracks) that returns those curves. The EQ is linear, so
    each class's dry and send sums are EQ'd, which equals EQ'ing each of its tracks after its pan."""
    p = ConsoleParams.from_dict(params) if isinstance(params, dict) else params
    p.check()
    x = np.asarray(tracks, np.float32)
    if x.ndim != 3 or x.shape[1] != 2:
        raise ValueError(f"tracks must be (tracks, 2, samples), got {x.shape}")
    if p.batch != 1 or p.tracks != x.shape[0]:
        raise ValueError(f"params are for (batch, tracks) = {(p.batch, p.tracks)}, need (1, {x.shape[0]})")
    by_class = bus_eq is not None or exciter is not None or transient is not None
    if by_class and (classes is None or len(classes) != x.shape[0]):
        raise ValueError("bus_eq, exciter and transient need one class per track")
    keys = list(classes) if by_class else ["all"] * x.shape[0]
    v = p.map(lambda t: t.detach().cpu().double()[0].numpy())
    dry = {k: np.zeros(x.shape[1:], np.float32) for k in keys}
    bus = {k: np.zeros(x.shape[1:], np.float32) for k in keys}
    # each class's excitation summed, as is and at the tracks' send levels (the level multiplies both)
    exc = {k: np.zeros(x.shape[1:], np.float32) for k in keys} if exciter is not None else None
    exc_sent = {k: np.zeros(x.shape[1:], np.float32) for k in keys} if exciter is not None else None
    for i, k in enumerate(keys):
        y = twin_eq(x[i], v.eq_db[i], sample_rate)
        y = twin_compressor(
            y, v.comp_threshold_db[i], v.comp_ratio[i], v.comp_attack_ms[i], v.comp_release_ms[i], sample_rate
        )
        y = pedalboard.Gain(gain_db=float(v.gain_db[i])).process(y, sample_rate)
        y = twin_pan(y, float(v.pan[i]), sample_rate)
        dry[k] += y
        send = pedalboard.Gain(gain_db=float(v.reverb_send_db[i]))
        bus[k] += send.process(y, sample_rate)
        found: dict = {}
        if exc is not None and np.any(y):
            e = excitation(y, k, sample_rate, gains=found)
            exc[k] += e
            exc_sent[k] += send.process(e, sample_rate)
        if exciter_gains is not None:
            exciter_gains.append(found)
    if exc is not None:
        levels = exciter({k: (dry[k], exc[k]) for k in dry}) if callable(exciter) else exciter
        for k, mix in levels.items():
            if mix is not None:
                g = np.float32(10 ** (mix / 20))
                dry[k] += exc[k] * g
                bus[k] += exc_sent[k] * g
    if bus_eq is not None:
        curves = bus_eq(dry) if callable(bus_eq) else bus_eq
        dry = {k: twin_eq(y, np.asarray(curves[k], float), sample_rate) for k, y in dry.items()}
        bus = {k: twin_eq(y, np.asarray(curves[k], float), sample_rate) for k, y in bus.items()}
    if transient is not None:
        for k in dry:
            if np.any(dry[k]):
                g = transient_gain(dry[k], sample_rate, transient[k])[None, :]
                dry[k], bus[k] = dry[k] * g, bus[k] * g
    wet = reverb_board().process(np.sum(list(bus.values()), axis=0, dtype=np.float32), sample_rate)
    master = pedalboard.Gain(gain_db=float(v.master_gain_db))
    return master.process(np.ascontiguousarray(np.sum(list(dry.values()), axis=0, dtype=np.float32) + wet),
                          sample_rate)


def twin_eq(audio: np.ndarray, eq_db: np.ndarray, sample_rate: int) -> np.ndarray:
    """Zero-phase EQ of ``audio`` (2, n): the FIR through pedalboard's Convolution, delay trimmed."""
    taps = eq_fir(eq_db, sample_rate)
    delay = (len(taps) - 1) // 2
    padded = np.pad(np.asarray(audio, np.float32), ((0, 0), (0, delay)))
    return convolution(taps, sample_rate).process(padded, sample_rate)[:, delay:]


def twin_compressor(
    audio: np.ndarray,
    threshold_db: float,
    ratio: float,
    attack_ms: float,
    release_ms: float,
    sample_rate: int,
) -> np.ndarray:
    """Stereo-linked pedalboard Compressor on ``audio`` (2, n): its gain on max |L|, |R| applied to both."""
    comp = pedalboard.Compressor(
        threshold_db=float(threshold_db),
        ratio=float(ratio),
        attack_ms=float(attack_ms),
        release_ms=float(release_ms),
    )
    gain = linked_gain(linked_detector(audio), sample_rate, comp)
    return (audio * gain[None, :]).astype(np.float32)


def twin_pan(audio: np.ndarray, pan: float, sample_rate: int) -> np.ndarray:
    """PAN_LAW with one pedalboard Gain per channel (a gain under -100 dB is silence in JUCE)."""
    out = np.empty_like(audio)
    for ch, g in enumerate(pan_gains(pan)):
        gain_db = 20.0 * math.log10(max(float(g), 1e-12))
        out[ch] = pedalboard.Gain(gain_db=gain_db).process(audio[ch : ch + 1], sample_rate)[0]
    return out

"""Export fxmix's per-track decisions: fxmix JSON preset, pedalboard chain (JSON + IR files), Reaper ``.RfxChain``.

One :class:`ExportedChain` per track/class is built from the stage params fxmix decided *and the stem itself*.
It carries two renderings of the same decisions:

**pedalboard chain: exact.** Every stage is reproduced as fxmix applies it:

* EQ: the stage's own linear-phase FIR (``fxmix.dsp.stages.eq.taps`` of the curve, float32 taps) in a
  ``pedalboard.Convolution``; the taps go to a side-car ``<track>.eq.wav`` (float32, both channels equal).
* Compression: ``Gain`` (the stage's input gain), then ``LinkedCompressor``: a ``pedalboard.Compressor``
  driven by max(|L|, |R|) whose gain is applied to both channels (stereo-linked, exactly the stage's
  ``fxmix.dsp.stages.compression.linked_gain``; JUCE's own Compressor is per channel).
* Panning: the stage's per-channel FIRs in one ``pedalboard.Convolution`` with a stereo IR
  (``<track>.pan.wav``: channel 0 filters L, channel 1 filters R).
* Loudness: ``Gain`` (the stage's gain), then, where fxmix limited, ``TruePeakLimiter``: the stage's
  -1 dBTP look-ahead limiter (``fxmix.dsp.stages.loudness.peak_limit``; pedalboard's ``Limiter`` is a
  loudness maximizer, not a ceiling).

The round trip export -> :func:`apply_pedalboard_chain` matches fxmix's normalization up to float32
rounding (tests: every 1/6-octave band 100 Hz-10 kHz and the integrated loudness).

**parametric approximation** (for display, editing and the ``.RfxChain``, whose shipped JSFX are biquads):
the curve fitted by :func:`fxmix.plugin_presets.peq.fit_parametric_eq` (to what the stem hears; high-pass,
shelves, <= 6 peaks, within the limits a person would set by hand), the compressor's input gain re-measured
after the fitted EQ, the pan curves as broadband per-channel gains keeping each channel's energy, the loudness
gain re-measured (BS.1770) on that chain's output, no limiter. Its errors are the fit's: where the EQ curve
holds ±24 dB bands or jumps between neighbouring bands where the stem has no energy, the curve error is large
and the stem error (the one that is heard) small; both are in ``parametric_eq``. The ``.RfxChain`` text and
its JSFX are :mod:`fxmix.plugin_presets.rfxchain`'s.

pedalboard chain JSON (``format`` "fxmix-pedalboard-chain", ``version`` 2)::

    {"format": ..., "version": 2, "name": "vocals", "class": "vocals", "sample_rate": 44100,
     "parametric_eq": {"gain_db": .., "filters": [{"type": "HighpassFilter", ..}, ..],
                       "rms_error_db": .., "max_error_db": .., "fit_range_hz": [30, 16000],
                       "stem_rms_error_db": .., "stem_max_error_db": ..},
     "plugins": [{"type": "Convolution", "impulse_response_filename": "vocals.eq.wav"},
                 {"type": "Gain", "gain_db": ..},
                 {"type": "LinkedCompressor", "threshold_db", "ratio", "attack_ms", "release_ms"},
                 {"type": "Convolution", "impulse_response_filename": "vocals.pan.wav"},
                 {"type": "Gain", "gain_db": ..},
                 {"type": "TruePeakLimiter", "threshold_db": ..}]}

Plugin types: the pedalboard classes ``Gain``, ``HighpassFilter``, ``LowShelfFilter``, ``HighShelfFilter``,
``PeakFilter``, ``Compressor`` (JUCE's, per channel) and ``Convolution`` with exactly those keyword
arguments, plus fxmix's ``LinkedCompressor`` and ``TruePeakLimiter`` above (so a user may swap the EQ
``Convolution`` for ``{"type": "Gain", "gain_db": parametric_eq.gain_db}`` + the ``parametric_eq`` filters,
an editable approximation). IR paths are relative to the JSON's folder. Two things the loader does that
plain pedalboard does not: (1) pedalboard (JUCE) normalizes every IR (to 0.125 / max-channel L2 norm);
:func:`load_pedalboard_chain` measures that scale on an impulse and undoes it with a ``Gain``;
(2) ``Convolution`` is causal, so an IR is taken as linear-phase (odd length, delay (len-1)/2 samples) and
each ``Convolution`` gets the input with its edges continued (``fxmix.dsp.fir.extend_edges``) and its
output is shifted back and trimmed to the input's n samples, exactly as fxmix's zero-phase ``apply_fir``
does offline.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import pedalboard
import soundfile as sf

from ..dsp import constants as C
from ..dsp.audio import check_audio, peak_db, write_audio, write_text_atomic
from ..dsp.errors import ConfigError
from ..dsp.features import integrated_loudness, linked_envelope, stft_power
from ..dsp.fir import extend_edges, fir_power_response
from ..dsp.params import PARAM_TYPES, CompressorParams, EqParams, LoudnessParams, PanParams
from ..dsp.stages import eq as eq_stage
from ..dsp.stages import panning as pan_stage
from ..dsp.stages.compression import linked_gain
from ..dsp.stages.loudness import peak_limit
from ..model.console.designs import pan_gains
from ..model.console.exciter import EXCITER_HZ
from .peq import MAX_PEAKS, PEDALBOARD_TYPES, Biquad, ParametricEq, fit_grid_hz, fit_parametric_eq, grid_power
from .rfxchain import chain_text

CHAIN_FORMAT = "fxmix-pedalboard-chain"
CHAIN_VERSION = 2
#: plugin types a chain may hold, with their keyword arguments (pedalboard's, or fxmix's two)
PEDALBOARD_PLUGINS = {
    "Gain": ("gain_db",),
    "HighpassFilter": ("cutoff_frequency_hz",),
    "LowShelfFilter": ("cutoff_frequency_hz", "gain_db", "q"),
    "HighShelfFilter": ("cutoff_frequency_hz", "gain_db", "q"),
    "PeakFilter": ("cutoff_frequency_hz", "gain_db", "q"),
    "Compressor": ("threshold_db", "ratio", "attack_ms", "release_ms"),
    "Convolution": ("impulse_response_filename",),
    "LinkedCompressor": ("threshold_db", "ratio", "attack_ms", "release_ms"),
    "TruePeakLimiter": ("threshold_db",),
}
#: side-car IR file suffixes (next to ``<track>.pedalboard.json``)
IR_SUFFIXES = {"eq": ".eq.wav", "pan": ".pan.wav"}


def eq_taps(p: EqParams, sample_rate: int) -> np.ndarray:
    """(2, n) float32: the EQ stage's FIR (:func:`fxmix.dsp.stages.eq.taps`) for both channels."""
    h = eq_stage.taps(p, sample_rate).astype(np.float32)
    return np.stack([h, h])


def pan_taps(p: PanParams, sample_rate: int) -> np.ndarray:
    """(2, n) float32: the panning stage's left and right FIRs (:func:`fxmix.dsp.stages.panning.taps`)."""
    return np.stack(pan_stage.taps(p, sample_rate)).astype(np.float32)


@dataclass(frozen=True)
class ExportedChain:
    """The decisions of one track as portable effect settings (see the module docstring).

    ``params`` are the exact stage params (the pedalboard chain); ``eq``, ``compressor``, the channel gains,
    ``gain_db`` and ``limiter_threshold_db`` are the parametric approximation (the ``.RfxChain``).
    """

    name: str
    class_name: str
    sample_rate: int
    eq: ParametricEq | None
    compressor: CompressorParams | None  # input_gain_db re-measured for the fitted EQ
    left_gain_db: float
    right_gain_db: float
    gain_db: float
    limiter_threshold_db: float | None
    params: dict = field(default_factory=dict, compare=False)

    # ---------------------------------------------------------------------------- pedalboard (exact)
    def ir_taps(self) -> dict[str, np.ndarray]:
        """The (2, n) float32 IRs of the chain's ``Convolution`` s, keyed "eq" / "pan"."""
        out = {}
        if isinstance(self.params.get("eq"), EqParams):
            out["eq"] = eq_taps(self.params["eq"], self.sample_rate)
        if isinstance(self.params.get("panning"), PanParams):
            out["pan"] = pan_taps(self.params["panning"], self.sample_rate)
        return out

    def plugins(self, base_name: str) -> list[dict]:
        """The exact chain's plugin list; IR files are ``base_name`` + :data:`IR_SUFFIXES`."""
        out: list[dict] = []
        p = self.params
        if isinstance(p.get("eq"), EqParams):
            out.append({"type": "Convolution", "impulse_response_filename": base_name + IR_SUFFIXES["eq"]})
        c = p.get("compression")
        if isinstance(c, CompressorParams):
            out.append({"type": "Gain", "gain_db": c.input_gain_db})
            if c.ratio > 1.0 and c.threshold_db < 0.0:
                out.append(
                    {
                        "type": "LinkedCompressor",
                        "threshold_db": c.threshold_db,
                        "ratio": c.ratio,
                        "attack_ms": c.attack_ms,
                        "release_ms": c.release_ms,
                    }
                )
        if isinstance(p.get("panning"), PanParams):
            out.append({"type": "Convolution", "impulse_response_filename": base_name + IR_SUFFIXES["pan"]})
        lp = p.get("loudness")
        if isinstance(lp, LoudnessParams):
            out.append({"type": "Gain", "gain_db": lp.gain_db})
            if lp.limiter_threshold_db is not None:
                out.append({"type": "TruePeakLimiter", "threshold_db": lp.limiter_threshold_db})
        return out

    def pedalboard_dict(self, base_name: str) -> dict:
        d = {
            "format": CHAIN_FORMAT,
            "version": CHAIN_VERSION,
            "name": self.name,
            "class": self.class_name,
            "sample_rate": self.sample_rate,
        }
        if self.eq is not None:
            d["parametric_eq"] = {
                "gain_db": round(self.eq.gain_db, 4),
                "filters": [f.to_dict() for f in self.eq.filters],
                **self.eq.error_dict(),
            }
        d["plugins"] = self.plugins(base_name)
        return d

    def write_pedalboard(self, path: str | Path) -> list[Path]:
        """Write ``path`` (``<track>.pedalboard.json``) and its IR files beside it, atomically.

        Returns the written paths, IR files first.
        """
        path = Path(path)
        base = path.name.removesuffix(".json").removesuffix(".pedalboard")
        written = [
            write_audio(path.with_name(base + IR_SUFFIXES[k]), taps, self.sample_rate, subtype="FLOAT")
            for k, taps in self.ir_taps().items()
        ]
        text = json.dumps(self.pedalboard_dict(base), indent=1) + "\n"
        return written + [write_text_atomic(path, text)]

    # ------------------------------------------------------------------------------------ RfxChain
    def jsfx_sliders(self) -> dict[str, list[float]]:
        """Slider values (in slider order) for each shipped JSFX (the parametric approximation)."""
        peq = peq_sliders(self.eq)
        c = self.compressor
        comp = (
            [c.input_gain_db, c.threshold_db, c.ratio, c.attack_ms, c.release_ms]
            if c is not None
            else [0.0, 0.0, 1.0, 10.0, 100.0]
        )
        lim = self.limiter_threshold_db
        util = [
            self.left_gain_db,
            self.right_gain_db,
            self.gain_db,
            0.0 if lim is None else 1.0,
            -2.0 if lim is None else lim,
            100.0,
        ]
        return {"peq": peq, "comp": comp, "utility": util}

    def rfxchain_text(self) -> str:
        """The Reaper FX chain of the parametric approximation (:func:`fxmix.plugin_presets.rfxchain.chain_text`)."""
        return chain_text(self.name, self.jsfx_sliders())


def peq_sliders(fit: ParametricEq | None) -> list[float]:
    """The fxmix PEQ JSFX's slider values for a fitted parametric EQ (flat for None)."""
    peq = [0.0, 0.0, 100.0, 0.0, 0.7071, 8000.0, 0.0, 0.7071]
    peaks = [[100.0, 0.0, 1.0] for _ in range(MAX_PEAKS)]
    if fit is not None:
        peq[0] = fit.gain_db
        k = 0
        for f in fit.filters:
            if f.kind == "highpass":
                peq[1] = f.cutoff_frequency_hz
            elif f.kind == "low_shelf":
                peq[2:5] = [f.cutoff_frequency_hz, f.gain_db, f.q]
            elif f.kind == "high_shelf":
                peq[5:8] = [f.cutoff_frequency_hz, f.gain_db, f.q]
            else:
                peaks[k] = [f.cutoff_frequency_hz, f.gain_db, f.q]
                k += 1
    return peq + [v for p in peaks for v in p]


# ------------------------------------------------------------------------------------------ the mixer
@dataclass(frozen=True)
class MixerChain:
    """One track's mixer decisions (``decisions.json``'s ``mixer``) as plug-in settings after its normalization.

    ``eq``: the parametric fit of the mixer's EQ (console: ``eq_db`` on the console's octave bands, read as the
    console's FIR does, linear in log frequency; bus networks: the per-band contribution gains relative to
    ``gain_db``); ``compressor``: (threshold dB, ratio, attack ms, release ms) or None; ``gain_db`` the fader
    (console: gain + master); ``left_gain_db``/``right_gain_db`` the pan as channel gains (console pan law).
    The console's reverb send has no JSFX: ``reverb_send_db`` is kept for the notes. ``bus_eq``: the parametric
    fit of the track's class-bus EQ (a console with ``bus_eq``), a PEQ after the others (linear and the same on
    both channels, so before or after the fader and pan alike).
    """

    eq: ParametricEq | None
    compressor: tuple[float, float, float, float] | None
    gain_db: float
    left_gain_db: float
    right_gain_db: float
    reverb_send_db: float | None = None
    bus_eq: ParametricEq | None = None
    exciter: list[float] | None = None

    def bus_sliders(self) -> dict[str, list[float]]:
        """Slider values of the class-bus stages: the exciter (``fxmix_exciter.jsfx``) and the PEQ ({} without
        either)."""
        out = {"exciter": self.exciter} if self.exciter is not None else {}
        return out | ({"peq": peq_sliders(self.bus_eq)} if self.bus_eq is not None else {})

    def jsfx_sliders(self, *, fader: bool = True) -> dict[str, list[float]]:
        """Slider values for the PEQ, the compressor and (``fader``) the utility carrying pan and gain."""
        out = {"peq": peq_sliders(self.eq)}
        if self.compressor is not None:
            thr, ratio, attack, release = self.compressor
            out["comp"] = [0.0, min(thr, 0.0), ratio, attack, release]
        if fader:
            out["utility"] = [self.left_gain_db, self.right_gain_db, self.gain_db, 0.0, -2.0, 100.0]
        return out


def _db(x: float) -> float:
    return 20.0 * math.log10(max(float(x), 1e-6))


#: the exciter JSFX's gain slider range (dB); its floor is "off"
EXCITER_GAIN_RANGE_DB = (-150.0, 150.0)


def exciter_sliders(doc: Mapping, track: Mapping) -> list[float] | None:
    """``fxmix_exciter.jsfx`` slider values making a console track's class-bus exciter harmonics in front of its
    fader and pan (the console adds them after: the input gains carry the track's fader and pan gain per
    channel, the output gains take them back off); None where its class's exciter is off or the track has no
    content above the corner."""
    level = (doc.get("exciter_db") or {}).get(track.get("class"))
    gains = track["mixer"].get("exciter")
    if level is None or not gains:
        return None
    left, right = pan_gains(float(track["mixer"]["pan"]))
    lo, hi = EXCITER_GAIN_RANGE_DB
    out = [float(EXCITER_HZ[track["class"]])]
    channel_db = [float(track["mixer"]["gain_db"]) + 20.0 * math.log10(max(float(g), 1e-12)) for g in (left, right)]
    out += [float(np.clip(gains["in_db"] + c, lo, hi)) for c in channel_db]
    # a channel the pan silences gets no harmonics (it is silent after the fader anyway)
    out += [float(np.clip(gains["out_db"] + level - c, lo, hi)) if c > -120.0 else lo for c in channel_db]
    return out


def mixer_chain(doc: Mapping, track: Mapping, sample_rate: int = C.SAMPLE_RATE) -> MixerChain:
    """The :class:`MixerChain` of one track of a decisions document (:mod:`fxmix.model.decisions`)."""
    m, kind = track["mixer"], doc.get("mixer")
    if kind == "console":
        bands = doc["console"]["eq_band_hz"]
        eq = fit_parametric_eq(bands, m["eq_db"], sample_rate, highpass=False)
        left, right = pan_gains(float(m["pan"]))
        comp = (float(m["comp_threshold_db"]), float(m["comp_ratio"]), float(m["comp_attack_ms"]),
                float(m["comp_release_ms"]))
        bus = (doc.get("bus_eq_db") or {}).get(track.get("class"))
        bus_hz = doc.get("bus_eq_hz", bands)  # a fine bus EQ's curve is on the profile's grid
        bus_eq = fit_parametric_eq(bus_hz, bus, sample_rate, highpass=False) if bus is not None else None
        return MixerChain(eq, comp, float(m["gain_db"]) + float(doc.get("master_gain_db", 0.0)), _db(left),
                          _db(right), float(m["reverb_send_db"]), bus_eq, exciter_sliders(doc, track))
    if kind == "bus" and m.get("band_gain_db") and m.get("gain_db") is not None:
        edges = np.asarray(doc["band_edges_hz"], float)
        centres = np.sqrt(np.maximum(edges[:-1], edges[1] / 2) * edges[1:])
        have = [k for k, g in enumerate(m["band_gain_db"]) if g is not None]
        gains = [m["band_gain_db"][k] - m["gain_db"] for k in have]
        eq = fit_parametric_eq(centres[have], gains, sample_rate, highpass=False) if len(have) > 1 else None
        return MixerChain(eq, None, float(m["gain_db"]), 0.0, 0.0)
    return MixerChain(None, None, float(m.get("gain_db") or 0.0), 0.0, 0.0)


# ------------------------------------------------------------------------------------------- loading
class LinkedCompressor:
    """Stereo-linked ``pedalboard.Compressor``: detector max(|L|, |R|), one gain for both channels.

    streaming-safe: no as used here (each call starts from a reset compressor); the ballistics are causal.
    """

    def __init__(self, threshold_db: float, ratio: float, attack_ms: float, release_ms: float):
        CompressorParams(threshold_db, ratio, attack_ms, release_ms)  # range checks, naming the key
        self.compressor = pedalboard.Compressor(
            threshold_db=threshold_db, ratio=ratio, attack_ms=attack_ms, release_ms=release_ms
        )

    def __call__(self, audio: np.ndarray, sample_rate: int) -> np.ndarray:
        """(2, n) float32 in and out."""
        g = linked_gain(linked_envelope(audio), sample_rate, self.compressor, prime=True)
        return audio * g[None, :]


class TruePeakLimiter:
    """fxmix's look-ahead true-peak limiter (``fxmix.dsp.stages.loudness.peak_limit``) at ``threshold_db``.

    streaming-safe: no (offline, centred windows; a streaming version has LOOKAHEAD_MS of latency).
    """

    def __init__(self, threshold_db: float):
        if not -60.0 <= threshold_db <= 0.0:
            raise ConfigError(f"TruePeakLimiter.threshold_db = {threshold_db!r} is out of range [-60, 0]")
        self.threshold_db = float(threshold_db)

    def __call__(self, audio: np.ndarray, sample_rate: int) -> np.ndarray:
        return peak_limit(audio, sample_rate, self.threshold_db)


class _Board:
    """A run of pedalboard plugins with its (linear-phase) latency compensated: zero-phase, n samples out."""

    def __init__(self, plugins: list, latency_samples: int):
        self.board = pedalboard.Pedalboard(plugins)
        self.latency_samples = latency_samples

    def __call__(self, audio: np.ndarray, sample_rate: int) -> np.ndarray:
        d, n = self.latency_samples, audio.shape[-1]
        x = extend_edges(audio, d) if d else audio  # the stem's edges continued, as apply_fir does
        y = self.board(np.ascontiguousarray(x, np.float32), sample_rate)
        return np.ascontiguousarray(y[:, 2 * d : 2 * d + n], np.float32)


@dataclass(frozen=True)
class PedalboardChain:
    """A loaded chain: runs of ``pedalboard.Pedalboard`` and fxmix's two stereo stages, in order.

    ``stages`` holds ``pedalboard.Pedalboard`` objects (each with its IR normalization undone; its latency
    compensated when called through the chain), :class:`LinkedCompressor` and :class:`TruePeakLimiter`.
    Calling the chain processes a (2, n) stem offline (n samples out, zero latency).

    streaming-safe: no (each call starts from reset plugins; Convolution latency is trimmed offline).
    """

    name: str
    class_name: str
    sample_rate: int
    stages: tuple
    n_plugins: int

    @property
    def boards(self) -> list[pedalboard.Pedalboard]:
        return [s.board for s in self.stages if isinstance(s, _Board)]

    def __call__(self, audio: np.ndarray, sample_rate: int) -> np.ndarray:
        if int(sample_rate) != self.sample_rate:
            raise ConfigError(
                f"pedalboard chain {self.name!r} was exported for {self.sample_rate} Hz, got "
                f"{sample_rate} Hz audio; resample the stem (fxmix.dsp.audio.resample) first"
            )
        y = check_audio(audio, f"pedalboard chain {self.name!r}")
        for stage in self.stages:
            y = stage(y, self.sample_rate)
        return np.asarray(y, np.float32)


def _number(spec: Mapping, key: str, where: str) -> float:
    v = spec[key]
    if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v):
        raise ConfigError(f"{where}: key {key!r} must be a finite number, got {v!r}")
    return float(v)


def _convolution(spec: Mapping, where: str, base_dir: Path | None, sample_rate: int):
    """(Convolution, undo-normalization Gain, latency samples) for an IR file."""
    name = spec["impulse_response_filename"]
    if not isinstance(name, str) or not name:
        raise ConfigError(f"{where}: key 'impulse_response_filename' must be a file name")
    path = Path(name)
    if not path.is_absolute():
        if base_dir is None:
            raise ConfigError(
                f"{where}: relative 'impulse_response_filename' {name!r} needs the chain's folder"
            )
        path = base_dir / path
    try:
        taps, ir_rate = sf.read(str(path), dtype="float32", always_2d=True)
    except (OSError, RuntimeError) as exc:
        raise ConfigError(f"{where}: key 'impulse_response_filename': cannot read {path} ({exc})") from exc
    taps = taps.T
    if ir_rate != sample_rate:
        raise ConfigError(
            f"{where}: IR {path} is at {ir_rate} Hz, the chain's 'sample_rate' is {sample_rate}"
        )
    if taps.shape[0] > 2 or taps.shape[1] % 2 == 0 or not np.any(taps):
        raise ConfigError(
            f"{where}: IR {path} must be a non-zero mono/stereo linear-phase FIR of odd length "
            f"(got {taps.shape[0]} channel(s), {taps.shape[1]} samples)"
        )
    conv = pedalboard.Convolution(str(path))
    imp = np.zeros((taps.shape[0], taps.shape[1]), np.float32)
    imp[:, 0] = 1.0
    out = conv(imp, sample_rate).astype(np.float64)
    scale = float((out * taps).sum() / (taps.astype(np.float64) ** 2).sum())
    if not scale > 0.0:
        raise ConfigError(f"{where}: pedalboard.Convolution of {path} gave no output")
    return conv, pedalboard.Gain(gain_db=-20.0 * math.log10(scale)), (taps.shape[1] - 1) // 2


def _chain_dict(path_or_dict) -> tuple[dict, Path | None]:
    if isinstance(path_or_dict, Mapping):
        d, base = dict(path_or_dict), None
    else:
        p = Path(path_or_dict)
        try:
            d = json.loads(p.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise ConfigError(f"{p}: not a readable pedalboard chain JSON ({exc})") from exc
        base = p.parent
    if not isinstance(d, dict):
        raise ConfigError("pedalboard chain: not a JSON object")
    if d.get("format") != CHAIN_FORMAT:
        raise ConfigError(f"pedalboard chain: key 'format' must be {CHAIN_FORMAT!r}, got {d.get('format')!r}")
    if d.get("version") != CHAIN_VERSION:
        raise ConfigError(
            f"pedalboard chain: key 'version' = {d.get('version')!r} is not supported (this fxmix reads "
            f"version {CHAIN_VERSION}); re-export with `fxmix preset export --format pedalboard`"
        )
    sr = d.get("sample_rate")
    if isinstance(sr, bool) or not isinstance(sr, int) or not 8000 <= sr <= 384000:
        raise ConfigError(f"pedalboard chain: key 'sample_rate' must be an integer rate in Hz, got {sr!r}")
    if not isinstance(d.get("plugins"), list):
        raise ConfigError("pedalboard chain: missing key 'plugins' (a list)")
    return d, base


def load_pedalboard_chain(path_or_dict, base_dir: str | Path | None = None) -> PedalboardChain:
    """Build a :class:`PedalboardChain` from an exported chain: a path to its JSON, or the dict itself.

    Args:
        path_or_dict: ``<track>.pedalboard.json`` or its parsed dict.
        base_dir: folder of the IR files for a dict (a path's own folder is used otherwise).

    Raises:
        ConfigError: wrong format/version, unknown plugin type, missing/unknown/non-numeric key (named as
            ``plugins[i].key``), unreadable IR file or one at another sample rate.
    """
    d, base = _chain_dict(path_or_dict)
    if base_dir is not None:
        base = Path(base_dir)
    sr = d["sample_rate"]
    stages: list = []
    run: list = []
    latency = 0

    def flush():
        nonlocal run, latency
        if run:
            stages.append(_Board(run, latency))
        run, latency = [], 0

    for i, spec in enumerate(d["plugins"]):
        where = f"pedalboard chain: plugins[{i}]"
        kind = spec.get("type") if isinstance(spec, Mapping) else None
        if kind not in PEDALBOARD_PLUGINS:
            raise ConfigError(f"{where}: key 'type' {kind!r} is not one of {sorted(PEDALBOARD_PLUGINS)}")
        keys = PEDALBOARD_PLUGINS[kind]
        missing = [k for k in keys if k not in spec]
        unknown = sorted(set(spec) - set(keys) - {"type"})
        if missing or unknown:
            raise ConfigError(
                f"{where}: {kind} needs keys {list(keys)} (missing {missing}, unknown {unknown})"
            )
        if kind == "Convolution":  # its own board, trimmed to n samples like fxmix.dsp.fir.apply_fir
            flush()
            conv, undo, lat = _convolution(spec, where, base, sr)
            run, latency = [conv, undo], lat
            flush()
            continue
        kw = {k: _number(spec, k, where) for k in keys}
        try:
            if kind in ("LinkedCompressor", "TruePeakLimiter"):
                flush()
                stages.append((LinkedCompressor if kind == "LinkedCompressor" else TruePeakLimiter)(**kw))
            else:
                run.append(getattr(pedalboard, kind)(**kw))
        except (ConfigError, ValueError, TypeError) as exc:
            raise ConfigError(f"{where} ({kind}): {exc}") from exc
    flush()
    return PedalboardChain(
        str(d.get("name", "")), str(d.get("class", "")), sr, tuple(stages), len(d["plugins"])
    )


def apply_pedalboard_chain(path_or_dict, audio: np.ndarray, sample_rate: int, base_dir=None) -> np.ndarray:
    """Load a chain (:func:`load_pedalboard_chain`) and process a (2, n) stem with it: (2, n) float32."""
    return load_pedalboard_chain(path_or_dict, base_dir)(audio, sample_rate)


# ------------------------------------------------------------------------------------------- building
def _run(plugins: list, y: np.ndarray, sample_rate: int) -> np.ndarray:
    board = pedalboard.Pedalboard(plugins)
    return board(np.ascontiguousarray(y, np.float32), sample_rate).astype(np.float32)


def _channel_gains_db(y: np.ndarray, sample_rate: int, p: PanParams) -> tuple[float, float]:
    """Broadband per-channel gains keeping each channel's energy through the panning stage's FIRs."""
    pw = stft_power(y)
    out = []
    for ch, h in enumerate(pan_taps(p, sample_rate)):
        h2 = fir_power_response(h.astype(np.float64), C.ANALYSIS_FFT)
        psd = pw[ch].sum(axis=0).astype(np.float64)
        tot = psd.sum()
        out.append(float(10 * np.log10((psd * h2).sum() / tot)) if tot > 0 else 0.0)
    return out[0], out[1]


def build_chain(
    audio: np.ndarray, sample_rate: int, params: Mapping, *, name: str, class_name: str
) -> ExportedChain:
    """Turn one stem's recorded stage params (objects or dicts) into an :class:`ExportedChain`.

    The exact chain needs only the params; the stem (the same (2, n) input the params were decided on) is
    needed for the parametric approximation: weight the EQ fit, re-measure the compressor's input gain after
    the fitted EQ, turn the pan curves into channel levels and re-plan the loudness gain on its output.
    """
    x = check_audio(audio, name)
    p = {
        k: (PARAM_TYPES[k].from_dict(v) if isinstance(v, dict) else v)
        for k, v in params.items()
        if v is not None
    }
    if "reverb" in p:
        raise ConfigError(f"{name}: the reverb stage (a training augmentation) cannot be exported")
    fit = None
    y = x
    if isinstance(p.get("eq"), EqParams):
        e = p["eq"]
        fit = fit_parametric_eq(
            e.freqs_hz, e.gain_db, sample_rate, stem_power=grid_power(x, sample_rate, fit_grid_hz())
        )
        plugins = [pedalboard.Gain(gain_db=fit.gain_db)]
        for f in fit.filters:
            kw = f.to_dict()
            plugins.append(getattr(pedalboard, kw.pop("type"))(**kw))
        y = _run(plugins, y, sample_rate)
    comp = None
    if isinstance(p.get("compression"), CompressorParams):
        c = p["compression"]
        in_gain = C.DYNAMICS_PEAK_NORM_DB - peak_db(y) if np.any(y) else 0.0
        comp = CompressorParams(c.threshold_db, c.ratio, c.attack_ms, c.release_ms, float(in_gain))
        y = y * np.float32(10 ** (comp.input_gain_db / 20))
        if comp.ratio > 1.0 and comp.threshold_db < 0.0:
            y = LinkedCompressor(c.threshold_db, c.ratio, c.attack_ms, c.release_ms)(y, sample_rate)
    left = right = 0.0
    if isinstance(p.get("panning"), PanParams):
        left, right = _channel_gains_db(y, sample_rate, p["panning"])
        y = y * np.array([[10 ** (left / 20)], [10 ** (right / 20)]], np.float32)
    gain = 0.0
    lp = p.get("loudness")
    if (
        isinstance(lp, LoudnessParams)
        and lp.target_lufs is not None
        and np.isfinite(lufs := integrated_loudness(y, sample_rate))
    ):
        gain = float(np.clip(lp.target_lufs - lufs, -120.0, 120.0))
    elif isinstance(lp, LoudnessParams):
        gain = lp.gain_db
    return ExportedChain(name, class_name, sample_rate, fit, comp, left, right, gain, None, p)


def biquads_of(chain: Mapping) -> list[Biquad]:
    """The filters of a chain dict's ``parametric_eq`` and ``plugins`` (for inspection and tests)."""
    kinds = {v: k for k, v in PEDALBOARD_TYPES.items()}
    specs = list(chain.get("parametric_eq", {}).get("filters", [])) + list(chain.get("plugins", []))
    return [
        Biquad(kinds[s["type"]], s["cutoff_frequency_hz"], s.get("gain_db", 0.0), s.get("q", 0.7071))
        for s in specs
        if s.get("type") in kinds
    ]


def scale_params(params: Mapping, amounts: Mapping[str, float]) -> dict:
    """Apply preset stage ``amount`` s (0..1): EQ/pan curves and loudness gain scaled, compressor threshold
    depth scaled (0 = bypass). Params are objects; stages missing from ``amounts`` keep amount 1."""
    out = dict(params)
    for stage, a in amounts.items():
        q = out.get(stage)
        if q is None or a == 1.0:
            continue
        if stage == "eq":
            out[stage] = replace(q, gain_db=tuple(a * g for g in q.gain_db))
        elif stage == "panning":
            out[stage] = replace(
                q,
                left_gain_db=tuple(a * g for g in q.left_gain_db),
                right_gain_db=tuple(a * g for g in q.right_gain_db),
                balance_db=a * q.balance_db,
            )
        elif stage == "compression":
            out[stage] = replace(q, threshold_db=a * q.threshold_db, ratio=q.ratio if a > 0 else 1.0)
        elif stage == "loudness":
            out[stage] = replace(q, gain_db=a * q.gain_db, target_lufs=None)
    return out

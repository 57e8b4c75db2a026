"""Export fxmix's per-track decisions: fxmix JSON preset, pedalboard chain (JSON), Reaper ``.RfxChain``.

One :class:`ExportedChain` per track/class is built from the stage params fxmix decided *and the stem itself*:

* EQ: the curve is fitted with :func:`fxmix.plugin_presets.peq.fit_parametric_eq` (stem-spectrum weighted),
  giving a broadband gain plus high-pass/shelf/peak filters (minimum-phase IIR instead of the linear-phase FIR:
  same magnitude within the fit error, different phase).
* Compression: the input gain is re-measured on the IIR-EQ'd stem (peak to -10 dBFS, as the stage does), then
  the same threshold/ratio/attack/release. pedalboard's ``Compressor`` is unlinked (per channel); fxmix's and
  the shipped JSFX are stereo-linked (identical for centred/mono sources).
* Panning: the per-band, per-channel curves become **broadband per-channel gains** that keep each channel's
  energy (computed from the stem's power through the stage's own FIRs): the balance survives, the per-band
  widening does not (pedalboard plugins process every channel alike; see :func:`apply_pedalboard_chain`).
* Loudness: the gain is re-measured on the chain's own output (BS.1770), so the exported chain lands on the
  class target LUFS. fxmix's -1 dBTP look-ahead true-peak limiter has no pedalboard equivalent (pedalboard's
  ``Limiter`` is a loudness maximizer), so it is **not exported**: where fxmix limited, the exported chain's
  peaks can exceed -1 dBTP. ``limiter_threshold_db`` stays None in exports (the JSFX limiter is left off).

pedalboard chain JSON (``format`` "fxmix-pedalboard-chain", ``version`` 1)::

    {"format": ..., "version": 1, "name": "vocals", "class": "vocals", "sample_rate": 44100,
     "fit": {"rms_error_db": .., "stem_rms_error_db": ..},
     "plugins": [{"type": "Gain", "gain_db": ..}, {"type": "HighpassFilter", "cutoff_frequency_hz": ..},
                 {"type": "LowShelfFilter"|"HighShelfFilter"|"PeakFilter", "cutoff_frequency_hz", "gain_db", "q"},
                 {"type": "Compressor", "threshold_db", "ratio", "attack_ms", "release_ms"},
                 {"type": "ChannelGains", "left_gain_db", "right_gain_db"},
                 {"type": "Limiter", "threshold_db", "release_ms"}, ...]}

Every ``type`` but ``ChannelGains`` is a pedalboard class with exactly those keyword arguments.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pedalboard

from ..dsp import constants as C
from ..dsp.audio import check_audio, peak_db
from ..dsp.errors import ConfigError
from ..dsp.features import integrated_loudness, stft_power
from ..dsp.fir import design_fir, fir_power_response
from ..dsp.params import CompressorParams, EqParams, LoudnessParams, PanParams
from .peq import MAX_PEAKS, PEDALBOARD_TYPES, Biquad, ParametricEq, fit_grid_hz, fit_parametric_eq, grid_power

CHAIN_FORMAT = "fxmix-pedalboard-chain"
CHAIN_VERSION = 1
#: pedalboard types a chain may hold, with their keyword arguments
PEDALBOARD_PLUGINS = {
    "Gain": ("gain_db",),
    "HighpassFilter": ("cutoff_frequency_hz",),
    "LowShelfFilter": ("cutoff_frequency_hz", "gain_db", "q"),
    "HighShelfFilter": ("cutoff_frequency_hz", "gain_db", "q"),
    "PeakFilter": ("cutoff_frequency_hz", "gain_db", "q"),
    "Compressor": ("threshold_db", "ratio", "attack_ms", "release_ms"),
    "Limiter": ("threshold_db", "release_ms"),
    "ChannelGains": ("left_gain_db", "right_gain_db"),
}
#: shipped JSFX: Reaper path (relative to its Effects folder once installed) and slider count
JSFX_DIR = Path(__file__).with_name("jsfx")
JSFX = {
    "peq": ("fxmix/fxmix_peq.jsfx", 26),
    "comp": ("fxmix/fxmix_comp.jsfx", 5),
    "utility": ("fxmix/fxmix_utility.jsfx", 6),
}
#: Reaper writes 64 slider values per JS block ("-" = slider not used)
RFX_SLIDERS = 64


@dataclass(frozen=True)
class ExportedChain:
    """The decisions of one track as portable effect settings (see the module docstring)."""

    name: str
    class_name: str
    sample_rate: int
    eq: ParametricEq | None
    compressor: CompressorParams | None  # input_gain_db re-measured for the fitted EQ
    left_gain_db: float
    right_gain_db: float
    gain_db: float
    limiter_threshold_db: float | None

    def plugins(self) -> list[dict]:
        out: list[dict] = []
        if self.eq is not None:
            out.append({"type": "Gain", "gain_db": round(self.eq.gain_db, 4)})
            out += [f.to_dict() for f in self.eq.filters]
        if self.compressor is not None:
            c = self.compressor
            out.append({"type": "Gain", "gain_db": round(c.input_gain_db, 4)})
            if c.ratio > 1.0 and c.threshold_db < 0.0:
                out.append(
                    {
                        "type": "Compressor",
                        "threshold_db": round(c.threshold_db, 4),
                        "ratio": c.ratio,
                        "attack_ms": c.attack_ms,
                        "release_ms": c.release_ms,
                    }
                )
        out.append(
            {
                "type": "ChannelGains",
                "left_gain_db": round(self.left_gain_db, 4),
                "right_gain_db": round(self.right_gain_db, 4),
            }
        )
        out.append({"type": "Gain", "gain_db": round(self.gain_db, 4)})
        if self.limiter_threshold_db is not None:
            out.append(
                {
                    "type": "Limiter",
                    "threshold_db": self.limiter_threshold_db,
                    "release_ms": 100.0,
                }
            )
        return out

    def pedalboard_dict(self) -> dict:
        fit = {}
        if self.eq is not None:
            fit = {"rms_error_db": round(self.eq.rms_error_db, 3)}
            if self.eq.stem_rms_error_db is not None:
                fit["stem_rms_error_db"] = round(self.eq.stem_rms_error_db, 3)
        return {
            "format": CHAIN_FORMAT,
            "version": CHAIN_VERSION,
            "name": self.name,
            "class": self.class_name,
            "sample_rate": self.sample_rate,
            "fit": fit,
            "plugins": self.plugins(),
        }

    # ------------------------------------------------------------------------------------ RfxChain
    def jsfx_sliders(self) -> dict[str, list[float]]:
        """Slider values (in slider order) for each shipped JSFX."""
        peq = [0.0, 0.0, 100.0, 0.0, 0.7071, 8000.0, 0.0, 0.7071]
        peaks = [[100.0, 0.0, 1.0] for _ in range(MAX_PEAKS)]
        if self.eq is not None:
            peq[0] = self.eq.gain_db
            k = 0
            for f in self.eq.filters:
                if f.kind == "highpass":
                    peq[1] = f.cutoff_frequency_hz
                elif f.kind == "low_shelf":
                    peq[2:5] = [f.cutoff_frequency_hz, f.gain_db, f.q]
                elif f.kind == "high_shelf":
                    peq[5:8] = [f.cutoff_frequency_hz, f.gain_db, f.q]
                else:
                    peaks[k] = [f.cutoff_frequency_hz, f.gain_db, f.q]
                    k += 1
        peq += [v for p in peaks for v in p]
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
        """Reaper FX chain: BYPASS line, then ``<JS path ""`` + one line of 64 slider values per effect."""
        lines = []
        for i, (key, values) in enumerate(self.jsfx_sliders().items()):
            path, n = JSFX[key]
            if len(values) != n:
                raise ConfigError(f"internal: {key} has {len(values)} slider values, its JSFX has {n}")
            tokens = [_rfx_number(v) for v in values] + ["-"] * (RFX_SLIDERS - n)
            guid = str(uuid.uuid5(uuid.NAMESPACE_URL, f"fxmix/{self.name}/{i}/{key}")).upper()
            lines += [
                "BYPASS 0 0 0",
                f'<JS "{path}" ""',
                " ".join(tokens),
                ">",
                "FLOATPOS 0 0 0 0",
                f"FXID {{{guid}}}",
                "WAK 0 0",
            ]
        return "\n".join(lines) + "\n"


def _rfx_number(v: float) -> str:
    s = format(float(v), ".10g")
    return "0" if s == "-0" else s


# ------------------------------------------------------------------------------------------- building
def _pedalboard_plugin(spec: Mapping, channel: str | None):
    if not isinstance(spec, Mapping) or spec.get("type") not in PEDALBOARD_PLUGINS:
        got = spec.get("type") if isinstance(spec, Mapping) else spec
        raise ConfigError(
            f"pedalboard chain: plugin 'type' {got!r} is not one of {sorted(PEDALBOARD_PLUGINS)}"
        )
    kind = spec["type"]
    keys = PEDALBOARD_PLUGINS[kind]
    missing = [k for k in keys if k not in spec]
    unknown = set(spec) - set(keys) - {"type"}
    if missing or unknown:
        raise ConfigError(
            f"pedalboard chain: {kind} needs keys {list(keys)} (missing {missing}, unknown {sorted(unknown)})"
        )
    kw = {k: float(spec[k]) for k in keys}
    if kind == "ChannelGains":
        if channel is None:  # one board for every channel: the mean level (exact when the gains are equal)
            return pedalboard.Gain(gain_db=0.5 * (kw["left_gain_db"] + kw["right_gain_db"]))
        return pedalboard.Gain(gain_db=kw["left_gain_db" if channel == "left" else "right_gain_db"])
    return getattr(pedalboard, kind)(**kw)


def _chain_dict(path_or_dict) -> dict:
    if isinstance(path_or_dict, Mapping):
        d = dict(path_or_dict)
    else:
        p = Path(path_or_dict)
        try:
            d = json.loads(p.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise ConfigError(f"{p}: not a readable pedalboard chain JSON ({exc})") from exc
    if d.get("format") != CHAIN_FORMAT:
        raise ConfigError(f"pedalboard chain: key 'format' must be {CHAIN_FORMAT!r}, got {d.get('format')!r}")
    if d.get("version") != CHAIN_VERSION:
        raise ConfigError(f"pedalboard chain: key 'version' = {d.get('version')!r} is not supported")
    if not isinstance(d.get("plugins"), list):
        raise ConfigError("pedalboard chain: missing key 'plugins' (a list)")
    return d


def load_pedalboard_chain(path_or_dict, channel: str | None = None) -> pedalboard.Pedalboard:
    """Build a ``pedalboard.Pedalboard`` from an exported chain (a path to the JSON, or its dict).

    pedalboard plugins process every channel alike, and every plugin used here (filters, Gain, Compressor,
    Limiter) is independent per channel; the panning decision (``ChannelGains``) differs per channel.
    ``channel=None`` gives one board for all channels with the mean of the two gains (exact for centred
    decisions); ``channel="left"``/``"right"`` gives that channel's exact board. :func:`apply_pedalboard_chain`
    runs both.
    """
    if channel not in (None, "left", "right"):
        raise ConfigError(f"load_pedalboard_chain: channel must be None, 'left' or 'right', got {channel!r}")
    d = _chain_dict(path_or_dict)
    return pedalboard.Pedalboard([_pedalboard_plugin(s, channel) for s in d["plugins"]])


def apply_pedalboard_chain(path_or_dict, audio: np.ndarray, sample_rate: int) -> np.ndarray:
    """Process a (2, n) stem: left channel through the left board, right through the right board."""
    x = check_audio(audio, "apply_pedalboard_chain")
    d = _chain_dict(path_or_dict)
    boards = [load_pedalboard_chain(d, ch) for ch in ("left", "right")]
    return np.concatenate([boards[i](x[i : i + 1], sample_rate) for i in range(2)]).astype(np.float32)


def _channel_gains_db(y: np.ndarray, sample_rate: int, p: PanParams) -> tuple[float, float]:
    """Broadband per-channel gains keeping each channel's energy through the panning stage's FIRs."""
    freqs = np.asarray(p.freqs_hz)
    half = p.balance_db / 2.0
    pw = stft_power(y)
    out = []
    for ch, curve in enumerate((np.asarray(p.left_gain_db) - half, np.asarray(p.right_gain_db) + half)):
        h2 = fir_power_response(design_fir(freqs, curve, sample_rate, cutoff_hz=p.cutoff_hz), C.ANALYSIS_FFT)
        psd = pw[ch].sum(axis=0).astype(np.float64)
        tot = psd.sum()
        out.append(float(10 * np.log10((psd * h2).sum() / tot)) if tot > 0 else 0.0)
    return out[0], out[1]


def build_chain(
    audio: np.ndarray, sample_rate: int, params: Mapping, *, name: str, class_name: str
) -> ExportedChain:
    """Turn one stem's recorded stage params (objects or dicts) into an :class:`ExportedChain`.

    The stem (the same (2, n) input the params were decided on) is needed to weight the EQ fit, re-measure
    the compressor's input gain after the fitted EQ, turn the pan curves into channel levels and re-plan the
    loudness gain on the chain's own output.
    """
    from ..dsp.params import PARAM_TYPES

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
        y = _run(
            [{"type": "Gain", "gain_db": fit.gain_db}] + [f.to_dict() for f in fit.filters], y, sample_rate
        )
    comp = None
    if isinstance(p.get("compression"), CompressorParams):
        c = p["compression"]
        in_gain = C.DYNAMICS_PEAK_NORM_DB - peak_db(y) if np.any(y) else 0.0
        comp = CompressorParams(c.threshold_db, c.ratio, c.attack_ms, c.release_ms, float(in_gain))
        partial = ExportedChain(name, class_name, sample_rate, None, comp, 0.0, 0.0, 0.0, None)
        y = _run(partial.plugins()[:-2], y, sample_rate)  # without the channel gains and final gain
    left = right = 0.0
    if isinstance(p.get("panning"), PanParams):
        left, right = _channel_gains_db(y, sample_rate, p["panning"])
        y = y * np.array([[10 ** (left / 20)], [10 ** (right / 20)]], np.float32)
    gain, lim = 0.0, None
    lp = p.get("loudness")
    if (
        isinstance(lp, LoudnessParams)
        and lp.target_lufs is not None
        and np.isfinite(lufs := integrated_loudness(y, sample_rate))
    ):
        gain = float(np.clip(lp.target_lufs - lufs, -120.0, 120.0))
    elif isinstance(lp, LoudnessParams):
        gain = lp.gain_db
    return ExportedChain(name, class_name, sample_rate, fit, comp, left, right, gain, lim)


def _run(plugins: list[dict], y: np.ndarray, sample_rate: int) -> np.ndarray:
    board = pedalboard.Pedalboard([_pedalboard_plugin(s, None) for s in plugins])
    return board(np.ascontiguousarray(y, np.float32), sample_rate).astype(np.float32)


def biquads_of(chain: Mapping) -> list[Biquad]:
    """The EQ filters of a chain dict (for inspection and tests)."""
    kinds = {v: k for k, v in PEDALBOARD_TYPES.items()}
    out = []
    for s in _chain_dict(chain)["plugins"]:
        if s["type"] in kinds:
            out.append(
                Biquad(kinds[s["type"]], s["cutoff_frequency_hz"], s.get("gain_db", 0.0), s.get("q", 0.7071))
            )
    return out


def scale_params(params: Mapping, amounts: Mapping[str, float]) -> dict:
    """Apply preset stage ``amount`` s (0..1): EQ/pan curves and loudness gain scaled, compressor threshold
    depth scaled (0 = bypass). Params are objects; stages missing from ``amounts`` keep amount 1."""
    from dataclasses import replace

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

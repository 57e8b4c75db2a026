"""Rendering engineer decisions with pedalboard: track chains with reverb/delay sends, class buses.

- Track: two first-order high-passes (12 dB/oct) -> masking cuts (PeakFilter) -> stereo-linked Compressor
  -> gain to the decided loudness -> constant-power pan; sends (band-limited, post-fader) into the song's
  shared reverb and delay. Reverb and delay are linear, so each track's return is rendered with its own copy
  of the shared effect and the per-track wet signals sum exactly to the shared-bus mix.
- Class bus: the exciter (each track's own harmonics, mixed in at one level per bus), the tonal-balance
  graphic EQ with loudness make-up (linear, applied to each track of the class), a glue compressor and a
  transient cut (:func:`transient_gain`) whose gains are computed from the bus sum and applied to every track
  of the class (side-chained group processing), so a class stem is exactly the sum of its tracks' wet signals.
- Master: :mod:`fxmix.dsp.stages.master` (glue compressor -> gain -> true-peak limiter at -1 dBTP, the gain
  iterated to the loudness target). The mixture is the master output (not the stem sum, as in MUSDB18).
"""

from __future__ import annotations

import math

import numpy as np
from pedalboard import Delay, HighpassFilter, LowpassFilter, PeakFilter, Pedalboard, Reverb

from ...dsp.audio import db_to_gain
from ...dsp.features import integrated_loudness
from ...dsp.stages.loudness import peak_limit_gain
from ...dsp.stages.master import compress_linked
from ...model.console.bus import bus_spectrum_db
from ...model.console.exciter import excitation
from ...model.console.transient import transient_gain
from .tonal import exciter_mix_db, tonal_eq

#: Class-bus glue compressor per class: ratio, attack (ms), release (ms).
BUS_COMP = {
    "vocals": (2.0, 10.0, 200.0),
    "drums": (4.0, 20.0, 120.0),
    "bass": (3.0, 15.0, 200.0),
    "other": (2.0, 20.0, 300.0),
}
#: Transient control on the drum bus after the glue: a look-ahead peak limiter (dsp's true-peak limiter, the
#: master's), as engineers clip or limit a drum bus. Its ceiling sits the class's peak-to-loudness ceiling
#: (dB, sample peak over integrated loudness; + taste ``bus_plr_db``) above the bus's loudness, so only the
#: hits that stick out further than that are touched: close-miked SoundFont kits put single hits 5-10 dB
#: further above their body than commercial drum stems. Drums only: on vocals, bass and "other" buses the
#: same limiter (ceilings 16/15/17 dB) evened their onset peaks and moved them away from MUSDB18's
#: (training/DATA.md, calibration).
BUS_PLR_DB = {"drums": 18.0}


def pan_gains(pan: float) -> np.ndarray:
    """Constant-power balance gains (2, 1) for pan in [-1, 1] (unity at centre)."""
    th = (pan + 1.0) * math.pi / 4.0
    return (np.array([math.cos(th), math.sin(th)], np.float32) * np.float32(math.sqrt(2.0)))[:, None]


def _f32(x: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(x, dtype=np.float32)


def track_chain(x: np.ndarray, d: dict, sr: int) -> np.ndarray:
    """HPF, masking cuts and compression of one dry track (before its fader)."""
    fx = [HighpassFilter(cutoff_frequency_hz=d["hpf_hz"]), HighpassFilter(cutoff_frequency_hz=d["hpf_hz"])]
    fx += [PeakFilter(cutoff_frequency_hz=c["hz"], gain_db=c["db"], q=c["q"]) for c in d["eq_cuts"]]
    y = Pedalboard(fx)(_f32(x), sr)
    c = d["compressor"]
    g = compress_linked(y, sr, c["threshold_db"], c["ratio"], c["attack_ms"], c["release_ms"])
    return _f32(y * g[None, :])


def _send(x: np.ndarray, send_db: float | None, ret: dict, effect, sr: int) -> np.ndarray | None:
    if send_db is None or not np.any(x):
        return None
    board = Pedalboard([HighpassFilter(ret["send_hpf_hz"]), LowpassFilter(ret["send_lpf_hz"]), effect])
    return board(_f32(x * np.float32(db_to_gain(send_db))), sr)


def render_track(x: np.ndarray, d: dict, returns: dict, sr: int) -> np.ndarray:
    """One track's wet contribution (fader, pan, plus its share of the shared reverb and delay returns).

    Fills ``d["gain_db"]`` where it is None (the fader that reaches ``d["target_lufs"]``)."""
    y = track_chain(x, d, sr)
    if d.get("gain_db") is None:
        lufs = integrated_loudness(y, sr)
        ok = math.isfinite(lufs) and math.isfinite(d["target_lufs"])
        d["gain_db"] = round(float(np.clip(d["target_lufs"] - lufs, -60.0, 40.0)) if ok else 0.0, 4)
    out = _f32(y * np.float32(db_to_gain(d["gain_db"])) * pan_gains(d["pan"]))
    rv, dl = returns["reverb"], returns["delay"]
    reverb = Reverb(
        room_size=rv["room_size"], damping=rv["damping"], wet_level=1.0, dry_level=0.0, width=rv["width"]
    )
    delay = Delay(delay_seconds=dl["delay_s"], feedback=dl["feedback"], mix=1.0)
    for send_db, effect, ret in ((d["sends"]["reverb_db"], reverb, rv), (d["sends"]["delay_db"], delay, dl)):
        wet = _send(out, send_db, ret, effect, sr)
        if wet is not None:
            out = out + wet[:, : out.shape[1]]
    return _f32(out)


def apply_buses(wet: list[np.ndarray], classes: list[str], buses: dict, sr: int) -> list[np.ndarray]:
    """Tonal EQ and glue compression per class bus; fills each bus's ``eq`` and ``threshold_db`` if None."""
    out = list(wet)
    for cls, bus in buses.items():
        idx = [i for i, c in enumerate(classes) if c == cls]
        if not idx:
            continue
        total = np.sum([out[i] for i in idx], axis=0)
        if not np.any(total):
            continue
        out, total = _excite(out, idx, total, cls, bus, sr)
        if bus.get("eq") is None:
            bus["eq"] = tonal_eq(bus_spectrum_db(total, cls, sr), cls, bus["tonal_amount"])
        board = Pedalboard(
            [PeakFilter(cutoff_frequency_hz=b["hz"], gain_db=b["db"], q=b["q"]) for b in bus["eq"]]
        )
        before = integrated_loudness(total, sr)
        for i in idx:
            out[i] = board(_f32(out[i]), sr)
        total = np.sum([out[i] for i in idx], axis=0)
        if bus.get("eq_makeup_db") is None:  # a tone control, not a fader: the bus keeps its loudness
            after = integrated_loudness(total, sr)
            # a bus below the loudness gate (a track its composer muted) reads -inf: no makeup, not NaN
            ok = math.isfinite(before) and math.isfinite(after)
            bus["eq_makeup_db"] = round(float(np.clip(before - after, -12, 12)), 4) if ok else 0.0
        makeup = np.float32(db_to_gain(bus["eq_makeup_db"]))
        out = [_f32(w * makeup) if i in idx else w for i, w in enumerate(out)]
        total = total * makeup
        ratio, attack, release = BUS_COMP[cls]
        if bus.get("threshold_db") is None:
            pk = 20 * math.log10(max(float(np.max(np.abs(total))), 1e-9))
            bus["threshold_db"] = round(pk - bus["gr_db"] * ratio / (ratio - 1.0), 3)
        g = compress_linked(total, sr, bus["threshold_db"], ratio, attack, release)
        if bus.get("transient_cut_db"):
            g = g * transient_gain(total * g[None, :], sr, bus["transient_cut_db"])
        out = [_f32(w * g[None, :]) if i in idx else w for i, w in enumerate(out)]
        if bus.get("peak_plr_db") is not None:
            out = _peak_control(idx, out, bus, sr)
    return out


def _peak_control(idx: list[int], out: list[np.ndarray], bus: dict, sr: int) -> list[np.ndarray]:
    """The bus's transient control: one limiter gain, computed from the bus sum, on every track of the bus;
    fills ``bus["peak_threshold_db"]`` (the bus loudness + ``peak_plr_db``) when absent."""
    total = np.sum([out[i] for i in idx], axis=0)
    if bus.get("peak_threshold_db") is None:
        lufs = integrated_loudness(total, sr)
        bus["peak_threshold_db"] = round(float(lufs + bus["peak_plr_db"]), 3) if math.isfinite(lufs) else 0.0
    g = peak_limit_gain(total, sr, bus["peak_threshold_db"])
    return [_f32(w * g[None, :]) if i in idx else w for i, w in enumerate(out)]


def _excite(out: list[np.ndarray], idx: list[int], total: np.ndarray, cls: str, bus: dict, sr: int):
    """Add each track's exciter harmonics at the bus's exciter level (decided from the bus when absent)."""
    exc = {i: excitation(out[i], cls, sr) for i in idx}
    if "exciter_db" not in bus:
        bus["exciter_db"] = exciter_mix_db(total, np.sum(list(exc.values()), axis=0), cls, sr)
    if bus["exciter_db"] is None:
        return out, total
    g = np.float32(db_to_gain(bus["exciter_db"]))
    out = [_f32(w + exc[i] * g) if i in exc else w for i, w in enumerate(out)]
    return out, np.sum([out[i] for i in idx], axis=0)

"""Randomized, class-aware "engineer" chains (pedalboard) and the mix bus for the synthetic wet corpus.

Each class has typical settings a mixing engineer would recognise; a song draws its parameters from
(truncated) normal distributions around them, so the mapping "normalized stems -> wet mix" stays learnable
while every song differs:

- vocals: high-pass ~100 Hz, mud cut ~350 Hz, presence ~3 kHz and air shelf boosts, 4:1 compression with a
  fast attack, delay and plate-ish reverb sends, centred, loudest element;
- drums: high-pass ~30 Hz, kick shelf, box cut, snap boost, slow-attack compression for punch, some saturation,
  short room, near-centre;
- bass: high-pass ~35 Hz, low shelf, growl peak ~1 kHz, heavy compression, saturation often, no reverb, centred;
- other: high-pass ~150 Hz (makes room for bass), gentle compression, chorus, delay, big reverb, panned off-centre.

The per-stem gain is set by measured loudness (``level_lufs`` per class): an engineer balances by ear, not by
fader position, so the balance is consistent across songs whatever the dry recording level was.

Bus: glue compressor -> gain to the target loudness (-14..-9 LUFS) -> limiter -> final trim to a sample-peak
ceiling (pedalboard's Limiter alone lands at 0 dBFS), iterated so both hold.
"""

from __future__ import annotations

import math

import numpy as np
import pyloudnorm
from pedalboard import (
    Chorus,
    Compressor,
    Delay,
    Distortion,
    Gain,
    HighpassFilter,
    HighShelfFilter,
    Limiter,
    LowShelfFilter,
    PeakFilter,
    Pedalboard,
    Reverb,
)

from ..dsp.audio import db_to_gain, peak_db

#: Mixture loudness target range (LUFS) and sample-peak ceiling (dBFS).
MIX_LUFS_RANGE = (-14.0, -9.0)
MIX_PEAK_CEILING_DB = -0.3
#: Wet stems are trimmed together if any would peak above this (FLAC PCM_24 clips at 0 dBFS).
STEM_PEAK_MAX_DB = -0.5

# (mean, std, lo, hi) for each drawn parameter, per class.
_SPEC: dict[str, dict[str, tuple[float, float, float, float]]] = {
    "vocals": {
        "hpf_hz": (100, 20, 70, 160),
        "low_shelf_hz": (200, 30, 120, 300),
        "low_shelf_db": (-1.5, 1.5, -5, 2),
        "mid_hz": (350, 60, 220, 550),
        "mid_db": (-2.5, 1.5, -6, 1),
        "mid_q": (1.2, 0.3, 0.6, 2.0),
        "presence_hz": (3000, 500, 2000, 5000),
        "presence_db": (2.5, 1.5, -1, 6),
        "presence_q": (1.0, 0.25, 0.5, 1.8),
        "air_hz": (10000, 1500, 7000, 14000),
        "air_db": (3.0, 1.5, 0, 6),
        "comp_threshold_db": (-24, 4, -34, -14),
        "comp_ratio": (4.0, 1.0, 2.0, 8.0),
        "comp_attack_ms": (5, 2, 1, 12),
        "comp_release_ms": (120, 40, 50, 250),
        "drive_db": (4, 2, 1, 9),
        "delay_mix": (0.12, 0.04, 0.04, 0.25),
        "delay_feedback": (0.3, 0.08, 0.1, 0.5),
        "reverb_room": (0.5, 0.12, 0.25, 0.8),
        "reverb_wet": (0.16, 0.05, 0.06, 0.3),
        "reverb_width": (0.8, 0.1, 0.5, 1.0),
        "chorus_mix": (0.2, 0.05, 0.1, 0.35),
        "pan": (0.0, 0.03, -0.08, 0.08),
        "level_lufs": (-19.5, 1.0, -22, -17),
    },
    "drums": {
        "hpf_hz": (30, 8, 20, 50),
        "low_shelf_hz": (80, 15, 50, 120),
        "low_shelf_db": (2.5, 1.5, -1, 6),
        "mid_hz": (400, 80, 250, 650),
        "mid_db": (-3.0, 1.5, -6, 0),
        "mid_q": (1.4, 0.3, 0.7, 2.2),
        "presence_hz": (5000, 800, 3000, 8000),
        "presence_db": (2.0, 1.5, -1, 5),
        "presence_q": (1.0, 0.25, 0.5, 1.8),
        "air_hz": (10000, 1500, 7000, 14000),
        "air_db": (1.5, 1.5, -2, 5),
        "comp_threshold_db": (-20, 4, -30, -10),
        "comp_ratio": (4.0, 1.2, 2.0, 8.0),
        "comp_attack_ms": (18, 5, 8, 30),
        "comp_release_ms": (90, 30, 40, 200),
        "drive_db": (4, 2, 1, 10),
        "delay_mix": (0.08, 0.03, 0.03, 0.15),
        "delay_feedback": (0.2, 0.05, 0.1, 0.3),
        "reverb_room": (0.3, 0.1, 0.1, 0.5),
        "reverb_wet": (0.08, 0.03, 0.03, 0.15),
        "reverb_width": (0.9, 0.08, 0.6, 1.0),
        "chorus_mix": (0.15, 0.05, 0.05, 0.3),
        "pan": (0.0, 0.04, -0.1, 0.1),
        "level_lufs": (-20.5, 1.0, -23, -18),
    },
    "bass": {
        "hpf_hz": (35, 7, 25, 55),
        "low_shelf_hz": (100, 20, 60, 150),
        "low_shelf_db": (2.0, 1.5, -1, 5),
        "mid_hz": (250, 50, 150, 400),
        "mid_db": (-2.0, 1.5, -5, 1),
        "mid_q": (1.2, 0.3, 0.6, 2.0),
        "presence_hz": (1000, 250, 600, 1800),
        "presence_db": (3.0, 1.5, 0, 6),
        "presence_q": (1.0, 0.25, 0.5, 1.8),
        "air_hz": (5000, 1000, 3000, 8000),
        "air_db": (-2.0, 2.0, -6, 2),
        "comp_threshold_db": (-26, 4, -36, -16),
        "comp_ratio": (5.0, 1.2, 3.0, 9.0),
        "comp_attack_ms": (10, 3, 3, 20),
        "comp_release_ms": (150, 40, 60, 300),
        "drive_db": (8, 3, 2, 16),
        "delay_mix": (0.05, 0.02, 0.02, 0.1),
        "delay_feedback": (0.1, 0.05, 0.0, 0.2),
        "reverb_room": (0.2, 0.05, 0.1, 0.3),
        "reverb_wet": (0.04, 0.02, 0.01, 0.08),
        "reverb_width": (0.3, 0.1, 0.1, 0.5),
        "chorus_mix": (0.2, 0.05, 0.1, 0.35),
        "pan": (0.0, 0.02, -0.05, 0.05),
        "level_lufs": (-21.0, 1.0, -24, -19),
    },
    "other": {
        "hpf_hz": (150, 40, 80, 260),
        "low_shelf_hz": (250, 50, 150, 400),
        "low_shelf_db": (-2.0, 1.5, -5, 1),
        "mid_hz": (500, 100, 300, 800),
        "mid_db": (-2.0, 1.5, -5, 1),
        "mid_q": (1.0, 0.3, 0.5, 2.0),
        "presence_hz": (2500, 500, 1500, 4000),
        "presence_db": (1.5, 1.5, -2, 4),
        "presence_q": (0.9, 0.25, 0.5, 1.8),
        "air_hz": (9000, 1500, 6000, 13000),
        "air_db": (2.0, 1.5, -1, 5),
        "comp_threshold_db": (-20, 4, -30, -12),
        "comp_ratio": (2.5, 0.7, 1.5, 4.0),
        "comp_attack_ms": (20, 6, 8, 40),
        "comp_release_ms": (250, 60, 120, 450),
        "drive_db": (5, 2, 2, 10),
        "delay_mix": (0.15, 0.05, 0.05, 0.3),
        "delay_feedback": (0.35, 0.08, 0.15, 0.55),
        "reverb_room": (0.65, 0.12, 0.35, 0.9),
        "reverb_wet": (0.2, 0.06, 0.08, 0.35),
        "reverb_width": (1.0, 0.05, 0.8, 1.0),
        "chorus_mix": (0.3, 0.08, 0.15, 0.5),
        "pan": (0.4, 0.12, 0.15, 0.7),  # magnitude; the side is drawn
        "level_lufs": (-22.5, 1.2, -26, -20),
    },
}
#: Probability of each optional effect, per class.
_P_OPTIONAL: dict[str, dict[str, float]] = {
    "vocals": {"drive": 0.2, "chorus": 0.1, "delay": 0.5, "reverb": 0.9},
    "drums": {"drive": 0.3, "chorus": 0.0, "delay": 0.0, "reverb": 0.45},
    "bass": {"drive": 0.45, "chorus": 0.1, "delay": 0.0, "reverb": 0.05},
    "other": {"drive": 0.2, "chorus": 0.4, "delay": 0.3, "reverb": 0.75},
}
#: Bus (glue) compressor and limiter settings: (mean, std, lo, hi).
_BUS_SPEC: dict[str, tuple[float, float, float, float]] = {
    "glue_threshold_db": (-16, 3, -24, -10),
    "glue_ratio": (2.0, 0.4, 1.4, 3.0),
    "glue_attack_ms": (20, 6, 10, 30),
    "glue_release_ms": (200, 50, 100, 300),
    "limiter_release_ms": (100, 30, 50, 200),
}


def _draw(rng: np.random.Generator, spec: tuple[float, float, float, float]) -> float:
    mean, std, lo, hi = spec
    return float(np.clip(rng.normal(mean, std), lo, hi))


def draw_stem_params(name: str, rng: np.random.Generator, bpm: float) -> dict:
    """Draw one stem's chain parameters (JSON-ready dict) for class ``name``.

    Classes outside vocals/drums/bass/other use the "other" distributions.
    """
    cls = name if name in _SPEC else "other"
    spec = _SPEC[cls]
    p: dict = {k: round(_draw(rng, v), 4) for k, v in spec.items()}
    if cls == "other":
        p["pan"] = round(p["pan"] * float(rng.choice([-1.0, 1.0])), 4)
    beat_s = 60.0 / bpm
    for fx, prob in _P_OPTIONAL[cls].items():
        p[fx] = bool(rng.random() < prob)
    p["delay_s"] = round(float(rng.choice([beat_s / 2, beat_s * 0.75, beat_s])), 5)
    p["chorus_rate_hz"] = round(float(rng.uniform(0.3, 1.5)), 4)
    p["reverb_damping"] = round(float(rng.uniform(0.3, 0.7)), 4)
    return p


def build_stem_board(p: dict) -> Pedalboard:
    """The stem chain without the loudness gain and pan (both applied by :func:`process_stem`)."""
    fx: list = [
        HighpassFilter(cutoff_frequency_hz=p["hpf_hz"]),
        LowShelfFilter(cutoff_frequency_hz=p["low_shelf_hz"], gain_db=p["low_shelf_db"]),
        PeakFilter(cutoff_frequency_hz=p["mid_hz"], gain_db=p["mid_db"], q=p["mid_q"]),
        PeakFilter(cutoff_frequency_hz=p["presence_hz"], gain_db=p["presence_db"], q=p["presence_q"]),
        HighShelfFilter(cutoff_frequency_hz=p["air_hz"], gain_db=p["air_db"]),
        Compressor(
            threshold_db=p["comp_threshold_db"],
            ratio=p["comp_ratio"],
            attack_ms=p["comp_attack_ms"],
            release_ms=p["comp_release_ms"],
        ),
    ]
    if p["drive"]:
        # saturation at a trimmed level, so the drive adds harmonics without a big level jump
        fx += [
            Gain(gain_db=-p["drive_db"] / 2),
            Distortion(drive_db=p["drive_db"]),
            Gain(gain_db=-p["drive_db"] / 2),
        ]
    if p["chorus"]:
        fx.append(Chorus(rate_hz=p["chorus_rate_hz"], depth=0.25, mix=p["chorus_mix"]))
    if p["delay"]:
        fx.append(Delay(delay_seconds=p["delay_s"], feedback=p["delay_feedback"], mix=p["delay_mix"]))
    if p["reverb"]:
        fx.append(
            Reverb(
                room_size=p["reverb_room"],
                damping=p["reverb_damping"],
                wet_level=p["reverb_wet"],
                dry_level=1.0 - 0.5 * p["reverb_wet"],
                width=p["reverb_width"],
            )
        )
    return Pedalboard(fx)


def pan_stereo(x: np.ndarray, pan: float) -> np.ndarray:
    """Constant-power balance of a (2, n) signal; pan in [-1, 1], 0 leaves it unchanged."""
    th = (pan + 1.0) * math.pi / 4.0
    g = np.array([math.cos(th), math.sin(th)], np.float32)[:, None] * np.float32(math.sqrt(2.0))
    return (x * g).astype(np.float32)


def loudness_lufs(meter: pyloudnorm.Meter, x: np.ndarray) -> float:
    """Integrated loudness (LUFS) of (2, n) audio; -inf for silence or audio shorter than one gate block."""
    if x.shape[-1] < int(0.4 * meter.rate) or not np.any(x):
        return float("-inf")
    return float(meter.integrated_loudness(np.asarray(x.T, dtype=np.float64)))


def process_stem(x: np.ndarray, p: dict, sample_rate: int, meter: pyloudnorm.Meter) -> np.ndarray:
    """Run a stem through its chain, set its level to ``p["level_lufs"]`` and pan it.

    Adds ``p["gain_db"]`` (the fader gain that the level needed). Shapes: (2, n) in and out.
    """
    y = build_stem_board(p)(np.ascontiguousarray(x, np.float32), sample_rate)
    lufs = loudness_lufs(meter, y)
    gain_db = 0.0 if not math.isfinite(lufs) else float(np.clip(p["level_lufs"] - lufs, -40.0, 40.0))
    p["gain_db"] = round(gain_db, 4)
    return pan_stereo(y * np.float32(db_to_gain(gain_db)), p["pan"])


def draw_bus_params(rng: np.random.Generator) -> dict:
    p = {k: round(_draw(rng, v), 4) for k, v in _BUS_SPEC.items()}
    p["target_lufs"] = round(float(rng.uniform(MIX_LUFS_RANGE[0] + 0.5, MIX_LUFS_RANGE[1] - 0.5)), 3)
    p["ceiling_db"] = MIX_PEAK_CEILING_DB
    return p


def apply_bus(prebus: np.ndarray, p: dict, sample_rate: int, meter: pyloudnorm.Meter) -> np.ndarray:
    """Glue compressor -> gain -> limiter -> trim to the peak ceiling; the gain is iterated to the target.

    Writes the gains it used into ``p`` (``drive_gain_db``, ``trim_db``, ``lufs``, ``peak_db``).
    Shapes: (2, n) in and out.
    """
    glue = Pedalboard(
        [
            Compressor(
                threshold_db=p["glue_threshold_db"],
                ratio=p["glue_ratio"],
                attack_ms=p["glue_attack_ms"],
                release_ms=p["glue_release_ms"],
            )
        ]
    )
    x = glue(np.ascontiguousarray(prebus, np.float32), sample_rate)
    lufs0 = loudness_lufs(meter, x)
    drive_db = 0.0 if not math.isfinite(lufs0) else p["target_lufs"] - lufs0
    for attempt in range(4):
        y, trim_db = _limit(x, drive_db, p, sample_rate)
        lufs = loudness_lufs(meter, y)
        if not math.isfinite(lufs) or abs(lufs - p["target_lufs"]) < 0.3 or attempt == 3:
            break
        drive_db += p["target_lufs"] - lufs
    p["drive_gain_db"] = round(float(drive_db), 4)
    p["trim_db"] = round(float(trim_db), 4)
    p["lufs"] = round(loudness_lufs(meter, y), 3)
    p["peak_db"] = round(float(peak_db(y)), 3)
    return y


def _limit(x: np.ndarray, drive_db: float, p: dict, sample_rate: int) -> tuple[np.ndarray, float]:
    lim = Pedalboard(
        [Gain(gain_db=drive_db), Limiter(threshold_db=p["ceiling_db"], release_ms=p["limiter_release_ms"])]
    )
    y = lim(x, sample_rate)
    pk = peak_db(y)
    trim_db = min(0.0, p["ceiling_db"] - pk) if math.isfinite(pk) else 0.0
    return (y * np.float32(db_to_gain(trim_db))).astype(np.float32), trim_db


def replay_bus(prebus: np.ndarray, p: dict, sample_rate: int) -> np.ndarray:
    """Re-apply a recorded bus (from params.json) to a pre-bus sum, without re-targeting. (2, n) in and out."""
    board = Pedalboard(
        [
            Compressor(
                threshold_db=p["glue_threshold_db"],
                ratio=p["glue_ratio"],
                attack_ms=p["glue_attack_ms"],
                release_ms=p["glue_release_ms"],
            ),
            Gain(gain_db=p["drive_gain_db"]),
            Limiter(threshold_db=p["ceiling_db"], release_ms=p["limiter_release_ms"]),
            Gain(gain_db=p["trim_db"]),
        ]
    )
    return board(np.ascontiguousarray(prebus, np.float32), sample_rate)

"""The console session's analysis: per-track running statistics, normalization and console mixer decisions
(:class:`ConsoleAnalysis`), and the process it runs in for realtime sessions (:class:`AnalysisProcess`).

What an analysis does is described in :mod:`fxmix.host_bridge.console_session`. Here it is a plain object that
takes the audio of the last :data:`ANALYSIS_S` and returns *decisions*: the EQ filters to load (partition
spectra, designed here, so the audio process never designs a filter), the chain's targets, and the per-track
report the host reads.

Realtime sessions run it in a child process (``python -m fxmix.host_bridge.console_analysis``), because on a
thread of the audio process it holds the interpreter lock for milliseconds at a time (feature STFTs, the mixer
network, filter designs) and the audio thread waits for it: a wall-clock p99 far above the audio thread's CPU
p99. The audio reaches the child through a ring of shared memory the audio thread writes each block into
(:class:`~fxmix.dsp.streaming.windows.Windows`); requests and replies are the planner process's pickle-free
frames (:func:`fxmix.dsp.streaming.planner_process.encode`), answered in order. The child runs at nice
:data:`CHILD_NICE`, not at idle priority as the bus planner: the console's decisions are the mix itself and
must keep coming on a busy machine.

streaming-safe: yes (the analysis runs off the audio thread; the audio thread only copies blocks into the ring).
"""

from __future__ import annotations

import collections
import dataclasses
import json
import logging
import math
import os
import subprocess
import sys
import threading
from concurrent.futures import Future, ThreadPoolExecutor

import numpy as np
import scipy.fft
import scipy.signal
import torch
from fxmix.dsp import constants as C
from fxmix.dsp.bands import band_centers_hz, band_weights
from fxmix.dsp.errors import ConfigError
from fxmix.dsp.features import k_weighting_sos
from fxmix.dsp.profile import Profile
from fxmix.dsp.streaming import TAU_S
from fxmix.dsp.streaming.planner_process import (
    START_TIMEOUT_S,
    PlannerDied,
    _write_all,
    encode,
    read_message,
    spawn_child,
)
from fxmix.dsp.streaming.windows import Windows
from fxmix.model.console import ConsoleParams
from fxmix.model.console.bus import curve_toward, fine_curve_toward, profile_targets
from fxmix.model.mixer import COLOUR_MAX, POWER_FLOOR, class_indices, k_band_weights

from .console_chain import console_curve_on_grid, eq_spectra

log = logging.getLogger("fxmix.engine")

#: seconds of audio between analyses (statistics and normalization decisions)
ANALYSIS_S = 0.25
#: seconds between console mixer decisions
DECIDE_S = 0.5
#: seconds of normalized features the console mixer sees
WINDOW_S = 8.0
#: frames quieter than this (mean power, dBFS) are not counted in a track's statistics
GATE_DBFS = -60.0
#: largest change of a normalization EQ band or gain per analysis (dB), after a track's first decision
NORM_STEP_DB = 1.0
#: active audio (s) a track needs before its normalization is decided
MIN_ACTIVE_S = 1.0
#: EQ curves are redesigned only when a band would move by at least this much (dB), the most-moved
#: MAX_DESIGNS tracks per analysis (each design is ~0.5 ms of the analysis)
EQ_DEADBAND_DB = 0.2
MAX_DESIGNS = 16
#: scheduling niceness of the analysis process (below the audio thread, above idle)
CHILD_NICE = 10
#: the running statistics' arrays (:class:`_Running`)
STATS = ("power", "weight", "k_energy", "k_weight", "k_raw", "k_raw_weight", "active_s")
#: the analysis's part of a console session's saved state (the session's keys)
STATE_KEYS = ("tail", "frames", "stats", "norm_curve", "norm_gain_db", "level_gain_db", "decided", "designed",
              "since_decide", "console")


class _Running:
    """Per-track exponential statistics (time constant ``TAU_S``) over the analysis frames: the band power (mean of
    L and R) of frames above :data:`GATE_DBFS`, and the K-weighted mean square (sum of the channels) of the
    track through its normalization EQ and of the track as it is (``k_raw``), of frames above -70 LUFS."""

    def __init__(self, n_tracks: int, n_bands: int):
        self.power = np.zeros((n_tracks, n_bands))
        self.weight = np.zeros(n_tracks)
        self.k_energy = np.zeros(n_tracks)
        self.k_weight = np.zeros(n_tracks)
        self.k_raw = np.zeros(n_tracks)
        self.k_raw_weight = np.zeros(n_tracks)
        self.active_s = np.zeros(n_tracks)

    def update(self, band_power: np.ndarray, k_energy: np.ndarray, k_raw: np.ndarray, hop_s: float,
               gate: float) -> None:
        """band_power (tracks, bands, frames), k_energy and k_raw (tracks, frames)."""
        decay = math.exp(-band_power.shape[-1] * hop_s / TAU_S)
        live = band_power.mean(axis=1) > gate
        self.power = decay * self.power + (band_power * live[:, None, :]).sum(axis=-1)
        self.weight = decay * self.weight + live.sum(axis=-1)
        self.active_s += live.sum(axis=-1) * hop_s
        for energy, total, count in ((k_energy, "k_energy", "k_weight"), (k_raw, "k_raw", "k_raw_weight")):
            loud = energy > 10 ** ((-70.0 + 0.691) / 10)
            setattr(self, total, decay * getattr(self, total) + (energy * loud).sum(axis=-1))
            setattr(self, count, decay * getattr(self, count) + loud.sum(axis=-1))

    def lufs(self, raw: bool = False) -> np.ndarray:
        """Loudness through the normalization EQ (``raw``: of the track as it is)."""
        e, w = (self.k_raw, self.k_raw_weight) if raw else (self.k_energy, self.k_weight)
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where(w > 0, -0.691 + 10 * np.log10(e / w), -np.inf)

    def spectrum_db(self) -> np.ndarray:
        return 10 * np.log10(self.power / np.maximum(self.weight, 1e-9)[:, None] + 1e-20)


class ConsoleAnalysis:
    """Statistics, normalization and console decisions of one console session's tracks.

    Args:
        sample_rate, block_samples, n_tracks: the session's.
        runner: the loaded console mixer; profile: the normalization targets; classes: the session's classes.

    Every call that changes what the chain should do returns *decisions* (:meth:`push`).
    """

    def __init__(self, sample_rate: int, block_samples: int, n_tracks: int, runner, profile: Profile,
                 classes) -> None:
        self.sample_rate, self.block_samples, self.n_tracks = sample_rate, block_samples, n_tracks
        self.runner, self.profile, self.classes = runner, profile, tuple(classes)
        self.config = dataclasses.replace(runner.net.config, sample_rate=sample_rate)
        if (self.config.n_fft // 2) % self.config.hop:
            raise ConfigError(f"console mixer: n_fft / 2 ({self.config.n_fft // 2}) must be a multiple of hop")
        self.track_class = [self.classes[-1]] * n_tracks
        self.track_name = [f"track {i + 1}" for i in range(n_tracks)]
        self.bypass = {"eq": False, "loudness": False, "model": False}
        self.learning = True
        self.analyses = self.decisions = 0
        self._setup()

    def _setup(self) -> None:
        """The analysis STFT's window, band weights, K-weighting per bin and curve interpolation."""
        n_fft, sr = self.config.n_fft, self.sample_rate
        self._window = (0.5 - 0.5 * np.cos(2 * np.pi * np.arange(n_fft) / n_fft)).astype(np.float32)  # periodic Hann
        self._band_w = np.asarray(band_weights(n_fft, sr), np.float32)
        freqs = np.fft.rfftfreq(n_fft, 1.0 / sr)
        band_hz = band_centers_hz()
        _, h = scipy.signal.sosfreqz(k_weighting_sos(sr), worN=np.maximum(freqs, 1e-3), fs=sr)
        # K-weighted mean square of L + R per unit (|M|^2 + |S|^2) bin power (one-sided Parseval, Hann)
        one_sided = np.full(len(freqs), 2.0)
        one_sided[[0, -1]] = 1.0
        self._k_bins = 2.0 * one_sided * np.abs(h) ** 2 / (n_fft * float((self._window.astype(float) ** 2).sum()))
        eye = np.eye(len(band_hz))
        x = np.log2(np.maximum(freqs, 1e-3))
        self._to_bins = np.stack([np.interp(x, np.log2(band_hz), eye[k]) for k in range(len(band_hz))], axis=1)
        self._k_band = k_band_weights(sr)
        self._targets = profile_targets(self.profile)

    def set_tracks(self, track_class, track_name) -> None:
        self.track_class, self.track_name = list(track_class), list(track_name)

    def reset(self) -> dict:
        t, b = self.n_tracks, len(band_centers_hz())
        self._tail = np.zeros((t, 2, 0), np.float32)
        self._frames = np.zeros((t, (3 if self.config.colour else 2) * b, 0), np.float32)
        self._stats = _Running(t, b)
        self.norm_curve, self.norm_gain_db, self.level_gain_db = np.zeros((t, b)), np.zeros(t), np.zeros(t)
        self.decided = np.zeros(t, bool)
        self._designed = np.full((t, b), np.nan)
        self._since_decide = 0.0
        self.console = _numpy_params(ConsoleParams.neutral(1, t, [self.track_class]))
        return self.push(jump=True)

    def control(self, name: str, value) -> dict | None:
        """``bypass_eq`` / ``bypass_loudness`` / ``bypass_model`` (-> decisions), ``learn`` (True / False)."""
        if name == "learn":
            self.learning = bool(value)
            return None
        self.bypass[name[7:]] = bool(value)
        return self.push()

    # ------------------------------------------------------------------ one analysis

    def analyse(self, chunk: np.ndarray) -> dict:
        """The statistics, normalization and (every :data:`DECIDE_S`) console decisions after ``chunk``
        (tracks, 2, n) of new audio -> decisions."""
        self.analyses += 1
        power = self._new_power(chunk)  # (tracks, 2 (mid, side), frames, bins)
        bands = power @ self._band_w.T  # (tracks, 2, frames, bands)
        t, _, f, b = bands.shape
        # the console mixer's features, as fxmix.model.mixer.track_features: log10 band power / 2, mid then side
        feats = (np.log10(bands + POWER_FLOOR) * 0.5).transpose(0, 1, 3, 2).reshape(t, 2 * b, f)
        if self.learning and f:
            curve, _ = self._norm_in_force()
            eq_bins = 10.0 ** ((curve @ self._to_bins.T) / 10.0)  # (tracks, bins) the EQ in force, in power
            k_energy = np.einsum("tcfk,tk->tf", power, eq_bins * self._k_bins)
            k_raw = np.einsum("tcfk,k->tf", power, self._k_bins)
            gate = 10 ** (GATE_DBFS / 10) * float((self._window.astype(float) ** 2).sum())
            self._stats.update((bands[:, 0] + bands[:, 1]).transpose(0, 2, 1), k_energy, k_raw,
                               self.config.hop / self.sample_rate, gate)
            self._normalize()
        curve, gain = self._norm_in_force()
        shift = ((curve + gain[:, None]) / 20.0).astype(np.float32)
        norm = feats + np.concatenate([shift, shift], axis=1)[:, :, None]
        if self.config.colour:  # what the normalization changed, as fxmix.model.mixer.colour_of measures it
            colour = np.clip(-shift, -COLOUR_MAX, COLOUR_MAX)
            norm = np.concatenate([norm, np.broadcast_to(colour[:, :, None], (t, b, f))], axis=1)
        keep = int(WINDOW_S * self.sample_rate / self.config.hop)
        self._frames = np.concatenate([self._frames, norm], axis=-1)[:, :, -keep:]
        self._since_decide += chunk.shape[-1] / self.sample_rate
        if self.learning and self._since_decide >= DECIDE_S and self._frames.shape[-1] >= 2:
            self._since_decide = 0.0
            self._decide()
        return self.push()

    def _new_power(self, chunk: np.ndarray) -> np.ndarray:
        """Bin powers (tracks, 2, frames, bins) of mid and side, periodic-Hann STFT at the console mixer's
        n_fft / hop, of every whole frame the new audio completes (continuing the stream's hop grid; the rest
        waits in the tail)."""
        audio = np.concatenate([self._tail, chunk], axis=-1)
        n_fft, hop = self.config.n_fft, self.config.hop
        f = (audio.shape[-1] - n_fft) // hop + 1 if audio.shape[-1] >= n_fft else 0
        self._tail = audio[..., f * hop :]
        if f <= 0:
            return np.zeros((self.n_tracks, 2, 0, n_fft // 2 + 1), np.float32)
        ms = np.stack([audio[:, 0] + audio[:, 1], audio[:, 0] - audio[:, 1]], axis=1) * np.float32(0.5)
        frames = np.lib.stride_tricks.sliding_window_view(ms, n_fft, axis=-1)[:, :, : (f - 1) * hop + 1 : hop]
        spec = scipy.fft.rfft(frames * self._window, axis=-1)
        return (spec.real**2 + spec.imag**2).astype(np.float32)

    def _normalize(self) -> None:
        """Each ready track's EQ curve and gain towards its class target (rate-limited after the first)."""
        s = self._stats
        ready = (s.active_s >= MIN_ACTIVE_S) & (s.weight > 0) & np.isfinite(s.lufs())
        if not ready.any():
            return
        targets = [self.profile.targets_for(c) for c in self.track_class]
        target_spec = np.stack([np.asarray(t.spectrum_db, float) for t in targets])
        target_lufs = np.array([float(t.loudness_lufs) for t in targets])
        spec = s.spectrum_db()
        curve = target_spec - spec
        curve -= np.median(curve, axis=1, keepdims=True)  # the EQ stage's residual rule: shapes, not levels
        curve = np.clip(curve - 0.5 * (curve.max(axis=1) + curve.min(axis=1))[:, None],
                        -C.EQ_MAX_GAIN_DB, C.EQ_MAX_GAIN_DB)
        # the curve keeps the track's K-weighted loudness (its level is the gain's job): a new curve then
        # changes no level, while the gain that follows is slewed on the audio thread
        kp = 10 ** (spec / 10) * self._k_band
        curve -= 10 * np.log10((kp * 10 ** (curve / 10)).sum(axis=1) / kp.sum(axis=1))[:, None]
        curve = np.clip(curve, -C.EQ_MAX_GAIN_DB, C.EQ_MAX_GAIN_DB)
        jump, lim = ready & (s.active_s < TAU_S), NORM_STEP_DB  # warming up: follow the estimate
        new_curve = np.where(jump[:, None], curve, self.norm_curve + np.clip(curve - self.norm_curve, -lim, lim))
        self.norm_curve = np.where(ready[:, None], new_curve, self.norm_curve)
        with np.errstate(invalid="ignore"):  # the meter reads the EQ'd track (closed loop)
            gain = np.clip(target_lufs - s.lufs(), -40.0, 40.0)
            level = np.clip(target_lufs - s.lufs(raw=True), -40.0, 40.0)
        self.norm_gain_db = np.where(ready, np.nan_to_num(gain), self.norm_gain_db)
        self.level_gain_db = np.where(ready, np.nan_to_num(level), self.level_gain_db)
        self.decided |= ready

    def _rendered(self) -> tuple[np.ndarray, np.ndarray]:
        """The normalization curve and gain the chain applies: the normalization's (:meth:`_norm_in_force`), or
        for a mixer that renders the levelled recordings no curve and the gain of the loudness stage alone (the
        class target over the track's own loudness)."""
        if not self.config.render_levelled:
            return self._norm_in_force()
        gain = np.zeros_like(self.level_gain_db) if self.bypass["loudness"] else self.level_gain_db
        return np.zeros_like(self.norm_curve), gain

    def _bus_curves(self, p: dict, eq: np.ndarray, gain: np.ndarray) -> np.ndarray:
        """Each track's class-bus EQ on the grid (:func:`fxmix.model.console.bus.curve_toward`): the class's bus
        spectrum estimated from its tracks' running band spectra through their EQ, normalization gain and fader
        (each weighted by the share of time it plays; the compressor and pan left out: a level change, and
        constant power), moved toward the profile's class target. Zeros where the model is bypassed."""
        out = np.zeros_like(eq)
        s = self._stats
        if self.bypass["model"] or not (s.weight > 0).any():
            return out
        share = s.active_s / max(float(s.active_s.max()), 1e-9)
        power = 10 ** ((s.spectrum_db() + eq + (gain + p["gain_db"])[:, None]) / 10) * share[:, None]
        for cls in set(self.track_class):
            idx = [i for i, c in enumerate(self.track_class) if c == cls and s.weight[i] > 0]
            if idx:
                bus_db = 10 * np.log10(power[idx].sum(axis=0) + 1e-20)
                if self.config.bus_eq_fine:  # the curve is on the grid already
                    out[idx] = fine_curve_toward(bus_db, self._targets[cls], self._k_band)
                else:
                    out[idx] = console_curve_on_grid(curve_toward(bus_db, self._targets[cls], self._k_band))
        return out

    def _norm_in_force(self) -> tuple[np.ndarray, np.ndarray]:
        curve = np.zeros_like(self.norm_curve) if self.bypass["eq"] else self.norm_curve
        gain = np.zeros_like(self.norm_gain_db) if self.bypass["loudness"] else self.norm_gain_db
        return curve, gain

    def _decide(self) -> None:
        """The console mixer on the window of normalized features -> :attr:`console` (tracks never active
        are masked out of the attention and keep the neutral console)."""
        active = self._stats.active_s > 0
        if not active.any():
            return
        u, master = self.runner(self._frames[None], class_indices([self.track_class]).numpy(),
                                active[None].astype(np.float32))
        params = ConsoleParams.from_unit(torch.from_numpy(np.asarray(u)), [self.track_class],
                                         master_u=torch.from_numpy(np.asarray(master)))
        new = _numpy_params(params)
        neutral = _numpy_params(ConsoleParams.neutral(1, self.n_tracks, [self.track_class]))
        self.console = {k: (np.where(active if v.ndim == 1 else active[:, None], v, neutral[k])
                            if k != "master_gain_db" else v) for k, v in new.items()}
        self.decisions += 1

    # ------------------------------------------------------------------ decisions

    def push(self, jump: bool = False) -> dict:
        """The decisions in force, for the chain: ``eq_tracks`` / ``eq_spectra`` (the EQs to load: normalization
        + console curve, redesigned where a band moved by :data:`EQ_DEADBAND_DB`), ``targets`` (for
        :meth:`ConsoleChain.set_targets`), ``jump``; and for the host ``report`` (:meth:`report` as one JSON
        string: the audio process parses it only when a host asks, not each analysis, on a thread the chain
        needs the interpreter lock from), ``counts`` and ``console``."""
        p = self.console if not self.bypass["model"] else _numpy_params(
            ConsoleParams.neutral(1, self.n_tracks, [self.track_class]))
        curve, gain = self._rendered()
        eq = curve + console_curve_on_grid(p["eq_db"])
        if self.config.bus_eq:
            eq = eq + self._bus_curves(p, eq, gain)
        move = np.nan_to_num(np.abs(eq - self._designed).max(axis=1), nan=np.inf)
        order = np.argsort(-move)[: self.n_tracks if jump else MAX_DESIGNS]
        tracks = [int(i) for i in order[move[order] >= EQ_DEADBAND_DB]]
        spectra = [eq_spectra(eq[i], self.sample_rate, self.block_samples) for i in tracks]
        for i in tracks:
            self._designed[i] = eq[i]
        send = np.full(self.n_tracks, -120.0) if self.bypass["model"] else p["reverb_send_db"]
        targets = {"gain_db": p["gain_db"], "drive_db": gain, "threshold_db": p["comp_threshold_db"],
                   "ratio": p["comp_ratio"], "send_db": send, "pan": p["pan"], "master_db": float(p["master_gain_db"])}
        return {"eq_tracks": np.asarray(tracks, np.int64),
                "eq_spectra": np.stack(spectra) if spectra else np.zeros((0, 1, 1), np.complex64),
                "targets": targets, "jump": bool(jump), "report": json.dumps(self.report()), "counts": self.counts(),
                "console": self.console}

    def counts(self) -> dict:
        return {"analyses": self.analyses, "decisions": self.decisions, "tracks_decided": int(self.decided.sum())}

    def report(self) -> list[dict]:
        curve, gain = self._rendered()
        return [self._entry(i, curve, gain) for i in range(self.n_tracks)]

    def _entry(self, i: int, curve: np.ndarray, gain: np.ndarray) -> dict:
        """Track ``i``'s decisions in force (``curve``, ``gain``: the normalization's, :meth:`_norm_in_force`):
        ``gain_db`` and ``pan`` are what the track gets in the mix (normalization gain + console fader + master
        gain; the console's pan), then each part."""
        p = self.console
        fader = float(p["gain_db"][i]) if not self.bypass["model"] else 0.0
        master = float(p["master_gain_db"]) if not self.bypass["model"] else 0.0
        pan = float(p["pan"][i]) if not self.bypass["model"] else 0.0
        f = band_centers_hz()
        return {
            "track": int(i), "name": self.track_name[i], "class": self.track_class[i], "mixer": "console",
            "gain_db": round(float(gain[i]) + fader + master, 3), "pan": round(pan, 3),
            "eq": {"low_db": round(float(curve[i][f < 250].mean()), 2),
                   "mid_db": round(float(curve[i][(f >= 250) & (f < 4000)].mean()), 2),
                   "high_db": round(float(curve[i][f >= 4000].mean()), 2)},
            "normalization": {"gain_db": round(float(gain[i]), 3), "decided": bool(self.decided[i])},
            "console": {"gain_db": round(fader, 3), "pan": round(pan, 3),
                        "eq_db": [round(float(v), 2) for v in p["eq_db"][i]],
                        "comp_threshold_db": round(float(p["comp_threshold_db"][i]), 2),
                        "comp_ratio": round(float(p["comp_ratio"][i]), 3),
                        "reverb_send_db": round(float(p["reverb_send_db"][i]), 2),
                        "master_gain_db": round(master, 3)},
        }

    # ------------------------------------------------------------------ state

    def state(self) -> dict:
        """The analysis part of :meth:`ConsoleSession.save_state` (its keys there)."""
        s = self._stats
        return {
            "tail": self._tail.copy(), "frames": self._frames.copy(),
            "stats": {k: getattr(s, k).copy() for k in STATS},
            "norm_curve": self.norm_curve.copy(), "norm_gain_db": self.norm_gain_db.copy(),
            "level_gain_db": self.level_gain_db.copy(), "decided": self.decided.copy(), "designed": self._designed.copy(), "since_decide": self._since_decide,
            "console": {k: np.array(v, copy=True) for k, v in self.console.items()},
            "analyses": self.analyses, "decisions": self.decisions,
        }

    def load(self, state: dict) -> dict:
        """Continue from :meth:`state` plus the session's ``track_class``, ``track_name``, ``bypass`` and
        ``learning`` -> the report, counts and console in force (the chain restores its own state: nothing to
        push)."""
        self.set_tracks(state["track_class"], state["track_name"])
        self.bypass, self.learning = {k: bool(v) for k, v in state["bypass"].items()}, bool(state["learning"])
        self._tail, self._frames = np.array(state["tail"], np.float32), np.array(state["frames"], np.float32)
        for k in STATS:  # a state saved before the raw loudness was kept starts that meter afresh
            setattr(self._stats, k, np.array(state["stats"].get(k, getattr(self._stats, k)), float))
        self.norm_curve, self.norm_gain_db = np.array(state["norm_curve"], float), np.array(state["norm_gain_db"], float)
        self.level_gain_db = np.array(state.get("level_gain_db", self.level_gain_db), float)
        self.decided, self._designed = np.array(state["decided"], bool), np.array(state["designed"], float)
        self._since_decide = float(state["since_decide"])
        self.console = {k: np.array(v, float) for k, v in state["console"].items()}
        self.analyses, self.decisions = int(state["analyses"]), int(state["decisions"])
        return {"report": json.dumps(self.report()), "counts": self.counts(), "console": self.console}


def _numpy_params(p: ConsoleParams) -> dict[str, np.ndarray]:
    """Batch item 0 of ``p`` as float64 numpy arrays by field name."""
    return {f.name: getattr(p, f.name).detach().double()[0].numpy() for f in dataclasses.fields(p)}


# ---------------------------------------------------------------------- requests, here or in a child process


def handle(an: ConsoleAnalysis, msg: dict, ring: np.ndarray | None = None):
    """One request to an analysis: ``{"op": ...}`` with ``analyse`` (``chunk``, or ``start`` / ``stop`` sample
    counts in the shared ``ring``), ``tracks``, ``control``, ``reset``, ``state``, ``load``."""
    op = msg["op"]
    if op == "analyse":
        if "chunk" in msg:
            return an.analyse(msg["chunk"])
        idx = np.arange(int(msg["start"]), int(msg["stop"])) % ring.shape[-1]
        return an.analyse(np.ascontiguousarray(ring[:, :, idx]))
    if op == "tracks":
        return an.set_tracks(msg["classes"], msg["names"])
    if op == "control":
        return an.control(msg["name"], msg["value"])
    if op == "reset":
        return an.reset()
    if op == "state":
        return an.state()
    if op == "load":
        return an.load(msg["state"])
    raise ConfigError(f"console analysis: unknown request {op!r}")


class InProcess:
    """The analysis in this process: each request run at once (``pool`` None: reproducible sessions) or on the
    one thread of ``pool``. ``call`` returns a Future either way."""

    def __init__(self, an: ConsoleAnalysis, pool: ThreadPoolExecutor | None, pool_ident: int | None = None):
        self.an, self.pool, self.pool_ident = an, pool, pool_ident

    def call(self, msg: dict, block: bool = True) -> Future:
        """(on the pool's own thread, e.g. deferred host work changing a control, the request runs at once)"""
        if self.pool is not None and threading.get_ident() != self.pool_ident:
            return self.pool.submit(handle, self.an, msg)
        fut: Future = Future()
        try:
            fut.set_result(handle(self.an, msg))
        except Exception as exc:  # noqa: BLE001 - raised again where the result is read
            fut.set_exception(exc)
        return fut

    def cpu_seconds(self) -> float | None:
        return None

    def close(self) -> None:
        pass


class AnalysisProcess:
    """A :class:`ConsoleAnalysis` in a child process; ``call`` returns a Future resolved (on the reader
    thread) by the child's reply. Requests are answered in the order they were made.

    Args:
        config: ``sample_rate``, ``block_samples``, ``n_tracks``, ``classes``, ``profile`` (its dict),
            ``model_dir`` and ``backend`` of the console mixer.
        ring: the shared audio ring (``Windows.ref()``).

    Raises:
        PlannerDied: the child cannot start (the caller runs the analysis on a thread instead).
    """

    def __init__(self, config: dict, ring: dict):
        self.proc, self.wfd, self.rfd = spawn_child("fxmix.host_bridge.console_analysis",
                                                    "the console analysis process")
        self._lock = threading.Lock()
        self._futures: collections.deque[Future] = collections.deque()
        self._alive = True
        self._reader = threading.Thread(target=self._read, name="fxmix-console-rx", daemon=True)
        self._reader.start()
        try:
            self.first = self.call({"op": "open", "config": config, "ring": ring}).result(START_TIMEOUT_S)
        except Exception as exc:
            self.close()
            raise PlannerDied(f"the console analysis process did not start ({exc}); its error output is above") from exc

    def call(self, msg: dict, block: bool = True) -> Future | None:
        """Send one request (written here: requests are a few hundred bytes, except a state). ``block=False``
        (the audio thread): None, nothing sent, while another thread is sending."""
        fut: Future = Future()
        data = encode(msg)
        if not self._lock.acquire(blocking=block):
            return None
        try:
            if not self._alive:
                fut.set_exception(PlannerDied("the console analysis process has exited"))
                return fut
            self._futures.append(fut)
            try:
                _write_all(self.wfd, data)
            except OSError as exc:
                self._futures.pop()
                fut.set_exception(PlannerDied(f"the console analysis process has exited ({exc})"))
        finally:
            self._lock.release()
        return fut

    def _read(self) -> None:
        try:
            while (msg := read_message(self.rfd)) is not None:
                with self._lock:
                    fut = self._futures.popleft()
                if msg["ok"]:
                    fut.set_result(msg["value"])
                else:
                    fut.set_exception(msg["value"])
        except (OSError, ValueError, TypeError, KeyError, IndexError) as exc:
            log.warning("console analysis process: bad reply (%s)", exc)
        finally:
            with self._lock:
                self._alive = False
                failed, self._futures = list(self._futures), collections.deque()
            for fut in failed:
                fut.set_exception(PlannerDied(f"the console analysis process exited (code {self.proc.poll()})"))
            os.close(self.rfd)

    def cpu_seconds(self) -> float | None:
        """CPU seconds (user + system) the child has used, from ``/proc`` (None elsewhere)."""
        try:
            with open(f"/proc/{self.proc.pid}/stat", encoding="ascii") as fh:
                fields = fh.read().rsplit(")", 1)[1].split()
            return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        except (OSError, ValueError, IndexError):
            return None

    def close(self) -> None:
        """Close the request pipe (the child exits after its last reply) and wait for it."""
        with self._lock:
            if self.wfd >= 0:
                os.close(self.wfd)
                self.wfd = -1
        try:
            self.proc.wait(START_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self._reader.join(START_TIMEOUT_S)


def _open(config: dict) -> ConsoleAnalysis:
    from fxmix.model.console_runtime import MixerRunner

    runner = MixerRunner(config["model_dir"], backend=config["backend"], name=config["name"])
    profile = Profile.from_dict(config["profile"], where="console session profile")
    return ConsoleAnalysis(int(config["sample_rate"]), int(config["block_samples"]), int(config["n_tracks"]),
                           runner, profile, config["classes"])


def _lower_priority() -> None:
    """Below the audio thread: the normal time-sharing policy (a host running its audio at a realtime
    priority must not hand that to the analysis) at nice :data:`CHILD_NICE`."""
    if hasattr(os, "sched_setscheduler"):
        for tid in os.listdir("/proc/self/task") if os.path.isdir("/proc/self/task") else ["0"]:
            try:
                os.sched_setscheduler(int(tid), os.SCHED_OTHER, os.sched_param(0))
            except OSError:  # that thread has exited meanwhile (or the call is refused)
                pass
    try:
        os.nice(CHILD_NICE)
    except (AttributeError, OSError):
        pass


def child_main(read_fd: int, write_fd: int) -> None:
    """The analysis process: open the analysis, then answer requests until the parent closes its pipe."""
    torch.set_num_threads(1)
    an, ring, lowered = None, None, False
    while (msg := read_message(read_fd)) is not None:
        try:
            if msg["op"] == "open":
                an, ring = _open(msg["config"]), Windows.attach(msg["ring"]).array
                reply = {"ok": True, "value": an.reset()}
            else:
                reply = {"ok": True, "value": handle(an, msg, ring)}
        except Exception as exc:  # noqa: BLE001 - handed to the session, which logs or raises it
            reply = {"ok": False, "value": exc}
        try:
            data = encode(reply)
        except (TypeError, ValueError) as exc:
            data = encode({"ok": False, "value": RuntimeError(f"console analysis reply: {exc}")})
        try:
            _write_all(write_fd, data)
        except OSError:
            return
        if not lowered:  # after the start-up handshake, which must not wait for idle CPU
            _lower_priority()
            lowered = True


if __name__ == "__main__":
    child_main(int(sys.argv[1]), int(sys.argv[2]))

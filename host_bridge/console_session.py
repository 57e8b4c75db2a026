"""Real-time engine with the track-level console mixer: every track normalized on its own, the console mixer
deciding each track's EQ, compressor, fader, pan and reverb send a few times per second.

    s = ConsoleSession(48000, 256, 16, realtime=True)      # the packaged console mixer
    s.set_track(0, name="Kick In"); mix = s.process(blocks)  # (16, 2, 256) -> (2, 256)

Audio thread (:meth:`process`): the blocks go through a FIFO of one block into the batched per-track console
(:class:`~fxmix.host_bridge.console_chain.ConsoleChain`) and into a list of pending audio. Off the audio thread
(a background thread in realtime sessions, inline and reproducible otherwise), every :data:`ANALYSIS_S`:

* the console mixer's track features (:func:`fxmix.model.mixer.track_features`) of the new audio, frame by frame;
* per track, running statistics (exponential, :data:`~fxmix.dsp.streaming.TAU_S`, frames under
  :data:`GATE_DBFS` left out): the band spectrum (from the same features) and the K-weighted loudness;
* the track's normalization towards its class target: the EQ matching the spectrum's shape (the offline
  EQ stage's residual rule, ±``EQ_MAX_GAIN_DB``) and the gain to the class loudness (the EQ's loudness change
 measured on the track through the EQ in force: a closed loop), the curve following the estimate while the track has under ``TAU_S`` of active audio, then moved at most
  :data:`NORM_STEP_DB` per band per analysis, the curve shifted to keep the track's loudness, so the gain alone sets the level;
* every :data:`DECIDE_S`, the console mixer on the last :data:`WINDOW_S` of the *normalized* features (the
  raw features plus the normalization's curve and gain in dB, exact for the band energies) -> per-track
  console parameters, handed to the chain (its EQ = normalization curve + console curve, one FIR).

Not done per track in a stream: the normalization's compressor and panning stages (their plans need seconds
of audio per decision); the console's own compressor and pan act instead.

Latency: one block (the FIFO) + the EQ's linear-phase delay (:attr:`ConsoleChain.latency_samples`).

State: :meth:`ConsoleSession.save_state` / :meth:`ConsoleSession.load_state`, as the bus session's (nested dicts
of numpy arrays, numbers and strings: an ``.npz`` plus JSON, no pickles); a restored session continues as the
saved one would have.

streaming-safe: yes.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import threading
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import numpy as np
import scipy.fft
import scipy.signal
import torch
from fxmix.dsp import constants as C
from fxmix.dsp.bands import band_centers_hz, band_weights
from fxmix.dsp.errors import AudioInputError, ConfigError
from fxmix.dsp.features import k_weighting_sos
from fxmix.dsp.profile import Profile, load_profile
from fxmix.dsp.streaming import TAU_S
from fxmix.model.console import ConsoleParams
from fxmix.model.console.params import class_timing
from fxmix.model.mixer import POWER_FLOOR, class_indices

from .console_chain import ConsoleChain, console_curve_on_grid
from .engine import assign_track
from .samples import MAX_SAMPLE, clip_huge

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
#: MAX_DESIGNS tracks per analysis (each design is ~0.5 ms of the analysis thread)
EQ_DEADBAND_DB = 0.2
MAX_DESIGNS = 16
CONTROLS = ("amount", "bypass_eq", "bypass_loudness", "bypass_model", "freeze", "learn", "reset")


def resolve_console_runner(model):
    """A loaded console mixer from ``"console"``, ``"default"``, a folder or a runner."""
    if hasattr(model, "mixes_tracks"):
        return model
    from fxmix.model.runtime import resolve_model

    runner = resolve_model("console" if model in (None, "default", "console") else str(model))
    if not getattr(runner, "mixes_tracks", False):
        raise ConfigError(f"model {model!r} is not a console mixer; use --model console")
    return runner


class _Running:
    """Per-track exponential statistics (time constant ``TAU_S``) over the analysis frames: the band power (mean of
    L and R) of frames above :data:`GATE_DBFS`, and the K-weighted mean square (sum of the channels) of the
    track through its normalization EQ, of frames above -70 LUFS."""

    def __init__(self, n_tracks: int, n_bands: int):
        self.power = np.zeros((n_tracks, n_bands))
        self.weight = np.zeros(n_tracks)
        self.k_energy = np.zeros(n_tracks)
        self.k_weight = np.zeros(n_tracks)
        self.active_s = np.zeros(n_tracks)

    def update(self, band_power: np.ndarray, k_energy: np.ndarray, hop_s: float, gate: float) -> None:
        """band_power (tracks, bands, frames), k_energy (tracks, frames)."""
        decay = math.exp(-band_power.shape[-1] * hop_s / TAU_S)
        live = band_power.mean(axis=1) > gate
        self.power = decay * self.power + (band_power * live[:, None, :]).sum(axis=-1)
        self.weight = decay * self.weight + live.sum(axis=-1)
        self.active_s += live.sum(axis=-1) * hop_s
        loud = k_energy > 10 ** ((-70.0 + 0.691) / 10)
        self.k_energy = decay * self.k_energy + (k_energy * loud).sum(axis=-1)
        self.k_weight = decay * self.k_weight + loud.sum(axis=-1)

    def lufs(self) -> np.ndarray:
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where(self.k_weight > 0, -0.691 + 10 * np.log10(self.k_energy / self.k_weight), -np.inf)

    def spectrum_db(self) -> np.ndarray:
        return 10 * np.log10(self.power / np.maximum(self.weight, 1e-9)[:, None] + 1e-20)


class ConsoleSession:
    """Tracks -> per-track normalization and console mixer -> stereo mix, block by block (module docstring).

    Args:
        sample_rate, block_samples, n_tracks: as :class:`fxmix.host_bridge.engine.Session`.
        profile: profile name, path or :class:`Profile` (default: the console mixer's training profile).
        model: ``"console"`` / ``"default"`` (the packaged console mixer), a console mixer folder, or a loaded
            :class:`fxmix.model.console_runtime.MixerRunner` (shared by sessions).
        realtime: analyses and decisions on a background thread, never waited on (an analysis due while the
            last one still runs waits for the next block); False runs them inline: reproducible output.

    Controls (:meth:`set_control`): ``amount``, ``bypass_eq`` / ``bypass_loudness`` (the normalization's),
    ``bypass_model`` (neutral console, no reverb), ``freeze`` / ``learn`` (statistics and decisions), ``reset``.

    streaming-safe: yes.
    """

    mixer = "console"

    def __init__(self, sample_rate: int, block_samples: int, n_tracks: int, *,
                 profile: str | Path | Profile | None = None, model="console",
                 classes: Sequence[str] = C.CLASSES, realtime: bool = False, **_ignored):
        for name, v in (("sample_rate", sample_rate), ("block_samples", block_samples), ("n_tracks", n_tracks)):
            if not isinstance(v, (int, np.integer)) or v < 1:
                raise ConfigError(f"ConsoleSession: {name} must be a positive integer, got {v!r}")
        self.sample_rate, self.block_samples, self.n_tracks = int(sample_rate), int(block_samples), int(n_tracks)
        self.runner = resolve_console_runner(model)
        self.model_label = str(self.runner.name)
        from fxmix.model.names import model_profile

        self.profile = profile if isinstance(profile, Profile) else load_profile(profile or model_profile(self.runner))
        self.classes = tuple(classes)
        self.config = dataclasses.replace(self.runner.net.config, sample_rate=self.sample_rate)
        if (self.config.n_fft // 2) % self.config.hop:
            raise ConfigError(f"console mixer: n_fft / 2 ({self.config.n_fft // 2}) must be a multiple of hop")
        self.realtime = bool(realtime)
        self.track_class = [self.classes[-1]] * self.n_tracks
        self.track_name = [f"track {i + 1}" for i in range(self.n_tracks)]
        self.chain = ConsoleChain(self.sample_rate, self.block_samples, self.n_tracks)
        self.latency_samples = self.block_samples + self.chain.latency_samples
        self.amount, self.bypass = 1.0, {"eq": False, "loudness": False, "model": False}
        self.learning = True
        self.clipped_samples = self.analyses = self.analyses_late = self.decisions = 0
        self._pool = ThreadPoolExecutor(1, "fxmix-console") if self.realtime else None
        self._job: Future | None = None
        self._bg_ident: int | None = None
        self._setup_analysis()
        self._reset_state()

    # ------------------------------------------------------------------ setup and controls

    def _setup_analysis(self) -> None:
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
        self._k_band = np.abs(scipy.signal.sosfreqz(k_weighting_sos(sr), worN=band_hz, fs=sr)[1]) ** 2 * band_hz

    def set_track(self, index: int, class_name: str | None = None, name: str | None = None) -> str:
        """Assign a track's class (or guess it from ``name``); returns the class in force."""
        before = list(self.track_class)
        assign_track(self, index, class_name, name)
        if self.track_class != before:
            self.chain.set_timing(*class_timing(self.track_class))
        return self.track_class[index]

    def set_control(self, name: str, value=None) -> None:
        self._settle()
        on = value is None or bool(value)
        if name == "amount":
            v = float(value)
            if not (math.isfinite(v) and 0.0 <= v <= 1.0):
                raise ConfigError(f"control amount = {value!r} is out of range [0, 1]")
            self.amount = v
        elif name in ("bypass_eq", "bypass_loudness", "bypass_model"):
            self.bypass[name[7:]] = bool(value)
            self._push()
        elif name in ("bypass_compression", "bypass_panning"):
            raise ConfigError(f"{name}: console sessions apply no per-track normalization {name[7:]} "
                              "(the console's compressor and pan act instead); use bypass_model")
        elif name in ("freeze", "learn"):
            self.learning = on if name == "learn" else not on
        elif name == "reset":
            self._reset_state()
        else:
            raise ConfigError(f"unknown control {name!r}; controls are {list(CONTROLS)}")

    def _reset_state(self) -> None:
        t, b = self.n_tracks, len(band_centers_hz())
        self.chain.reset()
        self._fifo_in = np.zeros((t, 2, 0), np.float32)
        self._fifo_out = np.zeros((2, self.block_samples), np.float32)
        self._dry = np.zeros((2, self.latency_samples), np.float32)
        self._pending: list[np.ndarray] = []
        self._pending_n = 0
        self._tail = np.zeros((t, 2, 0), np.float32)
        self._frames = np.zeros((t, 2 * b, 0), np.float32)
        self._stats = _Running(t, b)
        self.norm_curve, self.norm_gain_db = np.zeros((t, b)), np.zeros(t)
        self.decided = np.zeros(t, bool)
        self._designed = np.full((t, b), np.nan)
        self._since_decide = 0.0
        self.console = _numpy_params(ConsoleParams.neutral(1, t, [self.track_class]))
        self._push(jump=True)

    # ------------------------------------------------------------------ audio thread

    def process(self, blocks: np.ndarray, *, start_background: bool = True) -> np.ndarray:
        """Mix one block: (n_tracks, 2, n) float32 -> (2, n) float32, delayed by ``latency_samples``."""
        x = self._checked(blocks)
        n = x.shape[-1]
        if n == self.block_samples and not self._fifo_in.shape[-1]:  # the usual case: one block in, one out
            wet, self._fifo_out = self._fifo_out, self.chain.process(x)
            self._pending.append(x.copy())
            self._pending_n += n
        else:
            wet = self._through_fifo(x)
        self._maybe_analyse()
        buf = np.concatenate([self._dry, x.sum(axis=0)], axis=1)
        dry, self._dry = buf[:, :n], buf[:, n:]
        if self.amount >= 1.0:
            return np.ascontiguousarray(wet, np.float32)
        return (self.amount * wet + (1.0 - self.amount) * dry).astype(np.float32)

    def _through_fifo(self, x: np.ndarray) -> np.ndarray:
        """Blocks of another size: whole chain blocks from a FIFO (the output is one block late either way)."""
        n = x.shape[-1]
        self._fifo_in = np.concatenate([self._fifo_in, x], axis=-1)
        outs = [self._fifo_out]
        while self._fifo_in.shape[-1] >= self.block_samples:
            hop, self._fifo_in = np.split(self._fifo_in, [self.block_samples], axis=-1)
            outs.append(self.chain.process(hop))
            self._pending.append(hop.copy())
            self._pending_n += self.block_samples
        out = np.concatenate(outs, axis=-1)
        wet, self._fifo_out = out[:, :n], out[:, n:]
        return wet

    def _checked(self, blocks: np.ndarray) -> np.ndarray:
        x = np.asarray(blocks)
        if x.ndim != 3 or x.shape[0] != self.n_tracks or x.shape[1] != 2:
            raise AudioInputError(f"ConsoleSession.process: expected ({self.n_tracks}, 2, samples) blocks, got {x.shape}")
        x = x.astype(np.float32, copy=False)
        if not x.size:
            return x
        top, bottom = float(x.max()), float(x.min())
        if not (math.isfinite(top) and math.isfinite(bottom)):
            raise AudioInputError("ConsoleSession.process: NaN/inf samples in the input block")
        if -MAX_SAMPLE <= bottom and top <= MAX_SAMPLE:  # the usual case: one pass each for max and min
            return x
        x, over = clip_huge(x)
        self.clipped_samples += over
        return x

    def _maybe_analyse(self) -> None:
        if self._pending_n < ANALYSIS_S * self.sample_rate:
            return
        if self._pool is None:
            chunk, self._pending, self._pending_n = np.concatenate(self._pending, axis=-1), [], 0
            self._analyse(chunk)
        elif self._job is None or self._job.done():
            chunk, self._pending, self._pending_n = np.concatenate(self._pending, axis=-1), [], 0
            self._job = self._pool.submit(self._analyse_guarded, chunk)
        else:  # the last analysis still runs: this one waits (bounded: the oldest audio is dropped)
            self.analyses_late += 1
            limit = int(4 * ANALYSIS_S * self.sample_rate)
            while self._pending_n > limit:
                self._pending_n -= self._pending.pop(0).shape[-1]

    def start_background(self) -> None:
        """Background work starts as it is queued (kept for the engine Session's interface)."""

    def defer(self, fn, *args) -> None:
        """Run ``fn(*args)`` on the analysis thread after its queued work (inline without one); errors logged."""

        def guarded() -> None:
            try:
                fn(*args)
            except Exception:  # noqa: BLE001 - a host callback must not kill the background thread
                log.exception("deferred host work failed")

        guarded() if self._pool is None else self._pool.submit(guarded)

    def _settle(self) -> None:
        """Wait for the analysis in flight before changing what it reads (a no-op on its own thread)."""
        job = self._job
        if job is not None and threading.get_ident() != self._bg_ident:
            job.result()

    # ------------------------------------------------------------------ analysis (off the audio thread)

    def _analyse_guarded(self, chunk: np.ndarray) -> None:
        self._bg_ident = threading.get_ident()
        try:
            self._analyse(chunk)
        except Exception:  # noqa: BLE001 - the audio keeps the last decisions
            log.exception("console session analysis failed")

    def _analyse(self, chunk: np.ndarray) -> None:
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
            gate = 10 ** (GATE_DBFS / 10) * float((self._window.astype(float) ** 2).sum())
            self._stats.update((bands[:, 0] + bands[:, 1]).transpose(0, 2, 1), k_energy,
                               self.config.hop / self.sample_rate, gate)
            self._normalize()
        curve, gain = self._norm_in_force()
        shift = ((curve + gain[:, None]) / 20.0).astype(np.float32)
        norm = feats + np.concatenate([shift, shift], axis=1)[:, :, None]
        keep = int(WINDOW_S * self.sample_rate / self.config.hop)
        self._frames = np.concatenate([self._frames, norm], axis=-1)[:, :, -keep:]
        self._since_decide += chunk.shape[-1] / self.sample_rate
        if self.learning and self._since_decide >= DECIDE_S and self._frames.shape[-1] >= 2:
            self._since_decide = 0.0
            self._decide()
        self._push()

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
        self.norm_gain_db = np.where(ready, np.nan_to_num(gain), self.norm_gain_db)
        self.decided |= ready

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

    def _push(self, jump: bool = False) -> None:
        """Hand the decisions in force to the chain: its EQ (normalization + console curve, redesigned where
        a band moved by :data:`EQ_DEADBAND_DB`) and its targets; refresh what the host reads."""
        p = self.console if not self.bypass["model"] else _numpy_params(
            ConsoleParams.neutral(1, self.n_tracks, [self.track_class]))
        curve, gain = self._norm_in_force()
        eq = curve + console_curve_on_grid(p["eq_db"])
        move = np.nan_to_num(np.abs(eq - self._designed).max(axis=1), nan=np.inf)
        order = np.argsort(-move)[: self.n_tracks if jump else MAX_DESIGNS]
        for i in order[move[order] >= EQ_DEADBAND_DB]:
            self.chain.set_eq(int(i), eq[i])
            self._designed[i] = eq[i]
        send = np.full(self.n_tracks, -120.0) if self.bypass["model"] else p["reverb_send_db"]
        self.chain.set_targets(gain_db=p["gain_db"], drive_db=gain, threshold_db=p["comp_threshold_db"],
                               ratio=p["comp_ratio"], send_db=send, pan=p["pan"],
                               master_db=float(p["master_gain_db"]))
        if jump:
            self.chain.jump()
            self.chain.conv.apply_pending()
        self._report = [self._entry(i, curve, gain) for i in range(self.n_tracks)]

    # ------------------------------------------------------------------ reporting

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

    def track_params(self, index: int) -> dict:
        """The decisions acting on one track (its own: normalization and console)."""
        if not 0 <= int(index) < self.n_tracks:
            raise ConfigError(f"track_params: track index {index} is out of range [0, {self.n_tracks - 1}]")
        return dict(self._report[int(index)])

    def all_track_params(self) -> list[dict]:
        return [dict(e) for e in self._report]

    def stats(self) -> dict:
        return {
            "sample_rate": self.sample_rate, "block_samples": self.block_samples, "n_tracks": self.n_tracks,
            "latency_samples": self.latency_samples, "model": self.model_label, "mixer": "console",
            "amount": self.amount, "bypass_model": self.bypass["model"], "clipped_samples": self.clipped_samples,
            "learning": self.learning, "analyses": self.analyses, "analyses_late": self.analyses_late,
            "decisions": self.decisions, "tracks_decided": int(self.decided.sum()),
        }

    # ------------------------------------------------------------------ state

    def save_state(self) -> dict:
        """Session state as nested dicts of numpy arrays / numbers / strings (no pickles): the tracks' classes
        and names, controls, the audio in the FIFO, dry delay and waiting for analysis, per track the running
        statistics and normalization, the console mixer's window of features and decisions in force, and the
        chain's (:meth:`ConsoleChain.state_dict`). Waits for an analysis in flight."""
        self._settle()
        s = self._stats
        pending = np.concatenate(self._pending, axis=-1) if self._pending else np.zeros((self.n_tracks, 2, 0), np.float32)
        return {
            "mixer": "console", "sample_rate": self.sample_rate, "block_samples": self.block_samples,
            "track_class": list(self.track_class), "track_name": list(self.track_name),
            "amount": self.amount, "bypass": dict(self.bypass), "learning": self.learning,
            "counters": {"analyses": self.analyses, "analyses_late": self.analyses_late, "decisions": self.decisions,
                         "clipped_samples": self.clipped_samples},
            "fifo_in": self._fifo_in.copy(), "fifo_out": self._fifo_out.copy(), "dry": self._dry.copy(),
            "pending": pending, "tail": self._tail.copy(), "frames": self._frames.copy(),
            "stats": {k: getattr(s, k).copy() for k in _STATS},
            "norm_curve": self.norm_curve.copy(), "norm_gain_db": self.norm_gain_db.copy(),
            "decided": self.decided.copy(), "designed": self._designed.copy(), "since_decide": self._since_decide,
            "console": {k: np.array(v, copy=True) for k, v in self.console.items()},
            "chain": self.chain.state_dict(),
        }

    def load_state(self, state: dict) -> None:
        """Continue from :meth:`save_state` of a console session with the same rate, block and track count (and
        the same model, for the decisions to come).

        Raises:
            ConfigError: the state is not a console session's, or its rate, block or track count differ.
        """
        if state.get("mixer") != "console":
            raise ConfigError("load_state: not a console session's state (save it from a ConsoleSession)")
        for key, mine in (("sample_rate", self.sample_rate), ("block_samples", self.block_samples),
                          ("n_tracks", self.n_tracks)):
            theirs = len(state["track_class"]) if key == "n_tracks" else int(state[key])
            if theirs != mine:
                raise ConfigError(f"load_state: the state has {key} {theirs}, this session {mine}; "
                                  "open the session with the saved settings")
        self._settle()
        self.track_class, self.track_name = list(state["track_class"]), list(state["track_name"])
        self.amount, self.learning = float(state["amount"]), bool(state["learning"])
        self.bypass = {k: bool(v) for k, v in state["bypass"].items()}
        for k, v in state["counters"].items():
            setattr(self, k, int(v))
        f32 = lambda v: np.array(v, np.float32)  # noqa: E731
        self._fifo_in, self._fifo_out, self._dry = f32(state["fifo_in"]), f32(state["fifo_out"]), f32(state["dry"])
        pending = f32(state["pending"])
        self._pending, self._pending_n = ([pending] if pending.shape[-1] else []), int(pending.shape[-1])
        self._tail, self._frames = f32(state["tail"]), f32(state["frames"])
        for k in _STATS:
            setattr(self._stats, k, np.array(state["stats"][k], float))
        self.norm_curve, self.norm_gain_db = np.array(state["norm_curve"], float), np.array(state["norm_gain_db"], float)
        self.decided, self._designed = np.array(state["decided"], bool), np.array(state["designed"], float)
        self._since_decide = float(state["since_decide"])
        self.console = {k: np.array(v, float) for k, v in state["console"].items()}
        self.chain.load_state_dict(state["chain"])
        self._report = [self._entry(i, *self._norm_in_force()) for i in range(self.n_tracks)]

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True)
        self.chain.close()


#: the running statistics' arrays (:class:`_Running`)
_STATS = ("power", "weight", "k_energy", "k_weight", "active_s")


def _numpy_params(p: ConsoleParams) -> dict[str, np.ndarray]:
    """Batch item 0 of ``p`` as float64 numpy arrays by field name."""
    return {f.name: getattr(p, f.name).detach().double()[0].numpy() for f in dataclasses.fields(p)}

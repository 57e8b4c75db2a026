"""Real-time engine with the track-level console mixer: every track normalized on its own, the console mixer
deciding each track's EQ, compressor, fader, pan and reverb send a few times per second.

    s = ConsoleSession(48000, 256, 16, realtime=True)      # the packaged console mixer
    s.set_track(0, name="Kick In"); mix = s.process(blocks)  # (16, 2, 256) -> (2, 256)

Audio thread (:meth:`process`): the blocks go through a FIFO of one block into the batched per-track console
(:class:`~fxmix.host_bridge.console_chain.ConsoleChain`) and into the audio waiting for analysis (a ring of
shared memory in realtime sessions). Off the audio thread (:mod:`~fxmix.host_bridge.console_analysis`: in a
child process in realtime sessions, so it never holds this process's interpreter lock; inline and reproducible
otherwise), every :data:`ANALYSIS_S`:

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

A mixer that renders the levelled recordings (``MixerConfig.render_levelled``) reads the same normalized
features, but its chain gets no normalization curve and the gain of the loudness stage alone (the class target
over the track's own running loudness); with ``bus_eq`` each track's EQ also carries its class bus's curve toward
the profile's target (:func:`fxmix.model.console.bus.curve_toward`), the bus spectrum estimated from the tracks'
running band spectra through their EQ and gains (the offline console measures the rendered bus instead).

Not done per track in a stream: the normalization's compressor and panning stages (their plans need seconds
of audio per decision); the console's own compressor and pan act instead.

Latency: one block (the FIFO) + the EQ's linear-phase delay (:attr:`ConsoleChain.latency_samples`). In realtime
sessions the chain processes each block on its own thread during the block the FIFO waits anyway (the audio
thread hands it the block and collects its output at the next call): no added latency, and the audio thread's
own work per block is the input check, the copy into the ring and the dry sum.

State: :meth:`ConsoleSession.save_state` / :meth:`ConsoleSession.load_state`, as the bus session's (nested dicts
of numpy arrays, numbers and strings: an ``.npz`` plus JSON, no pickles); a restored session continues as the
saved one would have.

streaming-safe: yes.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import threading
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import numpy as np
from fxmix.dsp import constants as C
from fxmix.dsp.errors import AudioInputError, ConfigError
from fxmix.dsp.profile import Profile, load_profile
from fxmix.dsp.streaming.planner_process import PlannerDied
from fxmix.dsp.streaming.windows import Windows
from fxmix.model.console.params import class_timing

from .console_analysis import (
    ANALYSIS_S,
    DECIDE_S,
    GATE_DBFS,
    MIN_ACTIVE_S,
    NORM_STEP_DB,
    STATE_KEYS,
    WINDOW_S,
    AnalysisProcess,
    ConsoleAnalysis,
    InProcess,
)
from .console_chain import ConsoleChain
from .engine import assign_track
from .samples import MAX_SAMPLE, clip_huge

log = logging.getLogger("fxmix.engine")

__all__ = ["ANALYSIS_S", "CONTROLS", "DECIDE_S", "GATE_DBFS", "MIN_ACTIVE_S", "NORM_STEP_DB", "WINDOW_S",
           "ConsoleSession", "resolve_console_runner"]

CONTROLS = ("amount", "bypass_eq", "bypass_loudness", "bypass_model", "freeze", "learn", "reset")
#: the most audio (s) waiting for analysis while the last one still runs (the oldest is dropped)
MAX_WAITING_S = 4 * ANALYSIS_S
#: the shared audio ring (s): the waiting audio plus time for the analysis to copy it out before it is overwritten
RING_S = 6 * ANALYSIS_S
#: new analysis processes a session starts after one exits, before it keeps its last decisions for good
MAX_ANALYSIS_RESTARTS = 3


def resolve_console_runner(model):
    """A loaded console mixer from ``"console"``, ``"default"``, a folder or a runner."""
    from fxmix.model.runtime import resolve_model

    runner = model if hasattr(model, "mixes_tracks") else resolve_model(
        "console" if model in (None, "default", "console") else str(model))
    if not getattr(runner, "mixes_tracks", False):
        raise ConfigError(f"model {model!r} is not a console mixer; use --model console")
    return runner


class ConsoleSession:
    """Tracks -> per-track normalization and console mixer -> stereo mix, block by block (module docstring).

    Args:
        sample_rate, block_samples, n_tracks: as :class:`fxmix.host_bridge.engine.Session`.
        profile: profile name, path or :class:`Profile` (default: the console mixer's training profile).
        model: ``"console"`` / ``"default"`` (the packaged console mixer), a console mixer folder, or a loaded
            :class:`fxmix.model.console_runtime.MixerRunner` (shared by sessions).
        realtime: analyses and decisions in a child process (on a background thread where it cannot start),
            never waited on (an analysis due while the last one still runs waits for the next block); False
            runs them inline: reproducible output.

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
        self.realtime = bool(realtime)
        self.track_class = [self.classes[-1]] * self.n_tracks
        self.track_name = [f"track {i + 1}" for i in range(self.n_tracks)]
        self.chain = ConsoleChain(self.sample_rate, self.block_samples, self.n_tracks)
        self.latency_samples = self.block_samples + self.chain.latency_samples
        self.amount, self.bypass = 1.0, {"eq": False, "loudness": False, "model": False}
        self.learning = True
        self.clipped_samples = self.analyses_late = self.analysis_restarts = 0
        self._restart_lock = threading.Lock()
        self._restarting = self._gave_up = False
        self._counts = {"analyses": 0, "decisions": 0, "tracks_decided": 0}
        self._report_cache: tuple[str, list[dict]] | None = None
        # realtime: deferred host work (and the analysis, where the child cannot start) on one thread
        self._pool = ThreadPoolExecutor(1, "fxmix-console") if self.realtime else None
        self._pool_ident = self._pool.submit(threading.get_ident).result() if self._pool is not None else None
        self._job: Future | None = None
        # realtime: the chain runs on its own thread in the block the FIFO already waits (no added latency)
        self._chain_pool = ThreadPoolExecutor(1, "fxmix-console-chain") if self.realtime else None
        self._chain_job: Future | None = None
        self._ring: Windows | None = None
        self.config = dataclasses.replace(self.runner.net.config, sample_rate=self.sample_rate)
        stages = (("exciter", self.config.exciter), ("transient cut", self.config.transient))
        offline = [name for name, on in stages if on]
        if offline:  # measured on whole buses, offline: the per-track streaming chain has no such stage
            log.warning("console session: %s mixes without its class-bus %s (offline stages of `fxmix mix`)",
                        self.runner.name, " and ".join(offline))
        self._worker = self._start_analysis()
        self._reset_state()

    def _start_analysis(self):
        """The analysis: in a child process (realtime sessions whose console mixer is a folder), else here."""
        if self.realtime and hasattr(self.runner, "folder"):
            ring = Windows((self.n_tracks, 2, self._ring_samples()), shared=True)
            try:
                worker = AnalysisProcess(self._analysis_config(), ring.ref())
                self._ring, self._ring_array = ring, np.asarray(ring.array)
                return worker
            except PlannerDied as exc:
                ring.close()
                log.warning("console session: the analysis runs on a thread of this process (%s)", exc)
        an = ConsoleAnalysis(self.sample_rate, self.block_samples, self.n_tracks, self.runner, self.profile,
                             self.classes)
        return InProcess(an, self._pool, self._pool_ident)

    def _analysis_config(self) -> dict:
        return {"sample_rate": self.sample_rate, "block_samples": self.block_samples,
                "n_tracks": self.n_tracks, "classes": list(self.classes), "profile": self.profile.to_dict(),
                "model_dir": str(self.runner.folder), "name": self.model_label,
                "backend": "onnx" if getattr(self.runner, "session", None) is not None else "eager"}

    def _analysis_died(self) -> None:
        """The analysis process has exited: a new one starts on the host thread, at most
        :data:`MAX_ANALYSIS_RESTARTS` times; the chain keeps the last decisions meanwhile (and for good after)."""
        with self._restart_lock:
            if self._restarting or self._pool is None or self._ring is None:
                return
            if self.analysis_restarts >= MAX_ANALYSIS_RESTARTS:
                if not self._gave_up:
                    self._gave_up = True
                    log.error("console session: the analysis process exited again after %d restarts; the "
                              "console keeps its last decisions (reopen the session to start a new one)",
                              self.analysis_restarts)
                return
            self._restarting = True
        log.warning("console session: the analysis process exited (code %s); starting a new one (the mixer "
                    "learns the tracks again, the console keeps its last decisions meanwhile)",
                    getattr(getattr(self._worker, "proc", None), "returncode", None))
        self._pool.submit(self._restart_analysis)

    def _restart_analysis(self) -> None:
        """A new analysis process on the same audio ring, told the tracks and controls in force."""
        old = self._worker
        try:
            worker = AnalysisProcess(self._analysis_config(), self._ring.ref())
            worker.call({"op": "tracks", "classes": list(self.track_class), "names": list(self.track_name)}).result()
            for name, on in self.bypass.items():
                if on:
                    worker.call({"op": "control", "name": f"bypass_{name}", "value": True}).result()
            worker.call({"op": "control", "name": "learn", "value": self.learning}).result()
        except Exception as exc:  # noqa: BLE001 - the next analysis due tries again
            log.error("console session: a new analysis process did not start (%s)", exc)
        else:
            self._worker = worker
            old.close()
        finally:
            with self._restart_lock:
                self.analysis_restarts += 1
                self._restarting = False

    def _ring_samples(self) -> int:
        return self.block_samples * -(-int(RING_S * self.sample_rate) // self.block_samples)

    @property
    def analysis(self) -> ConsoleAnalysis | None:
        """The analysis when it runs in this process (None when it runs in a child process)."""
        return getattr(self._worker, "an", None)

    def analysis_cpu_seconds(self) -> float | None:
        """CPU seconds the analysis process has used (None when the analysis runs in this process)."""
        return self._worker.cpu_seconds()

    # ------------------------------------------------------------------ setup and controls

    def set_track(self, index: int, class_name: str | None = None, name: str | None = None) -> str:
        """Assign a track's class (or guess it from ``name``); returns the class in force."""
        before = list(self.track_class)
        assign_track(self, index, class_name, name)
        if self.track_class != before:
            self._chain_wait()
            self.chain.set_timing(*class_timing(self.track_class))
        self._worker.call({"op": "tracks", "classes": list(self.track_class), "names": list(self.track_name)})
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
            self._apply(self._worker.call({"op": "control", "name": name, "value": bool(value)}).result())
        elif name in ("bypass_compression", "bypass_panning"):
            raise ConfigError(f"{name}: console sessions apply no per-track normalization {name[7:]} "
                              "(the console's compressor and pan act instead); use bypass_model")
        elif name in ("freeze", "learn"):
            self.learning = on if name == "learn" else not on
            self._worker.call({"op": "control", "name": "learn", "value": self.learning}).result()
        elif name == "reset":
            self._reset_state()
        else:
            raise ConfigError(f"unknown control {name!r}; controls are {list(CONTROLS)}")

    def _reset_state(self) -> None:
        self._settle()
        self._chain_wait()
        t = self.n_tracks
        self.chain.reset()
        self._fifo_in = np.zeros((t, 2, 0), np.float32)
        self._fifo_out = np.zeros((2, self.block_samples), np.float32)
        self._dry = np.zeros((2, self.latency_samples), np.float32)
        self._pending: list[np.ndarray] = []
        self._pending_n = self._written = self._sent = 0
        self._apply(self._worker.call({"op": "reset"}).result())

    def _apply(self, d: dict | None) -> None:
        """Hand decisions (:meth:`ConsoleAnalysis.push`) to the chain; keep what the host reads."""
        if d is None:
            return
        for i, spectra in zip(d["eq_tracks"], d["eq_spectra"]):
            self.chain.conv.set_filter(int(i), spectra)
        self.chain.set_targets(**d["targets"])
        if d["jump"]:
            self.chain.jump()
            self.chain.conv.apply_pending()
        self.console, self._report_json, self._counts = d["console"], d["report"], d["counts"]

    # ------------------------------------------------------------------ audio thread

    def process(self, blocks: np.ndarray, *, start_background: bool = True) -> np.ndarray:
        """Mix one block: (n_tracks, 2, n) float32 -> (2, n) float32, delayed by ``latency_samples``."""
        x = self._checked(blocks)
        n = x.shape[-1]
        self._chain_wait()
        kept = None
        if n == self.block_samples and not self._fifo_in.shape[-1]:  # the usual case: one block in, one out
            wet = self._fifo_out
            if self._chain_pool is None:
                self._fifo_out = self.chain.process(x)
            kept = self._keep(x)
        else:
            wet = self._through_fifo(x)
        self._maybe_analyse()
        buf = np.concatenate([self._dry, x.sum(axis=0)], axis=1)
        dry, self._dry = buf[:, :n], buf[:, n:]
        out = (np.ascontiguousarray(wet, np.float32) if self.amount >= 1.0
               else (self.amount * wet + (1.0 - self.amount) * dry).astype(np.float32))
        if kept is not None and self._chain_pool is not None:  # last: this thread needs the lock no more
            self._chain_job = self._chain_pool.submit(self.chain.process, kept)
        return out

    def _chain_wait(self) -> None:
        """The chain's block in flight (realtime) finished, its output in the FIFO. Call between blocks."""
        job, self._chain_job = self._chain_job, None
        if job is not None:
            self._fifo_out = job.result()

    def _through_fifo(self, x: np.ndarray) -> np.ndarray:
        """Blocks of another size: whole chain blocks from a FIFO (the output is one block late either way)."""
        n = x.shape[-1]
        self._fifo_in = np.concatenate([self._fifo_in, x], axis=-1)
        outs = [self._fifo_out]
        while self._fifo_in.shape[-1] >= self.block_samples:
            hop, self._fifo_in = np.split(self._fifo_in, [self.block_samples], axis=-1)
            outs.append(self.chain.process(hop))
            self._keep(hop)
        out = np.concatenate(outs, axis=-1)
        wet, self._fifo_out = out[:, :n], out[:, n:]
        return wet

    def _keep(self, x: np.ndarray) -> np.ndarray:
        """One chain block into the audio waiting for analysis -> the kept copy (read-only for the caller)."""
        if self._ring is not None:
            at = self._written % self._ring.shape[-1]
            kept = self._ring_array[:, :, at : at + x.shape[-1]]
            kept[...] = x
            self._written += x.shape[-1]
            return kept
        self._pending.append(x.copy())
        self._pending_n += x.shape[-1]
        return self._pending[-1]

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
        waiting = self._written - self._sent if self._ring is not None else self._pending_n
        if waiting < ANALYSIS_S * self.sample_rate:
            return
        if self._job is not None and not self._job.done():  # the last one still runs: this one waits
            self.analyses_late += 1
            self._drop_oldest(int(MAX_WAITING_S * self.sample_rate))
            return
        if self._ring is not None:
            job = self._worker.call({"op": "analyse", "start": self._sent, "stop": self._written}, block=False)
            if job is None:  # a host thread is sending a request: next block
                self.analyses_late += 1
                return
            self._sent = self._written
        else:
            chunk, self._pending, self._pending_n = np.concatenate(self._pending, axis=-1), [], 0
            job = self._worker.call({"op": "analyse", "chunk": chunk})
            if self._pool is None:  # inline: reproducible, errors raised here
                self._apply(job.result())
                return
        done: Future = Future()
        job.add_done_callback(lambda f: self._collect(f, done))
        self._job = done

    def _collect(self, job: Future, done: Future) -> None:
        """An analysis's decisions to the chain (on the thread that finished it); the audio keeps the last ones
        if it failed."""
        try:
            self._apply(job.result())
        except PlannerDied:
            self._analysis_died()
        except Exception:  # noqa: BLE001
            log.exception("console session analysis failed")
        finally:
            done.set_result(None)

    def _drop_oldest(self, limit: int) -> None:
        if self._ring is not None:
            self._sent = max(self._sent, self._written - limit)
            return
        while self._pending_n > limit:
            self._pending_n -= self._pending.pop(0).shape[-1]

    def start_background(self) -> None:
        """Background work starts as it is queued (kept for the engine Session's interface)."""

    def defer(self, fn, *args) -> None:
        """Run ``fn(*args)`` on the session's background thread after its queued work (inline without one);
        errors logged."""

        def guarded() -> None:
            try:
                fn(*args)
            except Exception:  # noqa: BLE001 - a host callback must not kill the background thread
                log.exception("deferred host work failed")

        guarded() if self._pool is None else self._pool.submit(guarded)

    def _settle(self) -> None:
        """Wait for the analysis in flight and its decisions (a no-op on the background thread)."""
        job = self._job
        if job is not None and threading.get_ident() != self._pool_ident:
            job.result()

    # ------------------------------------------------------------------ reporting

    def track_params(self, index: int) -> dict:
        """The decisions acting on one track (its own: normalization and console)."""
        if not 0 <= int(index) < self.n_tracks:
            raise ConfigError(f"track_params: track index {index} is out of range [0, {self.n_tracks - 1}]")
        return dict(self._report()[int(index)])

    def all_track_params(self) -> list[dict]:
        return [dict(e) for e in self._report()]

    def _report(self) -> list[dict]:
        """The per-track report of the decisions in force, parsed from its JSON once per new decisions."""
        text, cached = self._report_json, self._report_cache
        if cached is None or cached[0] is not text:
            cached = self._report_cache = (text, json.loads(text))
        return cached[1]

    def stats(self) -> dict:
        return {
            "sample_rate": self.sample_rate, "block_samples": self.block_samples, "n_tracks": self.n_tracks,
            "latency_samples": self.latency_samples, "model": self.model_label, "mixer": "console",
            "amount": self.amount, "bypass_model": self.bypass["model"], "clipped_samples": self.clipped_samples,
            "learning": self.learning, "analyses": self._counts["analyses"], "analyses_late": self.analyses_late,
            "decisions": self._counts["decisions"], "tracks_decided": self._counts["tracks_decided"],
            "analysis_restarts": self.analysis_restarts,
            "analysis": "process" if self._ring is not None else ("thread" if self._pool is not None else "inline"),
            "chain": "thread" if self._chain_pool is not None else "inline",
        }

    # ------------------------------------------------------------------ state

    def _waiting_audio(self) -> np.ndarray:
        if self._ring is not None:
            idx = np.arange(self._sent, self._written) % self._ring.shape[-1]
            return np.array(self._ring_array[:, :, idx], np.float32)
        if self._pending:
            return np.concatenate(self._pending, axis=-1)
        return np.zeros((self.n_tracks, 2, 0), np.float32)

    def save_state(self) -> dict:
        """Session state as nested dicts of numpy arrays / numbers / strings (no pickles): the tracks' classes
        and names, controls, the audio in the FIFO, dry delay and waiting for analysis, per track the running
        statistics and normalization, the console mixer's window of features and decisions in force, and the
        chain's (:meth:`ConsoleChain.state_dict`). Waits for an analysis in flight."""
        self._settle()
        self._chain_wait()
        an = self._worker.call({"op": "state"}).result()
        return {
            "mixer": "console", "sample_rate": self.sample_rate, "block_samples": self.block_samples,
            "track_class": list(self.track_class), "track_name": list(self.track_name),
            "amount": self.amount, "bypass": dict(self.bypass), "learning": self.learning,
            "counters": {"analyses": an["analyses"], "analyses_late": self.analyses_late,
                         "decisions": an["decisions"], "clipped_samples": self.clipped_samples},
            "fifo_in": self._fifo_in.copy(), "fifo_out": self._fifo_out.copy(), "dry": self._dry.copy(),
            "pending": self._waiting_audio(), **{k: an[k] for k in STATE_KEYS},
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
        self._chain_wait()
        self.track_class, self.track_name = list(state["track_class"]), list(state["track_name"])
        self.amount, self.learning = float(state["amount"]), bool(state["learning"])
        self.bypass = {k: bool(v) for k, v in state["bypass"].items()}
        self.analyses_late = int(state["counters"]["analyses_late"])
        self.clipped_samples = int(state["counters"]["clipped_samples"])
        f32 = lambda v: np.array(v, np.float32)  # noqa: E731
        self._fifo_in, self._fifo_out, self._dry = f32(state["fifo_in"]), f32(state["fifo_out"]), f32(state["dry"])
        self._load_waiting(f32(state["pending"]))
        sub = {k: state[k] for k in STATE_KEYS if k in state} | {
            "track_class": self.track_class, "track_name": self.track_name, "bypass": self.bypass,
            "learning": self.learning, "analyses": int(state["counters"]["analyses"]),
            "decisions": int(state["counters"]["decisions"])}
        d = self._worker.call({"op": "load", "state": sub}).result()
        self._report_json, self._counts, self.console = d["report"], d["counts"], d["console"]
        self.chain.load_state_dict(state["chain"])

    def _load_waiting(self, pending: np.ndarray) -> None:
        if self._ring is not None:
            self._ring_array[:, :, : pending.shape[-1]] = pending
            self._sent, self._written = 0, pending.shape[-1]
        else:
            self._pending, self._pending_n = ([pending] if pending.shape[-1] else []), int(pending.shape[-1])

    def close(self) -> None:
        self._chain_wait()
        for pool in (self._pool, self._chain_pool):
            if pool is not None:
                pool.shutdown(wait=True)
        self._settle()
        self._worker.close()
        if self._ring is not None:
            self._ring.close()
        self.chain.close()

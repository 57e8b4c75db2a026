"""Real-time engine: a DAW session of tracks -> class buses -> streaming normalizer -> causal network -> mix.

``Session`` is what the OSC server, the Reaper renderer's warm start and ``fxmix bench stream`` drive.
Each track is assigned a class; the tracks of a class are summed into its bus, each bus is normalized by a
:class:`fxmix.dsp.streaming.StreamingNormalizer` (the bus is what the profile's class targets describe), and
the four normalized buses go through the causal mixing network's ``step`` (or are summed when no model is
loaded or the model is bypassed).

Sample rates: the DSP runs at the session rate (the band grid is in Hz). The network also runs at the session
rate, with no resampler (no added latency): it is convolutional in samples, so at 48 kHz its time constants
are 44.1/48 of those it was trained with; a trained default should be re-checked at 48 kHz.

Modes: ``realtime=False`` (default) makes every plan at a fixed hop and waits for it, so a session's output
is reproducible (tests, offline bounces, the in-process API the OSC tests compare against).
``realtime=True`` (``fxmix serve``, ``fxmix bench stream/bridge``) never waits: each bus picks up its plans
when the background planner has them (:mod:`fxmix.dsp.streaming`), plans run in a separate planner process
(no GIL shared with the audio thread) held to :data:`PLANNER_DUTY` of a core, and the network runs as an ONNX Runtime step (one thread) exported for the session's
block size (about 2x faster than the eager step on one core, equal within 1e-4).

Latency: ``latency_samples`` = the normalizer hop (FIFO, 512) + the network's look-ahead (``encoder_kernel -
1``, 0 without a model) + one block when pipelined (``pipeline``, on in realtime sessions with a network: the
buses and the network compute block k on the between-blocks thread while the host is between blocks, and
``process`` returns block k - 1's mix, so the audio thread's time per block is the routing of the tracks and a
hand-over, not the engine's DSP). The dry path of the ``amount`` control and the model-bypass path are delayed to
match, so the latency never changes while playing.

streaming-safe: yes.
"""

from __future__ import annotations

import logging
import math
import threading
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import numpy as np
from fxmix.dsp.constants import CLASSES, REFERENCE_PROFILE, STAGES
from fxmix.dsp.errors import AudioInputError, ConfigError, ModelLoadError
from fxmix.dsp.profile import Profile, load_profile
from fxmix.dsp.streaming import HOP_SAMPLES, UPDATE_HOPS, StreamingNormalizer
from fxmix.dsp.streaming.planner_process import PlannerDied, ProcessPlanner
from fxmix.dsp.track_classes import classify_track_name
from fxmix.model.runtime import resolve_streaming_model
from fxmix.model.streaming_runtime import realtime_step

from .samples import MAX_SAMPLE, clip_huge

log = logging.getLogger("fxmix.engine")

CONTROLS = (
    "amount",
    "bypass_eq",
    "bypass_compression",
    "bypass_panning",
    "bypass_loudness",
    "bypass_model",
    "freeze",
    "learn",
    "reset",
)


#: Realtime sessions: the largest share of one core the planner process may use (it rests after each job for
#: as long as the job took x (1 / duty - 1)). Planning slows the audio path even from another process (with
#: planning frozen the audio thread's mean block time drops by a third on the 2-core bench machine: shared
#: caches / sibling hardware threads), so it is kept small. Plans then land about once a second per bus, against
#: statistics with a 5-s time constant.
PLANNER_DUTY = 0.1


def _realtime_planner():
    """The planner process (:mod:`fxmix.dsp.streaming.planner_process`), or a planner thread where no process can
    be started (a warning says why)."""
    try:
        return ProcessPlanner(PLANNER_DUTY)
    except PlannerDied as exc:
        log.warning("%s; planning on a thread instead (block times will be less even)", exc)
        return ThreadPoolExecutor(1, "fxmix-plan")


def _run_into(fut: Future, fn, args: tuple) -> None:
    if not fut.set_running_or_notify_cancel():
        return
    try:
        fut.set_result(fn(*args))
    except BaseException as exc:  # handed to whoever waits on the future
        fut.set_exception(exc)


class _Deferred:
    """An executor front that holds submitted jobs until :meth:`flush`, then runs them on one thread.

    ``Session.process`` flushes when the block's output is ready, so background work (statistics updates,
    plan snapshots, the pipelined block) starts when the audio thread is done with the block instead of
    competing with it for the GIL while it computes the block. Jobs may be submitted from the background
    thread itself (a pipelined block's buses queue their statistics updates), hence the lock.
    """

    def __init__(self, name: str):
        self.pool = ThreadPoolExecutor(1, name)
        self.queue: list[tuple[Future, object, tuple]] = []
        self._lock = threading.Lock()

    def submit(self, fn, *args) -> Future:
        fut: Future = Future()
        with self._lock:
            self.queue.append((fut, fn, args))
        return fut

    def flush(self) -> None:
        with self._lock:
            queue, self.queue = self.queue, []
            for fut, fn, args in queue:
                self.pool.submit(_run_into, fut, fn, args)

    def start_through(self, fut: Future) -> None:
        """Start the held jobs up to and including ``fut`` (in order); later ones stay held."""
        with self._lock:
            for i, (f, _, _) in enumerate(self.queue):
                if f is fut:
                    head, self.queue = self.queue[: i + 1], self.queue[i + 1 :]
                    for g, fn, args in head:
                        self.pool.submit(_run_into, g, fn, args)
                    return

    def shutdown(self, wait: bool = True) -> None:
        self.flush()
        self.pool.shutdown(wait=wait)


def _bus_summary(p: dict) -> dict:
    """A bus's stage parameters as the flat numbers the bridge reports per track (gain, pan, EQ, compressor)."""
    out: dict = {}
    if "loudness" in p:
        out["gain_db"] = round(p["loudness"].gain_db, 3)
    if "panning" in p:
        out["pan"] = round(float(np.clip(p["panning"].balance_db / 20.0, -1.0, 1.0)), 3)
    if "eq" in p:
        g = np.asarray(p["eq"].gain_db)
        f = np.asarray(p["eq"].freqs_hz)
        out["eq"] = {
            "low_db": round(float(g[f < 250].mean()), 2),
            "mid_db": round(float(g[(f >= 250) & (f < 4000)].mean()), 2),
            "high_db": round(float(g[f >= 4000].mean()), 2),
            "max_boost_db": round(float(g.max()), 2),
            "max_cut_db": round(float(g.min()), 2),
        }
    if "compression" in p:
        out["compressor_threshold_db"] = round(p["compression"].threshold_db, 2)
        out["compressor_ratio"] = p["compression"].ratio
    return out


def assign_track(session, index: int, class_name: str | None, name: str | None) -> str:
    """A session's ``set_track``: check the index, record the name, take the class given or guessed from the
    name (checked against ``session.classes``); returns the class in force."""
    if not 0 <= int(index) < session.n_tracks:
        raise ConfigError(f"set_track: track index {index} is out of range [0, {session.n_tracks - 1}]")
    if name is not None:
        session.track_name[index] = str(name)
    if class_name is None and name is not None:
        class_name = classify_track_name(name)
    if class_name is not None:
        if class_name not in session.classes:
            raise ConfigError(f"set_track: unknown class {class_name!r}; classes are {list(session.classes)}")
        session.track_class[index] = class_name
    return session.track_class[index]


class Session:
    """Tracks -> class buses -> streaming normalizer -> causal network -> stereo mix, block by block.

    Args:
        sample_rate: session rate (Hz).
        block_samples: samples per ``process`` call.
        n_tracks: number of tracks.
        profile: profile name, path or :class:`Profile`.
        model: None (normalized sum), "default" (the packaged causal model if any, else None with a warning),
            a weights path, or a loaded causal network (or a ``Runtime`` wrapping one).
        classes: class bus order (the network's stem order).
        realtime: never wait for the planner and run the network as an ONNX Runtime step (module docstring);
            False (default) gives reproducible output.
        pipeline: compute each block one block behind, on the between-blocks thread, while the audio thread
            returns (default: = ``realtime``, with a network). ``process`` then costs the routing of the tracks
            to their buses and the hand-over; the buses' normalization and the network's block are computed in
            the time the host spends between blocks. Adds ``block_samples`` to ``latency_samples``; the output
            is the unpipelined output delayed by exactly that (tested).

    Input samples must be finite (NaN/inf raise :class:`AudioInputError`); finite samples beyond
    ±:data:`~fxmix.host_bridge.samples.MAX_SAMPLE` are clipped to it and counted (``stats()["clipped_samples"]``).

    Controls (:meth:`set_control`): ``amount`` (0 dry sum .. 1 processed), ``bypass_<stage>`` (eq,
    compression, panning, loudness), ``bypass_model``, ``freeze``, ``learn``, ``reset``.

    streaming-safe: yes.
    """

    def __init__(
        self,
        sample_rate: int,
        block_samples: int,
        n_tracks: int,
        *,
        profile: str | Path | Profile = REFERENCE_PROFILE,
        model=None,
        classes: Sequence[str] = CLASSES,
        realtime: bool = False,
        pipeline: bool | None = None,
    ):
        for name, v in (
            ("sample_rate", sample_rate),
            ("block_samples", block_samples),
            ("n_tracks", n_tracks),
        ):
            if not isinstance(v, (int, np.integer)) or v < 1:
                raise ConfigError(f"Session: {name} must be a positive integer, got {v!r}")
        if not 8000 <= sample_rate <= 192000:
            raise ConfigError(f"Session: sample_rate {sample_rate} Hz is out of range [8000, 192000]")
        self.sample_rate, self.block_samples, self.n_tracks = (
            int(sample_rate),
            int(block_samples),
            int(n_tracks),
        )
        self.profile = profile if isinstance(profile, Profile) else load_profile(profile)
        self.classes = tuple(classes)
        for c in self.classes:
            self.profile.targets_for(c)
        self.track_class = [self.classes[-1]] * self.n_tracks
        self.track_name = [f"track {i + 1}" for i in range(self.n_tracks)]
        self.net, self.model_label = resolve_streaming_model(model)
        if self.net is not None and getattr(self.net, "n_stems", len(self.classes)) != len(self.classes):
            raise ModelLoadError(
                f"{self.model_label}: network takes {self.net.n_stems} stems, session has {len(self.classes)}"
            )
        self.pipeline = bool(realtime if pipeline is None else pipeline) and self.net is not None
        self.executor = _realtime_planner() if realtime else ThreadPoolExecutor(1, "fxmix-plan")
        # one thread for the work that may run between blocks (realtime: statistics updates and plan snapshots;
        # the pipelined network), started when a block's output is ready, so the audio thread does only the
        # per-block signal path
        self._background = _Deferred("fxmix-bg") if (realtime or self.pipeline) else None
        n_upd = UPDATE_HOPS
        self.buses = [
            StreamingNormalizer(
                self.sample_rate,
                c,
                self.profile,
                executor=self.executor,
                phase=(i * n_upd) // len(self.classes),
                realtime=realtime,
                background=self._background if realtime else None,
            )
            for i, c in enumerate(self.classes)
        ]
        self.realtime = bool(realtime)
        self._step_fn = (
            realtime_step(self.net, self.block_samples) if self.net is not None and realtime else None
        )
        self.model_latency = int(getattr(self.net, "latency_samples", 0)) if self.net is not None else 0
        self.pipeline_samples = self.block_samples if self.pipeline else 0
        self._net_job = None
        #: the between-blocks thread (set by the first pipelined block it runs)
        self._bg_ident: int | None = None
        #: input samples beyond ±MAX_SAMPLE clipped so far (reported by ``stats()``)
        self.clipped_samples = 0
        self.latency_samples = HOP_SAMPLES + self.model_latency + self.pipeline_samples
        self.amount = 1.0
        self.bypass_model = False
        self._reset_audio()

    # ------------------------------------------------------------------ setup and controls

    def set_track(self, index: int, class_name: str | None = None, name: str | None = None) -> str:
        """Assign a track's class (or guess it from ``name``); returns the class in force."""
        return assign_track(self, index, class_name, name)

    def set_control(self, name: str, value=None) -> None:
        self._settle()
        if name == "amount":
            v = float(value)
            if not (math.isfinite(v) and 0.0 <= v <= 1.0):
                raise ConfigError(f"control amount = {value!r} is out of range [0, 1]")
            self.amount = v
        elif name.startswith("bypass_") and name[7:] in STAGES:
            for b in self.buses:
                b.set_bypass(name[7:], bool(value))
        elif name == "bypass_model":
            self.bypass_model = bool(value)
        elif name == "freeze":
            for b in self.buses:
                b.freeze() if (value is None or bool(value)) else b.learn()
        elif name == "learn":
            for b in self.buses:
                b.learn() if (value is None or bool(value)) else b.freeze()
        elif name == "reset":
            self._finish_net()
            for b in self.buses:
                b.reset()
            self._reset_audio()
        else:
            raise ConfigError(f"unknown control {name!r}; controls are {list(CONTROLS)}")

    def _reset_audio(self) -> None:
        self.net_state = None if self.net is None else self.net.init_state(1)
        self._pipe = np.zeros((2, self.pipeline_samples), np.float32)
        self.dry_delay = np.zeros((2, self.latency_samples), np.float32)
        self.sum_delay = np.zeros((2, self.model_latency), np.float32)

    # ------------------------------------------------------------------ audio

    def _assign(self) -> np.ndarray:
        """(classes, tracks) 0/1 routing matrix of the tracks to their class buses (rebuilt when it changes)."""
        key = tuple(self.track_class)
        if getattr(self, "_assign_key", None) != key:
            m = np.zeros((len(self.classes), self.n_tracks), np.float32)
            for i, c in enumerate(self.track_class):
                m[self.classes.index(c), i] = 1.0
            self._assign_key, self._assign_m = key, m
        return self._assign_m

    def process(self, blocks: np.ndarray, *, start_background: bool = True) -> np.ndarray:
        """Mix one block: (n_tracks, 2, n) float32 -> (2, n) float32, delayed by ``latency_samples``.

        ``start_background=False``: leave the work this block queued for the background thread waiting until
        :meth:`start_background` (a host that sends the block somewhere first, like the OSC bridge, calls it
        after sending, so that work does not compete with the send for the GIL). Every block's work must be
        started before the next ``process`` call.
        """
        try:
            return self._process(blocks)
        finally:
            if start_background:
                self.start_background()

    def defer(self, fn, *args) -> None:
        """Run ``fn(*args)`` on the between-blocks thread after the work already queued there (inline in
        sessions without one). Errors are logged, never raised into the audio path."""

        def guarded() -> None:
            try:
                fn(*args)
            except Exception:  # noqa: BLE001 - a host callback must not kill the background thread
                log.exception("deferred host work failed")

        if self._background is None:
            guarded()
        else:
            self._background.submit(guarded)
            self._background.flush()

    def start_background(self) -> None:
        """Start the background work queued by the last block (statistics, plan snapshot, pipelined network)."""
        if self._background is not None:
            self._background.flush()

    def _checked(self, blocks: np.ndarray) -> np.ndarray:
        """The block as float32 (n_tracks, 2, n), huge finite samples clipped and counted."""
        x = np.asarray(blocks)
        if x.ndim != 3 or x.shape[0] != self.n_tracks or x.shape[1] != 2:
            raise AudioInputError(
                f"Session.process: expected ({self.n_tracks}, 2, samples) blocks, got {x.shape}"
            )
        x = x.astype(np.float32, copy=False)
        if x.size and not (np.isfinite(x.max()) and np.isfinite(x.min())):
            raise AudioInputError("Session.process: NaN/inf samples in the input block")
        x, over = clip_huge(x)
        if over:
            if not self.clipped_samples:
                log.warning(
                    "Session.process: %d samples beyond ±%g (+60 dBFS) clipped (counted in stats()); "
                    "check the host's buffers", over, MAX_SAMPLE,
                )  # fmt: skip
            self.clipped_samples += over
        return x

    def _process(self, blocks: np.ndarray) -> np.ndarray:
        x = self._checked(blocks)
        n = x.shape[-1]
        bus_in = np.einsum("bt,tcn->bcn", self._assign(), x)
        if self.pipeline:
            self._finish_net()  # the previous block (done by now when blocks come at the block rate)
            self._net_job = self._background.submit(self._mix_block, bus_in)
            if self._pipe.shape[1] < n:  # a host block longer than block_samples: this block's mix is due too
                self._finish_net()
            wet, self._pipe = self._pipe[:, :n], self._pipe[:, n:]
        else:
            wet = self._mix_block(bus_in)
        dry = self._delay("dry_delay", x.sum(axis=0))
        if self.amount >= 1.0:
            return np.ascontiguousarray(wet[:, :n], np.float32)
        return (self.amount * wet + (1.0 - self.amount) * dry).astype(np.float32)

    def _mix_block(self, bus_in: np.ndarray) -> np.ndarray:
        """One block's (2, n) mix from its class bus inputs (4, 2, n): normalize each bus, then the network (or,
        without one or bypassed, the delayed bus sum). Pipelined: runs on the between-blocks thread."""
        self._bg_ident = threading.get_ident() if self.pipeline else None
        buses = np.stack([b.process(bus_in[i]) for i, b in enumerate(self.buses)])
        return buses.sum(axis=0) if self.net is None else self._net_block(buses)

    def _net_block(self, buses: np.ndarray) -> np.ndarray:
        """The network's (or, bypassed, the delayed bus sum's) (2, n) mix of one block of normalized buses."""
        n = buses.shape[-1]
        if self._step_fn is not None and n == self.block_samples:
            out = self._step_fn(buses[None], *self.net_state)
            mix, self.net_state = out[0], tuple(out[1:])
        else:  # eager step (deterministic sessions, or a block of another size)
            import torch

            with torch.inference_mode():
                state = tuple(torch.as_tensor(v) for v in self.net_state)
                mix, self.net_state = self.net.step(torch.from_numpy(buses)[None], state)
            mix = mix.numpy()
        summed = self._delay("sum_delay", buses.sum(axis=0))
        return summed if self.bypass_model else np.asarray(mix[0], np.float32)

    def _finish_net(self) -> None:
        """Wait for the block in flight (pipeline) and queue its mix."""
        job, self._net_job = self._net_job, None
        if job is not None:
            # normally started by the last start_background(); the work this block queued stays held
            self._background.start_through(job)
            self._pipe = np.concatenate([self._pipe, job.result()], axis=1)

    def _settle(self) -> None:
        """Before reading or changing bus state from the host's thread: wait for the pipelined block in flight,
        which uses the buses on the between-blocks thread (a no-op on that thread itself, where a reader such
        as a deferred parameter push already runs between blocks)."""
        if self._net_job is not None and threading.get_ident() != self._bg_ident:
            self._finish_net()

    def _delay(self, attr: str, x: np.ndarray) -> np.ndarray:
        buf = np.concatenate([getattr(self, attr), x], axis=1)
        setattr(self, attr, buf[:, x.shape[1] :])
        return buf[:, : x.shape[1]]

    # ------------------------------------------------------------------ reporting and state

    def track_params(self, index: int) -> dict:
        """The parameters acting on a track: those of its class bus (tracks of a class share one bus)."""
        if not 0 <= int(index) < self.n_tracks:
            raise ConfigError(f"track_params: track index {index} is out of range [0, {self.n_tracks - 1}]")
        self._settle()
        c = self.track_class[index]
        return self._track_entry(index, _bus_summary(self.buses[self.classes.index(c)].params()))

    def all_track_params(self) -> list[dict]:
        """:meth:`track_params` of every track, each bus's parameters read and summarised once."""
        self._settle()
        bus = {c: _bus_summary(b.params()) for c, b in zip(self.classes, self.buses) if c in self.track_class}
        return [self._track_entry(i, bus[c]) for i, c in enumerate(self.track_class)]

    def _track_entry(self, index: int, summary: dict) -> dict:
        return {
            "track": int(index),
            "name": self.track_name[index],
            "class": self.track_class[index],
            **summary,
        }

    def stats(self) -> dict:
        self._settle()
        for b in self.buses:
            b.sync_stats()
        return {
            "sample_rate": self.sample_rate,
            "block_samples": self.block_samples,
            "n_tracks": self.n_tracks,
            "latency_samples": self.latency_samples,
            "model": self.model_label,
            "amount": self.amount,
            "bypass_model": self.bypass_model,
            "clipped_samples": self.clipped_samples,
            "learning": all(b.learning for b in self.buses),
            "buses": {
                c: dict(
                    b.stats.summary(),
                    tracks=self.track_class.count(c),
                    plans_applied=b.plans_applied,
                    plans_skipped=b.plans_skipped,
                    plan_errors=b.plan_errors,
                )
                for c, b in zip(self.classes, self.buses)
            },
        }

    def save_state(self) -> dict:
        """Session state as nested dicts of numpy arrays / numbers / strings (no pickles)."""
        self._finish_net()
        state = {
            "sample_rate": self.sample_rate,
            "track_class": list(self.track_class),
            "track_name": list(self.track_name),
            "amount": self.amount,
            "bypass_model": self.bypass_model,
            "buses": {c: b.state_dict() for c, b in zip(self.classes, self.buses)},
            "dry_delay": self.dry_delay.copy(),
            "sum_delay": self.sum_delay.copy(),
            "pipe": self._pipe.copy(),
        }
        if self.net_state is not None:
            state["net_state"] = [
                s.numpy().copy() if hasattr(s, "numpy") else np.array(s) for s in self.net_state
            ]
        return state

    def load_state(self, state: dict) -> None:
        if int(state.get("sample_rate", -1)) != self.sample_rate:
            raise ConfigError(
                f"load_state: state was saved at {state.get('sample_rate')} Hz, this session runs at {self.sample_rate} Hz"
            )
        if len(state["track_class"]) != self.n_tracks:
            raise ConfigError(
                f"load_state: state has {len(state['track_class'])} tracks, session has {self.n_tracks}"
            )
        self._finish_net()
        self.track_class = list(state["track_class"])
        self.track_name = list(state["track_name"])
        self.amount = float(state["amount"])
        self.bypass_model = bool(state["bypass_model"])
        for c, b in zip(self.classes, self.buses):
            b.load_state_dict(state["buses"][c])
        self.dry_delay = np.asarray(state["dry_delay"], np.float32)
        self.sum_delay = np.asarray(state["sum_delay"], np.float32)
        pipe = np.asarray(state.get("pipe", np.zeros((2, 0))), np.float32).reshape(2, -1)
        if pipe.shape[1] != self.pipeline_samples:  # saved by a session with the other pipeline setting
            pipe = np.zeros((2, self.pipeline_samples), np.float32)
        self._pipe = pipe
        if self.net is not None and "net_state" in state:
            import torch

            self.net_state = tuple(torch.from_numpy(np.asarray(s)) for s in state["net_state"])

    def close(self) -> None:
        self._finish_net()
        for b in self.buses:
            b.sync_stats()  # waits for a background update in flight
        if self._background is not None:
            self._background.shutdown(wait=True)
        # realtime: plans still in flight are abandoned (their results would be discarded; a starved idle-class
        # planner must not hold up the host thread that closes a session, e.g. the bridge's worker)
        self.executor.shutdown(wait=not self.realtime)
        for b in self.buses:
            b.close()

"""The block-wise streaming normalizer (the real-time twin of ``chain.normalize_stem``).

:class:`StreamingNormalizer` runs on a fixed internal hop of ``hop_samples`` (default 512) whatever the host
block size: audio goes through a FIFO, so the latency is exactly ``hop_samples`` and the output is identical
for any block size (STYLE rule 16). Per hop: EQ (minimum-phase FIR of the EQ curve, uniformly partitioned
convolution) -> input gain + stereo-linked pedalboard Compressor (``reset=False``) -> per-channel pan FIRs
(minimum phase) -> gain -> a zero-latency stereo-linked peak ceiling at the ceiling - 1 dB. The hops are
recorded and fed to the running statistics (:mod:`.meters`) once per update (:meth:`sync_stats`), so the
audio path does no analysis of its own.

Planning mirrors ``chain.normalize_stem`` on the running statistics every :data:`PLAN_HOPS` hops (the
decisions and the rate limiter are in :mod:`.planner`). The rate limiter applies the plans every
:data:`UPDATE_HOPS` hops; filter changes are cross-faded and gains ramped over one hop, so no zipper noise.
Minimum-phase filters keep the EQ/pan magnitude of the offline linear-phase FIRs without their 4096-sample
delay (the phase differs; the features do not see it).

Two planning modes (``realtime``):

* ``realtime=False`` (default; tests, offline bounces, ``fxmix reaper`` warm starts): plans are made at fixed
  hops and applied exactly one update later, waiting for the planner if needed (inline, or on an
  ``executor``), so the output is reproducible and block-size independent.
* ``realtime=True`` (``fxmix serve``, ``fxmix bench``): plans are computed in the background and picked up at
  the first update after they are ready; the parameters in force stay until then (double-buffered), the rate
  limiter smooths the change, and an update at which the planner is still busy is skipped (counted in
  ``plans_skipped``), never waited on. The audio path then costs about 0.3 ms per hop per stem (2 cores,
  ``fxmix bench stream``); the output depends on the planner's timing.

streaming-safe: yes.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from concurrent.futures import Executor, Future

import numpy as np
import pedalboard

from .. import constants as C
from ..bands import band_centers_hz
from ..chain import DEFAULT_STAGES, check_stages
from ..errors import ConfigError
from ..params import CompressorParams, EqParams, LoudnessParams, PanParams, params_from_dict
from ..profile import Profile, load_profile
from ..stages import compression, panning
from ..stages.compression import linked_gain
from .constants import (
    COMP_PLAN_EVERY,
    COMP_WINDOW_S,
    FILTER_TAPS,
    HOP_SAMPLES,
    LIMITER_THRESHOLD_DB,
    PLAN_HOPS,
    TAU_S,
    UPDATE_HOPS,
)
from .conv import PartitionedConv, kcf_layout
from .meters import RunningDynamics, RunningLoudness, RunningStats, check_block
from .planner import Applied, Planner, applied_from_dict, applied_to_dict
from .windows import Windows

log = logging.getLogger("fxmix")


class StreamingNormalizer:
    """Block-wise effect normalization of one stem (track or class bus) to a profile's class targets.

    Args:
        sample_rate: session rate (Hz); the profile's band grid is in Hz, so the DSP runs at any rate.
        class_name: one of the profile's classes.
        profile: a :class:`Profile` or a profile name/path (default :data:`fxmix.dsp.constants.REFERENCE_PROFILE`).
        hop_samples: internal hop (samples, multiple of 32, divides :data:`FILTER_TAPS`); = ``latency_samples``.
        stages: subset of ``eq``, ``compression``, ``panning``, ``loudness`` (canonical order).
        tau_s: time constant of the running statistics.
        executor: where plans run (e.g. a shared 1-thread ``ThreadPoolExecutor``); None runs them inline.
            With ``realtime=False`` results are applied at the same hop either way, so the output does not
            depend on it.
        phase: hop offset of this instance's plan/update schedule (spread several buses' plans in time).
        realtime: never wait for the planner (see the module docstring); needs an ``executor``.
        background: realtime only: a single-thread executor that takes the statistics update and the plan
            snapshot off the audio path (they run between blocks; the audio thread only hands over the hops it
            recorded and applies landed plans). None: both run on the audio thread at each update.

    ``process(block (2, n)) -> (2, n)`` for any n (output delayed by ``latency_samples``), ``reset()`` clears
    tails and statistics (parameters return to neutral), ``freeze()`` / ``learn()`` hold / resume statistics
    and plans, ``set_bypass(stage, on)``, ``warm_up(audio)`` (parameters jump instead of slewing),
    ``params()`` (typed stage params in force), ``state_dict()`` / ``load_state_dict()``.

    streaming-safe: yes.
    """

    def __init__(
        self,
        sample_rate: int,
        class_name: str,
        profile: Profile | str = C.REFERENCE_PROFILE,
        *,
        hop_samples: int = HOP_SAMPLES,
        stages: Sequence[str] = DEFAULT_STAGES,
        tau_s: float = TAU_S,
        executor: Executor | None = None,
        phase: int = 0,
        realtime: bool = False,
        background: Executor | None = None,
    ):
        if not isinstance(hop_samples, int) or hop_samples < 32 or FILTER_TAPS % hop_samples:
            raise ConfigError(
                f"StreamingNormalizer: hop_samples = {hop_samples!r} must be an integer >= 32 dividing {FILTER_TAPS}"
            )
        self.sample_rate = int(sample_rate)
        self.class_name = class_name
        self.profile = load_profile(profile) if not isinstance(profile, Profile) else profile
        self.targets = self.profile.targets_for(class_name)
        self.stages = check_stages(stages)
        unknown = [s for s in self.stages if s == "reverb"]
        if unknown:
            raise ConfigError(
                "StreamingNormalizer: the reverb stage is a training augmentation, not streamed"
            )
        self.hop = hop_samples
        self.latency_samples = hop_samples
        self.tau_s = tau_s
        self.executor = executor
        self.phase = int(phase)
        self.realtime = bool(realtime)
        self.background = background if self.realtime else None
        self._bg: Future | None = None
        self.bypass = {s: False for s in C.STAGES}
        self.learning = True
        self.settings = compression.class_settings(class_name)
        self.centers = band_centers_hz()
        self.cut_hz = panning.cutoff_hz(class_name)
        self.n_parts = FILTER_TAPS // self.hop
        self.stats = RunningStats(self.sample_rate, tau_s)
        self.post_loudness = RunningLoudness(self.sample_rate, tau_s)
        self.comp_window = RunningDynamics(self.sample_rate, COMP_WINDOW_S)
        self.out_window = RunningDynamics(self.sample_rate, COMP_WINDOW_S)
        self.refine = (
            "eq" in self.stages
            and self.targets.spectrum_db is not None
            and any(st in self.stages for st in ("compression", "panning"))
        )
        self.planner = Planner(
            self.sample_rate, class_name, self.targets, self.stages, self.hop, self.refine
        )
        self._windows = Windows(
            (3, 2, self.comp_window.ring.n), shared=bool(getattr(executor, "separate_process", False))
        )
        self._jump = False
        self.reset()

    # ------------------------------------------------------------------ state

    def reset(self) -> None:
        """Clear audio tails, statistics and plans; parameters return to neutral (0 dB, no compression)."""
        self._drain_background()
        nb = self.centers.size
        self.applied = Applied(np.zeros(nb), np.zeros(nb), np.zeros(nb), 0.0, 0.0, 0.0, 0.0)
        self.planned: dict = {}
        self.stats.reset()
        self.post_loudness.reset()
        self.comp_window.reset()
        self.out_window.reset()
        self._rec_in: list[np.ndarray] = []
        self._rec_eq: list[np.ndarray] = []
        self._rec_out: list[np.ndarray] = []
        self.in_fifo = np.zeros((2, 0), np.float32)
        self.out_fifo = np.zeros((2, self.hop), np.float32)
        self.k = 0
        self.n_plans = 0
        self._pending: Future | dict | None = None
        self._last_plan_k = self._last_comp_k = -(10**9)
        self.plans_skipped = 0  # realtime mode: updates at which the planner was still busy
        self.plans_applied = 0  # planner results taken into use (diagnostic: a starved planner shows here)
        self.plan_errors = 0  # realtime mode: failed plans (logged; the parameters in force were kept)
        self.eq_conv = PartitionedConv(2, self.hop, self.n_parts)
        self.pan_conv = PartitionedConv(2, self.hop, self.n_parts)
        unit = np.zeros(self.n_parts * (self.hop + 1), np.complex128).reshape(self.n_parts, self.hop + 1)
        unit[0] = 1.0
        self.eq_spec = kcf_layout(np.broadcast_to(unit, (2, *unit.shape)))
        self.pan_spec = self.eq_spec.copy()
        self._eq_old = self._pan_old = None
        self._gains_prev = (0.0, 0.0)
        self.comp = pedalboard.Compressor(
            threshold_db=0.0,
            ratio=self.settings["ratio"],
            attack_ms=self.settings["attack_ms"],
            release_ms=self.settings["release_ms"],
        )
        # the ceiling: a stereo-linked pedalboard Compressor at ratio 1000 with a 1 us attack, i.e. the second
        # stage of JUCE's Limiter alone. pedalboard's Limiter is not transparent under its threshold: its first
        # stage compresses everything above -10 dBFS at 4:1, which cost the loudness stage up to ~2 LU.
        self.limiter = pedalboard.Compressor(
            threshold_db=LIMITER_THRESHOLD_DB, ratio=1000.0, attack_ms=0.001, release_ms=100.0
        )
        self._limiter_reset = True
        self._comp_reset = True

    def freeze(self) -> None:
        """Hold statistics and parameters (audio keeps flowing)."""
        self.sync_stats()
        self.learning = False
        self.stats.freeze()

    def learn(self) -> None:
        self.learning = True
        self.stats.learn()

    def set_bypass(self, stage: str, on: bool) -> None:
        if stage not in self.bypass:
            raise ConfigError(f"bypass: unknown stage {stage!r}; stages are {list(self.bypass)}")
        self.bypass[stage] = bool(on)

    def warm_up(self, audio: np.ndarray) -> None:
        """Run a pre-roll (2, n) through the normalizer with parameter jumps allowed; the output is dropped."""
        self._jump = True
        realtime, self.realtime = self.realtime, False  # a pre-roll is planned at fixed hops (reproducible)
        try:
            self.process(audio)
            self._collect()
        finally:
            self._jump = False
            self.realtime = realtime

    # ------------------------------------------------------------------ processing

    def process(self, block: np.ndarray) -> np.ndarray:
        """Normalize a (2, n) float32 block (any n >= 0); returns (2, n) delayed by ``latency_samples``."""
        x = check_block(block, f"StreamingNormalizer[{self.class_name}].process")
        n = x.shape[1]
        if n == self.hop and self.in_fifo.shape[1] == 0 and self.out_fifo.shape[1] == self.hop:
            # host block = hop (the usual case): the same FIFO arithmetic without the copies
            out, self.out_fifo = self.out_fifo, self._process_hop(x)
            return np.ascontiguousarray(out, dtype=np.float32)
        self.in_fifo = np.concatenate([self.in_fifo, x], axis=1)
        n_hops = self.in_fifo.shape[1] // self.hop
        outs = [self.out_fifo]
        for i in range(n_hops):
            outs.append(self._process_hop(self.in_fifo[:, i * self.hop : (i + 1) * self.hop]))
        self.in_fifo = self.in_fifo[:, n_hops * self.hop :]
        out = np.concatenate(outs, axis=1)
        self.out_fifo = out[:, n:]
        return np.ascontiguousarray(out[:, :n], dtype=np.float32)

    def _update_in_background(self) -> None:
        """Realtime update with a background thread: hand the recorded hops over, apply a landed plan."""
        if self._bg is not None and not self._bg.done():
            self.plans_skipped += 1  # the background thread is behind: hops stay recorded for the next update
            return
        if self._bg is not None:
            self._bg.result()  # re-raises an error of the last update here, on the audio thread
        plan = self.learning and not (isinstance(self._pending, Future) and not self._pending.done())
        if plan:
            self._collect()
        else:
            self.plans_skipped += 1
        recs = (self._rec_in, self._rec_eq, self._rec_out)
        self._rec_in, self._rec_eq, self._rec_out = [], [], []
        self._bg = self.background.submit(self._analyse, recs, self.k, plan)

    def _analyse(self, recs: tuple, k: int, plan: bool) -> None:
        """Background thread: statistics update, then (``plan``) the snapshot and the planner submission."""
        self._update_stats(*recs)
        if plan:
            self._submit(k)

    def _drain_background(self) -> None:
        bg, self._bg = getattr(self, "_bg", None), None
        if bg is not None:
            flush = getattr(self.background, "flush", None)
            if flush is not None:  # a deferring executor: make sure the job has been started
                flush()
            bg.result()

    def sync_stats(self) -> None:
        """Feed the hops recorded since the last update to the running statistics and analysis windows.

        The audio path only records its hops (a list append); the statistics take them in one call per
        update (UPDATE_HOPS hops), just before a plan snapshot reads them, which divides their per-call
        overhead by UPDATE_HOPS (with a ``background`` executor that call runs between blocks). Readers
        between updates (``params()``, ``stats``) call this first; it waits for a background update.
        """
        self._drain_background()
        recs = (self._rec_in, self._rec_eq, self._rec_out)
        self._rec_in, self._rec_eq, self._rec_out = [], [], []
        self._update_stats(*recs)

    def _update_stats(self, rec_in: list, rec_eq: list, rec_out: list) -> None:
        if not rec_in:
            return
        x = np.concatenate(rec_in, axis=1)
        e = np.concatenate(rec_eq, axis=1)
        o = np.concatenate(rec_out, axis=1)
        self.stats.update_checked(x)
        self.comp_window.update(e)
        self.post_loudness.update(o)
        if self.refine:
            self.out_window.update(o)

    def _process_hop(self, x: np.ndarray) -> np.ndarray:
        if (self.k - self.phase) % UPDATE_HOPS == 0:
            if self.background is not None:
                self._update_in_background()
            else:
                self.sync_stats()
                if self.realtime and isinstance(self._pending, Future) and not self._pending.done():
                    self.plans_skipped += 1  # the planner is behind: keep the parameters in force, never wait
                else:
                    self._collect()
                    if self.learning:
                        self._submit()
        self.k += 1
        if self.learning:
            self._rec_in.append(x)
        y = x  # float32 throughout; every stage returns a new array, so the recorded hops stay intact
        a = self.applied
        if "eq" in self.stages and not self.bypass["eq"]:
            y = self.eq_conv.process(y, self.eq_spec, self._eq_old)
        self._eq_old = None
        if self.learning:
            self._rec_eq.append(y)
        g_in_prev, g_out_prev = self._gains_prev
        if "compression" in self.stages and not self.bypass["compression"]:
            y = y * self._gain_ramp(g_in_prev, a.comp_input_gain_db)
            det = np.max(np.abs(y), axis=0).astype(np.float32)
            g = linked_gain(det, self.sample_rate, self.comp, reset=self._comp_reset)
            self._comp_reset = False
            y = y * g[None, :]
        if "panning" in self.stages and not self.bypass["panning"]:
            y = self.pan_conv.process(y, self.pan_spec, self._pan_old)
        self._pan_old = None
        if self.learning:
            self._rec_out.append(y)
        if "loudness" in self.stages and not self.bypass["loudness"]:
            y = y * self._gain_ramp(g_out_prev, a.gain_db)
            det = np.max(np.abs(y), axis=0).astype(np.float32)
            y = y * linked_gain(det, self.sample_rate, self.limiter, reset=self._limiter_reset)[None, :]
            self._limiter_reset = False
        self._gains_prev = (a.comp_input_gain_db, a.gain_db)
        return y.astype(np.float32, copy=False)

    def _gain_ramp(self, prev_db: float, new_db: float) -> np.ndarray | float:
        g1 = 10.0 ** (new_db / 20.0)
        if prev_db == new_db:
            return g1
        g0 = 10.0 ** (prev_db / 20.0)
        return (g0 + (g1 - g0) * np.linspace(1.0 / self.hop, 1.0, self.hop)).astype(np.float32)

    # ------------------------------------------------------------------ planning (deterministic schedule)

    def _snapshot(self, k: int) -> dict:
        sp = self.stats.spectrum
        if self.realtime:  # plans are due by elapsed hops (submissions may have been skipped)
            plan_due = k - self._last_plan_k >= PLAN_HOPS and sp.ready
            comp_due = plan_due and k - self._last_comp_k >= PLAN_HOPS * COMP_PLAN_EVERY
        else:  # fixed schedule: reproducible output
            plan_due = (k // UPDATE_HOPS) % (PLAN_HOPS // UPDATE_HOPS) == 0 and sp.ready
            comp_due = plan_due and self.n_plans % COMP_PLAN_EVERY == 0
        comp_due = comp_due and self.comp_window.filled >= self.sample_rate
        if plan_due:
            self.n_plans += 1
            self._last_plan_k = k
        if comp_due:
            self._last_comp_k = k
        n_win = self.comp_window.ring.n
        return {
            "plan": plan_due,
            "comp": comp_due,
            "pl": sp.pl.copy() if plan_due else None,
            "pr": sp.pr.copy() if plan_due else None,
            "nb": sp.nb.copy() if plan_due else None,
            "weight": sp.weight,
            "post_lufs": self.post_loudness.long_term_lufs,
            # windows copied into buffers owned by this instance (at most one plan is in flight, and it is
            # collected before the next snapshot): no large allocations on the audio path
            "windows": self._fill_windows(n_win) if comp_due else None,
            "bypass_eq": self.bypass["eq"],
            "applied": self.applied,
            "planned": dict(self.planned),
            "jump": self._jump,
        }

    def _fill_windows(self, n_win: int) -> tuple[Windows, tuple[int, ...]]:
        w = self._windows.array
        rings = [self.stats.dynamics.ring, self.comp_window.ring] + (
            [self.out_window.ring] if self.refine else []
        )
        return self._windows, tuple(r.read_last(n_win, w[i]).shape[1] for i, r in enumerate(rings))

    def _submit(self, k: int | None = None) -> None:
        snap = self._snapshot(self.k if k is None else k)
        if self.executor is None:
            self._pending = self.planner(snap)
        else:
            self._pending = self.executor.submit(self.planner, snap)

    def close(self) -> None:
        """Release the shared analysis windows (also done when the normalizer is collected)."""
        self._windows.close()

    def _collect(self) -> None:
        if self._pending is None:
            return
        pending, self._pending = self._pending, None
        if not isinstance(pending, Future):
            res = pending
        elif self.realtime:  # a failed plan must not stop the audio: keep the parameters in force
            try:
                res = pending.result()
            except Exception as exc:  # noqa: BLE001 - counted and logged; the next plan is tried as usual
                self.plan_errors += 1
                if self.plan_errors & (self.plan_errors - 1) == 0:  # 1st, 2nd, 4th, 8th, ...: no log flood
                    log.warning(
                        "%s: plan failed, parameters kept (%s: %s; %d failures so far)",
                        self.class_name, type(exc).__name__, exc, self.plan_errors,
                    )  # fmt: skip
                return
        else:
            res = pending.result()
        self.plans_applied += 1
        self.planned = res["planned"]
        self.applied = res["applied"]
        if res["eq_spec"] is not None:
            self._eq_old, self.eq_spec = self.eq_spec, res["eq_spec"]
        if res["pan_spec"] is not None:
            self._pan_old, self.pan_spec = self.pan_spec, res["pan_spec"]
        if res["comp_threshold_db"] is not None:
            self.comp.threshold_db = res["comp_threshold_db"]
            self.comp.ratio = self.settings["ratio"]

    # ------------------------------------------------------------------ reporting

    def params(self) -> dict:
        """Typed stage params in force now (``EqParams``, ``CompressorParams``, ``PanParams``, ``LoudnessParams``).

        With a ``background`` thread the measured loudness reported is that of the last update (at most
        UPDATE_HOPS hops old) and nothing is waited for: hosts poll this while audio runs.
        """
        if self.background is None:
            self.sync_stats()
        a = self.applied
        freqs = tuple(float(f) for f in self.centers)
        out: dict = {}
        if "eq" in self.stages:
            out["eq"] = EqParams(freqs, tuple(float(v) for v in a.eq_db))
        if "compression" in self.stages:
            thr = min(a.comp_threshold_db, 0.0)
            out["compression"] = CompressorParams(
                thr,
                self.settings["ratio"] if thr < 0 else 1.0,
                self.settings["attack_ms"],
                self.settings["release_ms"],
                float(np.clip(a.comp_input_gain_db, -120, 120)),
            )
        if "panning" in self.stages:
            out["panning"] = PanParams(
                freqs,
                tuple(float(v) for v in a.pan_l_db + a.pan_balance_db / 2),
                tuple(float(v) for v in a.pan_r_db - a.pan_balance_db / 2),
                self.cut_hz,
                float(a.pan_balance_db),
            )
        if "loudness" in self.stages:
            post = self.post_loudness.long_term_lufs
            out["loudness"] = LoudnessParams(
                float(a.gain_db),
                self.targets.loudness_lufs,
                post if math.isfinite(post) else None,
                LIMITER_THRESHOLD_DB,
            )
        return out

    def state_dict(self) -> dict:
        """Statistics, parameters in force and audio tails as a dict of numpy arrays / numbers (no pickles).

        Plans pending in the worker are finished first; pedalboard's compressor/limiter envelopes are not
        exported (they settle within their release time after a restore).
        """
        self.sync_stats()
        if isinstance(self._pending, Future):
            self._pending = self._pending.result()  # finish the plan; it is still applied at its own hop
        a = self.applied
        pend = self._pending
        return {
            "pending": None
            if pend is None
            else {
                "planned": {
                    k: (v.to_dict() if hasattr(v, "to_dict") else v) for k, v in pend["planned"].items()
                },
                "applied": applied_to_dict(pend["applied"]),
                "eq_changed": pend["eq_spec"] is not None,
                "pan_changed": pend["pan_spec"] is not None,
                "comp_threshold_db": pend["comp_threshold_db"],
            },
            "eq_conv": self.eq_conv.state_dict(),
            "pan_conv": self.pan_conv.state_dict(),
            "gains_prev": np.asarray(self._gains_prev, float),
            "stats": self.stats.state_dict(),
            "post_loudness": self.post_loudness.state_dict(),
            "comp_window": self.comp_window.state_dict(),
            "out_window": self.out_window.state_dict(),
            "applied": applied_to_dict(a),
            "planned": {k: (v.to_dict() if hasattr(v, "to_dict") else v) for k, v in self.planned.items()},
            "in_fifo": self.in_fifo.copy(),
            "out_fifo": self.out_fifo.copy(),
            "k": self.k,
            "n_plans": self.n_plans,
            "learning": self.learning,
        }

    def load_state_dict(self, state: dict) -> None:
        self.reset()
        self.stats.load_state_dict(state["stats"])
        self.post_loudness.load_state_dict(state["post_loudness"])
        self.comp_window.load_state_dict(state["comp_window"])
        self.out_window.load_state_dict(state["out_window"])

        def planned(d):
            def value(v):
                if isinstance(v, dict):
                    return params_from_dict(v)
                return float(v) if np.ndim(v) == 0 else np.asarray(v, float).copy()

            return {k: value(v) for k, v in d.items()}

        self.applied = applied_from_dict(state["applied"])
        self.planned = planned(state["planned"])
        self.in_fifo = np.asarray(state["in_fifo"], np.float32).reshape(2, -1)
        self.out_fifo = np.asarray(state["out_fifo"], np.float32).reshape(2, -1)
        self.k, self.n_plans = int(state["k"]), int(state["n_plans"])
        self.learning = bool(state["learning"])
        self.stats.learning = self.learning
        a = self.applied
        self.eq_spec = self.planner.eq_spectra(a.eq_db)
        self.pan_spec = self.planner.pan_spectra(a.pan_l_db, a.pan_r_db)
        self.comp.threshold_db = min(a.comp_threshold_db, 0.0)
        self._gains_prev = tuple(float(v) for v in state["gains_prev"])
        self.eq_conv.load_state_dict(state["eq_conv"])
        self.pan_conv.load_state_dict(state["pan_conv"])
        pend = state.get("pending")
        if pend is not None:
            pa = applied_from_dict(pend["applied"])
            self._pending = {
                "planned": planned(pend["planned"]),
                "applied": pa,
                "eq_spec": self.planner.eq_spectra(pa.eq_db) if pend["eq_changed"] else None,
                "pan_spec": self.planner.pan_spectra(pa.pan_l_db, pa.pan_r_db)
                if pend["pan_changed"]
                else None,
                "comp_threshold_db": pend["comp_threshold_db"],
            }


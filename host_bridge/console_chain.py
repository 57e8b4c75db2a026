"""The track-level console on the audio thread: every track's EQ, compressor, fader, pan and reverb send, batched.

Per block of (tracks, 2, n): EQ (one linear-phase FIR per track, stereo-linked, the console's own design:
:data:`~fxmix.model.console.designs.EQ_FIR_TAPS` taps, (taps - 1) / 2 samples of latency; :class:`TrackConv`) ->
stereo-linked compressor -> fader -> pan (:data:`~fxmix.model.console.designs.PAN_LAW`) -> the sum, and a
post-pan send to the console's reverb (pedalboard ``Convolution`` of
:func:`~fxmix.model.console.designs.reverb_ir`) -> master gain. The same effects, in the same order, as the
pedalboard twin (:func:`fxmix.model.console.render_console_pedalboard`); the tests hold the two within 0.1 dB
per band on fixed decisions.

Why not one pedalboard chain per track: 64 tracks x 5 plug-in calls per 256-sample block cost more than the
block itself in call overhead. Instead the compressor's envelope comes from *one* pedalboard ``Compressor``
per attack/release setting, run over all the tracks that share it as channels at a probe threshold (the
envelope does not depend on threshold or ratio; :func:`~fxmix.model.console.designs.compressor_envelope`),
and every track's gain ``(env / T) ** (1 / ratio - 1)`` above its threshold is then numpy across tracks.

The normalization's loudness gain (``drive``) is applied before the compressor, folded into its detector
and the output gain, so changing it redesigns no filter.

State (:meth:`ConsoleChain.state_dict`): the controls, the EQ's filters and input history, and for the two
pedalboard effects, whose memory stays inside them, the last :data:`TRACE_S` of their inputs (each track's
compressor detector, the reverb sends): a restored chain replays them into fresh effects, which then hold
what the originals held (the compressor's envelope forgets faster than that; the reverb is a convolution
shorter than it).

Smoothing: every control moves towards its target at a bounded slew (:data:`SLEW_DB_PER_S`,
:data:`PAN_SLEW_PER_S`), ramped sample by sample inside the block; EQ changes are cross-faded over one block,
a few tracks per block (:data:`MAX_FILTER_CHANGES`). Nothing steps, so parameter changes make no clicks.

streaming-safe: yes (blocks of exactly ``block`` samples).
"""

from __future__ import annotations

from concurrent.futures import Future, ThreadPoolExecutor

import numpy as np
import pedalboard
from fxmix.dsp.bands import band_centers_hz
from fxmix.dsp.fir import design_fir
from fxmix.dsp.stages.compression import held_ratio
from fxmix.dsp.streaming.track_conv import TrackConv, track_filter_spectra
from fxmix.model.console.designs import (
    EQ_FIR_TAPS,
    PROBE_RATIO,
    PROBE_THRESHOLD_DB,
    envelope_from_probe_gain,
    eq_band_centers_hz,
    pan_gains,
    reverb_ir,
)
from fxmix.model.console.twin import convolution

#: fastest level change of a gain, compressor drive or threshold (dB per second)
SLEW_DB_PER_S = 24.0
#: fastest pan change (pan units, -1..1, per second)
PAN_SLEW_PER_S = 2.0
#: EQ filter changes taken per block (each costs one extra track's multiply-accumulate in that block)
MAX_FILTER_CHANGES = 4
#: the per-track controls, rows of the chain's (controls, tracks) state, and their neutral values
CONTROLS = ("gain_db", "drive_db", "threshold_db", "send_db", "pan", "ratio_exp")
_NEUTRAL = (0.0, 0.0, 0.0, -120.0, 0.0, 1.0 / 2.0 - 1.0)
#: seconds of compressor detector and reverb send kept for a restored chain to replay (longer than the
#: reverb's impulse response and 14 time constants of the slowest class release)
TRACE_S = 1.6


def console_curve_on_grid(eq_db: np.ndarray) -> np.ndarray:
    """(..., EQ bands) console EQ curve -> (..., grid bands) on the profile's 1/6-octave grid, the same curve
    (linear in log frequency between the octave points, held at the ends, as the console's FIR design)."""
    x, xp = np.log2(band_centers_hz()), np.log2(eq_band_centers_hz())
    flat = np.asarray(eq_db, float).reshape(-1, len(xp))
    return np.stack([np.interp(x, xp, row) for row in flat]).reshape(*np.shape(eq_db)[:-1], len(x))


def eq_spectra(curve_db: np.ndarray, sample_rate: int, block: int) -> np.ndarray:
    """A track's EQ (``curve_db`` on the profile's 1/6-octave grid) as the chain's filter partition spectra
    (:meth:`TrackConv.set_filter`)."""
    taps = design_fir(band_centers_hz(), np.asarray(curve_db, float), sample_rate, EQ_FIR_TAPS)
    # the design's last tap is 0 (Hann window): EQ_FIR_TAPS - 1 taps fill whole partitions at power-of-2 blocks
    return track_filter_spectra(taps[:-1], block)


class ConsoleChain:
    """The per-track console of :mod:`this module <fxmix.host_bridge.console_chain>` for ``n_tracks`` tracks.

    Controls are set from any thread with :meth:`set_eq` (designs the filter: call it off the audio thread)
    and :meth:`set_targets`; :meth:`process` moves the running values towards the targets.

    streaming-safe: yes.
    """

    def __init__(self, sample_rate: int, block: int, n_tracks: int):
        self.sample_rate, self.block, self.n_tracks = int(sample_rate), int(block), int(n_tracks)
        # the design's last tap is 0 (Hann window): EQ_FIR_TAPS - 1 taps fill whole partitions at power-of-2 blocks
        self.conv = TrackConv(self.n_tracks, self.block, -(-(EQ_FIR_TAPS - 1) // self.block))
        #: the EQ's delay (linear phase, as the console's FIR): part of the session's latency
        self.latency_samples = (EQ_FIR_TAPS - 1) // 2
        t = self.n_tracks
        # running values (what the last block ended on) and targets: (controls, tracks)
        self.cur = np.tile(np.asarray(_NEUTRAL)[:, None], (1, t))
        self.target = self.cur.copy()
        dt = self.block / self.sample_rate
        # per-block steps; the ratio's exponent moves 0.05 per block (its gain curve about as fast as the levels)
        self._slew = np.array([SLEW_DB_PER_S * dt] * 4 + [PAN_SLEW_PER_S * dt, 0.05])[:, None]
        self.master_db = self.master_target = 0.0
        self._static: np.ndarray | None = None
        self.timing = np.tile([[10.0, 300.0]], (t, 1))
        self._groups: list[tuple[tuple[int, int], pedalboard.Compressor]] = []
        self._ramp = (np.arange(1, self.block + 1) / self.block).astype(np.float32)
        self._reverb_setup()
        self._set_groups()
        span = self.block * -(-int(TRACE_S * self.sample_rate) // self.block)
        self._traces = (np.zeros((t, span), np.float32), np.zeros((2, span), np.float32))  # detector, sends
        self._trace_at = 0

    # ------------------------------------------------------------------ controls

    def set_eq(self, track: int, curve_db: np.ndarray) -> None:
        """Queue track ``track``'s EQ: ``curve_db`` on the profile's 1/6-octave grid (normalization + console)."""
        self.conv.set_filter(track, eq_spectra(curve_db, self.sample_rate, self.block))

    def set_targets(self, **values) -> None:
        """New targets: any of ``gain_db``, ``drive_db``, ``threshold_db``, ``send_db``, ``pan``, ``ratio``
        ((tracks,) arrays) and ``master_db`` (float); the running values follow at the slew limits."""
        target = self.target.copy()
        for k, v in values.items():
            if k == "master_db":
                self.master_target = float(v)
            elif k == "ratio":
                target[CONTROLS.index("ratio_exp")] = 1.0 / np.asarray(v, float) - 1.0
            elif k in CONTROLS:
                target[CONTROLS.index(k)] = np.asarray(v, float)
            else:
                raise ValueError(f"unknown console control {k!r}; controls are {CONTROLS + ('ratio', 'master_db')}")
        self.target = target  # one assignment: the audio thread sees the old targets or the new ones

    def set_timing(self, attack_ms: np.ndarray, release_ms: np.ndarray) -> None:
        """Per-track compressor attack/release (from the class); regroups the envelope compressors (their
        ballistics restart: call on track assignment, not while playing)."""
        timing = np.stack([np.asarray(attack_ms, float), np.asarray(release_ms, float)], axis=1)
        if not np.array_equal(timing, self.timing):
            self.timing = timing
            self._set_groups()

    def jump(self) -> None:
        """Running values to their targets at once (a session start, before any audio)."""
        self.cur = self.target.copy()
        self.master_db = self.master_target
        self._static = None

    def _set_groups(self) -> None:
        """One probe compressor per distinct (attack, release), over its tracks as one contiguous slice of the
        tracks sorted by timing (``_order``; ``_unorder`` puts them back)."""
        keys, group = np.unique(self.timing, axis=0, return_inverse=True)
        self._order = np.argsort(group.ravel(), kind="stable")
        self._unorder = np.argsort(self._order)
        bounds = np.searchsorted(group.ravel()[self._order], np.arange(len(keys) + 1))
        self._groups = [
            ((int(bounds[i]), int(bounds[i + 1])),
             pedalboard.Compressor(threshold_db=PROBE_THRESHOLD_DB, ratio=PROBE_RATIO,
                                   attack_ms=float(attack), release_ms=float(release)))
            for i, (attack, release) in enumerate(keys)
        ]
        self._held = np.ones(self.n_tracks, np.float32)

    def _reverb_setup(self) -> None:
        """The reverb runs one block late on its own thread when the impulse response starts with at least a
        block of silence (its pre-delay): the response advanced by one block, applied to the previous block's
        sends, gives this block's reverb exactly, and the audio thread only collects it."""
        ir = reverb_ir(self.sample_rate)
        lead = int(np.argmax(np.abs(ir).max(axis=0) > 0))
        self._late = lead >= self.block
        if self._late:
            ir = np.concatenate([ir[:, self.block :], np.zeros((2, self.block), np.float32)], axis=1)
        self.reverb = convolution(ir, self.sample_rate)
        self._reverb_pool = ThreadPoolExecutor(1, "fxmix-reverb") if self._late else None
        self._reverb_job: Future | None = None

    def _reverb(self, send: np.ndarray) -> np.ndarray:
        if not self._late:
            return self.reverb.process(send, self.sample_rate, reset=False)
        job, self._reverb_job = self._reverb_job, None
        wet = job.result() if job is not None else np.zeros_like(send)
        self._reverb_job = self._reverb_pool.submit(self.reverb.process, send, self.sample_rate, reset=False)
        return wet

    def close(self) -> None:
        if self._reverb_pool is not None:
            self._reverb_pool.shutdown(wait=True)

    def reset(self) -> None:
        self.conv.reset()
        self._set_groups()
        self.reset_reverb()
        for trace in self._traces:
            trace[:] = 0.0

    # ------------------------------------------------------------------ audio

    def process(self, x: np.ndarray) -> np.ndarray:
        """One block (tracks, 2, block) float32 -> the console's (2, block) mix."""
        y = self.conv.process_tracks(x, MAX_FILTER_CHANGES)
        start, delta = self._advance()
        over = self._envelope(np.maximum(np.abs(y[:, 0]), np.abs(y[:, 1])))
        over *= self._per_sample(start, delta, _ROW["drive"])  # the compressor's envelope relative to its threshold
        # gain (env / T) ** (1 / ratio - 1) above the threshold, 1 below: exp of the clipped log (one pass each)
        comp = np.log(over, out=over)
        np.maximum(comp, np.float32(0.0), out=comp)
        comp *= self._per_sample(start, delta, _ROW["ratio_exp"])
        np.exp(comp, out=comp)
        y *= comp[:, None, :]
        out, send = self._mix(y, start, delta)
        at = self._trace_at
        self._traces[1][:, at : at + self.block] = send
        self._trace_at = (at + self.block) % self._traces[1].shape[1]
        wet = self._reverb(send)
        master = self._per_sample(start, delta, _ROW["master"])[0]
        return ((out + wet) * master).astype(np.float32)

    def _per_sample(self, start: np.ndarray, delta: np.ndarray | None, row: int) -> np.ndarray:
        """A gain row's (tracks, 1) value while nothing moves, else its (tracks, n) ramp."""
        if delta is None:
            return start[row][:, None]
        return start[row][:, None] + delta[row][:, None] * self._ramp

    def _mix(self, y: np.ndarray, start: np.ndarray, delta: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        """Fader, pan and send of the compressed tracks ``y``, summed: one (samples x tracks) @ (tracks x gains)
        product per channel. A linear ramp g = a + d * r sums as (y @ a) + r * (y @ d): the ramps are never built
        per track. -> (2, n) mix, (2, n) float32 reverb input: the send bus's L + R in both channels (the console's
        reverb sums its inputs; the convolution then needs no cross terms)."""
        rows = ((_ROW["left"], _ROW["send_left"]), (_ROW["right"], _ROW["send_right"]))
        out, send = np.empty((2, self.block), np.float32), np.empty((2, self.block), np.float32)
        for c, (level, sent) in enumerate(rows):
            w = start[[level, sent]] if delta is None else np.concatenate([start[[level, sent]], delta[[level, sent]]])
            r = y[:, c].T @ w.T  # (n, 2 or 4)
            out[c], send[c] = r[:, 0], r[:, 1]
            if delta is not None:
                out[c] += self._ramp * r[:, 2]
                send[c] += self._ramp * r[:, 3]
        send[0] += send[1]
        send[1] = send[0]
        return out, send

    def _advance(self) -> tuple[np.ndarray, np.ndarray | None]:
        """Move the running values one block towards their targets -> the block's linear gains (rows of
        ``_GAIN_ROWS``, tracks) float32 where it starts, and their change over the block (None while nothing
        moves; the gains then ramp linearly sample by sample)."""
        prev, target = self.cur, self.target
        step = target - prev
        self.cur = np.where(np.abs(step) <= self._slew, target, prev + np.sign(step) * self._slew)  # lands exactly
        m0 = self.master_db
        self.master_db = m0 + float(np.clip(self.master_target - m0, -self._slew[0, 0], self._slew[0, 0]))
        if self._static is not None and m0 == self.master_db and np.array_equal(prev, self.cur):
            return self._static, None
        a, b = _gains(prev, m0), _gains(self.cur, self.master_db)
        if np.array_equal(a, b):
            self._static = a.astype(np.float32)
            return self._static, None
        self._static = None
        return a.astype(np.float32), (b - a).astype(np.float32)

    def _envelope(self, detector: np.ndarray) -> np.ndarray:
        """(tracks, n) envelope (linear) of each track's compressor, from the probe compressor of its timing
        group; where the detector is ~0 the last live sample's envelope is held (as the twin's linked gain)."""
        self._traces[0][:, self._trace_at : self._trace_at + self.block] = detector
        d = detector[self._order]  # tracks grouped by timing: each group one contiguous slice
        y = np.empty_like(d)
        for (a, b), comp in self._groups:
            y[a:b] = comp.process(d[a:b], self.sample_rate, reset=False)
        g = held_ratio(y, d, self._held)
        self._held = g[:, -1].copy()
        return envelope_from_probe_gain(g)[self._unorder]


    # ------------------------------------------------------------------ state

    def state_dict(self) -> dict:
        """Everything a restored chain needs to continue (numpy arrays and numbers; call between blocks)."""
        wet = self._reverb_job.result() if self._reverb_job is not None else None
        conv = self.conv
        return {
            "controls": self.cur.copy(), "targets": self.target.copy(), "master_db": self.master_db,
            "master_target": self.master_target, "timing": self.timing.copy(), "held": self._held.copy(),
            "conv": conv.state_dict() | {"spectra": conv.spectra[:, :, 0].copy(),
                                         "pending_tracks": np.array(list(conv._pending), np.int64),
                                         "pending": np.array(list(conv._pending.values()), np.complex64)},
            "detector": np.roll(self._traces[0], -self._trace_at, axis=1),
            "sends": np.roll(self._traces[1], -self._trace_at, axis=1),
            "reverb_next": wet if wet is not None else np.zeros((2, 0), np.float32),
        }

    def load_state_dict(self, state: dict) -> None:
        """Continue from :meth:`state_dict` of a chain of the same rate, block and track count: the controls and
        filters as saved, fresh compressors and reverb fed the saved detector and sends (their outputs
        dropped), so their memory is what the saved chain's was."""
        self.cur, self.target = np.array(state["controls"], float), np.array(state["targets"], float)
        self.master_db, self.master_target = float(state["master_db"]), float(state["master_target"])
        self._static = None
        self.timing = np.array(state["timing"], float)
        self._set_groups()
        self.conv.reset()
        self.conv.load_state_dict(state["conv"])
        self.conv.spectra[:, :, 0] = np.asarray(state["conv"]["spectra"], np.complex64)
        self.conv._pending = {int(k): np.asarray(v, np.complex64)
                              for k, v in zip(state["conv"]["pending_tracks"], state["conv"]["pending"])}
        detector, sends = np.asarray(state["detector"], np.float32), np.asarray(state["sends"], np.float32)
        for a in range(0, detector.shape[1], self.block):
            self._envelope(np.ascontiguousarray(detector[:, a : a + self.block]))
        self._held = np.asarray(state["held"], np.float32).copy()
        self.reset_reverb()
        for a in range(0, sends.shape[1], self.block):
            self.reverb.process(np.ascontiguousarray(sends[:, a : a + self.block]), self.sample_rate, reset=False)
        self._traces = (detector.copy(), sends.copy())
        self._trace_at = 0
        wet = np.asarray(state["reverb_next"], np.float32)
        if self._late and wet.shape[1]:
            self._reverb_job = Future()
            self._reverb_job.set_result(wet)

    def reset_reverb(self) -> None:
        """The reverb's tail and the block in flight dropped."""
        if self._reverb_job is not None:
            self._reverb_job.result()
            self._reverb_job = None
        self.reverb.reset()


_GAIN_ROWS = ("left", "right", "send_left", "send_right", "drive", "ratio_exp", "master")
_ROW = {k: i for i, k in enumerate(_GAIN_ROWS)}


def _gains(v: np.ndarray, master_db: float) -> np.ndarray:
    """(rows of _GAIN_ROWS, tracks) linear gains of the controls ``v`` (CONTROLS, tracks): the fader with the
    normalization's gain and the pan per channel, the same post-pan for the reverb send, the compressor's drive
    (gain over threshold), the ratio's exponent, the master gain (every column)."""
    c = dict(zip(CONTROLS, v))
    level = 10.0 ** ((c["gain_db"] + c["drive_db"]) / 20.0)
    left, right = pan_gains(c["pan"])
    send = 10.0 ** (c["send_db"] / 20.0)
    drive = 10.0 ** ((c["drive_db"] - c["threshold_db"]) / 20.0)
    master = np.full_like(level, 10.0 ** (master_db / 20.0))
    return np.stack([level * left, level * right, level * left * send, level * right * send, drive,
                     c["ratio_exp"], master])

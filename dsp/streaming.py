"""Running normalization statistics and a block-wise streaming normalizer (the real-time twin of ``chain``).

Running statistics (per track or bus, any block size, updated sample-exactly so results do not depend on
how the host cuts the audio):

* :class:`RunningLoudness`: BS.1770 K-weighting (pyloudnorm's filters), 100 ms sub-blocks, momentary (400 ms),
  short-term (3 s), an all-time *integrated* value (gated blocks of 400 ms / 75 % overlap, -70 LUFS absolute
  and -10 LU relative gate, on a 0.05 LU histogram like libebur128) and a *long-term* value: the same gating on
  a histogram whose weights decay with time constant ``tau_s`` (default :data:`TAU_S`).
* :class:`RunningSpectrum`: the offline analysis STFT (ANALYSIS_FFT / ANALYSIS_HOP, Hann) on a ring buffer;
  per-bin sums of |L|², |R|² and 2|L||R|, exponentially weighted with ``tau_s`` per frame. Spectrum and φ use
  the offline definitions (:func:`fxmix.dsp.features.spectrum_from_power`, ``phi_from_sums``).
* :class:`RunningDynamics`: the last ``window_s`` (10 s) of audio in a ring; onset-peak dynamics are the
  offline :func:`fxmix.dsp.features.measure_dynamics` of that window, computed on request.
* :class:`RunningStats` bundles the three.

Time constants (documented for the acceptance tests): ``tau_s = 5 s`` for the long-term loudness, spectrum and
φ. For the energy-gated loudness a +10 dB level step is followed to within 1 LU after 2 τ (10 s, tested), a
-10 dB step after ~3.5 τ (17.5 s: energy averaging weights the louder past more); momentary/short-term follow
within 0.4 s / 3 s. The spectrum updates every ANALYSIS_HOP samples (186 ms at 44.1 kHz).

The normalizer (:class:`StreamingNormalizer`) runs on a fixed internal hop of ``hop_samples`` (default 512)
whatever the host block size: audio goes through a FIFO, so the latency is exactly ``hop_samples`` and the
output is identical for any block size (STYLE rule 16). Per hop: EQ (minimum-phase FIR of the EQ curve,
uniformly partitioned convolution) -> input gain + stereo-linked pedalboard Compressor (``reset=False``) ->
per-channel pan FIRs (minimum phase) -> gain -> a zero-latency stereo-linked peak ceiling at the ceiling - 1 dB.
The hops are recorded and fed to the running statistics once per update (:meth:`sync_stats`), so the audio
path does no analysis of its own.

Planning mirrors ``chain.normalize_stem`` on the running statistics every :data:`PLAN_HOPS` hops: EQ =
``eq.plan`` on the running PSD, aimed at the target *minus the colouring of the later stages* (closed loop,
the streaming form of ``chain.EQ_REFINE_PASSES``: the spectra of the last :data:`COMP_WINDOW_S` of the
compressor input and of the panning output are compared, so the finished stem, not the EQ output, gets the
target spectrum); panning = ``panning.plan_from_sums`` on the running per-bin sums weighted by the EQ's
response; compression (every :data:`COMP_PLAN_EVERY` plans) = ``compression.plan`` on the last
:data:`COMP_WINDOW_S` of input through the offline EQ, faded in over :data:`COMP_FADE_S` (a window cut from
running audio would otherwise start with an uncompressed edge that dominates the peak-normalized onset
feature), kept while the setting in force still puts the window in the onset band, and left off when even
the threshold limit cannot move the feature (see the README's notes); loudness = class target minus the
long-term loudness after panning. A rate limiter applies the plans every :data:`UPDATE_HOPS` hops: each
EQ/pan band, the gains and the compressor input gain move at most :data:`MAX_STEP_DB` per update, the
compressor threshold at most :data:`COMP_STEP_DB`; filter changes are cross-faded and gains ramped over one
hop, so no zipper noise. Minimum-phase filters keep the EQ/pan magnitude of the offline linear-phase FIRs
without their 4096-sample delay (the phase differs; the features do not see it).

Two planning modes (``realtime``):

* ``realtime=False`` (default; tests, offline bounces, ``fxmix reaper`` warm starts): plans are made at fixed
  hops and applied exactly one update later, waiting for the planner if needed (inline, or on an
  ``executor``), so the output is reproducible and block-size independent.
* ``realtime=True`` (``fxmix serve``, ``fxmix bench``): plans are computed in the background and picked up at
  the first update after they are ready; the parameters in force stay until then (double-buffered), the rate
  limiter smooths the change, and an update at which the planner is still busy is skipped (counted in
  ``plans_skipped``), never waited on. The audio path then costs about 0.3 ms per hop per stem (2 cores,
  ``fxmix bench stream``); the output depends on the planner's timing.

streaming-safe: yes (:class:`StreamingNormalizer`, all ``Running*`` classes).
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Sequence
from concurrent.futures import Executor, Future
from dataclasses import dataclass, replace

import numpy as np
import pedalboard
import pyloudnorm
import scipy.fft
import scipy.signal

from . import constants as C
from .audio import check_audio
from .bands import band_centers_hz
from .chain import DEFAULT_STAGES, check_stages
from .errors import AudioInputError, ConfigError
from .features import (
    StemFeatures,
    measure_dynamics,
    peak_normalize,
    phi_from_sums,
    spectrum_from_power,
    stft_power,
)
from .fir import design_fir, fir_power_response
from .params import CompressorParams, EqParams, LoudnessParams, PanParams
from .profile import Profile, load_profile
from .stages import compression, eq, panning
from .stages.compression import linked_gain

log = logging.getLogger("fxmix")

#: Time constant (s) of the long-term loudness, spectrum and φ (exponential forgetting).
TAU_S = 5.0
#: Window (s) of the running onset-peak dynamics (offline measure on the last window_s of audio).
DYNAMICS_WINDOW_S = 10.0
#: Window (s) of EQ'd audio the compressor plan (offline bisection) runs on.
COMP_WINDOW_S = 6.0
#: Fade-in (s) of that window (see ``_Planner.__call__``).
COMP_FADE_S = 0.05
#: Default internal hop (samples) of the normalizer = its latency.
HOP_SAMPLES = 512
#: Parameters move every UPDATE_HOPS hops; a plan is made every PLAN_HOPS hops, the compressor's every
#: COMP_PLAN_EVERY plans (it re-runs a compressor on COMP_WINDOW_S of audio).
UPDATE_HOPS = 4
PLAN_HOPS = 16
COMP_PLAN_EVERY = 4
#: Weight of a new measurement of the later stages' colouring in the closed-loop EQ target (1 = no smoothing).
COLOR_SMOOTHING = 0.5
#: Largest parameter step per update (dB): EQ/pan bands, output gain, compressor input gain. With 512-sample
#: hops at 44.1 kHz an update comes every 46 ms, so parameters slew at most ~10.8 dB/s, ramped within a hop.
MAX_STEP_DB = 0.5
#: Largest compressor threshold step per update (dB): the gain curve moves by at most this x (1 - 1/ratio).
COMP_STEP_DB = 0.5
#: Threshold (dBFS) of the output ceiling (sample peak; the offline chain holds true peaks under the ceiling).
LIMITER_THRESHOLD_DB = C.TRUE_PEAK_CEILING_DB - 1.0
#: EQ / pan curves are redesigned only when a band would move by at least this much (dB): a settled stem
#: costs no filter designs (each is ~1 ms of planner time).
FILTER_DEADBAND_DB = 0.05
#: Taps of the minimum-phase EQ / pan filters (a multiple of the hop).
FILTER_TAPS = 8192

_LOUD_STEP_S = 0.1
_HIST_MIN, _HIST_MAX, _HIST_STEP = -70.0, 10.0, 0.05


def _lufs(z: float) -> float:
    return -0.691 + 10.0 * math.log10(z) if z > 0 else float("-inf")


def _check_block(block: np.ndarray, where: str) -> np.ndarray:
    x = np.asarray(block)
    if x.ndim != 2 or x.shape[0] != 2:
        raise AudioInputError(f"{where}: expected a (2, samples) block, got shape {x.shape}")
    if x.shape[1] == 0:
        return np.zeros((2, 0), np.float32)
    return check_audio(x, where)


class _StateMixin:
    """``state_dict()`` / ``load_state_dict()`` over the attributes named in ``_state_keys`` (arrays, numbers)."""

    _state_keys: tuple[str, ...] = ()

    def state_dict(self) -> dict:
        out = {}
        for k in self._state_keys:
            v = getattr(self, k)
            out[k] = np.array(v, copy=True) if isinstance(v, np.ndarray) else v
        return out

    def load_state_dict(self, state: dict) -> None:
        missing = [k for k in self._state_keys if k not in state]
        if missing:
            raise ConfigError(f"{type(self).__name__}.load_state_dict: missing key(s) {missing}")
        for k in self._state_keys:
            cur = getattr(self, k)
            v = state[k]
            if isinstance(cur, np.ndarray):
                v = np.asarray(v, dtype=cur.dtype)
                if v.shape != cur.shape:
                    raise ConfigError(
                        f"{type(self).__name__}.load_state_dict: {k!r} has shape {v.shape}, expected {cur.shape} "
                        "(state saved at another sample rate or configuration?)"
                    )
                v = v.copy()
            elif isinstance(cur, bool):
                v = bool(v)
            elif isinstance(cur, int):
                v = int(v)
            elif isinstance(cur, float):
                v = float(v)
            setattr(self, k, v)


class _Ring:
    """Circular (2, n) float32 buffer: ``push`` any number of samples, ``read`` the last ``filled`` in order."""

    def __init__(self, n: int):
        self.n = int(n)
        self.buf = np.zeros((2, self.n), np.float32)
        self.w = 0
        self.filled = 0

    def push(self, x: np.ndarray) -> None:
        x = x[:, -self.n :]
        k = x.shape[1]
        first = min(k, self.n - self.w)
        self.buf[:, self.w : self.w + first] = x[:, :first]
        self.buf[:, : k - first] = x[:, first:]
        self.w = (self.w + k) % self.n
        self.filled = min(self.n, self.filled + k)

    def read(self) -> np.ndarray:
        out = np.concatenate([self.buf[:, self.w :], self.buf[:, : self.w]], axis=1)
        return out[:, self.n - self.filled :]

    def read_last(self, m: int, out: np.ndarray | None = None) -> np.ndarray:
        """Copy of the last ``min(m, filled)`` samples in order (into ``out`` when given: no allocation)."""
        m = min(int(m), self.filled)
        if out is None:
            out = np.empty((2, m), np.float32)
        start = (self.w - m) % self.n
        first = min(m, self.n - start)
        out[:, :first] = self.buf[:, start : start + first]
        out[:, first:m] = self.buf[:, : m - first]
        return out[:, :m]

    def state_dict(self) -> dict:
        return {"buf": self.read(), "filled": self.filled}

    def load_state_dict(self, state: dict) -> None:
        data = np.asarray(state["buf"], np.float32).reshape(2, -1)[:, -self.n :]
        self.buf[:] = 0
        self.w, self.filled = 0, 0
        self.push(data)


# ----------------------------------------------------------------------------------------- loudness


class RunningLoudness(_StateMixin):
    """BS.1770 loudness of a stereo stream: momentary, short-term, integrated (all time) and long-term.

    Args:
        sample_rate: Hz.
        tau_s: time constant of the long-term (forgetting) gated loudness.

    streaming-safe: yes (sample-exact sub-blocks; block-size independent).
    """

    _state_keys = ("zi", "acc", "acc_n", "ring", "n_sub", "hist_e", "hist_n", "decay_e", "decay_n")

    def __init__(self, sample_rate: int, tau_s: float = TAU_S):
        self.sample_rate = int(sample_rate)
        self.tau_s = float(tau_s)
        f = pyloudnorm.Meter(self.sample_rate)._filters
        self.sos = np.array(
            [np.concatenate([f[k].b, f[k].a]) for k in ("high_shelf", "high_pass")], dtype=np.float64
        )
        self.step = int(round(_LOUD_STEP_S * self.sample_rate))
        self.n_bins = int(round((_HIST_MAX - _HIST_MIN) / _HIST_STEP))
        self.decay = math.exp(-_LOUD_STEP_S / self.tau_s)
        self.reset()

    def reset(self) -> None:
        self.zi = np.zeros((2, 2, 2))  # (sections, channels, 2): sosfilt state along the last axis
        self.acc = 0.0
        self.acc_n = 0
        self.ring = np.zeros(30)  # last 30 sub-block mean squares (3 s), newest last
        self.n_sub = 0
        self.hist_e = np.zeros(self.n_bins)
        self.hist_n = np.zeros(self.n_bins)
        self.decay_e = np.zeros(self.n_bins)
        self.decay_n = np.zeros(self.n_bins)

    def update(self, block: np.ndarray) -> None:
        """Feed a (2, n) block (any n)."""
        if block.shape[1] == 0:
            return
        # the two K-weighting biquads as two lfilter calls: the same cascade as sosfilt (equal to ~1e-12),
        # without sosfilt's per-call validation (4x cheaper on hop-sized blocks)
        y = block.astype(np.float64)
        zi = np.empty_like(self.zi)
        for i, sec in enumerate(self.sos):
            y, zi[i] = scipy.signal.lfilter(sec[:3], sec[3:], y, axis=-1, zi=self.zi[i])
        self.zi = zi
        sq = (y * y).sum(axis=0)  # channel weights 1 (L, R)
        pos = 0
        n = sq.shape[0]
        while pos < n:
            take = min(self.step - self.acc_n, n - pos)
            self.acc += float(sq[pos : pos + take].sum())
            self.acc_n += take
            pos += take
            if self.acc_n == self.step:
                self._sub_block(self.acc / self.step)
                self.acc, self.acc_n = 0.0, 0

    def _sub_block(self, z: float) -> None:
        self.ring = np.roll(self.ring, -1)
        self.ring[-1] = z
        self.n_sub += 1
        self.decay_e *= self.decay
        self.decay_n *= self.decay
        if self.n_sub >= 4:
            zb = float(self.ring[-4:].mean())
            lb = _lufs(zb)
            if lb > _HIST_MIN:
                i = min(int((lb - _HIST_MIN) / _HIST_STEP), self.n_bins - 1)
                self.hist_e[i] += zb
                self.hist_n[i] += 1.0
                self.decay_e[i] += zb
                self.decay_n[i] += 1.0

    @staticmethod
    def _gated(e: np.ndarray, n: np.ndarray) -> float:
        total = n.sum()
        if total <= 0:
            return float("-inf")
        rel = _lufs(e.sum() / total) - 10.0
        first = max(0, int(math.floor((rel - _HIST_MIN) / _HIST_STEP)))
        kept = n[first:].sum()
        return _lufs(e[first:].sum() / kept) if kept > 0 else float("-inf")

    @property
    def momentary_lufs(self) -> float:
        return _lufs(float(self.ring[-4:].mean())) if self.n_sub >= 4 else float("-inf")

    @property
    def short_term_lufs(self) -> float:
        return _lufs(float(self.ring.mean())) if self.n_sub >= 30 else float("-inf")

    @property
    def integrated_lufs(self) -> float:
        """BS.1770 integrated loudness of everything seen since the last reset (0.05 LU gate resolution)."""
        return self._gated(self.hist_e, self.hist_n)

    @property
    def long_term_lufs(self) -> float:
        """Gated loudness over an exponential window of time constant ``tau_s`` (what the normalizer uses)."""
        return self._gated(self.decay_e, self.decay_n)


# ----------------------------------------------------------------------------------------- spectrum / φ


class RunningSpectrum(_StateMixin):
    """Exponentially weighted long-term band spectrum and per-band φ on the offline analysis STFT.

    streaming-safe: yes (frames at fixed sample positions: block-size independent).
    """

    _state_keys = ("filled", "since", "pl", "pr", "nb", "weight", "n_frames")

    def __init__(
        self, sample_rate: int, tau_s: float = TAU_S, n_fft: int = C.ANALYSIS_FFT, hop: int = C.ANALYSIS_HOP
    ):
        self.sample_rate, self.n_fft, self.hop = int(sample_rate), int(n_fft), int(hop)
        self.tau_s = float(tau_s)
        self.decay = math.exp(-self.hop / (self.tau_s * self.sample_rate))
        # the analysis window of features.stft_power (periodic Hann, float32), applied in float64 here
        self._win = np.hanning(self.n_fft + 1)[:-1].astype(np.float32).astype(np.float64)
        self._frame_buf = np.empty((2, self.n_fft), np.float32)
        self.reset()

    def reset(self) -> None:
        self.ring = _Ring(self.n_fft)
        self.filled = 0
        self.since = 0
        nb = self.n_fft // 2 + 1
        self.pl, self.pr, self.nb = np.zeros(nb), np.zeros(nb), np.zeros(nb)
        self.weight = 0.0
        self.n_frames = 0

    def update(self, block: np.ndarray) -> None:
        pos, n = 0, block.shape[1]
        while pos < n:
            need = self.n_fft - self.filled if self.filled < self.n_fft else self.hop - self.since
            take = min(need, n - pos)
            self.ring.push(block[:, pos : pos + take])
            pos += take
            if self.filled < self.n_fft:
                self.filled += take
                if self.filled == self.n_fft:
                    self._frame()
            else:
                self.since += take
                if self.since == self.hop:
                    self._frame()

    def _frame(self) -> None:
        self.since = 0
        # one frame of features.stft_power (same window), without its chunking and thread-pool overhead
        spec = scipy.fft.rfft(self.ring.read_last(self.n_fft, self._frame_buf) * self._win, axis=-1)
        p = spec.real**2 + spec.imag**2
        d = self.decay
        self.pl = d * self.pl + p[0]
        self.pr = d * self.pr + p[1]
        self.nb = d * self.nb + 2.0 * np.sqrt(p[0] * p[1])
        self.weight = d * self.weight + 1.0
        self.n_frames += 1

    @property
    def ready(self) -> bool:
        return self.weight > 0

    def state_dict(self) -> dict:
        return dict(super().state_dict(), ring=self.ring.state_dict())

    def load_state_dict(self, state: dict) -> None:
        super().load_state_dict(state)
        self.ring.load_state_dict(state["ring"])

    def mean_power(self) -> np.ndarray:
        """(bins,) mean power over frames and channels (what ``eq.plan`` and ``spectrum_from_power`` average)."""
        return 0.5 * (self.pl + self.pr) / max(self.weight, 1e-30)

    def spectrum_db(self, loudness_lufs: float) -> np.ndarray:
        return spectrum_from_power(self.mean_power()[None], self.sample_rate, self.n_fft, loudness_lufs)

    def phi(self) -> np.ndarray:
        return phi_from_sums(self.nb, self.pl + self.pr, self.sample_rate, self.n_fft)


# ----------------------------------------------------------------------------------------- dynamics


class RunningDynamics(_StateMixin):
    """Onset-peak dynamics over the last ``window_s`` seconds (offline ``measure_dynamics`` on a ring buffer).

    streaming-safe: yes.
    """

    def __init__(self, sample_rate: int, window_s: float = DYNAMICS_WINDOW_S):
        self.sample_rate = int(sample_rate)
        self.ring = _Ring(int(round(window_s * self.sample_rate)))

    @property
    def filled(self) -> int:
        return self.ring.filled

    def reset(self) -> None:
        self.ring = _Ring(self.ring.n)

    def update(self, block: np.ndarray) -> None:
        if block.shape[1]:
            self.ring.push(block)

    def audio(self) -> np.ndarray:
        return self.ring.read()

    def state_dict(self) -> dict:
        return self.ring.state_dict()

    def load_state_dict(self, state: dict) -> None:
        self.ring.load_state_dict(state)

    def stats(self) -> tuple[float, float]:
        """(mean, std) onset-peak dB; NaN until one second of non-silent audio has been seen."""
        x = self.audio()
        if x.shape[1] < self.sample_rate or not np.any(x):
            return float("nan"), float("nan")
        return measure_dynamics(x, self.sample_rate)


class RunningStats:
    """All running features of one stereo track: loudness, spectrum, φ, onset-peak dynamics.

    Args:
        sample_rate: Hz (the band grid is in Hz, so any rate works).
        tau_s: time constant of the long-term loudness/spectrum/φ.
        dynamics_window_s: window of the onset-peak dynamics.

    streaming-safe: yes. ``update(block)`` takes (2, n) blocks of any size; ``freeze()`` / ``learn()`` stop and
    resume updating; ``warm_up(audio)`` feeds a pre-roll; ``state_dict()`` / ``load_state_dict()`` give and take
    a dict of numpy arrays and numbers (no pickles).
    """

    def __init__(self, sample_rate: int, tau_s: float = TAU_S, dynamics_window_s: float = DYNAMICS_WINDOW_S):
        self.sample_rate = int(sample_rate)
        self.loudness = RunningLoudness(sample_rate, tau_s)
        self.spectrum = RunningSpectrum(sample_rate, tau_s)
        self.dynamics = RunningDynamics(sample_rate, dynamics_window_s)
        self.learning = True

    def update(self, block: np.ndarray) -> None:
        if not self.learning:
            return
        self.update_checked(_check_block(block, "RunningStats.update"))

    def update_checked(self, x: np.ndarray) -> None:
        """``update`` for a block already validated as finite (2, n) float32 (the normalizer's hops)."""
        if not self.learning:
            return
        self.loudness.update(x)
        self.spectrum.update(x)
        self.dynamics.update(x)

    def warm_up(self, audio: np.ndarray) -> None:
        """Feed a pre-roll (2, n) so the statistics do not start from zero."""
        self.update(audio)

    def freeze(self) -> None:
        self.learning = False

    def learn(self) -> None:
        self.learning = True

    def reset(self) -> None:
        for part in (self.loudness, self.spectrum, self.dynamics):
            part.reset()

    def features(self) -> StemFeatures:
        """Current features as :class:`StemFeatures` (loudness = long-term gated value)."""
        lufs = self.loudness.long_term_lufs
        n_bands = band_centers_hz().size
        if not self.spectrum.ready or not math.isfinite(lufs):
            nan = np.full(n_bands, np.nan)
            return StemFeatures(lufs, nan, nan, float("nan"), float("nan"), silent=True)
        mean_db, std_db = self.dynamics.stats()
        return StemFeatures(lufs, self.spectrum.spectrum_db(lufs), self.spectrum.phi(), mean_db, std_db)

    def summary(self) -> dict:
        """JSON-able snapshot: momentary/short-term/integrated/long-term LUFS, mean φ, dynamics."""
        f = self.features()

        def num(v: float) -> float | None:
            return round(float(v), 3) if math.isfinite(v) else None

        return {
            "momentary_lufs": num(self.loudness.momentary_lufs),
            "short_term_lufs": num(self.loudness.short_term_lufs),
            "integrated_lufs": num(self.loudness.integrated_lufs),
            "long_term_lufs": num(self.loudness.long_term_lufs),
            "mean_phi": None if f.silent else num(f.mean_phi),
            "onset_peak_mean_db": num(f.onset_peak_mean_db),
            "onset_peak_std_db": num(f.onset_peak_std_db),
        }

    def state_dict(self) -> dict:
        return {
            "loudness": self.loudness.state_dict(),
            "spectrum": self.spectrum.state_dict(),
            "dynamics": self.dynamics.state_dict(),
            "learning": self.learning,
        }

    def load_state_dict(self, state: dict) -> None:
        self.loudness.load_state_dict(state["loudness"])
        self.spectrum.load_state_dict(state["spectrum"])
        self.dynamics.load_state_dict(state["dynamics"])
        self.learning = bool(state.get("learning", True))


# ----------------------------------------------------------------------------------------- filters


def minimum_phase_spectra(taps_linear: np.ndarray, n_taps: int, part: int) -> np.ndarray:
    """Partition spectra (K, part+1) of the minimum-phase filter with the magnitude of ``taps_linear``.

    Homomorphic method on a 2·n_taps grid, truncated to ``n_taps`` (a multiple of ``part``) with a short
    fade-out, then cut into K = n_taps / part partitions for uniformly partitioned overlap-save.
    """
    n = 2 * n_taps
    mag = np.abs(scipy.fft.rfft(taps_linear, n))
    cep = scipy.fft.irfft(np.log(np.maximum(mag, 1e-8)), n)
    fold = np.zeros(n)
    fold[0] = cep[0]
    fold[1 : n // 2] = 2.0 * cep[1 : n // 2]
    fold[n // 2] = cep[n // 2]
    h = scipy.fft.irfft(np.exp(scipy.fft.rfft(fold)), n)[:n_taps]
    fade = max(1, n_taps // 16)
    h[-fade:] *= 0.5 * (1 + np.cos(np.pi * np.arange(1, fade + 1) / fade))
    return scipy.fft.rfft(h.reshape(-1, part), 2 * part, axis=-1)


class _PartitionedConv:
    """Uniformly partitioned overlap-save convolution of ``n_channels`` channels, one filter per channel.

    The frequency-domain delay line is a doubled ring (each new partition spectrum is written twice), so
    ``fdl[pos : pos + n_parts]`` is always newest-first and contiguous: no per-hop shifting or allocation of
    the (n_parts, channels, part+1) history.

    streaming-safe: yes (hop-sized blocks only).
    """

    def __init__(self, n_channels: int, part: int, n_parts: int):
        self.part, self.n_parts = part, n_parts
        self.prev = np.zeros((n_channels, part), np.float32)
        self._seg = np.zeros((n_channels, 2 * part), np.float32)
        self._fdl2 = np.zeros((2 * n_parts, n_channels, part + 1), np.complex64)
        self._pos = 0
        self._ramp = _ramp(part)
        self._prod = np.empty((n_parts, n_channels, part + 1), np.complex64)

    @property
    def fdl(self) -> np.ndarray:
        """(n_parts, channels, part+1) partition spectra of the input, newest first."""
        return self._fdl2[self._pos : self._pos + self.n_parts]

    def reset(self) -> None:
        self.prev[:] = 0
        self._fdl2[:] = 0
        self._pos = 0

    def state_dict(self) -> dict:
        f = self.fdl
        return {"prev": self.prev.copy(), "fdl_re": f.real.copy(), "fdl_im": f.imag.copy()}

    def load_state_dict(self, state: dict) -> None:
        self.prev = np.asarray(state["prev"], np.float32).reshape(self.prev.shape).copy()
        f = (np.asarray(state["fdl_re"]) + 1j * np.asarray(state["fdl_im"])).reshape(self.fdl.shape)
        self._pos = 0
        self._fdl2[: self.n_parts] = f
        self._fdl2[self.n_parts :] = f

    def process(self, x: np.ndarray, spectra: np.ndarray, old_spectra: np.ndarray | None) -> np.ndarray:
        """x (C, part); spectra (K, C, part+1) (see :func:`_kcf`). ``old_spectra``: cross-fade old -> new."""
        p = self.part
        self._seg[:, :p] = self.prev
        self._seg[:, p:] = x
        self.prev[:] = x
        self._pos = (self._pos - 1) % self.n_parts
        spec = scipy.fft.rfft(self._seg, axis=-1)
        self._fdl2[self._pos] = spec
        self._fdl2[self._pos + self.n_parts] = spec
        y = scipy.fft.irfft(self._mac(spectra), axis=-1)[:, p:]
        if old_spectra is not None:
            y0 = scipy.fft.irfft(self._mac(old_spectra), axis=-1)[:, p:]
            y = y0 + (y - y0) * self._ramp
        return y

    def _mac(self, spectra: np.ndarray) -> np.ndarray:
        np.multiply(self.fdl, spectra, out=self._prod)
        return self._prod.sum(axis=0)


def _kcf(per_channel: np.ndarray) -> np.ndarray:
    """(C, K, F) per-channel partition spectra -> the (K, C, F) contiguous complex64 layout the convolution uses
    (single precision: ~1e-7 relative, far below the 1e-4 the streaming tests allow, and half the memory
    traffic of the per-hop multiply-accumulate)."""
    return np.ascontiguousarray(np.asarray(per_channel).transpose(1, 0, 2), dtype=np.complex64)


def _ramp(n: int) -> np.ndarray:
    return (0.5 - 0.5 * np.cos(np.pi * (np.arange(n) + 1) / n)).astype(np.float32)


# ----------------------------------------------------------------------------------------- normalizer


@dataclass(frozen=True)
class _Applied:
    """Parameters in force (what the rate limiter moves)."""

    eq_db: np.ndarray
    pan_l_db: np.ndarray
    pan_r_db: np.ndarray
    pan_balance_db: float
    comp_threshold_db: float
    comp_input_gain_db: float
    gain_db: float


def _coloring_db(eq_out: np.ndarray, stem_out: np.ndarray, sample_rate: int) -> np.ndarray | None:
    """Band spectrum (dB, median 0 over 100 Hz-10 kHz) the stages after the EQ add to the stem.

    ``eq_out`` (the compressor's input) and ``stem_out`` (the panning output) are (2, n) windows of the same
    hops, so the EQ's own history cancels out. None while either is silent.
    """
    if not (np.any(eq_out) and np.any(stem_out)):
        return None
    a = spectrum_from_power(stft_power(eq_out), sample_rate, C.ANALYSIS_FFT, 0.0)
    b = spectrum_from_power(stft_power(stem_out), sample_rate, C.ANALYSIS_FFT, 0.0)
    d = b - a
    centers = band_centers_hz()
    return d - np.median(d[(centers >= 100) & (centers <= 10000)])


def _step(cur, target, limit):
    return cur + np.clip(np.asarray(target) - cur, -limit, limit)


class _Planner:
    """The normalizer's planning job, a pure function of a snapshot (so it can run in a thread, or in a planner
    *process* where it does not compete with the audio thread for the GIL; :meth:`spec` is what travels).

    streaming-safe: n/a (runs off the audio path).
    """

    def __init__(self, sample_rate: int, class_name: str, targets, stages: tuple, hop: int, refine: bool):
        self.sample_rate, self.class_name, self.targets = int(sample_rate), class_name, targets
        self.stages, self.hop, self.refine = tuple(stages), int(hop), bool(refine)
        self.centers = band_centers_hz()
        self.cut_hz = panning.cutoff_hz(class_name)

    def spec(self) -> dict:
        """The constructor arguments (rebuild with ``_Planner(**spec)``)."""
        return {
            "sample_rate": self.sample_rate,
            "class_name": self.class_name,
            "targets": self.targets,
            "stages": self.stages,
            "hop": self.hop,
            "refine": self.refine,
        }

    def eq_spectra(self, eq_db: np.ndarray) -> np.ndarray:
        """(K, 2, hop+1) partition spectra of the minimum-phase EQ FIR for band gains ``eq_db``."""
        s = minimum_phase_spectra(design_fir(self.centers, eq_db, self.sample_rate), FILTER_TAPS, self.hop)
        return _kcf(np.stack([s, s]))

    def pan_spectra(self, left_db: np.ndarray, right_db: np.ndarray) -> np.ndarray:
        """(K, 2, hop+1) partition spectra of the minimum-phase per-channel panning FIRs."""
        return _kcf(
            [
                minimum_phase_spectra(
                    design_fir(self.centers, g, self.sample_rate, cutoff_hz=self.cut_hz),
                    FILTER_TAPS,
                    self.hop,
                )
                for g in (left_db, right_db)
            ]
        )

    def __call__(self, snap: dict) -> dict:
        """Pure function of the snapshot: new plans (if due), rate-limited parameters and filter spectra."""
        sr = self.sample_rate
        planned = snap["planned"]
        t = self.targets
        if snap["plan"] and snap["weight"] > 0:
            pl, pr, nb = snap["pl"] / snap["weight"], snap["pr"] / snap["weight"], snap["nb"] / snap["weight"]
            live = (pl + pr).sum() > 0
            if live and t.spectrum_db is not None and "eq" in self.stages:
                psd = 0.5 * (pl + pr)
                # closed loop (the streaming form of chain.EQ_REFINE_PASSES): aim the EQ at the target minus
                # the colouring the later stages add, so the finished stem has the target spectrum
                target_db = np.asarray(t.spectrum_db) - planned.get("eq_color_db", 0.0)
                planned["eq"] = eq.plan(None, sr, target_db, power=psd[None, None])
            if live and t.phi is not None and "panning" in self.stages:
                h2 = 1.0
                if "eq" in planned:
                    e = planned["eq"]
                    h2 = fir_power_response(
                        design_fir(np.asarray(e.freqs_hz), np.asarray(e.gain_db), sr), C.ANALYSIS_FFT
                    )
                planned["panning"] = panning.plan_from_sums(
                    pl * h2, pr * h2, nb * h2, sr, t.phi, self.class_name
                )
        windows = None  # (input, EQ output, stem output) windows of the last COMP_WINDOW_S
        if snap["windows"] is not None:
            buf, lengths = snap["windows"]
            windows = [buf.array[i, :, :m] for i, m in enumerate(lengths)]
        comp_peak = 0.0
        if windows is not None:
            comp_peak = float(np.max(np.abs(windows[1]), initial=0.0))
        if windows is not None and self.refine:
            color = _coloring_db(windows[1], windows[2], sr)
            if color is not None:
                old = planned.get("eq_color_db")
                planned["eq_color_db"] = color if old is None else old + COLOR_SMOOTHING * (color - old)
        if snap["comp"] and t.onset_peak_mean_db is not None and "compression" in self.stages:
            # the offline plan on the offline (linear-phase) EQ of the input window; the input gain from the
            # peak of what really enters the compressor (the minimum-phase EQ moves peaks by a few dB)
            audio = windows[0]
            if np.max(np.abs(audio)) > 10 ** (C.SILENCE_PEAK_DB / 20) and comp_peak > 0:
                if "eq" in planned and not snap["bypass_eq"]:
                    audio = eq.apply(audio, sr, planned["eq"])
                # the window cuts into running audio: fade it in so the compressor (which starts with no gain
                # reduction) does not pass the cut edge through uncompressed; that edge would be the window's
                # peak and dominate the peak-normalized onset feature, differently for every window position
                n_fade = min(audio.shape[1], int(COMP_FADE_S * sr))
                audio = audio.astype(np.float32, copy=True)
                audio[:, :n_fade] *= _ramp(n_fade).astype(np.float32)
                params = planned.get("compression")
                if params is None or not self._comp_in_band(audio, params):
                    # re-planned only when the setting in force misses the band on this window: the
                    # threshold search is not smooth in the window (the onset feature is flat over a wide
                    # range of thresholds), so re-planning every window would make the level wander
                    rep = compression.plan(
                        audio, sr, t.onset_peak_mean_db, t.onset_peak_std_db, self.class_name
                    )
                    params = rep.params
                    if not rep.in_band and rep.before_db - rep.after_db < 0.5 * t.onset_peak_std_db:
                        # even the threshold limit hardly moves the feature: compressing would only change
                        # the sound, so leave the stem uncompressed
                        params = replace(params, threshold_db=0.0, ratio=1.0)
                gain_in = C.DYNAMICS_PEAK_NORM_DB - 20.0 * math.log10(comp_peak)
                planned["compression"] = replace(params, input_gain_db=float(np.clip(gain_in, -120, 120)))
        if t.loudness_lufs is not None and math.isfinite(snap["post_lufs"]):
            planned["loudness_gain_db"] = float(np.clip(t.loudness_lufs - snap["post_lufs"], -60.0, 60.0))

        a: _Applied = snap["applied"]
        big = 1e9 if snap["jump"] else None
        lim = big or MAX_STEP_DB
        new = a
        eq_spec = pan_spec = None
        thr = None
        if "eq" in planned:
            eq_db = _step(a.eq_db, planned["eq"].gain_db, lim)
            if np.max(np.abs(eq_db - a.eq_db)) >= FILTER_DEADBAND_DB:
                new = replace(new, eq_db=eq_db)
                eq_spec = self.eq_spectra(eq_db)
        if "panning" in planned:
            p: PanParams = planned["panning"]
            pl_db = _step(a.pan_l_db, np.asarray(p.left_gain_db) - p.balance_db / 2, lim)
            pr_db = _step(a.pan_r_db, np.asarray(p.right_gain_db) + p.balance_db / 2, lim)
            if (
                max(np.max(np.abs(pl_db - a.pan_l_db)), np.max(np.abs(pr_db - a.pan_r_db)))
                >= FILTER_DEADBAND_DB
            ):
                new = replace(new, pan_l_db=pl_db, pan_r_db=pr_db, pan_balance_db=float(p.balance_db))
                pan_spec = self.pan_spectra(pl_db, pr_db)
        if "compression" in planned:
            c: CompressorParams = planned["compression"]
            target_thr = c.threshold_db if c.ratio > 1.0 else 0.0
            thr_new = float(_step(a.comp_threshold_db, target_thr, big or COMP_STEP_DB))
            gin = float(_step(a.comp_input_gain_db, c.input_gain_db, lim))
            new = replace(new, comp_threshold_db=thr_new, comp_input_gain_db=gin)
            if thr_new != a.comp_threshold_db:
                thr = min(thr_new, 0.0)
        if "loudness_gain_db" in planned:
            new = replace(new, gain_db=float(_step(a.gain_db, planned["loudness_gain_db"], lim)))
        return {
            "planned": planned,
            "applied": new,
            "eq_spec": eq_spec,
            "pan_spec": pan_spec,
            "comp_threshold_db": thr,
        }

    def _comp_in_band(self, audio: np.ndarray, params: CompressorParams) -> bool:
        """Whether ``params`` (threshold at the -10 dBFS peak level) put ``audio``'s onset feature in the band."""
        t = self.targets
        x, _ = peak_normalize(audio)
        mean_db, _ = measure_dynamics(
            compression.apply(x, self.sample_rate, replace(params, input_gain_db=0.0)), self.sample_rate
        )
        return abs(mean_db - t.onset_peak_mean_db) <= t.onset_peak_std_db


class _Windows:
    """The (3, 2, n) analysis windows a compressor plan reads (input, EQ output, stem output).

    ``shared=True`` backs them with a ``.npy`` file in shared memory (``/dev/shm`` where there is one): a
    planner process maps the same pages from :meth:`ref` (:meth:`attach`), so handing a snapshot to another
    process copies nothing on the audio side. The file is removed when the owner is collected (or ``close``).
    """

    def __init__(self, shape: tuple[int, ...], shared: bool = False):
        self.shape, self.path = tuple(shape), None
        if shared:
            import tempfile
            import weakref
            from pathlib import Path

            base = "/dev/shm" if Path("/dev/shm").is_dir() else None
            fd, self.path = tempfile.mkstemp(prefix="fxmix-windows-", suffix=".npy", dir=base)
            os.close(fd)
            self.array = np.lib.format.open_memmap(self.path, "w+", np.float32, self.shape)
            self._finalizer = weakref.finalize(self, _unlink_quietly, self.path)
        else:
            self.array = np.zeros(self.shape, np.float32)
        self.array[...] = 0.0  # pages touched now, not on the audio path

    def close(self) -> None:
        if self.path is not None:
            self._finalizer()

    def ref(self) -> dict:
        """Where another process finds the shared windows (shared instances only)."""
        if self.path is None:
            raise ValueError("_Windows.ref: these windows are not in shared memory")
        return {"path": self.path, "shape": list(self.shape)}

    @staticmethod
    def attach(ref: dict) -> _Windows:
        """A read-only view of shared windows from :meth:`ref` (in the planner process; owns nothing)."""
        w = object.__new__(_Windows)
        w.shape, w.path = tuple(ref["shape"]), None  # path None: closing this view removes nothing
        w.array = np.load(ref["path"], mmap_mode="r")
        return w


def _unlink_quietly(path: str) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass


class StreamingNormalizer:
    """Block-wise effect normalization of one stem (track or class bus) to a profile's class targets.

    Args:
        sample_rate: session rate (Hz); the profile's band grid is in Hz, so the DSP runs at any rate.
        class_name: one of the profile's classes.
        profile: a :class:`Profile` or a profile name/path (default ``musdb18-reference``).
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
        self._mid = (self.centers >= 100) & (self.centers <= 10000)
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
        self.planner = _Planner(
            self.sample_rate, class_name, self.targets, self.stages, self.hop, self.refine
        )
        self._windows = _Windows(
            (3, 2, self.comp_window.ring.n), shared=bool(getattr(executor, "separate_process", False))
        )
        self._jump = False
        self.reset()

    # ------------------------------------------------------------------ state

    def reset(self) -> None:
        """Clear audio tails, statistics and plans; parameters return to neutral (0 dB, no compression)."""
        self._drain_background()
        nb = self.centers.size
        self.applied = _Applied(np.zeros(nb), np.zeros(nb), np.zeros(nb), 0.0, 0.0, 0.0, 0.0)
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
        self.eq_conv = _PartitionedConv(2, self.hop, self.n_parts)
        self.pan_conv = _PartitionedConv(2, self.hop, self.n_parts)
        unit = np.zeros(self.n_parts * (self.hop + 1), np.complex128).reshape(self.n_parts, self.hop + 1)
        unit[0] = 1.0
        self.eq_spec = _kcf(np.broadcast_to(unit, (2, *unit.shape)))
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
        x = _check_block(block, f"StreamingNormalizer[{self.class_name}].process")
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

    def _fill_windows(self, n_win: int) -> tuple[_Windows, tuple[int, ...]]:
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
                C.TRUE_PEAK_CEILING_DB - 1.0,
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
                "applied": _applied_dict(pend["applied"]),
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
            "applied": _applied_dict(a),
            "planned": {k: (v.to_dict() if hasattr(v, "to_dict") else v) for k, v in self.planned.items()},
            "in_fifo": self.in_fifo.copy(),
            "out_fifo": self.out_fifo.copy(),
            "k": self.k,
            "n_plans": self.n_plans,
            "learning": self.learning,
        }

    def load_state_dict(self, state: dict) -> None:
        from .params import params_from_dict

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

        self.applied = _applied_from(state["applied"])
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
            pa = _applied_from(pend["applied"])
            self._pending = {
                "planned": planned(pend["planned"]),
                "applied": pa,
                "eq_spec": self.planner.eq_spectra(pa.eq_db) if pend["eq_changed"] else None,
                "pan_spec": self.planner.pan_spectra(pa.pan_l_db, pa.pan_r_db)
                if pend["pan_changed"]
                else None,
                "comp_threshold_db": pend["comp_threshold_db"],
            }


def _applied_dict(a: _Applied) -> dict:
    return {
        "eq_db": a.eq_db.copy(),
        "pan_l_db": a.pan_l_db.copy(),
        "pan_r_db": a.pan_r_db.copy(),
        "pan_balance_db": a.pan_balance_db,
        "comp_threshold_db": a.comp_threshold_db,
        "comp_input_gain_db": a.comp_input_gain_db,
        "gain_db": a.gain_db,
    }


def _applied_from(ap: dict) -> _Applied:
    return _Applied(
        np.asarray(ap["eq_db"], float),
        np.asarray(ap["pan_l_db"], float),
        np.asarray(ap["pan_r_db"], float),
        float(ap["pan_balance_db"]),
        float(ap["comp_threshold_db"]),
        float(ap["comp_input_gain_db"]),
        float(ap["gain_db"]),
    )

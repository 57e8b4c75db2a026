"""The streaming normalizer's planning job: ``chain.normalize_stem``'s decisions on running statistics, then
the rate limiter that moves the parameters in force towards the plans.

Plans are made on a snapshot of the running statistics (see :class:`Planner`): EQ = ``eq.plan`` on the
running PSD, aimed at the target *minus the colouring of the later stages* (closed loop, the streaming form
of ``chain.EQ_REFINE_PASSES``: the spectra of the last :data:`COMP_WINDOW_S` of the compressor input and of
the panning output are compared, so the finished stem, not the EQ output, gets the target spectrum); panning
= ``panning.plan_from_sums`` on the running per-bin sums weighted by the EQ's response; compression (every
:data:`COMP_PLAN_EVERY` plans) = ``compression.plan`` on the last :data:`COMP_WINDOW_S` of input through the
offline EQ, faded in over :data:`COMP_FADE_S`, kept while the setting in force still puts the window in the
onset band (``compression.setting_in_band``), and left off when even the threshold limit cannot move the
feature (``compression.leave_uncompressed``); loudness = class target minus the long-term loudness after
panning. Each EQ/pan band, the gains and the compressor input gain then move at most :data:`MAX_STEP_DB` per
update, the compressor threshold at most :data:`COMP_STEP_DB`.

streaming-safe: n/a (runs off the audio path: inline, on a thread or in the planner process).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np

from .. import constants as C
from ..bands import band_centers_hz
from ..features import spectrum_from_power, stft_power
from ..fir import design_fir, fir_power_response
from ..params import CompressorParams, PanParams
from ..stages import compression, eq, panning
from .constants import (
    COLOR_SMOOTHING,
    COMP_FADE_S,
    COMP_STEP_DB,
    FILTER_DEADBAND_DB,
    FILTER_TAPS,
    MAX_STEP_DB,
)
from .conv import fade_ramp, kcf_layout, minimum_phase_spectra


@dataclass(frozen=True)
class Applied:
    """Parameters in force (what the rate limiter moves)."""

    eq_db: np.ndarray
    pan_l_db: np.ndarray
    pan_r_db: np.ndarray
    pan_balance_db: float
    comp_threshold_db: float
    comp_input_gain_db: float
    gain_db: float


def applied_to_dict(a: Applied) -> dict:
    """:class:`Applied` as a dict of arrays and floats (copies; for ``state_dict``)."""
    return {
        "eq_db": a.eq_db.copy(),
        "pan_l_db": a.pan_l_db.copy(),
        "pan_r_db": a.pan_r_db.copy(),
        "pan_balance_db": a.pan_balance_db,
        "comp_threshold_db": a.comp_threshold_db,
        "comp_input_gain_db": a.comp_input_gain_db,
        "gain_db": a.gain_db,
    }


def applied_from_dict(ap: dict) -> Applied:
    """Inverse of :func:`applied_to_dict`."""
    return Applied(
        np.asarray(ap["eq_db"], float),
        np.asarray(ap["pan_l_db"], float),
        np.asarray(ap["pan_r_db"], float),
        float(ap["pan_balance_db"]),
        float(ap["comp_threshold_db"]),
        float(ap["comp_input_gain_db"]),
        float(ap["gain_db"]),
    )


def coloring_db(eq_out: np.ndarray, stem_out: np.ndarray, sample_rate: int) -> np.ndarray | None:
    """Band spectrum (dB, shape only) the stages after the EQ add to the stem: ``eq.residual_db`` of the stem
    output against the EQ output, the residual the offline chain's EQ refinement folds back.

    ``eq_out`` (the compressor's input) and ``stem_out`` (the panning output) are (2, n) windows of the same
    hops, so the EQ's own history cancels out. None while either is silent.
    """
    if not (np.any(eq_out) and np.any(stem_out)):
        return None
    return eq.residual_db(_window_shape_db(stem_out, sample_rate), _window_shape_db(eq_out, sample_rate))


def _window_shape_db(x: np.ndarray, sample_rate: int) -> np.ndarray:
    """Shape spectrum (dB, no loudness reference) of a short window, from its float32 STFT power: the same
    quantity as ``eq.shape_spectrum_db``, which sums whole stems chunk by chunk in float64. The two differ by
    rounding only, but the planner's later choices (the filter deadband, the compressor's keep check) are
    thresholds that such a difference can tip, so the planner's windows are always measured this way."""
    return spectrum_from_power(stft_power(x), sample_rate, C.ANALYSIS_FFT, 0.0)


def _step(cur, target, limit):
    return cur + np.clip(np.asarray(target) - cur, -limit, limit)


def _window_views(windows) -> list[np.ndarray] | None:
    """The (input, EQ output, stem output) windows of the last COMP_WINDOW_S from a snapshot's
    ``(Windows, lengths)``; None when the snapshot carries none."""
    if windows is None:
        return None
    buf, lengths = windows
    return [buf.array[i, :, :m] for i, m in enumerate(lengths)]


class Planner:
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
        """The constructor arguments (rebuild with ``Planner(**spec)``)."""
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
        return kcf_layout(np.stack([s, s]))

    def pan_spectra(self, left_db: np.ndarray, right_db: np.ndarray) -> np.ndarray:
        """(K, 2, hop+1) partition spectra of the minimum-phase per-channel panning FIRs."""
        return kcf_layout(
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
        planned = snap["planned"]
        t = self.targets
        if snap["plan"] and snap["weight"] > 0:
            self._plan_spectral(snap, planned)
        windows = _window_views(snap["windows"])
        if windows is not None and self.refine:
            color = coloring_db(windows[1], windows[2], self.sample_rate)
            if color is not None:
                old = planned.get("eq_color_db")
                planned["eq_color_db"] = color if old is None else old + COLOR_SMOOTHING * (color - old)
        if snap["comp"] and t.onset_peak_mean_db is not None and "compression" in self.stages:
            self._plan_compression(windows[0], windows[1], planned, snap["bypass_eq"])
        if t.loudness_lufs is not None and math.isfinite(snap["post_lufs"]):
            planned["loudness_gain_db"] = float(np.clip(t.loudness_lufs - snap["post_lufs"], -60.0, 60.0))
        return self._rate_limited(snap["applied"], planned, snap["jump"])

    def _plan_spectral(self, snap: dict, planned: dict) -> None:
        """EQ and panning plans from the running per-bin sums of the snapshot (into ``planned``)."""
        sr, t = self.sample_rate, self.targets
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

    def _plan_compression(
        self, audio: np.ndarray, eq_out: np.ndarray, planned: dict, bypass_eq: bool
    ) -> None:
        """The compressor plan for the input window ``audio`` (into ``planned``): the offline plan on the
        offline (linear-phase) EQ of the window; the input gain from the peak of what really enters the
        compressor, ``eq_out`` (the minimum-phase EQ moves peaks by a few dB)."""
        sr, t = self.sample_rate, self.targets
        comp_peak = float(np.max(np.abs(eq_out), initial=0.0))
        if not (np.max(np.abs(audio)) > 10 ** (C.SILENCE_PEAK_DB / 20) and comp_peak > 0):
            return
        if "eq" in planned and not bypass_eq:
            audio = eq.apply(audio, sr, planned["eq"])
        # the window cuts into running audio: fade it in so the compressor (which starts with no gain
        # reduction) does not pass the cut edge through uncompressed; that edge would be the window's
        # peak and dominate the peak-normalized onset feature, differently for every window position
        n_fade = min(audio.shape[1], int(COMP_FADE_S * sr))
        audio = audio.astype(np.float32, copy=True)
        audio[:, :n_fade] *= fade_ramp(n_fade).astype(np.float32)
        params = planned.get("compression")
        if params is None or not compression.setting_in_band(
            audio, sr, params, t.onset_peak_mean_db, t.onset_peak_std_db
        ):
            # re-planned only when the setting in force misses the band on this window: the threshold
            # search is not smooth in the window (the onset feature is flat over a wide range of
            # thresholds), so re-planning every window would make the level wander
            params = self.compression_setting(audio)
        gain_in = C.DYNAMICS_PEAK_NORM_DB - 20.0 * math.log10(comp_peak)
        planned["compression"] = replace(params, input_gain_db=float(np.clip(gain_in, -120, 120)))

    def compression_setting(self, audio: np.ndarray) -> CompressorParams:
        """A new compressor setting for the (EQ'd, faded-in) window ``audio``: the offline threshold search,
        left uncompressed where ``compression.leave_uncompressed`` says so."""
        t = self.targets
        rep = compression.plan(
            audio, self.sample_rate, t.onset_peak_mean_db, t.onset_peak_std_db, self.class_name
        )
        if compression.leave_uncompressed(rep, t.onset_peak_std_db):
            return compression.uncompressed(rep.params)
        return rep.params

    def _rate_limited(self, a: Applied, planned: dict, jump: bool) -> dict:
        """The parameters in force ``a`` moved towards ``planned`` by at most one rate-limiter step (any
        distance when ``jump``), and the filter spectra / threshold that changed (None where unchanged)."""
        big = 1e9 if jump else None
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

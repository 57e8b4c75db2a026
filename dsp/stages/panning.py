"""Panning stage: match the class's per-band stereo similarity φ without moving the stereo centre.

Reference (fxnorm-spec.md §1.3, §8.1): per-frame, per-bin re-panning towards the stem's dominant side after a
fixed 0.3/0.7 pre-pan, with a frame/bin mix-up that left all but the first ~15.7 s untouched; centred
sources came out ~6-7 dB off-centre. Here each band below the class cut-off gets a static inter-channel level
difference δ_b (dB) chosen in closed form: with band sums A = Σ|L|², B = Σ|R|², N = Σ2|L||R| over the band's
bins and all frames (energy-weighted φ), φ(x) = N / (A/x + B·x) with x = 10^(δ/20). Bands that are too
narrow (φ above target) are widened by spreading bands alternately left and right, the side chosen greedily
so the band energies stay balanced (a centred source stays centred); bands that are too wide (a hard-panned
source) move toward the target along the shortest way, i.e. toward the centre. Bins above the cut-off are
left alone. The result is one static gain curve per channel, applied as linear-phase FIRs.

streaming-safe: plan no; apply yes (static per-channel FIRs).
"""

from __future__ import annotations

import numpy as np

from .. import constants as C
from ..bands import band_centers_hz, band_weights, weigh_bins
from ..features import stft_power_sums
from ..fir import apply_fir, design_fir, fir_power_response
from ..params import PanParams

MAX_SHIFT_DB = 20.0


def cutoff_hz(class_name: str) -> float:
    return float(C.PAN_CUTOFF_HZ.get(class_name, C.PAN_CUTOFF_DEFAULT_HZ))


def _solve_band(a: float, b: float, n: float, phi_t: float, side: int) -> float:
    """δ (dB, + = right louder) giving band φ = phi_t; side picks the root when widening."""
    if a <= 0 or b <= 0 or n <= 0:
        return 0.0
    k = n / max(phi_t, 1e-6)
    disc = k * k - 4 * a * b
    balanced = 0.5 * np.log10(a / b) * 20.0  # x = sqrt(A/B): the most similar state reachable
    if disc < 0:
        return float(np.clip(balanced, -MAX_SHIFT_DB, MAX_SHIFT_DB))
    r = np.sqrt(disc)
    roots = np.array([(k - r) / (2 * b), (k + r) / (2 * b)])
    deltas = 20.0 * np.log10(np.maximum(roots, 1e-12))
    phi_now = n / (a + b)
    if phi_now > phi_t:  # too narrow: widen on the chosen side of the balance point
        d = deltas[1] if side > 0 else deltas[0]
    else:  # too wide: smallest move
        d = deltas[np.argmin(np.abs(deltas))]
    return float(np.clip(d, -MAX_SHIFT_DB, MAX_SHIFT_DB))


N_REFINE = 4


def _bin_sums(power: np.ndarray):
    pl, pr = power[0], power[1]
    return (
        pl.sum(axis=0).astype(np.float64),
        pr.sum(axis=0).astype(np.float64),
        (2.0 * np.sqrt(pl * pr)).sum(axis=0).astype(np.float64),
    )


def _centred_shift_db(phi: np.ndarray) -> np.ndarray:
    """Level difference (dB) that gives a centred source the similarity φ (inverse of φ = 2r/(1+r²))."""
    phi = np.clip(phi, 1e-6, 1.0)
    r = (1.0 - np.sqrt(1.0 - phi**2)) / phi
    return -20.0 * np.log10(np.maximum(r, 1e-12))


def _per_channel_power(freqs, delta, cut, sample_rate):
    hl = fir_power_response(design_fir(freqs, -delta / 2, sample_rate, cutoff_hz=cut), C.ANALYSIS_FFT)
    hr = fir_power_response(design_fir(freqs, delta / 2, sample_rate, cutoff_hz=cut), C.ANALYSIS_FFT)
    return hl, hr


def plan(
    audio: np.ndarray, sample_rate: int, target_phi: np.ndarray, class_name: str, power=None
) -> PanParams:
    """Per-band level differences reaching ``target_phi`` (refined against the designed FIRs' response)."""
    if power is None:  # sums over frames, chunk by chunk: the (2, frames, bins) power is never materialised
        sums = stft_power_sums(audio)
        pl, pr, nb = sums.power[0], sums.power[1], sums.cross
    else:
        pl, pr, nb = _bin_sums(power)
    return plan_from_sums(pl, pr, nb, sample_rate, target_phi, class_name)


def plan_from_sums(
    pl: np.ndarray, pr: np.ndarray, nb: np.ndarray, sample_rate: int, target_phi: np.ndarray, class_name: str
) -> PanParams:
    """:func:`plan` from per-bin sums over frames (ANALYSIS_FFT grid): Σ|L|², Σ|R|², Σ2|L||R|.

    This is the whole planning math; :func:`plan` only computes the sums. The streaming normalizer
    (``fxmix.dsp.streaming``) calls it with running (exponentially weighted) sums.
    """
    pl, pr, nb = (np.asarray(v, dtype=np.float64) for v in (pl, pr, nb))
    w = band_weights(C.ANALYSIS_FFT, sample_rate)
    a, b, n = weigh_bins(w, np.stack([pl, pr, nb]))
    centers = band_centers_hz()
    cut = cutoff_hz(class_name)
    active = centers < cut
    target = np.clip(np.asarray(target_phi, dtype=np.float64), 0.05, 1.0)
    widen = active & (n / np.maximum(a + b, 1e-30) > target)
    # sides for widened bands: greedy, loudest first, keeping the added R-L energy near zero
    side = np.zeros(len(a), dtype=int)
    imbalance = 0.0
    for i in np.argsort(-(a + b)):
        if widen[i]:
            side[i] = -1 if imbalance > 0 else 1
            d = _solve_band(a[i], b[i], n[i], target[i], side[i])
            x = 10 ** (d / 20)
            imbalance += b[i] * x - a[i] / x - (b[i] - a[i])
    goal = np.array(
        [_solve_band(a[i], b[i], n[i], target[i], side[i]) if active[i] else 0.0 for i in range(len(a))]
    )
    # refine against the designed filters: band φ predicted from per-bin sums and the FIRs' |H|^2
    direction = np.where(widen, side, -np.sign(goal))
    delta = goal.copy()
    for _ in range(N_REFINE):
        hl, hr = _per_channel_power(centers, delta, cut, sample_rate)
        cross, left, right = weigh_bins(w, np.stack([nb * np.sqrt(hl * hr), pl * hl, pr * hr]))
        phi_now = cross / np.maximum(left + right, 1e-30)
        step = _centred_shift_db(target) - _centred_shift_db(phi_now)
        delta = np.clip(delta + np.where(active, direction * step, 0.0), -MAX_SHIFT_DB, MAX_SHIFT_DB)
    # a common per-band gain keeps each band's energy (the EQ stage's spectrum) where it was
    x = 10 ** (delta / 20)
    common = np.where(active, 10 * np.log10(np.maximum(a + b, 1e-30) / np.maximum(a / x + b * x, 1e-30)), 0.0)
    # keep the broadband balance of the widened part unchanged (a centred source stays centred)
    hl, hr = _per_channel_power(centers, np.where(widen, delta, 0.0), cut, sample_rate)
    balance_db = (
        10 * np.log10(pr.sum() / max(pl.sum(), 1e-30))
        - 10 * np.log10((pr * hr).sum() / max((pl * hl).sum(), 1e-30))
        if pl.sum() > 0 and pr.sum() > 0
        else 0.0
    )
    return PanParams(
        tuple(float(f) for f in centers),
        tuple(float(c - d / 2) for c, d in zip(common, delta)),
        tuple(float(c + d / 2) for c, d in zip(common, delta)),
        cut,
        float(np.clip(balance_db, -MAX_SHIFT_DB, MAX_SHIFT_DB)),
    )


def taps(params: PanParams, sample_rate: int) -> list[np.ndarray]:
    """The stage's left and right linear-phase FIRs (balance split half and half), float64."""
    freqs, half_bal = np.asarray(params.freqs_hz), params.balance_db / 2.0
    curves = (np.asarray(params.left_gain_db) - half_bal, np.asarray(params.right_gain_db) + half_bal)
    return [design_fir(freqs, c, sample_rate, cutoff_hz=params.cutoff_hz) for c in curves]


def apply(
    audio: np.ndarray, sample_rate: int, params: PanParams, *, out: np.ndarray | None = None
) -> np.ndarray:
    return apply_fir(audio, taps(params, sample_rate), out=out)

"""Per-song metrics of a method's mix against the target mix, each with a documented bound.

The target's features are measured once per song (:class:`Reference`); each method then costs its own
features only. "LN" = both signals loudness-normalized to ``LN_LUFS`` first, so a method is not judged on
its overall level (reported on its own as ``loudness_err_lu``). Lower is better for every metric.

=====================  ===========================================================================  =========
metric                 definition                                                                   bound
=====================  ===========================================================================  =========
mrstft                 LN multi-resolution sum/difference STFT distance (SC + log-magnitude on the  56.9
                       sum S and the difference D, FFT 4096...256, hop 1/4): the training loss
                       :class:`~fxmix.model.losses.MultiResolutionSumDiffLoss`, guarded (below)
spectral_err_db        mean |Δ| of the loudness-referenced 1/6-octave band spectra, each clamped to  120
                       [SPECTRUM_MIN_DB, SPECTRUM_MAX_DB]
panning_err            mean |Δ| of the per-band stereo similarity φ (0..1)                          1
dynamics_err_db        |Δ| of the crest factors (peak/RMS, dB; a crest is at most 10·log10(n),      80
                       73.8 dB for a 10-min song)
level_balance_err_lu   mean |Δ| of the class balances (:mod:`.eval_balance`)                        40
track_balance_err_lu   mean |Δ| of the track balances (:mod:`.eval_balance`)                        40
loudness_err_lu        |Δ| of BS.1770 integrated loudness, each clamped to [-70, +10] LUFS          80
=====================  ===========================================================================  =========

MR-STFT guard: spectral convergence ``‖|P|−|T|‖ / ‖|T|‖`` divides by the target's norm, and the difference
channel of a mono target is empty: the term read ~4000 on such songs and swamped every mean. Here each
channel's denominator is at least ``SC_FLOOR_DB`` (-30 dB) under the target's sum-channel norm, so the side
of a mono target is judged against the mid's scale (a stereo target's side is rarely 30 dB under its mid,
and reads as before); each SC term is also capped at ``SC_MAX`` (error energy 20 dB over the target's), and
magnitudes at ``MAG_MAX`` (the log-magnitude term is then at most ``log(MAG_MAX / eps)`` = 18.42), so the sum
over two channels and the mean over resolutions stay under ``2 · (SC_MAX + 18.42)``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ..dsp.audio import db_to_gain
from ..dsp.constants import SAMPLE_RATE
from ..dsp.features import integrated_loudness, measure_phi, measure_spectrum
from ..model.losses import SumDiffSTFT
from .data import crest_factor_db
from .eval_balance import BALANCE_FLOOR_LU

#: Level every stem is set to by the equal-loudness baseline, and the level of LN comparisons (LUFS).
LN_LUFS = -23.0
MRSTFT_FFT_SIZES = (4096, 2048, 1024, 512, 256)
MRSTFT_EPS = 1e-4
#: Floor of each channel's SC denominator, relative to the target's sum-channel norm (dB).
SC_FLOOR_DB = -30.0
SC_MAX = 10.0
#: Magnitude cap (a full-scale sine reads ~2.6e3 in the 4096-point sum channel).
MAG_MAX = 1e4
SPECTRUM_MIN_DB, SPECTRUM_MAX_DB = -100.0, 20.0
LOUDNESS_MIN_LUFS, LOUDNESS_MAX_LUFS = -70.0, 10.0

METRICS = (
    "mrstft",
    "spectral_err_db",
    "panning_err",
    "dynamics_err_db",
    "level_balance_err_lu",
    "track_balance_err_lu",
    "loudness_err_lu",
)
BOUNDS = {
    "mrstft": 2 * (SC_MAX + float(np.log(MAG_MAX / MRSTFT_EPS))),
    "spectral_err_db": SPECTRUM_MAX_DB - SPECTRUM_MIN_DB,
    "panning_err": 1.0,
    "dynamics_err_db": 80.0,
    "level_balance_err_lu": -BALANCE_FLOOR_LU,
    "track_balance_err_lu": -BALANCE_FLOOR_LU,
    "loudness_err_lu": LOUDNESS_MAX_LUFS - LOUDNESS_MIN_LUFS,
}

_STFTS = [SumDiffSTFT(n, n // 4, MRSTFT_EPS) for n in MRSTFT_FFT_SIZES]


def loudness(x: np.ndarray) -> float:
    """Integrated loudness clamped to [LOUDNESS_MIN_LUFS, LOUDNESS_MAX_LUFS] (silence reads the minimum)."""
    v = integrated_loudness(x, SAMPLE_RATE)
    return float(np.clip(v, LOUDNESS_MIN_LUFS, LOUDNESS_MAX_LUFS)) if np.isfinite(v) else LOUDNESS_MIN_LUFS


def ln(x: np.ndarray, lufs: float) -> np.ndarray:
    """``x`` gained from ``lufs`` to LN_LUFS (silence unchanged)."""
    return x if lufs <= LOUDNESS_MIN_LUFS else (x * db_to_gain(LN_LUFS - lufs)).astype(np.float32)


def _mags(x: np.ndarray) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """(S, D) magnitudes per resolution, as :class:`SumDiffSTFT` defines them (sqrt-Hann, no centring,
    ``sqrt(|X|² + eps²)``), capped at MAG_MAX; computed in place (one complex temporary per resolution)."""
    t = torch.from_numpy(np.ascontiguousarray(x, np.float32))
    sd = torch.stack([t[0] + t[1], t[0] - t[1]])
    out = []
    with torch.no_grad():
        for m in _STFTS:
            spec = torch.stft(sd, m.fft_size, m.hop_size, window=m.window, center=False, return_complex=True)
            mag = torch.view_as_real(spec).square_().sum(-1).add_(MRSTFT_EPS**2).sqrt_().clamp_(max=MAG_MAX)
            out.append((mag[0], mag[1]))
    return out


def _spectrum(x: np.ndarray, lufs: float) -> np.ndarray:
    return np.clip(measure_spectrum(x, SAMPLE_RATE, lufs), SPECTRUM_MIN_DB, SPECTRUM_MAX_DB)


@dataclass
class Reference:
    """The target mix's features, measured once per song."""

    audio: np.ndarray
    lufs: float
    spectrum: np.ndarray
    phi: np.ndarray
    crest_db: float
    mags: list  # per resolution: (S, D) magnitudes of the LN target, and their logs and SC denominators
    logs: list
    dens: list

    @classmethod
    def of(cls, target: np.ndarray) -> Reference:
        lufs = loudness(target)
        mags = _mags(ln(target, lufs)) if target.shape[-1] >= max(MRSTFT_FFT_SIZES) else []
        logs = [tuple(torch.log(m + MRSTFT_EPS) for m in pair) for pair in mags]
        dens = []
        for s, d in mags:
            floor = float(torch.linalg.vector_norm(s)) * db_to_gain(SC_FLOOR_DB)
            dens.append(tuple(max(float(torch.linalg.vector_norm(m)), floor, MRSTFT_EPS) for m in (s, d)))
        return cls(
            target, lufs, _spectrum(target, lufs), measure_phi(target, SAMPLE_RATE), crest_factor_db(target),
            mags, logs, dens,
        )


def mrstft(pred_ln: np.ndarray, ref: Reference) -> float:
    """Guarded LN MR-STFT distance of an LN prediction (see the module docstring); nan for a too-short song."""
    if not ref.mags:
        return float("nan")
    total = 0.0
    for (ps, pd), (ts, td), (ls, ld), dens in zip(_mags(pred_ln), ref.mags, ref.logs, ref.dens):
        for p, t, lt, den in ((ps, ts, ls, dens[0]), (pd, td, ld, dens[1])):
            total += min(float(torch.dist(p, t)) / den, SC_MAX)
            total += float(p.add_(MRSTFT_EPS).log_().sub_(lt).abs_().mean())
    return total / len(ref.mags)


def signal_metrics(pred: np.ndarray, ref: Reference) -> dict[str, float]:
    """The metrics that compare the mix signals (every METRICS entry but the balances)."""
    lp = loudness(pred)
    crest = crest_factor_db(pred)
    return {
        "mrstft": mrstft(ln(pred, lp), ref),
        "spectral_err_db": float(np.mean(np.abs(_spectrum(pred, lp) - ref.spectrum))),
        "panning_err": float(np.mean(np.abs(measure_phi(pred, SAMPLE_RATE) - ref.phi))),
        "dynamics_err_db": abs(crest - ref.crest_db) if np.isfinite(crest) and np.isfinite(ref.crest_db)
        else float("nan"),
        "loudness_err_lu": abs(lp - ref.lufs),
    }


def out_of_bounds(values: dict[str, float]) -> list[str]:
    """Names of the metrics whose value exceeds its documented bound (nan is not a violation)."""
    return [k for k, b in BOUNDS.items() if k in values and np.isfinite(values[k]) and values[k] > b]

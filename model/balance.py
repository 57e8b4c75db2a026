"""Level balance of a mix, per class and per track (the one estimator; evaluation, training and the
decisions of `fxmix mix` use it): each part's share of the mix's K-weighted energy (LU).

A method's mix is a black box; what each part (class stem or track) contributes to it is estimated by
per-band complex least squares on the parts it was made from (:func:`fxmix.model.losses.band_ls_gains`): in
each 1/3-octave band of a 4096-point STFT one complex gain per part ``G_p`` is fitted over all bins, frames and
both channels so that ``MIX ≈ Σ_p G_p · PART_p``. Per-band gains follow any smooth EQ and reduce to the
broadband gain for pure gains; a single broadband gain would only capture the part of a processed stem still
correlated with the unprocessed one (``|g|² ‖s‖² ≤ ‖H s‖²``) and under-read equalized parts.

A part's contribution energy is ``Σ_bands |G|² · E_band``, ``E_band`` its BS.1770 K-weighted energy in the
band (ungated), and its balance ``10·log10(energy / Σ energies)``: the measure of
:class:`fxmix.model.losses.ClassBalanceLoss`, so training and evaluation read a balance the same way. A part
known exactly (a target's wet stem) is measured by the same meter with gain 1. How much of the excerpt a part
plays is in its ``E_band`` for the target and the method alike, so it cancels in the error.

:class:`Contributions` fits many mixes on the same parts at once: the parts' STFTs and Gram matrices are made
once per song (the expensive half, ``bins · frames · parts²``), each mix adds only its right-hand side. The
least squares run over groups of whole bands in complex128, so memory stays at the parts' complex64 STFTs.

Balances are clamped to ``[BALANCE_FLOOR_LU, 0]``: a part a mix leaves out reads as the floor instead of
dropping out of the comparison, and the error on one part is at most ``-BALANCE_FLOOR_LU``.
"""

from __future__ import annotations

import numpy as np
import scipy.signal
import torch
from fxmix.dsp.constants import SAMPLE_RATE

from .losses import CONTRIB_N_FFT, band_ls_gains, contribution_bands, k_weighting_power

#: A part's balance reads no lower than this (LU re the whole mix): quieter is inaudible in the mix.
BALANCE_FLOOR_LU = -40.0
#: Bins per least-squares group (whole bands only): bounds the complex128 working copy of the parts' STFTs.
_GROUP_BINS = 256

_STFT = dict(fs=SAMPLE_RATE, nperseg=CONTRIB_N_FFT, noverlap=CONTRIB_N_FFT * 3 // 4, window="hann")


_WINDOW = torch.hann_window(CONTRIB_N_FFT)  # periodic: scipy's "hann"


def _stft(x: np.ndarray) -> np.ndarray:
    """(..., bins, frames) complex64 STFT: scipy.signal.stft's frames and scale (``_STFT``) by torch (faster)."""
    t = torch.from_numpy(np.ascontiguousarray(x, np.float32))
    spec = torch.stft(t.reshape(-1, t.shape[-1]), CONTRIB_N_FFT, CONTRIB_N_FFT // 4, window=_WINDOW,
                      center=True, pad_mode="constant", return_complex=True)
    return (spec / _WINDOW.sum()).reshape(*t.shape[:-1], *spec.shape[-2:]).numpy()


_BANDS = contribution_bands(CONTRIB_N_FFT, SAMPLE_RATE).numpy()
#: (bins, bands) 0/1 membership of each rfft bin in the contribution bands
_ONEHOT = (_BANDS[:, None] == np.arange(int(_BANDS.max()) + 1)[None, :]).astype(np.float64)
_KW = k_weighting_power(CONTRIB_N_FFT, SAMPLE_RATE).astype(np.float64)


def band_energy(spec: np.ndarray) -> np.ndarray:
    """(..., bands) K-weighted energy per band of STFTs ``(..., channels, bins, frames)``."""
    power = (spec.real.astype(np.float64) ** 2 + spec.imag.astype(np.float64) ** 2).sum(axis=(-3, -1))
    return (power * _KW) @ _ONEHOT


def energy(x: np.ndarray) -> float:
    """K-weighted energy of a (2, n) signal (the meter of a part known exactly)."""
    return float(band_energy(_stft(x)).sum())


def balance_lu(energies: dict[str, float]) -> dict[str, float]:
    """Each part's share of the total energy (LU), clamped to [BALANCE_FLOOR_LU, 0]; {} when all silent."""
    total = float(sum(energies.values()))
    if not total > 0:
        return {}
    return {
        k: float(np.clip(10 * np.log10(max(e / total, 1e-30)), BALANCE_FLOOR_LU, 0.0))
        for k, e in energies.items()
    }


def exact_balance_lu(parts: dict[str, np.ndarray]) -> dict[str, float]:
    """:func:`balance_lu` of parts known exactly (all-zero parts left out)."""
    return balance_lu({k: energy(x) for k, x in parts.items() if np.any(x)})


def balance_error_lu(method: dict[str, float], target: dict[str, float]) -> float:
    """Mean |Δ| over the target's parts of the method's balance (a part missing in the method reads as the
    floor); nan when the target has no parts. At most ``-BALANCE_FLOOR_LU``."""
    if not target:
        return float("nan")
    return float(np.mean([abs(method.get(k, BALANCE_FLOOR_LU) - v) for k, v in target.items()]))


def _band_groups(bands: np.ndarray) -> list[tuple[int, int]]:
    """(first bin, end bin) of consecutive groups of whole bands, about ``_GROUP_BINS`` bins each."""
    starts = np.flatnonzero(np.diff(bands, prepend=-1))
    groups, lo = [], 0
    for s in [int(v) for v in starts[1:]] + [bands.size]:
        if s - lo >= _GROUP_BINS:
            groups.append((lo, s))
            lo = s
    if lo < bands.size:
        groups.append((lo, bands.size))
    return groups


class Contributions:
    """Per-band least-squares contributions of ``parts`` (name -> (2, n)) to mixes of the same length.

    All-zero parts are left out. Mixes shorter than one STFT frame are explained by one broadband real gain
    per part.
    """

    def __init__(self, parts: dict[str, np.ndarray]) -> None:
        self.names = [k for k, x in parts.items() if np.any(x)]
        self.parts = {k: np.asarray(parts[k], np.float32) for k in self.names}
        self.n = next(iter(parts.values())).shape[-1] if parts else 0
        self.banded = self.n >= CONTRIB_N_FFT and bool(self.names)
        if self.banded:
            self.specs = np.stack([_stft(self.parts[k]) for k in self.names])  # (parts, 2, bins, frames)
            self.energy = band_energy(self.specs)  # (parts, bands)

    def band_gains(self, mixes: list[np.ndarray]) -> np.ndarray:
        """(mixes, parts, bands) complex128 gains."""
        m_specs = np.stack([_stft(m) for m in mixes])
        out = np.zeros((len(mixes), len(self.names), _ONEHOT.shape[1]), np.complex128)
        for lo, hi in _band_groups(_BANDS):
            b0 = int(_BANDS[lo])
            g = band_ls_gains(
                torch.from_numpy(m_specs[:, :, lo:hi].astype(np.complex128)),
                torch.from_numpy(self.specs[:, :, lo:hi].astype(np.complex128)),
                torch.from_numpy(_BANDS[lo:hi] - b0),
            )  # (mixes, parts, bands of the group)
            out[:, :, b0 : b0 + g.shape[-1]] = g.numpy()
        return out

    def _broadband(self, mixes: list[np.ndarray]) -> np.ndarray:
        a = np.stack([self.parts[k].reshape(-1) for k in self.names], axis=1).astype(np.float64)
        return np.stack(
            [np.linalg.lstsq(a, np.asarray(m, np.float64).reshape(-1), rcond=None)[0] for m in mixes]
        )  # (mixes, parts)

    def balances(self, mixes: list[np.ndarray]) -> list[dict[str, float]]:
        """For each mix: every part's :func:`balance_lu` in it."""
        if not self.names:
            return [{} for _ in mixes]
        if not self.banded:
            g = self._broadband(mixes)
            e = g**2 * np.array([energy(self.parts[k]) for k in self.names])[None]
        else:
            e = (np.abs(self.band_gains(mixes)) ** 2 * self.energy[None]).sum(-1)  # (mixes, parts)
        return [balance_lu(dict(zip(self.names, row))) for row in e]

    def estimate(self, mixes: list[np.ndarray]) -> list[dict[str, np.ndarray]]:
        """For each mix: part -> (2, n) float32 contribution (the inverse STFT of ``G_p · PART_p``)."""
        if not self.names:
            return [{} for _ in mixes]
        if not self.banded:
            g = self._broadband(mixes)
            return [{k: (row[i] * self.parts[k]).astype(np.float32) for i, k in enumerate(self.names)}
                    for row in g]
        gains = self.band_gains(mixes)[..., _BANDS].astype(np.complex64)  # (mixes, parts, bins)
        specs = np.stack([scipy.signal.stft(self.parts[k], **_STFT)[2] for k in self.names])
        out = []
        for j in range(len(mixes)):
            _, y = scipy.signal.istft(gains[j][:, None, :, None] * specs, **_STFT)
            out.append({k: y[i, :, : self.n].astype(np.float32) for i, k in enumerate(self.names)})
        return out


def estimate_contributions(mix: np.ndarray, stems: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Each stem's contribution to one (2, n) ``mix`` (:meth:`Contributions.estimate`)."""
    return Contributions(stems).estimate([mix])[0]

"""Stereo-invariant mixing losses: La, Lb (Martínez-Ramírez et al., ISMIR 2022) and a multi-resolution loss.

All losses compare a predicted stereo mix with the target mix through the sum and difference channels
S = L + R and D = L − R (so swapping L/R in both leaves the loss unchanged), after an optional FIR
pre-emphasis (A-weighting then a first-order low-pass, as in the reference ``filter_type=["aw", "lp"]``).

Numerical safety (fixes spec §8): the loss is always computed in float32 with autocast disabled, even when
called inside a bf16/fp16 autocast region; magnitudes are ``sqrt(re² + im² + eps²)`` (finite gradients on
silence); the log-magnitude uses ``log(|X| + eps)`` with ``eps = 1e-4`` by default (a normal fp16 number,
unlike the reference's 1e-30); spectral convergence is normalised per example, then averaged.

Shape: ``pred`` and ``target`` are ``(batch, 2, samples)``; every loss returns a scalar.
"""

from __future__ import annotations

import numpy as np
import scipy.signal
import torch
import torch.nn.functional as F
from fxmix.dsp.constants import SAMPLE_RATE
from fxmix.dsp.errors import ConfigError
from fxmix.dsp.features import k_weighting_sos
from torch import nn

#: Analog A-weighting (IEC 61672) pole frequencies (Hz) and the gain that makes 0 dB at 1 kHz.
_A_WEIGHT_POLES_HZ = (20.598997, 107.65265, 737.86223, 12194.217)
_A_WEIGHT_1K_DB = 1.9997


def a_weighting_fir(sample_rate: int = SAMPLE_RATE, n_taps: int = 101) -> np.ndarray:
    """Least-squares FIR fit of the bilinear-transformed A-weighting filter (as auraloss / the reference).

    Returns:
        (n_taps,) float64 taps.
    """
    f1, f2, f3, f4 = _A_WEIGHT_POLES_HZ
    num = [(2 * np.pi * f4) ** 2 * (10 ** (_A_WEIGHT_1K_DB / 20)), 0, 0, 0, 0]
    den = np.polymul([1, 4 * np.pi * f4, (2 * np.pi * f4) ** 2], [1, 4 * np.pi * f1, (2 * np.pi * f1) ** 2])
    den = np.polymul(np.polymul(den, [1, 2 * np.pi * f3]), [1, 2 * np.pi * f2])
    b, a = scipy.signal.bilinear(num, den, fs=sample_rate)
    w_hz, h = scipy.signal.freqz(b, a, worN=512, fs=sample_rate)
    return scipy.signal.firls(n_taps, w_hz, np.abs(h), fs=sample_rate)


class PreEmphasis(nn.Module):
    """FIR pre-emphasis chain applied per channel, output length = input length.

    Args:
        filters: names in order, each ``"aw"`` (101-tap A-weighting) or ``"lp"`` (H(z) = 0.85 + z⁻¹,
            ~21.8 dB less gain at Nyquist than at DC).
        sample_rate: Hz (for the A-weighting design).

    Shape: ``(batch, channels, samples)`` -> same.

    streaming-safe: no (zero-padded on both sides, offline).
    """

    def __init__(self, filters: tuple[str, ...] = ("aw", "lp"), sample_rate: int = SAMPLE_RATE):
        super().__init__()
        self.filters = tuple(filters)
        for i, name in enumerate(self.filters):
            if name == "aw":
                taps = a_weighting_fir(sample_rate)
            elif name == "lp":
                taps = np.array([0.85, 1.0])
            else:
                raise ConfigError(f"pre-emphasis filter {name!r}: use 'aw' (A-weighting) or 'lp' (low-pass)")
            self.register_buffer(f"taps{i}", torch.tensor(taps, dtype=torch.float32).flip(0).view(1, 1, -1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, channels, n = x.shape
        y = x.reshape(batch * channels, 1, n)
        for i in range(len(self.filters)):
            taps = getattr(self, f"taps{i}")
            k = taps.shape[-1]
            y = F.conv1d(F.pad(y, (k // 2, k - 1 - k // 2)), taps)
        return y.reshape(batch, channels, n)


class SumDiffSTFT(nn.Module):
    """Magnitude STFT of the sum and difference channels.

    Args:
        fft_size: FFT length (samples); window = sqrt-Hann of the same length, no centring.
        hop_size: hop (samples).
        eps: magnitude floor: ``|X| = sqrt(re² + im² + eps²)``.
        guard_frames: frames dropped at each end (the reference drops 30 at 4096/1024 on 10-s segments).

    Shape: ``(batch, 2, samples)`` -> two ``(batch, bins, frames)`` tensors (S, D).
    """

    def __init__(self, fft_size: int = 4096, hop_size: int = 1024, eps: float = 1e-4, guard_frames: int = 0):
        super().__init__()
        self.fft_size, self.hop_size, self.eps, self.guard_frames = fft_size, hop_size, eps, guard_frames
        self.register_buffer("window", torch.hann_window(fft_size, periodic=True).sqrt())

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        n = x.shape[-1]
        min_len = self.fft_size + 2 * self.guard_frames * self.hop_size
        if n < min_len:
            raise ConfigError(
                f"loss input has {n} samples; STFT {self.fft_size}/{self.hop_size} with "
                f"{self.guard_frames} guard frames needs at least {min_len}"
            )
        sd = torch.stack([x[:, 0] + x[:, 1], x[:, 0] - x[:, 1]], dim=1).reshape(-1, n)
        spec = torch.stft(
            sd, self.fft_size, self.hop_size, window=self.window, center=False, return_complex=True
        )
        mag = torch.sqrt(spec.real.square() + spec.imag.square() + self.eps**2)
        if self.guard_frames:
            mag = mag[..., self.guard_frames : mag.shape[-1] - self.guard_frames]
        mag = mag.reshape(x.shape[0], 2, mag.shape[-2], mag.shape[-1])
        return mag[:, 0], mag[:, 1]


def _reduce(per_example: torch.Tensor, reduction: str) -> torch.Tensor:
    if reduction == "mean":
        return per_example.mean()
    if reduction == "sum":
        return per_example.sum()
    return per_example


def _spectral_terms(pred_mag: torch.Tensor, target_mag: torch.Tensor, eps: float) -> dict[str, torch.Tensor]:
    """Per-example spectral convergence, magnitude MSE and L1 log-magnitude distance, each (batch,)."""
    diff = pred_mag - target_mag
    sc = torch.linalg.vector_norm(diff, dim=(-2, -1)) / (
        torch.linalg.vector_norm(target_mag, dim=(-2, -1)) + eps
    )
    mse = diff.square().mean(dim=(-2, -1))
    log_mag = (torch.log(pred_mag + eps) - torch.log(target_mag + eps)).abs().mean(dim=(-2, -1))
    return {"sc": sc, "mse": mse, "log_mag": log_mag}


class _StereoLossBase(nn.Module):
    reduction: str = "mean"

    def components(self, pred: torch.Tensor, target: torch.Tensor) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    def forward(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return self.components(pred, target)["total"]

    def _prepare(self, pred: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if pred.shape != target.shape or pred.dim() != 3 or pred.shape[1] != 2:
            raise ConfigError(
                f"loss expects pred and target of shape (batch, 2, samples); got {tuple(pred.shape)} "
                f"and {tuple(target.shape)}"
            )
        return pred.float(), target.float()


class StereoSTFTLoss(_StereoLossBase):
    """Single-resolution sum/difference STFT loss; La and Lb of the paper are two settings of it.

    ``total = w_sum * (w_sc*SC(S) + w_mse*MSE(S) + w_log_mag*LM(S)) + w_diff * (same on D)``.

    Args:
        w_sc: weight of spectral convergence ``‖|Ŷ|−|Y|‖_F / ‖|Y|‖_F`` (per example).
        w_mse: weight of the magnitude MSE.
        w_log_mag: weight of the L1 log-magnitude distance.
        w_sum, w_diff: weights of the sum and difference channels.
        fft_size, hop_size, guard_frames: STFT settings (reference 4096, 1024, 30).
        pre_emphasis: FIR chain (``("aw", "lp")`` in the reference; ``()`` for none).
        eps: magnitude/log floor (fp16-representable).
        sample_rate: Hz.
        reduction: "mean" | "sum" | "none" over the batch.

    Shape: pred, target ``(batch, 2, samples)`` -> scalar (or ``(batch,)`` with reduction "none").
    """

    def __init__(
        self,
        *,
        w_sc: float = 1.0,
        w_mse: float = 0.0,
        w_log_mag: float = 1.0,
        w_sum: float = 1.0,
        w_diff: float = 1.0,
        fft_size: int = 4096,
        hop_size: int = 1024,
        guard_frames: int = 0,
        pre_emphasis: tuple[str, ...] = ("aw", "lp"),
        eps: float = 1e-4,
        sample_rate: int = SAMPLE_RATE,
        reduction: str = "mean",
    ):
        super().__init__()
        if reduction not in ("mean", "sum", "none"):
            raise ConfigError(f"loss reduction {reduction!r}: use 'mean', 'sum' or 'none'")
        if eps < 6.2e-5:
            raise ConfigError(f"loss eps = {eps}: use >= 6.2e-5 so it stays a normal fp16 number")
        self.weights = {"sc": w_sc, "mse": w_mse, "log_mag": w_log_mag}
        self.w_sum, self.w_diff, self.eps, self.reduction = w_sum, w_diff, eps, reduction
        self.pre = PreEmphasis(pre_emphasis, sample_rate) if pre_emphasis else None
        self.stft = SumDiffSTFT(fft_size, hop_size, eps, guard_frames)

    def components(self, pred: torch.Tensor, target: torch.Tensor) -> dict[str, torch.Tensor]:
        """All weighted terms (``sum_sc``, ``diff_log_mag``, ...) and ``total``, each reduced over the batch."""
        pred, target = self._prepare(pred, target)
        with torch.autocast(device_type=pred.device.type, enabled=False):
            if self.pre is not None:
                pred, target = self.pre(pred), self.pre(target)
            ps, pd = self.stft(pred)
            ts, td = self.stft(target)
            out: dict[str, torch.Tensor] = {}
            total = torch.zeros(pred.shape[0], device=pred.device)
            for prefix, w_ch, p, t in (("sum", self.w_sum, ps, ts), ("diff", self.w_diff, pd, td)):
                if w_ch == 0:
                    continue
                terms = _spectral_terms(p, t, self.eps)
                for name, w in self.weights.items():
                    if w == 0:
                        continue
                    term = w_ch * w * terms[name]
                    out[f"{prefix}_{name}"] = _reduce(term, self.reduction)
                    total = total + term
            out["total"] = _reduce(total, self.reduction)
        return out


def loss_a(**kwargs) -> StereoSTFTLoss:
    """La (reference ``StereoLoss``): SC + log-magnitude on S and D."""
    return StereoSTFTLoss(w_sc=1.0, w_mse=0.0, w_log_mag=1.0, **kwargs)


def loss_b(**kwargs) -> StereoSTFTLoss:
    """Lb (reference ``StereoLoss2``): magnitude MSE + log-magnitude on S and D."""
    return StereoSTFTLoss(w_sc=0.0, w_mse=1.0, w_log_mag=1.0, **kwargs)


class MultiResolutionSumDiffLoss(_StereoLossBase):
    """Sum/difference STFT loss averaged over several resolutions (SC + log-magnitude by default).

    Args:
        fft_sizes: FFT lengths; hops are ``fft_size // 4``.
        w_sc, w_mse, w_log_mag, w_sum, w_diff, pre_emphasis, eps, sample_rate, reduction: as
            :class:`StereoSTFTLoss`.

    Shape: pred, target ``(batch, 2, samples)`` with samples >= max(fft_sizes) -> scalar.
    """

    def __init__(
        self,
        fft_sizes: tuple[int, ...] = (4096, 2048, 1024, 512, 256),
        *,
        w_sc: float = 1.0,
        w_mse: float = 0.0,
        w_log_mag: float = 1.0,
        w_sum: float = 1.0,
        w_diff: float = 1.0,
        pre_emphasis: tuple[str, ...] = (),
        eps: float = 1e-4,
        sample_rate: int = SAMPLE_RATE,
        reduction: str = "mean",
    ):
        super().__init__()
        self.reduction = reduction
        self.pre = PreEmphasis(pre_emphasis, sample_rate) if pre_emphasis else None
        self.losses = nn.ModuleList(
            StereoSTFTLoss(
                w_sc=w_sc,
                w_mse=w_mse,
                w_log_mag=w_log_mag,
                w_sum=w_sum,
                w_diff=w_diff,
                fft_size=n,
                hop_size=n // 4,
                pre_emphasis=(),
                eps=eps,
                sample_rate=sample_rate,
                reduction=reduction,
            )
            for n in fft_sizes
        )
        self.fft_sizes = tuple(fft_sizes)

    def components(self, pred: torch.Tensor, target: torch.Tensor) -> dict[str, torch.Tensor]:
        """Per-term averages over resolutions, per-resolution totals (``total_4096``...) and ``total``."""
        pred, target = self._prepare(pred, target)
        with torch.autocast(device_type=pred.device.type, enabled=False):
            if self.pre is not None:
                pred, target = self.pre(pred), self.pre(target)
            out: dict[str, torch.Tensor] = {}
            k = len(self.losses)
            for n, loss in zip(self.fft_sizes, self.losses):
                comps = loss.components(pred, target)
                for name, value in comps.items():
                    key = f"total_{n}" if name == "total" else name
                    out[key] = out.get(key, 0) + (value if name == "total" else value / k)
            out["total"] = sum(out[f"total_{n}"] for n in self.fft_sizes) / k
        return out


# ------------------------------------------------------------------------------------- class balance
#: STFT of the per-band class-contribution estimate: 4096-point Hann, hop 1024 (75 % overlap), ~10.8 Hz bins.
CONTRIB_N_FFT = 4096
#: Band edges of the contribution estimate: 1/3-octave from 50 Hz to 16 kHz, plus one band below and one above.
CONTRIB_BAND_EDGES_HZ = (0.0, *(50.0 * 2.0 ** (k / 3.0) for k in range(26)), SAMPLE_RATE / 2.0 + 1.0)
#: Tikhonov term of the per-band least squares, relative to the band's largest stem energy: a class that is
#: silent in a band gets gain 0 there instead of a singular system.
CONTRIB_RIDGE = 1e-6


def contribution_bands(n_fft: int = CONTRIB_N_FFT, sample_rate: int = SAMPLE_RATE) -> torch.Tensor:
    """(n_fft // 2 + 1,) band index of each rfft bin in :data:`CONTRIB_BAND_EDGES_HZ` (bands may be empty)."""
    freqs = np.fft.rfftfreq(n_fft, 1.0 / sample_rate)
    edges = np.asarray(CONTRIB_BAND_EDGES_HZ)
    return torch.from_numpy(np.clip(np.searchsorted(edges, freqs, side="right") - 1, 0, len(edges) - 2))


def band_ls_gains(mix_spec: torch.Tensor, stem_specs: torch.Tensor, bands: torch.Tensor) -> torch.Tensor:
    """Per-band complex least-squares gains of the stems in a mix: ``MIX ≈ Σ_c G_c · STEM_c`` in every band.

    The one definition of fxmix's class-contribution estimate, used by the evaluation (level balance of a
    method's mix, :func:`fxmix.training.evaluate.estimate_contributions`) and by :class:`ClassBalanceLoss`.
    One gain per class and band is fitted over all bins of the band, all frames and both channels; a mixing
    network EQs as well as gains each stem, and per-band gains follow any smooth EQ.

    Args:
        mix_spec: (..., X, F, T) complex STFT of the mix (X channels).
        stem_specs: (..., C, X, F, T) complex STFTs of the C stems the mix was made from.
        bands: (F,) long band index per bin (:func:`contribution_bands`).

    Returns:
        (..., C, n_bands) complex gains (0 where a class has no energy in a band).
    """
    n_bands = int(bands.max()) + 1
    onehot = F.one_hot(bands.to(mix_spec.device), n_bands).to(stem_specs.dtype)  # (F, K)
    conj = stem_specs.conj()
    gram = torch.einsum("...cxft,...dxft->...cdf", conj, stem_specs) @ onehot  # (..., C, C, K)
    rhs = torch.einsum("...cxft,...xft->...cf", conj, mix_spec) @ onehot  # (..., C, K)
    gram = gram.movedim(-1, -3)  # (..., K, C, C)
    diag = torch.diagonal(gram, dim1=-2, dim2=-1).real
    ridge = CONTRIB_RIDGE * diag.amax(dim=-1, keepdim=True) + 1e-20
    eye = torch.eye(gram.shape[-1], dtype=gram.dtype, device=gram.device)
    gains = torch.linalg.solve(gram + (ridge[..., None] * eye), rhs.movedim(-1, -2)[..., None])[..., 0]
    return gains.movedim(-2, -1)  # (..., C, K)


def k_weighting_power(n_fft: int = CONTRIB_N_FFT, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """(n_fft // 2 + 1,) power response of the BS.1770 K-weighting filter (the loudness meter's) on rfft bins."""
    _, h = scipy.signal.sosfreqz(
        k_weighting_sos(sample_rate).astype(np.float64), worN=n_fft // 2 + 1, whole=False
    )
    return (np.abs(h) ** 2).astype(np.float32)


class ClassBalanceLoss(nn.Module):
    """Level-balance loss: each class's loudness relative to the mix, predicted vs target (mean |ΔLU|).

    Both mixes are explained by the same input stems with :func:`band_ls_gains` (4096-point STFT, 1/3-octave
    bands); a class's contribution energy is ``Σ_bands |G|² · K-weighted stem energy`` (BS.1770 K-weighting,
    ungated), and its balance is ``10·log10(contribution / Σ contributions)``. The multi-resolution STFT loss
    barely rewards the per-class balance (a mix with one class 3 LU low is a small spectral error), so the
    network learns it poorly from that loss alone; this term measures it the way ``fxmix eval`` does.

    Classes whose K-weighted input energy is below ``floor_db`` relative to the crop's loudest class are left
    out (a silent class has no balance).

    Shape: pred, target ``(batch, 2, samples)``, stems ``(batch, C, 2, samples)`` -> scalar (LU).
    """

    def __init__(self, n_fft: int = CONTRIB_N_FFT, sample_rate: int = SAMPLE_RATE, floor_db: float = -40.0):
        super().__init__()
        self.n_fft, self.hop = int(n_fft), int(n_fft) // 4
        self.floor = 10.0 ** (floor_db / 10.0)
        self.register_buffer("window", torch.hann_window(self.n_fft), persistent=False)
        self.register_buffer("bands", contribution_bands(self.n_fft, sample_rate), persistent=False)
        self.register_buffer(
            "kw", torch.from_numpy(k_weighting_power(self.n_fft, sample_rate)), persistent=False
        )

    def _stft(self, x: torch.Tensor) -> torch.Tensor:
        lead = x.shape[:-1]
        s = torch.stft(
            x.reshape(-1, x.shape[-1]), self.n_fft, self.hop, window=self.window, return_complex=True
        )
        return s.reshape(*lead, *s.shape[-2:])

    def balance_db(self, mix_spec: torch.Tensor, stem_specs: torch.Tensor, stem_energy: torch.Tensor):
        gains = band_ls_gains(mix_spec, stem_specs, self.bands)  # (B, C, K)
        contrib = gains.real.square() + gains.imag.square()
        contrib = contrib * stem_energy  # (B, C, K)
        e = contrib.sum(-1) + 1e-12
        return 10.0 * torch.log10(e / e.sum(-1, keepdim=True))

    def forward(self, pred: torch.Tensor, target: torch.Tensor, stems: torch.Tensor) -> torch.Tensor:
        with torch.autocast(device_type=pred.device.type, enabled=False):
            pred, target, stems = pred.float(), target.float(), stems.float()
            s_spec = self._stft(stems)  # (B, C, 2, F, T)
            power = (s_spec.real.square() + s_spec.imag.square()).sum(dim=(-3, -1)) * self.kw  # (B, C, F)
            onehot = F.one_hot(self.bands, int(self.bands.max()) + 1).to(power.dtype)
            stem_energy = power @ onehot  # (B, C, K)
            total = stem_energy.sum(-1)  # (B, C)
            active = total > self.floor * total.amax(dim=-1, keepdim=True)
            bal_p = self.balance_db(self._stft(pred), s_spec, stem_energy)
            with torch.no_grad():
                bal_t = self.balance_db(self._stft(target), s_spec, stem_energy)
            err = (bal_p - bal_t).abs() * active
            return err.sum() / active.sum().clamp_min(1)


LOSSES = {"La": loss_a, "Lb": loss_b, "mrstft": MultiResolutionSumDiffLoss}


def get_loss(name: str, **kwargs) -> nn.Module:
    """Loss by name: ``"La"``, ``"Lb"`` or ``"mrstft"``; kwargs go to the constructor."""
    if name not in LOSSES:
        raise ConfigError(f"unknown loss {name!r}; choose one of {sorted(LOSSES)}")
    return LOSSES[name](**kwargs)

"""Console mixer network: from effect-normalized tracks (any number, any order, each with its class) to the
per-track decisions of the differentiable console (:mod:`fxmix.model.console`) and the master gain.

    feats = track_features(tracks)              # (batch, tracks, 2, n) -> (batch, tracks, FEATURES, frames)
    u, master_u = net(feats, class_idx, mask)   # (batch, tracks, UNIT_SIZE), (batch,)
    params = ConsoleParams.from_unit(u, classes, master_u=master_u)

Per track: log band energies of mid and side on the profile's 1/6-octave grid (:func:`track_features`; a
mixer configured with ``colour`` also reads what the normalization changed per band, :func:`colour_of`, since
the normalized features no longer carry the recording's own level and timbre), two 1-D convolutions over
time, mean and standard deviation over time (so any length works), a linear projection plus a class embedding. Across tracks: a small pre-norm Transformer encoder *without* positional
encoding and with padding tracks masked out of the keys, so permuting the tracks permutes the outputs
(permutation-equivariant, as DMC and Diff-MST). The master gain reads the masked mean of the track states
(permutation-invariant). Both heads start at zero, so an untrained network is the neutral console.

Attention is written out (no fused kernel) so the ONNX export is one plain graph with dynamic batch, track
and frame axes.

streaming-safe: no (the features are pooled over the whole analysis window).
"""

from __future__ import annotations

import math

import numpy as np
import torch
from fxmix.dsp.bands import band_centers_hz, band_weights
from fxmix.dsp.constants import CLASSES
from torch import nn

from .config import MixerConfig
from .console import RANGES, UNIT_LAYOUT, UNIT_SIZE, eq_band_centers_hz
from .console.designs import eq_to_grid_matrix, k_band_weights

#: log floor of the band powers (power 1e-10 = -100 dB)
POWER_FLOOR = 1e-10
#: bound of a colour band (dB / 20): 60 dB of change by the normalization either way
COLOUR_MAX = 3.0


def band_power(tracks: torch.Tensor, config: MixerConfig) -> torch.Tensor:
    """Power of mid and side per 1/6-octave band and STFT frame: (..., 2, n) -> (..., 2, bands, frames).

    Hann STFT of ``config.n_fft`` / ``config.hop``, bin powers to the grid by
    :func:`fxmix.dsp.bands.band_weights`; mid = (L + R) / 2 and side = (L - R) / 2 keep the stereo image.
    """
    if tracks.shape[-2] != 2:
        raise ValueError(f"tracks must be (..., 2, samples), got {tuple(tracks.shape)}")
    lead = tracks.shape[:-2]
    x = tracks.reshape(-1, 2, tracks.shape[-1]).to(torch.float32)
    ms = torch.stack([(x[:, 0] + x[:, 1]) * 0.5, (x[:, 0] - x[:, 1]) * 0.5], dim=1).reshape(-1, x.shape[-1])
    window = torch.hann_window(config.n_fft, dtype=torch.float32, device=x.device)
    spec = torch.stft(ms, config.n_fft, config.hop, window=window, center=True, return_complex=True)
    w = torch.tensor(np.array(band_weights(config.n_fft, config.sample_rate)), dtype=torch.float32, device=x.device)
    bands = torch.einsum("kf,bft->bkt", w, spec.real.square() + spec.imag.square())
    return bands.reshape(*lead, 2, w.shape[0], bands.shape[-1])


def track_features(tracks: torch.Tensor, config: MixerConfig, colour: torch.Tensor | None = None) -> torch.Tensor:
    """Log band energies (dB / 20) of mid and side per STFT frame (:func:`band_power`), and with
    ``config.colour`` the track's colour (:func:`colour_of`, zeros where None: the normalization changed nothing)
    repeated on every frame: (..., 2, n) -> (..., :func:`feature_size`, frames)."""
    p = band_power(tracks, config)
    feats = (torch.log10(p + POWER_FLOOR) * 0.5).flatten(-3, -2)  # dB / 20, mid bands then side bands
    return with_colour(feats, colour, config)


def with_colour(feats: torch.Tensor, colour: torch.Tensor | None, config: MixerConfig) -> torch.Tensor:
    """``feats`` (..., 2 * bands, frames) with ``colour`` (..., bands) appended on every frame where
    ``config.colour`` (zeros where ``colour`` is None); ``feats`` unchanged otherwise."""
    if not config.colour:
        return feats
    if colour is None:
        colour = feats.new_zeros((*feats.shape[:-2], len(band_centers_hz())))
    colour = colour.to(feats)[..., None].expand(*colour.shape, feats.shape[-1])
    return torch.cat([feats, colour], dim=-2)


def colour_of(dry: torch.Tensor, normalized: torch.Tensor, config: MixerConfig) -> torch.Tensor:
    """What the effect normalization changed per band, as the network reads it (dB / 20, clipped to
    +-:data:`COLOUR_MAX`): the dry track's long-term band power (mid + side, mean over frames) over the
    normalized track's: (..., 2, n) twice -> (..., bands). The streaming analysis has the same figure as
    minus its normalization curve and gain over 20."""
    def level(x):
        return torch.log10(band_power(x, config).sum(dim=-3).mean(dim=-1) + POWER_FLOOR) * 0.5

    return (level(dry) - level(normalized)).clamp(-COLOUR_MAX, COLOUR_MAX)


def colour_to_eq_matrix() -> np.ndarray:
    """(bands, EQ bands) weights: each console EQ band (an octave of the grid) the mean of the grid bands within
    half an octave of it."""
    f, eq = np.log2(band_centers_hz()), np.log2(eq_band_centers_hz())
    near = (np.abs(f[:, None] - eq[None, :]) <= 0.5 + 1e-9).astype(np.float32)
    return near / near.sum(axis=0, keepdims=True)


def unit_slice(field: str) -> slice:
    """Where one console parameter (a name of UNIT_LAYOUT) sits in a track's unit vector."""
    start = 0
    for name, width in UNIT_LAYOUT:
        if name == field:
            return slice(start, start + width)
        start += width
    raise ValueError(f"the console has no parameter {field!r}; its parameters: {[n for n, _ in UNIT_LAYOUT]}")


def feature_size(config: MixerConfig | None = None) -> int:
    """Channels of :func:`track_features`: mid and side bands of the grid (+ the colour's bands)."""
    bands = len(band_centers_hz())
    return (3 if config is not None and config.colour else 2) * bands


def class_indices(classes) -> torch.Tensor:
    """(batch, tracks) int64 indices into :data:`fxmix.dsp.constants.CLASSES` for nested lists of names."""
    try:
        return torch.tensor([[CLASSES.index(c) for c in row] for row in classes], dtype=torch.int64)
    except ValueError as exc:
        raise ValueError(f"track class not one of {CLASSES}: {exc}") from None


class _Attention(nn.Module):
    """Multi-head self-attention over the track axis; masked keys (padding tracks) get no weight."""

    def __init__(self, d: int, heads: int):
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(d, 3 * d)
        self.out = nn.Linear(d, d)

    def forward(self, x: torch.Tensor, key_bias: torch.Tensor) -> torch.Tensor:
        b, n, d = x.shape
        q, k, v = self.qkv(x).reshape(b, n, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        scores = q @ k.transpose(-1, -2) / math.sqrt(d // self.heads) + key_bias[:, None, None, :]
        y = torch.softmax(scores, dim=-1) @ v
        return self.out(y.transpose(1, 2).reshape(b, n, d))


class _Block(nn.Module):
    """Pre-norm Transformer encoder layer (attention + GELU feed-forward), no positional encoding."""

    def __init__(self, d: int, heads: int, ff: int, dropout: float):
        super().__init__()
        self.norm1, self.norm2 = nn.LayerNorm(d), nn.LayerNorm(d)
        self.attn = _Attention(d, heads)
        self.ff = nn.Sequential(nn.Linear(d, ff), nn.GELU(), nn.Dropout(dropout), nn.Linear(ff, d))
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, key_bias: torch.Tensor) -> torch.Tensor:
        x = x + self.drop(self.attn(self.norm1(x), key_bias))
        return x + self.drop(self.ff(self.norm2(x)))


class ConsoleMixer(nn.Module):
    """Tracks' features + classes -> console units per track and a master unit (see the module docstring).

    Args:
        config: :class:`fxmix.model.config.MixerConfig`.

    Shape: ``features`` (batch, tracks, 2 * bands, frames), ``class_idx`` (batch, tracks) int64,
    ``mask`` (batch, tracks) float (1 = a track, 0 = padding) -> ``u`` (batch, tracks, UNIT_SIZE),
    ``master_u`` (batch,).
    """

    config_class = MixerConfig

    def __init__(self, config: MixerConfig | None = None):
        super().__init__()
        self.config = config = config or MixerConfig()
        c, d = config.conv_channels, config.d_model
        self.sample_rate = config.sample_rate
        self.n_stems = config.n_stems
        self.latency_samples = 0
        self.receptive_field_samples = config.n_fft
        self.encoder = nn.Sequential(
            nn.Conv1d(feature_size(config), c, 3, padding=1),
            nn.GELU(),
            nn.Conv1d(c, c, 3, padding=2, dilation=2),
            nn.GELU(),
        )
        self.project = nn.Linear(2 * c, d)
        self.class_embedding = nn.Embedding(config.n_stems, d)
        self.blocks = nn.ModuleList(
            _Block(d, config.n_heads, config.ff_size, config.dropout) for _ in range(config.n_layers)
        )
        self.norm = nn.LayerNorm(d)
        self.track_head = nn.Linear(d, UNIT_SIZE)
        self.master_head = nn.Sequential(nn.Linear(d, config.master_hidden), nn.GELU(),
                                         nn.Linear(config.master_hidden, 1))
        for head in (self.track_head, self.master_head[-1]):  # start at the neutral console
            nn.init.zeros_(head.weight)
            nn.init.zeros_(head.bias)
        # not a parameter: a fixed map, so saved mixers load as they were saved
        self.register_buffer("colour_to_eq", torch.from_numpy(colour_to_eq_matrix()), persistent=False)
        self.register_buffer("eq_to_grid", torch.from_numpy(eq_to_grid_matrix()), persistent=False)
        self.register_buffer("k_band", torch.from_numpy(k_band_weights(config.sample_rate)), persistent=False)

    def restoring_units(self, features: torch.Tensor) -> torch.Tensor:
        """The EQ units (batch, tracks, EQ bands) of the curve that gives each track back its own timbre: its
        colour (the last bands of the features, mean over frames) on the EQ's octaves, shifted so that it keeps
        the normalized track's K-weighted level (the fader sets the level, and its training target is the
        normalized track's), inside the EQ's range."""
        bands = self.colour_to_eq.shape[0]
        colour_db = features[:, :, -bands:, :].mean(dim=-1) * 20.0
        eq = colour_db @ self.colour_to_eq
        eq = eq - eq.mean(dim=-1, keepdim=True)
        power = (10.0 ** (2.0 * features[:, :, : 2 * bands, :])).mean(dim=-1)
        weight = (power[:, :, :bands] + power[:, :, bands:]) * self.k_band  # K-weighted power per grid band
        gain = 10.0 ** ((eq @ self.eq_to_grid) / 10.0)
        shift = 10.0 * torch.log10(((weight * gain).sum(dim=-1) + 1e-12) / (weight.sum(dim=-1) + 1e-12))
        lo, hi, neutral = RANGES["eq_db"]
        margin = 0.02 * (hi - lo)
        frac = ((eq - shift[..., None]).clamp(lo + margin, hi - margin) - lo) / (hi - lo)
        f0 = (neutral - lo) / (hi - lo)
        return torch.log(frac / (1.0 - frac)) - math.log(f0 / (1.0 - f0))

    def encode_tracks(self, features: torch.Tensor) -> torch.Tensor:
        """Per-track summary (batch, tracks, 2 * conv_channels): mean and std over time of the conv stack."""
        b, n, f, t = features.shape
        h = self.encoder(features.reshape(b * n, f, t))
        stats = torch.cat([h.mean(dim=-1), h.std(dim=-1, unbiased=False)], dim=-1)
        return stats.reshape(b, n, -1)

    def forward(
        self, features: torch.Tensor, class_idx: torch.Tensor, mask: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        mask = mask.to(features.dtype)
        x = self.project(self.encode_tracks(features)) + self.class_embedding(class_idx)
        key_bias = (1.0 - mask) * -1e9
        for block in self.blocks:
            x = block(x, key_bias)
        x = self.norm(x)
        pooled = (x * mask[..., None]).sum(dim=1) / mask.sum(dim=1, keepdim=True).clamp_min(1.0)
        u = self.track_head(x)
        if self.config.colour_eq:
            eq = unit_slice("eq_db")
            u = torch.cat([u[..., : eq.start], u[..., eq] + self.restoring_units(features), u[..., eq.stop :]], dim=-1)
        return u, self.master_head(pooled)[:, 0]


def predict_units(
    net: ConsoleMixer, tracks: torch.Tensor, classes, mask: torch.Tensor | None = None,
    colour: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``net`` on audio: (batch, tracks, 2, n) + nested class names (+ the tracks' colour, (batch, tracks,
    bands), for a network that reads it) -> (u, master_u)."""
    feats = track_features(tracks, net.config, colour)
    if mask is None:
        mask = torch.ones(tracks.shape[:2], dtype=feats.dtype)
    return net(feats, class_indices(classes).to(feats.device), mask.to(feats.device))


def onnx_inputs(
    config: MixerConfig | None = None, batch: int = 1, tracks: int = 3, frames: int = 20
) -> tuple[torch.Tensor, ...]:
    """Example inputs for tracing/exporting: features, class indices, mask."""
    rng = np.random.default_rng(0)
    feats = torch.tensor(rng.normal(-3.0, 1.0, (batch, tracks, feature_size(config), frames)), dtype=torch.float32)
    idx = torch.tensor(rng.integers(0, len(CLASSES), (batch, tracks)), dtype=torch.int64)
    return feats, idx, torch.ones(batch, tracks)

"""Offline mixing networks: the paper network ("paper") and the Wave-U-Net baseline ("wave_unet").

Networks map tensors to tensors: input ``(batch, n_stems, 2, samples)`` normalized stems in
fxmix.dsp.constants.CLASSES order, output ``(batch, 2, samples)`` stereo mix. They never see a whole song;
long inputs, padding to ``length_multiple`` and cross-fades are done by :mod:`fxmix.model.apply`.

Each class exposes ``config``, ``sample_rate``, ``n_stems``, ``latency_samples`` (0: output sample k is
aligned with input sample k), ``receptive_field_samples`` (span of the local, convolutional dependency;
used as the chunking guard) and ``length_multiple`` (input length must be a multiple of it).
"""

from __future__ import annotations

import contextlib
import math

import torch
import torch.nn.functional as F
from torch import nn

from .config import PaperNetConfig, WaveUNetConfig

#: Longest sequence given to cuDNN's LSTM; a longer one runs on ATen's own CUDA kernel (slower, any length).
#: Chunked inference (:mod:`fxmix.model.apply`) stays far below it: a 10-s chunk is 6,891 steps at pool 64.
CUDNN_MAX_STEPS = 65535


@contextlib.contextmanager
def rnn_kernel(x: torch.Tensor):
    """Run the enclosed RNN over ``x`` (batch, steps, features) with a kernel that suits it.

    CPU: oneDNN's LSTM is 4-5x faster than ATen's native one on one thread, and 3-10x slower with two or
    more (its short per-step parallel regions); both give the same result up to float rounding. Training
    (gradients on) keeps the native kernel.
    CUDA: cuDNN up to :data:`CUDNN_MAX_STEPS` steps, ATen's kernel beyond.
    """
    if x.is_cuda:
        with torch.backends.cudnn.flags(
            enabled=torch.backends.cudnn.enabled and x.shape[1] <= CUDNN_MAX_STEPS
        ):
            yield
        return
    prev = torch.backends.mkldnn.enabled
    torch.backends.mkldnn.enabled = prev and torch.get_num_threads() == 1 and not torch.is_grad_enabled()
    try:
        yield
    finally:
        torch.backends.mkldnn.enabled = prev


class _NetBase(nn.Module):
    config_class: type = PaperNetConfig

    @property
    def sample_rate(self) -> int:
        return self.config.sample_rate

    @property
    def n_stems(self) -> int:
        return self.config.n_stems

    @property
    def n_channels(self) -> int:
        return self.config.n_channels

    #: offline networks are aligned (no delay to compensate)
    latency_samples: int = 0


class StemFaders(nn.Module):
    """One learned gain per stem class, applied to the input stems: the network's "faders".

    Effect normalization sets every class to its dataset-average loudness; how loud each class sits in a mix
    relative to the others is then left to the network. A shared-latent network can only learn that balance
    through its masks; explicit per-class gains give it a direct, cheap path (4 parameters) that training
    moves quickly. Parameterised as log10 of the amplitude gain (1 unit = 20 dB), so Adam's step size of
    ~lr per step moves a fader by ~20·lr dB (0.06 dB at lr 3e-3).

    Shape: ``(batch, n_stems, channels, samples)`` in and out. streaming-safe: yes (stateless, per sample).
    """

    def __init__(self, n_stems: int):
        super().__init__()
        self.log10_gain = nn.Parameter(torch.zeros(n_stems))

    def gains_db(self) -> torch.Tensor:
        """The current fader gains in dB, shape (n_stems,)."""
        return 20.0 * self.log10_gain.detach()

    def forward(self, stems: torch.Tensor) -> torch.Tensor:
        return stems * torch.pow(10.0, self.log10_gain).view(1, -1, 1, 1)


class _TemporalBlock(nn.Module):
    """Conv-TasNet block: 1x1 -> PReLU -> gLN -> dilated depthwise -> PReLU -> gLN -> (residual, skip)."""

    def __init__(self, in_ch: int, hidden: int, skip: int, kernel: int, dilation: int, use_residual: bool):
        super().__init__()
        self.in_conv = nn.Conv1d(in_ch, hidden, 1)
        self.act1 = nn.PReLU()
        self.norm1 = nn.GroupNorm(1, hidden, eps=1e-8)
        self.dconv = nn.Conv1d(
            hidden, hidden, kernel, padding=dilation * (kernel - 1) // 2, dilation=dilation, groups=hidden
        )
        self.act2 = nn.PReLU()
        self.norm2 = nn.GroupNorm(1, hidden, eps=1e-8)
        self.skip_conv = nn.Conv1d(hidden, skip, 1)
        # The reference keeps a residual conv in the last block although its output is unused; we keep it
        # (the published parameter count includes it) but freeze it so DDP and optimizers ignore it.
        self.res_conv = nn.Conv1d(hidden, in_ch, 1)
        self.use_residual = use_residual
        if not use_residual:
            self.res_conv.requires_grad_(False)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        y = self.norm1(self.act1(self.in_conv(x)))
        y = self.norm2(self.act2(self.dconv(y)))
        skip = self.skip_conv(y)
        if self.use_residual:
            return x + self.res_conv(y), skip
        return x, skip


class PaperNet(_NetBase):
    """Mixing network of Martínez-Ramírez et al., ISMIR 2022 ("Ours", reference ``CAFX_TDCN_MIX``).

    Adaptive front-end (full-rate conv + |.| + depthwise conv + Softplus + max-pool) -> Conv-TasNet TCN on
    the pooled latent -> BLSTM -> Softplus mask (nearest-upsampled) on the front-end output ->
    squeeze-excitation -> decoder with the encoder's tied weights -> sum of the per-stem outputs -> tanh.
    Optional learned per-class input faders (``config.stem_faders``, an fxmix addition).
    With the published forward fix: the mask is the BLSTM output (the TCN feeds the BLSTM).

    Args:
        config: :class:`PaperNetConfig`; the defaults give 2,752,817 parameters.

    Shape:
        input ``(batch, n_stems, n_channels, samples)``, samples a multiple of ``config.pool``;
        output ``(batch, n_channels, samples)``.

    streaming-safe: no (global GroupNorm, global SE average and a BLSTM over the whole input).
    """

    config_class = PaperNetConfig

    def __init__(self, config: PaperNetConfig | None = None):
        super().__init__()
        cfg = config or PaperNetConfig()
        self.config = cfg
        n_in = cfg.n_stems * cfg.n_channels
        n = cfg.n_filters
        # 'same' convs: symmetric padding of k//2 gives one extra output sample at the front for even k;
        # slicing it off (a view) equals the reference's (k-1)//2 left / k//2 right padding without a copy
        self.encoder = nn.Conv1d(n_in, n, cfg.frontend_kernel, padding=cfg.frontend_kernel // 2, bias=False)
        self.adaptive = nn.Conv1d(
            n, n, cfg.adaptive_kernel, padding=cfg.adaptive_kernel // 2, groups=n, bias=False
        )
        self.enc_pad = ((cfg.frontend_kernel - 1) // 2, cfg.frontend_kernel // 2)
        self.in_norm = nn.GroupNorm(1, n, eps=1e-8)
        self.bottleneck = nn.Conv1d(n, cfg.bottleneck, 1)
        n_total = cfg.n_blocks * cfg.n_repeats
        self.tcn = nn.ModuleList(
            _TemporalBlock(
                cfg.bottleneck,
                cfg.hidden,
                cfg.skip,
                cfg.tcn_kernel,
                2 ** (i % cfg.n_blocks),
                use_residual=i < n_total - 1,
            )
            for i in range(n_total)
        )
        self.out_act = nn.PReLU()
        self.out_conv = nn.Conv1d(cfg.skip, n, 1)
        self.lstm = nn.LSTM(
            n,
            cfg.lstm_hidden,
            num_layers=cfg.lstm_layers,
            batch_first=True,
            bidirectional=True,
            dropout=cfg.lstm_dropout if cfg.lstm_layers > 1 else 0.0,
        )
        self.lstm_proj = nn.Linear(2 * cfg.lstm_hidden, n) if 2 * cfg.lstm_hidden != n else None
        self.se = nn.Sequential(
            nn.Linear(n, n * cfg.se_expansion), nn.ReLU(), nn.Linear(n * cfg.se_expansion, n), nn.Sigmoid()
        )
        self.faders = StemFaders(cfg.n_stems) if cfg.stem_faders else None
        self._chrono_init()

    def _chrono_init(self) -> None:
        """Chrono LSTM init (Tallec & Ollivier 2018): forget bias log U(1, T-1), input bias its negative."""
        h = self.config.lstm_hidden
        with torch.no_grad():
            for name, p in self.lstm.named_parameters():
                if name.startswith("bias_ih"):
                    forget = torch.log(torch.empty(h).uniform_(1.0, self.config.chrono_max_steps - 1))
                    p.zero_()
                    p[h : 2 * h] = forget
                    p[:h] = -forget
                elif name.startswith("bias_hh"):
                    p.zero_()

    @property
    def length_multiple(self) -> int:
        return self.config.pool

    @property
    def receptive_field_samples(self) -> int:
        """Span of the convolutional dependency (TCN + front-end + decoder), ~0.74 s for the defaults.

        The global GroupNorms, the SE average and the BLSTM additionally make every output sample depend
        weakly on the whole input; :func:`fxmix.model.apply.chunking_error` measures that effect.
        """
        c = self.config
        tcn_frames = 1 + c.n_repeats * (c.tcn_kernel - 1) * (2**c.n_blocks - 1)
        return tcn_frames * c.pool + (c.pool - 1) + (c.adaptive_kernel - 1) + 2 * (c.frontend_kernel - 1)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Full-rate encoder: (batch, stems*channels, samples) -> (batch, n_filters, samples)."""
        n = x.shape[-1]
        y = self.encoder(x)
        return y.narrow(-1, y.shape[-1] - n, n)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Tied decoder (adjoint of :meth:`encode`): (batch, n_filters, samples) -> (batch, stems*ch, samples)."""
        n = z.shape[-1]
        return F.conv_transpose1d(z, self.encoder.weight, padding=self.enc_pad[0])[..., :n]

    def frame_gain(self, z: torch.Tensor, p_abs_frames: torch.Tensor) -> torch.Tensor:
        """The frame-rate part: pooled front-end ``z`` -> TCN -> BLSTM mask -> squeeze-excitation -> gain.

        Args:
            z: ``softplus(max_pool(adaptive(|encode(x)|)))``, ``(batch, n_filters, frames)``.
            p_abs_frames: per-frame means of ``|encode(x)|``, same shape (the SE average uses them).

        Returns:
            The per-frame gain on the front-end output, ``(batch, n_filters, frames)``, >= 0.
        """
        cfg = self.config
        z = self.bottleneck(self.in_norm(z))
        skip_sum = torch.zeros_like(z[:, : cfg.skip])
        for block in self.tcn:
            z, s = block(z)
            skip_sum = skip_sum + s
        m = F.softplus(self.out_conv(self.out_act(skip_sum)))
        m = m.transpose(1, 2)
        with rnn_kernel(m):
            h, _ = self.lstm(m)
        if self.lstm_proj is not None:
            h = self.lstm_proj(h)
        mask = F.softplus(h).transpose(1, 2)  # (batch, n_filters, frames), >= 0
        # SE on y = p * mask: mean_t |y| = mean_frames(mask * mean_frame |p|) because mask >= 0 is per-frame
        scale = self.se((mask * p_abs_frames).mean(dim=-1))
        return mask * scale.unsqueeze(-1)

    def forward(self, stems: torch.Tensor) -> torch.Tensor:
        cfg = self.config
        batch = stems.shape[0]
        if self.faders is not None:
            stems = self.faders(stems)
        x = stems.reshape(batch, cfg.n_stems * cfg.n_channels, -1)
        p = self.encode(x)
        p_abs = p.abs()
        # softplus is monotonic, so max-pooling before it equals the reference's softplus -> max-pool
        a = self.adaptive(p_abs)
        a = a.narrow(-1, a.shape[-1] - p_abs.shape[-1], p_abs.shape[-1])
        z = F.softplus(F.max_pool1d(a, cfg.pool))
        del a
        # per-frame means of |p|, for the SE average (the mask is constant over each frame)
        p_abs_frames = F.avg_pool1d(p_abs, cfg.pool)
        del p_abs
        gain = self.frame_gain(z, p_abs_frames)
        # nearest upsampling by `pool` (expand + reshape: exports with a dynamic length)
        gain = gain.unsqueeze(-1).expand(-1, -1, -1, cfg.pool).reshape(batch, cfg.n_filters, -1)
        out = self.decode(p * gain).reshape(batch, cfg.n_stems, cfg.n_channels, -1)
        return torch.tanh(out.sum(dim=1))


def _sinc_filter(kernel: int, cutoff: float) -> torch.Tensor:
    """Blackman-windowed sinc low-pass (Wave-U-Net's fixed resampling filter), unit DC gain."""
    m = kernel - 1
    i = torch.arange(kernel, dtype=torch.float64)
    t = i - m // 2
    window = 0.42 - 0.5 * torch.cos(2 * math.pi * i / m) + 0.08 * torch.cos(4 * math.pi * i / m)
    safe_t = torch.where(t == 0, torch.ones_like(t), t)
    h = torch.where(
        t == 0, torch.full_like(t, 2 * math.pi * cutoff), torch.sin(2 * math.pi * cutoff * t) / safe_t
    )
    h = h * window
    return (h / h.sum()).float()


class _ConvGN(nn.Module):
    """Valid conv + GroupNorm + ReLU (Wave-U-Net "gn" conv layer)."""

    def __init__(self, c_in: int, c_out: int, kernel: int, group_channels: int):
        super().__init__()
        self.conv = nn.Conv1d(c_in, c_out, kernel)
        self.norm = nn.GroupNorm(max(1, c_out // group_channels), c_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.norm(self.conv(x)))


class _Resample(nn.Module):
    """Fixed depthwise windowed-sinc low-pass (cutoff 0.5/stride cycles/sample) with reflect padding.

    At stride 1 (the reference setting) the filter is a unit impulse, so the convolution is skipped.
    The taps are a frozen parameter, as in the reference (they count in its 2,477,162 parameters).
    """

    def __init__(self, channels: int, kernel: int, stride: int):
        super().__init__()
        taps = _sinc_filter(kernel, 0.5 / stride).reshape(1, 1, kernel).repeat(channels, 1, 1)
        self.filter = nn.Parameter(taps, requires_grad=False)
        self.channels = channels
        self.pad = (kernel - 1) // 2
        self.identity = stride == 1

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.identity:
            return x
        return F.conv1d(F.pad(x, (self.pad, self.pad), mode="reflect"), self.filter, groups=self.channels)


def _centre_crop(x: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return x.narrow(-1, (x.shape[-1] - target.shape[-1]) // 2, target.shape[-1])


class WaveUNet(_NetBase):
    """Wave-U-Net baseline (Stoller et al. 2018, as configured in Martínez-Ramírez et al. 2021/2022).

    Valid convolutions throughout; the input is zero-padded by ``context_samples`` on each side inside
    :meth:`forward`, so the output has the input's length and is aligned with it (fixes the reference's
    uncompensated 34-sample shift). Output clamped to [-1, 1] in eval mode, like the reference.

    Args:
        config: :class:`WaveUNetConfig`; the defaults give 2,477,162 parameters.

    Shape:
        input ``(batch, n_stems, n_channels, samples)``; output ``(batch, n_channels, samples)``.

    streaming-safe: no (GroupNorm statistics over the whole input).
    """

    config_class = WaveUNetConfig
    length_multiple = 1

    def __init__(self, config: WaveUNetConfig | None = None):
        super().__init__()
        cfg = config or WaveUNetConfig()
        self.config = cfg
        ch = [cfg.features_root * 2**i for i in range(cfg.n_levels)]
        k, g = cfg.kernel, cfg.group_channels
        self.down = nn.ModuleList()
        for i in range(cfg.n_levels - 1):
            c_in = cfg.n_stems * cfg.n_channels if i == 0 else ch[i]
            pre = [_ConvGN(c_in, ch[i], k, g)] + [_ConvGN(ch[i], ch[i], k, g) for _ in range(cfg.depth - 1)]
            post = [_ConvGN(ch[i], ch[i + 1], k, g)] + [
                _ConvGN(ch[i + 1], ch[i + 1], k, g) for _ in range(cfg.depth - 1)
            ]
            self.down.append(
                nn.ModuleDict(
                    {
                        "pre": nn.Sequential(*pre),
                        "post": nn.Sequential(*post),
                        "resample": _Resample(ch[i + 1], cfg.resample_kernel, cfg.stride),
                    }
                )
            )
        self.bottleneck = nn.Sequential(*[_ConvGN(ch[-1], ch[-1], k, g) for _ in range(cfg.depth)])
        self.up = nn.ModuleList()
        for i in range(cfg.n_levels - 1):
            c_in, c_sc = ch[-1 - i], ch[-2 - i]
            pre = [_ConvGN(c_in, c_sc, k, g)] + [_ConvGN(c_sc, c_sc, k, g) for _ in range(cfg.depth - 1)]
            post = [_ConvGN(2 * c_sc, c_sc, k, g) for _ in range(cfg.depth)]
            self.up.append(
                nn.ModuleDict(
                    {
                        "resample": _Resample(c_in, cfg.resample_kernel, cfg.stride),
                        "pre": nn.Sequential(*pre),
                        "post": nn.ModuleList(post),
                    }
                )
            )
        self.output_conv = nn.Conv1d(ch[0], cfg.n_channels, 1)

    @property
    def context_samples(self) -> int:
        """Samples lost per side by the valid convolutions (34 for the reference settings)."""
        c = self.config
        n_convs = 2 * (c.n_levels - 1) * 2 * c.depth + c.depth
        return n_convs * (c.kernel - 1) // 2

    @property
    def receptive_field_samples(self) -> int:
        return 2 * self.context_samples + 1

    def forward(self, stems: torch.Tensor) -> torch.Tensor:
        cfg = self.config
        batch = stems.shape[0]
        ctx = self.context_samples
        x = F.pad(stems.reshape(batch, cfg.n_stems * cfg.n_channels, -1), (ctx, ctx))
        shortcuts = []
        for block in self.down:
            sc = block["pre"](x)
            shortcuts.append(sc)
            x = block["resample"](block["post"](sc))
        x = self.bottleneck(x)
        for i, block in enumerate(self.up):
            up = block["pre"](block["resample"](x))
            sc = shortcuts[-1 - i]
            for conv in block["post"]:
                up = conv(torch.cat([up, _centre_crop(sc, up)], dim=1))
            x = up
        out = self.output_conv(x)
        if not self.training:
            out = out.clamp(-1.0, 1.0)
        return out

"""Causal, streamable variant of the paper's mixing network (adaptive front-end + TCN + LSTM + SE + tied decoder).

The paper network (fxnorm-spec §2.1) cannot stream: symmetric TCN padding (≈ 0.37 s look-ahead), a BLSTM,
49 global GroupNorms and a squeeze-excitation that averages over the whole song (spec §8). This module keeps
its shape and replaces each non-causal part:

- conv_1 'same' (k = 64) → causal conv of ``encoder_kernel`` taps, left context cached in the state.
- conv_2 depthwise 'same' → causal depthwise conv on ``|p|`` (``envelope_kernel`` taps), cached context.
- MaxPool1d(64) → running max over frames of ``hop_samples``; the partial frame's max and the position in
  the frame are state, so *any* block size works with no audio buffering (no added latency).
- GroupNorm(1, C), global over C×T → per-frame layer norm over channels (no statistics across time).
- TCN with symmetric padding → causal dilated depthwise convs, left context cached per block.
- BLSTM → unidirectional LSTM, (h, c) carried in the state.
- nearest upsampling of the mask → sample ``t`` uses the gain of the last *completed* frame
  (``floor(t / hop) - 1``; the gains lag by at most one frame, the audio path does not). Before the first
  frame completes the gain is 0, so the first ``hop_samples`` output samples are silent.
- SE on the mean over the whole song → SE on the *cumulative* mean (all completed frames so far, shared
  over the block) of ``mask * pooled envelope`` (a frame-rate stand-in for the paper's ``|masked latent|``);
  it converges to the paper's global statistic on long inputs and needs only a sum and a count as state.
- tied transposed-conv decoder → the same tied weights as a causal transposed conv (cached tail); the
  paper's sum over the 4 decoded stems is linear and folded into the weights (2 output channels, not 8).

Latency: the tied encoder/decoder pair is an analysis/synthesis filter whose composite response
(``w * reverse(w)``) is zero-phase around a delay of ``encoder_kernel - 1`` samples, so that is the
algorithmic latency (a look-ahead of 31 samples = 0.70 ms with the default ``encoder_kernel = 32``; at most
441 samples = 10 ms is accepted). Nothing else adds latency: the frame-rate part only ever uses completed
frames, so the gains lag the audio by at most one frame (``hop_samples``) but the audio is not delayed.

``forward(stems)`` is the whole-sequence view used for training: it runs the very same code on one block
holding the whole input (plus ``latency_samples`` zeros at the end) and drops the first ``latency_samples``
output samples, so its output is time-aligned with the input. ``step(blocks, state)`` is the streaming view:
its output is the mix delayed by ``latency_samples``.
"""

from __future__ import annotations

import contextlib
import io
import json
import math
import os
import time
import warnings
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..dsp.audio import atomic_path, write_text_atomic
from ..dsp.constants import CLASSES
from ..dsp.errors import AudioInputError, ConfigError
from .config import CausalConfig
from .params import count_trainable_parameters

#: Blocks up to this length use the GEMM + skew decoder, longer ones ``conv1d`` (see ``CausalMixer._decode``).
_SKEW_DECODER_MAX_SAMPLES = 8192


def _take_window(x: Tensor, start: Tensor, length: int, dim: int) -> Tensor:
    """``x[start:start+length]`` along ``dim`` with a tensor ``start`` (shape (1,), int64).

    Written with ``index_select`` so the offset stays a graph value in traced/ONNX models.
    """
    idx = torch.arange(length, device=x.device) + start
    return x.index_select(dim, idx)


class CausalTCNBlock(nn.Module):
    """Conv-TasNet temporal block, causal: 1×1 → PReLU → LN → dilated depthwise (left context only) →
    PReLU → LN → skip 1×1 (and residual 1×1 unless ``last``).

    Works frames-last-but-one, (batch, frames, channels), so the 1×1 convs are matrix products and the layer
    norms are per frame over channels (the causal replacement of the paper's global gLN).

    Shape: x (batch, frames, bottleneck); cache (batch, (kernel-1)·dilation, hidden).
    Streaming-safe: yes (left context carried in ``cache``).
    """

    def __init__(self, bottleneck: int, hidden: int, skip: int, kernel: int, dilation: int, last: bool):
        super().__init__()
        self.kernel = kernel
        self.dilation = dilation
        self.context = (kernel - 1) * dilation
        self.conv_in = nn.Linear(bottleneck, hidden)
        self.act_in = nn.PReLU()
        self.norm_in = nn.LayerNorm(hidden)
        # depthwise dilated conv as `kernel` shifted products (faster than conv1d on a few frames)
        self.dw_weight = nn.Parameter(torch.empty(kernel, hidden).uniform_(-1.0, 1.0) / math.sqrt(kernel))
        self.dw_bias = nn.Parameter(torch.zeros(hidden))
        self.act_dw = nn.PReLU()
        self.norm_dw = nn.LayerNorm(hidden)
        self.skip_out = nn.Linear(hidden, skip)
        self.res_out = None if last else nn.Linear(hidden, bottleneck)

    def forward(self, x: Tensor, cache: Tensor, n_valid: Tensor) -> tuple[Tensor | None, Tensor, Tensor]:
        """Returns (residual or None, skip, new cache); frames ≥ ``n_valid`` are not kept in the cache."""
        n_frames = x.shape[1]
        h = self.norm_in(self.act_in(self.conv_in(x)))
        hc = torch.cat([cache, h], dim=1)
        new_cache = _take_window(hc, n_valid, self.context, dim=1)
        acc = self.dw_bias + hc[:, :n_frames] * self.dw_weight[0]
        for j in range(1, self.kernel):
            off = j * self.dilation
            acc = acc + hc[:, off : off + n_frames] * self.dw_weight[j]
        h = self.norm_dw(self.act_dw(acc))
        res = None if self.res_out is None else x + self.res_out(h)
        return res, self.skip_out(h), new_cache


class CausalMixer(nn.Module):
    """Streaming mixing network (see the module docstring for how it differs from the paper network).

    Args:
        config: Hyper-parameters; the default is ``model/configs/causal.toml``.

    Attributes:
        sample_rate: 44100 (Hz).
        n_stems: 4, in ``fxmix.dsp.constants.CLASSES`` order (vocals, drums, bass, other).
        latency_samples: Algorithmic latency (look-ahead) = ``encoder_kernel - 1``.
        receptive_field_samples: Past context of the convolutional path (front-end, TCN, mask lag and decoder);
            the LSTM state and the cumulative SE mean make the true dependency on the past unbounded.

    Shapes: ``forward``: (batch, 4, 2, T) → (batch, 2, T), aligned with the input.
    ``step``: (batch, 4, 2, n) + state → (batch, 2, n) delayed by ``latency_samples``, + new state; any n ≥ 1.

    Streaming-safe: yes (``step``); ``forward`` is the whole-sequence equivalent of stepping from
    ``init_state``.
    """

    config_class = CausalConfig

    def __init__(self, config: CausalConfig | None = None):
        super().__init__()
        cfg = config if config is not None else CausalConfig()
        self.config = cfg
        self.sample_rate = cfg.sample_rate
        self.n_stems = cfg.n_stems
        self.n_channels = cfg.n_channels
        self.hop_samples = cfg.hop_samples
        self.latency_samples = cfg.encoder_kernel - 1
        n_in = cfg.n_stems * cfg.n_channels
        n = cfg.n_latent

        # front-end (encoder weights are tied to the decoder)
        self.encoder = nn.Conv1d(n_in, n, cfg.encoder_kernel, bias=False)
        self.envelope = nn.Conv1d(n, n, cfg.envelope_kernel, groups=n, bias=False)
        # frame-rate network
        self.in_norm = nn.LayerNorm(n)  # per frame over channels (paper: global GroupNorm)
        self.bottleneck = nn.Linear(n, cfg.bottleneck)
        n_total = cfg.n_blocks * cfg.n_repeats
        self.blocks = nn.ModuleList(
            CausalTCNBlock(
                cfg.bottleneck,
                cfg.hidden,
                cfg.skip,
                cfg.tcn_kernel,
                2 ** (i % cfg.n_blocks),
                i == n_total - 1,
            )
            for i in range(n_total)
        )
        self.tcn_out = nn.Sequential(nn.PReLU(), nn.Linear(cfg.skip, n), nn.Softplus())
        self.lstm = nn.LSTM(n, n, cfg.lstm_layers, batch_first=True, dropout=cfg.lstm_dropout)
        self.se = nn.Sequential(
            nn.Linear(n, n * cfg.se_expansion), nn.ReLU(), nn.Linear(n * cfg.se_expansion, n), nn.Sigmoid()
        )
        self._chrono_init(cfg.chrono_max_frames)

        rf_frames = 1 + cfg.n_repeats * (cfg.tcn_kernel - 1) * (2**cfg.n_blocks - 1)
        self.receptive_field_samples = int(
            (cfg.encoder_kernel - 1)
            + (cfg.envelope_kernel - 1)
            + (rf_frames + 1) * cfg.hop_samples
            + (cfg.encoder_kernel - 1)
        )

    def _chrono_init(self, t_max: float) -> None:
        # forget-gate bias log U(1, t_max), input-gate bias its negative (Tallec & Ollivier 2018), as the paper
        n = self.config.n_latent
        with torch.no_grad():
            for layer in range(self.config.lstm_layers):
                b_ih = getattr(self.lstm, f"bias_ih_l{layer}")
                b_hh = getattr(self.lstm, f"bias_hh_l{layer}")
                forget = torch.log(torch.empty(n).uniform_(1.0, t_max))
                b_ih.zero_()
                b_hh.zero_()
                b_ih[n : 2 * n] = forget
                b_ih[:n] = -forget

    # ------------------------------------------------------------------ state

    def state_names(self) -> list[str]:
        """Names of the state tensors, in the order of :meth:`init_state` (used as ONNX input names)."""
        names = ["enc_cache", "env_cache", "pool_max", "pos", "se_sum", "se_count", "last_gain", "dec_cache"]
        names += [f"tcn_cache_{i}" for i in range(len(self.blocks))]
        return names + ["lstm_h", "lstm_c"]

    def init_state(
        self, batch: int, device: torch.device | str | None = None, dtype: torch.dtype = torch.float32
    ) -> tuple[Tensor, ...]:
        """Fresh (silent-past) streaming state: a flat tuple of tensors, see :meth:`state_names`.

        ``pos`` (int64, shape (1,)) is the position inside the current frame and ``se_count`` (shape (1,))
        the number of completed frames; both are shared by the batch.
        """
        cfg = self.config
        n, k = cfg.n_latent, cfg.encoder_kernel

        def z(*shape: int) -> Tensor:
            return torch.zeros(*shape, device=device, dtype=dtype)

        state = [
            z(batch, cfg.n_stems * cfg.n_channels, k - 1),
            z(batch, n, cfg.envelope_kernel - 1),
            z(batch, n),
            torch.zeros(1, device=device, dtype=torch.int64),
            z(batch, n),
            z(1),
            z(batch, n),
            z(batch, n, k - 1),
        ]
        state += [z(batch, b.context, cfg.hidden) for b in self.blocks]
        state += [z(cfg.lstm_layers, batch, n), z(cfg.lstm_layers, batch, n)]
        return tuple(state)

    # ------------------------------------------------------------------ core

    def _check(self, stems: Tensor, where: str) -> None:
        if stems.dim() != 4 or stems.shape[1] != self.n_stems or stems.shape[2] != self.n_channels:
            raise AudioInputError(
                f"{where}: expected stems of shape (batch, {self.n_stems}, {self.n_channels}, samples) "
                f"in {CLASSES} order, got {tuple(stems.shape)}"
            )
        if stems.shape[-1] < 1:
            raise AudioInputError(f"{where}: empty input (0 samples)")

    def _run(
        self, stems: Tensor, state: tuple[Tensor, ...] | list[Tensor]
    ) -> tuple[Tensor, tuple[Tensor, ...]]:
        """One block of any length through the causal core. No input checks (used by traced exports).

        Front-end (sample rate) -> running max-pool onto the frame grid -> frame-rate network (TCN, LSTM,
        SE) -> per-sample gains -> tied decoder; each part returns its slice of the new state.
        """
        cfg = self.config
        n_blk = len(self.blocks)
        enc_cache, env_cache, pool_max, pos, se_sum, se_count, last_gain, dec_cache = state[:8]
        tcn_caches = state[8 : 8 + n_blk]
        h0, c0 = state[8 + n_blk], state[9 + n_blk]

        batch, n_samples = stems.shape[0], stems.shape[-1]
        x = stems.reshape(batch, cfg.n_stems * cfg.n_channels, n_samples)
        p, env, new_enc_cache, new_env_cache = self._front_end(x, enc_cache, env_cache)
        fm, n_valid, new_pool_max, new_pos = self._pool_frames(env, pos, pool_max)
        u, new_tcn = self._tcn(fm, tcn_caches, n_valid)
        gains, new_se_sum, new_se_count, h_new, c_new = self._frame_gains(
            u, fm, n_samples, n_valid, (h0, c0), se_sum, se_count, last_gain
        )
        new_last_gain = gains.index_select(-1, n_valid).squeeze(-1)

        # sample t uses the gain of the last completed frame (index 0 = previous block's last gain)
        frame_of_sample = (torch.arange(n_samples, device=x.device) + pos) // cfg.hop_samples
        z = p * gains.index_select(-1, frame_of_sample)

        # tied decoder: causal transposed conv with the encoder weights, cached tail
        zc = torch.cat([dec_cache, z], dim=-1)
        mix = torch.tanh(self._decode(zc))  # (batch, 2, n)
        new_dec_cache = zc[..., n_samples:]

        new_state = (
            new_enc_cache,
            new_env_cache,
            new_pool_max,
            new_pos,
            new_se_sum,
            new_se_count,
            new_last_gain,
            new_dec_cache,
            *new_tcn,
            h_new,
            c_new,
        )
        return mix, new_state

    def _front_end(self, x: Tensor, enc_cache: Tensor, env_cache: Tensor) -> tuple[Tensor, ...]:
        """Adaptive front-end: causal encoder and envelope convs with cached left context.

        Returns (latent p (batch, N, n), envelope (batch, N, n) > 0, new encoder cache, new envelope cache).
        """
        n_samples = x.shape[-1]
        xc = torch.cat([enc_cache, x], dim=-1)
        p = self.encoder(xc)  # (batch, N, n)
        ap = torch.cat([env_cache, p.abs()], dim=-1)
        env = F.softplus(self.envelope(ap))  # > 0
        return p, env, xc[..., n_samples:], ap[..., n_samples:]

    def _pool_frames(self, env: Tensor, pos: Tensor, pool_max: Tensor) -> tuple[Tensor, ...]:
        """Running max-pool of the envelope onto the frame grid; frame 0 started ``pos`` samples before the block.

        Returns (frames (batch, N, n_max), frames completed in this block (shape (1,)), new partial-frame max,
        new position in the frame). Frames at index >= the completed count are incomplete and never used.
        """
        cfg = self.config
        hop = cfg.hop_samples
        batch, n_samples, dev = env.shape[0], env.shape[-1], env.device
        n_max = (n_samples + hop - 1) // hop  # completed frames when pos == hop - 1
        n_frames = n_max + 1  # + the frame left incomplete at the block end (possibly empty)
        src = torch.arange(n_frames * hop, device=dev) - pos
        inside = (src >= 0) & (src < n_samples)
        aligned = torch.where(
            inside, env.index_select(-1, src.clamp(0, n_samples - 1)), torch.zeros((), device=dev)
        )
        pooled = aligned.reshape(batch, cfg.n_latent, n_frames, hop).amax(-1)
        pooled = torch.cat([torch.maximum(pooled[..., :1], pool_max.unsqueeze(-1)), pooled[..., 1:]], dim=-1)
        n_valid = (pos + n_samples) // hop  # frames completed in this block, n_min or n_max
        new_pool_max = pooled.index_select(-1, n_valid).squeeze(-1)
        new_pos = (pos + n_samples) % hop
        return pooled[..., :n_max], n_valid, new_pool_max, new_pos

    def _tcn(self, fm: Tensor, tcn_caches, n_valid: Tensor) -> tuple[Tensor, list[Tensor]]:
        """Per-frame layer norm, bottleneck and the causal TCN: (batch, N, n_max) -> (batch, n_max, N) + caches."""
        h = self.bottleneck(self.in_norm(fm.transpose(1, 2)))  # (batch, n_max, B)
        skip_sum = torch.zeros((), device=fm.device)
        new_tcn = []
        for i, blk in enumerate(self.blocks):
            res, skip, nc = blk(h, tcn_caches[i], n_valid)
            new_tcn.append(nc)
            skip_sum = skip_sum + skip
            if res is not None:
                h = res
        return self.tcn_out(skip_sum), new_tcn

    def _frame_gains(
        self,
        u: Tensor,
        fm: Tensor,
        n_samples: int,
        n_valid: Tensor,
        lstm_state: tuple[Tensor, Tensor],
        se_sum: Tensor,
        se_count: Tensor,
        last_gain: Tensor,
    ) -> tuple[Tensor, ...]:
        """LSTM masks and the squeeze-excitation on their cumulative mean, as per-frame gains.

        Returns (gains (batch, N, n_max + 1), index 0 = the previous block's last gain; new SE sum; new SE
        count; new LSTM h; new LSTM c). The LSTM state advances over the completed frames only.
        """
        hop = self.config.hop_samples
        n_min = n_samples // hop  # completed frames when pos == 0
        n_max = (n_samples + hop - 1) // hop  # completed frames when pos == hop - 1
        h0, c0 = lstm_state
        outs = []
        h1, c1 = h0, c0
        if n_min > 0:
            o, (h1, c1) = self.lstm(u[:, :n_min], (h0, c0))
            outs.append(o)
        h_new, c_new = h1, c1
        if n_max > n_min:
            o, (h2, c2) = self.lstm(u[:, n_min:n_max], (h1, c1))
            outs.append(o)
            take = n_valid > n_min
            h_new, c_new = torch.where(take, h2, h1), torch.where(take, c2, c1)
        if not outs:
            return last_gain.unsqueeze(-1), se_sum, se_count, h_new, c_new
        mask = F.softplus(torch.cat(outs, dim=1)).transpose(1, 2)  # (batch, N, n_max)
        # squeeze-excitation on the cumulative mean of mask * envelope over all completed frames
        valid = (torch.arange(n_max, device=u.device) < n_valid).to(fm.dtype)
        act = mask * fm * valid
        csum = se_sum.unsqueeze(-1) + torch.cumsum(act, dim=-1)
        count = (se_count + torch.cumsum(valid, dim=0)).clamp_min(1.0)
        scale = self.se((csum / count).transpose(1, 2)).transpose(1, 2)
        gains = torch.cat([last_gain.unsqueeze(-1), mask * scale], dim=-1)  # (batch, N, n_max + 1)
        return gains, se_sum + act.sum(-1), se_count + n_valid.to(fm.dtype), h_new, c_new

    def _decode(self, zc: Tensor) -> Tensor:
        """Tied causal transposed conv, summed over stems: (batch, N, n + K - 1) → (batch, 2, n).

        The paper decodes to 8 channels (4 stems × 2) and then sums the stems; the sum is linear, so it is
        folded into the tied weights first (4× less work, same result). Short blocks use one GEMM over all
        taps plus a skew-and-sum (traceable to ONNX, faster than ``conv1d`` for a few hundred samples on one
        core); long inputs use ``conv1d`` (the GEMM intermediate would be K times the output size).
        """
        cfg = self.config
        k = cfg.encoder_kernel
        w = self.encoder.weight.reshape(cfg.n_latent, cfg.n_stems, cfg.n_channels, k).sum(1)  # (N, 2, K)
        length = zc.shape[-1]
        n = length - k + 1
        if n > _SKEW_DECODER_MAX_SAMPLES:
            return F.conv1d(zc, w.transpose(0, 1).flip(-1))
        taps = w.permute(1, 2, 0).flip(1).reshape(cfg.n_channels * k, cfg.n_latent)  # row k: weight K-1-k
        y = torch.matmul(taps, zc).reshape(zc.shape[0], cfg.n_channels, k * length)
        # row k of the (K, length) tap outputs shifted left by k: pad by K and view with row stride length + 1
        y = F.pad(y, (0, k)).reshape(zc.shape[0], cfg.n_channels, k, length + 1)
        return y[..., :n].sum(2)

    # ------------------------------------------------------------------ public API

    def forward(self, stems: Tensor) -> Tensor:
        """Whole-sequence mix, time-aligned with the input.

        Args:
            stems: (batch, 4, 2, T) float, ``CLASSES`` order.

        Returns:
            (batch, 2, T) mix; equals stepping from :meth:`init_state` and advancing by ``latency_samples``.
        """
        self._check(stems, "CausalMixer.forward")
        n = stems.shape[-1]
        x = F.pad(stems, (0, self.latency_samples))
        mix, _ = self._run(x, self.init_state(stems.shape[0], stems.device, stems.dtype))
        return mix[..., self.latency_samples : self.latency_samples + n]

    def step(
        self, blocks: Tensor, state: tuple[Tensor, ...] | list[Tensor]
    ) -> tuple[Tensor, tuple[Tensor, ...]]:
        """Process one block of any length.

        Args:
            blocks: (batch, 4, 2, n) float, n ≥ 1, ``CLASSES`` order.
            state: From :meth:`init_state` or the previous ``step``.

        Returns:
            (mix_block (batch, 2, n), new state). The mix is delayed by ``latency_samples``.
        """
        self._check(blocks, "CausalMixer.step")
        if len(state) != len(self.state_names()):
            raise AudioInputError(
                f"CausalMixer.step: state has {len(state)} tensors, expected {len(self.state_names())} "
                "(use model.init_state(batch))"
            )
        return self._run(blocks, tuple(state))


class CausalStep(nn.Module):
    """Export wrapper: ``forward(blocks, *state) -> (mix_block, *new_state)`` with a flat signature.

    Streaming-safe: yes.
    """

    def __init__(self, model: CausalMixer):
        super().__init__()
        self.model = model

    def forward(self, blocks: Tensor, *state: Tensor) -> tuple[Tensor, ...]:
        mix, new_state = self.model._run(blocks, state)
        return (mix, *new_state)


def _check_block(block_samples) -> None:
    if not isinstance(block_samples, int) or block_samples < 1:
        raise ConfigError(
            f"export_streaming: block_samples must be a positive integer, got {block_samples!r}"
        )


def _trace_inputs(model: CausalMixer, block_samples: int, batch: int) -> tuple[Tensor, ...]:
    """Example ``(blocks, *state)`` for tracing the step: seeded audio, a mid-frame position so no branch is
    specialised to ``pos == 0``."""
    state = model.init_state(batch)
    gen = torch.Generator().manual_seed(0)
    example = (0.1 * torch.randn(batch, model.n_stems, model.n_channels, block_samples, generator=gen),)
    state = tuple(s + 0.0 if s.dtype.is_floating_point else s for s in state)
    state = (*state[:3], torch.full((1,), model.hop_samples // 2, dtype=torch.int64), *state[4:])
    return example + tuple(state)


@contextlib.contextmanager
def _export_mode(model: CausalMixer):
    """Eval mode, no grad and no tracer/exporter warnings for the duration; the training flag is restored.

    Tracing specialises the graph to the block size on purpose; the legacy ONNX exporter is used because the
    torch.export-based one needs onnxscript (not a dependency).
    """
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore", torch.jit.TracerWarning)
            warnings.simplefilter("ignore", DeprecationWarning)
            warnings.simplefilter("ignore", UserWarning)
            yield CausalStep(model).eval()
    finally:
        model.train(was_training)


def _onnx_export(wrapper: CausalStep, args: tuple[Tensor, ...], target) -> None:
    names = wrapper.model.state_names()
    torch.onnx.export(
        wrapper,
        args,
        target,
        dynamo=False,
        input_names=["blocks", *names],
        output_names=["mix", *[f"{n}_out" for n in names]],
        opset_version=17,
    )


def streaming_onnx_bytes(model: CausalMixer, block_samples: int, batch: int = 1) -> bytes:
    """The ONNX graph of :func:`export_streaming`, serialised in memory (no files).

    ``onnxruntime.InferenceSession(streaming_onnx_bytes(...))`` runs it; inputs and outputs as there.
    """
    _check_block(block_samples)
    buffer = io.BytesIO()
    with _export_mode(model) as wrapper:
        _onnx_export(wrapper, _trace_inputs(model, block_samples, batch), buffer)
    return buffer.getvalue()


def export_streaming(
    model: CausalMixer, out_dir: str | os.PathLike, block_samples: int, batch: int = 1
) -> dict[str, Path]:
    """Export the streaming step at a fixed block size to TorchScript (trace) and ONNX, plus a JSON card.

    The exported function is ``(blocks, *state) -> (mix_block, *new_state)`` with ``blocks`` of shape
    (batch, 4, 2, block_samples); state tensors in the order of ``model.state_names()`` (ONNX input
    names ``blocks`` + state names, outputs ``mix`` + ``<name>_out``). Start from zeros of the shapes in the
    card (``init_state``). Files are written atomically.

    Args:
        model: The network (exported in eval mode; its training flag is restored).
        out_dir: Folder to write into (created).
        block_samples: Samples per block the exported graphs accept (any value ≥ 1; fixed per export).
        batch: Batch size of the exported graphs.

    Returns:
        ``{"torchscript": path, "onnx": path, "card": path}``.
    """
    _check_block(block_samples)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    stem = f"causal_step_b{block_samples}"
    paths = {"torchscript": out / f"{stem}.pt", "onnx": out / f"{stem}.onnx", "card": out / f"{stem}.json"}
    args = _trace_inputs(model, block_samples, batch)
    with _export_mode(model) as wrapper:
        traced = torch.jit.trace(wrapper, args, check_trace=False)
        with atomic_path(paths["torchscript"]) as tmp:
            traced.save(tmp)
        with atomic_path(paths["onnx"]) as tmp:
            _onnx_export(wrapper, args, tmp)
    write_text_atomic(
        paths["card"], json.dumps(_streaming_card(model, block_samples, batch), indent=2) + "\n"
    )
    return paths


def _streaming_card(model: CausalMixer, block_samples: int, batch: int) -> dict:
    return {
        "arch": "causal",
        "config": model.config.to_dict(),
        "sample_rate": model.sample_rate,
        "block_samples": block_samples,
        "batch": batch,
        "latency_samples": model.latency_samples,
        "receptive_field_samples": model.receptive_field_samples,
        "stems": list(CLASSES),
        "inputs": ["blocks", *model.state_names()],
        "state": [
            {"name": n, "shape": list(s.shape), "dtype": str(s.dtype).replace("torch.", "")}
            for n, s in zip(model.state_names(), model.init_state(batch))
        ],
        "note": "outputs are mix + <state>_out; feed them back as the next state; mix is delayed by latency_samples",
    }


def bench_step(
    model: CausalMixer,
    block_samples: int = 512,
    n_blocks: int = 400,
    threads: int = 1,
    scripted: bool = True,
    seed: int = 0,
) -> dict[str, float]:
    """Time ``step`` per block (batch 1) on procedural noise; the first 10 % of blocks are warm-up.

    Reports wall-clock time and the calling thread's CPU time; the latter is what one step costs on an
    otherwise idle core (wall time on a shared, oversubscribed machine also counts time spent waiting).

    Args:
        model: The network (put in eval mode).
        block_samples: Samples per block.
        n_blocks: Blocks to time.
        threads: ``torch.set_num_threads`` value during the run (restored after).
        scripted: Time the traced, frozen TorchScript step (what a host would run) instead of eager ``step``.
        seed: Seed of the test signal.

    Returns:
        ``{"mean_ms", "p99_ms", "cpu_mean_ms", "cpu_p99_ms", "block_ms_44k1", "block_ms_48k", "params", "latency_samples"}``.
    """
    old_threads = torch.get_num_threads()
    torch.set_num_threads(threads)
    model.eval()
    try:
        gen = torch.Generator().manual_seed(seed)
        x = 0.1 * torch.randn(1, model.n_stems, model.n_channels, block_samples * n_blocks, generator=gen)
        state = model.init_state(1)
        with torch.inference_mode():
            if scripted:
                wrapper = CausalStep(model).eval()
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", torch.jit.TracerWarning)
                    traced = torch.jit.trace(wrapper, (x[..., :block_samples], *state), check_trace=False)
                fn = torch.jit.freeze(traced)
            times, cpu_times = [], []
            for i in range(n_blocks):
                blk = x[..., i * block_samples : (i + 1) * block_samples]
                t0, c0 = time.perf_counter(), time.thread_time()
                if scripted:
                    out = fn(blk, *state)
                    state = tuple(out[1:])
                else:
                    _, state = model.step(blk, state)
                times.append(time.perf_counter() - t0)
                cpu_times.append(time.thread_time() - c0)
    finally:
        torch.set_num_threads(old_threads)
    ms = np.asarray(times[n_blocks // 10 :]) * 1e3
    cpu_ms = np.asarray(cpu_times[n_blocks // 10 :]) * 1e3
    return {
        "mean_ms": float(ms.mean()),
        "p99_ms": float(np.percentile(ms, 99)),
        "cpu_mean_ms": float(cpu_ms.mean()),
        "cpu_p99_ms": float(np.percentile(cpu_ms, 99)),
        "block_ms_44k1": 1e3 * block_samples / 44100.0,
        "block_ms_48k": 1e3 * block_samples / 48000.0,
        "params": float(count_trainable_parameters(model)),
        "latency_samples": float(model.latency_samples),
    }


__all__ = [
    "CausalConfig",
    "CausalMixer",
    "CausalStep",
    "CausalTCNBlock",
    "bench_step",
    "export_streaming",
    "streaming_onnx_bytes",
]

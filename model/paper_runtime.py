"""The paper network's fast offline inference: the same weights and output as ``PaperNet.forward``, in stages.

:class:`PaperRuntime` computes one chunk (or a batch of chunks) of :class:`fxmix.model.nets.PaperNet` as

1. front-end, segment by segment (``segment`` samples plus the kernels' halos): encoder, ``|.|``, the
   128-tap depthwise "adaptive" convolution, max- and mean-pooling to frames. Encoder and adaptive conv run
   as overlap-save FFT convolutions (:mod:`fxmix.model.fftconv`);
2. the frame-rate part (TCN, BLSTM, squeeze-excitation: :meth:`PaperNet.frame_gain`, shared with the eager
   forward) on the whole chunk, as the network was trained;
3. decoder, segment by segment over the requested output window only: the encoder output is recomputed from
   the input (cheaper than keeping a full-rate 128-channel tensor), multiplied by the frame gain and decoded
   with the decoder weights summed over the stems (the network sums the per-stem outputs; summing the
   weights first is the same linear map with a quarter of the channels), then ``tanh``.

Full-rate tensors exist only per segment, so memory does not grow with the chunk beyond its frame-rate
latent. Segments and chunks are independent tasks run on ``threads`` worker threads with one intra-op
thread each: ATen's and oneDNN's per-op parallel regions are too short for this network's frame-rate ops and
lose time to synchronisation, while independent tasks scale with the cores.
"""

from __future__ import annotations

import contextlib
import threading
from concurrent.futures import ThreadPoolExecutor

import torch
import torch.nn.functional as F
from fxmix.dsp.errors import AudioInputError, ConfigError

from .apply import cut_samples
from .fftconv import FFTConv1d
from .nets import PaperNet

#: Full-rate samples per front-end/decoder task: ~0.2 s at 44.1 kHz keeps a task's 128-channel
#: intermediates (about 4 MB each) in cache; twice as long is as fast, four times as long 1.6x slower.
DEFAULT_SEGMENT = 8192

#: What bfloat16 costs in accuracy: the frame-rate part's activations keep 8 bits of mantissa.
BF16_NOTE = "bf16 frame-rate part: max abs output error ~1e-3 of full scale (fp32: ~1e-6)"

_THREADS_LOCK = threading.Lock()


@contextlib.contextmanager
def _one_intra_op_thread():
    """Set torch to one intra-op thread for the enclosed block (process-wide, restored afterwards)."""
    with _THREADS_LOCK:
        prev = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            yield
        finally:
            torch.set_num_threads(prev)


class PaperRuntime:
    """Fast inference of a :class:`PaperNet` (eval mode, float32): ``runtime(stems) == net(stems)`` within 1e-4.

    Args:
        net: the network. Its convolution weights are turned into spectra here: build a new runtime after
            changing them.
        threads: worker threads; default ``torch.get_num_threads()`` at construction.
        segment: full-rate samples per front-end/decoder task (rounded to the network's ``pool``).
        bf16: run the frame-rate part (TCN, BLSTM) in bfloat16 on CPUs with native bf16 instructions: about
            2x faster there, at ~1e-3 max abs output error instead of ~1e-6 (see :data:`BF16_NOTE`).

    Attributes:
        sample_rate, n_stems, length_multiple, receptive_field_samples, latency_samples: as the network.
        chunk_batch: chunks per call for :func:`fxmix.model.apply.mix_stems` (= ``threads``).

    Shape: ``(batch, n_stems, 2, n)`` -> ``(batch, 2, n)``, ``n`` a multiple of ``length_multiple``.

    streaming-safe: no (offline; use :func:`fxmix.model.apply.mix_stems` for long inputs).
    """

    def __init__(
        self, net: PaperNet, *, threads: int | None = None, segment: int = DEFAULT_SEGMENT, bf16: bool = False
    ):
        if bf16 and not torch.ops.mkldnn._is_mkldnn_bf16_supported():
            raise ConfigError(
                "bf16: this CPU has no native bfloat16 instructions; run in float32 (the default)"
            )
        self.bf16 = bf16
        self.net = net.eval()
        cfg = net.config
        self.config = cfg
        self.sample_rate = net.sample_rate
        self.n_stems = net.n_stems
        self.length_multiple = net.length_multiple
        self.receptive_field_samples = net.receptive_field_samples
        self.latency_samples = net.latency_samples
        self.threads = max(1, threads or torch.get_num_threads())
        #: chunks per call that :func:`fxmix.model.apply.mix_stems` sends: one per worker keeps every worker
        #: busy in the frame-rate stage, which runs one task per chunk
        self.chunk_batch = self.threads
        self.segment = max(cfg.pool, segment // cfg.pool * cfg.pool)
        self.device = net.encoder.weight.device
        w_enc = net.encoder.weight.detach()  # (n_filters, n_stems * n_channels, k)
        k = w_enc.shape[-1]
        self.enc_left, self.enc_right = (k - 1) // 2, k // 2  # p[t] reads x[t - left : t + right]
        k_a = cfg.adaptive_kernel
        self.ad_left, self.ad_right = (k_a - 1) // 2, k_a // 2
        # the stem faders (one gain per stem) scale the encoder's input channels; the decoder has none
        w_in = w_enc
        if net.faders is not None:
            fader = torch.pow(10.0, net.faders.log10_gain.detach()).repeat_interleave(cfg.n_channels)
            w_in = w_enc * fader.view(1, -1, 1)
        self.encoder = FFTConv1d(w_in).to(self.device)
        self.adaptive = FFTConv1d(net.adaptive.weight.detach(), groups=cfg.n_filters).to(self.device)
        # the tied decoder summed over stems, as a correlation: y[t] = sum_j w[j] (p*g)[t - right + j]
        w_mix = w_enc.reshape(cfg.n_filters, cfg.n_stems, cfg.n_channels, k).sum(dim=1)
        self.decoder = FFTConv1d(w_mix.flip(-1).transpose(0, 1)).to(self.device)
        self._pool: ThreadPoolExecutor | None = None

    # ------------------------------------------------------------------ stages

    def _front_end(self, x: torch.Tensor, z: torch.Tensor, p_frames: torch.Tensor, start: int, stop: int):
        """Frames ``[start, stop) / pool`` of the pooled front-end of one chunk ``x`` (n_in, n) into z, p_frames."""
        n, pool = x.shape[-1], self.config.pool
        lo, hi = start - self.ad_left, stop + self.ad_right  # |p| the adaptive conv reads
        p = self.encoder(
            cut_samples(x, lo - self.enc_left, hi - lo + self.enc_left + self.enc_right).unsqueeze(0)
        )
        p_abs = p.abs_()
        if lo < 0 or hi > n:  # the adaptive conv's zero padding outside the chunk
            p_abs[..., : max(0, -lo)] = 0.0
            p_abs[..., max(0, n - lo) :] = 0.0
        a = self.adaptive(p_abs)
        f0, f1 = start // pool, stop // pool
        z[:, f0:f1] = F.max_pool1d(a, pool)[0]
        p_frames[:, f0:f1] = F.avg_pool1d(p_abs[..., self.ad_left : self.ad_left + stop - start], pool)[0]

    def _frame_gain(self, z: torch.Tensor, p_frames: torch.Tensor, gain: torch.Tensor) -> None:
        """The network's frame-rate part on one chunk's pooled front-end, into ``gain``."""
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=self.bf16):
            gain.copy_(self.net.frame_gain(F.softplus(z), p_frames))

    def _decode(
        self, x: torch.Tensor, gain: torch.Tensor, out: torch.Tensor, start: int, stop: int, offset: int
    ):
        """Output samples ``[start, stop)`` of one chunk into ``out[:, start - offset : stop - offset]``."""
        pool = self.config.pool
        # the decoder reads (p * g)[start - right : stop + left] with p*g = 0 outside the chunk
        lo, hi = start - self.enc_right, stop + self.enc_left
        p = self.encoder(
            cut_samples(x, lo - self.enc_left, hi - lo + self.enc_left + self.enc_right).unsqueeze(0)
        )
        f0, f1 = lo // pool, -(-hi // pool)
        # frames outside the chunk are zero, so is g there (n is a whole number of frames)
        g = cut_samples(gain, f0, f1 - f0).repeat_interleave(pool, dim=-1)[:, lo - f0 * pool : hi - f0 * pool]
        y = self.decoder(p * g)
        out[:, start - offset : stop - offset] = torch.tanh(y[0])

    # ------------------------------------------------------------------ scheduling

    def _map(self, fn, jobs: list[tuple]) -> None:
        """Run ``fn(*job)`` for every job, on the worker threads when there are several.

        A single job goes to a worker too: each thread keeps its own allocator arena, and stages that share
        the workers' arenas reuse each other's freed memory instead of growing the main thread's.
        """

        def task(*job) -> None:
            with torch.inference_mode():  # thread-local: each worker enters it itself
                fn(*job)

        if self.threads == 1:
            for job in jobs:
                task(*job)
            return
        if self._pool is None:
            self._pool = ThreadPoolExecutor(self.threads, thread_name_prefix="fxmix-paper")
        for future in [self._pool.submit(task, *job) for job in jobs]:
            future.result()

    def _spans(self, start: int, stop: int) -> list[tuple[int, int]]:
        return [(a, min(a + self.segment, stop)) for a in range(start, stop, self.segment)]

    def mix_window(self, stems: torch.Tensor, start: int, length: int) -> torch.Tensor:
        """Output samples ``[start, start + length)`` of ``net(stems)``, computing only what they need.

        Shape: ``(batch, n_stems, 2, n)`` -> ``(batch, 2, length)``.
        """
        cfg = self.config
        batch, n = stems.shape[0], stems.shape[-1]
        if n % cfg.pool or not 0 <= start <= start + length <= n:
            raise AudioInputError(
                f"PaperRuntime: {n} samples (window {start}+{length}) must be a multiple of pool = {cfg.pool} "
                "and hold the window; pass whole songs to fxmix.model.apply.mix_stems, which pads them"
            )
        frames = n // cfg.pool
        with torch.inference_mode(), _one_intra_op_thread():
            stems = stems.to(self.device, torch.float32)
            x = stems.reshape(batch, cfg.n_stems * cfg.n_channels, n)
            z = torch.empty(batch, cfg.n_filters, frames, device=self.device)
            p_frames = torch.empty_like(z)
            jobs = [(x[b], z[b], p_frames[b], a, e) for b in range(batch) for a, e in self._spans(0, n)]
            self._map(self._front_end, jobs)
            gain = torch.empty_like(z)
            self._map(
                self._frame_gain, [(z[b : b + 1], p_frames[b : b + 1], gain[b : b + 1]) for b in range(batch)]
            )
            del z, p_frames
            out = torch.empty(batch, cfg.n_channels, length, device=self.device)
            spans = self._spans(start, start + length)
            self._map(
                self._decode, [(x[b], gain[b], out[b], a, e, start) for b in range(batch) for a, e in spans]
            )
        return out

    def __call__(self, stems: torch.Tensor) -> torch.Tensor:
        return self.mix_window(stems, 0, stems.shape[-1])

    def close(self) -> None:
        """Stop the worker threads (they also stop with the interpreter)."""
        if self._pool is not None:
            self._pool.shutdown()
            self._pool = None

"""Long-audio mechanics, in one place: chunked inference with guards and cross-fades (demucs ``apply.py``).

Networks only map ``(batch, n_stems, 2, samples)`` to ``(batch, 2, samples)``. :func:`mix_stems` runs one
on stems of any length with bounded memory: an input no longer than one chunk is run in a single pass;
a longer one is cut into cores of ``chunk - 2 * guard`` samples, spread evenly so that neighbours overlap
by at least ``overlap_s``; each core is run with ``guard`` samples of real context on both sides (zeros
outside the song, exactly as a whole-song pass pads), the guards are dropped and each overlap is
cross-faded linearly over its middle ``overlap_s`` (:func:`chunk_weights`). The guard must cover the
network's ``receptive_field_samples``, so the convolutional part is exact; what remains (global GroupNorm /
SE statistics and BLSTM state over the chunk instead of the song) is measured by :func:`chunking_error`.
No length cap, no pre-roll, and no full-length array but the output: chunks are cut from the input as
they are run. :func:`stream_mix` (which :func:`mix_stems` runs) takes a reader and a writer instead of arrays,
so a caller that streams from and to files holds no full-length array at all.

A "model" here is anything callable on a float32 tensor with the attributes ``sample_rate``,
``length_multiple`` and ``receptive_field_samples`` (an ``nn.Module`` from :mod:`fxmix.model.nets` or a
runtime from :mod:`fxmix.model.runtime`). Optional: ``mix_window(batch, start, length)`` computing only
output samples ``[start, start + length)`` (used for the chunk cores), ``chunk_batch`` (chunks per call
when the caller does not say) and ``device``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from fxmix.dsp.errors import AudioInputError, ConfigError

#: Default chunk length (s): the training segment length of the reference (10 s), guards included.
DEFAULT_CHUNK_S = 10.0
#: Default cross-fade between neighbouring chunk cores (s).
DEFAULT_OVERLAP_S = 0.25


@dataclass(frozen=True)
class ChunkPlan:
    """Sample positions of a chunked run (all in samples)."""

    n_samples: int
    chunk: int
    guard: int
    core: int
    fade: int
    starts: tuple[int, ...]

    @property
    def n_chunks(self) -> int:
        return len(self.starts)


def _round_up(x: int, m: int) -> int:
    return int(math.ceil(x / m) * m)


def plan_chunks(
    model,
    n_samples: int,
    *,
    chunk_s: float = DEFAULT_CHUNK_S,
    guard_s: float | None = None,
    overlap_s: float = DEFAULT_OVERLAP_S,
) -> ChunkPlan:
    """Choose chunk/guard/core/fade sizes and core start positions for ``n_samples`` of audio.

    Raises:
        ConfigError: guard below the receptive field, or a chunk too short for its guards and fade.
    """
    sr, mult, rf = model.sample_rate, getattr(model, "length_multiple", 1), model.receptive_field_samples
    guard = _round_up(rf if guard_s is None else int(round(guard_s * sr)), mult)
    if guard < rf:
        raise ConfigError(
            f"guard_s = {guard_s}: {guard} samples is below the network's receptive field ({rf} samples, "
            f"{rf / sr:.3f} s); use guard_s >= {rf / sr:.3f} or leave it unset"
        )
    chunk = _round_up(int(round(chunk_s * sr)), mult)
    fade = int(round(overlap_s * sr))
    core = chunk - 2 * guard
    # 3 fades per core: a core's two cross-fades never meet, however the cores are spread
    if core < 3 * fade + mult or fade < 0:
        raise ConfigError(
            f"chunk_s = {chunk_s} s is too short for 2 guards of {guard / sr:.3f} s and {overlap_s} s "
            f"cross-fades; use chunk_s >= {(2 * guard + 3 * fade + mult) / sr:.2f}"
        )
    if n_samples <= chunk:  # one pass sees no more than a chunk would
        return ChunkPlan(n_samples, chunk, guard, core, 0, (0,))
    # as few cores as overlap by >= fade, spread evenly from the first sample to the last
    count = 1 + math.ceil((n_samples - core) / (core - fade))
    starts = tuple(round(i * (n_samples - core) / (count - 1)) for i in range(count))
    return ChunkPlan(n_samples, chunk, guard, core, fade, starts)


#: Samples per finiteness check of the input (bounds the temporary boolean array).
_CHECK_BLOCK = 1 << 20


def _as_batch(stems, n_stems: int) -> tuple[torch.Tensor, bool]:
    """A float32 ``(batch, n_stems, 2, n)`` view of the input (copied only when it is not float32)."""
    x = torch.as_tensor(np.asarray(stems, dtype=np.float32) if isinstance(stems, np.ndarray) else stems)
    squeeze = x.dim() == 3
    if squeeze:
        x = x.unsqueeze(0)
    if x.dim() != 4 or x.shape[1] != n_stems or x.shape[2] != 2 or x.shape[3] == 0:
        raise AudioInputError(
            f"stems: expected ({n_stems}, 2, samples) or (batch, {n_stems}, 2, samples), got {tuple(x.shape)}"
        )
    x = x.float()
    for start in range(0, x.shape[-1], _CHECK_BLOCK):
        if not torch.isfinite(x[..., start : start + _CHECK_BLOCK]).all():
            raise AudioInputError("stems: NaN/inf samples; repair the input stems")
    return x, squeeze


def _device_of(model) -> torch.device:
    if isinstance(model, torch.nn.Module):
        for p in model.parameters():
            return p.device
    return torch.device(getattr(model, "device", "cpu"))


def cut_samples(x: torch.Tensor, start: int, length: int) -> torch.Tensor:
    """``x[..., start : start + length]`` with zeros where the range leaves the signal."""
    n = x.shape[-1]
    lo, hi = max(start, 0), min(start + length, n)
    y = x[..., lo : max(lo, hi)]
    if lo > start or hi < start + length:
        y = torch.nn.functional.pad(y, (lo - start, start + length - max(lo, hi)))
    return y


def chunk_weights(plan: ChunkPlan, k: int) -> torch.Tensor:
    """Weight of chunk ``k`` at each sample of its core: 1, 0, or a linear ramp of ``fade`` samples.

    Each overlap of two neighbouring cores (``>= fade`` samples) is cross-faded over its middle ``fade``
    samples, the earlier core ramping down as the later one ramps up; the weights of all chunks sum to 1 at
    every sample, and where a chunk's weight is 1 the output is that chunk's alone.
    """
    s, core, fade = plan.starts[k], plan.core, plan.fade
    w = torch.ones(core)
    ramp = (torch.arange(fade, dtype=torch.float32) + 0.5) / fade
    if k > 0:
        overlap = plan.starts[k - 1] + core - s
        a = (overlap - fade) // 2
        w[:a] = 0.0
        w[a : a + fade] = ramp
    if k + 1 < plan.n_chunks:
        overlap = s + core - plan.starts[k + 1]
        a = plan.starts[k + 1] - s + (overlap - fade) // 2
        w[a : a + fade] *= ramp.flip(0)
        w[a + fade :] = 0.0
    return w


def run_whole(model, stems) -> torch.Tensor:
    """One pass over the whole input (zero-padded to ``length_multiple``); memory grows with length.

    Shape: ``(n_stems, 2, n)`` or ``(batch, n_stems, 2, n)`` -> ``(2, n)`` or ``(batch, 2, n)``.
    """
    x, squeeze = _as_batch(stems, getattr(model, "n_stems", 4))
    n = x.shape[-1]
    pad = _round_up(n, getattr(model, "length_multiple", 1)) - n
    with torch.inference_mode():
        y = model(torch.nn.functional.pad(x, (0, pad)).to(_device_of(model)))[..., :n].float().cpu()
    return y[0] if squeeze else y


def mix_stems(
    model,
    stems,
    *,
    chunk_s: float = DEFAULT_CHUNK_S,
    guard_s: float | None = None,
    overlap_s: float = DEFAULT_OVERLAP_S,
    batch_size: int | None = None,
    progress: bool = False,
) -> torch.Tensor:
    """Mix normalized stems of any length with bounded memory (chunks + guards + linear cross-fades).

    Args:
        model: network or runtime (see module docstring), in eval mode.
        stems: ``(n_stems, 2, n)`` or ``(batch, n_stems, 2, n)`` float audio (numpy or torch), stems in
            fxmix.dsp.constants.CLASSES order, at ``model.sample_rate``.
        chunk_s: network input length per chunk (s), guards included; memory scales with it.
        guard_s: context dropped on each side of a chunk (s); default and minimum = receptive field.
        overlap_s: linear cross-fade between neighbouring chunk cores (s).
        batch_size: chunk positions per network call (each with every batch item); default the model's
            ``chunk_batch`` (else 1). Use > 1 on a GPU.
        progress: show a tqdm bar over chunks.

    Returns:
        ``(2, n)`` (or ``(batch, 2, n)``) float32 CPU tensor. An input no longer than one chunk is run in a
        single pass and equals :func:`run_whole`.

    Raises:
        AudioInputError: wrong shape or NaN/inf input.
        ConfigError: inconsistent chunk/guard/overlap sizes.
    """
    x, squeeze = _as_batch(stems, getattr(model, "n_stems", 4))
    n = x.shape[-1]
    out = torch.empty(x.shape[0], 2, n)
    done = [0]

    def write(block: torch.Tensor) -> None:
        out[..., done[0] : done[0] + block.shape[-1]] = block
        done[0] += block.shape[-1]

    stream_mix(
        model, lambda start, length: cut_samples(x, start, length), n, write,
        chunk_s=chunk_s, guard_s=guard_s, overlap_s=overlap_s, batch_size=batch_size, progress=progress,
    )
    return out[0] if squeeze else out


def stream_mix(
    model,
    read,
    n: int,
    write,
    *,
    chunk_s: float = DEFAULT_CHUNK_S,
    guard_s: float | None = None,
    overlap_s: float = DEFAULT_OVERLAP_S,
    batch_size: int | None = None,
    progress: bool = False,
) -> None:
    """:func:`mix_stems` from a reader to a writer: no full-length array of input or output is held.

    Args:
        model: as :func:`mix_stems`.
        read: ``read(start, length)`` -> ``(batch, n_stems, 2, length)`` float32 tensor of the stems' samples
            ``[start, start + length)``, zeros outside ``[0, n)`` (finite: the caller checks its input).
        n: samples per stem.
        write: called with consecutive ``(batch, 2, m)`` float32 CPU blocks of the mix, ``n`` samples in all,
            each final (every chunk that touches it has been run): at most ``batch_size`` chunk cores per call.
        chunk_s, guard_s, overlap_s, batch_size, progress: as :func:`mix_stems`.

    Memory: ``batch_size`` chunks of input plus about two chunk cores of output, whatever ``n``.
    """
    batch_size = getattr(model, "chunk_batch", 1) if batch_size is None else batch_size
    if batch_size < 1:
        raise ConfigError(f"batch_size = {batch_size}: must be >= 1")
    plan = plan_chunks(model, n, chunk_s=chunk_s, guard_s=guard_s, overlap_s=overlap_s)
    if plan.n_chunks == 1:
        write(run_whole(model, read(0, n)))
        return
    device = _device_of(model)
    g, core = plan.guard, plan.core
    window = getattr(model, "mix_window", None)
    pending: torch.Tensor | None = None  # output samples [base, base + width) still being summed
    base = 0
    bar = None
    if progress:
        from tqdm import tqdm  # lazy: only progress bars need it

        bar = tqdm(total=plan.n_chunks, desc="mix", unit="chunk")
    with torch.inference_mode():
        for k0 in range(0, plan.n_chunks, batch_size):
            ks = range(k0, min(k0 + batch_size, plan.n_chunks))
            cuts = [read(plan.starts[k] - g, plan.chunk) for k in ks]
            n_batch = cuts[0].shape[0]
            batch = torch.cat(cuts).to(device)
            y = window(batch, g, core) if window is not None else model(batch)[..., g : g + core]
            y = y.float().cpu().reshape(len(ks), n_batch, 2, core)
            end = plan.starts[ks[-1]] + core
            if pending is None:
                pending = torch.zeros(n_batch, 2, end - base)
            elif pending.shape[-1] < end - base:
                pending = torch.nn.functional.pad(pending, (0, end - base - pending.shape[-1]))
            for k, yk in zip(ks, y):
                s = plan.starts[k] - base
                pending[..., s : s + core] += yk * chunk_weights(plan, k)
            # no later core starts before the next chunk's start: everything before it is final
            final = plan.starts[ks[-1] + 1] if ks[-1] + 1 < plan.n_chunks else n
            write(pending[..., : final - base].clone())
            pending = pending[..., final - base :].clone()
            base = final
            if bar is not None:
                bar.update(len(ks))
    if bar is not None:
        bar.close()


def chunking_error(model, stems, **kwargs) -> dict[str, float]:
    """Difference between chunked (:func:`mix_stems`) and whole-sequence (:func:`run_whole`) output.

    Args:
        model, stems: as :func:`mix_stems`; ``stems`` should be short enough for one pass.
        **kwargs: chunking options for :func:`mix_stems`.

    Returns:
        ``{"max_abs", "rms_diff_db", "whole_rms_db", "snr_db", "n_chunks"}`` (dB re full scale).
    """
    whole = run_whole(model, stems)
    chunked = mix_stems(model, stems, **kwargs)
    diff = chunked - whole
    eps = 1e-12
    rms_d = float(diff.square().mean().sqrt())
    rms_w = float(whole.square().mean().sqrt())
    plan = plan_chunks(
        model,
        whole.shape[-1],
        **{k: v for k, v in kwargs.items() if k in ("chunk_s", "guard_s", "overlap_s")},
    )
    return {
        "max_abs": float(diff.abs().max()),
        "rms_diff_db": 20 * math.log10(rms_d + eps),
        "whole_rms_db": 20 * math.log10(rms_w + eps),
        "snr_db": 20 * math.log10((rms_w + eps) / (rms_d + eps)),
        "n_chunks": plan.n_chunks,
    }

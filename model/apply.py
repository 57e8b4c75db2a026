"""Long-audio mechanics, in one place: chunked inference with guards and cross-fades (demucs ``apply.py``).

Networks only map ``(batch, n_stems, 2, samples)`` to ``(batch, 2, samples)``. :func:`mix_stems` runs one
on stems of any length with bounded memory: the song is cut into cores of ``chunk - 2 * guard`` samples,
each core is run with ``guard`` samples of real context on both sides (zeros outside the song, exactly as
a whole-song pass pads), the guards are dropped and neighbouring cores are cross-faded linearly over
``overlap_s``. The guard must cover the network's ``receptive_field_samples``, so the convolutional part
is exact; what remains (global GroupNorm / SE statistics and BLSTM state over the chunk instead of the
song) is measured by :func:`chunking_error`. No length cap, no pre-roll.

A "model" here is anything callable on a float32 tensor with the attributes ``sample_rate``,
``length_multiple`` and ``receptive_field_samples`` (an ``nn.Module`` from :mod:`fxmix.model.nets` or a
runtime from :mod:`fxmix.model.runtime`).
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
    if core < 2 * fade + mult or fade < 0:
        raise ConfigError(
            f"chunk_s = {chunk_s} s is too short for 2 guards of {guard / sr:.3f} s and a {overlap_s} s "
            f"cross-fade; use chunk_s >= {(2 * guard + 2 * fade + mult) / sr:.2f}"
        )
    if n_samples <= core:
        return ChunkPlan(n_samples, chunk, guard, core, 0, (0,))
    hop = core - fade
    starts = list(range(0, n_samples - core, hop)) + [n_samples - core]
    if len(starts) > 1 and starts[-1] - starts[-2] < fade:  # last core barely overlaps: merge
        starts.pop(-2)
    return ChunkPlan(n_samples, chunk, guard, core, fade, tuple(starts))


def _as_batch(stems, n_stems: int) -> tuple[torch.Tensor, bool]:
    x = torch.as_tensor(np.asarray(stems, dtype=np.float32) if isinstance(stems, np.ndarray) else stems)
    squeeze = x.dim() == 3
    if squeeze:
        x = x.unsqueeze(0)
    if x.dim() != 4 or x.shape[1] != n_stems or x.shape[2] != 2 or x.shape[3] == 0:
        raise AudioInputError(
            f"stems: expected ({n_stems}, 2, samples) or (batch, {n_stems}, 2, samples), got {tuple(x.shape)}"
        )
    if not torch.isfinite(x).all():
        raise AudioInputError("stems: NaN/inf samples; repair the input stems")
    return x.float(), squeeze


def _device_of(model) -> torch.device:
    if isinstance(model, torch.nn.Module):
        for p in model.parameters():
            return p.device
    return torch.device("cpu")


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
    batch_size: int = 1,
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
        batch_size: chunks per network call (use > 1 on a GPU).
        progress: show a tqdm bar over chunks.

    Returns:
        ``(2, n)`` (or ``(batch, 2, n)``) float32 CPU tensor. An input no longer than one core is run in a
        single pass and equals :func:`run_whole`.

    Raises:
        AudioInputError: wrong shape or NaN/inf input.
        ConfigError: inconsistent chunk/guard/overlap sizes.
    """
    if batch_size < 1:
        raise ConfigError(f"batch_size = {batch_size}: must be >= 1")
    x, squeeze = _as_batch(stems, getattr(model, "n_stems", 4))
    n = x.shape[-1]
    plan = plan_chunks(model, n, chunk_s=chunk_s, guard_s=guard_s, overlap_s=overlap_s)
    if plan.n_chunks == 1:
        y = run_whole(model, x)
        return y[0] if squeeze else y
    device = _device_of(model)
    g, core, fade = plan.guard, plan.core, plan.fade
    out = torch.zeros(x.shape[0], 2, n)
    weight_sum = torch.zeros(n)
    ramp = (torch.arange(fade, dtype=torch.float32) + 0.5) / fade
    # zero context outside the song, like the zero padding of a whole-song pass
    padded = torch.nn.functional.pad(x, (g, g + plan.chunk))
    jobs = [(b, s) for s in plan.starts for b in range(x.shape[0])]
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=len(jobs), desc="mix", unit="chunk")
    with torch.inference_mode():
        for i in range(0, len(jobs), batch_size):
            group = jobs[i : i + batch_size]
            batch = torch.stack([padded[b, :, :, s : s + plan.chunk] for b, s in group]).to(device)
            y = model(batch).float().cpu()[..., g : g + core]
            for (b, s), yk in zip(group, y):
                w = torch.ones(core)
                if s > 0:
                    w[:fade] = ramp
                if s + core < n:
                    w[core - fade :] = torch.minimum(w[core - fade :], ramp.flip(0))
                m = min(core, n - s)
                out[b, :, s : s + m] += yk[:, :m] * w[:m]
                if b == 0:
                    weight_sum[s : s + m] += w[:m]
            if bar is not None:
                bar.update(len(group))
    if bar is not None:
        bar.close()
    out /= weight_sum.clamp_min(1e-6)
    return out[0] if squeeze else out


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

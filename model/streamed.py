"""The offline main path with memory bounded whatever the song's length: tracks -> mix file, block by block.

:func:`fxmix.model.automix.automix` takes class buses in memory and returns the mix and the normalized stems
as arrays: four 20-minute stems need several GB. :func:`normalize_song` and :func:`mix_song` give the same mix (within float32
rounding of the network's chunk batching) with no full-length array of the song in memory at once:

1. each class bus is read and kept as a raw file in ``work_dir``, then normalized one (or two) stems at a
   time, planned on the whole stem as the normalization needs (:mod:`fxmix.dsp.spill`);
2. the network (or the normalized sum) runs chunk by chunk on blocks read from those files
   (:func:`fxmix.model.apply.stream_mix`), and each final block of the mix goes to ``write``, which puts it
   in the output file as it comes.

Peak memory is that of normalizing one or two stems, or of one network chunk, whichever is larger.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from fxmix.dsp import constants as C
from fxmix.dsp.chain import DEFAULT_STAGES, StemResult
from fxmix.dsp.profile import Profile
from fxmix.dsp.spill import SpilledStems, normalize_spilled, spill_buses

from .apply import stream_mix
from .automix import MixResult, peak_note

#: Samples per block of the normalized sum (``--model none``) written to the mix file.
SUM_BLOCK = 1 << 18
#: Seconds of a streamed mix (and of its normalized stems) kept in memory for estimates that need the audio,
#: in this many evenly spaced excerpts when the song is longer. The decisions' bus gains take ~24 MB per
#: second of audio (30 s: ~0.7 GB), under what normalizing a 20-minute stem takes.
EXCERPT_S = 30.0
N_EXCERPTS = 5


@dataclass
class NormalizedSong:
    """A song's normalized class buses on disk (:class:`fxmix.dsp.spill.SpilledStems`: also the input rate,
    input files and reading notes), what each stage decided, and how long it took."""

    stems: SpilledStems
    results: dict[str, StemResult]
    profile: str
    seconds: float


def normalize_song(
    files: Mapping[str, Sequence[Path]],
    profile: Profile,
    work_dir: Path,
    *,
    stages: Sequence[str] = DEFAULT_STAGES,
    seed: int = 0,
    on_file_done: Callable[[Path], None] | None = None,
    on_stem_done: Callable[[str], None] | None = None,
) -> NormalizedSong:
    """Read and effect-normalize one song's class buses into ``work_dir`` (8 bytes per sample and class; the
    caller removes it), one or two stems in memory at a time.

    Args:
        files: class -> the song's files of that class.
        profile, stages, seed: as :func:`fxmix.model.automix.automix`.
        on_file_done, on_stem_done: progress callbacks (each file read, each stem normalized).
    """
    t0 = time.perf_counter()
    stems = spill_buses(files, profile.classes, Path(work_dir), on_file_done=on_file_done)
    results = normalize_spilled(stems, profile, stages=stages, seed=seed, on_stem_done=on_stem_done)
    return NormalizedSong(stems, results, profile.name, time.perf_counter() - t0)


def mix_song(song: NormalizedSong, runtime, write: Callable[[np.ndarray], None]) -> MixResult:
    """Mix a normalized song into ``write``, consecutive ``(2, m)`` float32 blocks at 44.1 kHz (``n`` samples
    in all, the longest bus): the mix :func:`fxmix.model.automix.automix` makes, within float32 rounding.

    Args:
        runtime: a loaded model (as :func:`fxmix.model.apply.stream_mix` takes), or None for the normalized sum.

    Returns:
        the result; its ``mix`` and ``normalized`` hold only the samples of :func:`excerpt_ranges` (the whole
        song when it is short), joined, for estimates that need the audio (the decisions' bus gains): the
        mix went to ``write``, the normalized stems are ``song.stems``' files. Its notes include the mix's
        peak note.
    """
    t0 = time.perf_counter()
    notes = [m for r in song.results.values() for m in r.notes]
    ranges = excerpt_ranges(song.stems.n)
    kept: list[np.ndarray] = []
    note = peak_note(_stream_mix(song.stems, runtime, _keeping(write, ranges, kept)))
    if note:
        notes.append(note)
    parts = [song.stems.read(a, b - a) for a, b in ranges]
    normalized = {c: np.concatenate([p[i] for p in parts], axis=-1) for i, c in enumerate(song.stems.names)}
    if runtime is None:
        name = "none (normalized sum)"
    else:
        name = str(getattr(runtime, "name", getattr(runtime, "path", "model")))
    return MixResult(
        np.concatenate(kept, axis=-1),
        normalized,
        {c: r.params_dict() for c, r in song.results.items()},
        notes,
        name,
        {"normalize_s": song.seconds, "mix_s": time.perf_counter() - t0},
        song.profile,
    )


def excerpt_ranges(n: int, sample_rate: int = C.SAMPLE_RATE) -> list[tuple[int, int]]:
    """The sample ranges of a streamed mix kept in memory for whole-mix estimates: all of a song up to
    :data:`EXCERPT_S`, else :data:`N_EXCERPTS` evenly spaced excerpts that long in all."""
    total = int(EXCERPT_S * sample_rate)
    if n <= total:
        return [(0, n)]
    m = total // N_EXCERPTS
    return [(a, a + m) for a in (round(i * (n - m) / (N_EXCERPTS - 1)) for i in range(N_EXCERPTS))]


def _keeping(write: Callable[[np.ndarray], None], ranges, kept: list) -> Callable[[np.ndarray], None]:
    """``write``, also appending to ``kept`` the samples of consecutive blocks that fall in ``ranges``."""
    pos = [0]

    def put(block: np.ndarray) -> None:
        a0, a1 = pos[0], pos[0] + block.shape[-1]
        for a, b in ranges:
            lo, hi = max(a, a0), min(b, a1)
            if lo < hi:
                kept.append(block[:, lo - a0 : hi - a0].copy())
        pos[0] = a1
        write(block)

    return put


def _stream_mix(stems: SpilledStems, runtime, write: Callable[[np.ndarray], None]) -> float:
    """Mix the spilled stems into ``write``; returns the mix's sample peak (linear)."""
    peak = [0.0]

    def put(block) -> None:
        y = np.ascontiguousarray(np.asarray(block, np.float32).reshape(2, -1))
        if y.size:
            peak[0] = max(peak[0], float(np.max(np.abs(y))))
        write(y)

    if runtime is None:
        for a in range(0, stems.n, SUM_BLOCK):
            put(stems.read(a, min(SUM_BLOCK, stems.n - a)).sum(axis=0))
        return peak[0]
    # the network takes the stems in CLASSES order; classes the profile lacks are silence
    order = [stems.names.index(c) if c in stems.names else -1 for c in C.CLASSES]

    def read(start: int, length: int) -> torch.Tensor:
        x = stems.read(start, length)
        y = np.stack([x[i] if i >= 0 else np.zeros_like(x[0]) for i in order])
        return torch.from_numpy(y).unsqueeze(0)

    stream_mix(runtime, read, stems.n, lambda block: put(block[0].numpy()))
    return peak[0]

"""Writing audio block by block: the streamed twin of :func:`fxmix.dsp.audio.write_audio`.

:class:`AudioStreamWriter` takes consecutive ``(channels, m)`` float32 blocks at one rate, resamples them on
the way (soxr's stream, the VHQ quality of :func:`fxmix.dsp.audio.resample`) and appends them to the file,
so a long mix never exists whole in memory. The file is written under a temporary name in the destination's
folder (:func:`fxmix.dsp.audio.atomic_path`) and replaces the destination only when the writer is closed
without an error. It also measures what the notes of a written mix need: the sample peak and the count of
samples above full scale at the file's rate, and the integrated loudness at the input rate.

streaming-safe: yes (bounded state; one resampler).
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from contextlib import ExitStack
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

from .audio import atomic_path, check_audio, writing
from .errors import AudioInputError

#: soundfile container by suffix, and the default sample format of each (as write_audio writes them)
_FORMATS = {".wav": ("WAV", "FLOAT"), ".flac": ("FLAC", "PCM_24"), ".ogg": ("OGG", "VORBIS")}


class AudioStreamWriter:
    """Append ``(channels, m)`` blocks at ``in_rate`` to ``path`` at ``out_rate``; use as a context manager.

    Args:
        path: destination (.wav, .flac or .ogg).
        in_rate, out_rate: Hz of the blocks given and of the file.
        channels: channels per block.
        subtype: soundfile subtype; default FLOAT for WAV, PCM_24 for FLAC. Integer formats are clipped.
        protect: input files that must never be overwritten.

    Attributes (after the blocks): ``peak`` (linear) and ``n_over`` (samples above 1.0) at ``out_rate``,
    ``lufs`` (BS.1770 integrated loudness of the blocks at ``in_rate``, :class:`RunningLoudness`).

    Raises:
        AudioInputError: the destination is a protected input, an unknown format, or a block has NaN/inf.
        OutputError: the file cannot be written (full disk, permissions).
    """

    def __init__(self, path: str | os.PathLike, in_rate: int, out_rate: int, *, channels: int = 2,
                 subtype: str | None = None, protect: Iterable[str | os.PathLike] = ()):
        self.path = Path(path)
        if self.path.resolve() in {Path(p).resolve() for p in protect}:
            raise AudioInputError(f"{self.path}: refusing to overwrite an input file; choose another output path")
        ext = self.path.suffix.lower()
        if ext not in _FORMATS:
            raise AudioInputError(f"{self.path}: unsupported output format {ext!r}; use .wav, .flac or .ogg")
        self.format, default = _FORMATS[ext]
        self.subtype = subtype or default
        self.clip = self.subtype.startswith("PCM") or self.format == "OGG"
        self.in_rate, self.out_rate, self.channels = int(in_rate), int(out_rate), int(channels)
        self.peak, self.n_over, self.frames = 0.0, 0, 0
        # imported here: fxmix.dsp.streaming loads scipy.signal (about a second of start-up), which the
        # verbs that import this module but write no stream (`fxmix normalize`) never need
        from .streaming.meters import RunningLoudness

        self._loudness = RunningLoudness(self.in_rate)
        self._resampler = None
        if self.in_rate != self.out_rate:
            self._resampler = soxr.ResampleStream(self.in_rate, self.out_rate, self.channels, "float32", "VHQ")
        self._stack = ExitStack()
        self._file: sf.SoundFile | None = None

    @property
    def lufs(self) -> float:
        return self._loudness.integrated_lufs

    def __enter__(self) -> AudioStreamWriter:
        self._stack.enter_context(writing(self.path))
        tmp = self._stack.enter_context(atomic_path(self.path, suffix=self.path.suffix.lower() + ".part"))
        self._file = self._stack.enter_context(
            sf.SoundFile(tmp, "w", self.out_rate, self.channels, subtype=self.subtype, format=self.format)
        )
        return self

    def write(self, block: np.ndarray) -> None:
        """Append one ``(channels, m)`` block at ``in_rate`` (an empty block is skipped)."""
        if np.shape(block)[-1] == 0:
            return
        x = check_audio(np.asarray(block, np.float32), f"output {self.path}", allow_mono=False)
        if self.channels == 2:
            self._loudness.update(x)
        y = x.T if self._resampler is None else self._resampler.resample_chunk(np.ascontiguousarray(x.T))
        self._put(np.asarray(y, np.float32))

    def _put(self, y: np.ndarray) -> None:
        """Append ``(m, channels)`` samples at ``out_rate``."""
        if y.size == 0:
            return
        a = np.abs(y)
        self.peak = max(self.peak, float(a.max()))
        self.n_over += int(np.count_nonzero(a > 1.0))
        self._file.write(np.clip(y, -1.0, 1.0) if self.clip else y)
        self.frames += y.shape[0]

    def finish(self) -> None:
        """Flush the resampler: the file then holds every sample and ``peak``/``n_over`` count them all (called
        on a clean exit if not before)."""
        if self._resampler is not None:
            last = self._resampler.resample_chunk(np.zeros((0, self.channels), np.float32), last=True)
            self._resampler = None
            self._put(np.asarray(last, np.float32))

    def __exit__(self, exc_type, exc, tb) -> bool:
        if exc_type is None:
            self.finish()
        return self._stack.__exit__(exc_type, exc, tb)

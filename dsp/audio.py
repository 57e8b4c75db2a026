"""Audio I/O: the one place for the audio layout, reading, resampling and atomic writing.

Layout everywhere in fxmix: numpy ``(channels, samples)`` float32, 1 or 2 channels on input, always 2 after
:func:`read_audio` / :func:`as_stereo`. Inputs at any sample rate are resampled (soxr, high quality) to the
processing rate; outputs can be resampled back with :func:`resample`.
"""

from __future__ import annotations

import ctypes
import errno
import glob
import os
import shutil
import sys
import tempfile
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

from .constants import SAMPLE_RATE
from .errors import AudioInputError, OutputError

AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg", ".aif", ".aiff", ".mp3")


@dataclass(frozen=True)
class LoadedAudio:
    """Audio read from a file. ``audio`` is (2, n) float32 at ``sample_rate``."""

    audio: np.ndarray
    sample_rate: int
    source_rate: int
    source_channels: int
    subtype: str
    path: Path
    notes: list[str] = field(default_factory=list)  # what a reader should know (e.g. a truncated file)


def check_audio(x: np.ndarray, where: str = "audio", *, allow_mono: bool = True) -> np.ndarray:
    """Validate an audio array and return it as (2, n) float32.

    Args:
        x: (channels, samples) or (samples,) array.
        where: what to name in error messages (a file path, a track name).
        allow_mono: accept 1 channel (duplicated to 2).

    Raises:
        AudioInputError: wrong rank, more than 2 channels, no samples, NaN or inf.
    """
    x = np.asarray(x)
    if x.ndim == 1:
        x = x[None, :]
    if x.ndim != 2:
        raise AudioInputError(f"{where}: expected (channels, samples) audio, got an array of shape {x.shape}")
    if x.shape[0] > 2 and x.shape[1] <= 2:
        raise AudioInputError(
            f"{where}: got shape {x.shape}; fxmix expects (channels, samples), transpose the array first"
        )
    if x.shape[0] > 2:
        raise AudioInputError(
            f"{where}: {x.shape[0]} channels; fxmix takes mono or stereo stems, split or downmix it first"
        )
    if x.shape[1] == 0:
        raise AudioInputError(f"{where}: no samples; give a file with at least one sample")
    if not (np.isfinite(x.min()) and np.isfinite(x.max())):  # min and max propagate NaN; no mask copy
        bad = int(np.size(x) - np.count_nonzero(np.isfinite(x)))
        raise AudioInputError(f"{where}: {bad} NaN/inf samples; repair or re-export the file")
    if x.shape[0] == 1:
        if not allow_mono:
            raise AudioInputError(f"{where}: mono audio where stereo is required")
        x = np.repeat(x, 2, axis=0)
    return np.ascontiguousarray(x, dtype=np.float32)


def as_stereo(x: np.ndarray, where: str = "audio") -> np.ndarray:
    """Alias of :func:`check_audio`: validated (2, n) float32."""
    return check_audio(x, where)


def resample(x: np.ndarray, from_rate: int, to_rate: int) -> np.ndarray:
    """Resample (channels, n) audio with soxr (VHQ). Returns float32; a no-op when the rates match."""
    if int(from_rate) == int(to_rate):
        return np.ascontiguousarray(x, dtype=np.float32)
    y = soxr.resample(
        np.ascontiguousarray(x.T, dtype=np.float32), int(from_rate), int(to_rate), quality="VHQ"
    )
    y = np.asarray(y, dtype=np.float32)
    if y.ndim == 1:
        y = y[:, None]
    if y.shape[0] == 0:  # a 1-sample input can resample to nothing; keep one sample
        y = np.zeros((1, x.shape[0]), np.float32) + x[:, :1].T
    return np.ascontiguousarray(y.T)


def read_audio(path: str | os.PathLike, sample_rate: int | None = SAMPLE_RATE) -> LoadedAudio:
    """Read WAV (16/24/32-bit int, float), FLAC, OGG (anything libsndfile reads) as stereo float32.

    Args:
        path: the file.
        sample_rate: resample to this rate (Hz); ``None`` keeps the file's rate.

    Raises:
        AudioInputError: missing or unreadable file, > 2 channels, no samples, NaN/inf samples.
    """
    path = Path(path)
    if not path.exists():
        raise AudioInputError(f"{path}: file not found; check the path")
    if not path.is_file():  # a FIFO or device would block the reader forever
        raise AudioInputError(f"{path}: not a regular file (a pipe, device or folder); pass an audio file")
    try:
        info = sf.info(str(path))
        data, rate = _read_planar(path)
    except Exception as exc:  # soundfile raises RuntimeError/LibsndfileError/TypeError on bad files
        raise AudioInputError(
            f"{path}: cannot read audio ({exc}); convert it to WAV or FLAC (e.g. with ffmpeg or sox)"
        ) from exc
    audio = check_audio(data, str(path))
    notes = []
    declared = wav_declared_frames(path)
    if declared is not None and declared > audio.shape[-1]:
        notes.append(
            f"{path}: truncated: its header declares {declared} frames but the file holds {audio.shape[-1]} "
            f"({(declared - audio.shape[-1]) / rate:.3f} s missing at the end); re-export or copy it again"
        )
    target = int(sample_rate) if sample_rate else int(rate)
    audio = resample(audio, int(rate), target)
    return LoadedAudio(audio, target, int(rate), int(info.channels), str(info.subtype), path, notes)


#: frames per block when reading into or writing from the (channels, n) layout (bounds the interleaved buffer)
IO_BLOCK_FRAMES = 1 << 16


def _read_planar(path: Path) -> tuple[np.ndarray, int]:
    """(audio (channels, n) float32, rate): the file read block by block straight into the (channels, n)
    layout, so reading takes one array of the file's size instead of an interleaved one and its transpose."""
    with sf.SoundFile(str(path)) as f:
        if not 0 <= f.frames < 1 << 40:  # no usable frame count (a streamed format): read it whole
            data = f.read(dtype="float32", always_2d=True)
            return np.ascontiguousarray(data.T), int(f.samplerate)
        out = np.empty((f.channels, f.frames), np.float32)
        buf = np.empty((min(IO_BLOCK_FRAMES, max(f.frames, 1)), f.channels), np.float32)
        pos = 0
        while pos < f.frames:
            got = f.read(min(buf.shape[0], f.frames - pos), dtype="float32", always_2d=True, out=buf).shape[0]
            if got == 0:  # fewer frames than the header said: keep what is there
                break
            out[:, pos : pos + got] = buf[:got].T
            pos += got
        return out[:, :pos], int(f.samplerate)


def wav_declared_frames(path: Path) -> int | None:
    """Frames a RIFF/WAVE file's ``data`` chunk header declares (None: not a WAV, or a streaming-size header)."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(12)
            if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
                return None
            block_align = None
            while True:
                chunk = fh.read(8)
                if len(chunk) < 8:
                    return None
                cid, size = chunk[:4], int.from_bytes(chunk[4:], "little")
                if cid == b"fmt ":
                    fmt = fh.read(size)
                    block_align = int.from_bytes(fmt[12:14], "little") if len(fmt) >= 14 else None
                    fh.seek(size & 1, 1)
                elif cid == b"data":
                    if not block_align or size in (0, 0xFFFFFFFF):
                        return None
                    return size // block_align
                else:
                    fh.seek(size + (size & 1), 1)
    except OSError:
        return None


def _protected_paths(protect: Iterable[str | os.PathLike]) -> set[Path]:
    return {Path(p).resolve() for p in protect}


def write_audio(
    path: str | os.PathLike,
    audio: np.ndarray,
    sample_rate: int,
    *,
    subtype: str | None = None,
    protect: Iterable[str | os.PathLike] = (),
) -> Path:
    """Write (channels, n) audio atomically (temp file in the same folder + ``os.replace``).

    Args:
        path: destination (.wav, .flac or .ogg); folders are created.
        audio: (channels, n) float array; checked for NaN/inf.
        sample_rate: Hz.
        subtype: soundfile subtype; default FLOAT for WAV, PCM_24 for FLAC.
        protect: input files that must never be overwritten.

    Raises:
        AudioInputError: the destination is one of the protected inputs, or the audio is invalid.
    """
    path = Path(path)
    if path.resolve() in _protected_paths(protect):
        raise AudioInputError(f"{path}: refusing to overwrite an input file; choose another output path")
    audio = check_audio(audio, f"output {path}")
    ext = path.suffix.lower()
    fmt = {".wav": "WAV", ".flac": "FLAC", ".ogg": "OGG"}.get(ext)
    if fmt is None:
        raise AudioInputError(f"{path}: unsupported output format {ext!r}; use .wav, .flac or .ogg")
    if subtype is None:
        subtype = {"WAV": "FLOAT", "FLAC": "PCM_24", "OGG": "VORBIS"}[fmt]
    clip = subtype.startswith("PCM") or fmt == "OGG"
    with writing(path), atomic_path(path, suffix=ext + ".part") as tmp:
        with sf.SoundFile(tmp, "w", int(sample_rate), audio.shape[0], subtype=subtype, format=fmt) as f:
            buf = np.empty((min(IO_BLOCK_FRAMES, audio.shape[1]), audio.shape[0]), np.float32)
            for a in range(0, audio.shape[1], buf.shape[0]):  # interleaved block by block: no (n, channels) copy
                block = buf[: min(buf.shape[0], audio.shape[1] - a)]
                for c in range(audio.shape[0]):  # a channel at a time: a third of a transposing copy's time
                    block[:, c] = audio[c, a : a + block.shape[0]]
                f.write(np.clip(block, -1.0, 1.0, out=block) if clip else block)
    return path


@contextmanager
def writing(path: Path) -> Iterator[None]:
    """Turn an OS or libsndfile write failure into one clear :class:`OutputError` naming ``path``."""
    try:
        yield
    except (OSError, RuntimeError, sf.LibsndfileError) as exc:
        reason = "the disk is full" if getattr(exc, "errno", None) == errno.ENOSPC or "No space" in str(exc) else str(exc)
        raise OutputError(f"{path}: cannot write it ({reason}); free some space or choose another output path") from exc


def _read_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


#: The process's umask, read once at import (reading it means setting it, which is not thread-safe later).
_UMASK = _read_umask()


def _remove_stale(folder: Path, pattern: str) -> None:
    """Remove what an earlier run killed mid-write left behind (hidden temporary names of this output)."""
    for stale in folder.glob(pattern):
        if stale.is_dir() and not stale.is_symlink():
            shutil.rmtree(stale, ignore_errors=True)
        else:
            stale.unlink(missing_ok=True)


@contextmanager
def atomic_path(path: str | os.PathLike, suffix: str = ".part") -> Iterator[str]:
    """Yield a temporary path next to ``path``; on success it replaces ``path`` (``os.replace``), on any
    error it is removed, so a crash never leaves a half-written file. The one place for atomic writes.

    The file gets the permissions of a normal new file (0666 minus the user's umask), so another user's DAW can
    read it; temporary files of an earlier killed run for the same ``path`` are removed first."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale(path.parent, f".{glob.escape(path.name)}.*{suffix}")
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix, dir=path.parent)
    os.close(fd)
    try:
        yield tmp
        os.chmod(tmp, 0o666 & ~_UMASK)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _exchange(a: Path, b: Path) -> bool:
    """Swap two paths in one atomic step (Linux ``renameat2(RENAME_EXCHANGE)``); False where unsupported."""
    if sys.platform != "linux":
        return False
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        renameat2 = libc.renameat2
    except (OSError, AttributeError):
        return False
    at_fdcwd, rename_exchange = -100, 2
    return renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange) == 0


@contextmanager
def atomic_folder(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a new empty folder next to ``path``; on success it takes ``path``'s place whole, on any error it is
    removed and ``path`` is left as it was. So a killed run leaves the previous complete folder or the new one.

    An existing ``path`` is swapped out in one atomic step where the OS can (Linux), else moved aside first; a
    kill between those two renames leaves the previous folder under a hidden name, which the next run puts back.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    aside = path.parent / f".{path.name}.previous"
    if aside.is_dir() and not path.exists():
        os.replace(aside, path)  # an earlier run was killed between the two renames: put the old folder back
    _remove_stale(path.parent, f".{glob.escape(path.name)}.*.tmpdir")
    _remove_stale(path.parent, f".{glob.escape(path.name)}.previous")
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmpdir", dir=path.parent))
    try:
        yield tmp
        os.chmod(tmp, 0o777 & ~_UMASK)
        if not path.exists():
            os.replace(tmp, path)
        elif _exchange(tmp, path):
            shutil.rmtree(tmp)
        else:
            os.replace(path, aside)
            os.replace(tmp, path)
            shutil.rmtree(aside)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def write_text_atomic(path: str | os.PathLike, text: str) -> Path:
    """Write a text file atomically (same contract as :func:`write_audio`)."""
    with writing(Path(path)), atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8") as fh:
        fh.write(text)
    return Path(path)


def pad_to_length(x: np.ndarray, n: int) -> np.ndarray:
    """Zero-pad (or cut) (channels, m) audio to n samples."""
    if x.shape[-1] == n:
        return x
    if x.shape[-1] > n:
        return x[..., :n]
    return np.pad(x, [(0, 0)] * (x.ndim - 1) + [(0, n - x.shape[-1])])


def align_lengths(stems: Mapping[str, np.ndarray]) -> tuple[dict[str, np.ndarray], list[str]]:
    """Zero-pad all stems to the longest one. Returns the stems and one message per padded stem."""
    if not stems:
        return {}, []
    n = max(x.shape[-1] for x in stems.values())
    notes = [pad_note(name, x.shape[-1], n) for name, x in stems.items() if x.shape[-1] != n]
    return {name: pad_to_length(x, n) for name, x in stems.items()}, notes


def pad_note(name: str, length: int, n: int) -> str:
    """The note for an input of ``length`` samples zero-padded to the song's ``n``."""
    return f"{name}: {length} samples, zero-padded to {n}"


def peak_db(x: np.ndarray) -> float:
    """Sample peak in dBFS (-inf for silence); no |x| copy of the array."""
    p = max(float(x.max()), -float(x.min())) if x.size else 0.0
    return 20.0 * np.log10(p) if p > 0 else float("-inf")


def db_to_gain(db: float | np.ndarray) -> float | np.ndarray:
    return 10.0 ** (np.asarray(db) / 20.0) if isinstance(db, np.ndarray) else 10.0 ** (db / 20.0)


def gain_to_db(g: float | np.ndarray, floor_db: float = -200.0):
    g = np.maximum(np.abs(np.asarray(g, dtype=np.float64)), 10.0 ** (floor_db / 20.0))
    out = 20.0 * np.log10(g)
    return float(out) if out.ndim == 0 else out

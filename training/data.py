"""Multitrack dataset readers: MUSDB18 layout folders (WAV/FLAC) and ``.stem.mp4`` files (optional PyAV).

Layout::

    <root>/<split>/<song>/{vocals,drums,bass,other,mixture}.{wav,flac}     # MUSDB18-HQ style, or fxmix data synth
    <root>/<split>/<song>.stem.mp4                                        # MUSDB18 (needs `pip install av`)

Splits: ``train``, ``valid`` and ``test``. A root without a ``valid`` folder (plain MUSDB18) gets the standard
musdb validation songs (``musdb_valid.json``, 14 songs) as ``valid``, and ``train`` leaves them out.

Loading is lazy: the constructor only lists songs and probes file headers; audio is read in ``__getitem__``.
Songs that cannot be used (unreadable headers, no stems, shorter than ``min_duration_s``) are skipped with a
:class:`DatasetWarning` and listed in ``dataset.skipped``; a whole dataset never fails because of one song.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import os
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf

from ..dsp.audio import check_audio, read_audio, resample
from ..dsp.constants import CLASSES, SAMPLE_RATE
from ..dsp.errors import AudioInputError, ConfigError

log = logging.getLogger(__name__)

SPLITS = ("train", "valid", "test")
STEM_EXTENSIONS = (".flac", ".wav")
#: Stream order inside MUSDB18 ``.stem.mp4`` files (Native Instruments stems format).
STEM_MP4_ORDER = ("mixture", "drums", "bass", "other", "vocals")
_VALID_LIST = Path(__file__).with_name("musdb_valid.json")


class DatasetWarning(UserWarning):
    """A song was skipped (unreadable, empty or too short); the message names the file and the reason."""


@dataclass
class Song:
    """One multitrack song.

    Attributes:
        name: song folder / file name (without ``.stem.mp4``).
        stems: class -> (2, n) float32 at ``sample_rate``; a class missing on disk is zeros.
        mixture: (2, n) float32; the file's mixture, or the sum of stems when the song has no mixture file.
        sample_rate: Hz.
        duration_s: n / sample_rate.
        path: the song folder or ``.stem.mp4`` file.
    """

    name: str
    stems: dict[str, np.ndarray]
    mixture: np.ndarray
    sample_rate: int
    duration_s: float
    path: Path


def musdb_valid_songs() -> list[str]:
    """The standard MUSDB18 validation song names (data file ``musdb_valid.json``)."""
    return list(json.loads(_VALID_LIST.read_text(encoding="utf-8"))["songs"])


def _is_song_dir(p: Path) -> bool:
    return p.is_dir() and any(
        (p / f"{n}{e}").exists() for n in (*CLASSES, "mixture") for e in STEM_EXTENSIONS
    )


def _song_entries(folder: Path) -> list[Path]:
    if not folder.is_dir():
        return []
    out = [
        p
        for p in folder.iterdir()
        if not p.name.startswith(".") and (p.is_dir() or p.name.endswith(".stem.mp4"))
    ]
    return sorted(out, key=lambda p: p.name)


def _song_name(p: Path) -> str:
    return p.name[: -len(".stem.mp4")] if p.name.endswith(".stem.mp4") else p.name


def list_songs(root: str | os.PathLike, split: str) -> list[Path]:
    """Song folders / ``.stem.mp4`` files of one split, sorted by name (nothing is read).

    Raises:
        ConfigError: unknown split, or ``root`` is not a folder.
    """
    root = Path(root)
    if split not in SPLITS:
        raise ConfigError(f"split {split!r}: use one of {', '.join(SPLITS)}")
    if not root.is_dir():
        raise ConfigError(f"{root}: dataset root not found; give a folder with train/valid/test subfolders")
    if (root / split).is_dir():
        entries = _song_entries(root / split)
        if split == "train" and not (root / "valid").is_dir():
            valid = set(musdb_valid_songs())
            entries = [p for p in entries if _song_name(p) not in valid]
        return entries
    if split == "valid" and (root / "train").is_dir():
        valid = set(musdb_valid_songs())
        return [p for p in _song_entries(root / "train") if _song_name(p) in valid]
    return []


def _stem_file(folder: Path, name: str) -> Path | None:
    for ext in STEM_EXTENSIONS:
        p = folder / f"{name}{ext}"
        if p.exists():
            return p
    return None


def stem_mp4_available() -> bool:
    """True when PyAV (``pip install av``) can be imported to decode ``.stem.mp4`` files."""
    return importlib.util.find_spec("av") is not None


def probe_song(path: Path) -> float:
    """Duration (s) of a song from its file headers, without decoding audio.

    Raises:
        AudioInputError: no stems, unreadable headers, or ``.stem.mp4`` without PyAV.
    """
    if path.name.endswith(".stem.mp4"):
        if not stem_mp4_available():
            raise AudioInputError(
                f"{path}: .stem.mp4 needs PyAV; `pip install av` (or convert to WAV/FLAC folders)"
            )
        import av

        try:
            with av.open(str(path)) as container:
                n_streams = len(container.streams.audio)
                dur = container.duration / 1e6 if container.duration else 0.0
        except Exception as exc:  # PyAV raises several error types (av.error.*, OSError) on bad files
            raise AudioInputError(f"{path}: cannot open stems file ({exc})") from exc
        if n_streams < len(STEM_MP4_ORDER):
            raise AudioInputError(f"{path}: {n_streams} audio streams, a MUSDB stems file has 5")
        return float(dur)
    files = [f for f in (_stem_file(path, n) for n in (*CLASSES, "mixture")) if f is not None]
    if not files:
        raise AudioInputError(f"{path}: no stem files ({'/'.join(CLASSES)}/mixture .wav or .flac)")
    durations = []
    for f in files:
        try:
            info = sf.info(str(f))
        except Exception as exc:  # soundfile raises RuntimeError/LibsndfileError on bad files
            raise AudioInputError(f"{f}: cannot read audio header ({exc})") from exc
        durations.append(info.frames / info.samplerate if info.samplerate else 0.0)
    return float(max(durations))


def _decode_stem_mp4(path: Path, sample_rate: int) -> dict[str, np.ndarray]:
    import av

    out: dict[str, np.ndarray] = {}
    try:
        with av.open(str(path)) as container:
            streams = list(container.streams.audio)[: len(STEM_MP4_ORDER)]
            for name, stream in zip(STEM_MP4_ORDER, streams):
                container.seek(0)
                chunks = []
                rate = stream.rate
                for frame in container.decode(stream):
                    a = frame.to_ndarray()
                    if a.ndim == 2 and frame.format.is_packed:  # interleaved (1, n * channels)
                        a = a.reshape(-1, len(frame.layout.channels)).T
                    chunks.append(a.astype(np.float32))
                x = check_audio(np.concatenate(chunks, axis=1), f"{path}[{name}]")
                out[name] = resample(x, int(rate), sample_rate)
    except AudioInputError:
        raise
    except Exception as exc:  # PyAV decode errors
        raise AudioInputError(f"{path}: cannot decode stems ({exc})") from exc
    return out


def load_song(
    path: str | os.PathLike, classes: Sequence[str] = CLASSES, sample_rate: int = SAMPLE_RATE
) -> Song:
    """Read one song (folder or ``.stem.mp4``) into a :class:`Song`.

    Stems of different lengths are zero-padded to the longest; a missing class is zeros; a missing mixture is
    the sum of the stems.

    Raises:
        AudioInputError: a file cannot be read, or the song has no audio at all.
    """
    path = Path(path)
    audio: dict[str, np.ndarray] = {}
    if path.name.endswith(".stem.mp4"):
        if not stem_mp4_available():
            raise AudioInputError(f"{path}: .stem.mp4 needs PyAV; `pip install av`")
        audio = _decode_stem_mp4(path, sample_rate)
    else:
        for name in (*classes, "mixture"):
            f = _stem_file(path, name)
            if f is not None:
                audio[name] = read_audio(f, sample_rate).audio
    if not audio:
        raise AudioInputError(f"{path}: no stem files found")
    n = max(x.shape[1] for x in audio.values())

    def fit(x: np.ndarray) -> np.ndarray:
        return x if x.shape[1] == n else np.pad(x, ((0, 0), (0, n - x.shape[1])))

    stems = {c: fit(audio[c]) if c in audio else np.zeros((2, n), np.float32) for c in classes}
    if "mixture" in audio:
        mixture = fit(audio["mixture"])
    else:
        mixture = np.sum(np.stack(list(stems.values())), axis=0, dtype=np.float32)
    return Song(_song_name(path), stems, mixture, int(sample_rate), n / float(sample_rate), path)


class MultitrackDataset:
    """Lazy multitrack dataset over one split of a MUSDB18-layout root.

    Args:
        root: dataset root (``<root>/<split>/<song>/...``).
        split: ``train``, ``valid`` or ``test``.
        classes: stem classes to return, in order (default vocals, drums, bass, other).
        sample_rate: every item is resampled to this rate (Hz).
        min_duration_s: songs shorter than this are skipped with a warning.

    ``len(ds)`` counts usable songs; ``ds[i]`` reads song i (:class:`Song`); ``ds.skipped`` lists
    ``(path, reason)`` for songs left out. Iterating (``iter_songs``) also skips songs whose audio turns out to
    be unreadable at load time, with a warning.
    """

    def __init__(
        self,
        root: str | os.PathLike,
        split: str = "train",
        classes: Sequence[str] = CLASSES,
        sample_rate: int = SAMPLE_RATE,
        min_duration_s: float = 1.0,
    ) -> None:
        self.root = Path(root)
        self.split = split
        self.classes = tuple(classes)
        self.sample_rate = int(sample_rate)
        self.min_duration_s = float(min_duration_s)
        self.skipped: list[tuple[Path, str]] = []
        self.songs: list[Path] = []
        self.durations_s: list[float] = []
        for p in list_songs(self.root, split):
            if p.is_dir() and not _is_song_dir(p):
                continue  # not a song folder (e.g. a stray folder); say nothing
            try:
                dur = probe_song(p)
            except AudioInputError as exc:
                self._skip(p, str(exc))
                continue
            if dur < self.min_duration_s:
                self._skip(p, f"{p}: {dur:.2f} s is shorter than min_duration_s={self.min_duration_s:g} s")
                continue
            self.songs.append(p)
            self.durations_s.append(dur)

    def _skip(self, path: Path, reason: str) -> None:
        self.skipped.append((path, reason))
        warnings.warn(f"skipping song: {reason}", DatasetWarning, stacklevel=3)
        log.warning("skipping song: %s", reason)

    def __len__(self) -> int:
        return len(self.songs)

    def __getitem__(self, i: int) -> Song:
        return load_song(self.songs[i], self.classes, self.sample_rate)

    def iter_songs(self) -> Iterator[Song]:
        """Yield every readable song; unreadable ones are skipped with a :class:`DatasetWarning`."""
        for i, p in enumerate(self.songs):
            try:
                yield self[i]
            except AudioInputError as exc:
                self._skip(p, str(exc))

    def __repr__(self) -> str:
        return (
            f"MultitrackDataset(root={str(self.root)!r}, split={self.split!r}, songs={len(self)}, "
            f"skipped={len(self.skipped)}, sample_rate={self.sample_rate})"
        )


# ------------------------------------------------------------------------------------------- statistics
def spectral_centroid_hz(x: np.ndarray, sample_rate: int, n_fft: int = 2048, hop: int = 1024) -> float:
    """Energy-weighted mean spectral centroid (Hz) of (2, n) audio over frames above -60 dBFS RMS (0 if none)."""
    mono = np.asarray(x, np.float64).mean(axis=0)
    if mono.shape[0] < n_fft:
        mono = np.pad(mono, (0, n_fft - mono.shape[0]))
    frames = np.lib.stride_tricks.sliding_window_view(mono, n_fft)[::hop] * np.hanning(n_fft)
    mag = np.abs(np.fft.rfft(frames, axis=1))
    freqs = np.fft.rfftfreq(n_fft, 1.0 / sample_rate)
    energy = mag.sum(axis=1)
    active = np.sqrt(np.mean(frames**2, axis=1)) > 10 ** (-60 / 20)
    if not active.any():
        return 0.0
    cent = (mag[active] * freqs).sum(axis=1) / np.maximum(energy[active], 1e-12)
    return float(np.average(cent, weights=energy[active]))


def crest_factor_db(x: np.ndarray) -> float:
    """Peak-to-RMS ratio (dB) of (2, n) audio; nan for silence."""
    rms = float(np.sqrt(np.mean(np.square(x, dtype=np.float64))))
    peak = float(np.max(np.abs(x))) if x.size else 0.0
    return 20.0 * float(np.log10(peak / rms)) if rms > 0 else float("nan")

"""Finding stems on disk and loading them as class buses.

A folder's files are matched to classes by name (``<class>.*`` or ``<class>_*``); ``PATH=CLASS`` assigns any
file. Buses are read at any rate (resampled to :data:`~fxmix.dsp.constants.SAMPLE_RATE`), summed per class and
zero-padded to one length; every change to the input is reported in ``notes``.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from . import constants as C
from .audio import AUDIO_EXTENSIONS, align_lengths, read_audio
from .errors import AudioInputError, ConfigError
from .track_classes import classify_track_name

log = logging.getLogger("fxmix")


def parse_track_spec(spec: str, classes: Sequence[str] = C.CLASSES) -> tuple[Path, str | None]:
    """``PATH=CLASS`` -> (path, class); ``PATH`` alone -> (path, None). An unknown class is an error."""
    path, sep, cls = spec.rpartition("=")
    if not sep or not path:
        return Path(spec), None
    if cls not in classes:
        raise ConfigError(f"{spec!r}: class {cls!r} is not one of {list(classes)} (use PATH=CLASS)")
    return Path(path), cls


def find_stem_files(
    stems_dir: str | Path | None, tracks: Sequence[str] = (), classes: Sequence[str] = C.CLASSES
) -> dict[str, list[Path]]:
    """Class -> files. Files in ``stems_dir`` named ``<class>.*`` or ``<class>_*``; ``tracks`` adds
    ``PATH=CLASS`` assignments for any file."""
    found: dict[str, list[Path]] = {c: [] for c in classes}
    if stems_dir is not None:
        d = Path(stems_dir)
        if not d.is_dir():
            raise AudioInputError(
                f"{d}: not a folder of stems; pass the folder that holds vocals.wav, drums.wav, ..."
            )
        for f in sorted(d.iterdir()):
            if f.suffix.lower() not in AUDIO_EXTENSIONS or f.name.startswith("."):
                continue
            for c in classes:
                if f.stem == c or f.stem.startswith(c + "_"):
                    found[c].append(f)
    for spec in tracks:
        path, cls = parse_track_spec(spec, classes)
        if cls is None:
            raise ConfigError(f"--track {spec!r}: use PATH=CLASS, e.g. --track lead.wav=vocals")
        found[cls].append(path)
    if not any(found.values()):
        raise AudioInputError(
            f"{stems_dir}: no stems found; name files vocals.*, drums.*, bass.*, other.* or use --track PATH=CLASS"
        )
    return found


@dataclass
class LoadedBuses:
    buses: dict[str, np.ndarray]  # class -> (2, n) float32 at SAMPLE_RATE (silence for missing classes)
    input_rate: int
    inputs: list[Path]
    notes: list[str] = field(default_factory=list)


def load_buses(files: Mapping[str, Sequence[Path]], classes: Sequence[str] = C.CLASSES) -> LoadedBuses:
    """Read every file (any rate -> 44.1 kHz), sum the tracks of each class, zero-pad to one length."""
    notes: list[str] = []
    rates: Counter = Counter()
    per_class: dict[str, list[np.ndarray]] = {}
    inputs: list[Path] = []
    for c, paths in files.items():
        for p in paths:
            a = read_audio(p)
            rates[a.source_rate] += 1
            inputs.append(p)
            if a.source_rate != C.SAMPLE_RATE:
                notes.append(f"{p}: resampled {a.source_rate} -> {C.SAMPLE_RATE} Hz")
            if a.source_channels == 1:
                notes.append(f"{p}: mono, duplicated to stereo")
            per_class.setdefault(c, []).append(a.audio)
    n = max(x.shape[-1] for xs in per_class.values() for x in xs)
    buses = {}
    for c in classes:
        xs = per_class.get(c)
        if not xs:
            notes.append(f"{c}: no stem, using silence")
            buses[c] = np.zeros((2, n), np.float32)
            continue
        padded, pad_notes = align_lengths({f"{c}[{i}]": x for i, x in enumerate(xs + [np.zeros((2, n))])})
        notes += pad_notes[:-1] if len(pad_notes) > len(xs) else pad_notes
        buses[c] = np.sum([padded[f"{c}[{i}]"] for i in range(len(xs))], axis=0).astype(np.float32)
    # the output rate: the inputs' rate when they agree, else the most common one (ties: highest)
    input_rate = max(rates.items(), key=lambda kv: (kv[1], kv[0]))[0]
    if len(rates) > 1:
        notes.append(f"inputs at several rates {sorted(rates)}; output at {input_rate} Hz")
    return LoadedBuses(buses, input_rate, inputs, [m for m in notes if "zeros" not in m])


def load_tracks(specs: Sequence[str]) -> tuple[np.ndarray, int, list[tuple[str, str]], list[str]]:
    """``PATH`` or ``PATH=CLASS`` per track -> ((n_tracks, 2, n) float32, rate, [(class, name)], [paths]).

    Every track is read at the first track's rate (others are resampled) and zero-padded to the longest.
    A class not given is guessed from the file name (:func:`fxmix.dsp.track_classes.classify_track_name`).
    Changes to the input are logged.
    """
    audio: dict[str, np.ndarray] = {}
    tracks: list[tuple[str, str]] = []
    paths: list[str] = []
    rate: int | None = None
    for spec in specs:
        path, cls = parse_track_spec(spec)
        paths.append(str(path))
        loaded = read_audio(path, sample_rate=rate)
        rate = loaded.sample_rate
        audio[f"{len(tracks)}:{path}"] = loaded.audio
        tracks.append((cls or classify_track_name(path.stem), path.stem))
    if rate is None:
        raise AudioInputError("no stems given; pass one audio file per track")
    aligned, notes = align_lengths(audio)
    for note in notes:
        log.info("%s", note.split(":", 1)[1])
    return np.stack(list(aligned.values())).astype(np.float32), rate, tracks, paths

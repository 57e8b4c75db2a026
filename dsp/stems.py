"""Finding stems on disk and loading them as class buses.

A folder's files are matched to classes by name (``<class>.*`` or ``<class>_*``); ``PATH=CLASS`` assigns any
file. Buses are read at any rate (resampled to :data:`~fxmix.dsp.constants.SAMPLE_RATE`), summed per class and
zero-padded to one length; every change to the input is reported in ``notes``.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from . import constants as C
from .audio import AUDIO_EXTENSIONS, align_lengths, pad_note, read_audio
from .errors import AudioInputError, ConfigError
from .track_classes import ClassRules, classify_track_name, load_rules, match_track_name, parse_map_overrides

log = logging.getLogger("fxmix")


def parse_track_spec(spec: str, classes: Sequence[str] = C.CLASSES) -> tuple[Path, str | None]:
    """``PATH=CLASS`` -> (path, class); ``PATH`` alone -> (path, None). An unknown class is an error."""
    path, sep, cls = spec.rpartition("=")
    if not sep or not path:
        return Path(spec), None
    if cls not in classes:
        raise ConfigError(f"{spec!r}: class {cls!r} is not one of {list(classes)} (use PATH=CLASS)")
    return Path(path), cls


@dataclass
class StemFile:
    """One input file and the class it was given, with the reason (shown to the user and kept in reports)."""

    path: Path
    cls: str
    why: str  # "--track", "--map", "name", "rule", "no rule matched"


@dataclass
class StemMap:
    """Files -> classes for a mix, and the classes that have no file."""

    files: list[StemFile]
    classes: tuple[str, ...]

    def by_class(self) -> dict[str, list[Path]]:
        out: dict[str, list[Path]] = {c: [] for c in self.classes}
        for f in self.files:
            out[f.cls].append(f.path)
        return out

    @property
    def missing(self) -> list[str]:
        used = {f.cls for f in self.files}
        return [c for c in self.classes if c not in used]

    @property
    def warnings(self) -> list[str]:
        out = [f"{f.path.name}: no class rule matched the name; mixed as {f.cls!r} (use --map or --track)"
               for f in self.files if f.why == "no rule matched"]
        out += [f"{c}: no file for this class; the mix has no {c}" for c in self.missing]
        return out

    def table(self) -> str:
        """The file -> class table printed before work starts."""
        width = max([len(f.path.name) for f in self.files] + [4])
        lines = [f"  {f.path.name:<{width}}  -> {f.cls:<7} ({f.why})" for f in self.files]
        lines += [f"  {'(none)':<{width}}  -> {c:<7} (no file)" for c in self.missing]
        return "\n".join(lines)

    def to_list(self) -> list[dict]:
        return [{"file": str(f.path), "class": f.cls, "why": f.why} for f in self.files]


def _class_by_name(stem: str, classes: Sequence[str]) -> str | None:
    """``<class>``, ``<class>_*`` or ``<class> *`` file names, case-insensitively."""
    low = stem.casefold()
    for c in classes:
        if low == c or low.startswith(c + "_") or low.startswith(c + " "):
            return c
    return None


def resolve_stems(
    stems_dir: str | Path | None,
    tracks: Sequence[str] = (),
    maps: Sequence[str] = (),
    classes: Sequence[str] = C.CLASSES,
    rules: ClassRules | None = None,
    files: Sequence[str | Path] = (),
) -> StemMap:
    """Every audio file of ``stems_dir`` (not hidden), every file of ``files`` and every ``--track PATH=CLASS``
    -> a class.

    Order per file: ``--track`` (explicit), ``--map NAME=CLASS`` (file name or stem, case-insensitive), a file
    named after a class (``Vocals.wav``, ``drums_2.flac``), the track-name rules of
    :mod:`fxmix.dsp.track_classes` (the same as for Reaper projects and the OSC bridge: ``Lead Vox`` is vocals),
    else the rules' default class with a warning. No file is ever left out.
    """
    rules = load_rules() if rules is None else rules
    overrides = {k.casefold(): v for k, v in parse_map_overrides(maps, rules).items()}
    found: list[StemFile] = []
    if stems_dir is not None:
        d = Path(stems_dir)
        if not d.is_dir():
            raise AudioInputError(f"{d}: not a folder of stems; pass the folder that holds the track files")
        for f in sorted(d.iterdir(), key=lambda p: p.name.casefold()):
            if f.suffix.lower() not in AUDIO_EXTENSIONS or f.name.startswith("."):
                continue
            if not f.is_file():  # a pipe or device would block the reader; a folder is not a track
                raise AudioInputError(f"{f}: not a regular file (a pipe, device or folder); remove it or rename it")
            found.append(_classify_file(f, overrides, classes, rules))
    found += [_classify_file(Path(f), overrides, classes, rules) for f in files]
    files = found
    for spec in tracks:
        path, cls = parse_track_spec(spec, classes)
        if cls is None:
            raise ConfigError(f"--track {spec!r}: use PATH=CLASS, e.g. --track lead.wav=vocals")
        files = [f for f in files if f.path.resolve() != path.resolve()]
        files.append(StemFile(path, cls, "--track"))
    if not files:
        raise AudioInputError(
            f"{stems_dir}: no audio files found ({', '.join(sorted(AUDIO_EXTENSIONS))}); "
            "pass a folder of tracks or --track PATH=CLASS"
        )
    unknown = sorted({f.cls for f in files} - set(classes))
    if unknown:
        names = ", ".join(f.path.name for f in files if f.cls in unknown)
        raise ConfigError(
            f"{names}: class {unknown} is not one of the profile's classes {list(classes)}; "
            "use --map NAME=CLASS or a profile with that class"
        )
    used = {k for k in overrides if not any(k in (f.path.name.casefold(), f.path.stem.casefold()) for f in files)}
    if used:
        raise ConfigError(f"--map {sorted(used)}: no file has that name; files are {[f.path.name for f in files]}")
    return StemMap(files, tuple(classes))


def _classify_file(f: Path, overrides: dict, classes: Sequence[str], rules: ClassRules) -> StemFile:
    forced = overrides.get(f.name.casefold(), overrides.get(f.stem.casefold()))
    if forced is not None:
        return StemFile(f, forced, "--map")
    by_name = _class_by_name(f.stem, classes)
    if by_name is not None:
        return StemFile(f, by_name, "name")
    matched = match_track_name(f.stem, rules)
    if matched is not None:
        return StemFile(f, matched, "rule")
    return StemFile(f, rules.default_class, "no rule matched")


def find_stem_files(
    stems_dir: str | Path | None, tracks: Sequence[str] = (), classes: Sequence[str] = C.CLASSES
) -> dict[str, list[Path]]:
    """Class -> files (see :func:`resolve_stems`)."""
    return resolve_stems(stems_dir, tracks, classes=classes).by_class()


#: files read at once by :func:`load_buses`
READ_WORKERS = 2


@dataclass
class LoadedBuses:
    buses: dict[str, np.ndarray]  # class -> (2, n) float32 at SAMPLE_RATE (silence for missing classes)
    input_rate: int
    inputs: list[Path]
    notes: list[str] = field(default_factory=list)


def load_buses(
    files: Mapping[str, Sequence[Path]],
    classes: Sequence[str] = C.CLASSES,
    on_file_done: Callable[[Path], None] | None = None,
) -> LoadedBuses:
    """Read every file (any rate -> 44.1 kHz), sum the tracks of each class, zero-pad to one length.

    ``on_file_done`` is called after each file is read (a progress bar)."""
    notes: list[str] = []
    rates: Counter = Counter()
    per_class: dict[str, list[np.ndarray]] = {}
    inputs: list[Path] = []
    order = [(c, p) for c, paths in files.items() for p in paths]
    # two files at a time: libsndfile and the copies into the (2, n) layout run without the GIL
    with ThreadPoolExecutor(max_workers=min(READ_WORKERS, max(len(order), 1))) as pool:
        for (c, p), a in zip(order, pool.map(lambda cp: read_audio(cp[1]), order)):
            rates[a.source_rate] += 1
            inputs.append(p)
            if a.source_rate != C.SAMPLE_RATE:
                notes.append(f"{p}: resampled {a.source_rate} -> {C.SAMPLE_RATE} Hz")
            if a.source_channels == 1:
                notes.append(f"{p}: mono, duplicated to stereo")
            notes += a.notes
            per_class.setdefault(c, []).append(a.audio)
            if on_file_done is not None:
                on_file_done(p)
    n = max(x.shape[-1] for xs in per_class.values() for x in xs)
    buses = {}
    for c in classes:  # one float32 array per bus; each file's array is let go as its bus is made
        xs = per_class.pop(c, None)
        if not xs:
            notes.append(f"{c}: no stem, using silence")
            buses[c] = np.zeros((2, n), np.float32)
            continue
        notes += [pad_note(f"{c}[{i}]", x.shape[-1], n) for i, x in enumerate(xs) if x.shape[-1] != n]
        if len(xs) == 1 and xs[0].shape[-1] == n:
            buses[c] = xs.pop()  # read_audio's (2, n) float32 array is the bus
            continue
        bus = np.zeros((2, n), np.float32)
        while xs:
            x = xs.pop(0)
            bus[:, : x.shape[-1]] += x
        buses[c] = bus
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

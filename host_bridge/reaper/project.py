"""Reaper projects as data: tracks, items, sources, folders, mute/solo.

What is read (all times in seconds; RPP stores item positions in seconds whatever the timebase):

* tracks: ``NAME``, ``VOLPAN vol pan ...`` (linear gain, pan in [-1, 1]), ``MUTESOLO mute solo defeat``,
  ``IPHASE``, folders from ``ISBUS state depth_change`` (1 opens a folder, -n closes n levels);
* items: ``POSITION``, ``LENGTH``, ``LOOP``, ``MUTE``, ``FADEIN``/``FADEOUT shape length auto_length ...``,
  ``VOLPAN item_trim take_pan take_vol ...`` for the first take, ``TAKE [SEL|NULL]`` + ``TAKEVOLPAN pan vol``
  for further takes, ``SOFFS``, ``PLAYRATE``, ``CHANMODE``, the active take (``TAKE SEL``, else the first);
* sources ``<SOURCE WAVE|FLAC|MP3|VORBIS|OPUS|WAVPACK`` (``_OFFLINE_`` prefixes too) with ``FILE "..."``,
  relative to the project folder or absolute (Windows separators accepted); a missing file is also looked
  for by name in the project folder, as Reaper does.

Skipped with a warning (never silently): MIDI, video, click, empty and other non-audio sources, source
sections, play rates other than 1, track/take FX, envelopes, sends/receives, master FX.
"""

from __future__ import annotations

import logging
import math
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path, PureWindowsPath

import numpy as np
import soundfile as sf
from fxmix.dsp.constants import SAMPLE_RATE
from fxmix.dsp.errors import AudioInputError

from .rpp import Chunk, Line, parse_rpp_text

log = logging.getLogger("fxmix.reaper")


#: Source types rendered from their FILE.
AUDIO_SOURCE_TYPES = ("WAVE", "FLAC", "MP3", "VORBIS", "OPUS", "WAVPACK", "AIFF")


# ------------------------------------------------------------------------------------------ data classes
@dataclass(frozen=True)
class Item:
    """A media item with its active take resolved.

    Attributes:
        position_s, length_s: where the item sits on the timeline (seconds).
        soffs_s: take source offset: item start plays source time ``soffs_s``.
        volume: item trim x take volume (linear; negative inverts the phase).
        pan: take pan in [-1, 1].
        fade_in_s, fade_out_s, fade_in_shape, fade_out_shape: item fades (Reaper shape numbers).
        source_type: ``WAVE``, ``FLAC``, ``MIDI``, ... (``_OFFLINE_`` prefix removed).
        file: FILE as written in the project ("" when the source has none).
        path: resolved media path (None when not audio); may not exist (see ``missing``).
        skip_reason: why the item is not rendered ("" when it is).
    """

    name: str
    position_s: float
    length_s: float
    soffs_s: float
    volume: float
    pan: float
    fade_in_s: float
    fade_in_shape: int
    fade_out_s: float
    fade_out_shape: int
    loop: bool
    muted: bool
    chanmode: int
    playrate: float
    source_type: str
    file: str
    path: Path | None
    take_index: int
    n_takes: int
    skip_reason: str = ""
    file_lineno: int = -1

    @property
    def end_s(self) -> float:
        return self.position_s + self.length_s

    @property
    def renderable(self) -> bool:
        return not self.skip_reason and not self.muted

    @property
    def missing(self) -> bool:
        return self.path is not None and not self.path.exists()


@dataclass(frozen=True)
class FxSlot:
    """One plug-in of a track's FX chain: its kind (``JS``, ``VST``...), its name (a JSFX's path under
    Reaper's Effects folder), whether it is bypassed, and for a JSFX its slider values (``-`` -> None)."""

    kind: str
    name: str
    bypassed: bool
    sliders: tuple[float | None, ...] = ()


@dataclass(frozen=True)
class Track:
    """A track. ``parent`` is the index of its folder parent (None at top level); ``depth`` its nesting."""

    index: int
    name: str
    volume: float
    pan: float
    muted: bool
    solo: int
    solo_defeat: bool
    phase_invert: bool
    folder_delta: int
    parent: int | None
    depth: int
    items: tuple[Item, ...]
    fx: tuple[FxSlot, ...] = ()

    @property
    def is_folder(self) -> bool:
        return self.folder_delta > 0


@dataclass(frozen=True)
class Project:
    """A parsed project: tracks in order, warnings about everything that will not be rendered."""

    path: Path
    tracks: tuple[Track, ...]
    sample_rate: int
    warnings: tuple[str, ...]
    text: str = field(repr=False, compare=False, default="")
    #: the master track's FX chain (``<MASTERFXLIST``; fxmix does not render it) and ``MASTER_VOLUME``
    master_fx: tuple[FxSlot, ...] = ()
    master_volume: float = 1.0

    @property
    def folder(self) -> Path:
        return self.path.parent

    @property
    def length_s(self) -> float:
        """End of the last item (seconds), 0 for an empty project."""
        return max((it.end_s for t in self.tracks for it in t.items), default=0.0)

    def media_paths(self) -> list[Path]:
        return sorted({it.path for t in self.tracks for it in t.items if it.path is not None})

    def missing_media(self, only_audible: bool = True) -> list[tuple[str, Item]]:
        """(track name, item) for each item whose media file does not exist."""
        audible = audible_tracks(self) if only_audible else [True] * len(self.tracks)
        return [
            (t.name, it)
            for t in self.tracks
            if audible[t.index]
            for it in t.items
            if it.missing and (it.renderable or not only_audible)
        ]


# ----------------------------------------------------------------------------------------------- reading
#: Bounds of values read from a project: anything beyond is a damaged file, not a session (a day of timeline,
#: +60 dB of gain), and would otherwise make the renderer try to allocate petabytes.
MAX_TIME_S = 86400.0
MAX_GAIN = 1000.0


def _float(tokens: Sequence[str] | None, i: int, default: float, where: str, limit: float | None = None) -> float:
    if tokens is None or len(tokens) <= i:
        return default
    try:
        value = float(tokens[i])
    except ValueError as exc:
        raise AudioInputError(
            f"{where}: expected a number, got {tokens[i]!r}; the project is damaged"
        ) from exc
    if not math.isfinite(value):
        raise AudioInputError(f"{where}: value {tokens[i]!r} is not finite; the project is damaged")
    if limit is not None and abs(value) > limit:
        raise AudioInputError(
            f"{where}: value {tokens[i]!r} is outside +/-{limit:g}; the project is damaged (fix it in Reaper)"
        )
    return value


def _int(tokens: Sequence[str] | None, i: int, default: int, where: str) -> int:
    return int(_float(tokens, i, default, where))


def resolve_media(file: str, project_dir: Path) -> Path:
    """Resolve a FILE entry: absolute as is, relative to the project folder; Windows ``\\`` accepted.

    A file not found there is also looked for by its name directly in the project folder (Reaper does the
    same when a project is moved together with its media).
    """
    if "\\" in file and os.sep != "\\":
        win = PureWindowsPath(file)
        candidate = Path(*win.parts) if not win.anchor else Path(file)
    else:
        candidate = Path(file)
    path = candidate if candidate.is_absolute() else project_dir / candidate
    if not path.exists():
        name = PureWindowsPath(file).name if "\\" in file else Path(file).name
        fallback = project_dir / name
        if name and fallback.exists():
            return fallback
    return path


def _is_active_envelope(chunk: Chunk) -> bool:
    """An envelope chunk (VOLENV2, PANENV, ...) with at least one point."""
    return re.search(r"ENV\d*$", chunk.tag) is not None and bool(chunk.lines("PT"))


def _find_source(chunk: Chunk) -> tuple[str, Chunk | None, bool]:
    """(source type, the SOURCE chunk holding FILE, wrapped in a SECTION?) of a take's source."""
    sources = chunk.chunks("SOURCE")
    if not sources:
        return "", None, False
    src = sources[0]
    kind = src.args[0].upper() if src.args else ""
    if kind == "SECTION":
        inner = src.chunks("SOURCE")
        if inner:
            kind2 = inner[0].args[0].upper() if inner[0].args else ""
            return kind2.removeprefix("_OFFLINE_"), inner[0], True
        return "SECTION", None, True
    return kind.removeprefix("_OFFLINE_"), src, False


def _split_takes(chunk: Chunk) -> tuple[Chunk, Chunk, int, int]:
    """An ITEM chunk -> (item-level lines, the active take's lines, active take index, number of takes).

    The first take's lines come before the first TAKE line; the active take is the one flagged SEL (not
    NULL), else the first."""
    item_lines: list[Line | Chunk] = []
    takes: list[list[Line | Chunk]] = [[]]
    take_flags: list[list[str]] = [[]]
    for child in chunk.children:
        if isinstance(child, Line) and child.tokens and child.tokens[0] == "TAKE":
            takes.append([])
            take_flags.append(child.tokens[1:])
            continue
        (item_lines if len(takes) == 1 else takes[-1]).append(child)
    takes[0] = item_lines
    selected = [i for i, flags in enumerate(take_flags) if i > 0 and "SEL" in flags]
    active = selected[0] if selected else 0
    if active > 0 and "NULL" in take_flags[active]:
        active = 0
    item = Chunk("ITEM", [], chunk.lineno, chunk.end_lineno, item_lines)
    take = Chunk("TAKE", [], chunk.lineno, chunk.end_lineno, takes[active])
    return item, take, active, len(takes)


def _source_of(take: Chunk, project_dir: Path) -> tuple[str, str, Path | None, int, str]:
    """The take's source -> (type, FILE text, resolved path, FILE line number, reason to skip or "")."""
    kind, src, in_section = _find_source(take)
    file, path, lineno = "", None, -1
    if src is not None:
        file_line = src.lines("FILE")
        if file_line and len(file_line[0].tokens) > 1:
            file, lineno = file_line[0].tokens[1], file_line[0].lineno
    if kind in AUDIO_SOURCE_TYPES and file:
        path = resolve_media(file, project_dir)
    skip = ""
    if in_section:
        skip = "source section (reverse/section mode) is not supported"
    elif kind not in AUDIO_SOURCE_TYPES:
        skip = f"{kind or 'no'} source is not audio"
    elif not file:
        skip = f"{kind} source has no FILE"
    return kind, file, path, lineno, skip


def _read_item(chunk: Chunk, project_dir: Path, where: str, warnings: list[str]) -> Item:
    item, take, active, n_takes = _split_takes(chunk)
    name_tokens = take.first("NAME") or item.first("NAME")
    name = name_tokens[0] if name_tokens else ""
    where = f"{where}, item {name!r}" if name else where
    volpan = item.first("VOLPAN")
    item_trim = _float(volpan, 0, 1.0, f"{where}: VOLPAN", MAX_GAIN)
    if active == 0:
        take_pan = _float(volpan, 1, 0.0, f"{where}: VOLPAN")
        take_vol = _float(volpan, 2, 1.0, f"{where}: VOLPAN", MAX_GAIN)
    else:
        tvp = take.first("TAKEVOLPAN")
        take_pan = _float(tvp, 0, 0.0, f"{where}: TAKEVOLPAN")
        take_vol = _float(tvp, 1, 1.0, f"{where}: TAKEVOLPAN", MAX_GAIN)
    fade_in = item.first("FADEIN")
    fade_out = item.first("FADEOUT")
    fade_in_s = max(_float(fade_in, 1, 0.0, f"{where}: FADEIN", MAX_TIME_S), _float(fade_in, 2, 0.0, f"{where}: FADEIN"))
    fade_out_s = max(
        _float(fade_out, 1, 0.0, f"{where}: FADEOUT"), _float(fade_out, 2, 0.0, f"{where}: FADEOUT")
    )
    kind, file, path, lineno, skip = _source_of(take, project_dir)
    playrate = _float(take.first("PLAYRATE"), 0, 1.0, f"{where}: PLAYRATE")
    if not skip and abs(playrate - 1.0) > 1e-9:
        skip = f"play rate {playrate:g} is not supported (only 1.0)"
    if not skip and take.chunks("TAKEFX"):
        warnings.append(f"{where}: take FX are not rendered (the dry take is used)")
    if not skip and any(_is_active_envelope(c) for c in take.chunks()):
        warnings.append(f"{where}: take envelopes are not applied")
    chanmode = _int(take.first("CHANMODE"), 0, 0, f"{where}: CHANMODE")
    if not skip and chanmode not in (0, 1, 2, 3, 4):
        warnings.append(f"{where}: channel mode {chanmode} is not supported; channels used as they are")
        chanmode = 0
    return Item(
        name=name,
        position_s=_float(item.first("POSITION"), 0, 0.0, f"{where}: POSITION", MAX_TIME_S),
        length_s=max(0.0, _float(item.first("LENGTH"), 0, 0.0, f"{where}: LENGTH", MAX_TIME_S)),
        soffs_s=_float(take.first("SOFFS"), 0, 0.0, f"{where}: SOFFS", MAX_TIME_S),
        volume=item_trim * take_vol,
        pan=float(np.clip(take_pan, -1.0, 1.0)),
        fade_in_s=fade_in_s,
        fade_in_shape=_int(fade_in, 0, 0, f"{where}: FADEIN"),
        fade_out_s=fade_out_s,
        fade_out_shape=_int(fade_out, 0, 0, f"{where}: FADEOUT"),
        loop=bool(_int(item.first("LOOP"), 0, 0, f"{where}: LOOP")),
        muted=bool(_int(item.first("MUTE"), 0, 0, f"{where}: MUTE")),
        chanmode=chanmode,
        playrate=playrate,
        source_type=kind,
        file=file,
        path=path,
        take_index=active,
        n_takes=n_takes,
        skip_reason=skip,
        file_lineno=lineno,
    )


def _slider(token: str) -> float | None:
    try:
        value = float(token)
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def read_fx_chain(chunk: Chunk) -> tuple[FxSlot, ...]:
    """The plug-ins of an ``FXCHAIN`` (or ``MASTERFXLIST``) chunk in order: a ``BYPASS`` line, then the plug-in's chunk."""
    slots, bypassed = [], False
    for child in chunk.children:
        if isinstance(child, Line):
            if child.tokens and child.tokens[0] == "BYPASS":
                bypassed = len(child.tokens) > 1 and child.tokens[1] == "1"
            continue
        if child.tag in ("FXCHAIN", "CONTAINER", "COMMENT"):
            continue
        sliders: tuple[float | None, ...] = ()
        if child.tag == "JS":
            data = [ln for ln in child.children if isinstance(ln, Line)]
            values = [_slider(t) for t in data[0].tokens] if data else []
            while values and values[-1] is None:
                values.pop()
            sliders = tuple(values)
        slots.append(FxSlot(child.tag, child.args[0] if child.args else "", bypassed, sliders))
        bypassed = False
    return tuple(slots)


def parse_project(text: str, path: str | os.PathLike) -> Project:
    """Build a :class:`Project` from RPP text; ``path`` locates relative media (its folder).

    Raises:
        AudioInputError: the text is not a well-formed RPP project.
    """
    path = Path(path)
    root = parse_rpp_text(text, str(path))
    warnings: list[str] = []
    rate_tokens = root.first("SAMPLERATE")
    sample_rate = _int(rate_tokens, 0, SAMPLE_RATE, f"{path}: SAMPLERATE")
    if any(c.chunks() for c in root.chunks("MASTERFXLIST")):
        warnings.append(f"{path}: master FX are not rendered")
    tracks: list[Track] = []
    stack: list[int] = []  # open folder parents
    for i, chunk in enumerate(root.chunks("TRACK")):
        name_tokens = chunk.first("NAME")
        name = name_tokens[0] if name_tokens else f"Track {i + 1}"
        where = f"{path.name}: track {i + 1} {name!r}"
        volpan = chunk.first("VOLPAN")
        mutesolo = chunk.first("MUTESOLO")
        isbus = chunk.first("ISBUS")
        delta = _int(isbus, 1, 0, f"{where}: ISBUS")
        parent = stack[-1] if stack else None
        fx_chains = chunk.chunks("FXCHAIN")
        if fx_chains and fx_chains[0].chunks():
            warnings.append(f"{where}: track FX are not rendered")
        envs = [c.tag for c in chunk.chunks() if _is_active_envelope(c)]
        if envs:
            warnings.append(f"{where}: envelopes ({', '.join(sorted(set(envs)))}) are not applied")
        if chunk.lines("AUXRECV"):
            warnings.append(f"{where}: receives from other tracks are not rendered")
        main_send = chunk.first("MAINSEND")
        if main_send is not None and _int(main_send, 0, 1, f"{where}: MAINSEND") == 0 and parent is None:
            warnings.append(f"{where}: master send is off in Reaper; fxmix still mixes this track")
        items = []
        for item_chunk in chunk.chunks("ITEM"):
            item = _read_item(item_chunk, path.parent, where, warnings)
            if item.skip_reason:
                warnings.append(
                    f"{where}: item {item.name or item.file!r} at {item.position_s:g} s skipped: "
                    f"{item.skip_reason}"
                )
            items.append(item)
        tracks.append(
            Track(
                index=i,
                name=name,
                volume=_float(volpan, 0, 1.0, f"{where}: VOLPAN", MAX_GAIN),
                pan=float(np.clip(_float(volpan, 1, 0.0, f"{where}: VOLPAN"), -1.0, 1.0)),
                muted=bool(_int(mutesolo, 0, 0, f"{where}: MUTESOLO")),
                solo=_int(mutesolo, 1, 0, f"{where}: MUTESOLO"),
                solo_defeat=bool(_int(mutesolo, 2, 0, f"{where}: MUTESOLO")),
                phase_invert=bool(_int(chunk.first("IPHASE"), 0, 0, f"{where}: IPHASE")),
                folder_delta=delta,
                parent=parent,
                depth=len(stack),
                items=tuple(items),
                fx=read_fx_chain(fx_chains[0]) if fx_chains else (),
            )
        )
        if delta > 0:
            stack.append(i)
        elif delta < 0:
            del stack[max(0, len(stack) + delta) :]
    for message in warnings:
        log.warning(message)
    master = root.chunks("MASTERFXLIST")
    return Project(path, tuple(tracks), sample_rate, tuple(warnings), text,
                   master_fx=read_fx_chain(master[0]) if master else (),
                   master_volume=_float(root.first("MASTER_VOLUME"), 0, 1.0, f"{path.name}: MASTER_VOLUME", MAX_GAIN))


def read_project(path: str | os.PathLike) -> Project:
    """Read and parse a ``.RPP`` file (UTF-8; invalid bytes are replaced, as Reaper writes UTF-8).

    Raises:
        AudioInputError: the file is missing or not a well-formed project.
    """
    path = Path(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError as exc:
        raise AudioInputError(f"{path}: project not found; check the path") from exc
    except OSError as exc:
        raise AudioInputError(f"{path}: cannot read the project ({exc})") from exc
    return parse_project(raw.decode("utf-8", errors="replace"), path)


def check_media(project: Project) -> None:
    """Raise one error listing every missing media file of the audible tracks (nothing when all exist).

    Raises:
        AudioInputError: one or more media files are missing; the message lists each with its track.
    """
    missing = project.missing_media()
    not_files = sorted({str(it.path) for t in project.tracks for it in t.items
                        if it.renderable and it.path is not None and it.path.exists() and not it.path.is_file()})
    if not_files:  # a FIFO or device would block the renderer forever
        raise AudioInputError(
            f"{project.path}: media that are not regular files (pipes, devices, folders): {', '.join(not_files)}; "
            "point the items at audio files"
        )
    if not missing:
        return
    lines = [f"  track {name!r}: {it.file!r} -> {it.path}" for name, it in missing]
    raise AudioInputError(
        f"{project.path}: {len(missing)} media file(s) not found:\n" + "\n".join(lines) + "\n"
        "copy the files next to the project (or fix their paths in Reaper) and run again"
    )


# --------------------------------------------------------------------------------------------- rendering
def audible_tracks(project: Project) -> list[bool]:
    """Whether each track plays: not muted (nor under a muted folder) and allowed by the solo state."""
    tracks = project.tracks
    any_solo = any(t.solo for t in tracks)
    out = []
    for t in tracks:
        chain = [t]
        while chain[-1].parent is not None:
            chain.append(tracks[chain[-1].parent])
        if any(c.muted for c in chain):
            out.append(False)
        elif any_solo:
            out.append(any(c.solo for c in chain) or t.solo_defeat)
        else:
            out.append(True)
    return out


def media_info(path: Path) -> str:
    """Short description of a media file (rate, channels, duration) for ``inspect``."""
    if not path.is_file():  # never open a pipe or device: it would block
        return "not a regular file"
    try:
        info = sf.info(str(path))
    except Exception as exc:  # soundfile raises several types on unreadable files
        return f"unreadable ({exc})"
    return f"{info.samplerate} Hz, {info.channels} ch, {info.duration:.3f} s"

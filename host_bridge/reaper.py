"""Reaper ``.RPP`` projects: reader, timeline renderer and write-back of an automixed copy.

An RPP file is line-based text: ``<TAG args`` opens a chunk, a line holding ``>`` closes it, any other line is
a list of tokens (``KEY value ...``). Tokens are separated by whitespace and may be quoted with ``"``, ``'`` or
a backtick (no escapes; Reaper picks a quote the string does not contain). The parser below keeps every
line's number so that the writer can patch the original text (add a track, re-point relative media paths)
without re-serializing chunks it does not understand (plugin state, MIDI, envelopes).

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

Rendering (:func:`render_track`, :func:`render_buses`) at 44.1 kHz: item ``i`` covers timeline samples
``round(position * sr)`` up to ``round((position + length) * sr)``; its sample ``j`` is source sample
``round(soffs * sr) + j`` (silence outside the source, wrapped when the item loops). Item gain = item trim x
take volume (negative = phase invert). Pan law: stereo balance, 0 dB at centre, linear -- pan ``p`` in
[-1, 1] scales the left channel by ``min(1, 1 - p)`` and the right by ``min(1, 1 + p)`` (take pan, track pan
and each folder parent's pan in turn; a mono source is duplicated to two channels first). Fades: fade-in
gain ``f(j / n_in)`` over the first ``n_in`` samples, fade-out gain ``f((n - 1 - j) / n_out)`` over the last
``n_out`` samples, ``f`` by shape: 0 linear, 1/3 fast start ``1 - (1 - x)^2``, 2/4 fast end ``x^2``, 5/6
S-curve ``(1 - cos(pi x)) / 2`` (Reaper's curvature parameter is not read). Muted tracks, tracks under a
muted folder and muted items are skipped; when any track is soloed only soloed tracks, their folder
children and solo-defeat tracks play.
"""

from __future__ import annotations

import logging
import math
import os
import re
import uuid
from collections.abc import Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path, PureWindowsPath

import numpy as np
import soundfile as sf
from tqdm import tqdm

from ..dsp.audio import read_audio, write_text_atomic
from ..dsp.constants import SAMPLE_RATE
from ..dsp.errors import AudioInputError, ConfigError

log = logging.getLogger("fxmix.reaper")

#: Source types rendered from their FILE.
AUDIO_SOURCE_TYPES = ("WAVE", "FLAC", "MP3", "VORBIS", "OPUS", "WAVPACK", "AIFF")
#: Name of the track :func:`write_project_copy` adds.
FXMIX_TRACK_NAME = "fxmix mix"

_QUOTES = "\"'`"


# ----------------------------------------------------------------------------------------------- parsing
@dataclass
class Line:
    """One attribute line inside a chunk: its tokens and its 0-based line number in the file."""

    tokens: list[str]
    lineno: int


@dataclass
class Chunk:
    """``<TAG args ... >``: ``children`` holds :class:`Line` and :class:`Chunk` in file order."""

    tag: str
    args: list[str]
    lineno: int
    end_lineno: int = -1
    children: list[Line | Chunk] = field(default_factory=list)

    def lines(self, key: str) -> list[Line]:
        return [c for c in self.children if isinstance(c, Line) and c.tokens and c.tokens[0] == key]

    def first(self, key: str) -> list[str] | None:
        """Arguments of the first line starting with ``key`` (without the key), or None."""
        found = self.lines(key)
        return found[0].tokens[1:] if found else None

    def chunks(self, tag: str | None = None) -> list[Chunk]:
        return [c for c in self.children if isinstance(c, Chunk) and (tag is None or c.tag == tag)]


def tokenize(line: str) -> list[str]:
    """Split one RPP line into tokens (quotes ``"``, ``'`` or backtick, no escapes)."""
    tokens: list[str] = []
    i, n = 0, len(line)
    while i < n:
        ch = line[i]
        if ch.isspace():
            i += 1
            continue
        if ch in _QUOTES:
            end = line.find(ch, i + 1)
            if end < 0:  # unterminated: the rest of the line
                end = n
            tokens.append(line[i + 1 : end])
            i = end + 1
            continue
        j = i
        while j < n and not line[j].isspace():
            j += 1
        tokens.append(line[i:j])
        i = j
    return tokens


def quote(value: str) -> str:
    """Quote a string the way Reaper does: ``"`` unless it contains one, then ``'``, then a backtick."""
    for q in _QUOTES:
        if q not in value:
            return f"{q}{value}{q}"
    return "`" + value.replace("`", "'") + "`"


def parse_rpp_text(text: str, where: str = "project") -> Chunk:
    """Parse RPP text into its root chunk (``REAPER_PROJECT``). CRLF, LF and a UTF-8 BOM are accepted.

    Raises:
        AudioInputError: not an RPP project (no ``<REAPER_PROJECT`` first), or unbalanced chunks.
    """
    lines = text.lstrip("\ufeff").splitlines()
    stack: list[Chunk] = []
    root: Chunk | None = None
    for lineno, raw in enumerate(lines):
        stripped = raw.strip()
        if not stripped:
            continue
        if stripped.startswith("<"):
            tokens = tokenize(stripped[1:])
            chunk = Chunk(tokens[0] if tokens else "", tokens[1:], lineno)
            if stack:
                stack[-1].children.append(chunk)
            elif root is None:
                root = chunk
            else:
                raise AudioInputError(f"{where}: line {lineno + 1}: text after the end of the project")
            stack.append(chunk)
        elif stripped == ">":
            if not stack:
                raise AudioInputError(f"{where}: line {lineno + 1}: '>' closes no chunk; the file is damaged")
            stack.pop().end_lineno = lineno
        elif stack:
            stack[-1].children.append(Line(tokenize(stripped), lineno))
    if root is None or root.tag != "REAPER_PROJECT":
        raise AudioInputError(f"{where}: not a Reaper project (no '<REAPER_PROJECT' chunk); give a .RPP file")
    if stack:
        raise AudioInputError(
            f"{where}: chunk <{stack[-1].tag} opened at line {stack[-1].lineno + 1} is never closed; "
            "the file is truncated or damaged"
        )
    return root


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
def _float(tokens: Sequence[str] | None, i: int, default: float, where: str) -> float:
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


def _read_item(chunk: Chunk, project_dir: Path, where: str, warnings: list[str]) -> Item:
    # Split the item's children into takes: the first take's lines come before the first TAKE line.
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

    name_tokens = take.first("NAME") or item.first("NAME")
    name = name_tokens[0] if name_tokens else ""
    where = f"{where}, item {name!r}" if name else where
    volpan = item.first("VOLPAN")
    item_trim = _float(volpan, 0, 1.0, f"{where}: VOLPAN")
    if active == 0:
        take_pan = _float(volpan, 1, 0.0, f"{where}: VOLPAN")
        take_vol = _float(volpan, 2, 1.0, f"{where}: VOLPAN")
    else:
        tvp = take.first("TAKEVOLPAN")
        take_pan = _float(tvp, 0, 0.0, f"{where}: TAKEVOLPAN")
        take_vol = _float(tvp, 1, 1.0, f"{where}: TAKEVOLPAN")
    fade_in = item.first("FADEIN")
    fade_out = item.first("FADEOUT")
    fade_in_s = max(_float(fade_in, 1, 0.0, f"{where}: FADEIN"), _float(fade_in, 2, 0.0, f"{where}: FADEIN"))
    fade_out_s = max(
        _float(fade_out, 1, 0.0, f"{where}: FADEOUT"), _float(fade_out, 2, 0.0, f"{where}: FADEOUT")
    )
    kind, src, in_section = _find_source(take)
    file, path, lineno = "", None, -1
    skip = ""
    if src is not None:
        file_line = src.lines("FILE")
        if file_line and len(file_line[0].tokens) > 1:
            file, lineno = file_line[0].tokens[1], file_line[0].lineno
    if kind in AUDIO_SOURCE_TYPES and file:
        path = resolve_media(file, project_dir)
    if in_section:
        skip = "source section (reverse/section mode) is not supported"
    elif kind not in AUDIO_SOURCE_TYPES:
        skip = f"{kind or 'no'} source is not audio"
    elif not file:
        skip = f"{kind} source has no FILE"
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
    mute = item.first("MUTE")
    return Item(
        name=name,
        position_s=_float(item.first("POSITION"), 0, 0.0, f"{where}: POSITION"),
        length_s=max(0.0, _float(item.first("LENGTH"), 0, 0.0, f"{where}: LENGTH")),
        soffs_s=_float(take.first("SOFFS"), 0, 0.0, f"{where}: SOFFS"),
        volume=item_trim * take_vol,
        pan=float(np.clip(take_pan, -1.0, 1.0)),
        fade_in_s=fade_in_s,
        fade_in_shape=_int(fade_in, 0, 0, f"{where}: FADEIN"),
        fade_out_s=fade_out_s,
        fade_out_shape=_int(fade_out, 0, 0, f"{where}: FADEOUT"),
        loop=bool(_int(item.first("LOOP"), 0, 0, f"{where}: LOOP")),
        muted=bool(_int(mute, 0, 0, f"{where}: MUTE")),
        chanmode=chanmode,
        playrate=playrate,
        source_type=kind,
        file=file,
        path=path,
        take_index=active,
        n_takes=len(takes),
        skip_reason=skip,
        file_lineno=lineno,
    )


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
    if root.chunks("MASTERFXLIST"):
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
                volume=_float(volpan, 0, 1.0, f"{where}: VOLPAN"),
                pan=float(np.clip(_float(volpan, 1, 0.0, f"{where}: VOLPAN"), -1.0, 1.0)),
                muted=bool(_int(mutesolo, 0, 0, f"{where}: MUTESOLO")),
                solo=_int(mutesolo, 1, 0, f"{where}: MUTESOLO"),
                solo_defeat=bool(_int(mutesolo, 2, 0, f"{where}: MUTESOLO")),
                phase_invert=bool(_int(chunk.first("IPHASE"), 0, 0, f"{where}: IPHASE")),
                folder_delta=delta,
                parent=parent,
                depth=len(stack),
                items=tuple(items),
            )
        )
        if delta > 0:
            stack.append(i)
        elif delta < 0:
            del stack[max(0, len(stack) + delta) :]
    for message in warnings:
        log.warning(message)
    return Project(path, tuple(tracks), sample_rate, tuple(warnings), text)


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


def balance_gains(pan: float) -> np.ndarray:
    """(2,) linear (left, right) gains of the stereo balance pan law (0 dB at centre)."""
    p = float(np.clip(pan, -1.0, 1.0))
    return np.array([min(1.0, 1.0 - p), min(1.0, 1.0 + p)], dtype=np.float64)


def track_gains(project: Project, index: int) -> np.ndarray:
    """(2,) per-channel gain of a track: its volume, phase and pan, then each folder parent's in turn."""
    g = np.ones(2)
    t: Track | None = project.tracks[index]
    while t is not None:
        g *= t.volume * (-1.0 if t.phase_invert else 1.0) * balance_gains(t.pan)
        t = project.tracks[t.parent] if t.parent is not None else None
    return g


def fade_curve(x: np.ndarray, shape: int) -> np.ndarray:
    """Fade gain for ``x`` in [0, 1] (0 = silent end); see the module docstring for the shapes."""
    x = np.clip(x, 0.0, 1.0)
    if shape in (1, 3):
        return 1.0 - (1.0 - x) ** 2
    if shape in (2, 4):
        return x**2
    if shape in (5, 6):
        return 0.5 - 0.5 * np.cos(np.pi * x)
    return x


def _to_samples(t_s: float, sample_rate: int) -> int:
    return int(round(t_s * sample_rate))


def _apply_chanmode(audio: np.ndarray, chanmode: int) -> np.ndarray:
    if audio.shape[0] == 1:
        return audio
    if chanmode == 1:
        return audio[::-1]
    if chanmode == 2:
        return np.repeat(audio.mean(axis=0, keepdims=True), 2, axis=0)
    if chanmode in (3, 4):
        return np.repeat(audio[chanmode - 3 : chanmode - 2], 2, axis=0)
    return audio


def place_item(
    item: Item,
    source: np.ndarray,
    out: np.ndarray,
    *,
    start_sample: int,
    gains: np.ndarray,
    sample_rate: int = SAMPLE_RATE,
) -> None:
    """Add one item into ``out`` (in place), placed sample-exactly.

    Args:
        item: the item (its fades, offset, volume and pan are applied).
        source: (2, n_src) float32 source audio at ``sample_rate``.
        out: (2, n_out) float32 buffer; its sample 0 is timeline sample ``start_sample``.
        start_sample: timeline sample of ``out[:, 0]``.
        gains: (2,) per-channel gain applied on top of the item's own (track and folder gains).
        sample_rate: Hz.
    """
    n_out = out.shape[1]
    n_src = source.shape[1]
    pos = _to_samples(item.position_s, sample_rate)
    n_item = _to_samples(item.end_s, sample_rate) - pos
    offset = pos - start_sample  # where item sample 0 lands in out
    j0, j1 = max(0, -offset), min(n_item, n_out - offset)
    if j1 <= j0 or n_src == 0:
        return
    soffs = _to_samples(item.soffs_s, sample_rate)
    g = (gains * item.volume * balance_gains(item.pan)).astype(np.float32)[:, None]
    src = _apply_chanmode(source, item.chanmode)
    k0, k1 = soffs + j0, soffs + j1
    if item.loop and (k0 < 0 or k1 > n_src):
        seg = src[:, np.arange(k0, k1) % n_src]
        lo, hi = j0, j1
    else:
        a, b = max(k0, 0), min(k1, n_src)
        if b <= a:
            return
        seg = src[:, a:b]
        lo, hi = a - soffs, b - soffs  # item-sample range actually covered by the source
    n_in = _to_samples(item.fade_in_s, sample_rate)
    n_fo = _to_samples(item.fade_out_s, sample_rate)
    # Fade regions in item samples: [lo, e1) fades in, [e2, hi) fades out, [e1, e2) is plain.
    e1 = min(max(n_in, lo), hi)
    e2 = min(max(n_item - n_fo, lo), hi)
    regions = [(lo, e1, True), (e1, e2, False), (e2, hi, True)] if e1 <= e2 else [(lo, hi, True)]
    for a, b, faded in regions:
        if b <= a:
            continue
        part = seg[:, a - lo : b - lo]
        dst = out[:, offset + a : offset + b]
        if not faded:
            for c in range(2):  # per channel: fast on the transposed (strided) source view
                dst[c] += part[min(c, part.shape[0] - 1)] * g[c, 0]
            continue
        j = np.arange(a, b, dtype=np.float64)
        env = np.ones(b - a, dtype=np.float64)
        if n_in > 0:
            m = j < n_in
            env[m] *= fade_curve(j[m] / n_in, item.fade_in_shape)
        if n_fo > 0:
            m = j >= n_item - n_fo
            env[m] *= fade_curve((n_item - 1 - j[m]) / n_fo, item.fade_out_shape)
        env32 = env.astype(np.float32)
        for c in range(2):
            dst[c] += part[min(c, part.shape[0] - 1)] * g[c, 0] * env32


def load_source(path: Path, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """(channels, n) float32 at ``sample_rate``; 1 or 2 channels (mono broadcasts when placed).

    Fast path: a file already at the rate is used as read (a transposed view, no copy, no NaN scan; the
    buses are checked once at the end). Anything else goes through ``read_audio`` (resampling, checks).
    """
    audio = None
    try:
        data, rate = sf.read(str(path), dtype="float32", always_2d=True)
        if rate == sample_rate and data.shape[1] in (1, 2) and data.shape[0] > 0:
            audio = data.T
    except Exception:  # unreadable here: read_audio below raises the typed, explained error
        audio = None
    return read_audio(path, sample_rate).audio if audio is None else audio


def _track_paths(track: Track) -> list[Path]:
    return list(dict.fromkeys(it.path for it in track.items if it.renderable and it.path is not None))


def window_samples(
    project: Project, start_s: float = 0.0, end_s: float | None = None, sample_rate: int = SAMPLE_RATE
) -> tuple[int, int]:
    """(start sample, number of samples) of the render window; ``end_s`` None = end of the last item.

    Raises:
        ConfigError: negative start, or an end not after the start.
    """
    if start_s < 0:
        raise ConfigError(f"--start {start_s:g}: must be >= 0 seconds")
    end = project.length_s if end_s is None else end_s
    start_n, end_n = _to_samples(start_s, sample_rate), _to_samples(end, sample_rate)
    if end_n <= start_n:
        raise ConfigError(
            f"render window {start_s:g}..{end:g} s is empty (project ends at {project.length_s:.3f} s); "
            "give --end after --start"
        )
    return start_n, end_n - start_n


def _render_into(
    project: Project,
    index: int,
    out: np.ndarray,
    start_n: int,
    sources: Mapping[Path, np.ndarray],
    sample_rate: int,
) -> None:
    gains = track_gains(project, index)
    for item in project.tracks[index].items:
        if item.renderable and item.path is not None:
            place_item(
                item, sources[item.path], out, start_sample=start_n, gains=gains, sample_rate=sample_rate
            )


def render_track(
    project: Project,
    index: int,
    *,
    start_s: float = 0.0,
    end_s: float | None = None,
    sample_rate: int = SAMPLE_RATE,
) -> np.ndarray:
    """Render one track's own items (not its folder children) with track and folder gains applied.

    Mute and solo are not looked at here (see :func:`audible_tracks`); muted and skipped items are.

    Args:
        project: the project.
        index: track index.
        start_s, end_s: render window (seconds); ``end_s`` None = end of the project.
        sample_rate: Hz (sources are resampled to it).

    Returns:
        (2, n) float32 timeline of the window.

    Raises:
        AudioInputError: a media file is missing or unreadable.
    """
    start_n, n = window_samples(project, start_s, end_s, sample_rate)
    out = np.zeros((2, n), dtype=np.float32)
    track = project.tracks[index]
    missing = [str(p) for p in _track_paths(track) if not p.exists()]
    if missing:
        raise AudioInputError(f"track {track.name!r}: media not found: {', '.join(missing)}")
    sources = {p: load_source(p, sample_rate) for p in _track_paths(track)}
    _render_into(project, index, out, start_n, sources, sample_rate)
    if not np.isfinite(out).all():
        raise AudioInputError(
            f"track {project.tracks[index].name!r}: NaN/inf samples in its media; repair them"
        )
    return out


def render_buses(
    project: Project,
    classes: Sequence[str],
    *,
    start_s: float = 0.0,
    end_s: float | None = None,
    sample_rate: int = SAMPLE_RATE,
    progress: bool = False,
) -> dict[str, np.ndarray]:
    """Render every audible track into its class bus.

    Args:
        project: the project (call :func:`check_media` first for one error listing all missing files).
        classes: one class per track (see ``track_classes.assign_classes``).
        start_s, end_s: render window (seconds); ``end_s`` None = end of the project.
        sample_rate: Hz.
        progress: show a tqdm bar over tracks.

    Returns:
        {class: (2, n) float32}, only for classes that have at least one audible track with items.
    """
    if len(classes) != len(project.tracks):
        raise ConfigError(f"render_buses: {len(classes)} classes for {len(project.tracks)} tracks")
    check_media(project)
    start_n, n = window_samples(project, start_s, end_s, sample_rate)
    audible = audible_tracks(project)
    todo = [t for t in project.tracks if audible[t.index] and any(it.renderable for it in t.items)]
    buses: dict[str, np.ndarray] = {}
    # Files of the next track load in a worker thread (libsndfile releases the GIL) while this one is placed.
    with ThreadPoolExecutor(max_workers=1) as pool:
        pending: dict[Path, Future] = {}

        def prefetch(k: int) -> None:
            if k < len(todo):
                for p in _track_paths(todo[k]):
                    if p not in pending:
                        pending[p] = pool.submit(load_source, p, sample_rate)

        prefetch(0)
        for k, track in enumerate(tqdm(todo, desc="render tracks", unit="track", disable=not progress)):
            prefetch(k + 1)
            sources = {p: pending[p].result() for p in _track_paths(track)}
            bus = buses.setdefault(classes[track.index], np.zeros((2, n), dtype=np.float32))
            _render_into(project, track.index, bus, start_n, sources, sample_rate)
            keep = set(_track_paths(todo[k + 1])) if k + 1 < len(todo) else set()
            for p in [p for p in pending if p not in keep]:
                del pending[p]
    for name, bus in buses.items():
        if not np.isfinite(bus).all():
            bad = [
                str(p)
                for p in project.media_paths()
                if p.exists() and not np.isfinite(sf.read(str(p), dtype="float32")[0]).all()
            ]
            raise AudioInputError(
                f"{project.path}: the {name} bus has NaN/inf samples (from {', '.join(bad) or 'an item'}); "
                "repair or re-export those files"
            )
    return buses


# ---------------------------------------------------------------------------------------------- writing
def _source_file_lines(chunk: Chunk) -> list[tuple[int, str]]:
    """(line number, path) of every FILE line inside a SOURCE chunk (all takes, nested sections too)."""
    found = []
    for child in chunk.children:
        if isinstance(child, Chunk):
            if child.tag == "SOURCE":
                found += [(ln.lineno, ln.tokens[1]) for ln in child.lines("FILE") if len(ln.tokens) > 1]
            found += _source_file_lines(child)
    return found


def _rel_or_abs(path: Path, folder: Path) -> str:
    try:
        return os.path.relpath(path.resolve(), folder.resolve())
    except ValueError:  # another drive on Windows
        return str(path.resolve())


def _guid(*parts: str) -> str:
    return "{" + str(uuid.uuid5(uuid.NAMESPACE_URL, "fxmix:" + "|".join(parts))).upper() + "}"


def fxmix_track_lines(
    mix_file: str,
    *,
    position_s: float,
    length_s: float,
    notes: Sequence[str] = (),
    solo: bool = True,
    indent: str = "  ",
) -> list[str]:
    """RPP lines of the added track: one item playing ``mix_file`` at ``position_s``, notes on the item."""
    key = f"{mix_file}|{position_s}|{length_s}"
    i1, i2 = indent, indent * 2
    lines = [
        f"<TRACK {_guid('track', key)}",
        f"{i1}NAME {quote(FXMIX_TRACK_NAME)}",
        f"{i1}VOLPAN 1 0 -1 -1 1",
        f"{i1}MUTESOLO 0 {1 if solo else 0} 0",
        f"{i1}IPHASE 0",
        f"{i1}ISBUS 0 0",
        f"{i1}MAINSEND 1 0",
        f"{i1}<ITEM",
        f"{i2}POSITION {position_s:.14f}",
        f"{i2}SNAPOFFS 0",
        f"{i2}LENGTH {length_s:.14f}",
        f"{i2}LOOP 0",
        f"{i2}ALLTAKES 0",
        f"{i2}FADEIN 0 0 0",
        f"{i2}FADEOUT 0 0 0",
        f"{i2}MUTE 0 0",
        f"{i2}SEL 0",
        f"{i2}IGUID {_guid('item', key)}",
    ]
    if notes:
        lines.append(f"{i2}<NOTES")
        lines += [f"{i2}{indent}|{n}" for n in notes]
        lines.append(f"{i2}>")
    lines += [
        f"{i2}NAME {quote(FXMIX_TRACK_NAME)}",
        f"{i2}VOLPAN 1 0 1 -1",
        f"{i2}SOFFS 0",
        f"{i2}PLAYRATE 1 1 0 -1 0 0.0025",
        f"{i2}CHANMODE 0",
        f"{i2}GUID {_guid('take', key)}",
        f"{i2}<SOURCE {'FLAC' if mix_file.lower().endswith('.flac') else 'WAVE'}",
        f"{i2}{indent}FILE {quote(mix_file)}",
        f"{i2}>",
        f"{i1}>",
        ">",
    ]
    return lines


def write_project_copy(
    project: Project,
    out_path: str | os.PathLike,
    mix_path: str | os.PathLike,
    *,
    position_s: float,
    length_s: float,
    notes: Sequence[str] = (),
    solo: bool = True,
) -> Path:
    """Write a copy of the project with an added "fxmix mix" track (atomic; never over the input).

    The original text is kept line for line (its line endings too); the new track goes after the last track
    (before the first one when the last track leaves a folder open). Relative media paths are re-pointed
    when the copy lives in another folder, so the copy plays the same files.

    Args:
        project: the parsed project (its ``text`` is the original file).
        out_path: where to write the copy (.RPP).
        mix_path: the rendered mix the new item plays (written relative to the copy when possible).
        position_s, length_s: where the mix item sits on the timeline (seconds).
        notes: item note lines (per-track choices, class parameters); newlines are not allowed in a line.
        solo: solo the fxmix track so the project opens playing the automix (unsolo to hear the original).

    Raises:
        AudioInputError: ``out_path`` is the input project, or the project has no text.
    """
    out_path = Path(out_path)
    if out_path.resolve() == project.path.resolve():
        raise AudioInputError(
            f"{out_path}: refusing to overwrite the input project; choose another --write-rpp path"
        )
    if not project.text:
        raise AudioInputError(f"{project.path}: no project text to copy; read it with read_project")
    newline = "\r\n" if "\r\n" in project.text else "\n"
    lines = project.text.lstrip("\ufeff").splitlines()
    root = parse_rpp_text(project.text, str(project.path))
    out_dir = out_path.parent
    if out_dir.resolve() != project.folder.resolve():
        for lineno, file in _source_file_lines(root):
            if Path(file).is_absolute() or PureWindowsPath(file).anchor or not file:
                continue
            old = lines[lineno]
            tokens = tokenize(old.strip())
            indent = old[: len(old) - len(old.lstrip())]
            new_file = _rel_or_abs(resolve_media(file, project.folder), out_dir)
            lines[lineno] = indent + " ".join([tokens[0], quote(new_file)] + tokens[2:])
    for note in notes:
        if "\n" in note or "\r" in note:
            raise AudioInputError(
                "write_project_copy: a note line contains a newline; pass one line per entry"
            )
    track_chunks = root.chunks("TRACK")
    depth = sum(t.folder_delta for t in project.tracks)
    if track_chunks and depth <= 0:
        insert_at = track_chunks[-1].end_lineno + 1
        base_indent = lines[track_chunks[-1].lineno][
            : len(lines[track_chunks[-1].lineno]) - len(lines[track_chunks[-1].lineno].lstrip())
        ]
    elif track_chunks:
        insert_at = track_chunks[0].lineno
        base_indent = lines[insert_at][: len(lines[insert_at]) - len(lines[insert_at].lstrip())]
    else:
        insert_at, base_indent = root.end_lineno, "  "
    new = fxmix_track_lines(
        _rel_or_abs(Path(mix_path), out_dir), position_s=position_s, length_s=length_s, notes=notes, solo=solo
    )
    new = [base_indent + s for s in new]
    text = newline.join(lines[:insert_at] + new + lines[insert_at:]) + newline
    # The copy must parse again.
    parse_rpp_text(text, str(out_path))
    return write_text_atomic(out_path, text)


def suggest_track_settings(
    project: Project,
    classes: Sequence[str],
    class_gain_db: Mapping[str, float],
    class_pan_shift: Mapping[str, float] | None = None,
) -> list[tuple[Track, str, float, float]]:
    """Per-track suggested (volume, pan): the track's own values moved by its class's change.

    Returns:
        (track, class, suggested linear volume, suggested pan) for every track.
    """
    shifts = class_pan_shift or {}
    out = []
    for t in project.tracks:
        c = classes[t.index]
        vol = t.volume * 10.0 ** (class_gain_db.get(c, 0.0) / 20.0)
        out.append((t, c, vol, float(np.clip(t.pan + shifts.get(c, 0.0), -1.0, 1.0))))
    return out


def media_info(path: Path) -> str:
    """Short description of a media file (rate, channels, duration) for ``inspect``."""
    try:
        info = sf.info(str(path))
    except Exception as exc:  # soundfile raises several types on unreadable files
        return f"unreadable ({exc})"
    return f"{info.samplerate} Hz, {info.channels} ch, {info.duration:.3f} s"

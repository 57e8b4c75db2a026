"""Write-back: a copy of the project with an added track that plays the automix, media paths re-pointed."""

from __future__ import annotations

import os
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path, PureWindowsPath

import numpy as np
from fxmix.dsp.audio import write_text_atomic
from fxmix.dsp.errors import AudioInputError

from .project import Project, Track, resolve_media
from .rpp import Chunk, parse_rpp_text, quote, tokenize

#: Name of the track :func:`write_project_copy` adds.
FXMIX_TRACK_NAME = "fxmix mix"


@dataclass(frozen=True)
class TrackSettings:
    """What the written copy sets on one track: ``VOLPAN`` volume (linear) and pan (-1..1, Reaper's), and
    plug-in lines appended to its ``FXCHAIN`` (each plug-in as Reaper writes it: ``BYPASS``, its chunk,
    ``FLOATPOS``, ``FXID``, ``WAK``; see :func:`fxmix.plugin_presets.rfxchain.chain_text`)."""

    volume: float
    pan: float
    fx_lines: tuple[str, ...] = ()


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
    mute: bool = False,
    track_settings: Mapping[int, TrackSettings] | None = None,
    master_fx_lines: Sequence[str] = (),
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
        mute: mute the fxmix track (the tracks themselves carry the decisions; unmute it to compare).
        track_settings: per track index, the decided volume, pan and plug-ins written into that track.
        master_fx_lines: plug-in lines (as :class:`TrackSettings`' ``fx_lines``) appended to the master track's
            FX chain (``<MASTERFXLIST``, made before the first track when the project has none; a
            ``MASTER_FX 0``, the master chain bypassed, is turned on).

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
        _repoint_media(lines, root, project.folder, out_dir)
    for note in notes:
        if "\n" in note or "\r" in note:
            raise AudioInputError(
                "write_project_copy: a note line contains a newline; pass one line per entry"
            )
    track_chunks = root.chunks("TRACK")
    insert_at, base_indent = _new_track_place(lines, root, sum(t.folder_delta for t in project.tracks))
    new = fxmix_track_lines(
        _rel_or_abs(Path(mix_path), out_dir), position_s=position_s, length_s=length_s, notes=notes, solo=solo
    )
    if mute:
        new = [ln.replace("MUTESOLO 0 ", "MUTESOLO 1 ", 1) if ln.lstrip().startswith("MUTESOLO") else ln for ln in new]
    inserts: dict[int, list[str]] = {insert_at: [base_indent + s for s in new]}
    for index, settings in (track_settings or {}).items():
        _set_track(lines, inserts, track_chunks[index], settings)
    if master_fx_lines:
        _set_master(lines, inserts, root, master_fx_lines)
    out_lines: list[str] = []
    for k, line in enumerate(lines + [None]):
        out_lines += inserts.get(k, [])
        if line is not None:
            out_lines.append(line)
    text = newline.join(out_lines) + newline
    # The copy must parse again.
    parse_rpp_text(text, str(out_path))
    return write_text_atomic(out_path, text)


def _new_track_place(lines: list[str], root: Chunk, depth: int) -> tuple[int, str]:
    """(line, indent) of the added track: after the last track, before the first when the last leaves a
    folder open (``depth`` > 0), at the project's end when it has none."""
    tracks = root.chunks("TRACK")
    if tracks and depth <= 0:
        return tracks[-1].end_lineno + 1, _indent_of(lines[tracks[-1].lineno])
    if tracks:
        return tracks[0].lineno, _indent_of(lines[tracks[0].lineno])
    return root.end_lineno, "  "


def _repoint_media(lines: list[str], root: Chunk, project_dir: Path, out_dir: Path) -> None:
    """Rewrite relative FILE paths so that a copy in ``out_dir`` plays the same media."""
    for lineno, file in _source_file_lines(root):
        if Path(file).is_absolute() or PureWindowsPath(file).anchor or not file:
            continue
        old = lines[lineno]
        tokens = tokenize(old.strip())
        new_file = _rel_or_abs(resolve_media(file, project_dir), out_dir)
        lines[lineno] = _indent_of(old) + " ".join([tokens[0], quote(new_file)] + tokens[2:])


def volpan_from_gains(left: float, right: float) -> tuple[float, float]:
    """``(volume, pan)`` of a track whose channel gains should be ``left``, ``right`` (linear, >= 0) under the
    stereo balance pan law the renderer reads projects with (:func:`fxmix.host_bridge.reaper.render.balance_gains`)."""
    top = max(float(left), float(right))
    if top <= 0.0:
        return 0.0, 0.0
    return top, (float(right) / float(left) - 1.0 if left >= right else 1.0 - float(left) / float(right))


def _indent_of(line: str) -> str:
    return line[: len(line) - len(line.lstrip())]


def _set_track(lines: list[str], inserts: dict[int, list[str]], chunk: Chunk, settings: TrackSettings) -> None:
    """Patch one TRACK chunk: its VOLPAN volume and pan (the line's other fields kept), its plug-ins appended
    to its FXCHAIN (a new chain before its first item when it has none)."""
    inner = _indent_of(lines[chunk.lineno]) + "  "
    vol, pan = f"{settings.volume:.14g}", f"{float(np.clip(settings.pan, -1.0, 1.0)):.14g}"
    volpan = chunk.lines("VOLPAN")
    if volpan:
        old = lines[volpan[0].lineno]
        tokens = tokenize(old.strip())
        tokens = [tokens[0], vol, pan] + tokens[3:] + (["-1", "-1", "1"] if len(tokens) < 4 else [])
        lines[volpan[0].lineno] = _indent_of(old) + " ".join(tokens)
    else:
        inserts.setdefault(chunk.lineno + 1, []).append(f"{inner}VOLPAN {vol} {pan} -1 -1 1")
    if not settings.fx_lines:
        return
    chains = chunk.chunks("FXCHAIN")
    if chains:
        fx_indent = _indent_of(lines[chains[0].lineno]) + "  "
        inserts.setdefault(chains[0].end_lineno, []).extend(fx_indent + ln for ln in settings.fx_lines)
        return
    items = chunk.chunks("ITEM")
    at = items[0].lineno if items else chunk.end_lineno
    block = [f"{inner}<FXCHAIN", f"{inner}  SHOW 0", f"{inner}  LASTSEL 0", f"{inner}  DOCKED 0"]
    block += [f"{inner}  {ln}" for ln in settings.fx_lines] + [f"{inner}>"]
    inserts.setdefault(at, []).extend(block)


def _set_master(lines: list[str], inserts: dict[int, list[str]], root: Chunk, fx_lines: Sequence[str]) -> None:
    """Append plug-ins to the project's ``MASTERFXLIST`` (a new one before the first track, as Reaper places
    it, when there is none) and switch a bypassed master chain (``MASTER_FX 0``) on."""
    for ln in root.lines("MASTER_FX"):
        tokens = tokenize(lines[ln.lineno].strip())
        if len(tokens) > 1 and tokens[1] == "0":
            lines[ln.lineno] = _indent_of(lines[ln.lineno]) + " ".join([tokens[0], "1"] + tokens[2:])
    chains = root.chunks("MASTERFXLIST")
    if chains:
        fx_indent = _indent_of(lines[chains[0].lineno]) + "  "
        inserts.setdefault(chains[0].end_lineno, []).extend(fx_indent + ln for ln in fx_lines)
        return
    tracks = root.chunks("TRACK")
    at = tracks[0].lineno if tracks else root.end_lineno
    inner = _indent_of(lines[at]) if tracks else _indent_of(lines[root.lineno]) + "  "
    block = [f"{inner}<MASTERFXLIST", f"{inner}  SHOW 0", f"{inner}  LASTSEL 0", f"{inner}  DOCKED 0"]
    block += [f"{inner}  {ln}" for ln in fx_lines] + [f"{inner}>"]
    inserts.setdefault(at, [])[:0] = block


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

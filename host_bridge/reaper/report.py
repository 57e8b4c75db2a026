"""What a person reads about a project: the inspect table, the classes chosen, the notes written into the copy."""

from __future__ import annotations

import json
import textwrap
from collections.abc import Mapping, Sequence

import numpy as np
from fxmix.dsp.audio import gain_to_db
from fxmix.dsp.constants import SAMPLE_RATE
from fxmix.dsp.track_classes import assign_classes, load_rules, parse_map_overrides

from .project import Project, audible_tracks, media_info
from .write import suggest_track_settings

#: Notes lines longer than this are wrapped (RPP lines stay short; Reaper shows them as they are).
_NOTE_WIDTH = 160


# ------------------------------------------------------------------------------------------------ helpers
def classes_for(project: Project, rules_path: str | None, maps: Sequence[str]) -> list[str]:
    rules = load_rules(rules_path)
    overrides = parse_map_overrides(maps, rules)
    return assign_classes(
        [t.name for t in project.tracks], [t.parent for t in project.tracks], rules, overrides
    )


def _db(x: float) -> str:
    return "-inf dB" if x == 0 else f"{gain_to_db(x):+.1f} dB"


def _pan(p: float) -> str:
    return "C" if abs(p) < 5e-4 else (f"{abs(p) * 100:.0f}%L" if p < 0 else f"{p * 100:.0f}%R")


def _fx_lines(fx_chain, indent: str) -> list[str]:
    """One line per plug-in: its kind, name, bypass and JSFX slider values."""
    out = []
    for k, fx in enumerate(fx_chain):
        values = " ".join("-" if v is None else f"{v:.6g}" for v in fx.sliders)
        out.append(f"{indent}fx {k + 1}: {fx.kind} {fx.name}" + (" (bypassed)" if fx.bypassed else "")
                   + (f" [{values}]" if values else ""))
    return out


def format_inspect(project: Project, classes: Sequence[str]) -> str:
    """Human-readable listing of the project (what ``fxmix reaper inspect`` prints)."""
    audible = audible_tracks(project)
    out = [
        f"project: {project.path}",
        f"  {len(project.tracks)} tracks, length {project.length_s:.3f} s, project rate {project.sample_rate} Hz "
        f"(rendered at {SAMPLE_RATE} Hz)",
    ]
    if project.master_fx or project.master_volume != 1.0:
        out.append(f"  master vol {_db(abs(project.master_volume))}")
        out += _fx_lines(project.master_fx, "    ")
    for t in project.tracks:
        flags = []
        if t.is_folder:
            flags.append("folder")
        if t.muted:
            flags.append("muted")
        if t.solo:
            flags.append("solo")
        if not audible[t.index] and not t.muted:
            flags.append("silent (mute/solo)")
        indent = "  " * (t.depth + 1)
        out.append(
            f"{indent}#{t.index + 1} {t.name!r} [{classes[t.index]}] vol {_db(t.volume)} pan {_pan(t.pan)}"
            + (f" ({', '.join(flags)})" if flags else "")
        )
        out += _fx_lines(t.fx, indent + "    ")
        for it in t.items:
            state = "muted" if it.muted else (f"skipped: {it.skip_reason}" if it.skip_reason else "")
            media = ""
            if it.path is not None:
                media = f" -> {it.path} " + ("(MISSING)" if it.missing else f"({media_info(it.path)})")
            out.append(
                f"{indent}    item {it.position_s:.3f}..{it.end_s:.3f} s, source offset {it.soffs_s:.3f} s, "
                f"vol {_db(abs(it.volume))}, take {it.take_index + 1}/{it.n_takes}, {it.source_type} "
                f"{it.file!r}{media}" + (f" [{state}]" if state else "")
            )
    if project.warnings:
        out.append("warnings (not rendered):")
        out += [f"  {w}" for w in project.warnings]
    missing = project.missing_media()
    if missing:
        out.append(
            f"missing media: {len(missing)} file(s); `fxmix reaper render` will stop until they are found"
        )
    return "\n".join(out)


def _rms_db(x: np.ndarray) -> float:
    return float(gain_to_db(float(np.sqrt(np.mean(np.square(x, dtype=np.float64)))), floor_db=-120.0))


def _balance(x: np.ndarray) -> float:
    """Pan position of a stereo signal under the balance law: (R - L) / max(L, R) of the channel RMS."""
    rms = np.sqrt(np.mean(np.square(x, dtype=np.float64), axis=1))
    top = float(rms.max())
    return 0.0 if top <= 0 else float((rms[1] - rms[0]) / top)


def class_changes(
    buses: Mapping[str, np.ndarray], normalized: Mapping[str, np.ndarray]
) -> tuple[dict[str, float], dict[str, float]]:
    """Per class: level change (dB, RMS) and pan shift from each bus to its normalized version."""
    gains, pans = {}, {}
    for c, bus in buses.items():
        if c not in normalized or not np.any(bus):
            continue
        gains[c] = _rms_db(normalized[c]) - _rms_db(bus)
        pans[c] = _balance(normalized[c]) - _balance(bus)
    return gains, pans


def build_notes(
    project: Project,
    classes: Sequence[str],
    buses: Mapping[str, np.ndarray],
    result: object,
    *,
    header: Sequence[str],
    suggest: bool = True,
) -> list[str]:
    """Item notes for the written project: per-track suggested VOLPAN (``suggest``; not when the tracks carry
    the decisions themselves), class (or track) parameters, automix notes."""
    lines = list(header)
    if suggest:
        gains, pans = class_changes(buses, getattr(result, "normalized", None) or {})
        lines += _suggestions(project, classes, gains, pans)
    params = getattr(result, "params", None) or {}
    if params:
        lines.append("Normalization parameters (JSON):")
        for c in sorted(params):
            text = json.dumps(params[c], sort_keys=True, default=str)
            lines += textwrap.wrap(f"{c}: {text}", _NOTE_WIDTH, initial_indent="  ", subsequent_indent="    ")
    for note in getattr(result, "notes", None) or []:
        lines += textwrap.wrap(str(note), _NOTE_WIDTH, initial_indent="note: ", subsequent_indent="  ")
    return [line.replace("\r", " ").replace("\n", " ") for line in lines]


def _suggestions(project: Project, classes: Sequence[str], gains, pans) -> list[str]:
    lines = [
        "Suggested track settings (track volume/pan moved by its class bus's change in the normalization;",
        "the rendered mix on this track also holds the network's own choices):",
    ]
    audible = audible_tracks(project)
    for t, c, vol, pan in suggest_track_settings(project, classes, gains, pans):
        if not audible[t.index] or not any(it.renderable for it in t.items):
            continue
        lines.append(
            f'  "{t.name}" [{c}]: VOLPAN {vol:.6f} {pan + 0.0:.4f}  ({_db(vol)}, pan {_pan(pan)}; '
            f"was {_db(t.volume)}, pan {_pan(t.pan)})"
        )
    return lines

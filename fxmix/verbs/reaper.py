"""`fxmix reaper inspect|render`: thin CLI over :mod:`fxmix.host_bridge.reaper`."""

from __future__ import annotations

import argparse
import logging
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fxmix import __version__
from fxmix.decisions import reaper_master_lines, reaper_track_settings
from fxmix.dsp.constants import SAMPLE_RATE
from fxmix.dsp.errors import AudioInputError, ConfigError
from fxmix.dsp.features import integrated_loudness
from fxmix.host_bridge.reaper import (
    audible_tracks,
    check_media,
    read_project,
    render_buses,
    render_tracks,
    write_project_copy,
)
from fxmix.host_bridge.reaper.report import build_notes, classes_for, format_inspect
from fxmix.model.automix import automix, automix_tracks
from fxmix.model.decisions import build_decisions, unique_names
from fxmix.model.runtime import resolve_model
from fxmix.outputs import check_destination, write_mix_with_params

log = logging.getLogger("fxmix.reaper")


# ------------------------------------------------------------------------------------------------ parser
def _add_class_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--rules", metavar="TOML", help="track-name -> class rules (default: the shipped rules)")
    p.add_argument(
        "--map",
        action="append",
        default=[],
        metavar="'TRACK NAME=CLASS'",
        help="force a track's class (repeatable); folder children without a matching name follow it",
    )


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="fxmix reaper",
        description="Inspect or automix a Reaper .RPP project offline (Reaper not needed).",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("inspect", help="print tracks, items, resolved media and assigned classes")
    p.add_argument("project", help="the .RPP project")
    _add_class_flags(p)
    p = sub.add_parser("render", help="render the tracks into class buses, automix them, write the mix")
    p.add_argument("project", help="the .RPP project (never modified)")
    p.add_argument("-o", "--output", required=True, help="mix file to write (.wav, .flac)")
    p.add_argument("--model", default="default",
                   help="default | offline | causal | console (every track mixed on its own) | none | PATH")
    p.add_argument(
        "--profile", default=None, help="normalization profile NAME or PATH (default: the model's training profile)"
    )
    p.add_argument("--seed", type=int, default=0, help="random seed of the automix (default 0)")
    p.add_argument("--start", type=float, default=0.0, metavar="S", help="render from S seconds (default 0)")
    p.add_argument(
        "--end", type=float, default=None, metavar="S", help="render up to S seconds (default: end)"
    )
    p.add_argument(
        "--write-rpp",
        metavar="OUT.RPP",
        help="also write a copy of the project with every track's decisions (volume, pan, FX chain of fxmix "
        "JSFX) and an added 'fxmix mix' track playing the rendered mix",
    )
    p.add_argument(
        "--solo-mix",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="solo (--solo-mix) or neither solo nor mute (--no-solo-mix) the added mix track; default: muted, "
        "so the copy plays the tracks with their decisions",
    )
    _add_class_flags(p)
    return parser


# ------------------------------------------------------------------------------------------------ verbs
def _inspect(args: argparse.Namespace) -> int:
    project = read_project(args.project)
    print(format_inspect(project, classes_for(project, args.rules, args.map)))
    return 0


def _render(args: argparse.Namespace) -> int:
    project = read_project(args.project)
    classes = classes_for(project, args.rules, args.map)
    check_media(project)
    out = Path(args.output)
    protect = [project.path, *project.media_paths()]
    if out.resolve() in {p.resolve() for p in protect}:
        raise AudioInputError(
            f"{out}: refusing to overwrite an input (project or media); choose another -o path"
        )
    if args.write_rpp and Path(args.write_rpp).resolve() == project.path.resolve():
        raise AudioInputError(
            f"{args.write_rpp}: refusing to overwrite the input project; choose another path"
        )
    if args.write_rpp and Path(args.write_rpp).resolve() == out.resolve():
        raise ConfigError(f"--write-rpp {args.write_rpp}: same path as the mix (-o); choose another path")
    check_destination(out, protect)
    model = resolve_model(args.model)
    t0 = time.perf_counter()
    run = _mix_project(project, classes, model, args)
    t_render, result = run.render_s, run.result
    n = result.mix.shape[-1]
    lufs = integrated_loudness(result.mix, SAMPLE_RATE)
    decisions = build_decisions(result, dict.fromkeys(run.index), {k: classes[i] for k, i in run.index.items()})
    for t in decisions["tracks"]:
        t["reaper_track"] = run.index[t["name"]] + 1
    doc = {
        "fxmix": __version__,
        "project": str(project.path),
        "profile": result.profile,
        "model": result.model,
        "window_s": [args.start, args.start + n / SAMPLE_RATE],
        "tracks": [{"name": t.name, "class": c} for t, c in zip(project.tracks, classes)],
        "outputs": {"mix": str(out)},
        "decisions": str(out.with_suffix(".decisions.json")),
        "notes": list(result.notes),
        "mix_lufs": round(lufs, 2) if np.isfinite(lufs) else None,
        "params": result.params,
    }
    doc = write_mix_with_params(out, result.mix, SAMPLE_RATE, None, protect, doc,
                                extra={out.with_suffix(".decisions.json"): decisions})
    print(
        f"wrote {out} ({n / SAMPLE_RATE:.3f} s; {len(run.index)} tracks; render {t_render:.1f} s, "
        f"total {time.perf_counter() - t0:.1f} s) [{doc['mix_lufs']} LUFS] + "
        f"{out.with_suffix('.params.json').name}, {out.with_suffix('.decisions.json').name}"
    )
    for note in doc["notes"]:
        print(f"  note: {note}")
    if args.write_rpp:
        _write_copy(project, classes, run, decisions, args, out)
    return 0


@dataclass
class _ProjectMix:
    """A rendered and mixed project: the mix, each mixed track's name -> track index, and what each track's
    normalization was decided on (the track, or its class bus for the four-stem networks)."""

    result: object
    index: dict[str, int]
    heard: dict[str, np.ndarray]
    buses: dict[str, np.ndarray]
    render_s: float


def _mix_project(project, classes, model, args) -> _ProjectMix:
    """Render and automix: every track on its own for a track-level mixer, else the class buses."""
    t0 = time.perf_counter()
    if getattr(model, "mixes_tracks", False):
        rendered = render_tracks(project, start_s=args.start, end_s=args.end, progress=True)
        if not rendered:
            _nothing_to_mix(project)
        names = unique_names([project.tracks[i].name for i in rendered])
        index = dict(zip(names, rendered))
        heard = {k: rendered[i] for k, i in index.items()}
        t_render = time.perf_counter() - t0
        result = automix_tracks([(k, classes[i], heard[k]) for k, i in index.items()], model=model,
                                profile=args.profile, seed=args.seed)
        return _ProjectMix(result, index, heard, heard, t_render)
    buses = render_buses(project, classes, start_s=args.start, end_s=args.end, progress=True)
    if not buses:
        _nothing_to_mix(project)
    t_render = time.perf_counter() - t0
    result = automix(buses, SAMPLE_RATE, model=model, profile=args.profile, seed=args.seed, progress=True)
    audible = audible_tracks(project)
    mixed = [t.index for t in project.tracks if audible[t.index] and any(it.renderable for it in t.items)]
    index = dict(zip(unique_names([project.tracks[i].name for i in mixed]), mixed))
    heard = {k: buses[classes[i]] for k, i in index.items()}
    return _ProjectMix(result, index, heard, buses, t_render)


def _nothing_to_mix(project) -> None:
    raise AudioInputError(
        f"{project.path}: no audible audio items in the render window; check mute/solo and --start/--end"
    )


def _write_copy(project, classes, run: _ProjectMix, decisions: dict, args, out: Path) -> None:
    n = run.result.mix.shape[-1]
    settings, notes_extra = reaper_track_settings(project, decisions, run.index, run.heard)
    master_lines, master_notes = reaper_master_lines(project, decisions)
    notes_extra = master_notes + notes_extra
    header = [
        f"fxmix automix of {project.path.name}: model={args.model}, profile={run.result.profile}, seed={args.seed}",
        f"window {args.start:.3f} s + {n / SAMPLE_RATE:.3f} s, mix file {out.name}",
        "Every mixed track carries its decisions: VOLPAN volume/pan and an FX chain (fxmix JSFX: input gains, "
        "normalization PEQ > compressor > utility, mixer PEQ > compressor); this track plays the rendered mix "
        "(muted: unmute it and mute the others to compare).",
        *notes_extra,
    ]
    notes = build_notes(project, classes, run.buses, run.result, header=header, suggest=not run.result.per_track)
    solo = bool(args.solo_mix)
    written = write_project_copy(project, args.write_rpp, out, position_s=args.start, length_s=n / SAMPLE_RATE,
                                 notes=notes, solo=solo, mute=args.solo_mix is None, track_settings=settings,
                                 master_fx_lines=master_lines)
    master = "; the master stage on the master track" if master_lines else ""
    print(f"wrote {written} (per-track volume, pan and FX chains{master}; an added 'fxmix mix' track with the mix)")
    for line in notes_extra:
        print(f"  note: {line}")


def main(argv: list[str] | None = None) -> int:
    """``fxmix reaper inspect PROJECT.RPP`` / ``fxmix reaper render PROJECT.RPP -o MIX.wav [...]``."""
    args = get_parser().parse_args(sys.argv[1:] if argv is None else argv)
    return _inspect(args) if args.command == "inspect" else _render(args)

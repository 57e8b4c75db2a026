"""`fxmix reaper inspect|render`: thin CLI over :mod:`fxmix.host_bridge.reaper`."""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path

import numpy as np

from fxmix import __version__
from fxmix.dsp.constants import SAMPLE_RATE
from fxmix.dsp.errors import AudioInputError, ConfigError
from fxmix.dsp.features import integrated_loudness
from fxmix.host_bridge.reaper import (
    check_media,
    read_project,
    render_buses,
    write_project_copy,
)
from fxmix.host_bridge.reaper.report import build_notes, classes_for, format_inspect
from fxmix.model.automix import automix
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
    p.add_argument("--model", default="default", help="'default', 'none' (normalized sum) or a model PATH")
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
        help="also write a copy of the project with an added 'fxmix mix' track playing the mix",
    )
    p.add_argument(
        "--solo-mix",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="solo the added track in the written copy (default: yes; unsolo it in Reaper to hear the original)",
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
    t0 = time.perf_counter()
    buses = render_buses(project, classes, start_s=args.start, end_s=args.end, progress=True)
    if not buses:
        raise AudioInputError(
            f"{project.path}: no audible audio items in the render window; check mute/solo and --start/--end"
        )
    t_render = time.perf_counter() - t0
    result = automix(
        buses, SAMPLE_RATE, model=args.model, profile=args.profile, seed=args.seed, progress=True
    )
    n = result.mix.shape[-1]
    lufs = integrated_loudness(result.mix, SAMPLE_RATE)
    doc = {
        "fxmix": __version__,
        "project": str(project.path),
        "profile": result.profile,
        "model": result.model,
        "window_s": [args.start, args.start + n / SAMPLE_RATE],
        "tracks": [{"name": t.name, "class": c} for t, c in zip(project.tracks, classes)],
        "outputs": {"mix": str(out)},
        "notes": list(result.notes),
        "mix_lufs": round(lufs, 2) if np.isfinite(lufs) else None,
        "params": result.params,
    }
    doc = write_mix_with_params(out, result.mix, SAMPLE_RATE, None, protect, doc)
    print(
        f"wrote {out} ({n / SAMPLE_RATE:.3f} s; buses: {', '.join(sorted(buses))}; render {t_render:.1f} s) "
        f"[{doc['mix_lufs']} LUFS] + {out.with_suffix('.params.json').name}"
    )
    for note in doc["notes"]:
        print(f"  note: {note}")
    if args.write_rpp:
        header = [
            f"fxmix automix of {project.path.name}: model={args.model}, profile={result.profile}, seed={args.seed}",
            f"window {args.start:.3f} s + {n / SAMPLE_RATE:.3f} s, mix file {out.name}",
        ]
        notes = build_notes(project, classes, buses, result, header=header)
        written = write_project_copy(
            project,
            args.write_rpp,
            out,
            position_s=args.start,
            length_s=n / SAMPLE_RATE,
            notes=notes,
            solo=args.solo_mix,
        )
        print(f"wrote {written} (copy with an added 'fxmix mix' track)")
    return 0


def main(argv: list[str] | None = None) -> int:
    """``fxmix reaper inspect PROJECT.RPP`` / ``fxmix reaper render PROJECT.RPP -o MIX.wav [...]``."""
    args = get_parser().parse_args(sys.argv[1:] if argv is None else argv)
    return _inspect(args) if args.command == "inspect" else _render(args)

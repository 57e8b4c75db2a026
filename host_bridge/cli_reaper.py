"""``fxmix reaper inspect|render`` and ``fxmix bench reaper``: thin CLI over :mod:`fxmix.host_bridge.reaper`."""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import sys
import tempfile
import textwrap
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import soundfile as sf
from fxmix.dsp.constants import REFERENCE_PROFILE

from ..dsp.audio import gain_to_db, write_audio
from ..dsp.constants import SAMPLE_RATE
from ..dsp.errors import AudioInputError, ConfigError
from .reaper import (
    Project,
    audible_tracks,
    check_media,
    media_info,
    read_project,
    render_buses,
    suggest_track_settings,
    write_project_copy,
)
from .track_classes import assign_classes, load_rules, parse_map_overrides

log = logging.getLogger("fxmix.reaper")

#: Notes lines longer than this are wrapped (RPP lines stay short; Reaper shows them as they are).
_NOTE_WIDTH = 160


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
    p.add_argument("--profile", default=REFERENCE_PROFILE, help="normalization profile NAME or PATH")
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


# ------------------------------------------------------------------------------------------------ helpers
def _classes(project: Project, rules_path: str | None, maps: Sequence[str]) -> list[str]:
    rules = load_rules(rules_path)
    overrides = parse_map_overrides(maps, rules)
    return assign_classes(
        [t.name for t in project.tracks], [t.parent for t in project.tracks], rules, overrides
    )


def _db(x: float) -> str:
    return "-inf dB" if x == 0 else f"{gain_to_db(x):+.1f} dB"


def _pan(p: float) -> str:
    return "C" if abs(p) < 5e-4 else (f"{abs(p) * 100:.0f}%L" if p < 0 else f"{p * 100:.0f}%R")


def format_inspect(project: Project, classes: Sequence[str]) -> str:
    """Human-readable listing of the project (what ``fxmix reaper inspect`` prints)."""
    audible = audible_tracks(project)
    out = [
        f"project: {project.path}",
        f"  {len(project.tracks)} tracks, length {project.length_s:.3f} s, project rate {project.sample_rate} Hz "
        f"(rendered at {SAMPLE_RATE} Hz)",
    ]
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
) -> list[str]:
    """Item notes for the written project: per-track suggested VOLPAN, class parameters, automix notes."""
    normalized = getattr(result, "normalized", None) or {}
    gains, pans = class_changes(buses, normalized)
    lines = list(header)
    lines.append(
        "Suggested track settings (track volume/pan moved by its class bus's change in the normalization;"
    )
    lines.append("the rendered mix on this track also holds the network's own choices):")
    audible = audible_tracks(project)
    for t, c, vol, pan in suggest_track_settings(project, classes, gains, pans):
        if not audible[t.index] or not any(it.renderable for it in t.items):
            continue
        lines.append(
            f'  "{t.name}" [{c}]: VOLPAN {vol:.6f} {pan + 0.0:.4f}  ({_db(vol)}, pan {_pan(pan)}; '
            f"was {_db(t.volume)}, pan {_pan(t.pan)})"
        )
    params = getattr(result, "params", None) or {}
    if params:
        lines.append("Class parameters (JSON):")
        for c in sorted(params):
            text = json.dumps(params[c], sort_keys=True, default=str)
            lines += textwrap.wrap(f"{c}: {text}", _NOTE_WIDTH, initial_indent="  ", subsequent_indent="    ")
    for note in getattr(result, "notes", None) or []:
        lines += textwrap.wrap(str(note), _NOTE_WIDTH, initial_indent="note: ", subsequent_indent="  ")
    return [line.replace("\r", " ").replace("\n", " ") for line in lines]


# ------------------------------------------------------------------------------------------------ verbs
def _inspect(args: argparse.Namespace) -> int:
    project = read_project(args.project)
    print(format_inspect(project, _classes(project, args.rules, args.map)))
    return 0


def _render(args: argparse.Namespace) -> int:
    project = read_project(args.project)
    classes = _classes(project, args.rules, args.map)
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
    t0 = time.perf_counter()
    buses = render_buses(project, classes, start_s=args.start, end_s=args.end, progress=True)
    if not buses:
        raise AudioInputError(
            f"{project.path}: no audible audio items in the render window; check mute/solo and --start/--end"
        )
    t_render = time.perf_counter() - t0
    from .commands import automix

    result = automix(
        buses, SAMPLE_RATE, model=args.model, profile=args.profile, seed=args.seed, progress=True
    )
    write_audio(out, result.mix, SAMPLE_RATE, protect=protect)
    n = result.mix.shape[-1]
    print(
        f"wrote {out} ({n / SAMPLE_RATE:.3f} s; buses: {', '.join(sorted(buses))}; render {t_render:.1f} s)"
    )
    for note in getattr(result, "notes", None) or []:
        print(f"  note: {note}")
    if args.write_rpp:
        header = [
            f"fxmix automix of {project.path.name}: model={args.model}, profile={args.profile}, seed={args.seed}",
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


def reaper_main(argv: list[str] | None = None) -> int:
    """``fxmix reaper inspect PROJECT.RPP`` / ``fxmix reaper render PROJECT.RPP -o MIX.wav [...]``."""
    args = get_parser().parse_args(sys.argv[1:] if argv is None else argv)
    return _inspect(args) if args.command == "inspect" else _render(args)


# ------------------------------------------------------------------------------------------------ bench
_BENCH_NAMES = [
    ("Drums", 1), ("Kick In", 0), ("Kick Out", 0), ("Snare Top", 0), ("Snare Bottom", 0), ("Hi-Hat", 0),
    ("Tom 1", 0), ("Tom 2", 0), ("OH L", 0), ("OH R", 0), ("Room", -1),
    ("Bass DI", 0), ("Bass Amp", 0),
    ("Lead Vox", 0), ("BV 1", 0), ("BV 2", 0),
    ("Gtr L", 0), ("Gtr R", 0), ("Acoustic", 0), ("Piano", 0), ("Organ", 0), ("Pad", 0), ("Strings", 0), ("FX", 0),
]  # fmt: skip


def make_bench_project(folder: Path, n_tracks: int, seconds: float, seed: int) -> Path:
    """Write a generated project: ``n_tracks`` tracks (drum folder included), each with two items that
    split a ``seconds``-long 16-bit WAV (second item with a source offset). Returns the .RPP path."""
    from tqdm import tqdm

    rng = np.random.default_rng(seed)
    media = folder / "media"
    media.mkdir(parents=True, exist_ok=True)
    n = int(round(seconds * SAMPLE_RATE))
    t = np.arange(n) / SAMPLE_RATE
    if n_tracks == len(_BENCH_NAMES):
        names = list(_BENCH_NAMES)
    else:  # other counts: plain tracks, no folder (a cut list could leave the drum folder open)
        names = [(f"{_BENCH_NAMES[i % len(_BENCH_NAMES)][0]} {i + 1}", 0) for i in range(n_tracks)]
    lines = ['<REAPER_PROJECT 0.1 "7.0/linux-x86_64" 1700000000', f"  SAMPLERATE {SAMPLE_RATE} 0 0"]
    half = seconds / 2
    for i, (name, delta) in enumerate(tqdm(names, desc="generate tracks", unit="track")):
        freq = 55.0 * 2 ** (rng.integers(0, 36) / 12)
        env = 0.5 + 0.5 * np.sin(2 * np.pi * rng.uniform(0.5, 4.0) * t) ** 2
        tone = np.sin(2 * np.pi * freq * t) + 0.3 * np.sin(2 * np.pi * 2 * freq * t + rng.uniform(0, 6))
        noise = rng.standard_normal((2, n)).astype(np.float32) * 0.05
        audio = (0.2 * env * tone)[None, :].astype(np.float32) + noise
        audio[1] *= rng.uniform(0.6, 1.0)
        path = media / f"track{i + 1:02d}.wav"
        sf.write(str(path), audio.T, SAMPLE_RATE, subtype="PCM_16")
        lines += [
            "  <TRACK",
            f'    NAME "{name}"',
            f"    VOLPAN {rng.uniform(0.5, 1.0):.6f} {rng.uniform(-0.5, 0.5):.6f} -1 -1 1",
            "    MUTESOLO 0 0 0",
            f"    ISBUS {2 if delta < 0 else delta} {delta}",
        ]
        for pos, soffs in ((0.0, 0.0), (half, half)):
            lines += [
                "    <ITEM",
                f"      POSITION {pos:.6f}",
                f"      LENGTH {half:.6f}",
                "      LOOP 0",
                "      FADEIN 1 0.01 0 1 0 0 0",
                "      FADEOUT 1 0.01 0 1 0 0 0",
                "      MUTE 0 0",
                f'      NAME "{path.name}"',
                "      VOLPAN 1 0 1 -1",
                f"      SOFFS {soffs:.6f}",
                "      PLAYRATE 1 1 0 -1 0 0.0025",
                "      CHANMODE 0",
                "      <SOURCE WAVE",
                f'        FILE "media/{path.name}"',
                "      >",
                "    >",
            ]
        lines.append("  >")
    lines.append(">")
    rpp = folder / "bench.RPP"
    rpp.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return rpp


def bench_reaper_main(argv: list[str] | None = None) -> int:
    """``fxmix bench reaper``: render+automix of a generated project vs automix of its class buses alone."""
    p = argparse.ArgumentParser(
        prog="fxmix bench reaper",
        description="Time rendering + automixing a generated N-track project against automixing (normalize + "
        "mix) its class buses alone. Acceptance: ratio < 2.",
    )
    p.add_argument("--tracks", type=int, default=24, help="number of tracks (default 24)")
    p.add_argument("--seconds", type=float, default=180.0, help="project length in seconds (default 180)")
    p.add_argument("--model", default="default", help="automix model (default 'default')")
    p.add_argument("--profile", default=REFERENCE_PROFILE, help="normalization profile")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--keep", metavar="DIR", help="generate the project in DIR and keep it (default: temp dir)"
    )
    args = p.parse_args(sys.argv[1:] if argv is None else argv)
    if args.tracks < 1 or args.seconds <= 0:
        raise ConfigError("--tracks must be >= 1 and --seconds > 0")
    from .commands import automix

    folder = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="fxmix-bench-reaper-"))
    try:
        t0 = time.perf_counter()
        rpp = make_bench_project(folder, args.tracks, args.seconds, args.seed)
        print(f"generated {rpp} in {time.perf_counter() - t0:.1f} s")

        def mix(stems: dict[str, np.ndarray]) -> object:
            return automix(stems, SAMPLE_RATE, model=args.model, profile=args.profile, seed=args.seed)

        # Reference: the class buses alone (rendered once, untimed), after a short warm-up run.
        project = read_project(rpp)
        classes = _classes(project, None, [])
        buses = render_buses(project, classes)
        mix({c: b[:, : 2 * SAMPLE_RATE].copy() for c, b in buses.items()})
        t0 = time.perf_counter()
        mix(buses)
        t_ref = time.perf_counter() - t0
        del buses
        # Full path: read the project, render every track into the buses, automix.
        t0 = time.perf_counter()
        project = read_project(rpp)
        classes = _classes(project, None, [])
        buses = render_buses(project, classes, progress=True)
        t_render = time.perf_counter() - t0
        mix(buses)
        t_total = time.perf_counter() - t0
    finally:
        if not args.keep:
            shutil.rmtree(folder, ignore_errors=True)
    ratio = t_total / t_ref
    print(
        f"tracks {args.tracks} x {args.seconds:g} s, buses: {', '.join(sorted(set(classes)))}, model {args.model}"
    )
    print(f"normalize+mix of the class buses alone: {t_ref:.2f} s")
    print(f"read+render+normalize+mix of the project: {t_total:.2f} s (render {t_render:.2f} s)")
    print(f"ratio: {ratio:.2f} (acceptance: < 2) -> {'PASS' if ratio < 2 else 'FAIL'}")
    print(
        f"reproduce: fxmix bench reaper --tracks {args.tracks} --seconds {args.seconds:g} --model {args.model} "
        f"--profile {args.profile} --seed {args.seed}"
    )
    return 0 if ratio < 2 else 1

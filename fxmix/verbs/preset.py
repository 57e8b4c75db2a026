"""`fxmix preset list | show | export`: factory presets and export of mix decisions."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from fxmix.decisions import unwritten_bus_stages
from fxmix.dsp import constants as C
from fxmix.dsp.audio import align_lengths, read_audio
from fxmix.dsp.constants import REFERENCE_PROFILE
from fxmix.dsp.errors import ConfigError
from fxmix.dsp.stems import find_stem_files, load_buses
from fxmix.dsp.track_classes import assign_classes, load_rules
from fxmix.host_bridge.reaper import read_project, render_buses
from fxmix.model.decisions import read_decisions
from fxmix.model.names import training_profile
from fxmix.plugin_presets.export import DECISION_FORMATS, FORMATS, export_decisions, export_track_decisions
from fxmix.plugin_presets.schema import factory_presets, load_preset, preset_from_dict


def _tracks_from_stems(stems_dir: str) -> dict[str, tuple[str, object]]:
    loaded = load_buses(find_stem_files(stems_dir))
    files = find_stem_files(stems_dir)
    return {c: (c, loaded.buses[c]) for c in C.CLASSES if files.get(c)}


def _tracks_from_rpp(rpp: str) -> dict[str, tuple[str, object]]:
    project = read_project(rpp)
    classes = assign_classes(
        [t.name for t in project.tracks], [t.parent for t in project.tracks], load_rules()
    )
    buses = render_buses(project, classes, progress=True)
    return {c: (c, bus) for c, bus in buses.items()}


def _heard(doc: dict, where: Path) -> dict[str, object]:
    """Per track: the audio its normalization was decided on (its file, or its class bus: the class's files)."""
    missing = [t["name"] for t in doc["tracks"] if not t.get("file")]
    if missing:
        raise ConfigError(f"{where}: tracks {missing} name no input file (decisions of `fxmix reaper render`); "
                          "export the decisions of `fxmix mix`, or use `fxmix reaper render --write-rpp`")
    audio, _ = align_lengths({t["name"]: read_audio(t["file"]).audio for t in doc["tracks"]})
    if all(t["normalization"].get("scope") == "track" for t in doc["tracks"]):
        return audio
    buses: dict[str, object] = {}
    for t in doc["tracks"]:
        buses[t["class"]] = buses[t["class"]] + audio[t["name"]] if t["class"] in buses else audio[t["name"]]
    return {t["name"]: buses[t["class"]] for t in doc["tracks"]}


def _export_mix_decisions(args) -> int:
    formats = tuple(args.format or DECISION_FORMATS)
    bad = [f for f in formats if f not in DECISION_FORMATS]
    if bad:
        raise ConfigError(f"--decisions exports {list(DECISION_FORMATS)}, not {bad}")
    doc = read_decisions(args.decisions)
    result = export_track_decisions(doc, _heard(doc, Path(args.decisions)), args.out, formats)
    for w in result.written:
        print(w)
    if result.install_steps:
        print(f"\n{result.install_steps}")
    for note in unwritten_bus_stages(doc):
        print(f"note: {note}")
    return 0


def default_preset_name() -> str:
    """The factory preset whose profile is the default model's training profile (else the reference's)."""
    name = training_profile("default")
    return name if name in factory_presets() else REFERENCE_PROFILE


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="fxmix preset", description="Factory presets and export of mix decisions."
    )
    sub = p.add_subparsers(dest="cmd", required=True)
    sub.add_parser("list", help="list factory presets")
    s = sub.add_parser("show", help="print a preset (factory name or path)")
    s.add_argument("preset")
    e = sub.add_parser("export", help="decide per class and write presets / pedalboard chains / .RfxChain")
    e.add_argument("source", nargs="?", help="folder of stems (vocals.*, drums.*, ...) or a Reaper PROJECT.RPP")
    e.add_argument(
        "--decisions", metavar="DECISIONS.json",
        help="export the final per-track decisions of `fxmix mix` (normalization followed by the mixer: "
        "OUT/<song>/decisions.json or NAME.decisions.json) instead of deciding the normalization here",
    )
    e.add_argument("-o", "--out", required=True, help="output folder")
    e.add_argument("--format", action="append", choices=FORMATS, help="repeatable; default: all three")
    e.add_argument(
        "--preset", default=None,
        help="factory preset name or preset JSON path (default: the factory preset of the default model's profile)",
    )
    e.add_argument(
        "--profile", default=None, help="factory profile name or JSON path (overrides the preset's)"
    )
    args = p.parse_args(argv)
    if args.cmd == "list":
        for name in factory_presets():
            pr = load_preset(name)
            prof = pr.profile if isinstance(pr.profile, str) else "(inline)"
            print(f"{name:<20} profile {prof:<20} stages {','.join(pr.enabled_stages())}  model {pr.model}")
        return 0
    if args.cmd == "show":
        print(json.dumps(load_preset(args.preset).to_dict(), indent=1))
        return 0
    if args.decisions:
        return _export_mix_decisions(args)
    if not args.source:
        raise ConfigError("preset export: give a SOURCE folder or project, or --decisions DECISIONS.json")
    preset = load_preset(args.preset or default_preset_name())
    if args.profile:
        d = preset.to_dict()
        d["profile"] = args.profile
        preset = preset_from_dict(d, f"--profile {args.profile}")
        preset.load_profile()
    if Path(args.out).resolve() == Path(args.source).resolve():
        raise ConfigError("--out must differ from the source folder (inputs are never overwritten)")
    source = args.source
    tracks = _tracks_from_rpp(source) if source.lower().endswith(".rpp") else _tracks_from_stems(source)
    result = export_decisions(tracks, args.out, tuple(args.format or FORMATS), preset)
    for w in result.written:
        print(w)
    if result.eq_fits:
        print(
            "\nParametric EQ (pedalboard parametric_eq / .RfxChain), errors against the EQ stage's curve and, "
            "as the stem hears it, per 1/6-octave band where the stem has energy:"
        )
        for line in result.eq_fit_lines():
            print(f"  {line}")
    if result.install_steps:
        print(f"\n{result.install_steps}")
    return 0

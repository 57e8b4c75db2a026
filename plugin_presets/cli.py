"""`fxmix preset list | show | export`: factory presets and export of mix decisions."""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

from fxmix.dsp.constants import REFERENCE_PROFILE
from tqdm import tqdm

from ..dsp import constants as C
from ..dsp.audio import write_text_atomic
from ..dsp.chain import normalize_stem
from ..dsp.errors import ConfigError
from .exporters import build_chain, scale_params
from .schema import Preset, factory_presets, load_preset, preset_from_dict, save_preset

FORMATS = ("json", "pedalboard", "rfxchain")


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("_") or "track"


def _tracks_from_stems(stems_dir: str) -> dict[str, tuple[str, object]]:
    from ..host_bridge.commands import find_stem_files, load_buses

    loaded = load_buses(find_stem_files(stems_dir))
    files = find_stem_files(stems_dir)
    return {c: (c, loaded.buses[c]) for c in C.CLASSES if files.get(c)}


def _tracks_from_rpp(rpp: str) -> dict[str, tuple[str, object]]:
    from ..host_bridge.reaper import read_project, render_buses
    from ..host_bridge.track_classes import assign_classes, load_rules

    project = read_project(rpp)
    classes = assign_classes(
        [t.name for t in project.tracks], [t.parent for t in project.tracks], load_rules()
    )
    buses = render_buses(project, classes, progress=True)
    return {c: (c, bus) for c, bus in buses.items()}


def export(source: str, out_dir: str | Path, formats, preset: Preset) -> list[Path]:
    """Decide per class bus (STEMS_DIR or .RPP), write the chosen formats into ``out_dir``."""
    tracks = _tracks_from_rpp(source) if str(source).lower().endswith(".rpp") else _tracks_from_stems(source)
    profile = preset.load_profile()
    stages = [s for s in preset.enabled_stages() if s != "reverb"]
    amounts = {s: preset.stages[s].amount for s in stages}
    out = Path(out_dir)
    written: list[Path] = []
    for name, (cls, audio) in tqdm(tracks.items(), desc="export", unit="track"):
        res = normalize_stem(audio, C.SAMPLE_RATE, cls, profile, stages=stages, where=name)
        if res.silent:
            continue
        params = scale_params(res.params, amounts)
        base = out / _safe(name)
        if "json" in formats:
            d = preset.to_dict()
            d["name"] = f"{preset.name}: {name}"
            d["decisions"] = {name: {"class": cls, "params": {k: v.to_dict() for k, v in params.items()}}}
            written.append(save_preset(preset_from_dict(d, str(base)), out / f"{base.name}.preset.json"))
        if "pedalboard" in formats or "rfxchain" in formats:
            chain = build_chain(audio, C.SAMPLE_RATE, params, name=name, class_name=cls)
            if "pedalboard" in formats:
                written += chain.write_pedalboard(out / f"{base.name}.pedalboard.json")
            if "rfxchain" in formats:
                written.append(write_text_atomic(out / f"{base.name}.RfxChain", chain.rfxchain_text()))
    return written


def preset_main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="fxmix preset", description="Factory presets and export of mix decisions."
    )
    sub = p.add_subparsers(dest="cmd", required=True)
    sub.add_parser("list", help="list factory presets")
    s = sub.add_parser("show", help="print a preset (factory name or path)")
    s.add_argument("preset")
    e = sub.add_parser("export", help="decide per class and write presets / pedalboard chains / .RfxChain")
    e.add_argument("source", help="folder of stems (vocals.*, drums.*, ...) or a Reaper PROJECT.RPP")
    e.add_argument("-o", "--out", required=True, help="output folder")
    e.add_argument("--format", action="append", choices=FORMATS, help="repeatable; default: all three")
    e.add_argument("--preset", default=REFERENCE_PROFILE, help="factory preset name or preset JSON path")
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
    preset = load_preset(args.preset)
    if args.profile:
        d = preset.to_dict()
        d["profile"] = args.profile
        preset = preset_from_dict(d, f"--profile {args.profile}")
        preset.load_profile()
    if Path(args.out).resolve() == Path(args.source).resolve():
        raise ConfigError("--out must differ from the source folder (inputs are never overwritten)")
    written = export(args.source, args.out, tuple(args.format or FORMATS), preset)
    for w in written:
        print(w)
    return 0

"""`fxmix normalize | mix | demo`: the offline main path, thin over the library.

stems on disk -> dsp.stems (class buses) -> model.automix (dsp.chain params per stage, optional network)
-> mix -> atomic writes + params.json.
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from importlib import resources
from pathlib import Path

import numpy as np

from fxmix import __version__
from fxmix.dsp import constants as C
from fxmix.dsp.audio import resample, write_audio, write_text_atomic
from fxmix.dsp.chain import ALL_STAGES, DEFAULT_STAGES
from fxmix.dsp.features import integrated_loudness
from fxmix.dsp.profile import Profile, load_profile
from fxmix.dsp.stems import LoadedBuses, find_stem_files, load_buses
from fxmix.model import default_model_path
from fxmix.model.automix import MixResult, automix
from fxmix.model.runtime import DEFAULT_PROFILE
from fxmix.report import demo_report, plot_spectra

log = logging.getLogger("fxmix")



def add_profile_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--profile",
        default=None,
        help="factory profile name or profile JSON path (default: the model's training profile, else "
        f"{DEFAULT_PROFILE})",
    )


def add_stage_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--no-eq", action="store_true", help="skip the EQ stage")
    p.add_argument("--no-comp", action="store_true", help="skip the compression stage")
    p.add_argument("--no-pan", action="store_true", help="skip the panning stage")
    p.add_argument("--no-loudness", action="store_true", help="skip the loudness stage")
    p.add_argument("--reverb", action="store_true", help="add the (training) reverb augmentation")
    p.add_argument("--seed", type=int, default=0, help="seed for the stochastic stages")


def stages_from_args(args) -> tuple[str, ...]:
    skip = {
        "eq": args.no_eq,
        "compression": args.no_comp,
        "panning": args.no_pan,
        "loudness": args.no_loudness,
    }
    stages = [s for s in DEFAULT_STAGES if not skip[s]]
    if args.reverb:
        stages.insert(0, "reverb")
    return tuple(s for s in ALL_STAGES if s in stages)


def _write_outputs(
    out_mix: Path | None, norm_dir: Path | None, loaded: LoadedBuses, res: MixResult, extra: dict
) -> dict:
    protect = loaded.inputs
    rate = loaded.input_rate
    written = {}
    if norm_dir is not None:
        for c, x in res.normalized.items():
            written[c] = str(
                write_audio(norm_dir / f"{c}.wav", resample(x, C.SAMPLE_RATE, rate), rate, protect=protect)
            )
    if out_mix is not None:
        written["mix"] = str(
            write_audio(out_mix, resample(res.mix, C.SAMPLE_RATE, rate), rate, protect=protect)
        )
    return written


def _params_doc(loaded: LoadedBuses, res: MixResult, profile: str, stages, written: dict) -> dict:
    return {
        "fxmix": __version__,
        "profile": str(profile),
        "stages": list(stages),
        "model": res.model,
        "sample_rate_in": loaded.input_rate,
        "inputs": [str(p) for p in loaded.inputs],
        "outputs": written,
        "notes": loaded.notes + res.notes,
        "timings_s": {k: round(v, 3) for k, v in res.timings_s.items()},
        "mix_lufs": _lufs(res.mix),
        "params": res.params,
    }


def _lufs(x: np.ndarray) -> float | None:
    v = integrated_loudness(x, C.SAMPLE_RATE)
    return round(v, 2) if np.isfinite(v) else None


def _plot(out_dir: Path, res: MixResult, profile: Profile) -> list[str]:
    return [str(plot_spectra(out_dir / "spectra.png", res.normalized, profile))]


# ---------------------------------------------------------------- verbs


def normalize_main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="fxmix normalize", description="Effect-normalize stems to a profile.")
    p.add_argument("stems_dir", nargs="?", help="folder with vocals.*, drums.*, bass.*, other.*")
    p.add_argument("-o", "--out", required=True, help="output folder for normalized stems and params.json")
    p.add_argument(
        "--track", action="append", default=[], metavar="PATH=CLASS", help="assign any file to a class"
    )
    add_profile_flags(p)
    add_stage_flags(p)
    p.add_argument("--plot", action="store_true", help="write spectra.png (normalized vs target)")
    args = p.parse_args(argv)
    loaded = load_buses(find_stem_files(args.stems_dir, args.track))
    stages = stages_from_args(args)
    res = automix(loaded.buses, model=None, profile=args.profile, stages=stages, seed=args.seed)
    args.profile = res.profile
    out = Path(args.out)
    written = _write_outputs(None, out, loaded, res, {})
    doc = _params_doc(loaded, res, args.profile, stages, written)
    if args.plot:
        doc["plots"] = _plot(out, res, load_profile(args.profile))
    write_text_atomic(out / "params.json", json.dumps(doc, indent=1) + "\n")
    for m in doc["notes"]:
        log.info(m)
    print(f"normalized {len(res.normalized)} stems -> {out} (params.json)")
    return 0


def mix_main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="fxmix mix", description="Automix a folder of stems.")
    p.add_argument("stems_dir", nargs="?", help="folder with vocals.*, drums.*, bass.*, other.*")
    p.add_argument("-o", "--out", required=True, help="output mix (.wav/.flac)")
    p.add_argument("--track", action="append", default=[], metavar="PATH=CLASS")
    p.add_argument("--model", default="default", help="default | none (normalized sum) | path to a model")
    p.add_argument("--save-normalized", metavar="DIR", help="also write the normalized stems here")
    add_profile_flags(p)
    add_stage_flags(p)
    p.add_argument("--plot", action="store_true", help="write <mix>.spectra.png")
    args = p.parse_args(argv)
    loaded = load_buses(find_stem_files(args.stems_dir, args.track))
    stages = stages_from_args(args)
    res = automix(loaded.buses, model=args.model, profile=args.profile, stages=stages, seed=args.seed)
    args.profile = res.profile
    out = Path(args.out)
    written = _write_outputs(
        out, Path(args.save_normalized) if args.save_normalized else None, loaded, res, {}
    )
    doc = _params_doc(loaded, res, args.profile, stages, written)
    if args.plot:
        doc["plots"] = [
            str(plot_spectra(out.with_suffix(".spectra.png"), res.normalized, load_profile(args.profile)))
        ]
    write_text_atomic(out.with_suffix(".params.json"), json.dumps(doc, indent=1) + "\n")
    for m in doc["notes"]:
        log.info(m)
    print(f"mix ({res.model}) -> {out}  [{doc['mix_lufs']} LUFS]")
    return 0


def demo_dir() -> Path:
    return Path(str(resources.files("fxmix").joinpath("demo")))


def demo_main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="fxmix demo", description="Mix the bundled demo multitrack.")
    p.add_argument("-o", "--out", default="fxmix-demo", help="output folder (default ./fxmix-demo)")
    p.add_argument("--model", default="default", help="default | none | path")
    p.add_argument("--plot", action="store_true")
    args = p.parse_args(argv)
    t0 = time.perf_counter()
    src = demo_dir()
    loaded = load_buses(find_stem_files(src))
    model = args.model
    if model == "default":
        if default_model_path() is None:
            loaded.notes.append("no default model is packaged yet: using the normalized-sum baseline")
            model = "none"
    res = automix(loaded.buses, model=model)
    out = Path(args.out)
    written = _write_outputs(out / "mix.wav", out / "normalized", loaded, res, {})
    doc = _params_doc(loaded, res, res.profile, DEFAULT_STAGES, written)
    if args.plot:
        doc["plots"] = _plot(out, res, load_profile(res.profile))
    write_text_atomic(out / "params.json", json.dumps(doc, indent=1) + "\n")
    write_text_atomic(out / "report.md", demo_report(loaded, res, doc, time.perf_counter() - t0))
    print((out / "report.md").read_text(encoding="utf-8"))
    return 0

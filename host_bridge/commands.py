"""`fxmix normalize | mix | demo | profile`: the offline main path, thin over the library.

stems on disk -> dsp.audio.read_audio (checked, resampled) -> class buses -> dsp.chain (params per stage)
-> optional network (model runtime, chunked) -> mix -> atomic writes + params.json.
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

import numpy as np
from fxmix.dsp import constants as C
from fxmix.dsp.audio import (
    AUDIO_EXTENSIONS,
    align_lengths,
    read_audio,
    resample,
    write_audio,
    write_text_atomic,
)
from fxmix.dsp.chain import ALL_STAGES, DEFAULT_STAGES, normalize_stems
from fxmix.dsp.errors import AudioInputError, ConfigError
from fxmix.dsp.features import integrated_loudness
from fxmix.dsp.profile import Profile, load_profile

log = logging.getLogger("fxmix")


# ---------------------------------------------------------------- finding and loading stems


def find_stem_files(
    stems_dir: str | Path | None, tracks: Sequence[str] = (), classes: Sequence[str] = C.CLASSES
) -> dict[str, list[Path]]:
    """Class -> files. Files in ``stems_dir`` named ``<class>.*`` or ``<class>_*``; ``tracks`` adds
    ``PATH=CLASS`` assignments for any file."""
    found: dict[str, list[Path]] = {c: [] for c in classes}
    if stems_dir is not None:
        d = Path(stems_dir)
        if not d.is_dir():
            raise AudioInputError(
                f"{d}: not a folder of stems; pass the folder that holds vocals.wav, drums.wav, ..."
            )
        for f in sorted(d.iterdir()):
            if f.suffix.lower() not in AUDIO_EXTENSIONS or f.name.startswith("."):
                continue
            for c in classes:
                if f.stem == c or f.stem.startswith(c + "_"):
                    found[c].append(f)
    for spec in tracks:
        path, sep, cls = spec.rpartition("=")
        if not sep or not path:
            raise ConfigError(f"--track {spec!r}: use PATH=CLASS, e.g. --track lead.wav=vocals")
        if cls not in classes:
            raise ConfigError(f"--track {spec!r}: class {cls!r} is not one of {list(classes)}")
        found[cls].append(Path(path))
    if not any(found.values()):
        raise AudioInputError(
            f"{stems_dir}: no stems found; name files vocals.*, drums.*, bass.*, other.* or use --track PATH=CLASS"
        )
    return found


@dataclass
class LoadedBuses:
    buses: dict[str, np.ndarray]  # class -> (2, n) float32 at SAMPLE_RATE (silence for missing classes)
    input_rate: int
    inputs: list[Path]
    notes: list[str] = field(default_factory=list)


def load_buses(files: Mapping[str, Sequence[Path]], classes: Sequence[str] = C.CLASSES) -> LoadedBuses:
    """Read every file (any rate -> 44.1 kHz), sum the tracks of each class, zero-pad to one length."""
    notes: list[str] = []
    rates: Counter = Counter()
    per_class: dict[str, list[np.ndarray]] = {}
    inputs: list[Path] = []
    for c, paths in files.items():
        for p in paths:
            a = read_audio(p)
            rates[a.source_rate] += 1
            inputs.append(p)
            if a.source_rate != C.SAMPLE_RATE:
                notes.append(f"{p}: resampled {a.source_rate} -> {C.SAMPLE_RATE} Hz")
            if a.source_channels == 1:
                notes.append(f"{p}: mono, duplicated to stereo")
            per_class.setdefault(c, []).append(a.audio)
    n = max(x.shape[-1] for xs in per_class.values() for x in xs)
    buses = {}
    for c in classes:
        xs = per_class.get(c)
        if not xs:
            notes.append(f"{c}: no stem, using silence")
            buses[c] = np.zeros((2, n), np.float32)
            continue
        padded, pad_notes = align_lengths({f"{c}[{i}]": x for i, x in enumerate(xs + [np.zeros((2, n))])})
        notes += pad_notes[:-1] if len(pad_notes) > len(xs) else pad_notes
        buses[c] = np.sum([padded[f"{c}[{i}]"] for i in range(len(xs))], axis=0).astype(np.float32)
    # the output rate: the inputs' rate when they agree, else the most common one (ties: highest)
    input_rate = max(rates.items(), key=lambda kv: (kv[1], kv[0]))[0]
    if len(rates) > 1:
        notes.append(f"inputs at several rates {sorted(rates)}; output at {input_rate} Hz")
    return LoadedBuses(buses, input_rate, inputs, [m for m in notes if "zeros" not in m])


# ---------------------------------------------------------------- models


def resolve_model(spec: str | None):
    """``none`` -> None (normalized-sum baseline); ``default`` -> the packaged model; else a path."""
    if spec is None or str(spec).lower() == "none":
        return None
    from fxmix.model.export import load_runtime

    if str(spec).lower() == "default":
        from fxmix.model import default_model_path

        path = default_model_path()
        if path is None:
            raise ConfigError(
                "no default model is packaged with this fxmix; use --model none or --model PATH"
            )
        runtime = load_runtime(path)
        runtime.name = f"default offline model ({runtime.info.get('arch')}, {path.name})"
        return runtime
    runtime = load_runtime(spec)
    runtime.name = f"{runtime.info.get('arch')} model ({spec})"
    return runtime


DEFAULT_PROFILE = C.REFERENCE_PROFILE


def model_profile(runtime) -> str:
    """The profile a network was trained with (normalize its inputs the same way), else DEFAULT_PROFILE."""
    info = getattr(runtime, "info", None) or {}
    return str((info.get("training") or {}).get("profile") or DEFAULT_PROFILE)


@dataclass
class MixResult:
    mix: np.ndarray
    normalized: dict[str, np.ndarray]
    params: dict[str, dict]
    notes: list[str]
    model: str
    timings_s: dict[str, float] = field(default_factory=dict)
    profile: str = DEFAULT_PROFILE


def automix(
    stems: Mapping[str, np.ndarray],
    sample_rate: int = C.SAMPLE_RATE,
    *,
    model="default",
    profile: str | Path | Profile | None = None,
    stages: Sequence[str] = DEFAULT_STAGES,
    seed: int = 0,
    progress: bool = False,
) -> MixResult:
    """Effect-normalize class buses and mix them (network, or the normalized sum with ``model=None/'none'``).

    Args:
        stems: class -> (2, n) float32 bus at ``sample_rate`` (44.1 kHz); missing classes are silence.
        model: "default", "none"/None, a path, or an already loaded runtime (has ``.mix``).
        profile: factory name, path or :class:`Profile`; ``None`` takes the profile the model was trained
            with (its sidecar's ``training.profile``), else ``DEFAULT_PROFILE``.
    """
    if sample_rate != C.SAMPLE_RATE:
        raise ConfigError(
            f"automix works at {C.SAMPLE_RATE} Hz; resample the buses first (got {sample_rate})"
        )
    runtime = model if hasattr(model, "mix") else resolve_model(model)
    if profile is None:
        profile = model_profile(runtime)
    prof = profile if isinstance(profile, Profile) else load_profile(profile)
    n = max(x.shape[-1] for x in stems.values())
    buses = {c: np.asarray(stems.get(c, np.zeros((2, n), np.float32)), np.float32) for c in prof.classes}
    buses, _ = align_lengths(buses)
    t0 = time.perf_counter()
    results = normalize_stems(buses, sample_rate, prof, stages=stages, seed=seed)
    t1 = time.perf_counter()
    normalized = {c: r.audio for c, r in results.items()}
    notes = [m for r in results.values() for m in r.notes]
    if runtime is None:
        mix = np.sum(list(normalized.values()), axis=0)
        name = "none (normalized sum)"
    else:
        order = list(C.CLASSES)
        x = np.stack([normalized.get(c, np.zeros((2, n), np.float32)) for c in order])
        mix = np.asarray(runtime.mix(x), dtype=np.float32)
        name = str(getattr(runtime, "name", getattr(runtime, "path", "model")))
    t2 = time.perf_counter()
    peak = float(np.max(np.abs(mix))) if mix.size else 0.0
    if peak > 1.0:
        notes.append(f"mix peaked at {20 * np.log10(peak):+.2f} dBFS; written as float (no clipping applied)")
    return MixResult(
        mix.astype(np.float32),
        normalized,
        {c: r.params_dict() for c, r in results.items()},
        notes,
        name,
        {"normalize_s": t1 - t0, "mix_s": t2 - t1},
        prof.name,
    )


# ---------------------------------------------------------------- CLI helpers


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
    from fxmix import __version__

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
    from .report import plot_spectra

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
        from .report import plot_spectra

        doc["plots"] = [
            str(plot_spectra(out.with_suffix(".spectra.png"), res.normalized, load_profile(args.profile)))
        ]
    write_text_atomic(out.with_suffix(".params.json"), json.dumps(doc, indent=1) + "\n")
    for m in doc["notes"]:
        log.info(m)
    print(f"mix ({res.model}) -> {out}  [{doc['mix_lufs']} LUFS]")
    return 0


def demo_dir() -> Path:
    return Path(str(resources.files("fxmix.host_bridge").joinpath("demo")))


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
        from fxmix.model import default_model_path

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
    from .report import demo_report

    write_text_atomic(out / "report.md", demo_report(loaded, res, doc, time.perf_counter() - t0))
    print((out / "report.md").read_text(encoding="utf-8"))
    return 0


def profile_main(argv: list[str] | None = None) -> int:
    from fxmix.dsp import profile_fit as pf
    from tqdm import tqdm

    argv = list(argv or [])
    if argv and argv[0] == "merge":
        p = argparse.ArgumentParser(
            prog="fxmix profile merge", description="Combine shard statistics exactly."
        )
        p.add_argument("parts", nargs="+")
        p.add_argument("-o", "--out", required=True)
        args = p.parse_args(argv[1:])
        prof = pf.merge_partials(args.parts)
        prof.save(args.out)
        print(f"merged {len(args.parts)} shard(s) -> {args.out} (stages fitted: {list(prof.stages_fitted)})")
        return 0
    if argv and argv[0] == "show":
        p = argparse.ArgumentParser(prog="fxmix profile show")
        p.add_argument("profile")
        args = p.parse_args(argv[1:])
        prof = load_profile(args.profile)
        print(f"profile {prof.name}: classes {list(prof.classes)}, stages {list(prof.stages_fitted)}")
        for c in prof.classes:
            t = prof.targets[c]
            print(
                f"  {c:<7} loudness {t.loudness_lufs} LUFS, onset peaks {t.onset_peak_mean_db} ± "
                f"{t.onset_peak_std_db} dB, mean phi {None if t.phi is None else round(float(np.mean(t.phi)), 3)}"
            )
        return 0
    if argv and argv[0] == "import-reference":
        p = argparse.ArgumentParser(prog="fxmix profile import-reference")
        p.add_argument("npz")
        p.add_argument("-o", "--out", required=True)
        args = p.parse_args(argv[1:])
        pf.profile_from_reference_npz(args.npz).save(args.out)
        print(f"wrote {args.out}")
        return 0
    p = argparse.ArgumentParser(
        prog="fxmix profile",
        description="Per-class average features over a wet multitrack dataset (also: merge, show, import-reference).",
    )
    p.add_argument("dataset_dir")
    p.add_argument("-o", "--out", required=True)
    p.add_argument("--split", default=None, help="sub-folder to use (e.g. train); default: all songs found")
    p.add_argument("--name", default=None)
    p.add_argument("--jobs", type=int, default=pf.default_jobs())
    p.add_argument(
        "--shard", default=None, metavar="K/N", help="partial statistics of shard K of N (one stage)"
    )
    p.add_argument("--base", default=None, help="profile with the stages fitted so far (for --shard)")
    args = p.parse_args(argv)
    base = (
        load_profile(args.base)
        if args.base
        else pf.new_profile(args.dataset_dir, split=args.split, name=args.name)
    )
    res = pf.fit_profile(
        args.dataset_dir,
        split=args.split,
        name=args.name,
        jobs=args.jobs,
        shard=args.shard,
        base=base,
        progress=lambda it, total: tqdm(it, total=total, desc="songs", unit="song"),
    )
    if isinstance(res, pf.PartialStats):
        pf.save_partial(args.out, res, base, args.shard)
        print(f"shard {args.shard} of stage {res.stage}: {res.songs} songs -> {args.out}")
        return 0
    res.save(args.out)
    print(f"profile {res.name}: {res.provenance.get('songs')} songs -> {args.out}")
    return 0

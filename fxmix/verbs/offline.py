"""`fxmix normalize | mix | demo`: the offline main path, thin over the library.

tracks on disk -> dsp.stems (every file gets a class; the table is printed before work starts) -> model.automix
(dsp.chain params per stage, optional network) -> mix -> outputs written as one unit (fxmix.outputs) + params.json.
"""

from __future__ import annotations

import argparse
import glob
import importlib.util
import json
import logging
import shutil
import tempfile
import time
from contextlib import ExitStack
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from tqdm import tqdm

from fxmix import __version__
from fxmix.dsp import constants as C
from fxmix.dsp.audio import atomic_path, writing
from fxmix.dsp.audio_stream import AudioStreamWriter
from fxmix.dsp.chain import ALL_STAGES, DEFAULT_STAGES, normalize_stems
from fxmix.dsp.errors import ConfigError
from fxmix.dsp.features import integrated_loudness, summed_loudness
from fxmix.dsp.profile import Profile, load_profile
from fxmix.dsp.stages.master import MASTER_LUFS
from fxmix.dsp.stems import LoadedBuses, StemMap, load_buses, resolve_stems
from fxmix.outputs import (
    FORMATS,
    atomic_folder,
    check_destination,
    clipping_notes_for,
    subtype_for,
    write_json,
    write_mix,
    write_mix_with_params,
    write_stem,
    write_stems,
)
from fxmix.report import demo_report, eq_limit_notes, plot_mix, plot_spectra

# fxmix.model, and torch with it (seconds of start-up, ~0.2 GB), is imported in the functions that mix or write
# mix decisions: `fxmix normalize` runs no network and never loads it
if TYPE_CHECKING:
    from fxmix.model.automix import MixResult

log = logging.getLogger("fxmix")

AUDIO_SUFFIXES = (".wav", ".flac", ".ogg")


# ---------------------------------------------------------------- flags


def add_profile_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--profile",
        default=None,
        help=f"factory profile name or profile JSON path (default: the model's training profile, else {C.REFERENCE_PROFILE})",
    )


def add_model_flag(p: argparse.ArgumentParser, what: str) -> None:
    p.add_argument(
        "--model",
        default="default",
        help=f"{what}: default | offline | causal | console (track-level mixer) | none (normalized sum) | PATH",
    )


def add_stage_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--no-eq", action="store_true", help="skip the EQ stage")
    p.add_argument("--no-comp", action="store_true", help="skip the compression stage")
    p.add_argument("--no-pan", action="store_true", help="skip the panning stage")
    p.add_argument("--no-loudness", action="store_true", help="skip the loudness stage")
    p.add_argument("--reverb", action="store_true", help="add the (training) reverb augmentation")
    p.add_argument("--seed", type=int, default=0, help="seed for the stochastic stages")


def add_track_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--track", action="append", default=[], metavar="PATH=CLASS", help="give any file a class")
    p.add_argument(
        "--map", action="append", default=[], metavar="NAME=CLASS",
        help="force the class of a file in the folder by its name (repeatable)",
    )


def add_format_flags(p: argparse.ArgumentParser) -> None:
    g = p.add_mutually_exclusive_group()
    for name in FORMATS:
        g.add_argument(f"--{name}", dest="format", action="store_const", const=name,
                       help=f"write {name} samples (default: float32 WAV, 24-bit FLAC)")
    p.add_argument("--plot", action="store_true", help="also write spectra PNGs (needs matplotlib)")


def stages_from_args(args) -> tuple[str, ...]:
    skip = {"eq": args.no_eq, "compression": args.no_comp, "panning": args.no_pan, "loudness": args.no_loudness}
    stages = [s for s in DEFAULT_STAGES if not skip[s]]
    if args.reverb:
        stages.insert(0, "reverb")
    return tuple(s for s in ALL_STAGES if s in stages)


def check_plot_ready(args) -> None:
    """``--plot`` needs matplotlib: say so before any work."""
    if getattr(args, "plot", False) and importlib.util.find_spec("matplotlib") is None:
        raise ConfigError("--plot needs matplotlib: pip install 'fxmix[plot]' (or leave out --plot)")


# ---------------------------------------------------------------- one song


@dataclass
class Song:
    """One song of a run: its tracks, and where its outputs go."""

    name: str
    tracks: StemMap
    mix_path: Path | None  # a mix file; None for normalize
    folder: Path | None  # the output folder written as one unit; None for a lone mix file

    @property
    def inputs(self) -> list[Path]:
        return [f.path for f in self.tracks.files]


def announce(song: Song) -> None:
    """Print the file -> class table before work starts, and log what deserves a warning."""
    print(f"{song.name}: {len(song.tracks.files)} file(s)\n{song.tracks.table()}", flush=True)
    for w in song.tracks.warnings:
        log.warning("%s", w)


def run_song(song: Song, model, profile: Profile, stages, seed: int, *,
             master: bool = True) -> tuple[LoadedBuses, MixResult]:
    """Read, normalize and mix one song under one progress bar (hidden with ``fxmix -q``). A track-level
    mixer (``--model console``) gets every track normalized on its own (and its sum mastered unless
    ``master`` is False); the others get class buses."""
    quiet = not log.isEnabledFor(logging.INFO)
    if getattr(model, "mixes_tracks", False):
        return run_song_tracks(song, model, profile, stages, seed, quiet, master=master)
    n_steps = len(song.tracks.files) + len(profile.classes) + (0 if model is None else 1)
    with tqdm(total=n_steps, desc=song.name, unit="step", disable=quiet, leave=False) as bar:
        bar.set_postfix_str("reading")
        loaded = load_buses(song.tracks.by_class(), profile.classes, on_file_done=lambda _p: bar.update())
        bar.set_postfix_str("normalizing")

        def stem_done(_name: str) -> None:
            bar.update()
            if bar.n == len(song.tracks.files) + len(profile.classes) and model is not None:
                bar.set_postfix_str("mixing")

        from fxmix.model.automix import automix

        res = automix(loaded.buses, model=model, profile=profile, stages=stages, seed=seed, on_stem_done=stem_done)
        bar.update(bar.total - bar.n)
    return loaded, res


def run_song_tracks(song: Song, model, profile: Profile, stages, seed: int, quiet: bool, *, master: bool = True):
    """:func:`run_song` for a track-level mixer: ``loaded.buses`` and the result are keyed by track name."""
    names = song_track_names(song)
    with tqdm(total=2 * len(names) + 1, desc=song.name, unit="step", disable=quiet, leave=False) as bar:
        bar.set_postfix_str("reading")
        files = {n: [f.path] for n, f in zip(names, song.tracks.files)}
        loaded = load_buses(files, names, on_file_done=lambda _p: bar.update())
        bar.set_postfix_str("normalizing")
        tracks = [(n, f.cls, loaded.buses[n]) for n, f in zip(names, song.tracks.files)]
        from fxmix.model.automix import automix_tracks

        res = automix_tracks(tracks, model=model, profile=profile, stages=stages, seed=seed,
                             on_stem_done=lambda _n: bar.update(), master=master)
        bar.update(bar.total - bar.n)
    return loaded, res


def song_track_names(song: Song) -> list[str]:
    from fxmix.model.decisions import track_names

    return track_names([f.path for f in song.tracks.files])


def song_decisions(song: Song, res: MixResult, stages) -> dict:
    """The song's ``decisions.json`` document (:mod:`fxmix.model.decisions`)."""
    names = song_track_names(song)
    files = {n: f.path for n, f in zip(names, song.tracks.files)}
    from fxmix.model.decisions import build_decisions

    return build_decisions(res, files, {n: f.cls for n, f in zip(names, song.tracks.files)}, stages=stages)


def params_doc(song: Song, loaded: LoadedBuses, res: MixResult, stages, written: dict, notes: list[str],
               mix_lufs: float | None = None) -> dict:
    """``loaded``: the song as read (input rate, inputs, notes); ``mix_lufs``: measured while the mix was
    streamed to its file, else measured on ``res.mix``. ``outputs`` lists the audio written; the decisions
    document (``written["decisions"]``) is named apart, under ``decisions``."""
    if mix_lufs is None:
        mix_lufs = integrated_loudness(res.mix, C.SAMPLE_RATE)
    written = dict(written)
    decisions = written.pop("decisions", None)
    return {
        "fxmix": __version__,
        "profile": res.profile,
        "stages": list(stages),
        "model": res.model,
        "sample_rate_in": loaded.input_rate,
        "tracks": song.tracks.to_list(),
        "missing_classes": song.tracks.missing,
        "inputs": [str(p) for p in loaded.inputs],
        "outputs": written,
        "decisions": decisions,
        "warnings": song.tracks.warnings,
        "notes": loaded.notes + res.notes + notes,
        "timings_s": {k: round(v, 3) for k, v in res.timings_s.items()},
        "mix_lufs": round(mix_lufs, 2) if mix_lufs == mix_lufs and abs(mix_lufs) != float("inf") else None,
        "params": res.params,
    }


def run_profile(args) -> Profile:
    """``--profile``, else the training profile of ``--model`` (read from its sidecar, before any loading)."""
    if args.profile:
        return load_profile(args.profile)
    from fxmix.model.names import training_profile  # the sidecar alone: torch is not imported

    return load_profile(training_profile(args.model))


# ---------------------------------------------------------------- verbs


def normalize_main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="fxmix normalize", description="Effect-normalize stems to a profile.")
    p.add_argument("stems_dir", nargs="?", help="folder of tracks (names give classes: 'Lead Vox.wav' is vocals)")
    p.add_argument("-o", "--out", required=True, help="output folder for normalized stems and params.json")
    add_track_flags(p)
    add_profile_flags(p)
    add_model_flag(p, "the model whose training profile sets the default --profile")
    add_stage_flags(p)
    add_format_flags(p)
    args = p.parse_args(argv)
    check_plot_ready(args)
    out = Path(args.out)
    profile = run_profile(args)
    tracks = resolve_stems(args.stems_dir, args.track, args.map, classes=profile.classes)
    song = Song(Path(args.stems_dir or out).name, tracks, None, out)
    check_destination(out, song.inputs)
    check_output_folder(out)
    announce(song)
    stages = stages_from_args(args)
    with atomic_folder(out) as tmp:
        loaded, res, mix_lufs, written = normalize_buses(song, profile, stages, args.seed, keep_inputs=args.plot,
                                                         write_to=(tmp, args.format))
        written = {k: str(out / Path(v).name) for k, v in written.items()}
        doc = params_doc(song, loaded, res, stages, written, [], mix_lufs=mix_lufs)
        if args.plot:
            doc["plots"] = [str(out / plot_spectra(tmp / "spectra.png", loaded.buses, res, profile).name)]
        write_json(tmp / "params.json", doc)
    report_notes(doc)
    print(f"normalized {len(res.normalized)} stems -> {out} (params.json)")
    return 0


@dataclass
class NormalizedBuses:
    """What ``fxmix normalize`` makes: the parts of a mix result that its params.json and plots read (no mix)."""

    normalized: dict[str, np.ndarray]
    params: dict[str, dict]
    notes: list[str]
    timings_s: dict[str, float]
    profile: str
    model: str = "none (normalized sum)"


def normalize_buses(song: Song, profile: Profile, stages, seed: int, *, keep_inputs: bool, write_to=None):
    """Read and normalize one song's class buses under one progress bar (hidden with ``fxmix -q``): the
    library call alone, no network. Each bus is normalized in its own array unless ``keep_inputs`` (the
    plots compare input and output), so the song takes its buses plus a stem of work per worker.
    ``write_to``: (folder, format): each normalized bus is written there as soon as it is done, while
    the others are still at work.

    Returns (loaded, :class:`NormalizedBuses`, integrated loudness of the normalized sum, class -> path
    written)."""
    quiet = not log.isEnabledFor(logging.INFO)
    written: dict[str, str] = {}
    with tqdm(total=len(song.tracks.files) + len(profile.classes), desc=song.name, unit="step", disable=quiet,
              leave=False) as bar:
        bar.set_postfix_str("reading")
        loaded = load_buses(song.tracks.by_class(), profile.classes, on_file_done=lambda _p: bar.update())

        def write(c: str, r) -> None:
            written[c] = write_stem(write_to[0], c, r.audio, loaded.input_rate, write_to[1], song.inputs)

        bar.set_postfix_str("normalizing")
        t0 = time.perf_counter()
        results = normalize_stems(loaded.buses, C.SAMPLE_RATE, profile, stages=stages, seed=seed,
                                  on_stem_done=lambda _c: bar.update(), on_result=write if write_to else None,
                                  in_place=not keep_inputs)
    t1 = time.perf_counter()
    normalized = {c: r.audio for c, r in results.items()}
    written = {c: written[c] for c in normalized if c in written}  # in class order, as write_stems lists them
    # in class order, as the normalized-sum mix adds them; summed chunk by chunk (no summed copy)
    mix_lufs = summed_loudness(list(normalized.values()), C.SAMPLE_RATE)
    res = NormalizedBuses(normalized, {c: r.params_dict() for c, r in results.items()},
                          [m for r in results.values() for m in r.notes],
                          {"normalize_s": t1 - t0, "mix_s": time.perf_counter() - t1}, profile.name)
    return loaded, res, mix_lufs, written


def check_output_folder(out: Path) -> None:
    """An output folder is replaced whole: refuse one that holds files fxmix did not write."""
    if out.exists() and not out.is_dir():
        raise ConfigError(f"{out}: exists and is a file; -o names a folder here")
    if out.is_dir() and any(out.iterdir()) and not (out / "params.json").is_file():
        raise ConfigError(
            f"{out}: folder exists and holds files that are not an fxmix output (no params.json); "
            "choose a new or empty folder (fxmix replaces its output folder whole)"
        )


def report_notes(doc: dict) -> None:
    for m in doc["notes"]:
        log.info("%s", m)
    for m in eq_limit_notes(doc["params"]):
        log.info("%s", m)


def mix_songs(args, songs: list[Song]) -> int:
    """Mix every song with one loaded model; each song's outputs are written as one unit."""
    from fxmix.model.runtime import resolve_model

    model, profile = resolve_model(args.model), run_profile(args)
    stages = stages_from_args(args)
    for song in songs:
        announce(song)
        if streamable(args, model, stages):
            doc, res = mix_song_streamed(song, model, profile, stages, args)
            report_notes(doc)
            print(f"{song.name}: mix ({res.model}) -> {doc['outputs']['mix']}  [{doc['mix_lufs']} LUFS]")
            continue
        loaded, res = run_song(song, model, profile, stages, args.seed, master=not args.no_master)
        if song.folder is not None:
            doc = write_song_folder(song, loaded, res, stages, args, profile)
        else:
            doc = write_lone_mix(song, loaded, res, stages, args, profile)
        report_notes(doc)
        print(f"{song.name}: mix ({res.model}) -> {doc['outputs']['mix']}  [{doc['mix_lufs']} LUFS]")
    return 0


def streamable(args, model, stages) -> bool:
    """Whether the song can take the streamed path (:func:`mix_song_streamed`): everything but plots, saved
    normalized stems, a track-level mixer and the reverb augmentation, which need whole arrays."""
    return not (args.plot or args.save_normalized is not None or getattr(model, "mixes_tracks", False)
                or "reverb" in stages)


def mix_song_streamed(song: Song, model, profile: Profile, stages, args) -> tuple[dict, MixResult]:
    """Mix one song with memory bounded whatever its length (:mod:`fxmix.model.streamed`): buses normalized
    one at a time through a work folder, the mix streamed into its file. The outputs are the unit
    :func:`write_song_folder` / :func:`write_lone_mix` write (mix, params, decisions); the work folder lies
    inside the output's temporary folder, or next to a lone mix (``.NAME.*.work``, removed by the next run
    if a run is killed)."""
    from fxmix.model.decisions import DECISIONS_NAME, write_decisions
    from fxmix.model.streamed import N_EXCERPTS, mix_song, normalize_song

    quiet = not log.isEnabledFor(logging.INFO)
    out = song.folder if song.folder is not None else song.mix_path
    with tqdm(total=len(song.tracks.files) + len(profile.classes) + 1, desc=song.name, unit="step",
              disable=quiet, leave=False) as bar, ExitStack() as stack:
        if song.folder is not None:
            tmp = stack.enter_context(atomic_folder(song.folder))
            work, mix_tmp, params, decisions = tmp / ".work", tmp / "mix.wav", tmp / "params.json", tmp / DECISIONS_NAME
            written = {"mix": str(out / "mix.wav"), "decisions": str(out / DECISIONS_NAME)}
        else:
            for stale in out.parent.glob(f".{glob.escape(out.name)}.*.work"):  # of a killed run
                shutil.rmtree(stale, ignore_errors=True)
            work = Path(stack.enter_context(
                tempfile.TemporaryDirectory(prefix=f".{out.name}.", suffix=".work", dir=out.parent)))
            mix_tmp, params, decisions = out, out.with_suffix(".params.json"), out.with_suffix(".decisions.json")
            written = {"mix": str(out), "decisions": str(decisions)}
            stack.enter_context(writing(params))
            params = Path(stack.enter_context(atomic_path(params)))
            decisions = Path(stack.enter_context(atomic_path(decisions)))
        bar.set_postfix_str("reading")
        norm = normalize_song(song.tracks.by_class(), profile, work, stages=stages, seed=args.seed,
                              on_file_done=lambda _p: bar.update(), on_stem_done=lambda _c: bar.update())
        bar.set_postfix_str("mixing")
        with AudioStreamWriter(mix_tmp, C.SAMPLE_RATE, norm.stems.input_rate, protect=song.inputs,
                               subtype=subtype_for(mix_tmp, args.format)) as writer:
            res = mix_song(norm, model, writer.write)
            writer.finish()
            notes = clipping_notes_for(out if song.folder is None else mix_tmp, writer.subtype, writer.peak,
                                       writer.n_over)
            if model is not None and res.mix.shape[-1] < norm.stems.n:
                notes.append(f"decisions: the buses' band gains are estimated on {res.mix.shape[-1] / C.SAMPLE_RATE:.0f}"
                             f" s of the {norm.stems.n / C.SAMPLE_RATE:.0f}-s mix ({N_EXCERPTS} evenly spaced excerpts)")
            doc = params_doc(song, norm.stems, res, stages, written, notes, mix_lufs=writer.lufs)
            write_decisions(decisions, song_decisions(song, res, stages))
            Path(params).write_text(json.dumps(doc, indent=1) + "\n", encoding="utf-8")
        shutil.rmtree(work, ignore_errors=True)
        bar.update(bar.total - bar.n)
    return doc, res


def write_song_folder(song: Song, loaded, res, stages, args, profile, extra=None) -> dict:
    """The song's output folder as one unit: mix.wav, params.json, optional normalized stems and plots;
    ``extra(tmp_folder, doc)`` may add more files (the demo's report) before the folder is swapped in."""
    from fxmix.model.decisions import DECISIONS_NAME, write_decisions

    out = song.folder
    with atomic_folder(out) as tmp:
        path, notes = write_mix(tmp / "mix.wav", res.mix, loaded.input_rate, args.format, song.inputs)
        written = {"mix": str(out / "mix.wav"), "decisions": str(out / DECISIONS_NAME)}
        write_decisions(tmp / DECISIONS_NAME, song_decisions(song, res, stages))
        if args.save_normalized is not None:
            stems = write_stems(tmp / "normalized", res.normalized, loaded.input_rate, args.format, song.inputs)
            written |= {k: str(out / "normalized" / Path(v).name) for k, v in stems.items()}
        doc = params_doc(song, loaded, res, stages, written, notes)
        if args.plot:
            plots = [plot_mix(tmp / "mix.spectra.png", loaded.buses, res)]
            if not res.per_track:  # the per-class target plot; a track-level mix has per-track params
                plots.append(plot_spectra(tmp / "spectra.png", loaded.buses, res, profile))
            doc["plots"] = [str(out / p.name) for p in plots]
        write_json(tmp / "params.json", doc)
        if extra is not None:
            extra(tmp, doc)
    return doc


def write_lone_mix(song: Song, loaded, res, stages, args, profile) -> dict:
    """``-o mix.wav``: the mix and ``mix.params.json`` (see :func:`fxmix.outputs.write_mix_with_params`)."""
    out = song.mix_path
    decisions = out.with_suffix(".decisions.json")
    written = {"mix": str(out), "decisions": str(decisions)}
    notes: list[str] = []
    doc = params_doc(song, loaded, res, stages, written, notes)
    if args.plot:
        doc["plots"] = [str(plot_mix(out.with_suffix(".spectra.png"), loaded.buses, res))]
    if args.save_normalized:
        folder = Path(args.save_normalized)
        with atomic_folder(folder) as tmp:
            stems = write_stems(tmp, res.normalized, loaded.input_rate, args.format, song.inputs)
        doc["outputs"] |= {k: str(folder / Path(v).name) for k, v in stems.items()}
    return write_mix_with_params(out, res.mix, loaded.input_rate, args.format, song.inputs, doc,
                                 extra={decisions: song_decisions(song, res, stages)})


def mix_main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="fxmix mix",
        description="Automix folders of tracks. One folder and -o NAME.wav: that mix file (+ NAME.params.json); "
        "otherwise OUT/<song>/mix.wav + params.json per folder.",
    )
    p.add_argument("songs", nargs="*", help="song folders of tracks (names give classes: 'Lead Vox.wav' is vocals)")
    p.add_argument("-o", "--out", required=True, help="output mix file (one song) or output folder")
    add_track_flags(p)
    add_model_flag(p, "mixing model")
    p.add_argument(
        "--save-normalized", nargs="?", const="", default=None, metavar="DIR",
        help="also write the normalized stems: into DIR with a mix file output, into OUT/<song>/normalized otherwise",
    )
    p.add_argument(
        "--no-master", action="store_true",
        help="console mixer: leave its sum as it is (default: the master stage, glue compressor + gain to "
        f"{MASTER_LUFS:g} LUFS + -1 dBTP limiter, as the mixes it learnt from)",
    )
    add_profile_flags(p)
    add_stage_flags(p)
    add_format_flags(p)
    args = p.parse_args(argv)
    check_plot_ready(args)
    out = Path(args.out)
    lone = out.suffix.lower() in AUDIO_SUFFIXES
    if lone and len(args.songs) > 1:
        raise ConfigError(f"-o {out}: several song folders need an output folder, not a file")
    if lone and args.save_normalized == "":
        raise ConfigError("--save-normalized needs a folder (DIR) when -o is a mix file")
    if args.save_normalized:
        check_destination(Path(args.save_normalized), [])
        check_output_folder(Path(args.save_normalized))
    if args.track and len(args.songs) > 1:
        raise ConfigError("--track PATH=CLASS adds files to one song; give one song folder with it")
    folders = args.songs or [None]
    classes = run_profile(args).classes
    songs = []
    for folder in folders:
        tracks = resolve_stems(folder, args.track, args.map, classes=classes)
        name = Path(folder).resolve().name if folder else tracks.files[0].path.parent.name
        songs.append(Song(name, tracks, out if lone else None, None if lone else out / name))
    names = [s.name for s in songs]
    if len(set(names)) != len(names):
        raise ConfigError(f"song folders with the same name {names}: their outputs would collide in {out}")
    for song in songs:
        check_destination(song.mix_path or song.folder, song.inputs)
        if song.folder is not None:
            check_output_folder(song.folder)
        else:
            subtype_for(song.mix_path, args.format)
    return mix_songs(args, songs)


def demo_dir() -> Path:
    return Path(str(resources.files("fxmix").joinpath("demo")))


def demo_main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="fxmix demo", description="Mix the bundled demo multitrack.")
    p.add_argument("-o", "--out", default="fxmix-demo", help="output folder (default ./fxmix-demo)")
    add_model_flag(p, "mixing model")
    p.add_argument("--plot", action="store_true", help="also write spectra PNGs (needs matplotlib)")
    args = p.parse_args(argv)
    check_plot_ready(args)
    args.profile, args.format, args.save_normalized, args.seed = None, None, "", 0
    t0 = time.perf_counter()
    out = Path(args.out)
    profile = run_profile(args)
    song = Song("demo", resolve_stems(demo_dir(), classes=profile.classes), None, out)
    check_destination(out, song.inputs)
    check_output_folder(out)
    from fxmix.model.runtime import resolve_model

    model = resolve_model(args.model)
    announce(song)
    loaded, res = run_song(song, model, profile, DEFAULT_STAGES, 0)
    reports: list[str] = []

    def write_report(tmp: Path, doc: dict) -> None:
        reports.append(demo_report(loaded, res, doc, time.perf_counter() - t0))
        (tmp / "report.md").write_text(reports[0], encoding="utf-8")

    write_song_folder(song, loaded, res, DEFAULT_STAGES, args, profile, extra=write_report)
    print(reports[0])
    return 0

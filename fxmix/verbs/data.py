"""`fxmix data synth|build|remix|human-table|stats`: the synthetic wet corpus (:mod:`fxmix.training.synth`), the
session corpus (:mod:`fxmix.training.corpus`), re-mixing a built corpus with the current engineer
(:mod:`fxmix.training.engineer.calibration`) and dataset statistics (:mod:`fxmix.training.stats`)."""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
from pathlib import Path

from tqdm import tqdm

from fxmix.dsp.audio import write_text_atomic
from fxmix.dsp.errors import ConfigError
from fxmix.dsp.profile import load_profile
from fxmix.dsp.profile_fit import fit_profile, linear_mean_spectra
from fxmix.training.corpus.build import build_corpus
from fxmix.training.corpus.families import FAMILIES
from fxmix.training.data import SPLITS, MultitrackDataset
from fxmix.training.engineer.calibration import compare_profiles, format_compare, remix_corpus
from fxmix.training.stats import corpus_sources, split_stats
from fxmix.training.synth import DEFAULT_SPLIT_RATIOS, synthesize_corpus


def _ratios(text: str) -> tuple[float, ...]:
    try:
        vals = tuple(float(v) for v in text.split(","))
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"{text!r}: give three numbers, e.g. 0.8,0.1,0.1") from exc
    if len(vals) != 3:
        raise argparse.ArgumentTypeError(f"{text!r}: give three numbers train,valid,test, e.g. 0.8,0.1,0.1")
    return vals


def add_synth_args(ap: argparse.ArgumentParser, *, songs: int, out_required: bool) -> None:
    """The corpus options shared by ``fxmix data synth`` and ``fxmix bench synth``."""
    ap.add_argument("-o", "--out", required=out_required, help="output dataset folder")
    ap.add_argument("--songs", type=int, default=songs, help=f"number of songs (default {songs})")
    ap.add_argument("--seconds", type=float, default=20.0, help="song length in seconds (default 20)")
    ap.add_argument("--seed", type=int, default=0, help="corpus seed (default 0)")
    ap.add_argument("--jobs", type=int, default=min(2, os.cpu_count() or 1), help="worker processes")
    ap.add_argument(
        "--split-ratios",
        type=_ratios,
        default=DEFAULT_SPLIT_RATIOS,
        help="train,valid,test proportions (default 0.8,0.1,0.1); test songs use a held-out source family",
    )
    ap.add_argument("--format", choices=("flac", "wav"), default="flac", help="flac = PCM_24, wav = float32")
    ap.add_argument(
        "--sources",
        default="auto",
        help="auto (procedural, plus soundfont when pretty_midi+tinysoundfont are installed) or a comma list "
        "of procedural,soundfont",
    )
    ap.add_argument("--overwrite", action="store_true", help="replace songs that already exist in --out")
    ap.add_argument("--no-progress", action="store_true", help="no progress bar")


def get_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog="fxmix data", description="synthetic wet multitrack corpus and statistics"
    )
    sub = ap.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser(
        "synth", help="write a synthetic wet multitrack dataset (MUSDB layout + dry/ + params)"
    )
    add_synth_args(s, songs=100, out_required=True)
    b = sub.add_parser("build", help="write the session corpus (tracks dry+wet, class stems, mixture, song.json)")
    b.add_argument("--out", required=True, help="output corpus folder")
    b.add_argument("--songs", type=int, default=200, help="songs in the whole build (default 200)")
    b.add_argument("--seconds", type=float, default=20.0, help="song length in seconds (default 20)")
    b.add_argument("--seed", type=int, default=0, help="build seed (default 0)")
    b.add_argument("--jobs", type=int, default=min(2, os.cpu_count() or 1), help="worker processes")
    b.add_argument("--shard", default=None, help="K/N: build only songs i with i %% N == K-1 (default all)")
    b.add_argument("--families", default=",".join(FAMILIES), help=f"comma list of {','.join(FAMILIES)}")
    b.add_argument("--resume", action="store_true",
                   help="keep the songs an earlier run of the same build wrote whole; render only the rest")
    b.add_argument("--no-progress", action="store_true", help="no progress bar")
    rm = sub.add_parser(
        "remix", help="re-mix the dry tracks of a built corpus with the current engineer (no re-rendering)"
    )
    rm.add_argument("root", help="a corpus written by `fxmix data build`")
    rm.add_argument("--out", required=True, help="new folder for the class stems and mixtures")
    rm.add_argument("--splits", default="train", help="comma-separated splits to re-mix (default train)")
    rm.add_argument("--jobs", type=int, default=min(2, os.cpu_count() or 1), help="worker processes")
    rm.add_argument("--no-progress", action="store_true", help="no progress bar")
    ht = sub.add_parser("human-table", help="draft the human-family instrument table from installed packages")
    ht.add_argument("--write", default=None, help="write the draft here (review it before shipping)")
    st = sub.add_parser(
        "stats", help="per split/class loudness, spectral centroid, crest factor; --compare a profile"
    )
    st.add_argument("root", help="dataset folder (<root>/<split>/<song>/...)")
    st.add_argument("--splits", default=",".join(SPLITS), help="comma-separated splits (default all)")
    st.add_argument("--max-songs", type=int, default=0, help="measure at most this many songs per split")
    st.add_argument("--json", default=None, help="also write the statistics to this JSON file")
    st.add_argument(
        "--compare",
        default=None,
        metavar="PROFILE",
        help="fit a profile on the wet stems (the `fxmix profile` procedure) and compare it per class with "
        "PROFILE (a factory name such as musdb18-reference, or a .json): spectrum, phi, onset peaks, loudness",
    )
    st.add_argument(
        "--fitted", default=None, help="with --compare: use this fitted profile instead of fitting"
    )
    st.add_argument(
        "--fit-split", default="train", help="with --compare: the split to fit on (default train)"
    )
    st.add_argument("--save-profile", default=None, help="with --compare: write the fitted profile here")
    st.add_argument(
        "--jobs", type=int, default=min(2, os.cpu_count() or 1), help="worker processes for the fit"
    )
    return ap


def main(argv: list[str] | None = None) -> int:
    """`fxmix data synth ...` / `fxmix data stats DIR`."""
    args = get_parser().parse_args(sys.argv[1:] if argv is None else argv)
    if args.cmd == "synth":
        return _synth(args, argv)
    if args.cmd == "build":
        return _build(args, argv)
    if args.cmd == "remix":
        return _remix(args)
    if args.cmd == "human-table":
        return _human_table(args)
    return _stats(args)


def _build(args: argparse.Namespace, argv: list[str] | None) -> int:
    fams = tuple(f for f in args.families.split(",") if f)
    m = build_corpus(args.out, args.songs, args.seconds, args.seed, jobs=args.jobs, shard=args.shard,
                     families=fams, progress=not args.no_progress, command=_command(argv, "fxmix data"),
                     resume=args.resume)
    kept = f" ({m['kept']} kept from an earlier run)" if m["kept"] else ""
    print(f"wrote {len(m['songs'])} songs (shard {m['shard']}) of {m['seconds']:g} s to {args.out}{kept}")
    print("  splits: " + ", ".join(f"{k}={v}" for k, v in m["split_counts"].items()))
    print("  families: " + ", ".join(f"{k}={v}" for k, v in m["family_counts"].items()))
    print(f"  {m['wall_s']:.1f} s wall, {m['cpu_s']:.1f} s CPU in workers, {args.jobs} job(s)")
    return 0


def _remix(args: argparse.Namespace) -> int:
    src = Path(args.root)
    splits = [s for s in args.splits.split(",") if s]
    missing = [s for s in splits if not (src / s).is_dir()]
    if missing:
        raise ConfigError(f"{src}: no split folder {', '.join(missing)}; give a corpus from `fxmix data build` "
                          f"and --splits among its {', '.join(s for s in SPLITS if (src / s).is_dir()) or 'none'}")
    for split in splits:
        names = remix_corpus(src, args.out, split=split, jobs=args.jobs, progress=not args.no_progress)
        print(f"re-mixed {len(names)} {split} songs of {src} into {Path(args.out) / split}")
    print(f"compare: fxmix data stats {shlex.quote(args.out)} --splits {splits[0]} --compare musdb18-reference")
    return 0


def _human_table(args: argparse.Namespace) -> int:
    from fxmix.training.corpus.human import draft_table  # lazy: renders every module, only for this verb

    table = draft_table()
    text = json.dumps(table, indent=1) + "\n"
    if args.write:
        write_text_atomic(args.write, text)
        print(f"wrote the draft table to {args.write}: review classes and reasons before shipping it")
    else:
        print(text)
    return 0


def _command(argv: list[str] | None, prefix: str) -> str:
    parts = sys.argv[1:] if argv is None else argv
    return prefix + " " + " ".join(shlex.quote(a) for a in parts)


def _synth(args: argparse.Namespace, argv: list[str] | None) -> int:
    summary = synthesize_corpus(
        args.out,
        args.songs,
        args.seconds,
        args.seed,
        jobs=args.jobs,
        split_ratios=args.split_ratios,
        audio_format=args.format,
        overwrite=args.overwrite,
        progress=not args.no_progress,
        command=_command(argv, "fxmix data"),
        sources=args.sources,
    )
    print(f"wrote {summary.n_songs} songs of {summary.seconds:g} s to {summary.root}")
    print("  splits: " + ", ".join(f"{k}={v}" for k, v in summary.split_counts.items()))
    print("  sources used: " + ", ".join(summary.sources_used))
    print("  families: " + "; ".join(f"{k}: {', '.join(v) or '-'}" for k, v in summary.families.items()))
    print(
        f"  {summary.wall_s:.1f} s wall, {summary.songs_per_minute:.1f} songs/minute with {summary.jobs} job(s)"
    )
    return 0


def _stats(args: argparse.Namespace) -> int:
    root = Path(args.root)
    if not root.is_dir():
        raise ConfigError(f"{root}: not a folder; give a dataset root with train/valid/test subfolders")
    splits = [s for s in args.splits.split(",") if s]
    print(f"dataset: {root}")
    print(f"sources used: {corpus_sources(root)}")
    result: dict = {"root": str(root), "sources": corpus_sources(root), "splits": {}}
    for split in splits:
        ds = MultitrackDataset(root, split)
        if len(ds) == 0:
            print(f"\n[{split}] no songs")
            continue
        out_split = split_stats(
            ds, args.max_songs, on_skip=lambda path, exc: print(f"  skipping {path}: {exc}")
        )
        _print_split(split, out_split, len(ds.skipped))
        result["splits"][split] = out_split
    if args.compare:
        result["compare"] = _compare(root, args)
    if args.json:
        write_text_atomic(args.json, json.dumps(result, indent=1) + "\n")
    return 0


def _compare(root: Path, args: argparse.Namespace) -> dict:
    reference = load_profile(args.compare)
    if args.fitted:
        fitted = load_profile(args.fitted)
    else:
        bar = tqdm(desc="fit profile", unit="song", leave=False)

        def progress(it, total):
            bar.reset(total=total)
            for x in it:
                bar.update()
                yield x

        fitted = fit_profile(root, split=args.fit_split, name=root.name, jobs=args.jobs, progress=progress)
        bar.close()
        if args.save_profile:
            fitted.save(args.save_profile)
    # the spectra as the reference averages them (linear magnitudes), from the same split's stems
    spectra = linear_mean_spectra(root, args.fit_split, jobs=args.jobs)
    rows = compare_profiles(fitted, reference, spectra)
    print()
    print(format_compare(rows, fitted.name, reference.name))
    return {"fitted": fitted.name, "reference": reference.name, "rows": rows}


def _print_split(split: str, out_split: dict, n_skipped: int) -> None:
    print(f"\n[{split}] {out_split['n_songs']} songs" + (f" ({n_skipped} skipped)" if n_skipped else ""))
    fams = out_split["sources"]
    if fams:
        print("  source/family: " + ", ".join(f"{k} x{v}" for k, v in sorted(fams.items())))
    print(
        f"  {'class':<8} {'LUFS mean [min, max]':>26} {'centroid Hz mean [min, max]':>32} {'crest dB mean':>14}"
    )
    for k, summ in out_split["classes"].items():
        lu, ce, cr = summ["lufs"], summ["centroid_hz"], summ["crest_db"]
        print(
            f"  {k:<8} {lu['mean']:>8.1f} [{lu['min']:>6.1f}, {lu['max']:>6.1f}]"
            f" {ce['mean']:>14.0f} [{ce['min']:>6.0f}, {ce['max']:>6.0f}]"
            f" {cr['mean']:>14.1f}"
        )

"""`fxmix data synth|stats` and `fxmix bench synth`: thin CLI over :mod:`.synth` and :mod:`.data`."""

from __future__ import annotations

import argparse
import json
import math
import os
import shlex
import sys
import tempfile
from pathlib import Path

import numpy as np

from ..dsp.constants import CLASSES
from ..dsp.errors import AudioInputError, ConfigError
from .data import SPLITS, MultitrackDataset, crest_factor_db, spectral_centroid_hz
from .synth import DEFAULT_SPLIT_RATIOS, resolve_sources, synthesize_corpus
from .synth_chains import loudness_lufs

#: Throughput target of the acceptance: songs of 20 s per minute on 2 cores.
TARGET_SONGS_PER_MINUTE = 20.0


def _ratios(text: str) -> tuple[float, ...]:
    try:
        vals = tuple(float(v) for v in text.split(","))
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"{text!r}: give three numbers, e.g. 0.8,0.1,0.1") from exc
    if len(vals) != 3:
        raise argparse.ArgumentTypeError(f"{text!r}: give three numbers train,valid,test, e.g. 0.8,0.1,0.1")
    return vals


def _add_synth_args(ap: argparse.ArgumentParser, *, songs: int, out_required: bool) -> None:
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
    _add_synth_args(s, songs=100, out_required=True)
    st = sub.add_parser("stats", help="per split/class loudness, spectral centroid, crest factor")
    st.add_argument("root", help="dataset folder (<root>/<split>/<song>/...)")
    st.add_argument("--splits", default=",".join(SPLITS), help="comma-separated splits (default all)")
    st.add_argument("--max-songs", type=int, default=0, help="measure at most this many songs per split")
    st.add_argument("--json", default=None, help="also write the statistics to this JSON file")
    return ap


def data_main(argv: list[str] | None = None) -> int:
    """`fxmix data synth ...` / `fxmix data stats DIR`."""
    args = get_parser().parse_args(sys.argv[1:] if argv is None else argv)
    if args.cmd == "synth":
        return _synth(args, argv)
    return _stats(args)


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


def _sources(root: Path) -> str:
    meta = root / "corpus.json"
    if meta.exists():
        try:
            d = json.loads(meta.read_text(encoding="utf-8"))
            fams = "; ".join(f"{k}: {', '.join(v) or '-'}" for k, v in d.get("families", {}).items())
            return f"{', '.join(d.get('sources_used', []))} (families {fams})"
        except (json.JSONDecodeError, OSError):
            pass
    return "unknown (no corpus.json: not made by fxmix data synth)"


def _song_sources(song_path: Path) -> str | None:
    p = song_path / "params.json" if song_path.is_dir() else None
    if p is None or not p.exists():
        return None
    try:
        d = json.loads(p.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, OSError):
        return None
    return f"{d.get('source', '?')}/{d.get('family', '?')}"


def _stats(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from .synth import _meter

    root = Path(args.root)
    if not root.is_dir():
        raise ConfigError(f"{root}: not a folder; give a dataset root with train/valid/test subfolders")
    splits = [s for s in args.splits.split(",") if s]
    print(f"dataset: {root}")
    print(f"sources used: {_sources(root)}")
    result: dict = {"root": str(root), "sources": _sources(root), "splits": {}}
    for split in splits:
        ds = MultitrackDataset(root, split)
        if len(ds) == 0:
            print(f"\n[{split}] no songs")
            continue
        n_max = len(ds) if args.max_songs <= 0 else min(len(ds), args.max_songs)
        meter = _meter(ds.sample_rate)
        rows: dict[str, dict[str, list[float]]] = {
            k: {"lufs": [], "centroid_hz": [], "crest_db": []} for k in (*CLASSES, "mixture")
        }
        fams: dict[str, int] = {}
        for i in tqdm(range(n_max), desc=f"stats {split}", unit="song", leave=False):
            try:
                song = ds[i]
            except AudioInputError as exc:  # an unreadable song is reported, not fatal
                print(f"  skipping {ds.songs[i]}: {exc}")
                continue
            src = _song_sources(song.path)
            if src:
                fams[src] = fams.get(src, 0) + 1
            for k, x in (*song.stems.items(), ("mixture", song.mixture)):
                if not np.any(x):
                    continue
                rows[k]["lufs"].append(loudness_lufs(meter, x))
                rows[k]["centroid_hz"].append(spectral_centroid_hz(x, song.sample_rate))
                rows[k]["crest_db"].append(crest_factor_db(x))
        print(f"\n[{split}] {n_max} songs" + (f" ({len(ds.skipped)} skipped)" if ds.skipped else ""))
        if fams:
            print("  source/family: " + ", ".join(f"{k} x{v}" for k, v in sorted(fams.items())))
        print(
            f"  {'class':<8} {'LUFS mean [min, max]':>26} {'centroid Hz mean [min, max]':>32} {'crest dB mean':>14}"
        )
        out_split: dict = {"n_songs": n_max, "sources": fams, "classes": {}}
        for k, feats in rows.items():
            summ = {f: _summary(v) for f, v in feats.items()}
            out_split["classes"][k] = summ
            lu, ce, cr = summ["lufs"], summ["centroid_hz"], summ["crest_db"]
            print(
                f"  {k:<8} {lu['mean']:>8.1f} [{lu['min']:>6.1f}, {lu['max']:>6.1f}]"
                f" {ce['mean']:>14.0f} [{ce['min']:>6.0f}, {ce['max']:>6.0f}]"
                f" {cr['mean']:>14.1f}"
            )
        result["splits"][split] = out_split
    if args.json:
        from ..dsp.audio import write_text_atomic

        write_text_atomic(args.json, json.dumps(result, indent=1) + "\n")
    return 0


def _summary(values: list[float]) -> dict[str, float]:
    v = [x for x in values if math.isfinite(x)]
    if not v:
        return {"mean": float("nan"), "min": float("nan"), "max": float("nan"), "n": 0}
    return {"mean": float(np.mean(v)), "min": float(np.min(v)), "max": float(np.max(v)), "n": len(v)}


def bench_synth_main(argv: list[str] | None = None) -> int:
    """`fxmix bench synth`: time the synthetic corpus (default 20 songs of 20 s, 2 jobs) and print songs/minute."""
    ap = argparse.ArgumentParser(prog="fxmix bench synth", description=bench_synth_main.__doc__)
    _add_synth_args(ap, songs=20, out_required=False)
    args = ap.parse_args(sys.argv[1:] if argv is None else argv)
    with tempfile.TemporaryDirectory(prefix="fxmix-bench-synth-") as tmp:
        out = args.out or tmp
        summary = synthesize_corpus(
            out,
            args.songs,
            args.seconds,
            args.seed,
            jobs=args.jobs,
            split_ratios=args.split_ratios,
            audio_format=args.format,
            overwrite=True,
            progress=not args.no_progress,
            command="fxmix bench synth",
            sources=args.sources,
        )
    per_song = [s["seconds_wall"] for s in summary.songs]
    rate_20s = summary.songs_per_minute * summary.seconds / 20.0  # normalised to 20 s songs
    verdict = "meets" if rate_20s >= TARGET_SONGS_PER_MINUTE else "BELOW"
    print(
        f"synth: {summary.n_songs} songs x {summary.seconds:g} s, {summary.jobs} job(s) on {os.cpu_count()} CPU(s): "
        f"{summary.wall_s:.1f} s wall, {summary.songs_per_minute:.1f} songs/minute "
        f"({rate_20s:.1f} songs of 20 s per minute; {verdict} the target of {TARGET_SONGS_PER_MINUTE:g})"
    )
    print(
        f"  per song (render+write, one worker): median {np.median(per_song):.2f} s, max {max(per_song):.2f} s"
    )
    print(f"  sources used: {', '.join(summary.sources_used)}")
    fr = ",".join(f"{r:g}" for r in args.split_ratios)
    print(
        f"  reproduce: fxmix bench synth --songs {args.songs} --seconds {args.seconds:g} --seed {args.seed} "
        f"--jobs {args.jobs} --split-ratios {fr} --format {args.format} --sources {','.join(resolve_sources(args.sources))}"
    )
    return 0

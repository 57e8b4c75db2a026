"""`fxmix bench synth`: time the synthetic corpus (default 20 songs of 20 s, 2 jobs) and print songs/minute."""

from __future__ import annotations

import argparse
import os
import sys
import tempfile

import numpy as np

from fxmix.training.synth import resolve_sources, synthesize_corpus
from fxmix.verbs.data import add_synth_args

#: Throughput target of the acceptance: songs of 20 s per minute on 2 cores.
TARGET_SONGS_PER_MINUTE = 20.0


def main(argv: list[str] | None = None) -> int:
    """`fxmix bench synth`: time the synthetic corpus (default 20 songs of 20 s, 2 jobs) and print songs/minute."""
    ap = argparse.ArgumentParser(prog="fxmix bench synth", description=main.__doc__)
    add_synth_args(ap, songs=20, out_required=False)
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

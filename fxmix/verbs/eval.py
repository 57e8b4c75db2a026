"""``fxmix eval DATASET_DIR --split test [--models m1 m2 ...] [--plot] [--json OUT]``."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from fxmix.training.evaluate import evaluate, format_table, write_json


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="fxmix eval",
        description="Compare mixing models with the plain, equal-loudness and effect-normalized sums and the "
        "mean engineer against the target mixture: tables of means and medians, overall and per family, "
        "with class- and track-level balance errors.",
    )
    p.add_argument("dataset", help="dataset root (<root>/<split>/<song>/...)")
    p.add_argument("--split", default="test", choices=("train", "valid", "test"))
    p.add_argument(
        "--models",
        nargs="*",
        default=[],
        help="model folders/weights, or default | offline | causal (packaged)",
    )
    p.add_argument(
        "--profile", default="synthetic-v1", help="normalization profile the models were trained with"
    )
    p.add_argument(
        "--inputs", default="auto", choices=("auto", "dry", "wet"), help="stems fed to every method"
    )
    p.add_argument("--max-songs", type=int, default=None)
    p.add_argument("--jobs", type=int, default=None, help="songs in parallel (default: CPUs, at most 4)")
    p.add_argument(
        "--cache", default=None, metavar="DIR", help="keep the normalized stems here between runs"
    )
    p.add_argument("--json", default=None, help="write all results (per song, per family, overall) here")
    p.add_argument("--plot", action="store_true", help="spectra + level bars per song (PNG)")
    p.add_argument(
        "--plot-dir", default=None, help="where --plot writes (default: next to --json, or ./eval_plots)"
    )
    p.add_argument(
        "--save-audio",
        default=None,
        metavar="DIR",
        help="keep each method's mix, the target and the stems per song in DIR (input of `fxmix listen build`)",
    )
    p.add_argument(
        "--no-master",
        action="store_true",
        help="also evaluate each console mixer without its master stage (method NAME:no-master), from the same "
        "decisions, so the figures before and after the master come from the same songs",
    )
    p.add_argument("--no-progress", action="store_true")
    return p


def main(argv: list[str] | None = None) -> int:
    """``fxmix eval``: tables of per-method means and medians (:func:`fxmix.training.evaluate.evaluate`)."""
    args = build_parser().parse_args(sys.argv[1:] if argv is None else argv)
    plot_dir = None
    if args.plot:
        plot_dir = args.plot_dir or (
            str(Path(args.json).with_suffix("")) + "_plots" if args.json else "eval_plots"
        )
    res = evaluate(
        args.dataset,
        args.split,
        models=args.models,
        profile=args.profile,
        input_source=args.inputs,
        max_songs=args.max_songs,
        plot_dir=plot_dir,
        save_audio=args.save_audio,
        cache=args.cache,
        jobs=args.jobs,
        progress=not args.no_progress,
        no_master=args.no_master,
    )
    print(format_table(res))
    if args.json:
        print(f"wrote {write_json(args.json, res)}")
    if plot_dir:
        print(f"plots in {plot_dir}")
    if args.save_audio:
        print(f"audio in {args.save_audio} (next: fxmix listen build {args.save_audio} -o TEST_DIR)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

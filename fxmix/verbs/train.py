"""``fxmix train --config CFG.toml [--resume] [--set section.key=value ...]`` (:func:`fxmix.training.train.train`)."""

from __future__ import annotations

import argparse
import os
import sys
import tomllib
from pathlib import Path

from fxmix.training.config import load_train_config
from fxmix.training.console_train import ConsoleTrainConfig, console_config_path, train_console
from fxmix.training.synth import synthesize_corpus
from fxmix.training.train import train


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="fxmix train",
        description="Train a mixing network (normalized stems -> wet mixture) from a TOML config. "
        "Multi-GPU / multi-node: torchrun --nproc-per-node N -m fxmix train --config CFG.toml",
    )
    p.add_argument(
        "--config", required=True, help="training TOML, or a shipped config's name (tiny-cpu, default-offline, ...)"
    )
    p.add_argument("--resume", action="store_true", help="continue from OUT/checkpoints/latest.json")
    p.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config value, e.g. --set train.steps=100 --set data.root=/data/synth (repeatable)",
    )
    p.add_argument("--out", default=None, help="run folder (same as --set train.out_dir=...)")
    p.add_argument("--stop-after", type=int, default=None, help="stop after this many steps of this call")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    return p


def main(argv: list[str] | None = None) -> int:
    """``fxmix train``; also ``python -m fxmix.verbs.train`` (what torchrun launches, once per rank)."""
    args = build_parser().parse_args(sys.argv[1:] if argv is None else argv)
    overrides = list(args.overrides)
    if args.out:
        overrides.append(f"train.out_dir={args.out!r}")
    console = console_config_path(args.config)
    if console is not None:
        return _train_console(console, args)
    cfg = load_train_config(args.config, overrides)
    if cfg.synth_songs > 0 and not Path(cfg.data_root).exists() and os.environ.get("RANK", "0") == "0":
        print(f"fxmix train: no corpus at {cfg.data_root}; making {cfg.synth_songs} procedural songs there first")
        synthesize_corpus(
            cfg.data_root, cfg.synth_songs, cfg.synth_seconds, cfg.seed, progress=not args.no_progress,
            command=f"fxmix train --config {args.config}",
        )
    res = train(cfg, resume=args.resume, progress=not args.no_progress, stop_after=args.stop_after)
    if res["rank"] == 0:
        print(
            f"fxmix train: {res['step']} steps in {cfg.out_dir}; best valid loss {res['best_valid']:.4f} "
            f"(normalized sum {res['baseline_valid']:.4f})"
        )
    return 0


def _train_console(path: Path, args) -> int:
    """A ``kind = "console"`` config: the console mixer (:func:`fxmix.training.console_train.train_console`)."""
    overrides = {}
    for item in args.overrides:
        key, _, value = item.partition("=")
        try:
            overrides[key.split(".")[-1]] = tomllib.loads(f"v = {value}")["v"]
        except tomllib.TOMLDecodeError:
            overrides[key.split(".")[-1]] = value  # an unquoted string
    if args.out:
        overrides["out_dir"] = args.out
    cfg = ConsoleTrainConfig.from_toml(path, overrides)
    res = train_console(cfg, resume=args.resume, progress=not args.no_progress, stop_after=args.stop_after)
    print(f"fxmix train: console mixer, {res['step']} steps in {res['out_dir']}; best valid loss {res['best_valid']:.4f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

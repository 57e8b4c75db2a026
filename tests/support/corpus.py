"""Shared tiny synthetic corpus (+ normalized cache) for the training and evaluation tests (built once per session)."""

from __future__ import annotations

from pathlib import Path


def tiny_corpus(base: Path) -> Path:
    """5 songs x 3 s (train 3, valid 1, test 1, with dry stems), made by the real `fxmix data synth`."""
    root = base / "fx_tiny_corpus"
    if not (root / "test").is_dir():
        from fxmix.verbs.data import main as data_main

        argv = ["synth", "-o", str(root), "--songs", "5", "--seconds", "3", "--split-ratios", "0.6,0.2,0.2"]
        data_main([*argv, "--jobs", "1", "--no-progress", "--sources", "procedural", "--seed", "7"])
    return root


def tiny_config_text(root: Path, cache: Path, out: Path, **train) -> str:
    """A training TOML for the fxmix-tiny network on ``root`` (extra ``[train]`` keys as kwargs)."""
    base = {
        "out_dir": str(out),
        "steps": 20,
        "batch_size": 2,
        "crop_s": 0.25,
        "lr": 3e-3,
        "loss": "mrstft",
        "steps_per_epoch": 10,
        "checkpoint_every": 5,
        "log_every": 2,
        "valid_crop_s": 0.5,
        "valid_crops_per_song": 1,
        "seed": 0,
        "device": "cpu",
        "threads": 1,
    }
    base.update(train)

    def v(x):
        return repr(x) if isinstance(x, str) else ("true" if x is True else "false" if x is False else str(x))

    lines = ["[data]", f"root = {str(root)!r}", f"cache_dir = {str(cache)!r}", 'profile = "synthetic-v1"']
    lines += ['input_source = "dry"', "[model]", 'config = "fxmix-tiny"', "[train]"]
    lines += [f"{k} = {v(x)}" for k, x in base.items()]
    return "\n".join(lines) + "\n"

"""`fxmix profile`: fit per-class targets from a wet multitrack dataset; merge shards, show, import."""

from __future__ import annotations

import argparse

import numpy as np
from tqdm import tqdm

from fxmix.dsp import profile_fit as pf
from fxmix.dsp.profile import load_profile


def main(argv: list[str] | None = None) -> int:
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

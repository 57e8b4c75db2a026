"""`fxmix bench reaper`: render + automix of a generated N-track project against automixing its class buses alone."""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf
from tqdm import tqdm

from fxmix.dsp.constants import REFERENCE_PROFILE, SAMPLE_RATE
from fxmix.dsp.errors import ConfigError
from fxmix.host_bridge.reaper import (
    read_project,
    render_buses,
)
from fxmix.host_bridge.reaper.report import classes_for
from fxmix.model.automix import automix

# ------------------------------------------------------------------------------------------------ bench
_BENCH_NAMES = [
    ("Drums", 1), ("Kick In", 0), ("Kick Out", 0), ("Snare Top", 0), ("Snare Bottom", 0), ("Hi-Hat", 0),
    ("Tom 1", 0), ("Tom 2", 0), ("OH L", 0), ("OH R", 0), ("Room", -1),
    ("Bass DI", 0), ("Bass Amp", 0),
    ("Lead Vox", 0), ("BV 1", 0), ("BV 2", 0),
    ("Gtr L", 0), ("Gtr R", 0), ("Acoustic", 0), ("Piano", 0), ("Organ", 0), ("Pad", 0), ("Strings", 0), ("FX", 0),
]  # fmt: skip


def make_bench_project(folder: Path, n_tracks: int, seconds: float, seed: int) -> Path:
    """Write a generated project: ``n_tracks`` tracks (drum folder included), each with two items that
    split a ``seconds``-long 16-bit WAV (second item with a source offset). Returns the .RPP path."""
    rng = np.random.default_rng(seed)
    media = folder / "media"
    media.mkdir(parents=True, exist_ok=True)
    n = int(round(seconds * SAMPLE_RATE))
    t = np.arange(n) / SAMPLE_RATE
    if n_tracks == len(_BENCH_NAMES):
        names = list(_BENCH_NAMES)
    else:  # other counts: plain tracks, no folder (a cut list could leave the drum folder open)
        names = [(f"{_BENCH_NAMES[i % len(_BENCH_NAMES)][0]} {i + 1}", 0) for i in range(n_tracks)]
    lines = ['<REAPER_PROJECT 0.1 "7.0/linux-x86_64" 1700000000', f"  SAMPLERATE {SAMPLE_RATE} 0 0"]
    half = seconds / 2
    for i, (name, delta) in enumerate(tqdm(names, desc="generate tracks", unit="track")):
        freq = 55.0 * 2 ** (rng.integers(0, 36) / 12)
        env = 0.5 + 0.5 * np.sin(2 * np.pi * rng.uniform(0.5, 4.0) * t) ** 2
        tone = np.sin(2 * np.pi * freq * t) + 0.3 * np.sin(2 * np.pi * 2 * freq * t + rng.uniform(0, 6))
        noise = rng.standard_normal((2, n)).astype(np.float32) * 0.05
        audio = (0.2 * env * tone)[None, :].astype(np.float32) + noise
        audio[1] *= rng.uniform(0.6, 1.0)
        path = media / f"track{i + 1:02d}.wav"
        sf.write(str(path), audio.T, SAMPLE_RATE, subtype="PCM_16")
        lines += [
            "  <TRACK",
            f'    NAME "{name}"',
            f"    VOLPAN {rng.uniform(0.5, 1.0):.6f} {rng.uniform(-0.5, 0.5):.6f} -1 -1 1",
            "    MUTESOLO 0 0 0",
            f"    ISBUS {2 if delta < 0 else delta} {delta}",
        ]
        for pos, soffs in ((0.0, 0.0), (half, half)):
            lines += [
                "    <ITEM",
                f"      POSITION {pos:.6f}",
                f"      LENGTH {half:.6f}",
                "      LOOP 0",
                "      FADEIN 1 0.01 0 1 0 0 0",
                "      FADEOUT 1 0.01 0 1 0 0 0",
                "      MUTE 0 0",
                f'      NAME "{path.name}"',
                "      VOLPAN 1 0 1 -1",
                f"      SOFFS {soffs:.6f}",
                "      PLAYRATE 1 1 0 -1 0 0.0025",
                "      CHANMODE 0",
                "      <SOURCE WAVE",
                f'        FILE "media/{path.name}"',
                "      >",
                "    >",
            ]
        lines.append("  >")
    lines.append(">")
    rpp = folder / "bench.RPP"
    rpp.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return rpp


def main(argv: list[str] | None = None) -> int:
    """``fxmix bench reaper``: render+automix of a generated project vs automix of its class buses alone."""
    p = argparse.ArgumentParser(
        prog="fxmix bench reaper",
        description="Time rendering + automixing a generated N-track project against automixing (normalize + "
        "mix) its class buses alone. Acceptance: ratio < 2.",
    )
    p.add_argument("--tracks", type=int, default=24, help="number of tracks (default 24)")
    p.add_argument("--seconds", type=float, default=180.0, help="project length in seconds (default 180)")
    p.add_argument("--model", default="default", help="automix model (default 'default')")
    p.add_argument("--profile", default=REFERENCE_PROFILE, help="normalization profile")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--keep", metavar="DIR", help="generate the project in DIR and keep it (default: temp dir)"
    )
    args = p.parse_args(sys.argv[1:] if argv is None else argv)
    if args.tracks < 1 or args.seconds <= 0:
        raise ConfigError("--tracks must be >= 1 and --seconds > 0")
    folder = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="fxmix-bench-reaper-"))
    try:
        t0 = time.perf_counter()
        rpp = make_bench_project(folder, args.tracks, args.seconds, args.seed)
        print(f"generated {rpp} in {time.perf_counter() - t0:.1f} s")

        def mix(stems: dict[str, np.ndarray]) -> object:
            return automix(stems, SAMPLE_RATE, model=args.model, profile=args.profile, seed=args.seed)

        # Reference: the class buses alone (rendered once, untimed), after a short warm-up run.
        project = read_project(rpp)
        classes = classes_for(project, None, [])
        buses = render_buses(project, classes)
        mix({c: b[:, : 2 * SAMPLE_RATE].copy() for c, b in buses.items()})
        t0 = time.perf_counter()
        mix(buses)
        t_ref = time.perf_counter() - t0
        del buses
        # Full path: read the project, render every track into the buses, automix.
        t0 = time.perf_counter()
        project = read_project(rpp)
        classes = classes_for(project, None, [])
        buses = render_buses(project, classes, progress=True)
        t_render = time.perf_counter() - t0
        mix(buses)
        t_total = time.perf_counter() - t0
    finally:
        if not args.keep:
            shutil.rmtree(folder, ignore_errors=True)
    ratio = t_total / t_ref
    print(
        f"tracks {args.tracks} x {args.seconds:g} s, buses: {', '.join(sorted(set(classes)))}, model {args.model}"
    )
    print(f"normalize+mix of the class buses alone: {t_ref:.2f} s")
    print(f"read+render+normalize+mix of the project: {t_total:.2f} s (render {t_render:.2f} s)")
    print(f"ratio: {ratio:.2f} (acceptance: < 2) -> {'PASS' if ratio < 2 else 'FAIL'}")
    print(
        f"reproduce: fxmix bench reaper --tracks {args.tracks} --seconds {args.seconds:g} --model {args.model} "
        f"--profile {args.profile} --seed {args.seed}"
    )
    return 0 if ratio < 2 else 1

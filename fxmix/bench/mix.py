"""``fxmix bench mix``: wall time, CPU time and peak memory of the whole ``fxmix mix`` command on long songs.

Each song is four seeded procedural stems (vocals, drums, bass, other) of ``--minutes`` minutes, written as
16-bit WAV into ``--dir``: pieces of :data:`PIECE_S` seconds of fxmix's procedural synthesizer (a few distinct
renders, cycled with a seeded level change per piece, so that a 20-minute song costs about as much to make
as a 4-minute one). ``fxmix mix SONG -o OUT`` then runs in a child process, and its wall time, CPU time
(user + system) and peak RSS come from ``wait4``, as ``/usr/bin/time -v`` reports them.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import soundfile as sf

from fxmix.dsp import constants as C
from fxmix.dsp.audio import write_text_atomic
from fxmix.dsp.errors import ConfigError
from fxmix.training.synth import SongSpec, render_song

#: Seconds of one rendered piece, and how many distinct pieces a song cycles through.
PIECE_S = 60.0
DISTINCT_PIECES = 3
#: Acceptance target: peak RSS of ``fxmix mix`` on four 20-minute stems (GB).
TARGET_PEAK_GB = 2.0


def write_song(folder: Path, minutes: float, seed: int = 0, subtype: str = "PCM_16") -> Path:
    """Write a seeded song of four ``minutes``-long stems into ``folder`` (kept when it is already there
    with the same length, seed and format: the marker file ``song.json`` says so)."""
    folder = Path(folder)
    marker = folder / "song.json"
    spec = {"minutes": minutes, "seed": seed, "subtype": subtype, "piece_s": PIECE_S}
    if marker.is_file() and json.loads(marker.read_text()) == spec:
        return folder
    folder.mkdir(parents=True, exist_ok=True)
    marker.unlink(missing_ok=True)
    sr = C.SAMPLE_RATE
    n_total = int(round(minutes * 60 * sr))
    n_piece = int(PIECE_S * sr)
    n_pieces = -(-n_total // n_piece)
    rng = np.random.default_rng([seed, 18])
    pieces = [
        render_song(SongSpec(f"bench-mix-{i}", seed * 100 + i, "train", "pop", "procedural", seed * 100 + i,
                             PIECE_S)).wet
        for i in range(min(DISTINCT_PIECES, n_pieces))
    ]
    files = {c: sf.SoundFile(str(folder / f"{c}.wav"), "w", sr, 2, subtype=subtype, format="WAV")
             for c in C.CLASSES}
    try:
        for k in range(n_pieces):
            gains = rng.uniform(-2.0, 2.0, size=len(C.CLASSES))
            n = min(n_piece, n_total - k * n_piece)
            for c, g in zip(C.CLASSES, gains):
                x = pieces[k % len(pieces)][c][:, :n] * np.float32(10 ** (g / 20))
                files[c].write(np.clip(x, -1.0, 1.0).T)
    finally:
        for f in files.values():
            f.close()
    marker.write_text(json.dumps(spec))
    return folder


def run_measured(cmd: list[str], env: dict | None = None) -> dict:
    """Run ``cmd`` as a child process: wall (s), CPU (user + system, s), peak RSS (GB), exit status, stderr tail."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    stderr = proc.stderr.read()
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    wall = time.perf_counter() - t0
    return {
        "wall_s": wall,
        "cpu_s": usage.ru_utime + usage.ru_stime,
        "peak_gb": usage.ru_maxrss * 1024 / 1e9,
        "rc": proc.returncode,
        "stderr_tail": stderr.decode(errors="replace")[-2000:],
    }


def get_bench_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="fxmix bench mix",
        description="Wall, CPU and peak RSS of `fxmix mix` on four seeded procedural stems per length.",
    )
    p.add_argument("--minutes", default="3,20", help="comma-separated song lengths (minutes)")
    p.add_argument("--dir", default="/tmp/fxmix-bench-mix", help="where the songs and mixes are written")
    p.add_argument("--seed", type=int, default=0, help="seed of the procedural songs")
    p.add_argument("--model", default="default", help="--model of fxmix mix")
    p.add_argument("--repeats", type=int, default=1, help="runs per length (the best wall time is kept)")
    p.add_argument("--json", default=None, help="write the figures to this JSON file")
    return p


def main(argv: list[str] | None = None) -> int:
    args = get_bench_parser().parse_args(argv)
    try:
        minutes = [float(m) for m in args.minutes.split(",") if m.strip()]
    except ValueError:
        raise ConfigError(f"--minutes {args.minutes!r}: give comma-separated numbers, e.g. 3,20") from None
    if not minutes or min(minutes) <= 0 or args.repeats < 1:
        raise ConfigError("--minutes needs positive lengths and --repeats >= 1")
    root = Path(args.dir)
    rows = []
    for m in minutes:
        song = write_song(root / f"song{m:g}", m, args.seed)
        out = root / f"out{m:g}"
        cmd = [sys.executable, "-m", "fxmix", "-q", "mix", str(song), "-o", str(out), "--model", args.model]
        runs = [run_measured(cmd) for _ in range(args.repeats)]
        for r in runs:
            if r["rc"] != 0:
                raise ConfigError(f"{shlex.join(cmd)} failed (exit {r['rc']}):\n{r['stderr_tail']}")
        best = min(runs, key=lambda r: r["wall_s"])
        row = {"minutes": m, "wall_s": best["wall_s"], "cpu_s": best["cpu_s"],
               "peak_gb": max(r["peak_gb"] for r in runs), "command": shlex.join(cmd)}
        rows.append(row)
        ok = "ok" if row["peak_gb"] <= TARGET_PEAK_GB else f"over the {TARGET_PEAK_GB:g} GB target"
        print(f"{m:g} min x 4 stems: wall {row['wall_s']:.1f} s, CPU {row['cpu_s']:.1f} s, "
              f"peak RSS {row['peak_gb']:.2f} GB ({ok})", flush=True)
        print(f"  command: {row['command']}", flush=True)
    load = os.getloadavg()
    print(f"load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f} on {os.cpu_count()} CPUs")
    print(f"reproduce: fxmix bench mix --minutes {args.minutes} --dir {args.dir} --seed {args.seed}")
    if args.json:
        write_text_atomic(args.json, json.dumps({"rows": rows, "load": load}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

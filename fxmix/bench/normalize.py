"""`fxmix bench normalize`: wall time, CPU, per-stage split, peak memory and quality of the offline
normalization of a 4-stem song, beside the reference implementation's figures.

Contents (``--content``):

* ``procedural``: a seeded song of fxmix's own procedural synthesizer (wet stems).
* ``transients``: the same kind of song, made as unfriendly as real material gets: every stem starts and
  ends abruptly at a loud sample (cut mid-waveform, as an exported region is) and carries sharp hits
  (0.2-2 ms noise bursts 12-20 dB over the stem's peak) that leave its loudness alone, so that its true
  peak, not its loudness, decides the level and the -1 dBTP limiter has work to do.
* ``real``: the stems of ``--stems DIR`` (any folder ``fxmix normalize`` reads).

The library call (``fxmix.dsp.chain.normalize_stems``) runs in a fresh child process, so that its peak
memory (VmHWM) is its own, not the song renderer's; ``--cli`` also times the whole ``fxmix normalize``
command in a child process (start-up, imports, reading, writing: wall, CPU and peak RSS as
``/usr/bin/time`` reports them).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from fxmix.dsp import constants as C
from fxmix.dsp.audio import write_audio
from fxmix.dsp.bands import band_centers_hz
from fxmix.dsp.constants import REFERENCE_PROFILE
from fxmix.dsp.features import integrated_loudness, measure_spectrum
from fxmix.dsp.profile import load_profile
from fxmix.dsp.stems import load_buses, resolve_stems
from fxmix.training.synth import SongSpec, render_song

CONTENTS = ("procedural", "transients", "real")

#: the reference implementation (sony/FxNorm-automix) on this kind of machine, for a 180-s 4-stem song:
#: the normalization alone (one core), and the whole process side by side with fxmix on the same stems
REFERENCE = {
    "cpu_s": 261.0,
    "peak_gb": 1.6,
    "process_s": {"procedural": 220.0, "transients": 234.0},
    "eq_lsd_db": "9-11 (tonal stems)",
    "pan_offcentre_db": "about 7",
}
REFERENCE_SECONDS = 180.0
#: acceptance targets for a 180-s song on 2 cores
TARGETS = {"library_wall_s": 3.0, "cli_wall_s": 5.0, "peak_gb": 0.5}

_CHILD = """
import json, time
import numpy as np
from pathlib import Path
from fxmix.dsp.chain import normalize_stems
from fxmix.dsp.profile import load_profile

def hwm_gb():
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM"):
            return int(line.split()[1]) / 1e6
    return float("nan")

tmp = Path({tmp!r})
stems = {{c: np.load(tmp / (c + ".npy")) for c in ("vocals", "drums", "bass", "other")}}
prof = load_profile({profile!r})
base = hwm_gb()
t0, c0 = time.perf_counter(), time.process_time()
res = normalize_stems(stems, 44100, prof, workers={workers}, in_place=True)
wall, cpu = time.perf_counter() - t0, time.process_time() - c0
peak = hwm_gb()
stages = {{}}
for c, r in res.items():
    np.save(tmp / (c + ".out.npy"), r.audio)
    for k, v in r.timings_s.items():
        stages[k] = stages.get(k, 0.0) + v
limited = [c for c, r in res.items() if getattr(r.params.get("loudness"), "limiter_threshold_db", None) is not None]
per_stem = {{c: sum(r.timings_s.values()) for c, r in res.items()}}
print(json.dumps({{"wall_s": wall, "cpu_s": cpu, "peak_gb": peak, "base_gb": base, "stages": stages, "per_stem": per_stem,
                  "notes": {{c: r.notes for c, r in res.items()}}, "limited": limited}}))
"""


#: ``fxmix`` with its arguments, reporting its peak RSS (VmHWM) on stderr as it exits
_CLI_CHILD = """
import atexit, runpy, sys

def hwm():
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM"):
            print("VmHWM_kB", line.split()[1], file=sys.stderr)

atexit.register(hwm)
sys.argv = ["fxmix", *sys.argv[1:]]
runpy.run_module("fxmix.cli", run_name="__main__")
"""


# ---------------------------------------------------------------- contents


def procedural_song(seconds: float, seed: int) -> dict[str, np.ndarray]:
    """The seeded procedural 'pop' song's wet stems."""
    song = render_song(SongSpec("bench", seed, "train", "pop", "procedural", seed, seconds))
    return {c: song.wet[c] for c in C.CLASSES}


def transient_song(seconds: float, seed: int, margin_s: float = 4.0) -> dict[str, np.ndarray]:
    """Stems that start and end abruptly at a loud sample and carry sharp hits (see the module docstring).

    A song ``margin_s`` longer is rendered; each stem is cut to ``seconds`` where both its first and its
    last sample are as loud as the margin allows (the smaller of the two channels), so the stems of the
    song are not aligned with each other (the normalization treats them one by one).
    """
    sr = C.SAMPLE_RATE
    song = render_song(SongSpec("bench-transients", seed, "train", "pop", "procedural", seed, seconds + margin_s))
    n, m = int(seconds * sr), int(margin_s * sr)
    rng = np.random.default_rng([seed, 7])
    hit = np.arange(int(0.02 * sr))
    out = {}
    for c in C.CLASSES:
        x = song.wet[c]
        level = np.abs(x).min(axis=0)
        start = int(np.argmax(np.minimum(level[:m], level[n - 1 : n - 1 + m])))
        y = x[:, start : start + n].copy()
        peak = np.abs(y).max()
        for pos in rng.integers(0, n - hit.size, size=int(seconds / 1.5)):
            burst = rng.standard_normal((2, hit.size)) * np.exp(-hit / (rng.uniform(0.0002, 0.002) * sr))
            y[:, pos : pos + hit.size] += (rng.uniform(4.0, 10.0) * peak * burst / np.abs(burst).max()).astype(
                np.float32
            )
        out[c] = y
    return out


def real_song(stems_dir: str) -> dict[str, np.ndarray]:
    """The class buses of a stems folder, read as ``fxmix normalize`` reads it."""
    tracks = resolve_stems(stems_dir)
    return load_buses(tracks.by_class()).buses


def load_content(args) -> tuple[dict[str, np.ndarray], str]:
    """(class -> (2, n) float32 stem, a description)."""
    if args.content == "real":
        if not args.stems:
            raise SystemExit("fxmix bench normalize: --content real needs --stems DIR (a folder of stems)")
        return real_song(args.stems), f"the stems of {args.stems}"
    kind = "procedural 'pop', wet stems" if args.content == "procedural" else "abrupt edges, sharp hits"
    print(f"rendering a seeded {args.seconds:.0f}-s 4-stem song ({kind}) ...", flush=True)
    make = procedural_song if args.content == "procedural" else transient_song
    return make(args.seconds, args.seed), f"seeded {args.content} song ({kind})"


# ---------------------------------------------------------------- runs


def run_library(stems: dict[str, np.ndarray], tmp: Path, args) -> tuple[dict, dict[str, np.ndarray]]:
    """The library call in a child process: its report and the normalized stems."""
    for c, x in stems.items():
        np.save(tmp / f"{c}.npy", x)
    code = _CHILD.format(tmp=str(tmp), profile=args.profile, workers=args.workers)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise SystemExit(f"fxmix bench normalize: the library run failed:\n{proc.stderr}")
    rep = json.loads(proc.stdout.strip().splitlines()[-1])
    return rep, {c: np.load(tmp / f"{c}.out.npy") for c in stems}


def run_cli(stems: dict[str, np.ndarray], tmp: Path, args) -> dict:
    """``fxmix normalize`` on the stems written as float WAV files, in a child process: wall, CPU
    (user + system) and peak RSS of the whole command. The peak is the command's own VmHWM, read as it
    exits: the child's rusage maxrss would include this process's memory, which a forked child counts
    until it execs."""
    src, out = tmp / "stems", tmp / "normalized"
    src.mkdir()
    for c, x in stems.items():
        write_audio(src / f"{c}.wav", x, C.SAMPLE_RATE, subtype="FLOAT")
    cmd = [sys.executable, "-c", _CLI_CHILD, "-q", "normalize"]
    cmd += [str(src), "-o", str(out), "--profile", args.profile]
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    err = proc.stderr.read().decode() if proc.stderr else ""
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"fxmix bench normalize: `fxmix normalize` failed:\n{err}")
    hwm = [int(line.split()[1]) for line in err.splitlines() if line.startswith("VmHWM_kB ")]
    return {"wall_s": wall, "cpu_s": usage.ru_utime + usage.ru_stime, "sys_s": usage.ru_stime,
            "peak_gb": hwm[-1] / 1e6 if hwm else float("nan"), "command": " ".join(["fxmix", *cmd[3:]])}


# ---------------------------------------------------------------- report


def _ratio(ref: float, ours: float) -> str:
    return f"{ref / ours:.0f}x less" if ours > 0 else "n/a"


def _scale(n_samples: int) -> float:
    """The song's length over the 180 s the reference figures are for."""
    return n_samples / C.SAMPLE_RATE / REFERENCE_SECONDS


def print_library(rep: dict, args, scale: float) -> None:
    ref_cpu, ref_gb = REFERENCE["cpu_s"] * scale, REFERENCE["peak_gb"]
    t_wall = TARGETS["library_wall_s"]
    print(f"\nlibrary call (normalize_stems), {args.workers} worker thread(s), profile {args.profile}")
    print(f"  wall {rep['wall_s']:.2f} s (target <= {t_wall:.0f} s for 180 s); CPU {rep['cpu_s']:.2f} s | reference "
          f"{ref_cpu:.0f} s of one core: {_ratio(ref_cpu, rep['wall_s'])} wall, {_ratio(ref_cpu, rep['cpu_s'])} CPU")
    print(f"  peak memory {rep['peak_gb']:.2f} GB (target <= {TARGETS['peak_gb']} GB; reference {ref_gb} GB: "
          f"{_ratio(ref_gb, rep['peak_gb'])}), of which {rep['base_gb']:.2f} GB is Python, libraries and the "
          "4 input stems")
    print("  per-stage time (wall clock inside each worker thread, summed over stems): "
          + ", ".join(f"{k} {v:.2f} s" for k, v in rep["stages"].items()))
    print(f"  per stem (the same, by stem; {args.workers} worker thread(s) take the stems in this order): "
          + ", ".join(f"{k} {v:.2f} s" for k, v in rep["per_stem"].items()))
    print(f"  the -1 dBTP limiter acted on: {', '.join(rep['limited']) or 'no stem'}"
          + (" (this content is meant to engage it: the figures do not show its cost)"
             if args.content == "transients" and not rep["limited"] else ""))


def print_cli(rep: dict, args, scale: float) -> None:
    t_wall = TARGETS["cli_wall_s"]
    print(f"\nwhole command: {rep['command']}")
    line = (f"  wall {rep['wall_s']:.2f} s (target <= {t_wall:.0f} s for 180 s); CPU {rep['cpu_s']:.2f} s "
            f"(system {rep['sys_s']:.2f} s); peak RSS {rep['peak_gb']:.2f} GB (target <= {TARGETS['peak_gb']} GB)")
    ref = REFERENCE["process_s"].get(args.content)
    if ref is not None:
        line += f" | reference process {ref * scale:.0f} s on the same kind of stems: {_ratio(ref * scale, rep['wall_s'])}"
    print(line)


def _lsd_db(spec: np.ndarray, target: np.ndarray, mask: np.ndarray) -> float:
    """RMS log-spectral distance (dB) after level alignment, over the masked bands."""
    d = (spec - target)[mask]
    return float(np.sqrt(np.mean((d - d.mean()) ** 2)))


def print_quality(stems: dict, normalized: dict, rep: dict, args) -> None:
    prof = load_profile(args.profile)
    mask = (band_centers_hz() >= 100) & (band_centers_hz() <= 10000)
    edge = int(0.05 * C.SAMPLE_RATE)
    print("\n  stem     LUFS (target)   EQ log-spectral distance dB (before -> after)   L/R dB   "
          "edge peak dB re rest")
    for c, y in normalized.items():
        t = prof.targets[c]
        before = _lsd_db(measure_spectrum(stems[c], C.SAMPLE_RATE), t.spectrum_db, mask)
        after = _lsd_db(measure_spectrum(y, C.SAMPLE_RATE), t.spectrum_db, mask)
        e = y.astype(np.float64) ** 2
        ild = 10 * np.log10(e[1].sum() / max(e[0].sum(), 1e-30))
        lufs = integrated_loudness(y, C.SAMPLE_RATE)
        inner = max(float(np.abs(y[:, edge:-edge]).max()), 1e-12)
        edges = max(float(np.abs(y[:, :edge]).max()), float(np.abs(y[:, -edge:]).max()))
        print(f"  {c:<7} {lufs:7.2f} ({t.loudness_lufs:6.2f})   {before:6.2f} -> {after:5.2f}{'':29}"
              f"{ild:+6.2f}   {20 * np.log10(max(edges, 1e-12) / inner):+6.2f}")
        for n in rep["notes"].get(c, []):
            print(f"           note: {n}")
    print(f"\n  reference on the same kind of song: EQ leaves {REFERENCE['eq_lsd_db']} dB log-spectral distance, "
          f"panning leaves every stem {REFERENCE['pan_offcentre_db']} dB off-centre")


# ---------------------------------------------------------------- main


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="fxmix bench normalize", description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--content",
        choices=CONTENTS,
        default="procedural",
        help="procedural: fxmix's seeded synthetic song; transients: such a song cut abruptly at loud samples, "
        "with sharp hits that engage the -1 dBTP limiter; real: the stems of --stems DIR",
    )
    p.add_argument("--stems", metavar="DIR", help="the stems folder for --content real")
    p.add_argument("--seconds", type=float, default=180.0, help="song length (procedural, transients)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--workers", type=int, default=2, help="stems normalized in parallel threads")
    p.add_argument("--profile", default=REFERENCE_PROFILE)
    p.add_argument("--cli", action="store_true", help="also time the whole `fxmix normalize` command")
    return p


def main(argv: list[str] | None = None) -> int:
    args = get_parser().parse_args(argv)
    stems, what = load_content(args)
    scale = _scale(next(iter(stems.values())).shape[-1])
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="fxmix-bench-normalize-") as tmp:
        rep, normalized = run_library(stems, Path(tmp), args)
        cli = run_cli(stems, Path(tmp), args) if args.cli else None
    n_s = next(iter(stems.values())).shape[-1] / C.SAMPLE_RATE
    print(f"\nnormalize {n_s:.0f} s x {len(stems)} stems: {what}"
          + (f" (reference figures scaled to {n_s:.0f} s)" if abs(scale - 1.0) > 1e-3 else ""))
    print(f"  load average (1 min) {load_before:.2f} before the runs, {os.getloadavg()[0]:.2f} after, on "
          f"{os.cpu_count()} CPUs: other work slows the wall clock, CPU time (user + system) is the fair figure")
    print_library(rep, args, scale)
    if cli is not None:
        print_cli(cli, args, scale)
    print_quality(stems, normalized, rep, args)
    src = f"--stems {args.stems}" if args.content == "real" else f"--seconds {args.seconds:g} --seed {args.seed}"
    print(f"\nreproduce: fxmix bench normalize --content {args.content} {src} --workers {args.workers}"
          + (" --cli" if args.cli else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""`fxmix bench normalize`: wall time, per-stage split, peak memory and quality of the offline normalization
on a seeded 180-s, 4-stem song (fxmix's own procedural synthesizer, wet stems), against the reference's
figures measured on this kind of machine.

The normalization runs in a fresh child process so that its peak memory (VmHWM) is its own, not the song
renderer's."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

from fxmix.dsp import constants as C
from fxmix.dsp.bands import band_centers_hz
from fxmix.dsp.constants import REFERENCE_PROFILE
from fxmix.dsp.features import integrated_loudness, measure_spectrum
from fxmix.dsp.profile import load_profile
from fxmix.training.synth import SongSpec, render_song

REFERENCE = {"wall_s": 261.0, "peak_gb": 1.6, "eq_lsd_db": "9-11 (tonal stems)", "pan_offcentre_db": "about 7"}

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
res = normalize_stems(stems, 44100, prof, workers={workers})
wall, cpu = time.perf_counter() - t0, time.process_time() - c0
peak = hwm_gb()
stages = {{}}
for c, r in res.items():
    np.save(tmp / (c + ".out.npy"), r.audio)
    for k, v in r.timings_s.items():
        stages[k] = stages.get(k, 0.0) + v
print(json.dumps({{"wall_s": wall, "cpu_s": cpu, "peak_gb": peak, "base_gb": base, "stages": stages,
                  "notes": {{c: r.notes for c, r in res.items()}}}}))
"""


def _lsd_db(spec: np.ndarray, target: np.ndarray, mask: np.ndarray) -> float:
    """RMS log-spectral distance (dB) after level alignment, over the masked bands."""
    d = (spec - target)[mask]
    return float(np.sqrt(np.mean((d - d.mean()) ** 2)))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="fxmix bench normalize")
    p.add_argument("--seconds", type=float, default=180.0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--workers", type=int, default=2, help="stems normalized in parallel threads")
    p.add_argument("--profile", default=REFERENCE_PROFILE)
    args = p.parse_args(argv)

    print(f"rendering a seeded {args.seconds:.0f}-s 4-stem song (procedural 'pop', wet stems) ...", flush=True)
    song = render_song(SongSpec("bench", args.seed, "train", "pop", "procedural", args.seed, args.seconds))
    stems = {c: song.wet[c] for c in C.CLASSES}
    del song
    prof = load_profile(args.profile)
    with tempfile.TemporaryDirectory() as tmp:
        for c, x in stems.items():
            np.save(Path(tmp) / f"{c}.npy", x)
        code = _CHILD.format(tmp=tmp, profile=args.profile, workers=args.workers)
        proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            print(proc.stderr, file=sys.stderr)
            return 1
        rep = json.loads(proc.stdout.strip().splitlines()[-1])
        normalized = {c: np.load(Path(tmp) / f"{c}.out.npy") for c in C.CLASSES}
    mask = (band_centers_hz() >= 100) & (band_centers_hz() <= 10000)
    print(f"\nnormalize {args.seconds:.0f} s x 4 stems, {args.workers} worker thread(s), profile {args.profile}")
    print(f"  wall {rep['wall_s']:.2f} s (target <= 10 s; reference {REFERENCE['wall_s']:.0f} s of one core)")
    print(f"  CPU {rep['cpu_s']:.2f} s; peak memory {rep['peak_gb']:.2f} GB (target <= 1 GB; reference "
          f"{REFERENCE['peak_gb']} GB), of which {rep['base_gb']:.2f} GB is Python, libraries and the 4 input stems")
    print("  per-stage time (wall clock inside each worker thread, summed over stems): "
          + ", ".join(f"{k} {v:.2f} s" for k, v in rep["stages"].items()))
    print("\n  stem     LUFS (target)      EQ log-spectral distance dB (before -> after)   L/R level diff dB")
    for c, y in normalized.items():
        t = prof.targets[c]
        before = _lsd_db(measure_spectrum(stems[c], C.SAMPLE_RATE), t.spectrum_db, mask)
        after = _lsd_db(measure_spectrum(y, C.SAMPLE_RATE), t.spectrum_db, mask)
        e = y.astype(np.float64) ** 2
        ild = 10 * np.log10(e[1].sum() / max(e[0].sum(), 1e-30))
        lufs = integrated_loudness(y, C.SAMPLE_RATE)
        print(f"  {c:<7} {lufs:7.2f} ({t.loudness_lufs:6.2f})   {before:6.2f} -> {after:5.2f}{'':28}{ild:+6.2f}")
        for n in rep["notes"].get(c, []):
            print(f"           note: {n}")
    print(f"\n  reference on the same kind of song: EQ leaves {REFERENCE['eq_lsd_db']} dB log-spectral distance, "
          f"panning leaves every stem {REFERENCE['pan_offcentre_db']} dB off-centre")
    print(f"\nreproduce: fxmix bench normalize --seconds {args.seconds:g} --seed {args.seed} --workers {args.workers}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

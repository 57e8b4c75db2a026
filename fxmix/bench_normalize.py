"""`fxmix bench normalize`: wall time, per-stage split, peak memory and quality of the offline normalization
on a seeded 180-s, 4-stem song (fxmix's own procedural synthesizer, wet stems), against the reference's
figures measured on this kind of machine (issue 3)."""

from __future__ import annotations

import argparse
import resource
import sys
import time

import numpy as np

REFERENCE = {
    "wall_s": 261.0,
    "peak_gb": 1.6,
    "eq_lsd_db": "9-11 (tonal stems)",
    "pan_offcentre_db": "about 7",
}


def _lsd_db(spec: np.ndarray, target: np.ndarray, mask: np.ndarray) -> float:
    """RMS log-spectral distance (dB) after level alignment, over the masked bands."""
    d = (spec - target)[mask]
    return float(np.sqrt(np.mean((d - d.mean()) ** 2)))


def bench_normalize_main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="fxmix bench normalize")
    p.add_argument("--seconds", type=float, default=180.0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--workers", type=int, default=2, help="stems normalized in parallel threads")
    p.add_argument("--profile", default="musdb18-reference")
    args = p.parse_args(argv)

    from fxmix.dsp import constants as C
    from fxmix.dsp.bands import band_centers_hz
    from fxmix.dsp.chain import normalize_stems
    from fxmix.dsp.features import integrated_loudness, measure_spectrum
    from fxmix.dsp.profile import load_profile
    from fxmix.training.synth import SongSpec, render_song

    print(
        f"rendering a seeded {args.seconds:.0f}-s 4-stem song (procedural 'pop', wet stems) ...", flush=True
    )
    song = render_song(SongSpec("bench", args.seed, "train", "pop", "procedural", args.seed, args.seconds))
    stems = {c: song.wet[c] for c in C.CLASSES}
    prof = load_profile(args.profile)
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6
    t0 = time.perf_counter()
    cpu0 = time.process_time()
    res = normalize_stems(stems, C.SAMPLE_RATE, prof, workers=args.workers)
    wall = time.perf_counter() - t0
    cpu = time.process_time() - cpu0
    peak_gb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6
    mask = (band_centers_hz() >= 100) & (band_centers_hz() <= 10000)
    stages: dict[str, float] = {}
    for r in res.values():
        for k, v in r.timings_s.items():
            stages[k] = stages.get(k, 0.0) + v
    print(
        f"\nnormalize {args.seconds:.0f} s x 4 stems, {args.workers} worker thread(s), profile {args.profile}"
    )
    print(f"  wall {wall:.2f} s (target <= 10 s; reference {REFERENCE['wall_s']:.0f} s of one core)")
    print(
        f"  CPU {cpu:.2f} s; peak RSS {peak_gb:.2f} GB (target <= 1 GB; reference {REFERENCE['peak_gb']} GB; "
        f"{rss0:.2f} GB before normalizing)"
    )
    print(
        "  per-stage CPU-thread time (summed over stems): "
        + ", ".join(f"{k} {v:.2f} s" for k, v in stages.items())
    )
    print("\n  stem     LUFS (target)      EQ log-spectral distance dB (before -> after)   L/R level diff dB")
    for c, r in res.items():
        t = prof.targets[c]
        before = _lsd_db(measure_spectrum(stems[c], C.SAMPLE_RATE), t.spectrum_db, mask)
        after = _lsd_db(measure_spectrum(r.audio, C.SAMPLE_RATE), t.spectrum_db, mask)
        e = r.audio.astype(np.float64) ** 2
        ild = 10 * np.log10(e[1].sum() / max(e[0].sum(), 1e-30))
        lufs = integrated_loudness(r.audio, C.SAMPLE_RATE)
        print(
            f"  {c:<7} {lufs:7.2f} ({t.loudness_lufs:6.2f})   {before:6.2f} -> {after:5.2f}{'':28}{ild:+6.2f}"
        )
        for n in r.notes:
            print(f"           note: {n}")
    print(
        f"\n  reference on the same kind of song: EQ leaves {REFERENCE['eq_lsd_db']} dB log-spectral distance, "
        f"panning leaves every stem {REFERENCE['pan_offcentre_db']} dB off-centre"
    )
    print(
        f"\nreproduce: fxmix bench normalize --seconds {args.seconds:g} --seed {args.seed} --workers {args.workers}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(bench_normalize_main())

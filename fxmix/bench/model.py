"""``fxmix bench model``: real-time factor and peak memory of the mixing networks, one process per case."""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time

import numpy as np
import torch

from fxmix.dsp.audio import write_text_atomic
from fxmix.dsp.errors import ConfigError
from fxmix.model.apply import DEFAULT_CHUNK_S, mix_stems
from fxmix.model.registry import build_model


def get_bench_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="fxmix bench model",
        description="Real-time factor and peak memory of the mixing networks (randomly initialised weights).",
    )
    p.add_argument("--nets", default="paper,wave_unet", help="comma-separated network configs")
    p.add_argument("--durations", default="10,180", help="comma-separated audio lengths (s)")
    p.add_argument("--threads", type=int, default=2, help="CPU threads (torch.set_num_threads)")
    p.add_argument("--chunk-s", type=float, default=None, help="chunk length (s); default fxmix.model.apply")
    p.add_argument("--gpu-batch", type=int, default=16, help="chunks per call on the GPU")
    p.add_argument("--gpu", action=argparse.BooleanOptionalAction, default=None, help="also bench on CUDA")
    p.add_argument("--json", default=None, help="write the figures to this JSON file")
    return p


def _bench_case(spec: dict) -> dict:
    """Run one case in this process and return its figures (called in a child process)."""
    torch.set_num_threads(spec["threads"])
    torch.manual_seed(0)
    device = spec["device"]
    model = build_model(spec["net"]).eval().to(device)
    sr = model.sample_rate
    rng = np.random.default_rng(0)
    n = int(spec["seconds"] * sr)
    stems = (0.1 * rng.standard_normal((model.n_stems, 2, n))).astype(np.float32)
    kwargs = {"chunk_s": spec["chunk_s"] or DEFAULT_CHUNK_S, "batch_size": spec["batch"]}
    mix_stems(model, stems[..., : min(n, sr)], **kwargs)  # warm-up
    if device == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    t0 = time.perf_counter()
    y = mix_stems(model, stems, **kwargs)
    if device == "cuda":
        torch.cuda.synchronize()
    wall = time.perf_counter() - t0
    out = {
        **spec,
        "wall_s": wall,
        "s_per_audio_s": wall / spec["seconds"],
        "x_realtime": spec["seconds"] / wall,
        "peak_rss_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20,
        "finite": bool(torch.isfinite(y).all()),
    }
    if device == "cuda":
        out["peak_gpu_gb"] = torch.cuda.max_memory_allocated() / 2**30
    return out


def main(argv: list[str] | None = None) -> int:
    """``fxmix bench model``: CPU (and CUDA when present) timings for each network and length."""
    args = get_bench_parser().parse_args(argv)
    nets = [s for s in args.nets.split(",") if s]
    try:
        durations = [float(s) for s in args.durations.split(",") if s]
    except ValueError:
        raise ConfigError(
            f"--durations {args.durations!r}: give seconds separated by commas, e.g. 10,180"
        ) from None
    gpu = torch.cuda.is_available() if args.gpu is None else args.gpu
    devices = ["cpu"] + (["cuda"] if gpu else [])
    results = []
    for device in devices:
        for net in nets:
            for seconds in durations:
                spec = {
                    "net": net,
                    "seconds": seconds,
                    "device": device,
                    "threads": args.threads,
                    "chunk_s": args.chunk_s,
                    "batch": 1 if device == "cpu" else args.gpu_batch,
                }
                # a fresh process per case, so the peak RSS belongs to that case alone
                proc = subprocess.run(
                    [sys.executable, "-m", "fxmix.bench.model", "_bench_case", json.dumps(spec)],
                    capture_output=True,
                    text=True,
                )
                if proc.returncode != 0:
                    print(f"{net} {seconds:g} s {device}: FAILED\n{proc.stderr[-2000:]}", file=sys.stderr)
                    results.append({**spec, "error": proc.stderr[-500:]})
                    continue
                r = json.loads(proc.stdout.strip().splitlines()[-1])
                results.append(r)
                gpu_mem = f", GPU peak {r['peak_gpu_gb']:.2f} GB" if "peak_gpu_gb" in r else ""
                print(
                    f"{net:<12} {device:<4} {seconds:>7g} s audio: {r['wall_s']:8.2f} s wall, "
                    f"{r['s_per_audio_s']:.3f} s per audio s ({r['x_realtime']:.1f}x real time), "
                    f"peak RSS {r['peak_rss_gb']:.2f} GB{gpu_mem}",
                    flush=True,
                )
    cmd = f"fxmix bench model --nets {args.nets} --durations {args.durations} --threads {args.threads}"
    if args.chunk_s is not None:
        cmd += f" --chunk-s {args.chunk_s}"
    print(f"torch {torch.__version__}, {args.threads} CPU threads, {os.cpu_count()} cores visible")
    print(f"reproduce: {cmd}")
    if args.json:
        write_text_atomic(args.json, json.dumps({"command": cmd, "results": results}, indent=2) + "\n")
    return 1 if any("error" in r for r in results) else 0


if __name__ == "__main__":  # child process of main
    if len(sys.argv) == 3 and sys.argv[1] == "_bench_case":
        print(json.dumps(_bench_case(json.loads(sys.argv[2]))))
        sys.exit(0)
    sys.exit(2)

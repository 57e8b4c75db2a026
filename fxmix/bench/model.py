"""``fxmix bench model``: speed, peak memory and accuracy of the mixing networks, one process per case.

Each case mixes seeded random stems of the given length with randomly initialised weights (seed 0) through
:func:`fxmix.model.apply.mix_stems`, the path ``fxmix mix`` takes, and reports seconds per audio second (wall
and CPU), peak RSS and the largest difference from the eager float32 network on the same chunks.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from fxmix.dsp.audio import write_text_atomic
from fxmix.dsp.errors import ConfigError
from fxmix.model.apply import DEFAULT_CHUNK_S, chunk_weights, cut_samples, mix_stems, plan_chunks, run_whole
from fxmix.model.export import export_onnx
from fxmix.model.nets import PaperNet
from fxmix.model.paper_runtime import BF16_NOTE, PaperRuntime
from fxmix.model.registry import build_model
from fxmix.model.runtime import Runtime, load_backend

#: The reference implementation (sony/FxNorm-automix) with the same network on the same 2-core machine:
#: seconds per audio second by audio length (s). It runs a song in one pass, so its time grows faster
#: than the length; it was not measured at other lengths.
REFERENCE_S_PER_S = {10.0: 0.47, 30.0: 2.68}
#: Targets on 2 CPU cores: seconds per audio second and peak memory (GB).
TARGET_S_PER_S = 0.2
TARGET_PEAK_GB = 1.0
BACKENDS = ("fast", "eager", "onnx")


def get_bench_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="fxmix bench model",
        description="Speed, peak memory and error vs the eager float32 network (randomly initialised weights).",
    )
    p.add_argument("--nets", default="paper,wave_unet", help="comma-separated network configs")
    p.add_argument("--durations", default="10,180", help="comma-separated audio lengths (s)")
    p.add_argument("--threads", type=int, default=2, help="CPU threads (torch.set_num_threads)")
    p.add_argument(
        "--backends",
        default="fast",
        help="comma-separated CPU backends: fast (the paper network's runtime; eager for other nets), eager, onnx",
    )
    p.add_argument("--bf16", action="store_true", help="fast backend: frame-rate part in bfloat16")
    p.add_argument("--chunk-s", type=float, default=None, help="chunk length (s); default fxmix.model.apply")
    p.add_argument("--error-chunks", type=int, default=3, help="chunks compared with the eager network")
    p.add_argument("--gpu-batch", type=int, default=16, help="chunks per call on the GPU")
    p.add_argument("--gpu", action=argparse.BooleanOptionalAction, default=None, help="also bench on CUDA")
    p.add_argument("--json", default=None, help="write the figures to this JSON file")
    return p


def _runner(spec: dict, model: torch.nn.Module, tmp: str):
    """What ``mix_stems`` runs for this case, and the backend name it really is."""
    backend = spec["backend"]
    if spec["device"] == "cuda" or backend == "eager":
        return model, "eager"
    if backend == "fast":
        if not isinstance(model, PaperNet):
            return model, "eager"
        return PaperRuntime(model, threads=spec["threads"], bf16=spec["bf16"]), "fast"
    path = export_onnx(model, Path(tmp) / "model.onnx")
    info = {
        "sample_rate": model.sample_rate,
        "receptive_field_samples": model.receptive_field_samples,
        "length_multiple": model.length_multiple,
        "n_stems": model.n_stems,
    }
    return Runtime(load_backend(path, "onnx"), info, "onnx"), "onnx"


def _eager_error(
    model, stems: np.ndarray, y: torch.Tensor, chunk_s: float, n_chunks: int
) -> tuple[float, str]:
    """Max abs difference of ``y`` from the eager CPU network on the same chunks, and which were compared.

    Only the samples where a chunk's weight is 1 are compared: those come from that chunk alone, and a
    cross-fade mixes two chunks with weights summing to 1, so it cannot be further from the eager output.
    """
    model = model.cpu()
    plan = plan_chunks(model, stems.shape[-1], chunk_s=chunk_s)
    if plan.n_chunks == 1:
        return float((run_whole(model, stems) - y).abs().max()), "the whole input (one pass)"
    picks = sorted({int(k) for k in np.linspace(0, plan.n_chunks - 1, max(1, n_chunks)).round()})
    x = torch.from_numpy(stems)
    worst = 0.0
    for k in picks:
        s = plan.starts[k]
        chunk = cut_samples(x, s - plan.guard, plan.chunk)
        with torch.inference_mode():
            ref = model(chunk[None])[0, :, plan.guard : plan.guard + plan.core]
        alone = chunk_weights(plan, k) == 1.0
        worst = max(worst, float((ref[:, alone] - y[:, s : s + plan.core][:, alone]).abs().max()))
    return worst, f"chunk(s) {', '.join(str(k + 1) for k in picks)} of {plan.n_chunks}"


def _bench_case(spec: dict) -> dict:
    """Run one case in this process and return its figures (called in a child process)."""
    torch.set_num_threads(spec["threads"])
    torch.manual_seed(0)
    device = spec["device"]
    model = build_model(spec["net"]).eval().to(device)
    sr = model.sample_rate
    n = int(spec["seconds"] * sr)
    stems = np.random.default_rng(0).standard_normal((model.n_stems, 2, n), dtype=np.float32)
    stems *= 0.1
    chunk_s = spec["chunk_s"] or DEFAULT_CHUNK_S
    with tempfile.TemporaryDirectory() as tmp:
        runner, backend = _runner(spec, model, tmp)
        kwargs = {"chunk_s": chunk_s, "batch_size": spec["batch"]}
        mix_stems(runner, stems[..., : min(n, 2 * sr)], **kwargs)  # warm-up
        base_gb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
        if device == "cuda":
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
        t0, c0 = time.perf_counter(), time.process_time()
        y = mix_stems(runner, stems, **kwargs)
        if device == "cuda":
            torch.cuda.synchronize()
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    out = {
        **spec,
        "backend": backend,
        "wall_s": wall,
        "cpu_s": cpu,
        "s_per_audio_s": wall / spec["seconds"],
        "cpu_s_per_audio_s": cpu / spec["seconds"],
        "peak_rss_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20,
        "base_rss_gb": base_gb,
        "finite": bool(torch.isfinite(y).all()),
        "n_chunks": plan_chunks(model, n, chunk_s=chunk_s).n_chunks,
    }
    if device == "cuda":
        out["peak_gpu_gb"] = torch.cuda.max_memory_allocated() / 2**30
    if backend != "eager" or device == "cuda":
        out["max_abs_err"], out["err_over"] = _eager_error(model, stems, y, chunk_s, spec["error_chunks"])
    return out


def _line(r: dict) -> str:
    gpu_mem = f", GPU peak {r['peak_gpu_gb']:.2f} GB" if "peak_gpu_gb" in r else ""
    err = (
        f", max |error| vs eager fp32 {r['max_abs_err']:.1e} ({r['err_over']})" if "max_abs_err" in r else ""
    )
    ref = REFERENCE_S_PER_S.get(r["seconds"])
    vs = (
        f"; reference {ref:.2f} s/s ({ref / r['s_per_audio_s']:.1f}x ours)"
        if ref
        else "; reference: not measured"
    )
    return (
        f"{r['net']:<10} {r['backend']:<5} {r['device']:<4} {r['seconds']:>6g} s audio, {r['n_chunks']:>3} chunk(s): "
        f"{r['s_per_audio_s']:.3f} s per audio s wall ({r['wall_s']:.2f} s), CPU {r['cpu_s_per_audio_s']:.3f} s/s, "
        f"peak RSS {r['peak_rss_gb']:.2f} GB (before the timed run {r['base_rss_gb']:.2f}){gpu_mem}{err}{vs}"
    )


def _parse_list(text: str, flag: str, kind=str) -> list:
    try:
        return [kind(s) for s in text.split(",") if s]
    except ValueError:
        raise ConfigError(f"{flag} {text!r}: give values separated by commas, e.g. 10,180") from None


def main(argv: list[str] | None = None) -> int:
    """``fxmix bench model``: CPU (and CUDA when present) figures for each network, backend and length."""
    args = get_bench_parser().parse_args(argv)
    nets = _parse_list(args.nets, "--nets")
    durations = _parse_list(args.durations, "--durations", float)
    backends = _parse_list(args.backends, "--backends")
    unknown = sorted(set(backends) - set(BACKENDS))
    if unknown:
        raise ConfigError(f"--backends: unknown {unknown}; use {', '.join(BACKENDS)}")
    gpu = torch.cuda.is_available() if args.gpu is None else args.gpu
    cases = [("cpu", b) for b in backends] + ([("cuda", "eager")] if gpu else [])
    results = []
    for device, backend in cases:
        for net in nets:
            for seconds in durations:
                spec = {
                    "net": net,
                    "seconds": seconds,
                    "device": device,
                    "backend": backend,
                    "threads": args.threads,
                    "chunk_s": args.chunk_s,
                    "bf16": args.bf16,
                    "error_chunks": args.error_chunks,
                    "batch": None if device == "cpu" else args.gpu_batch,
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
                results.append(json.loads(proc.stdout.strip().splitlines()[-1]))
                print(_line(results[-1]), flush=True)
    cmd = (
        f"fxmix bench model --nets {args.nets} --durations {args.durations} --threads {args.threads} "
        f"--backends {args.backends}" + (" --bf16" if args.bf16 else "")
    )
    if args.chunk_s is not None:
        cmd += f" --chunk-s {args.chunk_s}"
    if args.bf16:
        print(f"note: {BF16_NOTE}")
    print(
        f"targets on 2 CPU cores: <= {TARGET_S_PER_S} s per audio s, <= {TARGET_PEAK_GB} GB peak, error <= 1e-4"
    )
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

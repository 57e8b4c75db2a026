"""``fxmix bench stream``: real-time cost of the engine Session (tracks -> buses -> normalizer -> network).

For each track count: mean and p99 processing time per block as a fraction of the block duration, and the
algorithmic latency in samples, with and without the causal network. The network is the packaged causal
default if there is one, else ``model/configs/causal.toml`` (or the default ``CausalConfig``) randomly
initialised (seed 0): the cost does not depend on the weights. Procedural noise input, seeded.
"""

from __future__ import annotations

import argparse
import json
import os
import time

import numpy as np


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="fxmix bench stream", description=__doc__.splitlines()[0])
    p.add_argument("--tracks", default="4,16", help="comma-separated track counts")
    p.add_argument("--sample-rate", type=int, default=48000)
    p.add_argument("--block", type=int, default=512, help="samples per block")
    p.add_argument("--seconds", type=float, default=20.0, help="audio streamed per measurement")
    p.add_argument("--warmup-s", type=float, default=2.0, help="blocks not timed at the start")
    p.add_argument("--threads", type=int, default=1, help="torch threads")
    p.add_argument(
        "--model", action=argparse.BooleanOptionalAction, default=True, help="also with the network"
    )
    p.add_argument("--json", default=None, help="write the figures to this JSON file")
    return p


def _causal_model():
    import torch
    from fxmix.model import default_model_path

    path = default_model_path("causal")
    if path is not None:
        from fxmix.model.export import load_model

        return load_model(path)[0], f"packaged causal model ({path})"
    from fxmix.model.causal import CausalConfig, CausalMixer

    cfg_path = os.path.join(os.path.dirname(__file__), "..", "model", "configs", "causal.toml")
    torch.manual_seed(0)
    if os.path.isfile(cfg_path):
        import tomllib

        with open(cfg_path, "rb") as fh:
            data = tomllib.load(fh)
        table = data.get("net", data.get("model", data))
        table = {k: v for k, v in table.items() if k not in ("name", "description")}
        return CausalMixer(
            CausalConfig.from_dict(table, where=cfg_path)
        ), "model/configs/causal.toml, random init"
    return CausalMixer(CausalConfig()), "default CausalConfig, random init (no model/configs/causal.toml)"


def measure(n_tracks: int, sample_rate: int, block: int, seconds: float, warmup_s: float, model=None) -> dict:
    from fxmix.host_bridge.engine import Session

    s = Session(sample_rate, block, n_tracks, model=model)
    classes = s.classes
    for i in range(n_tracks):
        s.set_track(i, classes[i % len(classes)])
    rng = np.random.default_rng(0)
    n_blocks = int(seconds * sample_rate / block)
    n_warm = int(warmup_s * sample_rate / block)
    src = (0.05 * rng.standard_normal((n_tracks, 2, block * 64))).astype(np.float32)
    times = []
    for k in range(n_warm + n_blocks):
        j = (k % 64) * block
        x = src[:, :, j : j + block] * np.float32(0.5 + 0.5 * ((k // 40) % 2))
        t0 = time.perf_counter()
        s.process(x)
        dt = time.perf_counter() - t0
        if k >= n_warm:
            times.append(dt)
    s.close()
    t = np.asarray(times) / (block / sample_rate)
    return {
        "tracks": n_tracks,
        "model": model is not None,
        "mean_frac": float(t.mean()),
        "p99_frac": float(np.percentile(t, 99)),
        "max_frac": float(t.max()),
        "latency_samples": s.latency_samples,
    }


def bench_stream_main(argv: list[str] | None = None) -> int:
    args = get_parser().parse_args(argv)
    import torch

    torch.set_num_threads(args.threads)
    block_ms = 1000.0 * args.block / args.sample_rate
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    net, label = (None, "none")
    if args.model:
        net, label = _causal_model()
    print(
        f"fxmix bench stream: {args.sample_rate} Hz, block {args.block} ({block_ms:.2f} ms), "
        f"{os.cpu_count()} CPUs, load average {load:.2f}, torch threads {args.threads}"
    )
    print(f"network: {label}")
    rows = []
    for n in (int(v) for v in args.tracks.split(",")):
        for m in [None, net] if net is not None else [None]:
            r = measure(n, args.sample_rate, args.block, args.seconds, args.warmup_s, m)
            rows.append(r)
            print(
                f"  {n:3d} tracks, network {'yes' if m is not None else 'no ':3s}: mean {100 * r['mean_frac']:5.1f} %  "
                f"p99 {100 * r['p99_frac']:5.1f} %  max {100 * r['max_frac']:5.1f} % of the block; "
                f"latency {r['latency_samples']} samples ({1000 * r['latency_samples'] / args.sample_rate:.1f} ms)"
            )
    print("target: p99 <= 50 % with 16 tracks")
    print("reproduce: fxmix bench stream " + " ".join(argv or []))
    if args.json:
        from .audio import write_text_atomic

        write_text_atomic(
            args.json, json.dumps({"network": label, "load_average": load, "rows": rows}, indent=2) + "\n"
        )
    return 0

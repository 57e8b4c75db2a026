"""``fxmix bench stream``: real-time cost of the engine Session (tracks -> buses -> normalizer -> network).

For each track count: mean and p99 processing time per block as a fraction of the block duration (wall
clock, and the audio thread's CPU time, which a loaded machine does not inflate), the algorithmic latency in
samples, how often the background planner was still busy at an update (it is then skipped, never waited
on) and the planner process's CPU, with and without the causal network. With ``--pipeline`` (default, as in
``fxmix serve``) the network runs one block behind on its own thread: the wall figures are then the audio
path's (buses), and the network thread's CPU per block is printed next to them. Sessions run in realtime mode and blocks arrive at the block rate
(``--no-realtime`` / ``--no-paced`` for the deterministic mode / back-to-back blocks). The network is the packaged causal
default if there is one, else ``model/configs/causal.toml`` (or the default ``CausalConfig``) randomly
initialised (seed 0): the cost does not depend on the weights. Procedural noise input, seeded.
``--mixer console`` streams a :class:`ConsoleSession` instead: in realtime sessions the per-track console chain
runs on a worker thread during the block the session's FIFO waits anyway (its CPU per block is printed beside
the audio thread's: the wall figures are the audio thread's, which waits for it at the next block), the analysis
and decisions in a child process, whose share of a core is printed with the number of analyses and decisions it
made (and the blocks at which an analysis was due while the last one still ran).
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import sys
import time
import tomllib

import numpy as np
import torch

from fxmix.dsp.audio import write_text_atomic
from fxmix.dsp.streaming import UPDATE_HOPS
from fxmix.dsp.streaming.planner_process import planner_cpu_seconds
from fxmix.host_bridge.console_session import ConsoleSession
from fxmix.host_bridge.engine import Session
from fxmix.model import default_model_path
from fxmix.model.causal import CausalMixer
from fxmix.model.config import CausalConfig
from fxmix.model.states import load_model

#: GIL switch interval (s) while benchmarking (what ``fxmix serve`` uses too).
SWITCH_INTERVAL_S = 0.0005


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
    p.add_argument(
        "--realtime",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="realtime sessions (plans picked up when ready) or deterministic ones (fixed-hop plans)",
    )
    p.add_argument(
        "--paced",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="feed blocks at the block rate (like an audio device) or back to back",
    )
    p.add_argument(
        "--pipeline",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="run the network one block behind on its own thread (realtime default; adds one block of latency)",
    )
    p.add_argument(
        "--mixer",
        choices=("bus", "console"),
        default="bus",
        help="bus: class buses -> normalizer -> causal network; console: every track normalized on its own and "
        "mixed by the console mixer (analysis and decisions in a child process, whose CPU is printed too)",
    )
    p.add_argument("--json", default=None, help="write the figures to this JSON file")
    return p


def _causal_model():
    path = default_model_path("causal")
    if path is not None:
        return load_model(path)[0], f"packaged causal model ({path})"
    cfg_path = os.path.join(os.path.dirname(__file__), "..", "..", "model", "configs", "causal.toml")
    torch.manual_seed(0)
    if os.path.isfile(cfg_path):
        with open(cfg_path, "rb") as fh:
            data = tomllib.load(fh)
        table = data.get("net", data.get("model", data))
        table = {k: v for k, v in table.items() if k not in ("name", "description")}
        return CausalMixer(
            CausalConfig.from_dict(table, where=cfg_path)
        ), "model/configs/causal.toml, random init"
    return CausalMixer(CausalConfig()), "default CausalConfig, random init (no model/configs/causal.toml)"


def _time_network_thread(s) -> list[float]:
    """With a pipelined network (a console session: its chain on a worker thread), wrap its per-block call to
    collect that thread's CPU seconds."""
    net_cpu: list[float] = []
    if getattr(s, "mixer", None) == "console" and s.stats().get("chain") == "thread":
        inner_chain = s.chain.process

        def timed_chain(x):
            c0 = time.thread_time()
            out = inner_chain(x)
            net_cpu.append(time.thread_time() - c0)
            return out

        s.chain.process = timed_chain
    elif getattr(s, "pipeline", False):
        inner = s._net_block

        def timed_net_block(buses):
            c0 = time.thread_time()
            out = inner(buses)
            net_cpu.append(time.thread_time() - c0)
            return out

        s._net_block = timed_net_block
    return net_cpu


def _stream(s: Session, n_tracks: int, sample_rate: int, block: int, seconds: float, warmup_s: float, paced: bool):
    """Feed seeded noise block by block; -> (wall s per timed block, thread CPU s per block, core share of the
    planner process (a console session: of its analysis process), number of warm-up blocks)."""
    cpu_seconds = getattr(s, "analysis_cpu_seconds", planner_cpu_seconds)
    rng = np.random.default_rng(0)
    n_blocks = int(seconds * sample_rate / block)
    n_warm = int(warmup_s * sample_rate / block)
    src = (0.05 * rng.standard_normal((n_tracks, 2, block * 64))).astype(np.float32)
    times, cpu_times = [], []
    period_s = block / sample_rate
    t_next = time.perf_counter()
    planner_cpu0 = wall0 = None
    for k in range(n_warm + n_blocks):
        if k == n_warm:
            planner_cpu0, wall0 = cpu_seconds(), time.perf_counter()
        j = (k % 64) * block
        x = src[:, :, j : j + block] * np.float32(0.5 + 0.5 * ((k // 40) % 2))
        t0, c0 = time.perf_counter(), time.thread_time()
        s.process(x)
        dt, dc = time.perf_counter() - t0, time.thread_time() - c0
        if k >= n_warm:
            times.append(dt)
            cpu_times.append(dc)
        if paced:  # blocks arrive at the block rate, as from an audio device
            t_next += period_s
            time.sleep(max(0.0, t_next - time.perf_counter()))
    planner_cpu1, wall1 = cpu_seconds(), time.perf_counter()
    planner_frac = (
        (planner_cpu1 - planner_cpu0) / (wall1 - wall0)
        if planner_cpu0 is not None and planner_cpu1 is not None
        else float("nan")
    )
    return times, cpu_times, planner_frac, n_warm


def measure(
    n_tracks: int,
    sample_rate: int,
    block: int,
    seconds: float,
    warmup_s: float,
    model=None,
    realtime: bool = True,
    paced: bool = True,
    pipeline: bool = True,
    mixer: str = "bus",
) -> dict:
    """Stream seeded noise through a :class:`Session` (or a :class:`ConsoleSession`); per-block wall and
    thread-CPU time / block duration."""
    if mixer == "console":
        s = ConsoleSession(sample_rate, block, n_tracks, realtime=realtime)
    else:
        s = Session(sample_rate, block, n_tracks, model=model, realtime=realtime, pipeline=pipeline)
    classes = s.classes
    for i in range(n_tracks):
        s.set_track(i, classes[i % len(classes)])
    # as fxmix serve does at session open: a full garbage collection over torch/scipy's ~200k objects takes
    # ~0.1 s and would otherwise land inside some block
    gc.collect()
    gc.freeze()
    net_cpu = _time_network_thread(s)
    times, cpu_times, planner_frac, n_warm = _stream(s, n_tracks, sample_rate, block, seconds, warmup_s, paced)
    buses = getattr(s, "buses", [])
    skipped = sum(b.plans_skipped for b in buses)
    updates = sum(b.k // UPDATE_HOPS for b in buses)
    info = s.stats()
    s.close()
    gc.unfreeze()
    period_s = block / sample_rate
    t = np.asarray(times) / period_s
    c = np.asarray(cpu_times) / period_s
    nc = np.asarray(net_cpu[n_warm:], float) / period_s if net_cpu else np.zeros(1)
    return {
        "tracks": n_tracks,
        "model": model is not None,
        "mean_frac": float(t.mean()),
        "p50_frac": float(np.percentile(t, 50)),
        "p99_frac": float(np.percentile(t, 99)),
        "max_frac": float(t.max()),
        "cpu_mean_frac": float(c.mean()),
        "cpu_p50_frac": float(np.percentile(c, 50)),
        "cpu_p99_frac": float(np.percentile(c, 99)),
        "mixer": mixer,
        "pipelined_network": getattr(s, "pipeline", False),
        "console_analysis": info.get("analysis"),
        "console_chain": info.get("chain"),
        "analyses": info.get("analyses"),
        "analyses_late_blocks": info.get("analyses_late"),
        "decisions": info.get("decisions"),
        "net_thread_cpu_mean_frac": float(nc.mean()),
        "net_thread_cpu_p99_frac": float(np.percentile(nc, 99)),
        "latency_samples": s.latency_samples,
        "planner_skipped_fraction": skipped / max(updates, 1),
        "planner_process_core_frac": planner_frac,
    }


def main(argv: list[str] | None = None) -> int:
    args = get_parser().parse_args(argv)
    torch.set_num_threads(args.threads)
    # realtime plans run in a planner process; other threads of this process (deterministic mode's planner
    # thread, the planner pipe's reader/writer) hand the GIL back within 0.5 ms, as in fxmix serve
    sys.setswitchinterval(SWITCH_INTERVAL_S)
    block_ms = 1000.0 * args.block / args.sample_rate
    load = os.getloadavg() if hasattr(os, "getloadavg") else (float("nan"),) * 3
    net, label = (None, "none")
    if args.mixer == "console":
        args.model, label = False, "console mixer (packaged), per-track console chain"
    if args.model:
        net, label = _causal_model()
    mode = "realtime (planner never waited on)" if args.realtime else "deterministic (waits for plans)"
    print(
        f"fxmix bench stream: {args.sample_rate} Hz, block {args.block} ({block_ms:.2f} ms), "
        f"{os.cpu_count()} CPUs, load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}, "
        f"torch threads {args.threads}, {mode}, {'paced at the block rate' if args.paced else 'unpaced'}"
        + (", console mixer: per-track chain on a worker thread (realtime; else the audio thread), analysis and "
           "decisions in a child process"
           if args.mixer == "console" else
           f", network {'pipelined (one block behind, own thread)' if args.pipeline else 'in the audio thread'}")
    )
    print(f"network: {label}")
    rows = []
    for n in (int(v) for v in args.tracks.split(",")):
        for m in [None, net] if net is not None else [None]:
            r = measure(
                n,
                args.sample_rate,
                args.block,
                args.seconds,
                args.warmup_s,
                m,
                args.realtime,
                args.paced,
                args.pipeline,
                args.mixer,
            )
            rows.append(r)
            print(
                f"  {n:3d} tracks, {('console' if args.mixer == 'console' else 'network ' + ('yes' if m is not None else 'no ')):11s}: wall mean "
                f"{100 * r['mean_frac']:5.1f} %  p50 {100 * r['p50_frac']:5.1f} %  p99 {100 * r['p99_frac']:5.1f} %  max {100 * r['max_frac']:6.1f} %; "
                f"CPU mean {100 * r['cpu_mean_frac']:5.1f} %  p50 {100 * r['cpu_p50_frac']:5.1f} %  p99 {100 * r['cpu_p99_frac']:5.1f} % of the block; "
                + (
                    f"network thread (pipelined, off the audio path) CPU mean "
                    f"{100 * r['net_thread_cpu_mean_frac']:4.1f} %  p99 {100 * r['net_thread_cpu_p99_frac']:4.1f} %; "
                    if r["pipelined_network"]
                    else f"chain thread (in the block the FIFO waits) CPU mean {100 * r['net_thread_cpu_mean_frac']:4.1f} %  "
                    f"p99 {100 * r['net_thread_cpu_p99_frac']:4.1f} %; "
                    if r["console_chain"] == "thread"
                    else ""
                )
                + f"latency {r['latency_samples']} samples ({1000 * r['latency_samples'] / args.sample_rate:.1f} ms)"
                + (f"; analysis ({r['console_analysis']}) {100 * r['planner_process_core_frac']:.0f} % of a core, "
                   f"{r['analyses']} analyses, {r['decisions']} decisions, {r['analyses_late_blocks']} blocks late"
                   if args.mixer == "console" else
                   f"; planner busy at {100 * r['planner_skipped_fraction']:.0f} % of updates, "
                   f"planner process {100 * r['planner_process_core_frac']:.0f} % of a core")
            )
    load_after = os.getloadavg() if hasattr(os, "getloadavg") else (float("nan"),) * 3
    target = ("64 tracks p99 <= 50 %, 16 tracks p99 <= 25 %" if args.mixer == "console"
              else "wall p99 <= 50 % with 16 tracks")
    print(f"target: {target}; load average after {load_after[0]:.2f}")
    print("reproduce: fxmix bench stream " + " ".join(argv or []))
    if args.json:
        doc = {"network": label, "load_average": load, "load_average_after": load_after, "rows": rows}
        write_text_atomic(args.json, json.dumps(doc, indent=2) + "\n")
    return 0

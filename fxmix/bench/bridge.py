"""`fxmix bench bridge`: a server here, a real-time client in another process; loss, round trips, server CPU."""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import time

from fxmix.dsp.audio import write_text_atomic
from fxmix.dsp.constants import REFERENCE_PROFILE
from fxmix.dsp.errors import FxmixError
from fxmix.host_bridge.osc import BridgeServer
from fxmix.host_bridge.sessions import make_session_factory
from fxmix.verbs.serve import add_pipeline_flag, add_torch_threads_flag, tune_process


def get_bench_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="fxmix bench bridge",
        description="Loopback benchmark: a client process sends real-time-paced track blocks to a server here.",
    )
    p.add_argument("--seconds", type=float, default=60.0, help="stream length (default %(default)s)")
    p.add_argument("--tracks", type=int, default=16)
    p.add_argument("--block-samples", type=int, default=512)
    p.add_argument("--sample-rate", type=int, default=48000)
    p.add_argument("--model", default="default", help="default | none | PATH")
    p.add_argument("--profile", default=REFERENCE_PROFILE)
    p.add_argument("--json", default=None, help="also write the results to this JSON file")
    add_torch_threads_flag(p)
    add_pipeline_flag(p)
    return p


def _scheduling() -> str:
    """This process's scheduling class and nice value (a round trip's tail is mostly the scheduler's)."""
    try:
        policy = {os.SCHED_OTHER: "normal", os.SCHED_FIFO: "fifo", os.SCHED_RR: "rr"}.get(
            os.sched_getscheduler(0), "other"
        )
    except (AttributeError, OSError):
        policy = "?"
    return f"{policy}, nice {os.nice(0)}"


def _print_plans(per_bus: dict, wall_s: float) -> None:
    plans = [v for v in per_bus.values() if isinstance(v, int)]
    if plans:
        print(
            f"  plans applied per bus: {min(plans)}-{max(plans)} "
            f"({min(plans) / max(wall_s, 1e-9):.2f}-{max(plans) / max(wall_s, 1e-9):.2f} per s; "
            "the planner runs on otherwise idle CPU time)"
        )


def main(argv: list[str] | None = None) -> int:
    """``fxmix bench bridge``: blocks sent/received/lost, round-trip p50/p99, server CPU."""
    argv = list(sys.argv[1:] if argv is None else argv)
    args = get_bench_parser().parse_args(argv)
    tune_process(args.torch_threads, args.model)
    factory = make_session_factory(args.model, args.profile, realtime=True, pipeline=args.pipeline)
    load_before = os.getloadavg()
    with BridgeServer(factory, "127.0.0.1", 0, params_interval_s=0.5, default_profile=args.profile) as server:
        host, port = server.address
        cmd = [
            sys.executable, "-m", "fxmix.bench.bridge_client", "--bench", "--host", host, "--port", str(port),
            "--tracks", str(args.tracks), "--block-samples", str(args.block_samples),
            "--sample-rate", str(args.sample_rate), "--seconds", str(args.seconds),
        ]  # fmt: skip
        cpu0, wall0 = time.process_time(), time.perf_counter()
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=args.seconds + 120, check=False)
        cpu_s, wall_s = time.process_time() - cpu0, time.perf_counter() - wall0
        server_errors = server.core.errors.snapshot()
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    if proc.returncode != 0 or not lines:
        raise FxmixError(f"bench client failed (exit {proc.returncode}): {proc.stderr.strip()[-2000:]}")
    r = json.loads(lines[-1])
    period_ms = 1000.0 * args.block_samples / args.sample_rate
    latency_ms = 1000.0 * r["latency_samples"] / args.sample_rate
    session = r.get("server_stats", {}).get("session", {})  # queried by the client before it closed
    result = {
        **{k: v for k, v in r.items() if k != "server_stats"},
        "tracks": args.tracks,
        "block_samples": args.block_samples,
        "sample_rate": args.sample_rate,
        "seconds": args.seconds,
        "model": args.model,
        "server_cpu_percent_of_one_core": 100.0 * cpu_s / wall_s,
        "server_cpu_ms_per_block": 1000.0 * cpu_s / max(1, r["blocks_sent"]),
        "scheduling": _scheduling(),
        "server_process_ms_mean": session.get("process_ms_mean"),
        "server_process_ms_max": session.get("process_ms_max"),
        "server_zero_filled_track_blocks": session.get("zero_filled"),
        "server_skipped_blocks": session.get("skipped_blocks"),
        "plans_applied_per_bus": {
            c: b.get("plans_applied") for c, b in session.get("engine", {}).get("buses", {}).items()
        },
        "server_errors": server_errors,
        "loadavg_before": load_before,
        "loadavg_after": os.getloadavg(),
    }
    print(
        f"fxmix bench bridge: {args.tracks} tracks x {args.block_samples}-sample blocks at {args.sample_rate} Hz, "
        f"{args.seconds:g} s real-time over loopback (block period {period_ms:.2f} ms), "
        f"model {args.model} ({session.get('engine', {}).get('model', '?')})"
    )
    print(
        f"  blocks sent {r['blocks_sent']}, received {r['blocks_received']}, lost {r['blocks_lost']} (target 0); "
        f"track blocks zero-filled by the server: {session.get('zero_filled')}"
    )
    print(
        f"  round trip (last track sent -> mix received): p50 {r['rtt_p50_ms']:.2f} ms, p99 {r['rtt_p99_ms']:.2f} ms, "
        f"max {r['rtt_max_ms']:.2f} ms (target p99 <= 2 ms; the algorithmic latency of "
        f"{r['latency_samples']} samples = {latency_ms:.2f} ms comes on top)"
    )
    print(
        f"  server CPU {result['server_cpu_percent_of_one_core']:.1f}% of one core, "
        f"{result['server_cpu_ms_per_block']:.2f} ms per block (all threads); engine's process() per block: "
        f"mean {session.get('process_ms_mean', float('nan')):.2f} ms, max {session.get('process_ms_max', float('nan')):.2f} ms "
        f"(budget {period_ms:.2f} ms); blocks skipped while behind real time: {session.get('skipped_blocks')}"
    )
    _print_plans(result["plans_applied_per_bus"], r["wall_s"])
    print(
        f"  load average before/after: {load_before[0]:.2f} / {result['loadavg_after'][0]:.2f} "
        f"({os.cpu_count()} CPUs; this process: {result['scheduling']}); errors: {json.dumps(server_errors)}"
    )
    print("  reproduce: fxmix bench bridge " + shlex.join(argv))
    if args.json:
        write_text_atomic(args.json, json.dumps(result, indent=2))
    return 0 if r["blocks_lost"] == 0 else 1

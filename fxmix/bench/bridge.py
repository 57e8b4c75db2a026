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
from fxmix.host_bridge.osc.priority import DEFAULT_REALTIME_PRIORITY
from fxmix.host_bridge.sessions import make_session_factory
from fxmix.verbs.serve import add_pipeline_flag, add_torch_threads_flag, tune_process

from .bridge_floor import EchoFloor


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
    p.add_argument(
        "--rt-priority",
        type=int,
        default=DEFAULT_REALTIME_PRIORITY,
        help="the server's audio threads in SCHED_FIFO at this priority where the OS allows it, as a DAW runs its "
        "audio threads (default %(default)s; 0: plain scheduling; the client, standing in for the DAW, runs one "
        "step above); the scheduling used is printed",
    )
    p.add_argument(
        "--floor",
        action="store_true",
        help="first run the same client against a plain Python UDP echo server (same scheduling): the round trip "
        "the machine and the sockets alone allow right now",
    )
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


def _run_client(args: argparse.Namespace, address: tuple[str, int]) -> tuple[dict, float, float]:
    """Run the load generator against ``address``; its JSON result, this process's CPU seconds and wall seconds
    meanwhile. With ``--rt-priority`` the client runs one step over the server, as a DAW's audio thread: a
    server thread waking on its datagrams cannot then delay its sends or its clock readings."""
    cmd = [
        sys.executable, "-m", "fxmix.bench.bridge_client", "--bench", "--host", address[0], "--port", str(address[1]),
        "--tracks", str(args.tracks), "--block-samples", str(args.block_samples),
        "--sample-rate", str(args.sample_rate), "--seconds", str(args.seconds),
        "--rt-priority", str(args.rt_priority + 1 if args.rt_priority > 0 else 0),
    ]  # fmt: skip
    cpu0, wall0 = time.process_time(), time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=args.seconds + 120, check=False)
    cpu_s, wall_s = time.process_time() - cpu0, time.perf_counter() - wall0
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    if proc.returncode != 0 or not lines:
        raise FxmixError(f"bench client failed (exit {proc.returncode}): {proc.stderr.strip()[-2000:]}")
    return json.loads(lines[-1]), cpu_s, wall_s


def _floor(args: argparse.Namespace, priority: int | None) -> dict:
    """The plain UDP echo's round trip with the same client (``--floor``)."""
    load = os.getloadavg()[0]
    with EchoFloor(priority) as echo:
        r, _, _ = _run_client(args, echo.address)
    keep = ("blocks_lost", "rtt_p50_ms", "rtt_p99_ms", "rtt_max_ms")
    return {k: r[k] for k in keep} | {"loadavg": load, "scheduling": echo.scheduling}


def main(argv: list[str] | None = None) -> int:
    """``fxmix bench bridge``: blocks sent/received/lost, round-trip p50/p99, server CPU."""
    argv = list(sys.argv[1:] if argv is None else argv)
    args = get_bench_parser().parse_args(argv)
    tune_process(args.torch_threads, args.model)
    priority = args.rt_priority if args.rt_priority > 0 else None
    floor = _floor(args, priority) if args.floor else None
    factory = make_session_factory(args.model, args.profile, realtime=True, pipeline=args.pipeline)
    load_before = os.getloadavg()
    with BridgeServer(
        factory, "127.0.0.1", 0, params_interval_s=0.5, default_profile=args.profile, realtime_priority=priority
    ) as server:
        r, cpu_s, wall_s = _run_client(args, server.address)
        server_errors = server.core.errors.snapshot()
    stats = r.get("server_stats", {})
    session = stats.get("session", {})  # queried by the client before it closed
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
        "thread_scheduling": stats.get("server", {}).get("scheduling", {}),
        "floor": floor,
        **{k: session.get(k) for k in ("turnaround_ms_p50", "turnaround_ms_p99", "turnaround_ms_max")},
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
    _print_result(args, result, session)
    print("  reproduce: fxmix bench bridge " + shlex.join(argv))
    if args.json:
        write_text_atomic(args.json, json.dumps(result, indent=2))
    return 0 if r["blocks_lost"] == 0 else 1


def _print_result(args: argparse.Namespace, r: dict, session: dict) -> None:
    period_ms = 1000.0 * args.block_samples / args.sample_rate
    latency_ms = 1000.0 * r["latency_samples"] / args.sample_rate
    nan = float("nan")
    print(
        f"fxmix bench bridge: {args.tracks} tracks x {args.block_samples}-sample blocks at {args.sample_rate} Hz, "
        f"{args.seconds:g} s real-time over loopback (block period {period_ms:.2f} ms), "
        f"model {args.model} ({session.get('engine', {}).get('model', '?')})"
    )
    print(
        f"  blocks sent {r['blocks_sent']}, received {r['blocks_received']}, lost {r['blocks_lost']} (target 0); "
        f"track blocks zero-filled by the server: {session.get('zero_filled')}"
    )
    arrival = "the kernel's arrival stamp" if r.get("kernel_stamps") else "read by the client"
    print(
        f"  round trip (last track sent -> mix at the client's socket, {arrival}): p50 {r['rtt_p50_ms']:.2f} ms, "
        f"p99 {r['rtt_p99_ms']:.2f} ms, max {r['rtt_max_ms']:.2f} ms (target p99 <= 2 ms; the algorithmic latency "
        f"of {r['latency_samples']} samples = {latency_ms:.2f} ms comes on top); read by the client's receive "
        f"thread: p50 {r['rtt_read_p50_ms']:.2f} ms, p99 {r['rtt_read_p99_ms']:.2f} ms"
    )
    print(
        f"  server turnaround (block complete on the receive thread -> mix sent): "
        f"p50 {r['turnaround_ms_p50'] or nan:.2f} ms, p99 {r['turnaround_ms_p99'] or nan:.2f} ms, "
        f"max {r['turnaround_ms_max'] or nan:.2f} ms"
    )
    if r["floor"] is not None:
        f = r["floor"]
        print(
            f"  floor (plain Python UDP echo, same client, {f['scheduling']}, load {f['loadavg']:.2f}): lost "
            f"{f['blocks_lost']}, round trip p50 {f['rtt_p50_ms']:.2f} ms, p99 {f['rtt_p99_ms']:.2f} ms, "
            f"max {f['rtt_max_ms']:.2f} ms"
        )
    print(
        f"  server CPU {r['server_cpu_percent_of_one_core']:.1f}% of one core, "
        f"{r['server_cpu_ms_per_block']:.2f} ms per block (all threads); engine's process() per block: "
        f"mean {session.get('process_ms_mean', nan):.2f} ms, max {session.get('process_ms_max', nan):.2f} ms "
        f"(budget {period_ms:.2f} ms); blocks skipped while behind real time: {session.get('skipped_blocks')}"
    )
    _print_plans(r["plans_applied_per_bus"], r["wall_s"])
    threads = ", ".join(f"{k} {v}" for k, v in r["thread_scheduling"].items())
    print(
        f"  load average before/after: {r['loadavg_before'][0]:.2f} / {r['loadavg_after'][0]:.2f} "
        f"({os.cpu_count()} CPUs; this process: {r['scheduling']}; threads: {threads}); "
        f"errors: {json.dumps(r['server_errors'])}"
    )

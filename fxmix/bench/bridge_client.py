"""The load generator of ``fxmix bench bridge``: runs in its own process (``python -m
fxmix.bench.bridge_client --bench ...``), streams real-time-paced blocks to a server and prints one
JSON line of loss and round-trip figures."""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any

import numpy as np

from fxmix.dsp.constants import CLASSES
from fxmix.dsp.errors import FxmixError
from fxmix.host_bridge.osc.client import BridgeClient, StreamReport
from fxmix.host_bridge.osc.priority import realtime_thread


def _bench_source(n_tracks: int, sample_rate: int, seconds: float = 2.0, seed: int = 0) -> np.ndarray:
    """Seeded, looped test material: per track a decaying noise burst train plus a tone, (n_tracks, 2, n)."""
    rng = np.random.default_rng(seed)
    n = int(seconds * sample_rate)
    t = np.arange(n) / sample_rate
    out = np.empty((n_tracks, 2, n), np.float32)
    for k in range(n_tracks):
        env = np.exp(-((t * (1 + k % 4)) % 0.5) * 12.0)
        tone = np.sin(2 * np.pi * (55.0 * 2 ** (k / 4)) * t)
        noise = rng.standard_normal((2, n)) * env
        out[k] = (0.05 * (tone[None] + 0.5 * noise)).astype(np.float32)
    return out


def run_bench_client(
    host: str,
    port: int,
    n_tracks: int,
    block_samples: int,
    sample_rate: int,
    seconds: float,
    timeout_s: float = 5.0,
) -> dict[str, Any]:
    """Open a session, send ``seconds`` of real-time-paced blocks, and measure loss and round trips.

    A block counts as lost when its mix has not arrived ``timeout_s`` after the last block was sent.
    """
    with BridgeClient(host, port, session=7) as client:
        latency = client.open(sample_rate, block_samples, n_tracks)
        for k in range(n_tracks):
            client.set_track(k, CLASSES[k % len(CLASSES)], f"track {k + 1}")
        source = _bench_source(n_tracks, sample_rate)
        n_blocks = int(seconds * sample_rate / block_samples)
        period_s = block_samples / sample_rate
        blocks_per_loop = source.shape[-1] // block_samples
        sent_t: list[float] = []
        late_sends = 0
        t0 = time.perf_counter()
        for seq in range(n_blocks):
            delay = t0 + seq * period_s - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            elif delay < -period_s:
                late_sends += 1
            j = (seq % blocks_per_loop) * block_samples
            sent_t.append(client.send_block(seq, source[..., j : j + block_samples]))
        client.wait_mix(n_blocks - 1, timeout_s)
        deadline = time.monotonic() + timeout_s
        while sum(1 for s in range(n_blocks) if s in client.mixes) < n_blocks and time.monotonic() < deadline:
            time.sleep(0.01)
        wall_s = time.perf_counter() - t0
        got = [s for s in range(n_blocks) if s in client.mixes]
        rtt = [1000.0 * (client.mixes[s][1] - sent_t[s]) for s in got]
        rtt_read = [1000.0 * (client.mix_read_t[s] - sent_t[s]) for s in got if s in client.mix_read_t]
        stats = client.query_stats() or {}
        client.close()
    report = StreamReport(n_blocks, len(rtt), n_blocks - len(rtt), latency, rtt, wall_s).to_dict()
    report["client_late_sends"] = late_sends
    # the round trip above ends when the mix reached the client's socket (the kernel's stamp where there is
    # one); this one when the client's receive thread read it (its own wake-up included)
    report["kernel_stamps"] = client.kernel_stamps
    report["rtt_read_p50_ms"], report["rtt_read_p99_ms"] = (
        [float(v) for v in np.percentile(rtt_read, (50, 99))] if rtt_read else [float("nan")] * 2
    )
    report["server_stats"] = stats
    return report


def main(argv: list[str] | None = None) -> int:
    """``python -m fxmix.bench.bridge_client --bench ...``: the bench load generator."""
    p = argparse.ArgumentParser(prog="fxmix-bridge-bench-client")
    p.add_argument("--bench", action="store_true", required=True)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--tracks", type=int, default=16)
    p.add_argument("--block-samples", type=int, default=512)
    p.add_argument("--sample-rate", type=int, default=48000)
    p.add_argument("--seconds", type=float, default=60.0)
    p.add_argument("--rt-priority", type=int, default=0, help="SCHED_FIFO priority of the client's threads (0: as is)")
    args = p.parse_args(argv)
    if args.rt_priority > 0:  # before the client's receive thread starts: it inherits this thread's class
        realtime_thread(args.rt_priority)
    try:
        result = run_bench_client(
            args.host, args.port, args.tracks, args.block_samples, args.sample_rate, args.seconds
        )
    except FxmixError as exc:
        print(json.dumps({"error": str(exc)}))
        return 1
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""`fxmix serve`, `fxmix client` and `fxmix bench bridge`: thin CLI over the OSC bridge.

- ``fxmix serve``: the real-time OSC server (:class:`fxmix.host_bridge.osc.BridgeServer`) in front of
  engine sessions (:class:`fxmix.host_bridge.engine.Session`).
- ``fxmix client STEMS... -o MIX.wav``: streams stems to a server and writes the returned mix.
- ``fxmix bench bridge``: a server here, a real-time client in another process, loss and round trips.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
from fxmix.dsp.constants import REFERENCE_PROFILE

from ..dsp.audio import align_lengths, read_audio, write_audio
from ..dsp.errors import AudioInputError, ConfigError, FxmixError
from . import addresses as A
from .osc import BridgeServer, SessionFactory
from .osc_client import BridgeClient, stream_mix

log = logging.getLogger("fxmix")

DEFAULT_PROFILE = REFERENCE_PROFILE


def make_session_factory(
    model: Any = "default",
    profile: str = DEFAULT_PROFILE,
    realtime: bool = False,
    pipeline: bool | None = None,
) -> SessionFactory:
    """Factory of engine sessions for the server.

    Args:
        model: ``"default"``, ``"none"``, a path to an exported causal network, or a loaded causal network
            (shared by all sessions; each session keeps its own streaming state).
        profile: profile name or JSON path used when a session does not switch it.
        realtime: realtime engine sessions (plans picked up when ready, never waited on; ONNX Runtime network
            step) as ``fxmix serve`` and ``fxmix bench bridge`` use; False gives reproducible sessions (the
            default, what tests compare against the in-process API).
        pipeline: run the network one block behind (``Session(pipeline=...)``; None: = realtime).

    The engine is imported here (not at module import) so ``fxmix client`` works without torch.
    """
    from .engine import Session

    model_arg: Any = None if isinstance(model, str) and model.lower() == "none" else model

    def factory(sample_rate: int, block_samples: int, n_tracks: int, prof: str | None) -> Any:
        return Session(
            sample_rate,
            block_samples,
            n_tracks,
            profile=prof or profile,
            model=model_arg,
            realtime=realtime,
            pipeline=pipeline,
        )

    return factory


def _address(host: str | None, port: int | None, flag: str) -> tuple[str, int] | None:
    if host is None and port is None:
        return None
    if port is None:
        raise ConfigError(f"{flag}-host given without {flag}-port; pass both")
    return (host or "127.0.0.1", int(port))


def get_serve_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="fxmix serve",
        description="Real-time OSC server: DAW track blocks in, mixed blocks and fxmix's parameters out. "
        "Address table: README (or `python -m fxmix.host_bridge.addresses`).",
    )
    p.add_argument("--host", default="127.0.0.1", help="interface to bind (default: loopback only)")
    p.add_argument("--port", type=int, default=A.DEFAULT_PORT, help="UDP port (default %(default)s)")
    p.add_argument("--model", default="default", help="network: default | none | PATH to an export")
    p.add_argument(
        "--profile", default=DEFAULT_PROFILE, help="profile name or JSON path (default %(default)s)"
    )
    p.add_argument(
        "--allow", nargs="+", default=[], metavar="IP", help="accept only these senders (IP or CIDR)"
    )
    p.add_argument("--reply-host", default=None, help="send mixed blocks here instead of to the sender")
    p.add_argument("--reply-port", type=int, default=None)
    p.add_argument(
        "--reaper-feedback",
        action="store_true",
        help="also send /track/N/volume/db and /track/N/pan (Reaper's default OSC pattern)",
    )
    p.add_argument(
        "--reaper-host", default="127.0.0.1", help="Reaper's OSC listen address (default %(default)s)"
    )
    p.add_argument(
        "--reaper-port", type=int, default=A.REAPER_DEFAULT_PORT, help="Reaper's OSC port (%(default)s)"
    )
    p.add_argument(
        "--reaper-track-offset", type=int, default=1, help="Reaper track of fxmix track 0 (%(default)s)"
    )
    p.add_argument(
        "--window-blocks", type=int, default=8, help="reorder window (blocks, default %(default)s)"
    )
    p.add_argument(
        "--reorder-timeout-ms",
        type=float,
        default=50.0,
        help="mix an incomplete block (missing tracks zero-filled) after this wait; 0 = wait for the window",
    )
    p.add_argument(
        "--params-interval", type=float, default=0.5, help="seconds between parameter pushes; 0 = off"
    )
    p.add_argument(
        "--max-backlog-ms",
        type=float,
        default=200.0,
        help="when blocks wait longer than this the server is behind real time and skips the engine until it "
        "has caught up (counted as overload); 0 = never skip (default %(default)s)",
    )
    _add_torch_threads(p)
    _add_pipeline(p)
    return p


def _add_pipeline(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--pipeline",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="run the network one block behind on its own thread (default): shorter block times, one block "
        "more latency; --no-pipeline: network in the mixing thread, latency 512 + the network's look-ahead",
    )


def _add_torch_threads(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--torch-threads",
        type=int,
        default=1,
        help="intra-op threads of the network (default 1: steady block times; OpenMP threads spin on busy CPUs)",
    )


#: GIL switch interval of the server process (s): the receive thread waits at most this long for the
#: worker to yield the GIL (Python's default, 5 ms, would be a 5 ms round-trip jitter on its own).
SWITCH_INTERVAL_S = 0.0005


def _tune_process(n: int, model: Any) -> None:
    sys.setswitchinterval(SWITCH_INTERVAL_S)
    if isinstance(model, str) and model.lower() == "none":
        return  # no network: do not import torch
    import torch

    torch.set_num_threads(max(1, int(n)))


def serve_main(argv: list[str] | None = None) -> int:
    """``fxmix serve``: run the OSC server until Ctrl-C."""
    args = get_serve_parser().parse_args(argv)
    _tune_process(args.torch_threads, args.model)
    factory = make_session_factory(args.model, args.profile, realtime=True, pipeline=args.pipeline)
    # Build one session up front so a bad --model/--profile fails now, not at the DAW's first open.
    factory(48000, 512, 1, None)
    server = BridgeServer(
        factory,
        args.host,
        args.port,
        allow=args.allow,
        reply_to=_address(args.reply_host, args.reply_port, "--reply"),
        reaper_feedback=(args.reaper_host, args.reaper_port) if args.reaper_feedback else None,
        reaper_track_offset=args.reaper_track_offset,
        window_blocks=args.window_blocks,
        reorder_timeout_s=args.reorder_timeout_ms / 1000.0 if args.reorder_timeout_ms > 0 else None,
        max_backlog_s=args.max_backlog_ms / 1000.0 if args.max_backlog_ms > 0 else None,
        params_interval_s=args.params_interval if args.params_interval > 0 else None,
        default_profile=args.profile,
    )
    host, port = server.address
    log.info(
        "serving OSC on udp://%s:%d (model %s, profile %s); Ctrl-C stops",
        host,
        port,
        args.model,
        args.profile,
    )
    if host not in ("127.0.0.1", "::1", "localhost") and not args.allow:
        log.warning("listening on %s without --allow: any host that can reach this port can use it", host)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        log.info("stopped; counters: %s", json.dumps(server.core.stats()))
    return 0


# ---------------------------------------------------------------- client


def get_client_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="fxmix client",
        description="Stream WAV stems (one per track) to an fxmix server and write the returned mix.",
    )
    p.add_argument("stems", nargs="+", metavar="STEM", help="audio file per track; PATH=CLASS sets its class")
    p.add_argument("-o", "--output", required=True, help="mix file to write (.wav/.flac)")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=A.DEFAULT_PORT)
    p.add_argument("--session", type=int, default=0, help="session number (default %(default)s)")
    p.add_argument("--block-samples", type=int, default=512)
    p.add_argument(
        "--realtime", action="store_true", help="pace blocks in real time (default: as fast as possible)"
    )
    p.add_argument(
        "--control", action="append", default=[], metavar="NAME=VALUE", help="engine control to set"
    )
    p.add_argument("--timeout", type=float, default=2.0, help="seconds to wait for a mixed block (default 2)")
    p.add_argument(
        "--connect-timeout", type=float, default=10.0, help="seconds to wait for the server (default 10)"
    )
    p.add_argument(
        "--no-latency-compensation", action="store_true", help="keep the engine's delay in the output"
    )
    return p


def load_stems(specs: list[str]) -> tuple[np.ndarray, int, list[tuple[str, str]], list[str]]:
    """``PATH`` or ``PATH=CLASS`` -> ((n_tracks, 2, n) float32, sample_rate, [(class, name)], [paths]).

    Every stem is read at the first stem's rate (others are resampled) and zero-padded to the longest.
    A class not given is guessed from the file name (``host_bridge.track_classes``).
    """
    from .track_classes import classify_track_name

    audio: dict[str, np.ndarray] = {}
    tracks: list[tuple[str, str]] = []
    paths: list[str] = []
    rate: int | None = None
    for spec in specs:
        path, sep, cls = spec.rpartition("=")
        if not sep or not Path(path).suffix:
            path, cls = spec, ""
        paths.append(path)
        loaded = read_audio(path, sample_rate=rate)
        rate = loaded.sample_rate
        key = f"{len(tracks)}:{path}"
        audio[key] = loaded.audio
        name = Path(path).stem
        tracks.append((cls or classify_track_name(name), name))
    if rate is None:
        raise AudioInputError("no stems given; pass one audio file per track")
    aligned, notes = align_lengths(audio)
    for note in notes:
        log.info("%s", note.split(":", 1)[1])
    return np.stack(list(aligned.values())).astype(np.float32), rate, tracks, paths


def client_main(argv: list[str] | None = None) -> int:
    """``fxmix client``: stream stems to a server, write the mix; exit 1 if blocks were lost."""
    args = get_client_parser().parse_args(argv)
    controls = []
    for item in args.control:
        name, sep, value = item.partition("=")
        try:
            controls.append((name, float(value)))
        except ValueError:
            sep = ""
        if not sep or not name:
            raise ConfigError(f"--control {item!r}: expected NAME=VALUE with a number, e.g. amount=0.5")
    stems, rate, tracks, inputs = load_stems(args.stems)
    with BridgeClient(args.host, args.port, session=args.session) as client:
        latency = client.open(rate, args.block_samples, len(tracks), timeout_s=args.connect_timeout)
        for k, (cls, name) in enumerate(tracks):
            client.set_track(k, cls, name)
        for name, value in controls:
            client.control(name, value)
        log.info(
            "streaming %d tracks, %.1f s at %d Hz; server latency %d samples",
            len(tracks),
            stems.shape[-1] / rate,
            rate,
            latency,
        )
        mix, report = stream_mix(
            client,
            stems,
            rate,
            realtime=args.realtime,
            timeout_s=args.timeout,
            compensate_latency=not args.no_latency_compensation,
            progress=True,
        )
        client.close()
    out = write_audio(args.output, mix, rate, protect=inputs)
    r = report.to_dict()
    print(
        f"wrote {out}: {r['blocks_received']}/{r['blocks_sent']} blocks, {r['blocks_lost']} lost, "
        f"round trip p50 {r['rtt_p50_ms']:.2f} ms, p99 {r['rtt_p99_ms']:.2f} ms, {r['wall_s']:.1f} s"
    )
    if report.blocks_lost:
        log.warning(
            "%d blocks were lost (silent in the mix); try without --realtime or a longer --timeout",
            report.blocks_lost,
        )
        return 1
    return 0


# ---------------------------------------------------------------- bench


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
    p.add_argument("--profile", default=DEFAULT_PROFILE)
    p.add_argument("--json", default=None, help="also write the results to this JSON file")
    _add_torch_threads(p)
    _add_pipeline(p)
    return p


def bench_bridge_main(argv: list[str] | None = None) -> int:
    """``fxmix bench bridge``: blocks sent/received/lost, round-trip p50/p99, server CPU."""
    argv = list(sys.argv[1:] if argv is None else argv)
    args = get_bench_parser().parse_args(argv)
    _tune_process(args.torch_threads, args.model)
    factory = make_session_factory(args.model, args.profile, realtime=True, pipeline=args.pipeline)
    load_before = os.getloadavg()
    with BridgeServer(factory, "127.0.0.1", 0, params_interval_s=0.5, default_profile=args.profile) as server:
        host, port = server.address
        cmd = [
            sys.executable, "-m", "fxmix.host_bridge.osc_client", "--bench", "--host", host, "--port", str(port),
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
        f"max {r['rtt_max_ms']:.2f} ms (target p99 <= 5 ms beyond the algorithmic latency of "
        f"{r['latency_samples']} samples = {latency_ms:.2f} ms)"
    )
    print(
        f"  server CPU {result['server_cpu_percent_of_one_core']:.1f}% of one core; engine per block: "
        f"mean {session.get('process_ms_mean', float('nan')):.2f} ms, max {session.get('process_ms_max', float('nan')):.2f} ms "
        f"(budget {period_ms:.2f} ms); blocks skipped while behind real time: {session.get('skipped_blocks')}"
    )
    plans = [v for v in result["plans_applied_per_bus"].values() if isinstance(v, int)]
    if plans:
        print(
            f"  plans applied per bus: {min(plans)}-{max(plans)} "
            f"({min(plans) / max(r['wall_s'], 1e-9):.2f}-{max(plans) / max(r['wall_s'], 1e-9):.2f} per s; "
            "the planner runs on otherwise idle CPU time)"
        )
    print(
        f"  load average before/after: {load_before[0]:.2f} / {result['loadavg_after'][0]:.2f} "
        f"({os.cpu_count()} CPUs); errors: {json.dumps(server_errors)}"
    )
    print("  reproduce: fxmix bench bridge " + shlex.join(argv))
    if args.json:
        from ..dsp.audio import write_text_atomic

        write_text_atomic(args.json, json.dumps(result, indent=2))
    return 0 if r["blocks_lost"] == 0 else 1

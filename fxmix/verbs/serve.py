"""`fxmix serve`: the real-time OSC server (:class:`fxmix.host_bridge.osc.BridgeServer`) in front of engine
sessions (:class:`fxmix.host_bridge.engine.Session`)."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from typing import Any

from fxmix.dsp.errors import ConfigError
from fxmix.host_bridge.osc import BridgeServer
from fxmix.host_bridge.osc import addresses as A
from fxmix.host_bridge.osc.worker import IDLE_TIMEOUT_S
from fxmix.host_bridge.sessions import make_session_factory, prebuild_steps
from fxmix.host_bridge.step_builder import start_export_child
from fxmix.model.names import training_profile

log = logging.getLogger("fxmix")


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
        "Address table: README (or `fxmix serve --addresses`).",
    )
    p.add_argument("--addresses", action="store_true", help="print the OSC address table (markdown) and exit")
    p.add_argument(
        "--host", default="127.0.0.1", help="interface to bind (default: loopback only; any other needs --allow)"
    )
    p.add_argument("--port", type=int, default=A.DEFAULT_PORT, help="UDP port (default %(default)s)")
    p.add_argument("--model", default="default", help="network: default (causal bus network) | console (track-level console mixer) | none | PATH to an export")
    p.add_argument(
        "--profile", default=None, help="profile name or JSON path (default: the model's training profile)"
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
    p.add_argument(
        "--shared-control",
        action="store_true",
        help="any sender may use any session (default: a session belongs to the address that opened it)",
    )
    p.add_argument(
        "--idle-timeout",
        type=float,
        default=IDLE_TIMEOUT_S,
        help="close a session with no request for this many seconds; 0 = never (default %(default)s)",
    )
    add_torch_threads_flag(p)
    add_pipeline_flag(p)
    p.add_argument(
        "--rt-priority",
        type=int,
        default=0,
        help="run the audio path (receive and worker threads) in SCHED_FIFO at this priority (1-99; e.g. 10, "
        "under JACK's default), as a DAW runs its audio threads; needs root, CAP_SYS_NICE or an rtprio limit "
        "(the log says when it was refused); 0 (default): normal scheduling",
    )
    return p


def add_pipeline_flag(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--pipeline",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="run the network one block behind on its own thread (default): shorter block times, one block "
        "more latency; --no-pipeline: network in the mixing thread, latency 512 + the network's look-ahead",
    )


def add_torch_threads_flag(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--torch-threads",
        type=int,
        default=1,
        help="intra-op threads of the network (default 1: steady block times; OpenMP threads spin on busy CPUs)",
    )


#: GIL switch interval of the server process (s): the receive thread waits at most this long for the
#: worker to yield the GIL (Python's default, 5 ms, would be a 5 ms round-trip jitter on its own).
SWITCH_INTERVAL_S = 0.0005


def tune_process(n: int, model: Any) -> None:
    sys.setswitchinterval(SWITCH_INTERVAL_S)
    if isinstance(model, str) and model.lower() == "none":
        return  # no network: do not import torch
    import torch

    torch.set_num_threads(max(1, int(n)))


def main(argv: list[str] | None = None) -> int:
    """``fxmix serve``: run the OSC server until Ctrl-C."""
    args = get_serve_parser().parse_args(argv)
    if args.addresses:
        print(A.markdown_table())
        return 0
    if not args.allow and args.host not in ("127.0.0.1", "::1", "localhost"):
        # checked before the model loads (BridgeServer refuses it too)
        raise ConfigError(
            f"--host {args.host} without --allow would serve every host that can reach port {args.port}; "
            "add --allow IP|CIDR ... (e.g. --allow 192.168.1.0/24) or leave --host at 127.0.0.1"
        )
    tune_process(args.torch_threads, args.model)
    args.profile = args.profile or training_profile(args.model, streaming=True)
    factory = make_session_factory(
        args.model, args.profile, realtime=True, pipeline=args.pipeline, export_in_child=True
    )
    # the common block sizes' network steps, built here while nothing is live yet (512 first: the check below)
    prebuild = prebuild_steps(args.model, (512,))
    if prebuild is not None:
        prebuild.join()
        start_export_child()  # other block sizes are exported there, off this process's interpreter lock
    # Build one session up front so a bad --model/--profile fails now, not at the DAW's first open.
    factory(48000, 512, 1, None)
    prebuild_steps(args.model)
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
        shared_control=args.shared_control,
        idle_timeout_s=args.idle_timeout if args.idle_timeout > 0 else None,
        realtime_priority=args.rt_priority if args.rt_priority > 0 else None,
    )
    host, port = server.address
    log.info(
        "serving OSC on udp://%s:%d (model %s, profile %s); Ctrl-C stops",
        host,
        port,
        args.model,
        args.profile,
    )
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        log.info("stopped; counters: %s", json.dumps(server.core.stats()))
    return 0

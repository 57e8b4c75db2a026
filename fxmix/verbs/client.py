"""`fxmix client STEMS... -o MIX.wav`: stream stems to an fxmix server and write the returned mix.

Imports no torch: it only talks OSC.
"""

from __future__ import annotations

import argparse
import logging

from fxmix.dsp.audio import write_audio
from fxmix.dsp.errors import ConfigError
from fxmix.dsp.stems import load_tracks
from fxmix.host_bridge.osc import addresses as A
from fxmix.host_bridge.osc.client import BridgeClient, stream_mix

log = logging.getLogger("fxmix")


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


def main(argv: list[str] | None = None) -> int:
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
    stems, rate, tracks, inputs = load_tracks(args.stems)
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

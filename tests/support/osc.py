"""Shared helpers of the OSC bridge tests: a real engine factory, seeded stems, a loopback server."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator

import numpy as np
from fxmix.host_bridge.osc.client import BridgeClient
from fxmix.host_bridge.osc.codec import encode_block, parse_messages
from fxmix.host_bridge.osc.server import BridgeServer
from fxmix.host_bridge.sessions import make_session_factory

from support import signals

SR = signals.SR
BLOCK = 512
TRACKS = (("vocals", "Lead Vox"), ("drums", "Drum Bus"), ("bass", "Bass DI"), ("other", "Keys"))
MODEL = "none"  # the network has its own parity tests; here the transport is under test


def small_network():
    """A seeded, untrained, very small causal mixing network (a real ``step``/state, ~30 ms a block)."""
    import torch
    from fxmix.model.causal import CausalConfig, CausalMixer

    torch.manual_seed(0)
    config = CausalConfig(
        n_latent=8, bottleneck=8, hidden=8, skip=8, n_blocks=2, n_repeats=1, lstm_layers=1, se_expansion=1,
        encoder_kernel=16, envelope_kernel=16,
    )  # fmt: skip
    return CausalMixer(config).eval()


def stems(seconds: float = 1.5, seed: int = 0) -> np.ndarray:
    """(4, 2, n) float32 seeded song stems in TRACKS order, n a multiple of BLOCK."""
    song = signals.song(seconds, SR, seed=seed)
    x = np.stack([song[c] for c, _ in TRACKS]).astype(np.float32)
    n = (x.shape[-1] // BLOCK) * BLOCK
    return np.ascontiguousarray(x[..., :n])


def blocks_of(x: np.ndarray) -> list[np.ndarray]:
    return [x[..., i : i + BLOCK] for i in range(0, x.shape[-1], BLOCK)]


def reference_mix(blocks: list[np.ndarray], model=MODEL) -> np.ndarray:
    """The in-process API on the same blocks: (2, n_blocks * BLOCK)."""
    session = make_session_factory(model)(SR, BLOCK, len(TRACKS), None)
    try:
        for k, (cls, name) in enumerate(TRACKS):
            session.set_track(k, class_name=cls, name=name)
        return np.concatenate([session.process(b) for b in blocks], axis=1)
    finally:
        session.close()


@contextlib.contextmanager
def running_server(model=MODEL, **kwargs) -> Iterator[BridgeServer]:
    """A loopback server on an ephemeral port; deterministic (no time-based release) unless overridden."""
    kw = {"reorder_timeout_s": None, "max_backlog_s": None, "params_interval_s": None, "log_interval_s": 60.0}
    kw.update(kwargs)
    server = BridgeServer(make_session_factory(model), "127.0.0.1", 0, **kw)
    server.start()
    try:
        yield server
    finally:
        server.stop()


def open_client(server: BridgeServer, session: int = 0) -> BridgeClient:
    client = BridgeClient(*server.address, session=session)
    client.open(SR, BLOCK, len(TRACKS))
    for k, (cls, name) in enumerate(TRACKS):
        client.set_track(k, cls, name)
    return client


def send_track_block(client: BridgeClient, seq: int, track: int, block: np.ndarray) -> None:
    client.send("/fxmix/block", client.session, track, seq, encode_block(block[track]))


def collect(client: BridgeClient, n_blocks: int, timeout_s: float = 10.0) -> np.ndarray:
    """Wait for mixed blocks 0..n_blocks-1 and join them; a missing block fails the calling test."""
    deadline = time.monotonic() + timeout_s
    for seq in range(n_blocks):
        if not client.wait_mix(seq, max(0.0, deadline - time.monotonic())):
            raise AssertionError(f"mixed block {seq} of {n_blocks} did not arrive within {timeout_s} s")
    return np.concatenate([client.mixes[s][0] for s in range(n_blocks)], axis=1)


def reaper_feedback(sock, n_values: int, timeout_s: float = 5.0) -> dict[str, float]:
    """Address -> value of the Reaper feedback messages a socket receives, until ``n_values`` addresses are in
    or ``timeout_s`` passes (the socket has a short timeout of its own)."""
    got: dict[str, float] = {}
    deadline = time.monotonic() + timeout_s
    while len(got) < n_values and time.monotonic() < deadline:
        try:
            data, _ = sock.recvfrom(65535)
        except TimeoutError:
            continue
        got.update({m.address: m.params[0] for m in parse_messages(data)})
    return got

"""Scheduling of the bridge's threads (real OS calls), the server's turnaround figures, the client's arrival
stamps and the bench's echo floor, over real UDP on 127.0.0.1."""

from __future__ import annotations

import os
import sys
import threading

import numpy as np
import pytest
from fxmix.host_bridge.osc import BridgeServer
from fxmix.host_bridge.osc.client import BridgeClient, stream_mix
from fxmix.host_bridge.osc.priority import below_creator, describe_thread, leave_realtime, realtime_thread
from fxmix.host_bridge.sessions import make_session_factory
from support import osc as S

from fxmix.bench.bridge_floor import EchoFloor


def _in_thread(fn):
    """``fn()`` on a new thread (started by the calling one, so it inherits its scheduling); its result."""
    out = {}
    t = threading.Thread(target=lambda: out.setdefault("r", fn()))
    t.start()
    t.join(10.0)
    return out["r"]


def _realtime_allowed() -> bool:
    return _in_thread(lambda: realtime_thread(1)) == "fifo 1"


needs_realtime = pytest.mark.skipif(
    not sys.platform.startswith("linux") or not _realtime_allowed(),
    reason="SCHED_FIFO needs Linux and CAP_SYS_NICE or an rtprio limit",
)


@needs_realtime
def test_an_audio_thread_and_the_threads_it_starts():
    def audio() -> tuple[str, str, str, int]:
        got = realtime_thread(7)
        return got, _in_thread(below_creator), _in_thread(leave_realtime), os.sched_getscheduler(0)

    got, below, left, policy = _in_thread(audio)
    assert got == "fifo 7" and policy == os.SCHED_FIFO
    assert below == "fifo 6"  # one step under its creator: the audio thread preempts it
    assert left.startswith("normal, nice ") and int(left.split()[-1]) >= 10


def test_threads_in_the_normal_class_are_left_as_they_are():
    before = _in_thread(describe_thread)
    assert before.startswith("normal")
    assert _in_thread(below_creator) == before and _in_thread(leave_realtime) == before


def test_a_refused_priority_says_why(monkeypatch):
    def refuse(*args):
        raise PermissionError(1, "Operation not permitted")

    monkeypatch.setattr(os, "sched_setscheduler", refuse)
    got = _in_thread(lambda: realtime_thread(10))
    assert got.startswith("normal") and "refused" in got and "CAP_SYS_NICE" in got


@needs_realtime
@pytest.mark.parametrize(
    ("model", "between_blocks"),
    [("network", "fifo 4"), ("none", "normal, nice 10")],  # a pipelined block is due with the next one: real-time
)
def test_server_threads_run_at_the_requested_priority_and_report_turnarounds(model, between_blocks):
    x = S.stems(1.0)
    factory = make_session_factory(S.small_network() if model == "network" else "none", realtime=True)
    server = BridgeServer(factory, "127.0.0.1", 0, params_interval_s=None, realtime_priority=5).start()
    try:
        with S.open_client(server) as client:
            mix, report = stream_mix(client, x, S.SR, compensate_latency=False, timeout_s=5.0)
            stats = client.query_stats()
    finally:
        server.stop()
    assert report.blocks_lost == 0 and np.isfinite(mix).all() and np.abs(mix).max() > 1e-3
    assert stats["server"]["scheduling"] == {"receive": "fifo 5", "worker": "fifo 5", "between_blocks": between_blocks}
    s = stats["session"]
    assert 0.0 < s["turnaround_ms_p50"] <= s["turnaround_ms_p99"] <= s["turnaround_ms_max"]


def test_reply_times_are_arrivals_no_later_than_reads():
    x = S.stems(0.5)
    with S.running_server() as server, S.open_client(server) as client:
        _, report = stream_mix(client, x, S.SR, compensate_latency=False, timeout_s=5.0)
        arrivals = {seq: t for seq, (_, t) in client.mixes.items()}
        reads = dict(client.mix_read_t)
    assert report.blocks_lost == 0 and min(report.rtt_ms) > 0.0
    assert arrivals.keys() == reads.keys() and all(arrivals[s] <= reads[s] for s in arrivals)
    if sys.platform == "linux":
        assert client.kernel_stamps


def test_echo_floor_answers_like_the_bridge():
    block, n_tracks = 256, 3
    with EchoFloor() as echo, BridgeClient(*echo.address, session=4) as client:
        assert client.open(S.SR, block, n_tracks) == 0
        x = np.ones((n_tracks, 2, block), np.float32)
        for seq in range(5):
            client.send_block(seq, x)
        assert client.wait_mix(4, 5.0)
        assert client.query_stats() == {}
    assert sorted(client.mixes) == [0, 1, 2, 3, 4]
    assert all(m.shape == (2, block) and not m.any() for m, _ in client.mixes.values())

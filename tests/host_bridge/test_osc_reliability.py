"""The bridge over hours and against other senders, over real UDP on loopback: typed error replies, session
ownership, int64 arguments, opens that do not stall live sessions, idle expiry, bounded logging, stream
restarts, huge samples, the health query, bind and amplification rules, and a bounded fuzz soak."""

from __future__ import annotations

import json
import logging
import socket
import struct
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from fxmix.dsp.errors import ConfigError
from fxmix.host_bridge.osc.client import BridgeClient
from fxmix.host_bridge.osc.codec import build_message, encode_block, parse_messages
from fxmix.host_bridge.osc.server import BridgeServer
from fxmix.host_bridge.sessions import make_session_factory, prebuild_steps
from support import osc as S


class _Raw:
    """A bare UDP socket that sends datagrams and collects every reply (address, params)."""

    def __init__(self, server: tuple[str, int]):
        self.server = server
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.05)

    def send(self, data: bytes) -> None:
        self.sock.sendto(data, self.server)

    def replies(self, wait_s: float = 1.0, until: str | None = None) -> list[tuple[str, list]]:
        out, deadline = [], time.monotonic() + wait_s
        while time.monotonic() < deadline:
            try:
                data, _ = self.sock.recvfrom(65535)
            except TimeoutError:
                continue
            out += [(m.address, list(m.params)) for m in parse_messages(data)]
            if until is not None and any(a == until for a, _ in out):
                break
        return out

    def close(self) -> None:
        self.sock.close()


def _int64_open(session: int) -> bytes:
    """``/fxmix/open`` with the session as an OSC int64 (``h``) argument."""
    head = b"/fxmix/open\x00,hiii\x00\x00\x00"
    return head + struct.pack(">qiii", session, S.SR, S.BLOCK, 2)


def test_wrong_types_and_int64_arguments_are_answered_and_open_no_slot():
    with S.running_server() as server:
        raw = _Raw(server.address)
        try:
            raw.send(build_message("/fxmix/control", [0, 1.0, "amount"]))  # swapped arguments
            wrong = raw.replies(2.0, until="/fxmix/error")
            raw.send(_int64_open(2**40))  # does not fit int32: refused, no slot
            too_big = raw.replies(2.0, until="/fxmix/error")
            raw.send(_int64_open(3))  # fits: accepted like an int32
            opened = raw.replies(20.0, until="/fxmix/opened")
        finally:
            raw.close()
        slots = set(server.core.inbox.slots)
    (message,) = [p[1] for a, p in wrong if a == "/fxmix/error"]
    assert "/fxmix/control" in message and "name:string, value:float32" in message
    (refusal,) = [p for a, p in too_big if a == "/fxmix/error"]
    assert refusal[0] == -1 and "int64" in refusal[1] and "session:int32" in refusal[1]
    assert [p[0] for a, p in opened if a == "/fxmix/opened"] == [3]
    assert slots == {3}


def test_sessions_belong_to_their_opener_unless_control_is_shared():
    for shared in (False, True):
        with S.running_server(shared_control=shared) as server, S.open_client(server) as owner:
            other = _Raw(server.address)
            try:
                other.send(build_message("/fxmix/reply", [0, "127.0.0.1", 9], "isi"))
                other.send(build_message("/fxmix/control", [0, "amount", 0.0], "isf"))
                other.send(build_message("/fxmix/close", [0], "i"))
                answers = other.replies(1.0)
            finally:
                other.close()
            assert owner.ping()
            state = owner.query_state()
            me = "{}:{}".format(*owner.local_address)
            errors = server.core.errors.snapshot()
        refusals = [p for a, p in answers if a == "/fxmix/error"]
        if shared:
            assert state is None and not refusals  # the other sender redirected, changed and closed it
        else:
            assert len(refusals) == 3
            assert all("belongs to the sender that opened it" in m for _s, m in refusals)
            assert state["controls"] == {} and state["reply_to"] == me
            assert errors["not_owner"] == 3


def _core(**kwargs):
    """A socket-less core with a real engine factory; every datagram it sends is kept as (bytes, to)."""
    from fxmix.host_bridge.osc.core import BridgeCore

    sent: list[tuple[bytes, tuple[str, int]]] = []
    kw = {"trust_loopback": False, "reorder_timeout_s": None, "max_backlog_s": None, "params_interval_s": None}
    core = BridgeCore(lambda d, to: sent.append((d, to)), make_session_factory(S.MODEL), **{**kw, **kwargs})
    return core, sent


def test_a_spoofed_open_makes_no_owner_until_the_address_echoes_its_cookie():
    core, sent = _core()
    victim = ("198.51.100.7", 4000)  # the address an attacker writes into its datagrams
    request = build_message("/fxmix/open", [0, S.SR, S.BLOCK, 2], "iiii")
    core.handle_datagram(request, victim)
    core.handle_datagram(build_message("/fxmix/open", [1, S.SR, S.BLOCK, 2, "AAAAAAAAAAA"], "iiiis"), victim)
    # nothing opened, the victim is no owner (so replies to it stay capped), and it got only small cookies
    assert not core.inbox.slots and not core.verified(victim)
    replies = [(parse_messages(d)[0], len(d), to) for d, to in sent]
    assert [(m.address, to) for m, _n, to in replies] == [("/fxmix/cookie", victim)] * 2
    assert all(n <= len(request) for _m, n, _to in replies)
    assert core.errors.snapshot()["bad_cookie"] == 1
    # the real owner of that address echoes its cookie: one more round trip, then the session is its own
    cookie = replies[0][0].params[1]
    core.handle_datagram(build_message("/fxmix/open", [0, S.SR, S.BLOCK, 2, cookie], "iiiis"), victim)
    assert core.inbox.slots[0].owner == victim and core.verified(victim)
    core.handle_datagram(build_message("/fxmix/open", [2, S.SR, S.BLOCK, 2], "iiii"), victim)  # owner: direct
    assert set(core.inbox.slots) == {0, 2}
    assert core.cookie(victim) != core.cookie(("198.51.100.7", 4001)) != core.cookie(victim, period=0)


def test_a_remote_client_opens_with_the_cookie_handshake_and_then_in_one_round_trip():
    with S.running_server(trust_loopback=False) as server, BridgeClient(*server.address, session=0) as client:
        client.open(S.SR, S.BLOCK, 2)
        first = dict(server.core.counters)
        client.close()
        time.sleep(0.2)
        client.open(S.SR, S.BLOCK, 2)  # closed, so no longer an owner: the cookie it kept opens it at once
        second = dict(server.core.counters)
    assert first["cookies_sent"] == 1 and second["cookies_sent"] == 1 and client.cookie


def _gaps_while_opening(n_opens: int) -> tuple[float, int, dict]:
    """Largest gap (s) between mixed blocks of a live 256-sample session while another client opens
    ``n_opens`` sessions, and the blocks it lost."""
    net = S.small_network()
    factory = make_session_factory(net, realtime=True)
    prebuild_steps(net, (256, 512)).join()  # as `fxmix serve` does at start for the common block sizes
    # no load shedding: a stalled worker shows as a gap on the client instead of as skipped blocks
    server = BridgeServer(factory, "127.0.0.1", 0, params_interval_s=None, max_backlog_s=None).start()
    block, n_blocks = 256, int(4.0 * S.SR / 256)
    try:
        live = BridgeClient(*server.address, session=0)
        live.open(S.SR, block, 2)
        arrivals: list[float] = []
        stop = threading.Event()

        def opener() -> None:
            with BridgeClient(*server.address, session=1) as c:
                for _ in range(n_opens):
                    if stop.is_set():
                        return
                    c.open(S.SR, 512, 2, timeout_s=20.0)

        t = threading.Thread(target=opener)
        x = np.zeros((2, 2, block), np.float32)
        t0 = time.perf_counter()
        for seq in range(n_blocks):
            if seq == 20:
                t.start()
            time.sleep(max(0.0, t0 + seq * block / S.SR - time.perf_counter()))
            live.send_block(seq, x)
        live.wait_mix(n_blocks - 1, 2.0)
        stop.set()
        t.join(30.0)
        with live._cond:
            arrivals = sorted(t for s, (_m, t) in live.mixes.items() if s >= 20)
        lost = n_blocks - len(live.mixes)
        live.close_socket()
        errors = server.core.errors.snapshot()
    finally:
        server.stop()
    return float(np.diff(arrivals).max()), lost, errors


def test_opening_sessions_does_not_stall_a_live_session():
    # An open used to stall every live session for ~0.35 s (gaps up to 449 ms seen); with the step prebuilt and
    # sessions built off the worker an open costs tens of ms. 0.2 s leaves room for a loaded 2-core CI host.
    gap_s, lost, errors = _gaps_while_opening(10)
    assert lost == 0 and gap_s < 0.2, (gap_s, lost, errors)


def test_an_unusual_block_size_is_exported_outside_the_server_process(monkeypatch):
    """The first open of a block size with no prebuilt step used to export the ONNX step in the server's own
    interpreter (a few hundred ms holding the lock every live session needs); it is exported by a child process
    and only loaded here. The spy counts in-process exports; the session must still step the network."""
    from fxmix.model import streaming_runtime

    net = S.small_network()
    exports_here = []
    real_export = streaming_runtime.streaming_onnx_bytes
    monkeypatch.setattr(
        streaming_runtime, "streaming_onnx_bytes", lambda *a, **k: exports_here.append(a[1]) or real_export(*a, **k)
    )
    session = make_session_factory(net, realtime=True, export_in_child=True)(S.SR, 336, 2, None)
    try:
        session.set_track(0, "vocals")
        y = [session.process(np.full((2, 2, 336), 0.1, np.float32)) for _ in range(6)]
    finally:
        session.close()
    assert exports_here == [] and session._step_fn is not None
    assert np.isfinite(np.concatenate(y, axis=1)).all() and np.abs(y[-1]).max() > 0


def test_idle_sessions_expire_and_free_their_slot():
    with S.running_server(idle_timeout_s=0.5) as server, S.open_client(server) as client:
        deadline = time.monotonic() + 5.0
        while server.core.inbox.slots and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.2)
        expired = [p for a, p in client.replies if a == "/fxmix/error"]
        assert not server.core.inbox.slots and not server.core.worker.live
    assert expired and "closed after" in expired[0][1] and "--idle-timeout" in expired[0][1]


class _ByteCounter(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.bytes = 0

    def emit(self, record: logging.LogRecord) -> None:
        self.bytes += len(self.format(record)) + 1


def test_bad_bundle_elements_are_logged_rate_limited():
    element = b"x" * 60000  # neither a message nor a bundle
    bundle = b"#bundle\x00" + struct.pack(">Q", 1) + struct.pack(">i", len(element)) + element
    counter = _ByteCounter()
    root = logging.getLogger()
    root.addHandler(counter)
    try:
        with S.running_server() as server, BridgeClient(*server.address) as client:
            for _ in range(100):
                client.sock.sendto(bundle, server.address)
            assert client.ping()
            client.send("/fxmix/query/stats", -1)
            stats = json.loads(client.wait_reply("/fxmix/stats", 5.0)[1])
    finally:
        root.removeHandler(counter)
    assert counter.bytes < 2000, counter.bytes
    assert stats["server"]["python_osc_errors"]["bad_element"] >= 1


def test_sequence_restart_resynchronises_and_huge_samples_are_clipped():
    x = S.stems(0.5)
    blocks = S.blocks_of(x)
    with S.running_server() as server, S.open_client(server) as client:
        for seq, b in enumerate(blocks):
            client.send_block(seq, b)
        assert client.wait_mix(len(blocks) - 1, 10.0)
        with client._cond:
            client.mixes.clear()
        huge = blocks[0].copy()
        huge[1, 0, 7] = 3e38
        for seq, b in enumerate([huge, *blocks[1:]]):  # the host restarted at 0 without a reset
            client.send_block(seq, b)
        assert client.wait_mix(len(blocks) - 1, 10.0), sorted(client.mixes)
        mixes = [client.mixes.get(s) for s in range(len(blocks))]
        errors = server.core.errors.snapshot()
    assert all(m is not None and np.isfinite(m[0]).all() for m in mixes)
    assert errors["seq_jump"] == 1 and errors["clipped"] == 1


class _SlowEngine:
    """A real engine session whose host takes ``delay_s`` per block (a stuck worker)."""

    def __init__(self, engine, delay_s: float):
        self.engine, self.delay_s = engine, delay_s

    def __getattr__(self, name):
        return getattr(self.engine, name)

    def process(self, blocks, **kwargs):
        time.sleep(self.delay_s)
        return self.engine.process(blocks, **kwargs)


def test_health_answers_while_the_worker_is_stuck():
    inner = make_session_factory(S.MODEL)
    server = BridgeServer(
        lambda *a: _SlowEngine(inner(*a), 1.5), "127.0.0.1", 0, max_backlog_s=0.2, params_interval_s=None
    ).start()
    try:
        with BridgeClient(*server.address) as client:
            client.open(S.SR, S.BLOCK, 1)
            for seq in range(4):
                client.send_block(seq, np.zeros((1, 2, S.BLOCK), np.float32))
            time.sleep(0.8)
            client.send("/fxmix/health", 7)
            health = client.wait_reply("/fxmix/health", 0.5)
            time.sleep(3.0)
            client.send("/fxmix/health", 8)
            later = client.wait_reply("/fxmix/health", 2.0)
    finally:
        server.stop()
    assert health[0] == 7 and health[1] >= 500 and health[2] >= 1  # lag (ms), queue depth
    assert later[0] == 8 and later[3] >= 1 and later[4] == 1  # skipped blocks, sessions


def test_non_loopback_bind_needs_an_allowlist():
    with pytest.raises(ConfigError, match="--allow"):
        BridgeServer(make_session_factory(S.MODEL), "0.0.0.0", 0)
    run = subprocess.run(
        [sys.executable, "-m", "fxmix.cli", "serve", "--host", "0.0.0.0", "--port", "0", "--model", "none"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode != 0 and "--allow" in run.stderr and "Traceback" not in run.stderr


def test_replies_to_unverified_senders_are_no_larger_than_their_request():
    with S.running_server(trust_loopback=False) as server, S.open_client(server) as owner:
        stranger = _Raw(server.address)
        try:
            stranger.send(build_message("/fxmix/query/stats", [-1], "i"))
            stranger.send(build_message("/fxmix/ping", [5], "i"))
            answers = stranger.replies(1.5)
        finally:
            stranger.close()
        own = owner.query_stats()  # the session's owner is verified: full answer
        errors = server.core.errors.snapshot()
    assert [a for a, _ in answers] == ["/fxmix/pong"]
    assert errors["reply_capped"] == 1 and own["session"]["mixed_blocks"] == 0


def _rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096 / 2**20


def fuzz_soak() -> dict:
    """100 open/block/close cycles with 500 mutated datagrams each against a server in this process: its
    RSS per cycle, the health reply after, the bytes logged and the time taken."""
    rng = np.random.default_rng(11)
    seeds = [
        build_message("/fxmix/block", [0, 0, 0, encode_block(np.zeros((2, S.BLOCK)))], "iiib"),
        build_message("/fxmix/close", [1], "i"),  # (mutated opens would be live sessions, not leaks)
        build_message("/fxmix/control", [0, "amount", 0.5], "isf"),
        build_message("/fxmix/query/params", [0], "i"),
        b"#bundle\x00" + bytes(8) + struct.pack(">i", 20) + build_message("/fxmix/ping", [1], "i"),
    ]
    counter = _ByteCounter()
    root = logging.getLogger()
    root.addHandler(counter)
    t0 = time.monotonic()
    try:
        with S.running_server(queue_size=512, log_interval_s=5.0) as server:
            fuzz = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            with BridgeClient(*server.address, session=5) as client:
                rss = []
                for _cycle in range(100):
                    client.open(S.SR, S.BLOCK, 2, timeout_s=20.0)
                    client.send_block(0, np.zeros((2, 2, S.BLOCK), np.float32))
                    client.close()
                    for _ in range(500):
                        d = bytearray(seeds[int(rng.integers(len(seeds)))])
                        for i in rng.integers(0, len(d), int(rng.integers(1, 8))):
                            d[i] = int(rng.integers(256))
                        fuzz.sendto(bytes(d[: int(rng.integers(1, len(d) + 1))]), server.address)
                    rss.append(_rss_mb())
                client.send("/fxmix/health", 3)
                health = client.wait_reply("/fxmix/health", 5.0)
            fuzz.close()
    finally:
        root.removeHandler(counter)
    return {"elapsed_s": time.monotonic() - t0, "health": None if health is None else list(health),
            "rss_mb": rss, "log_bytes": counter.bytes}


_SOAK_CHILD = """
import importlib.util, json, sys
sys.path.insert(0, sys.argv[1])
spec = importlib.util.spec_from_file_location("soak", sys.argv[2])
mod = importlib.util.module_from_spec(spec)
spec.loader.exec_module(mod)
print(json.dumps(mod.fuzz_soak()))
"""


def test_fuzz_and_open_close_cycles_leave_a_healthy_bounded_server():
    """The soak in a fresh process: its RSS is the server's and the client's alone, not what the rest of the
    test suite left allocated or frees meanwhile (a 1-GB test process once grew 55 MB mid-soak and kept it)."""
    here = Path(__file__).resolve()
    run = subprocess.run([sys.executable, "-c", _SOAK_CHILD, str(here.parents[1]), str(here)],
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    res = json.loads(run.stdout.strip().splitlines()[-1])
    rss, health = res["rss_mb"], res["health"]
    assert res["elapsed_s"] < 60.0
    assert health is not None and health[0] == 3
    # growth after the first 10 cycles: the median of the last 10 samples against cycle 10 (a sample taken
    # while the opener thread is building a session reads a transient ~40 MB more; a leak moves the median)
    assert float(np.median(rss[-10:])) - rss[10] <= 20.0, [round(r) for r in rss]
    assert res["log_bytes"] <= 200_000, res["log_bytes"]

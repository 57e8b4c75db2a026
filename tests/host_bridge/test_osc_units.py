"""OSC bridge pieces without sockets: address table, type checks, block assembly, error log, handlers."""

from __future__ import annotations

import inspect
import json
import logging
import time
import typing

import numpy as np
import pytest
from fxmix.host_bridge.osc import addresses as A
from fxmix.host_bridge.osc.assembler import BlockAssembler
from fxmix.host_bridge.osc.codec import build_message, check_types, encode_block, parse_messages, to_json
from fxmix.host_bridge.osc.core import BridgeCore
from fxmix.host_bridge.osc.log import ErrorLog
from fxmix.host_bridge.osc.requests import MixRequest, OpenRequest, Request
from fxmix.host_bridge.sessions import make_session_factory
from support import osc as S

# A /fxmix/ping 5 message as literal bytes (address, type tags, int32), the OSC 1.0 layout.
PING_DGRAM = b"/fxmix/ping\x00,i\x00\x00\x00\x00\x00\x05"


def test_address_table_matches_handlers_and_readme_table():
    core = BridgeCore(lambda data, to: None, make_session_factory(S.MODEL))
    table = A.markdown_table()
    for address, route in {**A.INBOUND, **A.OUTBOUND, **A.REAPER_OUTBOUND}.items():
        assert f"`{address}`" in table
        assert set(route.types) <= set("ifsb")
    for address, route in A.INBOUND.items():
        handler = core.ROUTES[address]
        params = list(inspect.signature(handler).parameters)
        assert params[:2] == ["sender", "address"] and len(params) == 2 + len(route.types), address
    assert A.reaper_address("/track/@/pan", 3) == "/track/3/pan"
    # The largest block must fit one UDP datagram with its OSC header.
    dgram = build_message("/fxmix/block", [0, 127, 2**31 - 1, bytes(2 * A.MAX_BLOCK_SAMPLES * 4)], "iiib")
    assert len(dgram) < 65507


def test_literal_ping_datagram_matches_builder():
    assert build_message("/fxmix/ping", [5], "i") == PING_DGRAM


@pytest.mark.parametrize(
    ("types", "args", "expected"),
    [
        ("iisf", [1, 2, "x", 3], [1, 2, "x", 3.0]),
        ("f", [0.5], [0.5]),
        ("i", [1.0], None),
        ("i", [True], None),
        ("s", [b"x"], None),
        ("b", ["x"], None),
        ("ii", [1], None),
        ("i", [1, 2], None),
    ],
)
def test_check_types(types, args, expected):
    assert check_types(types, args) == expected


def _block(value: float, n_tracks: int = 3, block_samples: int = 4) -> np.ndarray:
    return np.full((2, block_samples), value, np.float32)


def test_assembler_in_order_and_reordered_give_the_same_blocks():
    def run(order):
        asm = BlockAssembler(3, 4, window_blocks=4)
        out = []
        for seq, track in order:
            out += asm.push(seq, track, _block(10 * seq + track))
        return asm, out

    in_order = [(s, t) for s in range(6) for t in range(3)]
    rng = np.random.default_rng(0)
    shuffled = [p for g in range(0, 18, 6) for p in rng.permutation(in_order[g : g + 6]).tolist()]
    a1, o1 = run(in_order)
    a2, o2 = run([tuple(p) for p in shuffled])
    assert [s for s, _ in o1] == [s for s, _ in o2] == list(range(6))
    for (_, b1), (_, b2) in zip(o1, o2):
        np.testing.assert_array_equal(b1, b2)
    assert a1.stats.zero_filled == a2.stats.zero_filled == 0
    assert a2.stats.reordered > 0 and a1.stats.reordered == 0


def test_assembler_zero_fills_missing_counts_and_drops_late_and_duplicates():
    asm = BlockAssembler(2, 4, window_blocks=4)
    out = asm.push(0, 0, _block(1.0))  # track 1 of block 0 never comes
    out += asm.push(0, 0, _block(9.0))  # duplicate
    for seq in (2, 3):  # block 1 never comes at all
        for track in (0, 1):
            out += asm.push(seq, track, _block(seq))
    assert out == []  # still inside the window
    out += asm.push(4, 0, _block(4.0))  # 4 - 0 >= window: block 0 released
    assert [s for s, _ in out] == [0]
    out += asm.push(5, 0, _block(5.0))  # block 1 released (all zeros), then 2 and 3 are complete
    assert [s for s, _ in out] == [0, 1, 2, 3]
    np.testing.assert_array_equal(out[0][1][0], _block(1.0))
    assert not out[0][1][1].any() and not out[1][1].any()
    np.testing.assert_array_equal(out[3][1], np.stack([_block(3.0), _block(3.0)]))
    assert asm.stats.zero_filled == 1 + 2 and asm.stats.duplicates == 1
    assert asm.push(1, 0, _block(1.0)) == [] and asm.stats.late == 1
    assert {k for k, _ in asm.events} == {"missing", "duplicate", "late"}
    rest = asm.flush()
    assert [s for s, _ in rest] == [4, 5] and asm.stats.zero_filled == 5
    # A far jump restarts the stream there instead of zero-filling thousands of blocks.
    assert asm.push(100_000, 0, _block(1.0)) == [] and asm.stats.seq_jumps == 1
    assert [s for s, _ in asm.push(100_000, 1, _block(1.0))] == [100_000]


def test_assembler_timeout_releases_oldest():
    asm = BlockAssembler(2, 4, window_blocks=8)
    assert asm.push(0, 0, _block(1.0), now=10.0) == []
    assert asm.flush_stale(10.01, 0.05) == []
    released = asm.flush_stale(10.06, 0.05)
    assert [s for s, _ in released] == [0] and asm.stats.zero_filled == 1


def test_error_log_one_line_per_kind_with_counts(caplog):
    errors = ErrorLog(interval_s=60.0)
    with caplog.at_level(logging.WARNING, logger="fxmix.bridge"):
        for i in range(500):
            errors.report("parse", f"packet {i}")
        errors.report("unknown_address", "'/x'")
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 2
    assert "malformed or truncated OSC packet" in lines[0] and "packet 0" in lines[0]
    assert errors.snapshot() == {"parse": 500, "unknown_address": 1}


def test_handlers_without_a_socket_validate_and_queue():
    sent: list[tuple[bytes, tuple]] = []
    core = BridgeCore(lambda data, to: sent.append((data, to)), make_session_factory(S.MODEL), queue_size=8)
    me = ("127.0.0.1", 5000)
    core.handle_datagram(build_message("/fxmix/open", [0, S.SR, S.BLOCK, 2], "iiii"), me)
    core.handle_datagram(PING_DGRAM, me)  # answered at once, no worker needed
    assert sent == [(build_message("/fxmix/pong", [5], "i"), me)]
    block = encode_block(np.zeros((2, S.BLOCK), np.float32))
    # Track blocks are assembled on the receive thread: only complete blocks are queued (track 0 of
    # block 0 waits for track 1).
    core.handle_datagram(build_message("/fxmix/block", [0, 0, 0, block], "iiib"), me)
    assert core.inbox.qsize() == 1
    for seq in range(10):  # the worker is not running: the queue (8) fills and the rest is counted
        for track in (1, 0) if seq == 0 else (0, 1):
            if (seq, track) != (0, 0):
                core.handle_datagram(build_message("/fxmix/block", [0, track, seq, block], "iiib"), me)
    core.handle_datagram(build_message("/fxmix/block", [0, 2, 0, block], "iiib"), me)  # track out of range
    core.handle_datagram(build_message("/fxmix/open", [1, S.SR, 7, 2], "iiii"), me)  # block too small
    counts = core.errors.snapshot()
    assert counts == {"queue_full": 3, "bad_value": 2}
    assert core.inbox.qsize() == 8
    queued = [core.inbox.get(0) for _ in range(8)]
    assert [type(r) for r in queued] == [OpenRequest] + [MixRequest] * 7
    assert [r.seq for r in queued[1:]] == list(range(7))
    assert sent[-1][0] == build_message(
        "/fxmix/error",
        [1, f"/fxmix/open: block_samples 7 not in [{A.MIN_BLOCK_SAMPLES}, {A.MAX_BLOCK_SAMPLES}]"],
        "is",
    )


def test_worker_sheds_load_when_behind_real_time():
    sent: list[tuple[bytes, tuple]] = []
    core = BridgeCore(
        lambda data, to: sent.append((data, to)), make_session_factory(S.MODEL), max_backlog_s=0.5
    )
    me = ("127.0.0.1", 5000)
    core.handle_datagram(build_message("/fxmix/open", [0, S.SR, S.BLOCK, 1], "iiii"), me)
    core.process_item(opening := core.inbox.get(0))
    slot = opening.slot
    blocks = np.zeros((1, 2, S.BLOCK), np.float32)
    now = time.monotonic()
    core.process_item(MixRequest(0, slot, 0, blocks, now - 2.0))  # waited 2 s in the queue: skipped
    core.process_item(MixRequest(0, slot, 1, blocks, now))  # caught up: mixed
    mixes = [parse_messages(d)[0] for d, _ in sent if parse_messages(d)[0].address == "/fxmix/mix"]
    assert [m.params[1] for m in mixes] == [1]
    assert core.errors.snapshot() == {"overload": 1}
    assert core.stats(0)["session"]["skipped_blocks"] == 1
    core.stop()


def test_blocks_reach_the_engine_once_each_in_order_while_the_timeout_races_the_receive_thread():
    """Track blocks are assembled on the receive thread while the worker releases stale ones (reorder
    timeout 1 ms): both release and queue under one lock, so the engine gets every block once, in order."""
    import threading

    sent: list[bytes] = []
    lock = threading.Lock()

    def send(data: bytes, to: tuple) -> None:
        with lock:
            sent.append(data)

    core = BridgeCore(
        send,
        make_session_factory(S.MODEL),
        reorder_timeout_s=0.001,
        max_backlog_s=None,
        params_interval_s=None,
    )
    core.start()
    me = ("127.0.0.1", 5000)
    try:
        core.handle_datagram(build_message("/fxmix/open", [0, S.SR, S.BLOCK, 2], "iiii"), me)
        deadline = time.monotonic() + 20.0  # a client waits for /fxmix/opened (the session is built off the worker)
        while time.monotonic() < deadline and not any(parse_messages(d)[0].address == "/fxmix/opened" for d in sent):
            time.sleep(0.01)
        block = encode_block(np.full((2, S.BLOCK), 0.01, np.float32))
        n = 300
        for seq in range(n):
            core.handle_datagram(build_message("/fxmix/block", [0, 0, seq, block], "iiib"), me)
            # every third block never gets its second track: the timeout or the window releases it
            if seq % 3:
                core.handle_datagram(build_message("/fxmix/block", [0, 1, seq, block], "iiib"), me)
        core.handle_datagram(build_message("/fxmix/flush", [0], "i"), me)
        deadline = time.monotonic() + 20.0
        while time.monotonic() < deadline:
            with lock:
                mixes = [m for m in map(parse_messages, sent) if m[0].address == "/fxmix/mix"]
            if len(mixes) >= n:
                break
            time.sleep(0.02)
    finally:
        core.stop()
    assert [m[0].params[1] for m in mixes] == list(range(n))
    errors = core.errors.snapshot()
    assert errors.get("missing", 0) >= n // 3 and not {"engine", "queue_full", "recv"} & set(errors)


def test_queued_audio_is_bounded_in_bytes():
    """Complete blocks waiting for the worker are capped in bytes (a big session cannot fill memory); the
    rest are dropped and counted."""
    core = BridgeCore(
        lambda data, to: None, make_session_factory(S.MODEL), max_queued_bytes=3 * 2 * S.BLOCK * 4
    )
    me = ("127.0.0.1", 5000)
    core.handle_datagram(build_message("/fxmix/open", [0, S.SR, S.BLOCK, 1], "iiii"), me)
    block = encode_block(np.zeros((2, S.BLOCK), np.float32))
    for seq in range(5):  # the worker is not running: 3 blocks fit, 2 are dropped
        core.handle_datagram(build_message("/fxmix/block", [0, 0, seq, block], "iiib"), me)
    assert core.inbox.qsize() == 1 + 3
    assert core.errors.snapshot() == {"queue_full": 2}
    # A block the worker takes out frees its bytes: one more fits, the next is dropped again.
    assert type(core.inbox.get(0)) is OpenRequest and type(core.inbox.get(0)) is MixRequest
    for seq in (5, 6):
        core.handle_datagram(build_message("/fxmix/block", [0, 0, seq, block], "iiib"), me)
    assert core.inbox.qsize() == 3 and core.inbox.queued_bytes == 3 * 2 * S.BLOCK * 4
    assert core.errors.snapshot() == {"queue_full": 3}


def test_open_close_and_reset_are_all_or_nothing_when_the_queue_is_full():
    """A request the worker will never see is refused whole (the sender gets /fxmix/error and can retry),
    never half-applied: no half-open session, no closed slot with a live engine, no assembler-only reset."""
    sent: list[tuple[bytes, tuple]] = []
    core = BridgeCore(lambda data, to: sent.append((data, to)), make_session_factory(S.MODEL), queue_size=1)
    me = ("127.0.0.1", 5000)
    core.handle_datagram(build_message("/fxmix/open", [0, S.SR, S.BLOCK, 1], "iiii"), me)  # fills the queue
    core.handle_datagram(build_message("/fxmix/open", [1, S.SR, S.BLOCK, 1], "iiii"), me)
    assert 1 not in core.inbox.slots and 0 in core.inbox.slots
    errors = [parse_messages(d)[0] for d, _ in sent if parse_messages(d)[0].address == "/fxmix/error"]
    assert errors and errors[-1].params[0] == 1 and "server busy" in errors[-1].params[1]
    core.handle_datagram(build_message("/fxmix/close", [0], "i"), me)
    assert 0 in core.inbox.slots  # the close was refused, so the slot (and later the engine) stays consistent
    core.process_item(core.inbox.get(0))  # the worker opens session 0
    core.handle_datagram(build_message("/fxmix/close", [0], "i"), me)
    assert 0 not in core.inbox.slots
    core.process_item(core.inbox.get(0))
    assert core.stats(0).get("session") is None
    core.stop()


def test_every_request_type_has_one_handler():
    core = BridgeCore(lambda data, to: None, make_session_factory(S.MODEL))
    assert set(core.worker.handlers) == set(typing.get_args(Request))


def _reject_constant(name: str):
    raise AssertionError(f"JSON text holds {name}")


def test_to_json_nulls_non_finite_numbers_and_keeps_strings_that_look_like_them():
    obj = {
        "tracks": ["Infinity pad", "NaN", "-Infinity lead"],
        "NaN": float("nan"),
        "gain_db": [float("inf"), -float("inf"), 1.5],
        "np": {"f32": np.float32("nan"), "i64": np.int64(3), "arr": np.array([1.0, np.nan])},
    }
    text = to_json(obj)
    back = json.loads(text, parse_constant=_reject_constant)
    assert back == {
        "tracks": ["Infinity pad", "NaN", "-Infinity lead"],
        "NaN": None,
        "gain_db": [None, None, 1.5],
        "np": {"f32": None, "i64": 3, "arr": [1.0, None]},
    }


def test_state_reply_keeps_a_track_named_infinity_pad():
    """End to end without a socket: the name goes in with /fxmix/track and comes back in /fxmix/state."""
    sent: list[bytes] = []
    core = BridgeCore(lambda data, to: sent.append(data), make_session_factory(S.MODEL))
    me = ("127.0.0.1", 5000)
    core.handle_datagram(build_message("/fxmix/open", [0, S.SR, S.BLOCK, 2], "iiii"), me)
    core.handle_datagram(build_message("/fxmix/track", [0, 1, "other", "Infinity pad"], "iiss"), me)
    core.handle_datagram(build_message("/fxmix/query/state", [0], "i"), me)
    try:
        while core.inbox.qsize():
            core.process_item(core.inbox.get(0))
    finally:
        core.stop()
    states = [m for m in map(parse_messages, sent) if m[0].address == "/fxmix/state"]
    assert len(states) == 1
    state = json.loads(states[0][0].params[1], parse_constant=_reject_constant)
    assert state["tracks"]["1"] == {"class_name": "other", "name": "Infinity pad"}
